"""Choosing the BLAS back end of the kernels at run time (one process, several back ends).

    bnnslstm.set_blas("openblas32")          # by name, for back ends found installed
    bnnslstm.set_blas("/path/libblas.so")    # any Fortran-ABI sgemm (sgemm_, scipy_sgemm_, ...)
    with bnnslstm.blas("mkl"): ...           # temporarily
    bnnslstm.set_blas("scipy")               # scipy's cython_blas for every GEMM
    bnnslstm.set_blas("auto")                # back to the default

The default, "auto", is scipy's cython_blas, except that on x86-64 CPUs with AVX-512 or AVX2 the
backward's whole-sequence products (dX, dW_x, dW_h) run on the library's own blocked kernel,
which is faster than OpenBLAS there (BENCHMARKS.md). Any other choice sends those products to
the chosen BLAS too, so that back ends can be compared. (The forward never calls a BLAS.)

The back end must take 32-bit integers (LP64), as scipy's cython_blas does.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bnnslstm import _blas
from bnnslstm._api import BNNSError

_SYMBOLS = ("sgemm_", "scipy_sgemm_", "sgemm")      # tried in this order when not given
_loaded: dict[str, ctypes.CDLL] = {}                # keeps selected libraries loaded
_current = "auto"


def _openblas32() -> str | None:
    try:
        import scipy_openblas32
    except ImportError:
        return None
    lib = Path(scipy_openblas32.get_lib_dir())
    found = sorted(lib.glob(f"lib{scipy_openblas32.get_library()}*.so*")) + \
        sorted(lib.glob(f"lib{scipy_openblas32.get_library()}*.dylib"))
    return str(found[0]) if found else None


def _mkl() -> str | None:
    """libmkl_rt from the `mkl` package (installed into the environment's lib directory)."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*"))) + \
            sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt*.dylib")))
        if found:
            return found[0]
    return None


_FINDERS = {"openblas32": _openblas32, "mkl": _mkl}


def available_blas() -> dict[str, str]:
    """Back ends usable by name: {"auto": ..., "scipy": "scipy.linalg.cython_blas", name: library
    path}."""
    auto = "scipy.linalg.cython_blas" + (", the backward's products on bnnslstm's own kernel"
                                         if _blas._kernel_available() else "")
    found = {"auto": auto, "scipy": "scipy.linalg.cython_blas"}
    for name, finder in _FINDERS.items():
        path = finder()
        if path:
            found[name] = path
    return found


def current_blas() -> str:
    """The name or path given to the last set_blas ("auto" by default)."""
    return _current


def set_blas(name_or_path: str, symbol: str | None = None) -> None:
    """Make every GEMM of the kernels call this back end's sgemm (see the module docstring)."""
    global _current
    if name_or_path in ("auto", "scipy"):
        _blas._select(0, name_or_path == "auto")
        _current = name_or_path
        return
    path = name_or_path
    if name_or_path in _FINDERS:
        path = _FINDERS[name_or_path]()
        if path is None:
            raise BNNSError(f"BLAS back end {name_or_path!r} is not installed (available: "
                            f"{', '.join(available_blas())})")
    try:
        lib = _loaded.get(path) or ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_LOCAL", 0))
    except OSError as e:
        raise BNNSError(f"cannot load BLAS library {path!r}: {e}") from None
    for sym in ((symbol,) if symbol else _SYMBOLS):
        try:
            fn = getattr(lib, sym)
        except AttributeError:
            continue
        _loaded[path] = lib
        _blas._select(ctypes.cast(fn, ctypes.c_void_p).value)
        _current = name_or_path
        return
    raise BNNSError(f"{path!r} exports none of {', '.join((symbol,) if symbol else _SYMBOLS)}")


@contextmanager
def blas(name_or_path: str, symbol: str | None = None) -> Iterator[None]:
    """set_blas for the duration of a with-block, then back to the previous back end."""
    global _current
    previous, previous_address, previous_own = _current, _blas._current_address(), _blas._own()
    set_blas(name_or_path, symbol)
    try:
        yield
    finally:
        _blas._select(previous_address, previous_own)
        _current = previous
