# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The backward pass (spec 4.3, D7, D8) from a filled training cache (DESIGN step 5).

Per (layer, direction), going back through time: per step the recurrent chain (dh_prev =
dA W_h, the cell chain, and the peepholes), and, while the step's gate pre-activation
gradients dA are in cache, what needs no other step: the column sums of db and (when the
weights stay in cache) dX = dA W_x. dA of every step is kept, so that dW_x, dW_h and dW_c (and
otherwise dX) are whole-sequence GEMMs after the loop, as oneDNN does. Layers run top to
bottom; a layer's dX, through the dropout mask, is the dY of the layer below.
"""
from libc.limits cimport INT_MAX
from libc.string cimport memcpy, memset

import numpy as np

from bnnslstm._activations cimport activation_grad_row, bl_fpstate, ftz_enter, ftz_leave
from bnnslstm._blas cimport current_sgemm, own_products
from bnnslstm._cache cimport cache_cell, cache_mask, cache_pre, cache_y
from bnnslstm._checked cimport add_ovf, mul_ovf, region
from bnnslstm._dropout cimport apply_mask
from bnnslstm._forward cimport allowed_threads, default_cell, direction_lanes, use_helper
from bnnslstm._gemm cimport (
    HELPER_MIN_MACS, SPLIT_MIN_ROWS, align64, bg_choose_l1_blocks, bgemm, bgemm2,
    bgemm2_floats, bgemm_floats, bgemm_ok, bgemm_shared_floats, bgemm_shared_init,
    bgemm_shared_run, bl_bgemm_shared, bl_helper, gemm_rm, pack_kblocks, pack_panels_t,
    packed_size, pgemm, pgemm_kblocks, run_parts,
)
from bnnslstm._plan cimport (
    GATE_O, NGATES, PEEP_DIAG, PEEP_FULL, GradGate, SeqView, WeightView, batch_at,
    full_peephole_run, set_error, weight_ptr,
)
from bnnslstm._tensors cimport gather_seq, load_state, scatter_seq, store_state, x_in_place
from bnnslstm._weights cimport (
    Weights, any_full_peephole, load_weights, scatter_matrix, scatter_vector, weights_place,
    weights_regions,
)
from bnnslstm._worker cimport helper_start, helper_stop

cdef extern from "_cellgrad.h" nogil:
    void grad_output_row "bl_grad_output_row"(size_t H, const float *dy, const float *dh_next,
                                              const float *th, const float *thd,
                                              const float *o, const float *o_der,
                                              float *da_o, float *dc)
    void grad_cell_row "bl_grad_cell_row"(size_t H, const float *val, const float *der,
                                          const float *cprev, float *dc, float *da)
    void grad_default_rows "bl_grad_default_rows"(size_t rows, size_t H, const float *pre,
                                                  const float *cell, const float *cprev,
                                                  const float *dy, size_t ldy,
                                                  const float *dh_next, float *dc, float *da)
    int grad_default_rows_on "bl_grad_default_rows_on"(int width, size_t rows, size_t H,
                                                        const float *pre, const float *cell,
                                                        const float *cprev, const float *dy,
                                                        size_t ldy, const float *dh_next,
                                                        float *dc, float *da)
    void add_rows "bl_add_rows"(size_t rows, size_t n, const float *a, size_t lda, float *acc)

cdef extern from *:
    """
    #include <stdatomic.h>
    #include "_bgemm.h"    /* bl_wait_count; and, through it, _helper.h's bl_claim */
    static atomic_ulong bl_backward_helper_loops;   /* time loops split in two (tests) */
    static atomic_ulong bl_backward_helper_products;   /* products split in two (tests) */
    static atomic_ulong bl_backward_dx_after;   /* dX as one product after the loop (tests) */
    static atomic_ulong bl_backward_shared_dw;  /* dW products the parts shared (tests) */
    static atomic_ulong bl_backward_lanes;  /* layers whose two directions ran at once (tests) */
    static atomic_ulong bl_backward_lanes_shared;  /* ... and shared their products (tests) */
    static atomic_ulong bl_backward_lanes_joined;  /* ... a thread ran pieces of the other's */
    /* tests: this direction's time loop starts late, and its products wait a while after
       their ready flag, so that the other thread must wait for it and then surely joins */
    static int bl_lanes_delay_part = -1;
    #include <time.h>
    static inline void bl_lanes_delay(void) {
        struct timespec t = {0, 20000000};
        nanosleep(&t, NULL);
    }
    static int bl_lanes_off;       /* tests and A/B timing: the directions one after the other */
    static int bl_shared_dw_off;   /* tests and A/B timing: the static halves instead */
    static atomic_ulong bl_backward_dw_in_place;  /* gates' dW_x, dW_h written in place (tests) */
    static atomic_ulong bl_backward_dx_in_place;  /* calls whose dX was written in place (tests) */
    static int bl_in_place_off;    /* tests and A/B timing: every gradient through scratch */
    /* Pieces of the shared products that either thread may take (shared_products): dX's
       halves, then the gate pairs' scatter, db and peepholes */
    typedef struct { atomic_ulong next[2]; } bl_claims;
    static inline void bl_claims_init(bl_claims *c) {
        atomic_init(&c->next[0], 0); atomic_init(&c->next[1], 0);
    }
    static inline int bl_claim_piece(bl_claims *c, int kind) {
        return (int)bl_claim(&c->next[kind]);   /* a few claims a job: no overflow */
    }
    /* Backward lanes: a direction's products ready for the other thread to join */
    typedef struct { atomic_int set; } bl_flag;
    static inline void bl_flag_init(bl_flag *f) { atomic_init(&f->set, 0); }
    static inline void bl_flag_set(bl_flag *f) {
        atomic_store_explicit(&f->set, 1, memory_order_release);
    }
    static inline void bl_flag_wait(bl_flag *f) { bl_wait_count(&f->set, 1); }
    """
    void count_event "atomic_fetch_add"(void *counter, unsigned long n) nogil
    unsigned long bl_backward_helper_loops
    unsigned long bl_backward_helper_products
    unsigned long bl_backward_dx_after
    unsigned long bl_backward_shared_dw
    unsigned long bl_backward_lanes
    unsigned long bl_backward_lanes_shared
    unsigned long bl_backward_lanes_joined
    int bl_lanes_delay_part
    void lanes_delay "bl_lanes_delay"() nogil
    ctypedef struct bl_claims:
        pass
    void claims_init "bl_claims_init"(bl_claims *c) nogil
    int claim "bl_claim_piece"(bl_claims *c, int kind) nogil
    ctypedef struct bl_flag:
        pass
    void flag_init "bl_flag_init"(bl_flag *f) nogil
    void flag_set "bl_flag_set"(bl_flag *f) nogil
    void flag_wait "bl_flag_wait"(bl_flag *f) nogil
    int bl_lanes_off
    int bl_shared_dw_off
    unsigned long bl_backward_dw_in_place
    unsigned long bl_backward_dx_in_place
    int bl_in_place_off

cdef extern from "_blasthreads.h" nogil:
    bint blas_single_enter "bl_blas_single_enter"(const void *sgemm_addr)
    void blas_single_leave "bl_blas_single_leave"()

def _direction_lanes(enabled: bool | None = None) -> int:
    """How many bidirectional layers so far ran their two directions at once, one per thread
    (backward_lanes); enabled: turn that on or off (tests, A/B timing)."""
    global bl_lanes_off
    if enabled is not None:
        bl_lanes_off = not enabled
    return bl_backward_lanes

def _lanes_shared(late: int | None = None) -> tuple[int, int]:
    """(layers whose two directions ran at once and shared their products, times a thread ran
    pieces of the other direction's products); late: 0 or 1 starts that direction's time loop
    20 ms late and its products 20 ms after their ready flag, -1 neither (tests: the other
    thread then finishes first, must wait, and takes pieces of them even on a loaded machine,
    where it might otherwise not run again before the late one has taken them all)."""
    global bl_lanes_delay_part
    if late is not None:
        bl_lanes_delay_part = late
    return bl_backward_lanes_shared, bl_backward_lanes_joined

def _helper_loops() -> int:
    """How many backward time loops so far ran on two threads (lets tests see that it ran)."""
    return bl_backward_helper_loops

cdef enum:
    # dX = dA W_x runs in the time loop, step by step, when W_x and W_h packed together stay
    # in cache (t150 backward 4.5% faster at 1 thread, 6% at 2); larger weights would stream
    # from memory at every step (h1024: 3% slower), so their dX is one product after it ...
    LOOP_DX_MAX_WEIGHT_BYTES = 4 << 20
    # ... as it is for small batches, which stream the weights for few rows (stack2, N = 16:
    # 1% faster at 1 thread, 6% slower at 2, where each thread has 8 rows). Not a bound on
    # rows per thread: dX must not depend on n_threads.
    LOOP_DX_MIN_ROWS = 32

def _blas_single_threads() -> bool:
    """Would the whole-sequence products run on a single-threaded BLAS (tests)?"""
    cdef bint entered = blas_single_enter(current_sgemm())
    if entered:
        blas_single_leave()
    return entered

def _dx_after_loop() -> int:
    """How many (layer, direction)s so far computed dX after the time loop (tests)."""
    return bl_backward_dx_after

def _shared_dw(enabled: bool | None = None) -> int:
    """How many (layer, direction)s so far shared their dW product between the parts
    (bl_bgemm_shared); enabled: turn that sharing on or off (tests, A/B timing)."""
    global bl_shared_dw_off
    if enabled is not None:
        bl_shared_dw_off = not enabled
    return bl_backward_shared_dw

def _dw_in_place(enabled: bool | None = None) -> int:
    """How many gates' dW_x or dW_h so far the products wrote straight into the caller's
    tensors (gradient_rows); enabled: turn that, and dX's (dx_rows), on or off (tests, A/B
    timing)."""
    global bl_in_place_off
    if enabled is not None:
        bl_in_place_off = not enabled
    return bl_backward_dw_in_place

def _dx_in_place() -> int:
    """How many backward calls so far wrote dL/dx straight into the caller's tensor (tests)."""
    return bl_backward_dx_in_place

