# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The forward pass (spec 3.5) over a validated plan, the fast way (DESIGN.md steps 2 to 9).

Per (layer, direction): pack the four gates' weights into one [4H x in] and one [4H x H]
block; one GEMM projects every time step's input at once; then the time loop does one
recurrent GEMM per step and one fused elementwise pass. No allocation happens in here:
everything lives in the caller's workspace, laid out by ``layout_workspace``.
"""
from libc.string cimport memcpy, memset

from bnnslstm._activations cimport activation_row, bl_fpstate, ftz_enter, ftz_leave
from bnnslstm._checked cimport add_ovf, mul_ovf
from bnnslstm._gemm cimport gemm_nt
from bnnslstm._plan cimport (
    GATE_F, GATE_G, GATE_I, GATE_O, NGATES, PEEP_DIAG, PEEP_FULL, GatePlan, LSTMPlan, StateView,
    WeightView, batch_at, input_weights, set_error, weight_ptr,
)

cdef extern from "limits.h":
    const int INT_MAX

cdef struct Workspace:
    float *wx       # [4H][in]  packed input weights of one (layer, direction), gates i f g o
    float *wh       # [4H][H]   packed recurrent weights
    float *wc       # [4H][H]   packed full peepholes
    # The blocks the GEMMs read, packed or in place (stacked caller weights), and row strides
    const float *wx_cur
    const float *wh_cur
    const float *wc_cur   # NULL when no gate has a full peephole
    int ldwx, ldwh, ldwc
    float *bias     # [4H]      zeros where a gate has no bias
    float *pdiag    # [4H]      diagonal peepholes (D18)
    float *gates    # [S][N][4H] pre-activations, then activations
    float *xg       # [S][N][I] x gathered into rows (NULL when x is used in place)
    float *ybuf[2]  # [S][N][D*H] layer outputs, ping-pong between stacked layers
    float *h        # [N][H]    running hidden state
    float *c        # [N][H]    running cell state
    float *tmp      # [H]       act_hidden(c) of one row
    int ldx         # row stride of x when used in place

# ---------------------------------------------------------------------------------------------
# workspace

cdef bint x_in_place(const LSTMPlan *p, int *ldx) noexcept nogil:
    """Can layer 0 read x as a [S*N x I] row-major matrix, without gathering?"""
    cdef size_t ld
    if p.x.se != 1:
        return False
    if p.S * p.N == 1:
        ld = p.In
    elif p.N == 1:
        ld = p.x.ss
    elif p.S == 1 or p.x.ss == p.N * p.x.sn:
        ld = p.x.sn
    else:
        return False
    if ld > <size_t>INT_MAX:
        return False
    ldx[0] = <int>ld
    return True

cdef inline bint region(size_t *off, size_t a, size_t b, size_t c, size_t *start) noexcept nogil:
    """Reserve a*b*c floats (rounded up to a 64-byte multiple) at *off; True on overflow."""
    cdef size_t n
    if mul_ovf(a, b, &n) or mul_ovf(n, c, &n) or add_ovf(n, 15, &n):
        return True
    start[0] = off[0]
    return add_ovf(off[0], n & ~(<size_t>15), off)

cdef int layout_workspace(const LSTMPlan *p, Workspace *w, float *base,
                          size_t *nfloats) noexcept nogil:
    """Place the regions of Workspace at `base` (may be NULL: sizes only)."""
    cdef size_t o[12]
    cdef size_t off = 0, H4 = 4 * p.H, SN = p.S * p.N, win = 0, l
    cdef bint full = any_full_peephole(p), gather
    for l in range(p.L):     # widest layer whose input weights need packing
        if not wx_in_place(p, l):
            win = max(win, p.In if l == 0 else p.W1)
    gather = not x_in_place(p, &w.ldx)
    if region(&off, H4, win, 1, &o[0]) \
            or region(&off, H4, 0 if p.wh_stacked else p.H, 1, &o[1]) \
            or region(&off, H4, p.H if full and not p.wc_stacked else 0, 1, &o[2]) \
            or region(&off, H4, 1, 1, &o[3]) or region(&off, H4, 1, 1, &o[4]) \
            or region(&off, SN, H4, 1, &o[5]) \
            or region(&off, SN, p.In if gather else 0, 1, &o[6]) \
            or region(&off, SN, p.D, p.H, &o[7]) \
            or region(&off, SN, p.D, p.H if p.L > 1 else 0, &o[8]) \
            or region(&off, p.N, p.H, 1, &o[9]) or region(&off, p.N, p.H, 1, &o[10]) \
            or region(&off, p.H, 1, 1, &o[11]):
        return set_error(b"workspace size overflows size_t")
    nfloats[0] = off
    if base != NULL:
        w.wx = base + o[0]
        w.wh = base + o[1]
        w.wc = base + o[2]
        w.bias = base + o[3]
        w.pdiag = base + o[4]
        w.gates = base + o[5]
        w.xg = base + o[6] if gather else NULL
        w.ybuf[0] = base + o[7]
        w.ybuf[1] = base + o[8]
        w.h = base + o[9]
        w.c = base + o[10]
        w.tmp = base + o[11]
    return 0

cdef int forward_workspace_bytes(const LSTMPlan *p, size_t *nbytes) noexcept nogil:
    cdef Workspace w
    cdef size_t n
    if layout_workspace(p, &w, NULL, &n):
        return -1
    if mul_ovf(n, sizeof(float), nbytes):
        return set_error(b"workspace size overflows size_t")
    return 0

# ---------------------------------------------------------------------------------------------
# packing (DESIGN step 2): any layout/stride is resolved here, once per call

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

cdef bint any_full_peephole(const LSTMPlan *p) noexcept nogil:
    cdef int k
    for k in range(NGATES):
        if p.gate[k].peephole == PEEP_FULL:
            return True
    return False

cdef bint wx_in_place(const LSTMPlan *p, size_t l) noexcept nogil:
    """Are layer l's input weights of all four gates one stacked block in the caller's memory?"""
    cdef int k
    if l == 0 or p.wx1_stacked:
        return p.wx0_stacked if l == 0 else True
    for k in range(NGATES):       # D1: every gate must read iw_desc[0] for this layer
        if p.gate[k].wx1.data != NULL:
            return False
    return p.wx0_stacked

cdef void pack_weights(const LSTMPlan *p, Workspace *w, size_t l, size_t d,
                       size_t in_w) noexcept nogil:
    """Point wx_cur/wh_cur/wc_cur at [4H x in] blocks: the caller's if stacked, else packed."""
    cdef size_t H = p.H, idx
    cdef int k
    cdef const GatePlan *gp
    cdef const WeightView *wv
    cdef bint pack_wx = not wx_in_place(p, l)
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
        if not p.wh_stacked:
            pack_matrix(weight_ptr(&gp.wh, l, d), gp.wh.s_out, gp.wh.s_in, H, H,
                        w.wh + k * H * H)
        if w.wc_cur == w.wc and gp.peephole == PEEP_FULL:   # rows of other gates stay unused
            pack_matrix(weight_ptr(&gp.wc, l, d), gp.wc.s_out, gp.wc.s_in, H, H,
                        w.wc + k * H * H)
        if gp.peephole == PEEP_DIAG:
            pack_vector(&gp.wc, l, d, H, w.pdiag + k * H)
        pack_vector(&gp.b, l, d, H, w.bias + k * H)

