# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Validation (spec section 6, decisions D1 to D5, D9, D15, D18 to D20) and plan building.

Every check runs before anything is written; a failure stores a thread-local message and
returns -1. The checked arithmetic (``mul_ovf``/``add_ovf``) guarantees that every offset the
kernels later compute from the plan fits in ``size_t`` and stays inside the described tensor.
"""
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uintptr_t

from bnnslstm._checked cimport add_ovf, mul_ovf
from bnnslstm.bnns cimport *

cdef extern from *:
    """
    #include <stdarg.h>
    #include <stdio.h>
    static _Thread_local char bl_errbuf[512];
    static int bl_failf(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(bl_errbuf, sizeof bl_errbuf, fmt, ap);
        va_end(ap);
        return -1;
    }
    static const char *bl_errmsg(void) { return bl_errbuf; }
    static void bl_errclear(void) { bl_errbuf[0] = 0; }
    """
    int failf "bl_failf"(const char *fmt, ...) nogil
    const char *bl_errmsg() nogil
    void bl_errclear() nogil

cdef extern from "limits.h":
    const int INT_MAX

cdef extern from "stdio.h":
    int snprintf(char *s, size_t n, const char *fmt, ...) nogil

cdef extern from "stdint.h":
    const int64_t INT64_MAX

# No 64-bit platform maps user memory above 2**57 bytes (x86-64 LA57: 2**56, arm64: 2**52): a
# tensor reaching past it is a stride or size mistake, caught before anything is read.
cdef size_t ADDRESS_LIMIT = (<size_t>1) << 57

# ---------------------------------------------------------------------------------------------
# errors

cdef int set_error(const char *msg) noexcept nogil:
    return failf("%s", msg)

cdef int check_capacity(size_t capacity, size_t need, const char *what,
                        const char *source) noexcept nogil:
    """0 if a caller's buffer of `capacity` bytes holds the `need` bytes that `source` returns
    for these parameters, else -1 with a message (need 0: the parameters were invalid and the
    message is already set)."""
    if need == 0:
        return -1
    if capacity < need:
        return failf("%s is %zu bytes, below the %zu that %s returns for these parameters",
                     what, capacity, need, source)
    return 0

cdef const char *last_error() noexcept nogil:
    return bl_errmsg()

cdef void clear_error() noexcept nogil:
    bl_errclear()

# ---------------------------------------------------------------------------------------------
# checked size arithmetic

cdef bint prod_ovf(const size_t *v, int n, size_t *out) noexcept nogil:
    cdef size_t r = 1
    cdef int k
    for k in range(n):
        if mul_ovf(r, v[k], &r):
            return True
    out[0] = r
    return False

# ---------------------------------------------------------------------------------------------
# descriptors

cdef int check_type(const BNNSNDArrayDescriptor *d, const char *name) noexcept nogil:
    # D9: Float32 only; 0 reads as Float32.
    if d.data_type != 0 and d.data_type != BNNSDataTypeFloat32:
        return failf("%s.data_type is 0x%x, expected BNNSDataTypeFloat32 (0x10020)",
                     name, d.data_type)
    return 0

cdef int check_extent(const BNNSNDArrayDescriptor *d, const char *name, const size_t *want,
                      int rank, size_t *s) noexcept nogil:
    """Sizes (0 = implied), strides (0 = contiguous) and extent of a rank-`rank` view.

    want[k] is the size dimension k must have; s receives the resolved strides.
    Strides must not decrease and dimensions must not overlap, so that distinct logical
    elements are distinct memory (an overlapping output would be written twice).
    """
    cdef int k
    cdef size_t span = 0, term, nbytes
    for k in range(rank):
        if d.size[k] != 0 and d.size[k] != want[k]:
            return failf("%s.size[%d] is %zu, expected %zu", name, k, d.size[k], want[k])
    for k in range(rank):
        if d.stride[k] != 0:
            s[k] = d.stride[k]
        elif k == 0:
            s[k] = 1
        elif mul_ovf(s[k - 1], want[k - 1], &s[k]):
            return failf("%s: contiguous stride[%d] overflows size_t", name, k)
        if k > 0 and s[k] < s[k - 1]:
            return failf("%s.stride[%d] is %zu, smaller than stride[%d] = %zu: "
                         "strides must not decrease", name, k, s[k], k - 1, s[k - 1])
        if want[k] > 1 and k > 0 and s[k] <= span:
            return failf("%s.stride[%d] is %zu but the dimensions below it span %zu elements: "
                         "the tensor is too small for its strides (elements would overlap)",
                         name, k, s[k], span + 1)
        if mul_ovf(want[k] - 1, s[k], &term) or add_ovf(span, term, &span):
            return failf("%s: extent overflows size_t", name)
    if add_ovf(span, 1, &span) or mul_ovf(span, sizeof(float), &nbytes) \
            or add_ovf(<size_t><uintptr_t>d.data, nbytes, &term) or term > ADDRESS_LIMIT:
        return failf("%s: byte extent overflows the address space", name)
    return 0

cdef int layout_rank(uint32_t layout, int natural) noexcept nogil:
    """Rank of an accepted weight/state layout (D3, D4), or -1."""
    if layout == 0:
        return natural
    if layout == BNNSDataLayoutVector or layout == BNNSDataLayout1DLastMajor \
            or layout == BNNSDataLayout1DFirstMajor:
        return 1
    if layout == BNNSDataLayoutRowMajorMatrix or layout == BNNSDataLayout2DLastMajor:
        return 2
    if layout == BNNSDataLayout3DLastMajor:
        return 3
    if layout == BNNSDataLayout4DLastMajor:
        return 4
    return -1

cdef int resolve(const BNNSNDArrayDescriptor *d, const char *name, const size_t *dims, int R,
                 int min_rank, size_t *st) noexcept nogil:
    """Resolve d onto logical dims (fastest first, R of them) into logical strides st.

    A descriptor of lower rank r folds the outer dimensions into its last one:
    size[r-1] = dims[r-1] * ... * dims[R-1] with one uniform stride.
    """
    cdef size_t want[4]
    cdef size_t s[4]
    cdef int r, k
    if check_type(d, name):
        return -1
    r = layout_rank(d.layout, R)
    if r < min_rank or r > R:
        return failf("%s.layout 0x%x is not accepted here (expected 0, a LastMajor layout "
                     "of rank %d to %d, or RowMajorMatrix/Vector)", name, d.layout, min_rank, R)
    for k in range(r - 1):
        want[k] = dims[k]
    if prod_ovf(dims + r - 1, R - r + 1, &want[r - 1]):
        return failf("%s: element count overflows size_t", name)
    if check_extent(d, name, want, r, s):
        return -1
    for k in range(R):
        if k < r:
            st[k] = s[k]
        else:
            st[k] = st[k - 1] * dims[k - 1]
    return 0

cdef int resolve_seq(const BNNSNDArrayDescriptor *d, const char *name, size_t E, size_t N,
                     size_t S, SeqView *v) noexcept nogil:
    """x or y: SNE (default, also layout 0) or NSE (spec 3.4)."""
    cdef size_t want[3]
    cdef size_t s[3]
    if check_type(d, name):
        return -1
    want[0] = E
    if d.layout == 0 or d.layout == BNNSDataLayoutSNE:
        want[1] = N
        want[2] = S
    elif d.layout == BNNSDataLayoutNSE:
        want[1] = S
        want[2] = N
    else:
        return failf("%s.layout 0x%x is not accepted (expected BNNSDataLayoutSNE 0x30001, "
                     "BNNSDataLayoutNSE 0x30002 or 0)", name, d.layout)
    if check_extent(d, name, want, 3, s):
        return -1
    v.data = <float *>d.data
    v.accumulate = d.flags == BNNSNDArrayFlagBackpropAccumulate
    v.se = s[0]
    if d.layout == BNNSDataLayoutNSE:
        v.ss = s[1]
        v.sn = s[2]
    else:
        v.sn = s[1]
        v.ss = s[2]
    return 0

cdef int resolve_state(const BNNSNDArrayDescriptor *d, const char *name,
                       const LSTMPlan *plan, StateView *v) noexcept nogil:
    """h0/c0/hN/cN (D4): logical [L][D][N][H]; data NULL = absent."""
    cdef size_t dims[4]
    cdef size_t st[4]
    v.data = <float *>d.data
    v.accumulate = d.flags == BNNSNDArrayFlagBackpropAccumulate
    if d.data == NULL:
        return 0
    dims[0] = plan.H
    dims[1] = plan.N
    dims[2] = plan.D
    dims[3] = plan.L
    if resolve(d, name, dims, 4, 1, st):
        return -1
    v.sh = st[0]
    v.sn = st[1]
    v.sd = st[2]
    v.sl = st[3]
    return 0

cdef int resolve_weights(const BNNSNDArrayDescriptor *d, const char *name, size_t n_in,
                         size_t H, size_t D, size_t layers, WeightView *w) noexcept nogil:
    """A gate's [layers][D][H][n_in] matrix stack (D3)."""
    cdef size_t dims[4]
    cdef size_t st[4]
    dims[0] = n_in
    dims[1] = H
    dims[2] = D
    dims[3] = layers
    if resolve(d, name, dims, 4, 2, st):
        return -1
    w.data = <float *>d.data
    w.s_in = st[0]
    w.s_out = st[1]
    w.s_dir = st[2]
    w.s_layer = st[3]
    w.accumulate = d.flags == BNNSNDArrayFlagBackpropAccumulate
    return 0

