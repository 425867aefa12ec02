# cython: language_level=3
from bnnslstm._plan cimport LSTMPlan

cdef size_t frozen_capacity(const LSTMPlan *p) noexcept nogil
cdef int frozen_pack(const LSTMPlan *p, void *ptr, size_t capacity) noexcept nogil
cdef int frozen_open(LSTMPlan *p, const void *ptr, size_t capacity) noexcept nogil
cdef const float *frozen_wx(const LSTMPlan *p, size_t l, size_t d) noexcept nogil
cdef const float *frozen_wh(const LSTMPlan *p, size_t l, size_t d) noexcept nogil
