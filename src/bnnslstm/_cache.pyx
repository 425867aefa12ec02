# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The training cache (D10, D11): what the forward pass keeps for the backward pass.

Layout from the first 64-byte aligned address of the caller's buffer (which may be
unaligned, as Apple's article allocates it with alignment 1):

    header  64 bytes: magic, version, hash of the parameters, dropout key
    pre     [L][D][S][N][4H]     float  gate pre-activations (i, f, g, o)
    cell    [L][D][1+S+1][N][H]  float  c0, the cell state after each step, c0
    y       [L][1+S+1][N][D*H]   float  h0, each layer's output (the next layer's input
                                        before dropout), h0
    mask    [L-1][S][N][D*H]     byte   dropout masks, only when dropout is active

The forward writes each direction's initial state into the step before its first one (the
forward direction's before step 0, the reverse direction's after step S-1, the other slot
unused), so that h and c before every step of a direction lie in one [S][N] block, which the
backward reads in place (dW_h = dA^T H_prev) instead of gathering them step by step.

The capacity is exactly that plus 64 bytes of alignment slack.
"""
from libc.stdint cimport uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy

from bnnslstm._checked cimport add_ovf, mul_ovf
from bnnslstm._plan cimport NGATES, batch_at, check_capacity, plan_forward, set_error
from bnnslstm.bnns cimport BNNSLayerParametersLSTM

cdef enum:
    ALIGN = 64
    HEADER = 64
    VERSION = 2     # 2: a slot for the initial state around each cell and y block

cdef uint32_t MAGIC = 0x314D5342   # "BSM1"

cdef struct Header:
    uint32_t magic
    uint32_t version
    uint64_t hash
    uint64_t key

cdef bint dropout_active(const LSTMPlan *p) noexcept nogil:
    return p.dropout > 0 and p.L > 1

cdef inline bint grow(size_t *off, size_t a, size_t b, size_t c, size_t elsize) noexcept nogil:
    """off += a*b*c*elsize rounded up to ALIGN; True on overflow."""
    cdef size_t n
    if mul_ovf(a, b, &n) or mul_ovf(n, c, &n) or mul_ovf(n, elsize, &n) \
            or add_ovf(n, ALIGN - 1, &n):
        return True
    return add_ovf(off[0], n & ~(<size_t>ALIGN - 1), off)

cdef int cache_layout(const LSTMPlan *p, Cache *c) noexcept nogil:
    cdef size_t off = HEADER, SN = p.S * p.N, LD = p.L * p.D, SN1
    c.dropout = dropout_active(p)
    c.pre = off
    if grow(&off, LD, SN, 4 * p.H, sizeof(float)):
        return set_error(b"training cache size overflows size_t")
    c.cell = off
    if add_ovf(SN, 2 * p.N, &SN1) or grow(&off, LD, SN1, p.H, sizeof(float)):
        return set_error(b"training cache size overflows size_t")
    c.y = off
    if grow(&off, p.L, SN1, p.D * p.H, sizeof(float)):
        return set_error(b"training cache size overflows size_t")
    c.mask = off
    if grow(&off, p.L - 1 if c.dropout else 0, SN, p.D * p.H, 1):
        return set_error(b"training cache size overflows size_t")
    c.end = off
    return 0

cdef size_t cache_capacity(const LSTMPlan *p) noexcept nogil:
    cdef Cache c
    cdef size_t n
    c.end = 0                   # set by cache_layout unless it fails (gcc cannot tell)
    if cache_layout(p, &c) or add_ovf(c.end, ALIGN, &n):
        return 0
    return n

cdef uint64_t fnv(uint64_t h, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        h = (h ^ ((v >> (8 * i)) & 0xFF)) * 0x100000001B3ULL
    return h

cdef uint64_t params_hash(const LSTMPlan *p) noexcept nogil:
    """Everything that shapes the cache's contents except the data itself."""
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef uint32_t bits
    cdef size_t t
    cdef int k
    h = fnv(fnv(fnv(h, p.In), p.H), p.N)
    h = fnv(fnv(fnv(h, p.L), p.S), p.D)
    memcpy(&bits, &p.dropout, 4)
    h = fnv(h, bits)
    for k in range(NGATES):
        h = fnv(h, p.gate[k].peephole)
        h = fnv(h, p.gate[k].b.data != NULL)
        h = fnv(h, p.gate[k].act.function)
        memcpy(&bits, &p.gate[k].act.alpha, 4)
        h = fnv(h, bits)
        memcpy(&bits, &p.gate[k].act.beta, 4)
        h = fnv(h, bits)
    h = fnv(h, p.hidden_act.function)
    for t in range(p.S):
        h = fnv(h, batch_at(p, t))
    return h

