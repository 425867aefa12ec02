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


def kernel_gemms() -> str:
    """Where the kernels' GEMMs run, in a few words (the back end's BLAS: blas_summary)."""
    from bnnslstm import _blas

    if _blas._own_products():
        return "bnnslstm's own kernel (the forward, and the backward's products)"
    return "bnnslstm's own kernel (the forward); the backward's products on the BLAS"


def openblas_env() -> dict[str, str | None]:
    return {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                           "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}


def all_blas() -> list[dict]:
    """Every BLAS/OpenMP library threadpoolctl finds loaded (empty without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    import scipy.linalg  # noqa: F401
    return threadpool_info()


def cpu_info() -> tuple[str, list[str]]:
    """(CPU model, the vector extensions that matter for BLAS kernels)."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
              "amx_tile", "asimd", "sve")
    return model, [f for f in wanted if f in flags]


# OpenBLAS x86 core types whose sgemm kernels predate AVX2 / AVX-512.
_PRE_AVX2 = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "sandybridge",
             "bulldozer", "piledriver", "steamroller", "excavator", "barcelona", "opteron"}
_PRE_AVX512 = _PRE_AVX2 | {"haswell", "zen"}


def core_type_warning(core: str | None, extensions: list[str]) -> str | None:
    """A warning (with the fix) when OpenBLAS runs older kernels than this CPU supports."""
    if not core:
        return None
    c = core.lower()
    best = "SkylakeX" if "avx512f" in extensions else "Haswell" if "avx2" in extensions else None
    if best is None or (best == "SkylakeX" and c not in _PRE_AVX512) or \
            (best == "Haswell" and c not in _PRE_AVX2):
        return None
    set_by = os.environ.get("OPENBLAS_CORETYPE")
    cause = (f"OPENBLAS_CORETYPE={set_by} forces them" if set_by
             else "its autodetection chose them")
    return (f"OpenBLAS uses its {core} kernels on a CPU with "
            f"{'AVX-512' if best == 'SkylakeX' else 'AVX2'} ({cause}): sgemm runs at about half "
            f"the speed it could. Fix: start Python with OPENBLAS_CORETYPE unset, or set to "
            f"{best}.")