def _helper_products() -> int:
    """How many (layer, direction)s so far ran their whole-sequence products on our two
    threads, the BLAS single-threaded (tests)."""
    return bl_backward_helper_products

def _grad_pass(float[:, ::1] pre, float[:, ::1] cell, float[:, ::1] cprev, float[:, ::1] dy,
               float[:, ::1] dh_next, float[:, ::1] dc, float[:, ::1] da, int width) -> None:
    """The default cell's backward pass over every row (pre, da [N][4H]; the others [N][H];
    dc updated in place): the intrinsics pass of `width` floats, or with 0 the C clones'
    (tests)."""
    cdef size_t N = pre.shape[0], H = cell.shape[1]
    if (cell.shape[0], cprev.shape[0], dy.shape[0], dh_next.shape[0], dc.shape[0]) != (N,) * 5 \
            or (cprev.shape[1], dy.shape[1], dh_next.shape[1], dc.shape[1]) != (H,) * 4 \
            or pre.shape[1] != 4 * H or da.shape[0] != N or da.shape[1] != 4 * H or N == 0 \
            or H == 0:
        raise ValueError("shapes do not match")
    cdef int rc
    with nogil:
        rc = grad_default_rows_on(width, N, H, &pre[0, 0], &cell[0, 0], &cprev[0, 0], &dy[0, 0],
                                  H, &dh_next[0, 0], &dc[0, 0], &da[0, 0])
    if rc:
        raise RuntimeError(f"no {width}-float passes in this build or on this CPU")

def _bgemm(float[:, ::1] a, float[:, ::1] b, float[:, ::1] c, bint at, bint add, int c0=0,
           int c1=-1, int sized_for=-1) -> None:
    """C[:, c0:c1] (+)= op(A) @ B[:, c0:c1] (op(A) = A, or A^T with at) through our kernel for
    the whole-sequence products, as dx_part and product_at call it (tests), with a pack buffer
    of bl_bgemm_floats(sized_for columns) (default c1 - c0; dx_part's halves get dX's whole
    width's). Raises AssertionError if the kernel wrote past that buffer."""
    cdef int m = a.shape[1] if at else a.shape[0], k = a.shape[0] if at else a.shape[1]
    cdef int n = b.shape[1]
    c1 = n if c1 < 0 else c1
    sized_for = c1 - c0 if sized_for < 0 else sized_for
    if not bgemm_ok():
        raise RuntimeError("this CPU does not run the kernel (neither AVX-512 nor AVX2)")
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] < n or not 0 <= c0 <= c1 <= n \
            or k == 0 or sized_for < c1 - c0:
        raise ValueError("shapes do not match")
    if c1 == c0 or m == 0:
        return
    cdef size_t need = bgemm_floats(sized_for, k, at), guard = need + 64
    store = np.full(need + 16 + guard, np.nan, np.float32)  # NaN past the buffer, as long again
    cdef float[::1] buf = store
    cdef float *bp = align64(&buf[0])
    with nogil:
        bgemm(m, c1 - c0, k, &a[0, 0], a.shape[1], at, &b[0, c0], b.shape[1], &c[0, c0],
              c.shape[1], add, bp)
    cdef size_t start = <size_t>(bp - &buf[0]) + need
    if not np.isnan(store[start:start + guard]).all():
        raise AssertionError(f"the product wrote past its {need}-float pack buffer")

def _dw_l1_blocks(int choose=-1) -> bool:
    """Are dW's blocks of dA^T the L1 ones (48 x 160) rather than the L2 ones (96 x 800)? The
    kernel chooses by the CPU's L1 data cache (_bgemm.h); 0 or 1 chooses for this process
    (tests run both)."""
    return bg_choose_l1_blocks(choose) != 0

def _bgemm2(float[:, ::1] a, float[:, ::1] b1, float[:, ::1] c1, float[:, ::1] b2,
            float[:, ::1] c2) -> None:
    """C1 = A^T B1 and C2 = A^T B2 in one call, as dW_x and dW_h share dA^T (tests)."""
    cdef int m = a.shape[1], k = a.shape[0], n1 = b1.shape[1], n2 = b2.shape[1]
    if not bgemm_ok():
        raise RuntimeError("this CPU does not run the kernel (neither AVX-512 nor AVX2)")
    if b1.shape[0] != k or b2.shape[0] != k or c1.shape[0] != m or c2.shape[0] != m \
            or c1.shape[1] < n1 or c2.shape[1] < n2 or min(m, k, n1, n2) == 0:
        raise ValueError("shapes do not match")
    store = np.empty(bgemm2_floats(n1, n2, k, 1) + 16, np.float32)
    cdef float[::1] buf = store
    cdef float *bp = align64(&buf[0])
    with nogil:
        bgemm2(m, k, &a[0, 0], a.shape[1], 1, n1, &b1[0, 0], b1.shape[1], &c1[0, 0],
               c1.shape[1], n2, &b2[0, 0], b2.shape[1], &c2[0, 0], c2.shape[1], 0, bp)

