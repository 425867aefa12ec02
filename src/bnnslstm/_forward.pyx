# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The forward pass (spec 3.5) over a validated plan, the fast way (DESIGN.md steps 2 to 9).

Per (layer, direction): the four gates' weights as one [4H x in] and one [4H x H] block; one
GEMM projects every time step's input at once (or, when those gates would not stay in cache,
the time loop projects a few steps at a time); then the time loop does one recurrent GEMM per
step and one fused elementwise pass. With a training cache (D6, D10) the pass also keeps the
gate pre-activations, cell states and layer outputs, and applies dropout between layers.
No allocation happens in here: everything lives in the workspace or the cache.
"""
from libc.string cimport memcpy, memset

import numpy as np

from bnnslstm._activations cimport activation_row, bl_fpstate, ftz_enter, ftz_leave
from bnnslstm.bnns cimport BNNSActivationFunctionSigmoid, BNNSActivationFunctionTanh
from bnnslstm._cache cimport cache_cell, cache_mask, cache_pre, cache_y
from bnnslstm._checked cimport mul_ovf, region
from bnnslstm._dropout cimport apply_mask, fill_mask, next_key
from bnnslstm._frozen cimport frozen_capacity, frozen_wh, frozen_wx
from bnnslstm._gemm cimport (
    HELPER_MIN_MACS, SPLIT_MIN_ROWS, align64, atomic_ulong, bl_helper, direct_floats,
    online_cpus, pack_gates, pack_panels_t, packed_size, pgemm, pgemm_direct, pgemm_packing,
    claim, pgemm_units, run_parts, step_barrier, unit_chunk,
)
from bnnslstm._plan cimport (
    GATE_G, GATE_O, PEEP_DIAG, PEEP_FULL, PEEP_NONE, GatePlan, batch_at, full_peephole_run,
    set_error,
)
from bnnslstm._tensors cimport load_state, scatter_seq, store_state, x_in_place, y_in_place
from bnnslstm._weights cimport (
    Weights, any_full_peephole, load_weights, weights_place, weights_regions,
)
from bnnslstm._worker cimport helper_start, helper_stop

cdef extern from "_cell.h" nogil:
    void cell_default_rows "bl_cell_default_rows"(size_t rows, size_t H, size_t u0, size_t u1,
                                                   const float *g, const float *bias, float *c,
                                                   float *h, float *pre)
    int cell_default_rows_on "bl_cell_default_rows_on"(int width, size_t rows, size_t H,
                                                        size_t u0, size_t u1, const float *g,
                                                        const float *bias, float *c, float *h,
                                                        float *pre)
    int simd_width "bl_simd_width"()
    bint simd_runs "bl_simd_runs"(int width)

cdef enum:
    # A helper thread pays off once a step streams this many weights (measured: H = 128),
    # and a call makes HELPER_MIN_MACS multiply-adds (_gemm.pxd)
    HELPER_MIN_WEIGHTS = 4 * 128 * 128
    # The projection of all steps at once writes S*N*4H gates: from this size on they no
    # longer stay in L3 for the time loop, which then projects a few steps at a time into a
    # gate buffer that stays in L2 (db_train_h256_b64_t150's forward: 5-7% faster at 1
    # thread, 3% at 2) ...
    PROJ_CHUNK_MIN_BYTES = 16 << 20
    # ... if W_x and W_h, which every chunk then streams, stay in cache together (with larger
    # weights, as at H = 1024, streaming W_x once per chunk cost 3%) ...
    PROJ_CHUNK_MAX_WEIGHT_BYTES = 4 << 20
    # ... each chunk reading about this much of x (1 to 2 steps at N = 64; 64 KiB to 1 MiB
    # measured within 2%)
    PROJ_CHUNK_X_BYTES = 128 << 10
    # A unit split hands h between the threads at every step; a row split hands nothing over but
    # has each thread stream all of W_h. With W_h this small (H <= 1024), 16 rows or more a
    # thread and halves of the same work (rows_balanced), the rows ran faster on the Zen 4 (2
    # threads, 125 ms pauses, rows/units per round: forward H = 512 0.93-0.95, H = 1024
    # 0.95-0.97 at 32, 64 and 128 rows; training steps 0.96-1.03, mostly below 1); at H = 1536
    # (36 MiB, from memory) the units won at 32 rows (1.04) and tied at 64. The units degrade
    # less beside a process busy on the other core (h1024's forward 271 against 311 ms; both
    # slower than one thread there). The Zen 1 (8 MiB of L3) had them tie at H = 512
    # (BENCHMARKS.md, 32nd and 38th sessions).
    ROWS_MAX_WH_BYTES = 16 << 20
    # With a zero initial state (h0 NULL) the first step's h0 W_h^T is 0 when W_h is finite,
    # which a scan of W_h tells: worth its read of W_h from this many rows (at H = 512 the
    # product of 32 rows takes about 0.6 ms on one Zen 4 core, the scan of 4 MiB 0.14-0.16;
    # at 16 rows the product is twice the scan here, a wash with memory 2-3 times slower)
    ZERO_START_MIN_ROWS = 32

cdef extern from *:
    """
    #include <stdatomic.h>
    #include <string.h>
    static atomic_ulong bl_helper_calls;   /* forward calls that ran the helper (tests) */
    static atomic_ulong bl_projection_chunks;  /* chunks the time loops projected (tests) */
    static atomic_ulong bl_unit_splits;        /* time loops split in units (tests) */
    static atomic_ulong bl_unit_moves;  /* chunks a unit split's thread took from the other's half */
    static atomic_ulong bl_row_splits;  /* time loops split in batch rows (tests) */
    static atomic_ulong bl_zero_starts; /* directions whose first step skipped h0 W_h^T (tests) */
    static int bl_rows_rule_off;   /* tests and A/B timing: unit splits where rows_better */

    /* Is every element of the rows x cols floats at W (row stride ld) finite? Exponent bits
       all ones: inf or NaN, whose product with a zero state is NaN, not 0. Adding 1 to the
       exponent field carries into bit 31 only then, and an OR of those sums vectorizes: 4 MiB
       in 0.14-0.16 ms at the baseline's SSE2 on the Zen 4, from L3 or memory (a compare per
       element took 0.27-0.30) */
    static int bl_all_finite(const float *W, size_t rows, size_t cols, size_t ld)
    {
        unsigned bad = 0;
        for (size_t r = 0; r < rows; r++) {
            const float *w = W + r * ld;
            for (size_t j = 0; j < cols; j++) {
                unsigned u;
                memcpy(&u, w + j, sizeof u);
                bad |= (u & 0x7f800000u) + 0x00800000u;
            }
        }
        return !(bad & 0x80000000u);
    }
    static int bl_size_rule_off;   /* tests: a helper thread however small the call */
    """
    void count_call "atomic_fetch_add"(void *counter, unsigned long n) nogil
    unsigned long bl_helper_calls
    unsigned long bl_projection_chunks
    unsigned long bl_unit_splits
    unsigned long bl_unit_moves
    unsigned long bl_row_splits
    unsigned long bl_zero_starts
    int bl_rows_rule_off
    int bl_size_rule_off
    bint all_finite "bl_all_finite"(const float *W, size_t rows, size_t cols, size_t ld) nogil

def _helper_calls() -> int:
    """How many forward calls so far ran a helper thread (lets tests see that it ran)."""
    return bl_helper_calls

def _projection_chunks() -> int:
    """How many input projection chunks the time loops made so far (tests)."""
    return bl_projection_chunks

def _unit_splits() -> int:
    """How many time loops so far two threads shared by units (tests)."""
    return bl_unit_splits

def _unit_moves() -> int:
    """How many chunks so far a unit split's thread took from the other's half (tests)."""
    return bl_unit_moves

def _row_splits(rows_rule: bool | None = None) -> int:
    """How many time loops so far two threads shared by batch rows (tests); rows_rule: turn
    rows_better on or off (off: the default cell's loops split in units wherever they may;
    tests, A/B timing)."""
    global bl_rows_rule_off
    if rows_rule is not None:
        bl_rows_rule_off = not rows_rule
    return bl_row_splits

def _zero_starts() -> int:
    """How many time loops so far skipped their first step's product with a zero h0 (tests)."""
    return bl_zero_starts