# ---------------------------------------------------------------------------------------------
# moving data in and out of the caller's strided tensors

cdef void load_state(const StateView *v, size_t l, size_t d, size_t N, size_t H,
                     float *dst) noexcept nogil:
    cdef const float *src
    cdef size_t n, j
    if v.data == NULL:   # NULL initial state means zeros
        memset(dst, 0, N * H * sizeof(float))
        return
    src = v.data + l * v.sl + d * v.sd
    for n in range(N):
        for j in range(H):
            dst[n * H + j] = src[n * v.sn + j * v.sh]

cdef void store_state(const StateView *v, size_t l, size_t d, size_t N, size_t H,
                      const float *src) noexcept nogil:
    cdef float *dst
    cdef size_t n, j
    if v.data == NULL:
        return
    dst = v.data + l * v.sl + d * v.sd
    for n in range(N):
        for j in range(H):
            dst[n * v.sn + j * v.sh] = src[n * H + j]

cdef const float *input_rows(const LSTMPlan *p, Workspace *w, int *ldx) noexcept nogil:
    """x as [S*N x I] rows: in place when its strides allow, else gathered into w.xg."""
    cdef size_t t, n, e, I = p.In, N = p.N
    cdef const float *src
    if w.xg == NULL:
        ldx[0] = w.ldx
        return p.x.data
    for t in range(p.S):
        for n in range(N):
            src = p.x.data + t * p.x.ss + n * p.x.sn
            for e in range(I):
                w.xg[(t * N + n) * I + e] = src[e * p.x.se]
    ldx[0] = <int>I
    return w.xg