cdef struct BWork:
    Weights w
    float *dA       # [S][N][4H] gradients of the gate pre-activations
    float *dY       # [S][N][D*H] gradient of the current layer's output
    float *dX       # [S][N][Win] gradient of the current layer's input
    float *dX2      # [S][N][Win] direction 1's share of it (D = 2), added to dX after the layer
    float *xin      # [S][N][Win] the current layer's input as the forward saw it
    float *hprev    # [S][N][H] h before each step (processing order), gathered when the
    float *cprev    # [S][N][H] c before each step    lengths vary (else NULL)
    const float *hp # h before each step of this direction: hprev, or in place in the cache
    size_t ldhp     # (the step before y's first, cache_layout), rows ldhp floats apart
    const float *cp # c before each step, [S][N][H]: cprev, or in place in the cache
    float *dh       # [N][H] dL/dh flowing to the previous step
    float *dc       # [N][H] dL/dc flowing to the previous step
    float *val      # [N][4H] gate values
    float *der      # [N][4H] gate derivatives
    float *th       # [N][H] act_hidden(c)
    float *thd      # [N][H] act_hidden'(c)
    float *h0       # [N][H] the initial state, for previous_states (else NULL, like hprev)
    float *c0       # [N][H]
    float *dW       # [4H][Win + H] weight gradient blocks: per part [2H][Win] and [2H][H], or
                    # (shared products) [4H][Win] then [4H][H]
    float *dv       # [4H] bias or diagonal-peephole gradient
    float *whtp     # W_h^T packed in k blocks (the per-step dh = dA W_h, pgemm_kblocks)
    float *wxtp     # W_x^T packed for pgemm (the per-step dX = dA W_x)
    float *dbsum    # [2][4H] column sums of dA, rows [0, N/2) and [N/2, N) of every step
    float *bgbuf    # [2][bgpart] pack buffers of the products on our kernel, one per part
    size_t bgpart
    float *bgshared # the panels of X and H_prev for every k block (bl_bgemm_shared), or NULL
    bint own        # the whole-sequence products run on our kernel (_bgemm.h), not the BLAS

cdef size_t input_width(const LSTMPlan *p) noexcept nogil:
    return p.W1 if p.L > 1 and p.W1 > p.In else p.In

cdef bint loop_dx(const LSTMPlan *p) noexcept nogil:
    """Does the time loop compute dX (see LOOP_DX_MAX_WEIGHT_BYTES)?"""
    cdef size_t weights = packed_size(<int>input_width(p), <int>(4 * p.H)) \
        + packed_size(<int>p.H, <int>(4 * p.H))
    return p.N >= LOOP_DX_MIN_ROWS and weights * sizeof(float) <= LOOP_DX_MAX_WEIGHT_BYTES

cdef size_t bgemm_part_floats(const LSTMPlan *p) noexcept nogil:
    """Floats of one part's pack buffers for the products on our kernel (0 if it cannot run):
    dW_x and dW_h (together) or dW_c over the S*N rows, and dX over 4H."""
    cdef int SN = <int>(p.S * p.N), H = <int>p.H, win = <int>input_width(p)
    if not bgemm_ok():
        return 0
    return (max(bgemm2_floats(win, H, SN, 1), bgemm_floats(win, 4 * H, 0))
            + 15) & ~(<size_t>15)          # the second part's buffer starts 64-byte aligned

cdef bint backward_lanes(const LSTMPlan *p) noexcept nogil:
    """Do the two directions of a bidirectional layer run at once, one per thread, each on a
    BWork of its own (as the forward's direction lanes)? Each thread then has all N rows of its
    direction's time loop, where a split gives it half of the rows of both in turn
    (stack2_bidir_h256_b16: 8 rows a thread; below 16 rows the loop did not split at all), and
    the products after the loops are shared (lanes_task). Not with products on a BLAS (its own
    threads would compete) or full peepholes (which call it inside the loop)."""
    return direction_lanes(p) == 2 and bgemm_ok() and own_products() \
        and not any_full_peephole(p) and not bl_lanes_off

cdef size_t bgemm_shared_part_floats(const LSTMPlan *p) noexcept nogil:
    """Floats of the shared panels of dW_x and dW_h on our kernel, per BWork (0 if it cannot
    run, or with one thread)."""
    if not bgemm_ok() or allowed_threads(p) < 2:
        return 0
    return bgemm_shared_floats(<int>(4 * p.H), <int>input_width(p), <int>p.H,
                               <int>(p.S * p.N))

cdef inline bint gather_prev(const LSTMPlan *p) noexcept nogil:
    """Are h and c before each step gathered (previous_states)? Only when the lengths vary
    (D5): else they lie in the training cache as [S][N] blocks (cache_layout)."""
    return p.seq_data != NULL

cdef int layout_bwork(const LSTMPlan *p, BWork *b, float *base, size_t lane,
                      size_t *nfloats) noexcept nogil:
    """Place a BWork at `base` (may be NULL: sizes only). Lane 1 (direction 1 on the second
    thread, backward_lanes) has no dY, X, dX or dX2 of its own: it reads lane 0's dY and
    writes lane 0's dX2 (lstm_backward points it there)."""
    cdef size_t o[27]
    cdef size_t off = 0, SN = p.S * p.N, H = p.H, N = p.N, win = input_width(p), nbytes
    cdef size_t bgpart = bgemm_part_floats(p), io = SN if lane == 0 else 0
    if weights_regions(p, &off, o) \
            or region(&off, SN, 4 * H, 1, &o[5]) or region(&off, io, p.D * H, 1, &o[6]) \
            or region(&off, io, win, 1, &o[7]) or region(&off, io, win, 1, &o[8]) \
            or region(&off, io if p.D == 2 else 0, win, 1, &o[26]) \
            or region(&off, SN if gather_prev(p) else 0, H, 1, &o[9]) \
            or region(&off, SN if gather_prev(p) else 0, H, 1, &o[10]) \
            or region(&off, N, H, 1, &o[11]) or region(&off, N, H, 1, &o[12]) \
            or region(&off, N, 4 * H, 1, &o[13]) or region(&off, N, 4 * H, 1, &o[14]) \
            or region(&off, N, H, 1, &o[15]) or region(&off, N, H, 1, &o[16]) \
            or region(&off, N if gather_prev(p) else 0, H, 1, &o[17]) \
            or region(&off, N if gather_prev(p) else 0, H, 1, &o[18]) \
            or region(&off, 4 * H, win + H, 1, &o[19]) \
            or region(&off, 4 * H, 1, 1, &o[20]) \
            or region(&off, packed_size(<int>H, <int>(4 * H)), 1, 1, &o[21]) \
            or region(&off, 2, 4 * H, 1, &o[22]) \
            or region(&off, packed_size(<int>win, <int>(4 * H)) if loop_dx(p) else 0, 1, 1,
                      &o[23]) \
            or region(&off, 2, bgpart, 1, &o[24]) \
            or region(&off, bgemm_shared_part_floats(p), 1, 1, &o[25]) \
            or mul_ovf(off, sizeof(float), &nbytes):
        return set_error(b"backward workspace size overflows size_t")
    nfloats[0] = off
    if base != NULL:
        weights_place(&b.w, base, o)
        b.dA, b.dY, b.dX, b.xin = base + o[5], base + o[6], base + o[7], base + o[8]
        b.dX2 = base + o[26]
        b.hprev = base + o[9] if gather_prev(p) else NULL
        b.cprev = base + o[10] if gather_prev(p) else NULL
        b.dh, b.dc = base + o[11], base + o[12]
        b.val, b.der, b.th, b.thd = base + o[13], base + o[14], base + o[15], base + o[16]
        b.h0 = base + o[17] if gather_prev(p) else NULL
        b.c0 = base + o[18] if gather_prev(p) else NULL
        b.dW, b.dv = base + o[19], base + o[20]
        b.whtp, b.dbsum, b.wxtp, b.bgbuf = base + o[21], base + o[22], base + o[23], base + o[24]
        b.bgpart = bgpart
        b.bgshared = base + o[25] if bgemm_shared_part_floats(p) else NULL
        b.own = bgpart != 0 and own_products()
    return 0

