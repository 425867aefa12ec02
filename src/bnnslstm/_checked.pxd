# cython: language_level=3
"""Overflow-checked size_t arithmetic: every size the library computes goes through these."""

cdef extern from "stdint.h":
    const size_t SIZE_MAX

cdef inline bint mul_ovf(size_t a, size_t b, size_t *out) noexcept nogil:
    """out = a * b; True (out untouched) if it overflows."""
    if a != 0 and b > SIZE_MAX // a:
        return True
    out[0] = a * b
    return False

cdef inline bint add_ovf(size_t a, size_t b, size_t *out) noexcept nogil:
    """out = a + b; True (out untouched) if it overflows."""
    if b > SIZE_MAX - a:
        return True
    out[0] = a + b
    return False
