# cython: language_level=3
from bnnslstm._plan cimport LSTMPlan, WeightView

cdef struct Weights:
    # The [4H x in] / [4H x H] blocks of one (layer, direction), gates i f g o, that the GEMMs
    # read: the caller's memory when the gates are stacked (LSTMPlan.*_stacked), else packed.
    float *wx
    float *wh
    float *wc               # packed storage in the workspace
    const float *wx_cur
    const float *wh_cur
    const float *wc_cur     # NULL when no gate has a full peephole
    int ldwx, ldwh, ldwc
    float *bias             # [4H], zeros where a gate has no bias
    float *pdiag            # [4H], diagonal peepholes (D18)

cdef bint any_full_peephole(const LSTMPlan *p) noexcept nogil
cdef bint weights_regions(const LSTMPlan *p, size_t *off, size_t *o) noexcept nogil
cdef void weights_place(Weights *w, float *base, const size_t *o) noexcept nogil
cdef void load_weights(const LSTMPlan *p, Weights *w, size_t l, size_t d,
                       size_t in_w) noexcept nogil
cdef void scatter_matrix(const WeightView *v, size_t idx, size_t d, const float *src,
                         size_t rows, size_t cols) noexcept nogil
cdef void scatter_vector(const WeightView *v, size_t l, size_t d, const float *src,
                         size_t n) noexcept nogil