cdef int cache_open(const LSTMPlan *p, void *ptr, size_t capacity, Cache *c) noexcept nogil:
    """Lay the cache out in the caller's buffer (D11: capacity below the minimum is -1)."""
    if check_capacity(capacity, cache_capacity(p), b"training_cache_capacity",
                      b"BNNSComputeLSTMTrainingCacheCapacity"):
        return -1
    cache_layout(p, c)
    c.base = <char *>((<uintptr_t>ptr + ALIGN - 1) & ~(<uintptr_t>ALIGN - 1))
    return 0

cdef void cache_seal(const LSTMPlan *p, Cache *c) noexcept nogil:
    """Write the header once the forward pass has filled the cache."""
    cdef Header hd
    hd.magic = MAGIC
    hd.version = VERSION
    hd.hash = params_hash(p)
    hd.key = c.key
    memcpy(c.base, &hd, sizeof(hd))

cdef int cache_check(const LSTMPlan *p, Cache *c) noexcept nogil:
    """Is this the cache a forward call with these parameters filled?"""
    cdef Header hd
    memcpy(&hd, c.base, sizeof(hd))
    if hd.magic != MAGIC or hd.version != VERSION:
        return set_error(b"training cache was not filled by a forward call "
                         b"(BNNSDirectApplyLSTMBatchTrainingCaching with this cache)")
    if hd.hash != params_hash(p):
        return set_error(b"training cache was filled for different parameters (sizes, flags, "
                         b"dropout, activations, peepholes, biases or sequence batch sizes)")
    c.key = hd.key
    return 0

cdef float *cache_pre(const LSTMPlan *p, const Cache *c, size_t l, size_t d) noexcept nogil:
    return <float *>(c.base + c.pre) + (l * p.D + d) * p.S * p.N * 4 * p.H

cdef float *cache_cell(const LSTMPlan *p, const Cache *c, size_t l, size_t d) noexcept nogil:
    """Step 0 of (l, d)'s cell states: c0 is one step before it (d = 0) or after step S-1."""
    return <float *>(c.base + c.cell) + ((l * p.D + d) * (p.S + 2) + 1) * p.N * p.H

cdef float *cache_y(const LSTMPlan *p, const Cache *c, size_t l) noexcept nogil:
    """Step 0 of layer l's output; h0 of direction d one step before it or after step S-1."""
    return <float *>(c.base + c.y) + (l * (p.S + 2) + 1) * p.N * p.D * p.H

cdef unsigned char *cache_mask(const LSTMPlan *p, const Cache *c, size_t l) noexcept nogil:
    return <unsigned char *>(c.base + c.mask) + l * p.S * p.N * p.D * p.H


def _mask_offset(size_t layer_params, size_t cache) -> tuple:
    """(byte offset of the dropout masks from `cache`, bytes per layer boundary), for tests
    that inspect the masks a forward call kept. Assumes validated parameters."""
    cdef LSTMPlan p
    cdef Cache c
    if plan_forward(<const BNNSLayerParametersLSTM *>layer_params, NULL, &p) \
            or cache_layout(&p, &c):
        raise ValueError("invalid parameters")
    c.base = <char *>((<uintptr_t>cache + ALIGN - 1) & ~(<uintptr_t>ALIGN - 1))
    return <size_t>(c.base - <char *>cache) + c.mask, p.S * p.N * p.D * p.H