cdef int backward_workspace_bytes(const LSTMPlan *p, size_t *nbytes) noexcept nogil:
    cdef BWork b
    cdef size_t n, n1 = 0
    if layout_bwork(p, &b, NULL, 0, &n) \
            or (backward_lanes(p) and layout_bwork(p, &b, NULL, 1, &n1)) \
            or add_ovf(n, n1, &n) or mul_ovf(n, sizeof(float), nbytes):
        return set_error(b"backward workspace size overflows size_t")
    return 0

# ---------------------------------------------------------------------------------------------
# the elementwise pass, one step: from dL/dh and dL/dc to dA and the chains to the previous step

cdef void output_rows(const LSTMPlan *p, BWork *b, size_t n0, size_t n1, const float *pre,
                      const float *cell, const float *dy, size_t ldy,
                      float *dA) noexcept nogil:
    """Rows [n0, n1): gate values/derivatives, da_o, and dc += dh * o * act_h'(c) (+ diagonal
    o-peephole)."""
    cdef size_t H = p.H, G = 4 * H, n, j
    cdef int k
    cdef float *val
    cdef float *der
    cdef float *da
    cdef float *dc
    cdef const float *pd = b.w.pdiag + 3 * H
    for n in range(n0, n1):
        val, der, da, dc = b.val + n * G, b.der + n * G, dA + n * G, b.dc + n * H
        for k in range(NGATES):
            activation_grad_row(p.gate[k].act.function, p.gate[k].act.alpha,
                                p.gate[k].act.beta, pre + n * G + k * H, val + k * H,
                                der + k * H, H)
        activation_grad_row(p.hidden_act.function, p.hidden_act.alpha, p.hidden_act.beta,
                            cell + n * H, b.th + n * H, b.thd + n * H, H)
        grad_output_row(H, dy + n * ldy, b.dh + n * H, b.th + n * H, b.thd + n * H,
                        val + 3 * H, der + 3 * H, da + 3 * H, dc)
        if p.gate[GATE_O].peephole == PEEP_DIAG:
            for j in range(H):
                dc[j] += pd[j] * da[3 * H + j]

cdef void cell_rows(const LSTMPlan *p, BWork *b, size_t n0, size_t n1, const float *cprev,
                    float *dA) noexcept nogil:
    """Rows [n0, n1): da_i, da_f, da_g and dc_prev = dc * f (+ diagonal i/f/g peepholes)."""
    cdef size_t H = p.H, G = 4 * H, n, j
    cdef int k
    cdef float *val
    cdef float *der
    cdef float *da
    cdef float *dc
    cdef const float *cp
    for n in range(n0, n1):
        val, der, da, dc, cp = b.val + n * G, b.der + n * G, dA + n * G, b.dc + n * H, \
            cprev + n * H
        grad_cell_row(H, val, der, cp, dc, da)
        for k in range(GATE_O):
            if p.gate[k].peephole == PEEP_DIAG:
                for j in range(H):
                    dc[j] += b.w.pdiag[k * H + j] * da[k * H + j]

cdef void previous_states(const LSTMPlan *p, BWork *b, size_t d, size_t t, size_t n0,
                          size_t n1, size_t nt, const float *y,
                          const float *cell) noexcept nogil:
    """Rows [n0, n1): h and c before step t of each active sample (processing order), zeros
    for the others (n >= nt)."""
    cdef size_t H = p.H, N = p.N, DH = p.D * p.H, n, tp
    cdef bint has_prev
    for n in range(n0, n1):
        if n >= nt:
            memset(b.hprev + (t * N + n) * H, 0, H * sizeof(float))
            memset(b.cprev + (t * N + n) * H, 0, H * sizeof(float))
            memset(b.dA + (t * N + n) * 4 * H, 0, 4 * H * sizeof(float))
            continue
        if d == 0:
            has_prev, tp = t > 0, t - 1
        else:                       # reverse: sample n started at its own last step (D5)
            has_prev, tp = t + 1 < p.S and n < batch_at(p, t + 1), t + 1
        if has_prev:
            memcpy(b.hprev + (t * N + n) * H, y + (tp * N + n) * DH + d * H, H * sizeof(float))
            memcpy(b.cprev + (t * N + n) * H, cell + (tp * N + n) * H, H * sizeof(float))
        else:
            memcpy(b.hprev + (t * N + n) * H, b.h0 + n * H, H * sizeof(float))
            memcpy(b.cprev + (t * N + n) * H, b.c0 + n * H, H * sizeof(float))

# ---------------------------------------------------------------------------------------------
# whole-sequence gradients after the time loop

cdef void scaled_column_sums(const float *a, size_t lda, const float *scale, size_t lds,
                             size_t rows, size_t n, float *out) noexcept nogil:
    """out[j] = sum_r a[r][j] * scale[r][j] (the diagonal peepholes' gradients)."""
    cdef size_t r, j
    memset(out, 0, n * sizeof(float))
    for r in range(rows):
        for j in range(n):
            out[j] += a[r * lda + j] * scale[r * lds + j]

cdef const WeightView *grad_input_view(const LSTMPlan *p, const GradGate *gg, int k, size_t l,
                                       size_t *idx) noexcept nogil:
    """Where layer l's dW_x of gate k goes: the forward's iw_desc split (D1)."""
    if l > 0 and p.gate[k].wx1.data != NULL:
        idx[0] = l - 1
        return &gg.dwx1
    idx[0] = l
    return &gg.dwx0

cdef struct Grads:
    # The whole-sequence products of one (layer, direction), in two parts that depend on no
    # other: part q takes gates [2q, 2q + 2) of every weight gradient and half of dX (when the
    # time loop did not compute it).
    # Always these two, one after the other when there is no helper: a BLAS sums a product's
    # rows differently when they are cut elsewhere, so the cut must not depend on n_threads.
    # When OpenBLAS is made single-threaded for them, it is whatever n_threads is, likewise.
    # With a helper and our kernel, the parts instead share dW_x and dW_h row group by row
    # group (shared): our kernel's sums do not depend on the cut.
    const LSTMPlan *p
    const GradPlan *gr
    BWork *b
    size_t l, d
    const float *xin
    const float *cell
    int ldx, in_w
    bint dx_after
    bint shared     # dW_x and dW_h of all gates as one product the parts share (dw_shared)
    bl_bgemm_shared dw
    bl_claims claims    # shared: the pieces either thread may take (shared_products)
    float *tbuf[2]      # shared: thread t's pack and transposition buffer

