# cython: language_level=3
"""Vectorizable elementwise math (spec section 2.3) and the denormal guard, from _activations.h."""
from libc.stdint cimport uint32_t

cdef extern from "_activations.h" nogil:
    ctypedef unsigned long long bl_fpstate "bl_fpstate"
    void activation_row "bl_activation_row"(uint32_t fn, float alpha, float beta, float *v,
                                            size_t n)
    void activation_grad_row "bl_activation_grad_row"(uint32_t fn, float alpha, float beta,
                                                      const float *pre, float *val, float *der,
                                                      size_t n)
    bl_fpstate ftz_enter "bl_ftz_enter"()
    void ftz_leave "bl_ftz_leave"(bl_fpstate s)
