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

cdef inline bint region(size_t *off, size_t a, size_t b, size_t c, size_t *start) noexcept nogil:
    """Reserve a*b*c floats at *off (rounded up to 64 bytes) for a workspace region whose start
    (in floats) goes to *start; True on overflow."""
    cdef size_t n
    if mul_ovf(a, b, &n) or mul_ovf(n, c, &n) or add_ovf(n, 15, &n):
        return True
    start[0] = off[0]
    return add_ovf(off[0], n & ~(<size_t>15), off)