cdef void product_at(const Grads *g, int part, int m, int n, const float *a, const float *x,
                     int ldx, float *c, int ldc) noexcept nogil:
    """C[m x n] = A^T X over the S*N rows: A is m columns of dA (row stride 4H), X [S*N x n]
    (row stride ldx), C's rows ldc apart; on our kernel (with this part's pack buffers) or
    through the BLAS."""
    cdef int SN = <int>(g.p.S * g.p.N), G = 4 * <int>g.p.H
    if g.b.own:
        bgemm(m, n, SN, a, G, 1, x, ldx, c, ldc, 0, g.b.bgbuf + part * g.b.bgpart)
    else:
        gemm_rm(b'T', b'N', m, n, SN, 1.0, a, G, x, ldx, 0.0, c, ldc)

cdef float *gradient_rows(const Grads *g, bint input, int k0, int k1, int *ld) noexcept nogil:
    """The caller's dW_x (input) or dW_h of gates [k0, k1) as one row-major block that the
    products can write in place, its rows *ld floats apart, or NULL: they then write scratch,
    and scatter_matrix copies it out. In place when every gate is set, not accumulated (D7),
    with unit column stride, and its rows follow the previous gate's at the same row stride
    (LSTM's gradients, PyTorch's stacking): no pass over the scratch, whose pages stay
    untouched (db_train_h1024_b64: 32 MiB)."""
    cdef const WeightView *v
    cdef size_t idx, H = g.p.H, s_out = 0
    cdef float *first = NULL
    cdef float *at
    cdef int k
    if bl_in_place_off:
        return NULL
    for k in range(k0, k1):
        if input:
            v = grad_input_view(g.p, &g.gr.gate[k], k, g.l, &idx)
        else:
            v = &g.gr.gate[k].dwh
            idx = g.l
        if v.data == NULL or v.accumulate or v.s_in != 1 or v.s_out > <size_t>INT_MAX:
            return NULL
        at = weight_ptr(v, idx, g.d)
        if k == k0:
            first, s_out = at, v.s_out
        elif v.s_out != s_out or at != first + <size_t>(k - k0) * H * s_out:
            return NULL
    ld[0] = <int>s_out
    count_event(&bl_backward_dw_in_place, <unsigned long>(k1 - k0))
    return first

cdef void dx_part(const Grads *g, int part, float *buf) noexcept nogil:
    """This part's share of dX = dA W_x (direction 1's into dX2): on our kernel half of
    dX's columns (whole panels, so that each part packs only its half of W_x, into buf), through
    the BLAS half of its rows."""
    cdef const LSTMPlan *p = g.p
    cdef BWork *b = g.b
    cdef int G = 4 * <int>p.H, SN = <int>(p.S * p.N), in_w = g.in_w
    cdef int mid = (in_w + 15) // 16 // 2 * 16, r0, r1, c0, c1
    if b.own:
        c0 = 0 if part == 0 else mid
        c1 = mid if part == 0 else in_w
        if c1 > c0:
            bgemm(SN, c1 - c0, G, b.dA, G, 0, b.w.wx_cur + c0, b.w.ldwx, b.dX + c0, in_w,
                  0, buf)
        return
    r0 = 0 if part == 0 else SN // 2
    r1 = SN // 2 if part == 0 else SN
    if r1 > r0:
        gemm_rm(b'N', b'N', r1 - r0, in_w, G, 1.0, b.dA + <size_t>r0 * G, G, b.w.wx_cur,
                b.w.ldwx, 0.0, b.dX + <size_t>r0 * in_w, in_w)

cdef bint dw_shared(const LSTMPlan *p, const GradPlan *gr, const BWork *b, size_t l) noexcept nogil:
    """Do the parts share dW_x and dW_h (bl_bgemm_shared): on our kernel, every gate wanting
    both, and no full peephole (whose product uses the parts' scratch in dW)?"""
    cdef size_t idx
    cdef int k
    if not b.own or b.bgshared == NULL or any_full_peephole(p) or bl_shared_dw_off:
        return False
    for k in range(NGATES):
        if grad_input_view(p, &gr.gate[k], k, l, &idx).data == NULL \
                or gr.gate[k].dwh.data == NULL:
            return False
    return True

cdef void shared_dw_job(Grads *g, float *tbuf0, float *tbuf1) noexcept nogil:
    """dW_x [4H][in_w] then dW_h [4H][H], in dW or in place (gradient_rows): dA^T [X, H_prev]
    for shared_products, threads 0 and 1 working in tbuf0 and tbuf1."""
    cdef BWork *b = g.b
    cdef int H = <int>g.p.H, G = 4 * H
    g.dw.m, g.dw.k, g.dw.n1, g.dw.n2 = G, <int>(g.p.S * g.p.N), g.in_w, H
    g.dw.A, g.dw.lda = b.dA, G
    g.dw.B1, g.dw.ldb1, g.dw.B2, g.dw.ldb2 = g.xin, g.ldx, b.hp, b.ldhp
    g.dw.C1, g.dw.ldc1 = b.dW, g.in_w
    g.dw.C2, g.dw.ldc2 = b.dW + <size_t>G * g.in_w, H
    cdef int ld = 0
    cdef float *c = gradient_rows(g, True, 0, NGATES, &ld)
    if c != NULL:
        g.dw.C1, g.dw.ldc1 = c, ld
    c = gradient_rows(g, False, 0, NGATES, &ld)
    if c != NULL:
        g.dw.C2, g.dw.ldc2 = c, ld
    g.dw.bp, g.tbuf[0], g.tbuf[1] = b.bgshared, tbuf0, tbuf1
    bgemm_shared_init(&g.dw)
    claims_init(&g.claims)

cdef void gate_pair_tail(const Grads *g, int q) noexcept nogil:
    """After the shared dW: gates [2q, 2q + 2)'s scatter (what was not written in place), db and
    diagonal peepholes."""
    cdef const LSTMPlan *p = g.p
    cdef const GradPlan *gr = g.gr
    cdef BWork *b = g.b
    cdef int H = <int>p.H, G = 4 * H, in_w = g.in_w, k0 = 2 * q, k, j
    cdef size_t idx
    cdef float *dv = b.dv + k0 * H
    cdef const WeightView *wv
    for k in range(k0, k0 + 2):
        wv = grad_input_view(p, &gr.gate[k], k, g.l, &idx)
        if g.dw.C1 == b.dW:
            scatter_matrix(wv, idx, g.d, g.dw.C1 + <size_t>k * H * in_w, H, in_w)
        if g.dw.C2 == b.dW + <size_t>G * in_w:
            scatter_matrix(&gr.gate[k].dwh, g.l, g.d, g.dw.C2 + <size_t>k * H * H, H, H)
    for j in range(2 * H):      # db: the two halves of the column sums of dA (backward_steps)
        dv[j] = b.dbsum[k0 * H + j] + b.dbsum[G + k0 * H + j]
    for k in range(k0, k0 + 2):
        if gr.gate[k].db.data != NULL:
            scatter_vector(&gr.gate[k].db, g.l, g.d, dv + (k - k0) * H, H)
        if gr.gate[k].dwc.data != NULL:     # diagonal: i, f, g read the old cell, o the new
            scaled_column_sums(b.dA + k * H, G, g.cell if k == GATE_O else b.cp, H,
                               <size_t>(p.S * p.N), H, dv + (k - k0) * H)
            scatter_vector(&gr.gate[k].dwc, g.l, g.d, dv + (k - k0) * H, H)

