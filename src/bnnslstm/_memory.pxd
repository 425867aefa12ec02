# cython: language_level=3
"""Workspace memory through BNNSFilterParameters' allocator callbacks (spec 1.9, 4.4)."""
from libc.stdlib cimport free

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

from bnnslstm.bnns cimport BNNSFilterParameters

cdef enum:
    WS_ALIGN = 64   # bytes: a cache line, and a full AVX-512 vector

cdef inline void *ws_alloc(const BNNSFilterParameters *fp, size_t nbytes) noexcept nogil:
    cdef void *p = NULL
    if nbytes == 0:
        nbytes = WS_ALIGN
    if fp.alloc_memory != NULL:
        if fp.alloc_memory(&p, WS_ALIGN, nbytes) != 0:
            return NULL
        return p
    if posix_memalign(&p, WS_ALIGN, nbytes) != 0:
        return NULL
    return p

cdef inline void ws_free(const BNNSFilterParameters *fp, void *p) noexcept nogil:
    if p == NULL:
        return
    if fp.free_memory != NULL:
        fp.free_memory(p)
    else:
        free(p)