cdef int resolve_vectors(const BNNSNDArrayDescriptor *d, const char *name, size_t H, size_t D,
                         size_t L, WeightView *w) noexcept nogil:
    """A bias or diagonal peephole [L][D][H]."""
    cdef size_t dims[3]
    cdef size_t st[3]
    dims[0] = H
    dims[1] = D
    dims[2] = L
    if resolve(d, name, dims, 3, 1, st):
        return -1
    w.data = <float *>d.data
    w.s_in = 0
    w.s_out = st[0]
    w.s_dir = st[1]
    w.s_layer = st[2]
    w.accumulate = d.flags == BNNSNDArrayFlagBackpropAccumulate
    return 0

# ---------------------------------------------------------------------------------------------
# gates

cdef bint is_elementwise(uint32_t f) noexcept nogil:
    # D19: vector, random, integer and per-channel functions cannot act on a gate.
    if f > BNNSActivationFunctionGELUApproximationSigmoid:
        return False
    return not (f == BNNSActivationFunctionIntegerLinearSaturate
                or f == BNNSActivationFunctionIntegerLinearSaturatePerChannel
                or f == BNNSActivationFunctionSoftmax
                or f == BNNSActivationFunctionGumbel
                or f == BNNSActivationFunctionGumbelMax
                or f == BNNSActivationFunctionLogSoftmax
                or f == BNNSActivationFunctionPReLUPerChannel)