cdef int shared_products(Grads *g, int t) noexcept nogil:
    """Thread t's share of the shared products (shared_dw_job): dX's two halves (when the time
    loop did not compute dX), the shared dW_x and dW_h, then the two gate pairs' tails, each
    piece taken by whichever thread claims it first, so that a thread that arrives first (or
    late, from the other direction's products) takes more. Thread t works in g.tbuf[t]. Returns
    when dX's halves are claimed, dW is done and the tails are claimed; the caller's join
    waits for the pieces the other thread is still running. Returns how many dX halves and
    tails this thread ran, and whether it ran dW items (1 more)."""
    cdef int q = claim(&g.claims, 0) if g.dx_after else 2, ran = 0
    while q < 2:
        dx_part(g, q, g.tbuf[t])
        ran += 1
        q = claim(&g.claims, 0)
    ran += bgemm_shared_run(&g.dw, g.tbuf[t]) > 0
    q = claim(&g.claims, 1)
    while q < 2:
        gate_pair_tail(g, q)
        ran += 1
        q = claim(&g.claims, 1)
    return ran

cdef void gradients_part(Grads *g, int part) noexcept nogil:
    """dW_x = dA^T X, dW_h = dA^T H_prev, db and the peephole gradients of this part's gates,
    then, when the time loop did not, this part's share of dX (dx_part)."""
    cdef const LSTMPlan *p = g.p
    cdef const GradPlan *gr = g.gr
    cdef BWork *b = g.b
    cdef int H = <int>p.H, G = 4 * H, SN = <int>(p.S * p.N), in_w = g.in_w
    cdef int k0 = 2 * part, k1 = k0 + 2, k, j, g0 = k0 * H, gn = 2 * H
    cdef size_t idx
    # this part's scratch for dW_x [2H][in_w], then dW_h [2H][H]: no overlap with the other's
    cdef float *dW = b.dW + <size_t>g0 * <size_t>(in_w + H)
    cdef float *dWh = dW + <size_t>gn * <size_t>in_w
    cdef float *dv = b.dv + g0
    cdef const GradGate *gg
    cdef const WeightView *wv
    cdef bint want_x = False, want_h = False, want_b = False
    cdef int ldx_out = in_w, ldh_out = H    # the products' rows: scratch, or in place
    cdef float *cx = NULL
    cdef float *ch = NULL
    for k in range(k0, k1):
        wv = grad_input_view(p, &gr.gate[k], k, g.l, &idx)
        want_x = want_x or wv.data != NULL
        want_h = want_h or gr.gate[k].dwh.data != NULL
        want_b = want_b or gr.gate[k].db.data != NULL
    if want_x:
        cx = gradient_rows(g, True, k0, k1, &ldx_out)
        if cx == NULL:
            cx, ldx_out = dW, in_w
    if want_h:
        ch = gradient_rows(g, False, k0, k1, &ldh_out)
        if ch == NULL:
            ch, ldh_out = dWh, H
    if want_x and want_h and b.own:     # one transposition of dA for both
        bgemm2(gn, SN, b.dA + g0, G, 1, in_w, g.xin, g.ldx, cx, ldx_out, H, b.hp, b.ldhp, ch,
               ldh_out, 0, b.bgbuf + part * b.bgpart)
    else:
        if want_x:
            product_at(g, part, gn, in_w, b.dA + g0, g.xin, g.ldx, cx, ldx_out)
        if want_h:
            product_at(g, part, gn, H, b.dA + g0, b.hp, <int>b.ldhp, ch, ldh_out)
    if cx == dW:
        for k in range(k0, k1):
            wv = grad_input_view(p, &gr.gate[k], k, g.l, &idx)
            if wv.data != NULL:
                scatter_matrix(wv, idx, g.d, dW + (k - k0) * H * in_w, H, in_w)
    if ch == dWh:
        for k in range(k0, k1):
            if gr.gate[k].dwh.data != NULL:
                scatter_matrix(&gr.gate[k].dwh, g.l, g.d, dWh + (k - k0) * H * H, H, H)
    if want_b:       # db: the two halves of the column sums of dA (backward_steps)
        for j in range(gn):
            dv[j] = b.dbsum[g0 + j] + b.dbsum[G + g0 + j]
        for k in range(k0, k1):
            if gr.gate[k].db.data != NULL:
                scatter_vector(&gr.gate[k].db, g.l, g.d, dv + (k - k0) * H, H)
    for k in range(k0, k1):  # peepholes: i, f, g read the old cell, o the new one
        gg = &gr.gate[k]
        if gg.dwc.data == NULL:
            continue
        if p.gate[k].peephole == PEEP_FULL:
            product_at(g, part, H, H, b.dA + k * H, g.cell if k == GATE_O else b.cp, H, dW, H)
            scatter_matrix(&gg.dwc, g.l, g.d, dW, H, H)
        else:
            scaled_column_sums(b.dA + k * H, G, g.cell if k == GATE_O else b.cp, H, SN,
                               H, dv)
            scatter_vector(&gg.dwc, g.l, g.d, dv, H)
    if g.dx_after:
        dx_part(g, part, b.bgbuf + part * b.bgpart)

cdef void gradients_task(void *arg, int part) noexcept nogil:
    cdef Grads *g = <Grads *>arg
    if g.shared:
        shared_products(g, part)
    else:
        gradients_part(g, part)

# ---------------------------------------------------------------------------------------------
# one (layer, direction), then the whole stack

cdef struct Steps:
    # One thread's share of a direction's steps back through time: batch rows [n0, n1) of
    # every step, which depend on no other row (split at N / 2 between two threads), or all of
    # them with a helper taking half of each step's dh = dA W_h (fewer rows)
    bl_helper *helper
    const LSTMPlan *p
    BWork *b
    size_t d
    const float *pre
    const float *cell
    const float *y
    int in_w
    bint dx_in_loop

