"""``python -m bnnslstm info | demo | bench``."""

from __future__ import annotations

import argparse
import platform
import sys


def info() -> int:
    import numpy
    import scipy

    import bnnslstm as bl
    from bnnslstm._abi import layout
    from bnnslstm._blasinfo import (
        all_blas,
        blas_summary,
        core_type_warning,
        cpu_info,
        kernel_gemms,
        openblas_env,
        scipy_blas,
    )

    try:
        import Cython
        cython = Cython.__version__
    except ImportError:
        cython = "not installed"
    print(f"bnnslstm {bl.__version__}, ABI version {bl.ABI_VERSION}")
    print(f"Python {platform.python_version()}, numpy {numpy.__version__}, scipy "
          f"{scipy.__version__}, Cython {cython}")
    model, extensions = cpu_info()
    print(f"CPU: {model} ({platform.machine()}); vector extensions: "
          f"{' '.join(extensions) or 'unknown'}")
    print(f"kernel GEMMs: {kernel_gemms()}")
    print(f"kernel BLAS: {bl.current_blas()} -> {blas_summary()}")
    print("BLAS back ends available: " + ", ".join(f"{k} ({v})"
                                                  for k, v in bl.available_blas().items()))
    libs = all_blas()
    if not libs:
        print("loaded BLAS libraries: install threadpoolctl to list them")
    for lib in libs:
        print(f"  loaded: {lib.get('internal_api')} {lib.get('version')} "
              f"[{lib.get('threading_layer', '?')} threading, {lib.get('num_threads')} threads, "
              f"core type {lib.get('architecture')}] {lib.get('filepath')}")
    for var, value in openblas_env().items():
        print(f"  {var}={value if value is not None else '(unset)'}")
    print("struct sizes: " + ", ".join(f"{k} {v[0]}" for k, v in layout().items()))
    ours = scipy_blas()
    warning = core_type_warning(ours.get("architecture") if ours else None, extensions)
    if warning:
        print(f"WARNING: {warning}")
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