def _simd_width() -> int:
    """The width in floats of the intrinsics passes of the default cell this CPU takes (8:
    AVX2, 16: AVX-512), 0 for the C clones (tests)."""
    return simd_width()

def _simd_widths() -> list[int]:
    """The widths of the intrinsics passes this CPU can run, taken or not (the tests' hooks
    run each wherever it can)."""
    return [w for w in (8, 16) if simd_runs(w)]

def _cell_pass(float[:, ::1] g, float[::1] bias, float[:, ::1] c, float[:, ::1] h,
               float[:, ::1] pre, size_t u0, size_t u1, int width, bint keep) -> None:
    """The default cell's forward pass over units [u0, u1) of every row (g, pre [N][4H];
    bias [4H]; c, h [N][H]; c updated in place, pre written only with keep): the intrinsics
    pass of `width` floats, or with 0 the C clones' (tests)."""
    cdef size_t N = g.shape[0], H = c.shape[1]
    if g.shape[1] != 4 * H or bias.shape[0] != 4 * H or c.shape[0] != N or h.shape[0] != N \
            or h.shape[1] != H or pre.shape[0] != N or pre.shape[1] != 4 * H \
            or not u0 <= u1 <= H or N == 0 or H == 0:
        raise ValueError("shapes do not match")
    cdef int rc
    with nogil:
        rc = cell_default_rows_on(width, N, H, u0, u1, &g[0, 0], &bias[0], &c[0, 0], &h[0, 0],
                                  &pre[0, 0] if keep else NULL)
    if rc:
        raise RuntimeError(f"no {width}-float passes in this build or on this CPU")

def _pgemm(float[:, ::1] a, float[:, ::1] w, float[:, ::1] c, int gates, bint transposed,
           bint helper, bint direct=False, bint rev=False, bint keep=False) -> None:
    """C[:, :n] += A @ W^T (W [gates*H x k]) or, transposed, A @ W (W [k x n], one gate),
    through pack + pgemm exactly as the kernels call them (tests); direct: through
    pgemm_direct (W packed block by block as the rows pass); rev: pgemm visiting the panels
    last to first; keep: twice, through pgemm_packing (packing the panels as it passes them,
    as a time loop's first step does) and then pgemm from the panels it packed."""
    cdef int m = a.shape[0], k = a.shape[1]
    cdef int n = w.shape[1] if transposed else w.shape[0]
    cdef int H = n // gates
    cdef bl_helper h
    cdef bl_helper *hp = NULL
    if n % gates or (w.shape[0] if transposed else w.shape[1]) != k or c.shape[0] != m \
            or c.shape[1] < n or (transposed and (gates != 1 or direct or keep)) \
            or ((rev or keep) and direct):
        raise ValueError("shapes do not match")
    store = np.empty(max(gates * packed_size(H, k), 2 * direct_floats(k)) + 16, np.float32)
    cdef float[::1] buf = store
    cdef float *wp = align64(&buf[0])
    with nogil:
        if helper and helper_start(&h):
            hp = &h
        if keep:
            pgemm_packing(hp, m, gates, H, k, &a[0, 0], k, &w[0, 0], w.shape[1], wp, 1.0,
                          &c[0, 0], c.shape[1])
            pgemm(hp, m, gates, H, k, &a[0, 0], k, wp, 1.0, &c[0, 0], c.shape[1], rev)
        elif direct:
            pgemm_direct(hp, m, gates, H, k, &a[0, 0], k, &w[0, 0], w.shape[1], 1.0, &c[0, 0],
                         c.shape[1], wp)
        else:
            if transposed:
                pack_panels_t(n, k, &w[0, 0], w.shape[1], wp)
            else:
                pack_gates(hp, gates, H, k, &w[0, 0], w.shape[1], wp)
            pgemm(hp, m, gates, H, k, &a[0, 0], k, wp, 1.0, &c[0, 0], c.shape[1], rev)
        if hp != NULL:
            helper_stop(&h)