cdef void backward_steps(const Steps *s, size_t n0, size_t n1) noexcept nogil:
    """The recurrent chain back through time for batch rows [n0, n1): per step the gate
    gradients dA (kept for the whole-sequence GEMMs), their column sums (db), dX, and dh, dc
    to the previous step."""
    cdef const LSTMPlan *p = s.p
    cdef BWork *b = s.b
    cdef size_t d = s.d
    cdef const float *pre = s.pre
    cdef const float *cell = s.cell
    cdef int H = <int>p.H, G = 4 * H, in_w = s.in_w, k, k2
    cdef size_t S = p.S, N = p.N, DH = p.D * p.H, step, t, nt, n_end, n_off, split = N // 2
    cdef size_t ldc = <size_t>b.w.ldwc
    cdef bint one_sweep = default_cell(p)
    cdef float *dA_t
    cdef float *dX_t
    if s.helper != NULL:
        count_event(&bl_backward_helper_loops, 1)
    for step in range(S):                                   # back through time
        t = S - 1 - step if d == 0 else step
        nt = batch_at(p, t)                                 # D5: active samples are [0, nt)
        n_end = min(n1, nt)
        dA_t, dX_t = b.dA + t * N * G, b.dX + t * N * in_w
        if b.hprev != NULL:                                 # varying lengths (D5)
            previous_states(p, b, d, t, n0, n1, nt, s.y, cell)
        if s.dx_in_loop and n_end < n1:                     # inactive samples: dX is 0
            n_off = max(n0, n_end)
            memset(dX_t + n_off * in_w, 0, (n1 - n_off) * in_w * sizeof(float))
        if n_end <= n0:
            continue
        if one_sweep:
            grad_default_rows(n_end - n0, p.H, pre + (t * N + n0) * G,
                              cell + (t * N + n0) * p.H, b.cp + (t * N + n0) * p.H,
                              b.dY + (t * N + n0) * DH + d * p.H, DH, b.dh + n0 * p.H,
                              b.dc + n0 * p.H, dA_t + n0 * G)
        else:
            output_rows(p, b, n0, n_end, pre + t * N * G, cell + t * N * p.H,
                        b.dY + t * N * DH + d * p.H, DH, dA_t)
            if p.gate[GATE_O].peephole == PEEP_FULL:        # dc += da_o W_oc
                gemm_rm(b'N', b'N', <int>(n_end - n0), H, H, 1.0, dA_t + n0 * G + 3 * H, G,
                        b.w.wc_cur + 3 * p.H * ldc, b.w.ldwc, 1.0, b.dc + n0 * H, H)
            cell_rows(p, b, n0, n_end, b.cp + t * N * p.H, dA_t)
            k = 0
            while full_peephole_run(p, &k, &k2):            # dc_prev += da_k W_kc (i, f, g)
                gemm_rm(b'N', b'N', <int>(n_end - n0), H, (k2 - k) * H, 1.0,
                        dA_t + n0 * G + k * H, G, b.w.wc_cur + k * p.H * ldc, b.w.ldwc, 1.0,
                        b.dc + n0 * H, H)
                k = k2
        # db: rows below N/2 and the others in two sums, whichever thread runs them, so
        # that db is the same for any n_threads
        if n0 < split:
            add_rows(min(n_end, split) - n0, G, dA_t + n0 * G, G, b.dbsum)
        if n_end > split:
            add_rows(n_end - max(n0, split), G, dA_t + max(n0, split) * G, G, b.dbsum + G)
        # dh_prev = dA W_h (rows of inactive samples keep their gradient); the panel order
        # alternates as in the forward
        pgemm_kblocks(s.helper, <int>(n_end - n0), H, G, dA_t + n0 * G, G, b.whtp,
                      b.dh + n0 * H, H, step & 1)
        # dX = dA W_x (direction 1's into dX2), while dA is in cache
        if s.dx_in_loop:
            pgemm(NULL, <int>(n_end - n0), 1, in_w, G, dA_t + n0 * G, G, b.wxtp,
                  0.0, dX_t + n0 * in_w, in_w, step & 1)

cdef void steps_task(void *arg, int part) noexcept nogil:
    cdef Steps *s = <Steps *>arg
    cdef size_t split = s.p.N // 2
    backward_steps(s, 0 if part == 0 else split, split if part == 0 else s.p.N)

cdef void direction_setup(const LSTMPlan *p, const GradPlan *gr, const Cache *cache,
                          BWork *b, size_t l, size_t d, const float *xin, int ldx, int in_w,
                          bint need_dx, Steps *steps, Grads *grads) noexcept nogil:
    """Direction d of layer l before its time loop: its weights packed, the incoming state
    gradients loaded, and steps (the loop) and grads (the products after it) set up."""
    cdef size_t N = p.N, DH = p.D * p.H
    load_weights(p, &b.w, l, d, in_w)
    pack_kblocks(<int>p.H, <int>(4 * p.H), b.w.wh_cur, b.w.ldwh, b.whtp)
    steps.dx_in_loop = need_dx and loop_dx(p)
    grads.dx_after = need_dx and not steps.dx_in_loop
    if grads.dx_after:
        count_event(&bl_backward_dx_after, 1)
    if steps.dx_in_loop:
        pack_panels_t(in_w, <int>(4 * p.H), b.w.wx_cur, b.w.ldwx, b.wxtp)
    load_state(&gr.dhn, l, d, N, p.H, b.dh)                 # NULL incoming gradients are 0
    load_state(&gr.dcn, l, d, N, p.H, b.dc)
    memset(b.dbsum, 0, 8 * p.H * sizeof(float))
    steps.helper, steps.p, steps.b, steps.d = NULL, p, b, d
    steps.pre, steps.cell = cache_pre(p, cache, l, d), cache_cell(p, cache, l, d)
    steps.y, steps.in_w = cache_y(p, cache, l), in_w
    if b.hprev != NULL:             # gathered by the time loop (previous_states)
        load_state(&p.h0, l, d, N, p.H, b.h0)
        load_state(&p.c0, l, d, N, p.H, b.c0)
        b.hp, b.ldhp, b.cp = b.hprev, p.H, b.cprev
    else:                           # in place: the initial state is in the step before
        b.hp = steps.y + d * p.H - N * DH if d == 0 else steps.y + d * p.H + N * DH
        b.ldhp = DH
        b.cp = steps.cell - N * p.H if d == 0 else steps.cell + N * p.H
    grads.p, grads.gr, grads.b, grads.l, grads.d = p, gr, b, l, d
    grads.xin, grads.cell, grads.ldx, grads.in_w = xin, steps.cell, ldx, in_w
    grads.shared = False

cdef void backward_direction(const LSTMPlan *p, const GradPlan *gr, const Cache *cache,
                             BWork *b, size_t l, size_t d, const float *xin, int ldx,
                             int in_w, bint need_dx) noexcept nogil:
    """Direction d of layer l back through time, then its whole-sequence products; with two
    threads allowed, a helper may take half of each. The results do not depend on which."""
    cdef size_t N = p.N
    cdef Steps steps
    cdef Grads grads
    cdef bl_helper helper
    cdef bint helper_on = False, split_loop, split_products, single
    direction_setup(p, gr, cache, b, l, d, xin, ldx, in_w, need_dx, &steps, &grads)
    # DESIGN step 7, as the forward: with two threads each takes half of the batch rows of the
    # time loop (full peepholes call the BLAS inside the loop: they stay on one thread), and
    # half of the whole-sequence products after it: on our kernel, or with OpenBLAS made
    # single-threaded, so that its own workers never wake (they would spin ~0.1 s on the cores
    # the next call needs). Otherwise the products run on the BLAS's threads, and the helper
    # must not wait beside them.
    # Fewer rows than two threads' worth share each step's dh = dA W_h by panels instead, as the
    # forward's products do (the elementwise pass stays on this thread).
    split_loop = use_helper(p) and not any_full_peephole(p)
    if split_loop and helper_start(&helper):
        helper_on = True
        if N >= 2 * SPLIT_MIN_ROWS:
            run_parts(&helper, steps_task, &steps)
            count_event(&bl_backward_helper_loops, 1)
        else:
            steps.helper = &helper                  # counted where the products take it
            backward_steps(&steps, 0, N)
            steps.helper = NULL
    else:
        backward_steps(&steps, 0, N)
    store_state(&gr.dh0, l, d, N, p.H, b.dh, gr.dh0.accumulate)
    store_state(&gr.dc0, l, d, N, p.H, b.dc, gr.dc0.accumulate)
    single = not b.own and blas_single_enter(current_sgemm())
    split_products = (b.own or single) and allowed_threads(p) >= 2 \
        and p.S * N * 4 * p.H * (<size_t>in_w * (2 if grads.dx_after else 1) + p.H) \
        >= HELPER_MIN_MACS
    if helper_on and not split_products:
        helper_stop(&helper)
        helper_on = False
    elif split_products and not helper_on:
        helper_on = helper_start(&helper)
    grads.shared = helper_on and dw_shared(p, gr, b, l)   # one thread: the halves in turn
    if grads.shared:
        shared_dw_job(&grads, b.bgbuf, b.bgbuf + b.bgpart)
        count_event(&bl_backward_shared_dw, 1)
    if helper_on:
        run_parts(&helper, gradients_task, &grads)
        helper_stop(&helper)
        count_event(&bl_backward_helper_products, 1)
    else:
        run_parts(NULL, gradients_task, &grads)
    if single:
        blas_single_leave()

