# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Weights of one (layer, direction) as GEMM-ready blocks (DESIGN step 2), and gradients back
into the caller's per-gate tensors."""
from libc.string cimport memcpy, memset

from bnnslstm._checked cimport region
from bnnslstm._plan cimport (
    NGATES, PEEP_DIAG, PEEP_FULL, GatePlan, input_weights, weight_ptr,
)

cdef bint any_full_peephole(const LSTMPlan *p) noexcept nogil:
    cdef int k
    for k in range(NGATES):
        if p.gate[k].peephole == PEEP_FULL:
            return True
    return False

cdef bint wx_in_place(const LSTMPlan *p, size_t l) noexcept nogil:
    """Are layer l's input weights of all four gates one stacked block in the caller's memory?"""
    cdef int k
    if l == 0:
        return p.wx0_stacked
    if p.wx1_stacked:
        return True
    for k in range(NGATES):       # D1: every gate must read iw_desc[0] for this layer
        if p.gate[k].wx1.data != NULL:
            return False
    return p.wx0_stacked

cdef bint weights_regions(const LSTMPlan *p, size_t *off, size_t *o) noexcept nogil:
    """Reserve the packing regions (o[0..4]: wx, wh, wc, bias, pdiag); True on overflow."""
    cdef size_t H4 = 4 * p.H, win = 0, l
    cdef bint frozen = p.frozen != NULL   # W_x, W_h are in panels already
    for l in range(p.L):     # widest layer whose input weights need packing
        if not wx_in_place(p, l) and not frozen:
            win = max(win, p.In if l == 0 else p.W1)
    return region(off, H4, win, 1, &o[0]) \
        or region(off, H4, 0 if p.wh_stacked or frozen else p.H, 1, &o[1]) \
        or region(off, H4, p.H if any_full_peephole(p) and not p.wc_stacked else 0, 1, &o[2]) \
        or region(off, H4, 1, 1, &o[3]) or region(off, H4, 1, 1, &o[4])

cdef void weights_place(Weights *w, float *base, const size_t *o) noexcept nogil:
    w.wx = base + o[0]
    w.wh = base + o[1]
    w.wc = base + o[2]
    w.bias = base + o[3]
    w.pdiag = base + o[4]

cdef void pack_matrix(const float *src, size_t s_out, size_t s_in, size_t rows, size_t cols,
                      float *dst) noexcept nogil:
    cdef size_t r, q
    for r in range(rows):
        if s_in == 1:
            memcpy(dst + r * cols, src + r * s_out, cols * sizeof(float))
        else:
            for q in range(cols):
                dst[r * cols + q] = src[r * s_out + q * s_in]

cdef void pack_vector(const WeightView *v, size_t l, size_t d, size_t n, float *dst) noexcept nogil:
    cdef const float *src
    cdef size_t j
    if v.data == NULL:
        memset(dst, 0, n * sizeof(float))
        return
    src = weight_ptr(v, l, d)
    for j in range(n):
        dst[j] = src[j * v.s_out]

cdef void load_weights(const LSTMPlan *p, Weights *w, size_t l, size_t d,
                       size_t in_w) noexcept nogil:
    """Point wx_cur/wh_cur/wc_cur at [4H x in] blocks: the caller's if stacked, else packed
    (with frozen weights, W_x and W_h come from their panels: neither is copied)."""
    cdef size_t H = p.H, idx
    cdef int k
    cdef const GatePlan *gp
    cdef const WeightView *wv
    cdef bint pack_wx = not wx_in_place(p, l) and p.frozen == NULL
    cdef bint pack_wh = not p.wh_stacked and p.frozen == NULL
    wv = input_weights(&p.gate[0], l, &idx)
    w.wx_cur, w.ldwx = (w.wx, <int>in_w) if pack_wx else (weight_ptr(wv, idx, d), <int>wv.s_out)
    w.wh_cur, w.ldwh = (weight_ptr(&p.gate[0].wh, l, d), <int>p.gate[0].wh.s_out) \
        if p.wh_stacked else (w.wh, <int>H)
    w.wc_cur, w.ldwc = (NULL, <int>H)
    if any_full_peephole(p):
        w.wc_cur, w.ldwc = (weight_ptr(&p.gate[0].wc, l, d), <int>p.gate[0].wc.s_out) \
            if p.wc_stacked else (w.wc, <int>H)
    for k in range(NGATES):
        gp = &p.gate[k]
        if pack_wx:
            wv = input_weights(gp, l, &idx)
            pack_matrix(weight_ptr(wv, idx, d), wv.s_out, wv.s_in, H, in_w, w.wx + k * H * in_w)
        if pack_wh:
            pack_matrix(weight_ptr(&gp.wh, l, d), gp.wh.s_out, gp.wh.s_in, H, H,
                        w.wh + k * H * H)
        if w.wc_cur == w.wc and gp.peephole == PEEP_FULL:   # rows of other gates stay unused
            pack_matrix(weight_ptr(&gp.wc, l, d), gp.wc.s_out, gp.wc.s_in, H, H,
                        w.wc + k * H * H)
        if gp.peephole == PEEP_DIAG:
            pack_vector(&gp.wc, l, d, H, w.pdiag + k * H)
        else:
            memset(w.pdiag + k * H, 0, H * sizeof(float))
        pack_vector(&gp.b, l, d, H, w.bias + k * H)

cdef void scatter_matrix(const WeightView *v, size_t idx, size_t d, const float *src,
                         size_t rows, size_t cols) noexcept nogil:
    """A gradient block [rows x cols] into the caller's tensor at (idx, d), set or accumulate
    (D7)."""
    cdef float *dst = weight_ptr(v, idx, d)
    cdef size_t r, q
    for r in range(rows):
        if v.accumulate:
            for q in range(cols):
                dst[r * v.s_out + q * v.s_in] += src[r * cols + q]
        else:
            for q in range(cols):
                dst[r * v.s_out + q * v.s_in] = src[r * cols + q]

cdef void scatter_vector(const WeightView *v, size_t l, size_t d, const float *src,
                         size_t n) noexcept nogil:
    cdef float *dst = weight_ptr(v, l, d)
    cdef size_t j
    for j in range(n):
        if v.accumulate:
            dst[j * v.s_out] += src[j]
        else:
            dst[j * v.s_out] = src[j]