cdef int resolve_act(const BNNSActivation *a, const char *name, uint32_t default_fn,
                     bint use_default, Act *out) noexcept nogil:
    if use_default:
        out.function = default_fn
        out.alpha = 0
        out.beta = 0
        return 0
    if not is_elementwise(a.function):
        return failf("%s.function %u is not an elementwise activation (Softmax, LogSoftmax, "
                     "Gumbel, GumbelMax, integer and per-channel functions are rejected)",
                     name, a.function)
    out.function = a.function
    out.alpha = a.alpha
    out.beta = a.beta
    return 0

cdef const char *GATE_NAMES[4]
GATE_NAMES[0] = b"input_gate"
GATE_NAMES[1] = b"forget_gate"
GATE_NAMES[2] = b"candidate_gate"
GATE_NAMES[3] = b"output_gate"

cdef int resolve_gate(const BNNSLSTMGateDescriptor *g, int k, bint default_acts,
                      LSTMPlan *plan) noexcept nogil:
    """Gate k: its weights (D1, D3), peephole (D16, D18), bias and activation (D14, D19)."""
    cdef GatePlan *gp = &plan.gate[k]
    cdef char name[64]
    cdef const char *gname = GATE_NAMES[k]
    cdef size_t H = plan.H, D = plan.D, L = plan.L, I = plan.In
    cdef bint own_wx1 = L > 1 and g.iw_desc[1].data != NULL and g.iw_desc[1].data != g.iw_desc[0].data

    # D1: iw_desc[0] holds layer 0, or every layer when iw_desc[1] is not used.
    snprintf(name, sizeof(name), "%s.iw_desc[0]", gname)
    if g.iw_desc[0].data == NULL:
        return failf("%s.data is NULL (input weights are required)", name)
    if not own_wx1 and L > 1 and plan.W1 != I:
        return failf("%s.iw_desc[1].data is NULL or equal to iw_desc[0].data, but layers >= 1 "
                     "have input width %zu != input_size %zu: give their weights in iw_desc[1]",
                     gname, plan.W1, I)
    if resolve_weights(&g.iw_desc[0], name, I, H, D, 1 if own_wx1 else L, &gp.wx0):
        return -1
    gp.wx1.data = NULL
    if own_wx1:
        snprintf(name, sizeof(name), "%s.iw_desc[1]", gname)
        if resolve_weights(&g.iw_desc[1], name, plan.W1, H, D, L - 1, &gp.wx1):
            return -1

    snprintf(name, sizeof(name), "%s.hw_desc", gname)
    if g.hw_desc.data == NULL:
        return failf("%s.data is NULL (recurrent weights are required)", name)
    if resolve_weights(&g.hw_desc, name, H, H, D, L, &gp.wh):
        return -1

    # Peephole: NULL = none; rank-1 layout = diagonal (D18); otherwise the full matrix.
    snprintf(name, sizeof(name), "%s.cw_desc", gname)
    gp.peephole = PEEP_NONE
    gp.wc.data = NULL
    if g.cw_desc.data != NULL:
        if layout_rank(g.cw_desc.layout, 4) == 1:
            gp.peephole = PEEP_DIAG
            if resolve_vectors(&g.cw_desc, name, H, D, L, &gp.wc):
                return -1
        else:
            gp.peephole = PEEP_FULL
            if resolve_weights(&g.cw_desc, name, H, H, D, L, &gp.wc):
                return -1

    snprintf(name, sizeof(name), "%s.b_desc", gname)
    gp.b.data = NULL
    if g.b_desc.data != NULL and resolve_vectors(&g.b_desc, name, H, D, L, &gp.b):
        return -1

    snprintf(name, sizeof(name), "%s.activation", gname)
    if resolve_act(&g.activation, name,
                   BNNSActivationFunctionTanh if k == GATE_G else BNNSActivationFunctionSigmoid,
                   default_acts, &gp.act):
        return -1
    return 0

