# cython: language_level=3
from bnnslstm._cache cimport Cache
from bnnslstm._plan cimport GradPlan, LSTMPlan

cdef int backward_workspace_bytes(const LSTMPlan *p, size_t *nbytes) noexcept nogil
cdef int lstm_backward(const LSTMPlan *p, const GradPlan *gr, const Cache *cache,
                       void *workspace) noexcept nogil
