# cython: language_level=3
from libc.stdint cimport uint64_t

cdef void set_seed(uint64_t seed) noexcept nogil
cdef uint64_t next_key() noexcept nogil
cdef void fill_mask(uint64_t key, size_t boundary, size_t n, float p,
                    unsigned char *mask) noexcept nogil
cdef void apply_mask(const float *src, const unsigned char *mask, size_t n, float p,
                     float *dst) noexcept nogil