cdef void scatter_y(const LSTMPlan *p, const float *ybuf) noexcept nogil:
    cdef size_t t, n, e, DH = p.D * p.H
    cdef float *dst
    cdef const float *src
    for t in range(p.S):
        for n in range(p.N):
            dst = p.y.data + t * p.y.ss + n * p.y.sn
            src = ybuf + (t * p.N + n) * DH
            for e in range(DH):
                dst[e * p.y.se] = src[e]

# ---------------------------------------------------------------------------------------------
# the elementwise pass (DESIGN step 4): activations, peepholes, cell update, hidden output

cdef void gates_ifg_rows(const LSTMPlan *p, Workspace *w, size_t nt, float *g) noexcept nogil:
    """i, f, g activations and the new cell state c = f*c_old + i*g, rows [0, nt)."""
    cdef size_t H = p.H, n, j
    cdef int k
    cdef float *row
    cdef float *c
    cdef const float *pd
    for n in range(nt):
        row = g + n * 4 * H
        c = w.c + n * H
        for j in range(3 * H):
            row[j] += w.bias[j]
        for k in range(GATE_O):      # diagonal peepholes of i, f, g read the old cell
            if p.gate[k].peephole == PEEP_DIAG:
                pd = w.pdiag + k * H
                for j in range(H):
                    row[k * H + j] += pd[j] * c[j]
        for k in range(GATE_O):
            activation_row(p.gate[k].act.function, p.gate[k].act.alpha, p.gate[k].act.beta,
                           row + k * H, H)
        for j in range(H):
            c[j] = row[H + j] * c[j] + row[j] * row[2 * H + j]

cdef void gate_o_rows(const LSTMPlan *p, Workspace *w, size_t nt, float *g) noexcept nogil:
    """o activation (its peephole reads the new cell) and h = o * act_hidden(c)."""
    cdef size_t H = p.H, n, j
    cdef float *go
    cdef float *c
    cdef float *h
    cdef const float *bo = w.bias + 3 * H
    cdef const float *pd = w.pdiag + 3 * H
    cdef const GatePlan *gp = &p.gate[GATE_O]
    for n in range(nt):
        go = g + n * 4 * H + 3 * H
        c = w.c + n * H
        h = w.h + n * H
        for j in range(H):
            go[j] += bo[j]
        if gp.peephole == PEEP_DIAG:
            for j in range(H):
                go[j] += pd[j] * c[j]
        activation_row(gp.act.function, gp.act.alpha, gp.act.beta, go, H)
        memcpy(w.tmp, c, H * sizeof(float))
        activation_row(p.hidden_act.function, p.hidden_act.alpha, p.hidden_act.beta, w.tmp, H)
        for j in range(H):
            h[j] = go[j] * w.tmp[j]

