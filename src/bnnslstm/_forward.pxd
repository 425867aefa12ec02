# cython: language_level=3
from bnnslstm._cache cimport Cache
from bnnslstm._plan cimport LSTMPlan

cdef int forward_workspace_bytes(const LSTMPlan *p, size_t *nbytes) noexcept nogil
cdef int lstm_forward(const LSTMPlan *p, void *workspace, Cache *cache) noexcept nogil
cdef bint use_helper(const LSTMPlan *p) noexcept nogil
cdef int direction_lanes(const LSTMPlan *p) noexcept nogil
cdef bint default_cell(const LSTMPlan *p) noexcept nogil
cdef long allowed_threads(const LSTMPlan *p) noexcept nogil