# ---------------------------------------------------------------------------------------------
# sequence descriptor (D5)

cdef inline int64_t read_count(const void *data, uint32_t typ, size_t i) noexcept nogil:
    cdef uint64_t u
    if typ == BNNSDataTypeUInt64:   # saturate: anything that large is rejected as > N
        u = (<const uint64_t *>data)[i]
        return <int64_t>u if u < <uint64_t>INT64_MAX else INT64_MAX
    if typ == BNNSDataTypeInt32:
        return (<const int32_t *>data)[i]
    if typ == BNNSDataTypeInt64:
        return (<const int64_t *>data)[i]
    return (<const uint32_t *>data)[i]

cdef size_t batch_at(const LSTMPlan *plan, size_t t) noexcept nogil:
    if plan.seq_data == NULL:
        return plan.N
    return <size_t>read_count(plan.seq_data, plan.seq_type, t * plan.seq_stride)

cdef bint full_peephole_run(const LSTMPlan *plan, int *k, int *k2) noexcept nogil:
    """The next run [k, k2) of adjacent gates i, f, g with full peepholes, from *k on (their
    products with a cell state are one GEMM); False when there is none."""
    while k[0] < GATE_O and plan.gate[k[0]].peephole != PEEP_FULL:
        k[0] += 1
    k2[0] = k[0]
    while k2[0] < GATE_O and plan.gate[k2[0]].peephole == PEEP_FULL:
        k2[0] += 1
    return k2[0] > k[0]

