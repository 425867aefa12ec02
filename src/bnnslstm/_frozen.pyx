# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Frozen weights: W_x and W_h of every (layer, direction) packed once, for many forward calls.

DESIGN step 2 packs the weights on every call, since a BNNS call may see new weights each
time. When the weights stay fixed (inference, above all streaming a step or a few per call)
that packing is the cost of a call: 8 MiB of weights read and 8 MiB of panels written at
H = 512. ONNX Runtime packs once when its session is made; this is the same, opt in. The
panels hold the weights as they were when packed: the forward reads W_x and W_h from them,
not from the descriptors (which are still validated).

Layout: a header at the start of the caller's buffer, then from the first 64-byte aligned
address after it the panels (which pgemm reads with aligned loads):

    header  64 bytes: magic, version, In, H, L, D, byte offset of the panels
    for each layer l, direction d:
        W_x  4 * packed_size(H, in_l) floats   (the panels pgemm reads; in_l = In or D*H)
        W_h  4 * packed_size(H, H) floats

The panels do not depend on the batch size or the sequence length, so one packing serves
calls of any N and S. The capacity is exactly that plus 64 bytes of alignment slack.
"""
from libc.stdint cimport uint32_t, uint64_t, uintptr_t
from libc.stdio cimport snprintf
from libc.string cimport memcpy

from bnnslstm._checked cimport add_ovf, mul_ovf
from bnnslstm._gemm cimport pack_gates, packed_size
from bnnslstm._memory cimport ws_alloc, ws_free
from bnnslstm._plan cimport check_capacity, set_error
from bnnslstm._weights cimport Weights, load_weights, weights_place, weights_regions

cdef enum:
    ALIGN = 64
    HEADER = 64
    VERSION = 2     # 2: panels interleaved in groups (_pgemm.h); 1 read them one by one

cdef uint32_t MAGIC = 0x5A464C42   # "BLFZ"

cdef struct Header:
    uint32_t magic
    uint32_t version
    uint64_t In, H, L, D
    uint64_t panels     # byte offset from the buffer's start

cdef size_t layer_floats(const LSTMPlan *p, size_t l) noexcept nogil:
    """Floats of one direction's panels in layer l (fits: frozen_capacity checked the sum)."""
    return 4 * (packed_size(<int>p.H, <int>(p.In if l == 0 else p.W1))
                + packed_size(<int>p.H, <int>p.H))

cdef size_t frozen_capacity(const LSTMPlan *p) noexcept nogil:
    """Bytes of caller memory the frozen weights take; 0 (message set) on overflow."""
    cdef size_t total = HEADER + ALIGN, n, l
    for l in range(p.L):
        if mul_ovf(4, packed_size(<int>p.H, <int>(p.In if l == 0 else p.W1)), &n) \
                or add_ovf(n, 4 * packed_size(<int>p.H, <int>p.H), &n) \
                or mul_ovf(n, p.D * sizeof(float), &n) or add_ovf(total, n, &total):
            set_error(b"packed weights size overflows size_t")
            return 0
    return total

cdef char *panels(const void *ptr) noexcept nogil:
    """Where the panels start in a buffer at ptr: the first aligned address past the header."""
    return <char *>((<uintptr_t>ptr + HEADER + ALIGN - 1) & ~(<uintptr_t>ALIGN - 1))

cdef int check_packed_capacity(const LSTMPlan *p, size_t capacity) noexcept nogil:
    return check_capacity(capacity, frozen_capacity(p), b"packed weights capacity",
                          b"bnnslstm_packed_weights_capacity")

cdef int frozen_pack(const LSTMPlan *p, void *ptr, size_t capacity) noexcept nogil:
    """Pack the plan's W_x and W_h into the caller's buffer; nothing is written on failure."""
    cdef size_t o[5]
    cdef size_t off = 0, nbytes, l, d
    cdef Weights w
    cdef Header hd
    cdef float *scratch
    cdef float *dst
    cdef int H = <int>p.H, in_w
    if ptr == NULL:
        return set_error(b"packed weights pointer is NULL")
    if check_packed_capacity(p, capacity):
        return -1
    if weights_regions(p, &off, o) or mul_ovf(off, sizeof(float), &nbytes):
        return set_error(b"packing workspace size overflows size_t")
    scratch = <float *>ws_alloc(&p.filter, nbytes)
    if scratch == NULL:
        return set_error(b"could not allocate the packing workspace")
    weights_place(&w, scratch, o)
    dst = <float *>panels(ptr)
    for l in range(p.L):
        in_w = <int>(p.In if l == 0 else p.W1)
        for d in range(p.D):
            load_weights(p, &w, l, d, in_w)   # gates not stacked in memory: into one block
            pack_gates(NULL, 4, H, in_w, w.wx_cur, w.ldwx, dst)
            pack_gates(NULL, 4, H, H, w.wh_cur, w.ldwh, dst + 4 * packed_size(H, in_w))
            dst += layer_floats(p, l)
    ws_free(&p.filter, scratch)
    hd.magic, hd.version = MAGIC, VERSION
    hd.In, hd.H, hd.L, hd.D = p.In, p.H, p.L, p.D
    hd.panels = <size_t>(panels(ptr) - <char *>ptr)
    memcpy(ptr, &hd, sizeof(hd))
    return 0

cdef int frozen_open(LSTMPlan *p, const void *ptr, size_t capacity) noexcept nogil:
    """Check that the buffer holds weights packed for this plan's sizes; set p.frozen."""
    cdef Header hd
    cdef char msg[200]
    if ptr == NULL:
        return set_error(b"packed weights pointer is NULL")
    if capacity < HEADER:       # the header first: a buffer for other sizes says so
        return check_packed_capacity(p, capacity)
    memcpy(&hd, ptr, sizeof(hd))
    if hd.magic != MAGIC:
        return set_error(b"packed weights were not made by bnnslstm_pack_weights")
    if hd.version != VERSION:
        snprintf(msg, sizeof(msg), "packed weights are in the layout of version %u of "
                 "bnnslstm_pack_weights, this build reads version %u: pack them again",
                 <unsigned>hd.version, <unsigned>VERSION)
        return set_error(msg)
    if <char *>ptr + hd.panels != panels(ptr):
        return set_error(b"packed weights were copied to an address of another alignment "
                         b"(modulo 64 bytes) than the one they were packed at: pack them again")
    if hd.In != p.In or hd.H != p.H or hd.L != p.L or hd.D != p.D:
        snprintf(msg, sizeof(msg), "packed weights are for input_size %zu, hidden_size %zu, "
                 "num_layers %zu, %zu direction(s); these parameters have %zu, %zu, %zu, %zu",
                 <size_t>hd.In, <size_t>hd.H, <size_t>hd.L, <size_t>hd.D, p.In, p.H, p.L, p.D)
        return set_error(msg)
    if check_packed_capacity(p, capacity):
        return -1
    p.frozen = <const float *>panels(ptr)
    return 0

cdef const float *frozen_wx(const LSTMPlan *p, size_t l, size_t d) noexcept nogil:
    cdef size_t off = 0, k
    for k in range(l):
        off += p.D * layer_floats(p, k)
    return p.frozen + off + d * layer_floats(p, l)

cdef const float *frozen_wh(const LSTMPlan *p, size_t l, size_t d) noexcept nogil:
    return frozen_wx(p, l, d) + 4 * packed_size(<int>p.H, <int>(p.In if l == 0 else p.W1))