cdef struct Workspace:
    Weights w
    bl_helper *helper   # second thread (n_threads != 1), or NULL
    float *whp      # W_h, W_c of the current (layer, direction) packed for pgemm
    float *wcp
    float *wxbuf    # [2][direct_buffer_floats] W_x (or, at S = 1, W_h) packed block by block
                    # (pgemm_direct)
    float *wxp      # W_x packed whole, when the projection goes in chunks (else unused)
    float *gates    # [gate_steps][N][4H] pre-activations (general cell pass: then activations)
    float *xg       # [S][N][I] x gathered into rows (NULL when x is used in place)
    float *ybuf[2]  # [S][N][D*H] layer outputs (inference), or the dropped-out layer input
    float *h        # [N][H]    running hidden state
    float *h2       # [N][H]    the other step's, in a unit split (else unused)
    float *c        # [N][H]    running cell state
    float *tmp      # [2][H]    act_hidden(c) of one row, per thread
    int ldx         # row stride of x when used in place

def _helper_size_rule(enabled: bool | None = None) -> bool:
    """Is a call below HELPER_MIN_MACS kept on one thread; enabled: turn that on or off
    (tests exercise the two-thread paths on small problems)."""
    global bl_size_rule_off
    if enabled is not None:
        bl_size_rule_off = not enabled
    return not bl_size_rule_off

# ---------------------------------------------------------------------------------------------
# workspace

cdef long allowed_threads(const LSTMPlan *p) noexcept nogil:
    """Our threads for a call: n_threads, 0 = the online CPUs."""
    return <long>p.n_threads if p.n_threads > 0 else online_cpus()

cdef size_t call_macs(const LSTMPlan *p) noexcept nogil:
    """Multiply-adds of the call's products: S*N*4H*(in + H) per layer and direction."""
    cdef size_t widths = p.In + p.L * p.H + (p.L - 1) * p.W1
    return p.S * p.N * p.D * 4 * p.H * widths

cdef bint use_helper(const LSTMPlan *p) noexcept nogil:
    """Is a second thread allowed and worth its hand-offs in the time loops? Not for small
    calls (HELPER_MIN_MACS; one step on frozen weights at H = 512 is 2M: 0.59 of one
    thread's time back to back, 0.98 after a pause)."""
    return allowed_threads(p) >= 2 and 4 * p.H * p.H >= HELPER_MIN_WEIGHTS \
        and (bl_size_rule_off or call_macs(p) >= HELPER_MIN_MACS)

cdef int direction_lanes(const LSTMPlan *p) noexcept nogil:
    """2 when the two directions of a bidirectional layer run at once, one per thread (each
    with its own packed weights, gates and state), else 1."""
    return 2 if p.D == 2 and use_helper(p) else 1

cdef bint rows_balanced(const LSTMPlan *p) noexcept nogil:
    """Do the two halves of the batch rows hold about the same work (within 10%)? Sequences
    of varying length are sorted longest first (D5), so the second half may hold far less,
    and its thread would wait for the first's, where a unit split shares every step."""
    cdef size_t half = p.N // 2, t, nt, w0 = 0, w1 = 0
    if p.seq_data == NULL:
        return True
    for t in range(p.S):
        nt = batch_at(p, t)
        w0 += min(nt, half)
        w1 += nt - min(nt, half)
    return 10 * w1 >= 9 * w0

cdef bint rows_better(const LSTMPlan *p) noexcept nogil:
    """Would a row split beat a unit split: 16 rows or more a thread, W_h of
    ROWS_MAX_WH_BYTES or less, and halves of the same work?"""
    return not bl_rows_rule_off and p.N >= 4 * SPLIT_MIN_ROWS \
        and 4 * p.H * p.H * sizeof(float) <= ROWS_MAX_WH_BYTES and rows_balanced(p)

cdef bint units_split(const LSTMPlan *p) noexcept nogil:
    """Do two threads share each time loop by units (units_loop)? The default cell, one
    direction at a time, 16 rows or more, a panel of every gate for each thread, and not
    where the rows are better."""
    return use_helper(p) and direction_lanes(p) == 1 and p.N >= 2 * SPLIT_MIN_ROWS \
        and p.S > 1 and default_cell(p) and p.H >= 32 and not rows_better(p)

cdef size_t widest_input(const LSTMPlan *p) noexcept nogil:
    """The widest layer input: x's I, or D*H for layers >= 1 (D2)."""
    return max(p.In, p.W1) if p.L > 1 else p.In

cdef size_t direct_buffer_floats(const LSTMPlan *p) noexcept nogil:
    """Floats of one thread's pgemm_direct buffer: the largest that any product using it asks
    for (each layer's projection, k = its input width; at S = 1 the step's W_h, k = H).
    direct_floats is not monotonic in k (a chunk holds whole blocks of panels: at k = 584 6
    panels, at k = 292 18), so each k counts, not only the widest."""
    cdef size_t n = max(direct_floats(<int>p.In), direct_floats(<int>p.H))
    if p.L > 1:
        n = max(n, direct_floats(<int>p.W1))
    return n

cdef bint chunked_projection(const LSTMPlan *p) noexcept nogil:
    """Does the time loop project the input in chunks (see PROJ_CHUNK_MIN_BYTES)?"""
    return p.S * p.N * 4 * p.H * sizeof(float) >= PROJ_CHUNK_MIN_BYTES \
        and 4 * p.H * (widest_input(p) + p.H) * sizeof(float) <= PROJ_CHUNK_MAX_WEIGHT_BYTES

