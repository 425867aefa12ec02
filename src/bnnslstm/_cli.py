"""``python -m bnnslstm info | demo | bench``."""

from __future__ import annotations

import argparse
import platform
import sys


def info() -> int:
    import Cython
    import numpy
    import scipy

    import bnnslstm as bl
    from bnnslstm._abi import layout
    from bnnslstm._blasinfo import blas_summary, openblas_env

    print(f"bnnslstm {bl.__version__}, ABI version {bl.ABI_VERSION}")
    print(f"Python {platform.python_version()}, numpy {numpy.__version__}, scipy "
          f"{scipy.__version__}, Cython {Cython.__version__}")
    print(f"machine: {platform.machine()} {platform.processor()}")
    print(f"BLAS: {blas_summary()}")
    for var, value in openblas_env().items():
        print(f"  {var}={value if value is not None else '(unset)'}")
    print("struct sizes: " + ", ".join(f"{k} {v[0]}" for k, v in layout().items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    if argv[:1] == ["bench"]:            # the benchmark has its own options
        from bnnslstm._bench import main as bench
        return bench(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bnnslstm")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the main job on built-in synthetic data")
    sub.add_parser("info", help="versions, BLAS, struct sizes")
    sub.add_parser("bench", help="time against ONNX Runtime and PyTorch (--help for options)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from bnnslstm._demo import main as demo
        return demo()
    return info()
