# cython: language_level=3
"""Each calling thread's helper thread, kept between calls (_worker.h), in one module so that
every kernel module borrows the same one."""
from bnnslstm._gemm cimport bl_helper

cdef int helper_start(bl_helper *h) noexcept nogil
cdef void helper_stop(bl_helper *h) noexcept nogil
cdef void helper_release() noexcept nogil