cdef size_t projection_steps(const LSTMPlan *p, size_t in_w) noexcept nogil:
    """Steps per input projection (DESIGN step 3): all S, or a chunk of them."""
    if not chunked_projection(p):
        return p.S
    return max(1, PROJ_CHUNK_X_BYTES // max(1, in_w * sizeof(float) * p.N))

cdef size_t gate_steps(const LSTMPlan *p) noexcept nogil:
    """Steps whose gates the workspace holds at once: all S, or the longest projection chunk
    (the one of the narrowest layer input)."""
    return min(p.S, projection_steps(p, min(p.In, p.W1) if p.L > 1 else p.In))

cdef int layout_workspace(const LSTMPlan *p, Workspace *w, float *base,
                          size_t *nfloats) noexcept nogil:
    """Place the regions of w[0 .. direction_lanes(p)) at `base` (may be NULL: sizes only):
    the lanes share x's rows and the layer outputs. Fails when the size in floats or in
    bytes overflows."""
    cdef size_t o[17]
    cdef size_t off = 0, SN = p.S * p.N, nbytes
    cdef size_t in_max = widest_input(p)
    cdef int lane, ldx
    cdef bint gather = not x_in_place(p, &ldx)
    cdef bint pack = p.frozen == NULL       # frozen: W_x, W_h panels are the caller's
    if region(&off, SN, p.In if gather else 0, 1, &o[6]) \
            or region(&off, SN, p.D, p.H, &o[7]) \
            or region(&off, SN, p.D, p.H if p.L > 1 else 0, &o[8]):
        return set_error(b"workspace size overflows size_t")
    for lane in range(direction_lanes(p)):
        if weights_regions(p, &off, o) \
                or region(&off, 2, direct_buffer_floats(p) if pack else 0, 1, &o[12]) \
                or region(&off, 4, packed_size(<int>p.H, <int>p.H) if p.S > 1 and pack else 0,
                          1, &o[13]) \
                or region(&off, 4, packed_size(<int>p.H, <int>p.H) if any_full_peephole(p) else 0,
                          1, &o[14]) \
                or region(&off, gate_steps(p) * p.N, 4 * p.H, 1, &o[5]) \
                or region(&off, p.N, p.H, 1, &o[9]) or region(&off, p.N, p.H, 1, &o[10]) \
                or region(&off, p.N, p.H if units_split(p) else 0, 1, &o[16]) \
                or region(&off, 2, p.H, 1, &o[11]) \
                or region(&off, 4, packed_size(<int>p.H, <int>in_max)
                          if chunked_projection(p) and pack else 0, 1, &o[15]):
            return set_error(b"workspace size overflows size_t")
        if base != NULL:
            weights_place(&w[lane].w, base, o)
            w[lane].ldx = ldx
            w[lane].helper = NULL
            w[lane].xg = base + o[6] if gather else NULL
            w[lane].ybuf[0] = base + o[7]
            w[lane].ybuf[1] = base + o[8]
            w[lane].gates = base + o[5]
            w[lane].h = base + o[9]
            w[lane].h2 = base + o[16]
            w[lane].c = base + o[10]
            w[lane].tmp = base + o[11]
            w[lane].wxbuf = base + o[12]
            w[lane].whp = base + o[13]
            w[lane].wcp = base + o[14]
            w[lane].wxp = base + o[15]
    if mul_ovf(off, sizeof(float), &nbytes):
        return set_error(b"workspace size overflows size_t")
    nfloats[0] = off
    return 0

cdef int forward_workspace_bytes(const LSTMPlan *p, size_t *nbytes) noexcept nogil:
    cdef Workspace w[2]
    cdef size_t n
    if layout_workspace(p, w, NULL, &n):
        return -1
    nbytes[0] = n * sizeof(float)       # cannot overflow: layout_workspace checked it
    return 0

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

# ---------------------------------------------------------------------------------------------
# the elementwise pass (DESIGN step 4): activations, peepholes, cell update, hidden output

cdef void gates_ifg_rows(const LSTMPlan *p, Workspace *w, size_t n0, size_t n1, float *g,
                         float *pre) noexcept nogil:
    """i, f, g activations and the new cell state c = f*c_old + i*g, rows [n0, n1) of the
    step's gates g. pre (training): receives the pre-activations of i, f, g."""
    cdef size_t H = p.H, n, j
    cdef int k
    cdef float *row
    cdef float *c
    cdef const float *pd
    for n in range(n0, n1):
        row = g + n * 4 * H
        c = w.c + n * H
        for j in range(3 * H):
            row[j] += w.w.bias[j]
        for k in range(GATE_O):      # diagonal peepholes of i, f, g read the old cell
            if p.gate[k].peephole == PEEP_DIAG:
                pd = w.w.pdiag + k * H
                for j in range(H):
                    row[k * H + j] += pd[j] * c[j]
        if pre != NULL:
            memcpy(pre + n * 4 * H, row, 3 * H * sizeof(float))
        for k in range(GATE_O):
            activation_row(p.gate[k].act.function, p.gate[k].act.alpha, p.gate[k].act.beta,
                           row + k * H, H)
        for j in range(H):
            c[j] = row[H + j] * c[j] + row[j] * row[2 * H + j]

cdef void gate_o_rows(const LSTMPlan *p, Workspace *w, size_t n0, size_t n1, float *g,
                      float *pre, float *tmp) noexcept nogil:
    """o activation (its peephole reads the new cell) and h = o * act_hidden(c), rows
    [n0, n1); tmp: [H] scratch of this thread."""
    cdef size_t H = p.H, n, j
    cdef float *go
    cdef float *c
    cdef float *h
    cdef const float *bo = w.w.bias + 3 * H
    cdef const float *pd = w.w.pdiag + 3 * H
    cdef const GatePlan *gp = &p.gate[GATE_O]
    for n in range(n0, n1):
        go = g + n * 4 * H + 3 * H
        c = w.c + n * H
        h = w.h + n * H
        for j in range(H):
            go[j] += bo[j]
        if gp.peephole == PEEP_DIAG:
            for j in range(H):
                go[j] += pd[j] * c[j]
        if pre != NULL:
            memcpy(pre + n * 4 * H + 3 * H, go, H * sizeof(float))
        activation_row(gp.act.function, gp.act.alpha, gp.act.beta, go, H)
        memcpy(tmp, c, H * sizeof(float))
        activation_row(p.hidden_act.function, p.hidden_act.alpha, p.hidden_act.beta, tmp, H)
        for j in range(H):
            h[j] = go[j] * tmp[j]

cdef bint default_cell(const LSTMPlan *p) noexcept nogil:
    """Sigmoid i, f, o, tanh g and hidden, no peepholes: the one-sweep pass of _cell.h."""
    cdef int k
    for k in range(4):
        if p.gate[k].peephole != PEEP_NONE or p.gate[k].act.function != (
                BNNSActivationFunctionTanh if k == GATE_G else BNNSActivationFunctionSigmoid):
            return False
    return p.hidden_act.function == BNNSActivationFunctionTanh

cdef void peephole_gemms(const LSTMPlan *p, Workspace *w, bl_helper *helper, size_t n0,
                         size_t n1, float *g) noexcept nogil:
    """Full peepholes of i, f, g, rows [n0, n1): gates += c_old @ W_c^T, one GEMM per run of
    adjacent gates."""
    cdef int H = <int>p.H, k = 0, k2
    while full_peephole_run(p, &k, &k2):
        pgemm(helper, <int>(n1 - n0), k2 - k, H, H, w.c + n0 * H, H, w.wcp + k * packed_size(H, H),
              1.0, g + n0 * 4 * H + k * H, 4 * H)
        k = k2

# ---------------------------------------------------------------------------------------------
# one (layer, direction), then the whole stack

cdef struct Rows:
    # One thread's share of a direction's time loop: batch rows [n0, n1) (DESIGN step 7).
    const LSTMPlan *p
    Workspace *w
    size_t d, split
    const Projection *x
    float *yout
    float *pre
    float *cell
    bint zero_start

cdef struct Projection:
    # The input projection g = x W_x^T (DESIGN step 3), made by the time loop `steps` steps at
    # a time (steps 0: the caller made it for all steps beforehand).
    const float *x
    int ldx, in_w
    size_t steps
    bint packed     # W_x is in w.wxp already (else the first chunk packs it)

cdef void project(const LSTMPlan *p, Workspace *w, bl_helper *helper, const Projection *x,
                  size_t t0, size_t t1, size_t n0, size_t n1, bint first) noexcept nogil:
    """Gates of steps [t0, t1), batch rows [n0, n1), = their x rows @ W_x^T, into w.gates
    from step t0 on. With first and not x.packed, W_x is packed into w.wxp as the product
    passes it; otherwise the product uses those panels (the results are the same)."""
    cdef int H = <int>p.H, G = 4 * H, rows = <int>(n1 - n0)
    cdef size_t N = p.N, t
    count_call(&bl_projection_chunks, 1)
    if n1 - n0 == N:                    # all rows: the steps' rows are one block
        rows *= <int>(t1 - t0)
        if first and not x.packed:
            pgemm_packing(helper, rows, 4, H, x.in_w, x.x + t0 * N * x.ldx, x.ldx, w.w.wx_cur,
                          w.w.ldwx, w.wxp, 0.0, w.gates, G)
        else:
            pgemm(helper, rows, 4, H, x.in_w, x.x + t0 * N * x.ldx, x.ldx, w.wxp, 0.0,
                  w.gates, G)
        return
    for t in range(t0, t1):             # one thread's rows: one block per step
        pgemm(helper, rows, 4, H, x.in_w, x.x + (t * N + n0) * x.ldx, x.ldx, w.wxp, 0.0,
              w.gates + ((t - t0) * N + n0) * G, G)

cdef size_t chunk_steps(const LSTMPlan *p, const Projection *x, size_t d, size_t step,
                        size_t *tc) noexcept nogil:
    """At a step where the time loop projects its next chunk: how many steps the chunk holds,
    with tc set to the first of them in time (the reverse direction's chunks run
    backwards); at other steps 0."""
    cdef size_t s1
    if x.steps == 0 or step % x.steps:
        return 0
    s1 = min(p.S, step + x.steps)
    tc[0] = step if d == 0 else p.S - s1
    return s1 - step

cdef void keep_step(const LSTMPlan *p, Workspace *w, const float *h, size_t t, size_t d,
                    size_t n0, size_t n1, size_t n_end, size_t u0, size_t nu, float *yout,
                    bint y_done, float *cell) noexcept nogil:
    """Step t's layer output (from h; y_done: h is y's rows already) and, training, cell
    state, rows [n0, n1), units [u0, u0 + nu): padded positions (rows n_end on) are 0 (D5),
    and so is their cell, which the backward multiplies by dA = 0."""
    cdef size_t N = p.N, H = p.H, DH = p.D * p.H, n
    cdef float *yrow = yout + t * N * DH + d * H + u0
    cdef float *crow = cell + t * N * H + u0 if cell != NULL else NULL
    for n in range(n0, n1):
        if not y_done:
            if n < n_end:
                memcpy(yrow + n * DH, h + n * H + u0, nu * sizeof(float))
            else:
                memset(yrow + n * DH, 0, nu * sizeof(float))
        if crow != NULL:
            if n < n_end:
                memcpy(crow + n * H, w.c + n * H + u0, nu * sizeof(float))
            else:
                memset(crow + n * H, 0, nu * sizeof(float))

cdef void keep_initial(const LSTMPlan *p, const Workspace *w, size_t d, float *yout,
                       float *cell) noexcept nogil:
    """Training: h0 and c0 into the cache's slots next to this direction's first step (before
    step 0, or after step S-1 in reverse), where the backward reads them in place."""
    cdef size_t N = p.N, H = p.H, DH = p.D * p.H, n
    cdef float *ys = yout - N * DH if d == 0 else yout + p.S * N * DH
    cdef float *cs = cell - N * H if d == 0 else cell + p.S * N * H
    for n in range(N):
        memcpy(ys + n * DH + d * H, w.h + n * H, H * sizeof(float))
    memcpy(cs, w.c, N * H * sizeof(float))

cdef void time_loop(const LSTMPlan *p, Workspace *w, size_t d, size_t n0, size_t n1,
                    bl_helper *helper, bint pack_first, bint zero_start, const Projection *x,
                    float *tmp, float *yout, float *pre, float *cell) noexcept nogil:
    """Steps of one direction for batch rows [n0, n1), which depend on no other row; helper:
    shares the panels of each product (NULL: none); pack_first: the first step (the caller
    checked that it has active rows) packs W_h into w.whp as it multiplies by it;
    zero_start: h0 W_h^T is 0 (zero_start_ok), so the first step only packs; x.steps:
    project the input (rows [n0, n1)) in chunks of that many steps, ahead of their
    recurrence."""
    cdef int H = <int>p.H, G = 4 * H
    cdef size_t S = p.S, N = p.N, step, nc, t, n_end
    cdef size_t tc = 0                  # the step whose gates are at w.gates (chunk start)
    cdef bint o_full = p.gate[GATE_O].peephole == PEEP_FULL
    cdef bint one_sweep = default_cell(p)
    # One direction, every sample at every step: y's rows of a step are [N][H], as h's. The
    # default cell then writes h_t there, where the next step reads it, instead of into w.h
    # and a copy into y (2% of db_train_h256_b64_t150's forward)
    cdef bint h_in_y = one_sweep and p.D == 1 and p.seq_data == NULL
    cdef float *hin = w.h                                   # h of the step before
    cdef float *hout = w.h
    cdef float *g
    cdef float *pre_t
    for step in range(S):                                   # the time loop
        t = step if d == 0 else S - 1 - step
        nc = chunk_steps(p, x, d, step, &tc)
        if nc:                                              # g = x W_x^T, next chunk
            project(p, w, helper, x, tc, tc + nc, n0, n1, step == 0)
        n_end = min(n1, batch_at(p, t))                     # D5: active samples are [0, nt)
        g = w.gates + (t - tc) * N * G
        pre_t = pre + t * N * G if pre != NULL else NULL
        if h_in_y:
            hout = yout + t * N * H
        if n_end > n0:                                      # g += h W_h^T
            if zero_start and step == 0:                    # h0 = 0: g += 0
                if pack_first and S > 1:
                    pack_gates(helper, 4, H, H, w.w.wh_cur, w.w.ldwh, w.whp)
            elif pack_first and S == 1:                     # no later step: no panels kept
                pgemm_direct(helper, <int>(n_end - n0), 4, H, H, hin + n0 * H, H, w.w.wh_cur,
                             w.w.ldwh, 1.0, g + n0 * G, G, w.wxbuf)
            elif pack_first and step == 0:
                pgemm_packing(helper, <int>(n_end - n0), 4, H, H, hin + n0 * H, H,
                              w.w.wh_cur, w.w.ldwh, w.whp, 1.0, g + n0 * G, G)
            else:
                pgemm(helper, <int>(n_end - n0), 4, H, H, hin + n0 * H, H, w.whp, 1.0,
                      g + n0 * G, G, step & 1)
            if one_sweep:                                   # the elementwise pass
                cell_default_rows(n_end - n0, H, 0, H, g + n0 * G, w.w.bias, w.c + n0 * H,
                                  hout + n0 * H, pre_t + n0 * G if pre_t != NULL else NULL)
            else:
                if w.w.wc_cur != NULL:
                    peephole_gemms(p, w, helper, n0, n_end, g)
                gates_ifg_rows(p, w, n0, n_end, g, pre_t)
                if o_full:                                  # output peephole reads the new cell
                    pgemm(helper, <int>(n_end - n0), 1, H, H, w.c + n0 * H, H,
                          w.wcp + 3 * packed_size(H, H), 1.0, g + n0 * G + 3 * H, G)
                gate_o_rows(p, w, n0, n_end, g, pre_t, tmp)
        keep_step(p, w, hout, t, d, n0, n1, n_end, 0, p.H, yout, h_in_y, cell)
        hin = hout
    if hin != w.h:                  # the last step's h, where store_state reads it
        memcpy(w.h + n0 * H, hin + n0 * H, (n1 - n0) * H * sizeof(float))

cdef void rows_task(void *arg, int part) noexcept nogil:
    cdef Rows *r = <Rows *>arg
    time_loop(r.p, r.w, r.d, 0 if part == 0 else r.split, r.split if part == 0 else r.p.N,
              NULL, False, r.zero_start, r.x, r.w.tmp + part * r.p.H, r.yout, r.pre, r.cell)

cdef struct Units:
    # A direction's time loop in a unit split: each step's units go in chunks (unit_chunk
    # panels of every gate, the units [16 p0, 16 p1), for all batch rows), which the two
    # threads claim one by one, meeting after each step.
    const LSTMPlan *p
    Workspace *w
    size_t d
    const Projection *x
    float *yout
    float *pre
    float *cell
    bint zero_start
    atomic_ulong arrived
    atomic_ulong tickets

cdef void units_chunk(Units *u, size_t t, size_t tc, size_t nc, size_t n_end,
                      const float *hin, float *hout, int p0, int p1, bint rev,
                      bint product) noexcept nogil:
    """Step t for units [16 p0, 16 p1): the projection of the chunk of steps starting here
    (nc of them, from tc), the product with h (its gates last to first with rev; none
    without `product`: a zero start), the elementwise pass and the outputs."""
    cdef const LSTMPlan *p = u.p
    cdef Workspace *w = u.w
    cdef const Projection *x = u.x
    cdef int H = <int>p.H, G = 4 * H
    cdef size_t N = p.N, n
    cdef size_t u0 = 16 * p0, u1 = min(p.H, <size_t>(16 * p1)), nu = u1 - u0
    cdef float *g = w.gates + (t - tc) * N * G
    if nc:                                                  # g = x W_x^T, next chunk
        pgemm_units(<int>(nc * N), 4, H, x.in_w, x.x + tc * N * x.ldx, x.ldx, w.wxp, 0.0,
                    w.gates, G, p0, p1, False)
    if n_end > 0:                                           # g += h W_h^T, then the cell
        if product:
            pgemm_units(<int>n_end, 4, H, H, hin, H, w.whp, 1.0, g, G, p0, p1, rev)
        cell_default_rows(n_end, p.H, u0, u1, g, w.w.bias, w.c, hout,
                          u.pre + t * N * G if u.pre != NULL else NULL)
    for n in range(n_end, N):               # padded: h keeps the last active step's (D5)
        memcpy(hout + n * p.H + u0, hin + n * p.H + u0, nu * sizeof(float))
    keep_step(p, w, hout, t, u.d, 0, N, n_end, u0, nu, u.yout, False, u.cell)

cdef inline int chunk_at(int i, int Q, size_t step) noexcept nogil:
    """The chunk at position i of step `step`'s order: part 0 claims positions 0, 1, ..., part 1
    positions Q - 1, Q - 2, ..., so each starts on its half (chunks [0, Q/2) and [Q/2, Q))
    and ends in the other's. Odd steps run each half the other way round, so that every step
    starts on the panels the previous one left in L2."""
    cdef int h = Q // 2
    if (step & 1) == 0:
        return i
    return h - 1 - i if i < h else Q - 1 + h - i

cdef void units_loop(Units *u, int part) noexcept nogil:
    """The time loop of the default cell, one thread's share. Each step's product reads the
    whole h of the step before, so h alternates between w.h and w.h2 and both threads finish
    a step before either starts the next; within a step, every chunk touches only its units.
    The chunks are claimed, not dealt (chunk_at): both threads keep their own half, and its
    weights in L2, step after step, unless one runs slower (on a core shared with another
    process, an even split made every step wait for that core: 2 threads ran slower than 1)."""
    cdef const LSTMPlan *p = u.p
    cdef Workspace *w = u.w
    cdef int P = (<int>p.H + 15) // 16
    cdef int C = unit_chunk(P), Q = (P + C - 1) // C, j, taken
    cdef int home = Q // 2 if part == 0 else Q - Q // 2   # this part's chunks of an even split
    cdef int p0 = 0 if part == 0 else P // 2, p1 = P // 2 if part == 0 else P
    cdef size_t S = p.S, N = p.N, d = u.d, step, nc, t, n, n_end, tc = 0
    cdef size_t u0 = 16 * p0, nu = min(p.H, <size_t>(16 * p1)) - u0
    cdef unsigned long ticket = claim(&u.tickets)
    cdef float *hin = w.h
    cdef float *hout = w.h2
    for step in range(S):                                   # the time loop
        t = step if d == 0 else S - 1 - step
        nc = chunk_steps(p, u.x, d, step, &tc)
        n_end = batch_at(p, t)                              # D5: active samples [0, n_end)
        taken = 0
        # Step s's tickets are [s Q, (s + 1) Q). A ticket past them is the next step's (each
        # thread takes one at most before the barrier, and Q >= 2): it is kept for it.
        while ticket < (step + 1) * Q:
            j = chunk_at(taken if part == 0 else Q - 1 - taken, Q, step)
            taken += 1
            units_chunk(u, t, tc, nc, n_end, hin, hout, j * C, min(P, (j + 1) * C),
                        (step & 1) ^ part, step > 0 or not u.zero_start)
            ticket = claim(&u.tickets)
        if taken > home:
            count_call(&bl_unit_moves, taken - home)
        step_barrier(&u.arrived, 2 * (step + 1))
        hin, hout = hout, hin
    if hin != w.h:                  # the last step's h, where store_state reads it
        for n in range(N):
            memcpy(w.h + n * p.H + u0, hin + n * p.H + u0, nu * sizeof(float))

cdef void units_task(void *arg, int part) noexcept nogil:
    units_loop(<Units *>arg, part)

cdef bint zero_start_ok(const LSTMPlan *p, const Workspace *w) noexcept nogil:
    """May the first step skip h0 W_h^T? With h0 NULL (zeros, spec 3.5) every product is
    +-0, so the gates are unchanged, unless W_h holds an inf or NaN (0 * inf is NaN): a scan
    of W_h (the panels when frozen, w.whp) tells, from ZERO_START_MIN_ROWS rows on."""
    cdef size_t H = p.H
    if p.h0.data != NULL or p.N < ZERO_START_MIN_ROWS:
        return False
    if p.frozen != NULL:
        return all_finite(w.whp, 1, 4 * packed_size(<int>H, <int>H), 0)
    return all_finite(w.w.wh_cur, 4 * H, H, <size_t>w.w.ldwh)

cdef void run_direction(const LSTMPlan *p, Workspace *w, size_t l, size_t d, const float *xin,
                        int ldx, int in_w, float *yout, float *pre,
                        float *cell) noexcept nogil:
    """pre, cell (training): [S][N][4H] pre-activations and [S][N][H] cell states to keep."""
    cdef int H = <int>p.H, G = 4 * H, SN = <int>(p.S * p.N)
    cdef Rows rows
    cdef Units units
    cdef Projection x
    # Both threads of a row split read all of W_h: it is packed before they start. Otherwise
    # the first step packs it, unless no sample is active then (reverse direction, D5). A
    # single step (streaming inference) keeps no panels: W_h is read once, as W_x is.
    cdef bint split_rows = w.helper != NULL and p.N >= 2 * SPLIT_MIN_ROWS and p.S > 1
    # The default cell splits the units instead (unless rows_better): each thread reads half of
    # W_x and W_h, which on the Zen 5 machine stayed in its L2 at H = 256 (db_train_h256_b64_t150's
    # forward at 2 threads: 30.1 -> 28.4 ms; 4-6% over 6-8 alternating rounds; h512, h1024 and
    # the training forward within noise)
    cdef bint split_units = w.helper != NULL and units_split(p)
    cdef bint frozen = p.frozen != NULL
    cdef bint zero_start
    cdef bint pack_first = not split_rows and not frozen \
        and batch_at(p, 0 if d == 0 else p.S - 1) > 0
    load_weights(p, &w.w, l, d, in_w)
    if frozen:                          # packed before the call (_frozen)
        w.wxp, w.whp = <float *>frozen_wx(p, l, d), <float *>frozen_wh(p, l, d)
    elif not pack_first and p.S > 1:
        pack_gates(w.helper, 4, H, H, w.w.wh_cur, w.w.ldwh, w.whp)
    if w.w.wc_cur != NULL:
        pack_gates(w.helper, 4, H, H, w.w.wc_cur, w.w.ldwc, w.wcp)
    zero_start = zero_start_ok(p, w)
    if zero_start:
        count_call(&bl_zero_starts, 1)
    # DESIGN step 3: the input projection of every step in one GEMM (which reads each block
    # of W_x once: packed as it goes, not beforehand), or in chunks inside the time loop.
    x.x, x.ldx, x.in_w = xin, ldx, in_w
    x.steps = projection_steps(p, in_w)
    # Packed before the time loop: frozen, or both threads of a row split read all of W_x
    x.packed = split_rows or frozen
    if x.steps >= p.S:
        x.steps = 0
        if frozen:
            pgemm(w.helper, SN, 4, H, in_w, xin, ldx, w.wxp, 0.0, w.gates, G)
        else:
            pgemm_direct(w.helper, SN, 4, H, in_w, xin, ldx, w.w.wx_cur, w.w.ldwx, 0.0, w.gates,
                         G, w.wxbuf)
    elif x.packed and not frozen:
        pack_gates(w.helper, 4, H, in_w, w.w.wx_cur, w.w.ldwx, w.wxp)
    load_state(&p.h0, l, d, p.N, p.H, w.h)
    load_state(&p.c0, l, d, p.N, p.H, w.c)
    if cell != NULL:
        keep_initial(p, w, d, yout, cell)
    if split_units:
        units.p, units.w, units.d, units.x = p, w, d, &x
        units.yout, units.pre, units.cell, units.arrived, units.tickets = yout, pre, cell, 0, 0
        units.zero_start = zero_start
        run_parts(w.helper, units_task, &units)
        count_call(&bl_unit_splits, 1)
    elif split_rows:
        # Batch rows are independent: each thread runs the whole time loop on half of them,
        # with no hand-off per step. Fewer rows split the panels of each step's product.
        rows.p, rows.w, rows.d, rows.yout, rows.pre, rows.cell = p, w, d, yout, pre, cell
        rows.x = &x
        rows.split = p.N // 2
        rows.zero_start = zero_start
        run_parts(w.helper, rows_task, &rows)
        count_call(&bl_row_splits, 1)
    else:
        time_loop(p, w, d, 0, p.N, w.helper, pack_first, zero_start, &x, w.tmp, yout, pre,
                  cell)
    store_state(&p.hn, l, d, p.N, p.H, w.h, False)
    store_state(&p.cn, l, d, p.N, p.H, w.c, False)

cdef struct Directions:
    # Both directions of layer l at once (DESIGN step 7): part d runs direction d on w[d].
    const LSTMPlan *p
    Workspace *w
    Cache *cache
    size_t l
    const float *xin
    int ldx, in_w
    float *yout

cdef void directions_task(void *arg, int part) noexcept nogil:
    cdef Directions *a = <Directions *>arg
    run_direction(a.p, &a.w[part], a.l, part, a.xin, a.ldx, a.in_w, a.yout,
                  cache_pre(a.p, a.cache, a.l, part) if a.cache != NULL else NULL,
                  cache_cell(a.p, a.cache, a.l, part) if a.cache != NULL else NULL)

cdef int lstm_forward(const LSTMPlan *p, void *workspace, Cache *cache) noexcept nogil:
    """The whole stack. cache NULL: inference; else training: keep what backward needs."""
    cdef Workspace w[2]
    cdef Directions dirs
    cdef size_t nfloats, l, d, DH = p.D * p.H, SN = p.S * p.N
    cdef const float *xin
    cdef float *yout = NULL
    cdef int ldx, in_w
    cdef bl_fpstate fpstate
    cdef bl_helper helper
    cdef bl_helper *second = NULL
    cdef bint lanes = direction_lanes(p) == 2
    # Inference: the last layer writes y in place when it can, not into ybuf and then a copy
    # (db_train_h256_b64_t150: the copy was 2.4% of the forward)
    cdef bint y_direct = cache == NULL and y_in_place(
        p, p.frozen, frozen_capacity(p) if p.frozen != NULL else 0)
    layout_workspace(p, w, <float *>workspace, &nfloats)
    if cache != NULL and cache.dropout:
        cache.key = next_key()
    # DESIGN step 7: the forward calls no BLAS, so its only threads are ours: a second one
    # runs the other direction of a bidirectional layer, or else takes half of every
    # product's panels (or batch rows), once the weights make that worth a hand-off.
    if use_helper(p) and helper_start(&helper):
        second = &helper
        if not lanes:
            w[0].helper = second
        count_call(&bl_helper_calls, 1)
    fpstate = ftz_enter()
    for l in range(p.L):
        if l == 0:
            xin = input_rows(p, &w[0], &ldx)
            in_w = <int>p.In
        else:                                   # D2: layer l reads [forward | backward] of l-1
            ldx = <int>DH
            in_w = <int>p.W1
            if cache == NULL:
                xin = w[0].ybuf[(l - 1) & 1]
            elif cache.dropout:                 # D6: only when training
                fill_mask(cache.key, l - 1, SN * DH, p.dropout, cache_mask(p, cache, l - 1))
                apply_mask(cache_y(p, cache, l - 1), cache_mask(p, cache, l - 1), SN * DH,
                           p.dropout, w[0].ybuf[0])
                xin = w[0].ybuf[0]
            else:
                xin = cache_y(p, cache, l - 1)
        if cache != NULL:
            yout = cache_y(p, cache, l)
        elif y_direct and l == p.L - 1:
            yout = p.y.data
        else:
            yout = w[0].ybuf[l & 1]
        if lanes:                   # without a running helper, one after the other here
            dirs.p, dirs.w, dirs.cache, dirs.l = p, w, cache, l
            dirs.xin, dirs.ldx, dirs.in_w, dirs.yout = xin, ldx, in_w, yout
            run_parts(second, directions_task, &dirs)
        else:
            for d in range(p.D):
                run_direction(p, &w[0], l, d, xin, ldx, in_w, yout,
                              cache_pre(p, cache, l, d) if cache != NULL else NULL,
                              cache_cell(p, cache, l, d) if cache != NULL else NULL)
    if p.y.data != NULL and not y_direct:
        scatter_seq(&p.y, p.S, p.N, DH, yout, False)
    ftz_leave(fpstate)
    if second != NULL:
        helper_stop(second)
    return 0
