"""What BLAS the kernels run on, for the CLI and the benchmarks."""

from __future__ import annotations

import os


def scipy_blas() -> dict | None:
    """threadpoolctl's record of the BLAS scipy loaded (the one cython_blas calls), if known.

    numpy may bundle another OpenBLAS (its file name also contains 'scipy_openblas'), so the
    library is picked by its location inside the scipy distribution.
    """
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for lib in threadpool_info():
        path = lib.get("filepath", "")
        if lib.get("user_api") == "blas" and ("scipy.libs" in path
                                              or f"{os.sep}scipy{os.sep}" in path):
            return lib
    return None


def blas_summary() -> str:
    """One line: scipy's BLAS, with core type and threads when threadpoolctl is installed."""
    import scipy

    lib = scipy_blas()
    if lib is not None:
        return (f"{lib['internal_api']} {lib.get('version')} (core type "
                f"{lib.get('architecture')}, {lib['num_threads']} threads) via scipy "
                f"{scipy.__version__}")
    cfg = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return f"{cfg.get('name')} {cfg.get('version')} via scipy {scipy.__version__}"


def openblas_env() -> dict[str, str | None]:
    return {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                           "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
