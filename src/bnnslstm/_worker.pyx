# cython: language_level=3
"""Each calling thread's helper thread, kept between calls (_worker.h)."""
from bnnslstm._gemm cimport bl_helper

cdef extern from "_worker.h" nogil:
    int worker_start "bl_helper_start"(bl_helper *h)
    void worker_stop "bl_helper_stop"(bl_helper *h)
    void worker_release_own "bl_worker_release_own"()
    unsigned long workers_started "bl_workers_started"
    long workers_live "bl_workers_live"

cdef int helper_start(bl_helper *h) noexcept nogil:
    """Borrow this thread's worker for a call: 1, or 0 when the call runs on one thread."""
    return worker_start(h)

cdef void helper_stop(bl_helper *h) noexcept nogil:
    """Give the worker back (it spins a while, then parks)."""
    worker_stop(h)

cdef void helper_release() noexcept nogil:
    """Stop and join this thread's worker, if any (the next two-thread call starts another)."""
    worker_release_own()

def _workers() -> tuple[int, int]:
    """(worker threads started so far, worker threads running now) (tests)."""
    return workers_started, workers_live
