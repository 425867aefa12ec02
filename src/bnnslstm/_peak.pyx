# cython: language_level=3
"""The core's float32 multiply-add peak, for the benchmark's bound (see _peak.h)."""

cdef extern from "_peak.h" nogil:
    int fma_peak_run "bl_fma_peak_run"(long iters)

def fma_flops(long iters) -> int:
    """Run `iters` iterations of 12 independent vector FMA chains without the GIL (so that
    several threads can run at once); returns the flops done."""
    cdef int lanes = 0
    if iters < 0:
        raise ValueError("iters must be >= 0")
    with nogil:
        lanes = fma_peak_run(iters)
    return iters * 12 * 2 * lanes
