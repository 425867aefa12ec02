# cython: language_level=3
"""The plan: a validated, resolved view of one BNNS LSTM call.

Validation (spec section 6) turns raw descriptors into strided views with every size and
stride known, so that the kernels never look at a descriptor again.
"""
from libc.stdint cimport uint32_t

from bnnslstm.bnns cimport BNNSFilterParameters, BNNSLayerParametersLSTM, BNNSNDArrayDescriptor

cdef enum:
    GATE_I = 0   # gate order of the struct: input, forget, candidate, output
    GATE_F = 1
    GATE_G = 2
    GATE_O = 3
    NGATES = 4

    PEEP_NONE = 0
    PEEP_FULL = 1   # H x H matrix per (layer, direction)
    PEEP_DIAG = 2   # D18: H vector per (layer, direction)

cdef struct SeqView:
    # x or y: element (t, n, e) at data[e*se + n*sn + t*ss]
    float *data
    size_t se, sn, ss
    bint accumulate

cdef struct StateView:
    # h0/c0/hN/cN, logical [L][D][N][H]; data NULL = absent
    float *data
    size_t sh, sn, sd, sl
    bint accumulate

cdef struct WeightView:
    # one gate's tensor [L][D][out][in] (bias/diagonal peephole: [L][D][out]); data NULL = absent
    float *data
    size_t s_in, s_out, s_dir, s_layer
    bint accumulate

cdef struct Act:
    uint32_t function
    float alpha, beta

cdef struct GatePlan:
    WeightView wx0    # iw_desc[0]
    WeightView wx1    # iw_desc[1] for layers >= 1 (D1); data NULL = read wx0 at index l
    WeightView wh
    WeightView wc
    int peephole      # PEEP_*
    WeightView b
    Act act

cdef struct LSTMPlan:
    size_t In, H, N, L, S, D     # In = I (input_size): "I" is a macro of <complex.h>
    size_t W1                     # input width of layers >= 1 (D2)
    float dropout
    SeqView x, y
    StateView h0, c0, hn, cn
    GatePlan gate[4]
    # The four gates' matrices already form one [4H x in] row-major block (gate k's rows
    # follow gate k-1's at the same row stride): the kernels then use them in place.
    bint wx0_stacked, wx1_stacked, wh_stacked, wc_stacked
    Act hidden_act
    # sequence_descriptor (D5); seq_data NULL = every step runs all N samples
    const void *seq_data
    uint32_t seq_type
    size_t seq_stride
    # W_x, W_h panels packed before the call (_frozen), or NULL: the call packs them
    const float *frozen
    # filter parameters
    size_t n_threads
    BNNSFilterParameters filter

cdef struct GradGate:
    # one gate's gradient outputs (D7, D8); data NULL = not computed
    WeightView dwx0, dwx1, dwh, dwc, db

cdef struct GradPlan:
    SeqView dy            # incoming dL/dy (NULL = 0)
    StateView dhn, dcn    # incoming dL/dh_n, dL/dc_n (NULL = 0)
    SeqView dx            # outgoing dL/dx
    StateView dh0, dc0    # outgoing dL/dh0, dL/dc0
    GradGate gate[4]

cdef int plan_backward(const BNNSLayerParametersLSTM *p, const BNNSLayerParametersLSTM *dp,
                       const BNNSFilterParameters *fp, LSTMPlan *plan,
                       GradPlan *grad) noexcept nogil
cdef int plan_forward(const BNNSLayerParametersLSTM *p, const BNNSFilterParameters *fp,
                      LSTMPlan *plan) noexcept nogil
cdef size_t batch_at(const LSTMPlan *plan, size_t t) noexcept nogil
cdef bint full_peephole_run(const LSTMPlan *plan, int *k, int *k2) noexcept nogil
cdef float *weight_ptr(const WeightView *w, size_t layer, size_t d) noexcept nogil
cdef const WeightView *input_weights(const GatePlan *g, size_t layer, size_t *index) noexcept nogil

# Thread-local error message (D20).
cdef int set_error(const char *msg) noexcept nogil
# A caller's buffer (training cache, packed weights) against the size its capacity function
# returns.
cdef int check_capacity(size_t capacity, size_t need, const char *what,
                        const char *source) noexcept nogil
cdef const char *last_error() noexcept nogil
cdef void clear_error() noexcept nogil
