# cython: language_level=3
from bnnslstm._plan cimport LSTMPlan, SeqView, StateView

cdef bint x_in_place(const LSTMPlan *p, int *ldx) noexcept nogil
cdef bint y_in_place(const LSTMPlan *p, const void *frozen, size_t frozen_bytes) noexcept nogil
cdef void gather_seq(const SeqView *v, size_t S, size_t N, size_t E, const LSTMPlan *p,
                     float *dst) noexcept nogil
cdef void scatter_seq(const SeqView *v, size_t S, size_t N, size_t E, const float *src,
                      bint accumulate) noexcept nogil
cdef void load_state(const StateView *v, size_t l, size_t d, size_t N, size_t H,
                     float *dst) noexcept nogil
cdef void store_state(const StateView *v, size_t l, size_t d, size_t N, size_t H,
                      const float *src, bint accumulate) noexcept nogil