cdef void peephole_gemms(const LSTMPlan *p, Workspace *w, int nt, float *g) noexcept nogil:
    """Full peepholes of i, f, g: gates += c_old @ W_c^T, one GEMM per run of adjacent gates."""
    cdef int H = <int>p.H, k = 0, k2
    cdef size_t ld = <size_t>w.ldwc
    while k < GATE_O:
        if p.gate[k].peephole != PEEP_FULL:
            k += 1
            continue
        k2 = k
        while k2 < GATE_O and p.gate[k2].peephole == PEEP_FULL:
            k2 += 1
        gemm_nt(nt, (k2 - k) * H, H, w.c, H, w.wc_cur + k * H * ld, w.ldwc, 1.0, g + k * H,
                4 * H)
        k = k2

# ---------------------------------------------------------------------------------------------
# one (layer, direction), then the whole stack

cdef void run_direction(const LSTMPlan *p, Workspace *w, size_t l, size_t d, const float *xin,
                        int ldx, int in_w, float *yout) noexcept nogil:
    cdef int H = <int>p.H, G = 4 * H, SN = <int>(p.S * p.N)
    cdef size_t S = p.S, N = p.N, DH = p.D * p.H, step, t, n, nt
    cdef bint o_full = p.gate[GATE_O].peephole == PEEP_FULL
    cdef float *g
    cdef float *yrow
    pack_weights(p, w, l, d, in_w)
    # DESIGN step 3: the input projection of every step in one GEMM.
    gemm_nt(SN, G, in_w, xin, ldx, w.wx_cur, w.ldwx, 0.0, w.gates, G)
    load_state(&p.h0, l, d, N, p.H, w.h)
    load_state(&p.c0, l, d, N, p.H, w.c)
    for step in range(S):                                   # the time loop
        t = step if d == 0 else S - 1 - step
        nt = batch_at(p, t)                                 # D5: active samples are [0, nt)
        g = w.gates + t * N * G
        if nt > 0:
            gemm_nt(<int>nt, G, H, w.h, H, w.wh_cur, w.ldwh, 1.0, g, G)   # g += h W_h^T
            if w.wc_cur != NULL:
                peephole_gemms(p, w, <int>nt, g)
            gates_ifg_rows(p, w, nt, g)
            if o_full:                                      # output peephole reads the new cell
                gemm_nt(<int>nt, H, H, w.c, H, w.wc_cur + 3 * p.H * <size_t>w.ldwc, w.ldwc,
                        1.0, g + 3 * H, G)
            gate_o_rows(p, w, nt, g)
        yrow = yout + t * N * DH + d * p.H
        for n in range(N):                                  # padded positions are 0 (D5)
            if n < nt:
                memcpy(yrow + n * DH, w.h + n * p.H, p.H * sizeof(float))
            else:
                memset(yrow + n * DH, 0, p.H * sizeof(float))
    store_state(&p.hn, l, d, N, p.H, w.h)
    store_state(&p.cn, l, d, N, p.H, w.c)

cdef int lstm_forward(const LSTMPlan *p, void *workspace) noexcept nogil:
    cdef Workspace w
    cdef size_t nfloats, l, d
    cdef const float *xin
    cdef int ldx, in_w
    cdef bl_fpstate fpstate
    layout_workspace(p, &w, <float *>workspace, &nfloats)
    fpstate = ftz_enter()
    for l in range(p.L):
        if l == 0:
            xin = input_rows(p, &w, &ldx)
            in_w = <int>p.In
        else:                                   # D2: layer l reads [forward | backward] of l-1
            xin = w.ybuf[(l - 1) & 1]
            ldx = <int>(p.D * p.H)
            in_w = <int>p.W1
        for d in range(p.D):
            run_direction(p, &w, l, d, xin, ldx, in_w, w.ybuf[l & 1])
    if p.y.data != NULL:
        scatter_y(p, w.ybuf[(p.L - 1) & 1])
    ftz_leave(fpstate)
    return 0
