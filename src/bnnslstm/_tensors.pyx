# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Moving data between the caller's strided tensors and the kernels' row-major buffers."""
from libc.string cimport memset

from bnnslstm._plan cimport batch_at

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
