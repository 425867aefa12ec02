# cython: language_level=3
from libc.stdint cimport uint64_t

from bnnslstm._plan cimport LSTMPlan

cdef struct Cache:
    # The training cache (D10) of one call, at its 64-byte aligned base.
    char *base
    bint dropout          # masks present: dropout > 0 and num_layers > 1
    size_t pre, cell, y, mask, end    # byte offsets of the regions from base
    uint64_t key          # dropout key of the forward call that filled it

cdef bint dropout_active(const LSTMPlan *p) noexcept nogil
cdef int cache_layout(const LSTMPlan *p, Cache *c) noexcept nogil
cdef size_t cache_capacity(const LSTMPlan *p) noexcept nogil
cdef int cache_open(const LSTMPlan *p, void *ptr, size_t capacity, Cache *c) noexcept nogil
cdef void cache_seal(const LSTMPlan *p, Cache *c) noexcept nogil
cdef int cache_check(const LSTMPlan *p, Cache *c) noexcept nogil
cdef float *cache_pre(const LSTMPlan *p, const Cache *c, size_t l, size_t d) noexcept nogil
cdef float *cache_cell(const LSTMPlan *p, const Cache *c, size_t l, size_t d) noexcept nogil
cdef float *cache_y(const LSTMPlan *p, const Cache *c, size_t l) noexcept nogil
cdef unsigned char *cache_mask(const LSTMPlan *p, const Cache *c, size_t l) noexcept nogil
