# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Moving data between the caller's strided tensors and the kernels' row-major buffers."""
from libc.stdint cimport uintptr_t
from libc.string cimport memset

from bnnslstm._plan cimport PEEP_DIAG, GatePlan, WeightView, batch_at

cdef extern from "limits.h":
    const int INT_MAX

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

cdef struct Span:
    uintptr_t lo, hi     # bytes [lo, hi); lo == hi: nothing

cdef Span span(const float *data, size_t last) noexcept nogil:
    """The bytes of a tensor at data whose last element is `last` floats past its first (the
    plan checked that this offset fits the address space)."""
    cdef Span s
    s.lo = <uintptr_t>data
    s.hi = s.lo + (last + 1) * sizeof(float) if data != NULL else s.lo
    return s

cdef bint meets(Span a, Span b) noexcept nogil:
    return a.lo < b.hi and b.lo < a.hi

cdef Span seq_span(const SeqView *v, size_t S, size_t N, size_t E) noexcept nogil:
    return span(v.data, (S - 1) * v.ss + (N - 1) * v.sn + (E - 1) * v.se)

cdef Span state_span(const StateView *v, const LSTMPlan *p) noexcept nogil:
    return span(v.data, (p.L - 1) * v.sl + (p.D - 1) * v.sd + (p.N - 1) * v.sn
                + (p.H - 1) * v.sh)

cdef Span weight_span(const WeightView *w, size_t L, size_t D, size_t out,
                      size_t in_w) noexcept nogil:
    """[L][D][out][in_w] (in_w 1: a vector per layer and direction)"""
    if L == 0:
        return span(NULL, 0)
    return span(w.data, (L - 1) * w.s_layer + (D - 1) * w.s_dir + (out - 1) * w.s_out
                + (in_w - 1) * w.s_in)

cdef bint y_in_place(const LSTMPlan *p, const void *frozen, size_t frozen_bytes) noexcept nogil:
    """Can an inference's last layer write y straight into the caller's tensor, with no copy
    at the end? Only if y is the kernels' [S][N][D*H] row-major block, every step runs every
    sample (no padding to restore), and y shares no byte with anything the call reads or
    writes after its first row (x, the states, the weights, frozen panels): then y ends as
    the copy would leave it, whatever the caller aliased."""
    cdef size_t DH = p.D * p.H, k
    cdef Span y, frz
    cdef const GatePlan *g
    if p.y.data == NULL or p.y.accumulate or p.seq_data != NULL or p.y.se != 1 \
            or (p.N > 1 and p.y.sn != DH) or (p.S > 1 and p.y.ss != p.N * DH):
        return False
    y = seq_span(&p.y, p.S, p.N, DH)
    frz.lo = <uintptr_t>frozen
    frz.hi = frz.lo + frozen_bytes
    if meets(y, seq_span(&p.x, p.S, p.N, p.In)) or meets(y, frz):
        return False
    if meets(y, state_span(&p.h0, p)) or meets(y, state_span(&p.c0, p)) \
            or meets(y, state_span(&p.hn, p)) or meets(y, state_span(&p.cn, p)):
        return False
    for k in range(4):
        g = &p.gate[k]
        # D1: wx0 holds every layer when wx1 is absent (then all input widths are In)
        if meets(y, weight_span(&g.wx0, 1 if g.wx1.data != NULL else p.L, p.D, p.H, p.In)) \
                or meets(y, weight_span(&g.wx1, p.L - 1, p.D, p.H, p.W1)) \
                or meets(y, weight_span(&g.wh, p.L, p.D, p.H, p.H)) \
                or meets(y, weight_span(&g.wc, p.L, p.D, p.H,
                                        1 if g.peephole == PEEP_DIAG else p.H)) \
                or meets(y, weight_span(&g.b, p.L, p.D, p.H, 1)):
            return False
    return True

cdef void gather_seq(const SeqView *v, size_t S, size_t N, size_t E, const LSTMPlan *p,
                     float *dst) noexcept nogil:
    """dst[(t*N + n)*E + e] = v(t, n, e); zeros where v is absent or, if p is given, where
    sample n is inactive at step t (D5), so that padding never reaches a gradient."""
    cdef size_t t, n, e, nt
    cdef const float *src
    for t in range(S):
        nt = batch_at(p, t) if p != NULL else N
        for n in range(N):
            if v.data == NULL or n >= nt:
                memset(dst + (t * N + n) * E, 0, E * sizeof(float))
                continue
            src = v.data + t * v.ss + n * v.sn
            for e in range(E):
                dst[(t * N + n) * E + e] = src[e * v.se]

cdef void scatter_seq(const SeqView *v, size_t S, size_t N, size_t E, const float *src,
                      bint accumulate) noexcept nogil:
    cdef size_t t, n, e
    cdef float *dst
    for t in range(S):
        for n in range(N):
            dst = v.data + t * v.ss + n * v.sn
            if accumulate:
                for e in range(E):
                    dst[e * v.se] += src[(t * N + n) * E + e]
            else:
                for e in range(E):
                    dst[e * v.se] = src[(t * N + n) * E + e]

cdef void load_state(const StateView *v, size_t l, size_t d, size_t N, size_t H,
                     float *dst) noexcept nogil:
    cdef const float *src
    cdef size_t n, j
    if v.data == NULL:   # NULL state means zeros
        memset(dst, 0, N * H * sizeof(float))
        return
    src = v.data + l * v.sl + d * v.sd
    for n in range(N):
        for j in range(H):
            dst[n * H + j] = src[n * v.sn + j * v.sh]

cdef void store_state(const StateView *v, size_t l, size_t d, size_t N, size_t H,
                      const float *src, bint accumulate) noexcept nogil:
    cdef float *dst
    cdef size_t n, j
    if v.data == NULL:
        return
    dst = v.data + l * v.sl + d * v.sd
    for n in range(N):
        for j in range(H):
            if accumulate:
                dst[n * v.sn + j * v.sh] += src[n * H + j]
            else:
                dst[n * v.sn + j * v.sh] = src[n * H + j]