cdef struct Lanes:
    # Both directions of layer l at once (backward_lanes): part d runs direction d on b[d]
    # (backward_direction), or with share, its time loop and then the products of both
    # directions with the other thread (shared_products: its own first, then the other's).
    const LSTMPlan *p
    const GradPlan *gr
    const Cache *cache
    BWork *b
    size_t l
    const float *xin
    int ldx, in_w
    bint need_dx, share
    Grads grads[2]
    bl_flag ready[2]    # direction d's products set up (its time loop done)

cdef void lanes_task(void *arg, int part) noexcept nogil:
    cdef Lanes *a = <Lanes *>arg
    cdef Steps steps
    cdef BWork *b = &a.b[part]
    if not a.share:
        backward_direction(a.p, a.gr, a.cache, b, a.l, part, a.xin, a.ldx, a.in_w, a.need_dx)
        return
    direction_setup(a.p, a.gr, a.cache, b, a.l, part, a.xin, a.ldx, a.in_w, a.need_dx, &steps,
                    &a.grads[part])
    if part == bl_lanes_delay_part:
        lanes_delay()
    backward_steps(&steps, 0, a.p.N)
    store_state(&a.gr.dh0, a.l, part, a.p.N, a.p.H, b.dh, a.gr.dh0.accumulate)
    store_state(&a.gr.dc0, a.l, part, a.p.N, a.p.H, b.dc, a.gr.dc0.accumulate)
    a.grads[part].shared = True
    shared_dw_job(&a.grads[part], a.b[0].bgbuf, a.b[1].bgbuf)
    flag_set(&a.ready[part])
    if part == bl_lanes_delay_part:     # and leaves its products to the other thread a while
        lanes_delay()
    shared_products(&a.grads[part], part)
    flag_wait(&a.ready[1 - part])       # the other direction's time loop is done
    if shared_products(&a.grads[1 - part], part):
        count_event(&bl_backward_lanes_joined, 1)

cdef float *dx_rows(const LSTMPlan *p, const GradPlan *gr) noexcept nogil:
    """The caller's dL/dx as the [S*N][I] row-major block that layer 0's loop and products
    can write in place (set, not accumulated, dense), or NULL: they write scratch, and
    scatter_seq copies it out."""
    cdef const SeqView *v = &gr.dx
    if bl_in_place_off or v.data == NULL or v.accumulate or v.se != 1 \
            or (p.N > 1 and v.sn != p.In) or (p.S > 1 and v.ss != p.N * p.In):
        return NULL
    return v.data

cdef int lstm_backward(const LSTMPlan *p, const GradPlan *gr, const Cache *cache,
                       void *workspace) noexcept nogil:
    cdef BWork lane[2]
    cdef BWork *b = &lane[0]
    cdef Lanes lanes
    cdef bl_helper helper
    cdef bl_helper *second = NULL
    cdef size_t nfloats, l, d, S = p.S, N = p.N, DH = p.D * p.H, SN = p.S * p.N
    cdef const float *xin
    cdef float *dx1
    cdef float *dx_out
    cdef float *dx_scratch = NULL     # b.dX while layer 0 writes the caller's dx in place
    cdef int ldx, in_w
    cdef bint need_dx, two_lanes = backward_lanes(p)
    cdef bl_fpstate fpstate
    layout_bwork(p, b, <float *>workspace, 0, &nfloats)
    if two_lanes:           # direction 1 reads lane 0's dY and writes its dX2 (layout_bwork)
        layout_bwork(p, &lane[1], <float *>workspace + nfloats, 1, &nfloats)
        lane[1].dY, lane[1].xin, lane[1].dX = b.dY, b.xin, b.dX2
        if helper_start(&helper):
            second = &helper
    fpstate = ftz_enter()
    gather_seq(&gr.dy, S, N, DH, p, b.dY)                   # top layer: the caller's dL/dy
    l = p.L
    while l > 0:
        l -= 1
        if l == 0:
            in_w = <int>p.In
            if p.seq_data == NULL and x_in_place(p, &ldx):
                xin = p.x.data
            else:                  # padded steps of x become 0: they must not reach dW_x
                gather_seq(&p.x, S, N, p.In, p, b.xin)
                xin, ldx = b.xin, in_w
            dx_out = dx_rows(p, gr)
            if dx_out != NULL:
                dx_scratch, b.dX = b.dX, dx_out
        else:
            in_w, ldx = <int>p.W1, <int>DH
            if cache.dropout:
                apply_mask(cache_y(p, cache, l - 1), cache_mask(p, cache, l - 1), SN * DH,
                           p.dropout, b.xin)
                xin = b.xin
            else:
                xin = cache_y(p, cache, l - 1)
        need_dx = l > 0 or gr.dx.data != NULL
        if two_lanes:               # without a running helper, one after the other here
            lanes.p, lanes.gr, lanes.cache, lanes.b, lanes.l = p, gr, cache, lane, l
            lanes.xin, lanes.ldx, lanes.in_w, lanes.need_dx = xin, ldx, in_w, need_dx
            # shared products need both threads: without the helper, thread 0 would wait for
            # direction 1's loop forever
            lanes.share = second != NULL and dw_shared(p, gr, b, l) \
                and dw_shared(p, gr, &lane[1], l)
            flag_init(&lanes.ready[0])
            flag_init(&lanes.ready[1])
            run_parts(second, lanes_task, &lanes)
            if second != NULL:
                count_event(&bl_backward_lanes, 1)
            if lanes.share:
                count_event(&bl_backward_lanes_shared, 1)
        else:
            for d in range(p.D):    # direction 1 writes its dX into dX2, as its lane would
                dx1 = b.dX
                if d == 1:
                    b.dX = b.dX2
                backward_direction(p, gr, cache, b, l, d, xin, ldx, in_w, need_dx)
                b.dX = dx1
        if need_dx and p.D == 2:    # the same sum whichever thread ran each direction
            add_rows(1, SN * <size_t>in_w, b.dX2, SN * <size_t>in_w, b.dX)
        if l > 0:                  # the layer below's dY: dX through the dropout mask
            if cache.dropout:
                apply_mask(b.dX, cache_mask(p, cache, l - 1), SN * DH, p.dropout, b.dY)
            else:
                memcpy(b.dY, b.dX, SN * DH * sizeof(float))
        elif dx_scratch != NULL:
            b.dX = dx_scratch
            count_event(&bl_backward_dx_in_place, 1)
        elif need_dx:
            scatter_seq(&gr.dx, S, N, p.In, b.dX, gr.dx.accumulate)
    ftz_leave(fpstate)
    if second != NULL:
        helper_stop(second)
    return 0