cdef int resolve_sequence(const BNNSNDArrayDescriptor *d, LSTMPlan *plan) noexcept nogil:
    cdef size_t want = plan.S, s = 0, t, nbytes
    cdef int64_t v, prev
    cdef uint32_t typ = d.data_type
    cdef size_t elsize
    plan.seq_data = NULL
    if d.data == NULL or plan.S == 1:   # spec 3.4: ignored for S == 1 or NULL data
        return 0
    if typ == 0:
        typ = BNNSDataTypeUInt32
    if typ == BNNSDataTypeUInt32 or typ == BNNSDataTypeInt32:
        elsize = 4
    elif typ == BNNSDataTypeUInt64 or typ == BNNSDataTypeInt64:
        elsize = 8
    else:
        return failf("sequence_descriptor.data_type is 0x%x, expected UInt32 (0x40020, or 0), "
                     "UInt64 (0x40040), Int32 (0x20020) or Int64 (0x20040)", d.data_type)
    if layout_rank(d.layout, 1) != 1:
        return failf("sequence_descriptor.layout 0x%x is not accepted (expected 0 or "
                     "BNNSDataLayoutVector)", d.layout)
    # check_extent counts 4-byte elements; 8-byte counts need their own byte check.
    if check_extent(d, b"sequence_descriptor", &want, 1, &s):
        return -1
    if mul_ovf((plan.S - 1) * s + 1, elsize, &nbytes) \
            or add_ovf(<size_t><uintptr_t>d.data, nbytes, &t) or t > ADDRESS_LIMIT:
        return failf("sequence_descriptor: byte extent overflows the address space")
    prev = <int64_t>plan.N
    for t in range(plan.S):
        v = read_count(d.data, typ, t * s)
        if v > <int64_t>plan.N:
            return failf("sequence_descriptor[%zu] is %lld, larger than batch_size %zu",
                         t, <long long>v, plan.N)
        if v < 0:
            return failf("sequence_descriptor[%zu] is %lld, negative", t, <long long>v)
        if v > prev:
            return failf("sequence_descriptor[%zu] is %lld, larger than the step before "
                         "(%lld): batch sizes must not increase (sort samples by descending "
                         "length)", t, <long long>v, <long long>prev)
        prev = v
    plan.seq_data = d.data
    plan.seq_type = typ
    plan.seq_stride = s
    return 0

# ---------------------------------------------------------------------------------------------
# the whole call

cdef int check_scalars(const BNNSLayerParametersLSTM *p, LSTMPlan *plan) noexcept nogil:
    cdef size_t t
    if p.input_size == 0:
        return failf("input_size is 0")
    if p.hidden_size == 0:
        return failf("hidden_size is 0")
    if p.batch_size == 0:
        return failf("batch_size is 0")
    if p.num_layers == 0:
        return failf("num_layers is 0")
    if p.seq_len == 0:
        return failf("seq_len is 0")
    if p.lstm_flags & ~<uint32_t>(BNNSLayerFlagsLSTMBidirectional
                                  | BNNSLayerFlagsLSTMDefaultActivations):
        return failf("lstm_flags 0x%x has unknown bits (only Bidirectional 0x1 and "
                     "DefaultActivations 0x2 exist)", p.lstm_flags)
    if not (p.dropout >= 0 and p.dropout < 1):
        return failf("dropout is %g, expected 0 <= dropout < 1", <double>p.dropout)
    plan.In = p.input_size
    plan.H = p.hidden_size
    plan.N = p.batch_size
    plan.L = p.num_layers
    plan.S = p.seq_len
    plan.D = 2 if p.lstm_flags & BNNSLayerFlagsLSTMBidirectional else 1
    plan.W1 = plan.D * plan.H
    plan.dropout = p.dropout
    # The GEMMs take int dimensions (BLAS LP64): rows S*N, columns 4*H, depth I or D*H.
    if mul_ovf(plan.S, plan.N, &t) or t > <size_t>INT_MAX or plan.H > <size_t>(INT_MAX // 4) \
            or plan.In > <size_t>INT_MAX:
        return failf("seq_len*batch_size (%zu*%zu), 4*hidden_size (4*%zu) and input_size (%zu) "
                     "must each fit in a 32-bit BLAS int", plan.S, plan.N, plan.H, plan.In)
    return 0

cdef int check_filter(const BNNSFilterParameters *fp, LSTMPlan *plan) noexcept nogil:
    plan.n_threads = 0
    plan.filter.flags = 0
    plan.filter.n_threads = 0
    plan.filter.alloc_memory = NULL
    plan.filter.free_memory = NULL
    if fp == NULL:
        return 0
    if (fp.alloc_memory == NULL) != (fp.free_memory == NULL):
        return failf("filter_params: alloc_memory and free_memory must be given together")
    plan.filter = fp[0]
    plan.n_threads = fp.n_threads
    return 0

cdef int plan_forward(const BNNSLayerParametersLSTM *p, const BNNSFilterParameters *fp,
                      LSTMPlan *plan) noexcept nogil:
    cdef int k
    cdef bint defaults
    cdef size_t DH
    if p == NULL:
        return failf("layer_params is NULL")
    if check_scalars(p, plan) or check_filter(fp, plan):
        return -1
    plan.frozen = NULL
    DH = plan.D * plan.H
    if p.input_descriptor.data_desc.data == NULL:
        return failf("input_descriptor.data_desc.data is NULL (x is required)")
    if resolve_seq(&p.input_descriptor.data_desc, b"input_descriptor.data_desc",
                   plan.In, plan.N, plan.S, &plan.x):
        return -1
    plan.y.data = NULL   # NULL y: the sequence output is not written
    if p.output_descriptor.data_desc.data != NULL and resolve_seq(
            &p.output_descriptor.data_desc, b"output_descriptor.data_desc",
            DH, plan.N, plan.S, &plan.y):
        return -1
    if resolve_state(&p.input_descriptor.hidden_desc, b"input_descriptor.hidden_desc",
                     plan, &plan.h0) \
            or resolve_state(&p.input_descriptor.cell_state_desc,
                             b"input_descriptor.cell_state_desc", plan, &plan.c0) \
            or resolve_state(&p.output_descriptor.hidden_desc, b"output_descriptor.hidden_desc",
                             plan, &plan.hn) \
            or resolve_state(&p.output_descriptor.cell_state_desc,
                             b"output_descriptor.cell_state_desc", plan, &plan.cn):
        return -1
    defaults = (p.lstm_flags & BNNSLayerFlagsLSTMDefaultActivations) != 0
    if resolve_gate(&p.input_gate, GATE_I, defaults, plan) \
            or resolve_gate(&p.forget_gate, GATE_F, defaults, plan) \
            or resolve_gate(&p.candidate_gate, GATE_G, defaults, plan) \
            or resolve_gate(&p.output_gate, GATE_O, defaults, plan):
        return -1
    if resolve_act(&p.hidden_activation, b"hidden_activation", BNNSActivationFunctionTanh,
                   defaults, &plan.hidden_act):
        return -1
    find_stacked(plan)
    return resolve_sequence(&p.sequence_descriptor, plan)

cdef bint stacked(const LSTMPlan *plan, size_t field) noexcept nogil:
    """Do the four gates' WeightViews at byte offset `field` of GatePlan form one row block?"""
    cdef const WeightView *w0 = <const WeightView *>(<const char *>&plan.gate[0] + field)
    cdef const WeightView *w
    cdef int k
    if w0.data == NULL or w0.s_in != 1 or w0.s_out > <size_t>INT_MAX:
        return False
    for k in range(1, NGATES):
        w = <const WeightView *>(<const char *>&plan.gate[k] + field)
        if w.s_in != 1 or w.s_out != w0.s_out or w.s_dir != w0.s_dir \
                or w.s_layer != w0.s_layer or w.data != w0.data + k * plan.H * w0.s_out:
            return False
    return True

cdef void find_stacked(LSTMPlan *plan) noexcept nogil:
    cdef GatePlan g
    cdef int k
    cdef bint full = True
    for k in range(NGATES):
        full = full and plan.gate[k].peephole == PEEP_FULL
    plan.wx0_stacked = stacked(plan, <size_t>(<char *>&g.wx0 - <char *>&g))
    plan.wx1_stacked = stacked(plan, <size_t>(<char *>&g.wx1 - <char *>&g))
    plan.wh_stacked = stacked(plan, <size_t>(<char *>&g.wh - <char *>&g))
    plan.wc_stacked = full and stacked(plan, <size_t>(<char *>&g.wc - <char *>&g))

# ---------------------------------------------------------------------------------------------
# the backward call's gradient descriptors (D7, D8)

cdef int check_flags(const BNNSNDArrayDescriptor *d, const char *name) noexcept nogil:
    if d.data != NULL and d.flags != BNNSNDArrayFlagBackpropSet \
            and d.flags != BNNSNDArrayFlagBackpropAccumulate:
        return failf("%s.flags is 0x%x, expected BNNSNDArrayFlagBackpropSet (0) or "
                     "BNNSNDArrayFlagBackpropAccumulate (1)", name, d.flags)
    return 0

cdef int resolve_grad_gate(const BNNSLSTMGateDescriptor *g, int k, const LSTMPlan *plan,
                           GradGate *gg) noexcept nogil:
    """Gradients take the shapes of the forward tensors: the same iw_desc split (D1), the
    forward's peephole kind; a peephole or bias the forward lacks has no gradient."""
    cdef const GatePlan *gp = &plan.gate[k]
    cdef char name[96]
    cdef const char *gname = GATE_NAMES[k]
    cdef size_t H = plan.H, D = plan.D, L = plan.L
    cdef bint own_wx1 = gp.wx1.data != NULL
    gg.dwx0.data = gg.dwx1.data = gg.dwh.data = gg.dwc.data = gg.db.data = NULL
    snprintf(name, sizeof(name), "layer_delta_params.%s.iw_desc[0]", gname)
    if g.iw_desc[0].data != NULL and (check_flags(&g.iw_desc[0], name) or resolve_weights(
            &g.iw_desc[0], name, plan.In, H, D, 1 if own_wx1 else L, &gg.dwx0)):
        return -1
    snprintf(name, sizeof(name), "layer_delta_params.%s.iw_desc[1]", gname)
    if own_wx1 and g.iw_desc[1].data != NULL:
        if g.iw_desc[1].data == g.iw_desc[0].data:
            return failf("%s.data equals iw_desc[0].data, but the forward parameters keep "
                         "layers >= 1 in their own iw_desc[1]: give their gradient its own "
                         "buffer", name)
        if check_flags(&g.iw_desc[1], name) or resolve_weights(
                &g.iw_desc[1], name, plan.W1, H, D, L - 1, &gg.dwx1):
            return -1
    snprintf(name, sizeof(name), "layer_delta_params.%s.hw_desc", gname)
    if g.hw_desc.data != NULL and (check_flags(&g.hw_desc, name)
                                   or resolve_weights(&g.hw_desc, name, H, H, D, L, &gg.dwh)):
        return -1
    snprintf(name, sizeof(name), "layer_delta_params.%s.cw_desc", gname)
    if g.cw_desc.data != NULL and gp.peephole != PEEP_NONE:
        if check_flags(&g.cw_desc, name):
            return -1
        if gp.peephole == PEEP_DIAG and resolve_vectors(&g.cw_desc, name, H, D, L, &gg.dwc):
            return -1
        if gp.peephole == PEEP_FULL and resolve_weights(&g.cw_desc, name, H, H, D, L, &gg.dwc):
            return -1
    snprintf(name, sizeof(name), "layer_delta_params.%s.b_desc", gname)
    if g.b_desc.data != NULL and gp.b.data != NULL and (
            check_flags(&g.b_desc, name) or resolve_vectors(&g.b_desc, name, H, D, L, &gg.db)):
        return -1
    return 0

cdef int plan_backward(const BNNSLayerParametersLSTM *p, const BNNSLayerParametersLSTM *dp,
                       const BNNSFilterParameters *fp, LSTMPlan *plan,
                       GradPlan *grad) noexcept nogil:
    """The forward plan, plus the gradients of layer_delta_params (D8: its scalars, flags and
    activations are not read; layer_params' are)."""
    cdef const BNNSLSTMDataDescriptor *i
    cdef const BNNSLSTMDataDescriptor *o
    if plan_forward(p, fp, plan):
        return -1
    if dp == NULL:
        return failf("layer_delta_params is NULL")
    i = &dp.input_descriptor
    o = &dp.output_descriptor
    grad.dy.data = grad.dx.data = NULL
    if o.data_desc.data != NULL and resolve_seq(
            &o.data_desc, b"layer_delta_params.output_descriptor.data_desc", plan.D * plan.H,
            plan.N, plan.S, &grad.dy):
        return -1
    if i.data_desc.data != NULL and (
            check_flags(&i.data_desc, b"layer_delta_params.input_descriptor.data_desc")
            or resolve_seq(&i.data_desc, b"layer_delta_params.input_descriptor.data_desc",
                           plan.In, plan.N, plan.S, &grad.dx)):
        return -1
    if resolve_state(&o.hidden_desc, b"layer_delta_params.output_descriptor.hidden_desc",
                     plan, &grad.dhn) \
            or resolve_state(&o.cell_state_desc,
                             b"layer_delta_params.output_descriptor.cell_state_desc", plan,
                             &grad.dcn) \
            or check_flags(&i.hidden_desc, b"layer_delta_params.input_descriptor.hidden_desc") \
            or resolve_state(&i.hidden_desc, b"layer_delta_params.input_descriptor.hidden_desc",
                             plan, &grad.dh0) \
            or check_flags(&i.cell_state_desc,
                           b"layer_delta_params.input_descriptor.cell_state_desc") \
            or resolve_state(&i.cell_state_desc,
                             b"layer_delta_params.input_descriptor.cell_state_desc", plan,
                             &grad.dc0):
        return -1
    if resolve_grad_gate(&dp.input_gate, GATE_I, plan, &grad.gate[GATE_I]) \
            or resolve_grad_gate(&dp.forget_gate, GATE_F, plan, &grad.gate[GATE_F]) \
            or resolve_grad_gate(&dp.candidate_gate, GATE_G, plan, &grad.gate[GATE_G]) \
            or resolve_grad_gate(&dp.output_gate, GATE_O, plan, &grad.gate[GATE_O]):
        return -1
    return 0

# ---------------------------------------------------------------------------------------------
# plan accessors used by the kernels

cdef float *weight_ptr(const WeightView *w, size_t layer, size_t d) noexcept nogil:
    return w.data + layer * w.s_layer + d * w.s_dir

cdef const WeightView *input_weights(const GatePlan *g, size_t layer,
                                     size_t *index) noexcept nogil:
    """D1: which tensor, and which index in it, holds layer `layer`'s input weights."""
    if layer > 0 and g.wx1.data != NULL:
        index[0] = layer - 1
        return &g.wx1
    index[0] = layer
    return &g.wx0
