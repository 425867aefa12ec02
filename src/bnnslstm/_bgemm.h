/* The backward's whole-sequence products (dX = dA W_x, dW = dA^T X) on the panel kernel of
 * _pgemm.h, blocked for the caches as a GotoBLAS-style sgemm is: k in blocks whose B rows are
 * packed into panels, and C's rows in groups whose A stays in L2 while every panel block of
 * the k block passes it. dA^T is transposed group by group in registers (read in place, its
 * rows 4H floats apart would meet in a few cache sets), once for dW_x and dW_h together.
 *
 * On AVX-512 (Zen 5, 1 thread, packing included) it ran these products faster than OpenBLAS's
 * SkylakeX sgemm: dX 216-220 against 200-204 GFLOP/s at h256-h1024, dW 203-213 against
 * 192-203, and at 150 steps (k = 9600) dW 184-190 against 178-183 (seventeenth session).
 *
 * Every element of C is summed in k order within a k block and the blocks are added in order,
 * so a result depends only on (m, n, k, at) and the process's dW blocks (bl_bg_l1_blocks): not
 * on which rows or columns a thread takes.
 */
#ifndef BNNSLSTM_BGEMM_H
#define BNNSLSTM_BGEMM_H

#include "_helper.h"   /* bl_relax */
#include "_pgemm.h"

/* k per block and rows per group. A read in place (dX = dA W_x: rows of dA) in groups of
 * BL_BG_ROWS_N rows, k in blocks whose packed B (n x kc) takes at most BL_BG_B_BYTES, so that it
 * stays in L2 while every group passes it: at most BL_BG_K_N, at least BL_BG_K_MIN. On an Intel
 * Xeon (Emerald Rapids: 2 MiB L2, 48 KiB L1; one thread, the products alone) these ran dX 185 ->
 * 223 GFLOP/s at h512 and 187 -> 216 at h1024 (B's 4 and 16 MiB blocks had streamed from L3),
 * against the earlier 2048-k blocks tuned on a Zen 5, where B's panels streaming from L3 had
 * kept up (kc 256-512 measured within 2%). */
#define BL_BG_ROWS_N 48
#define BL_BG_B_BYTES (1 << 20)
#define BL_BG_K_N 2048
#define BL_BG_K_MIN 256

/* A^T (dW's k = S*N) is transposed into blocks of rows x k (bl_bg_blocks), by the L1 data
 * cache: with 48 KiB or more, 48 x 160 (30 KiB, in L1 while it passes every panel);
 * else (or where it is unknown) 96 x 800 (300 KiB, in L2). The Intel Xeon above (48 KiB L1):
 * dW 193 -> 214 GFLOP/s at h512 and 195 -> 201 at h1024 with the L1 blocks. A Zen 4 (32 KiB
 * L1, 1 MiB L2; alternating builds, 4 rounds, medians): with the L1 blocks dW 68.4 against 63.3
 * ms at h512, 278 against 267 at h1024, 105 against 103 at 150 steps, and smaller L1 blocks
 * (48 x 80, 48 x 96, 24 x 160) slower still (69-77 ms at h512). The Zen 5 that first tuned
 * 96 x 800 measured k blocks from 400 up only. A result depends on the blocks. */
static int bl_bg_l1_state = -1;   /* -1: not chosen yet; every thread would choose the same */

static inline int bl_bg_l1_blocks(void)
{
    int v = __atomic_load_n(&bl_bg_l1_state, __ATOMIC_RELAXED);
    if (v < 0) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
        v = sysconf(_SC_LEVEL1_DCACHE_SIZE) >= 48 * 1024;
#else
        v = 0;
#endif
        __atomic_store_n(&bl_bg_l1_state, v, __ATOMIC_RELAXED);
    }
    return v;
}

/* Tests run both blockings on any CPU: 0 or 1 sets it, anything else keeps it; returns it. A
 * change while a product runs harms nothing: every buffer is sized for either blocking, and
 * each product reads the choice once (a shared one at its init, into the job). */
static inline int bl_bg_choose_l1_blocks(int l1)
{
    if (l1 == 0 || l1 == 1)
        __atomic_store_n(&bl_bg_l1_state, l1, __ATOMIC_RELAXED);
    return bl_bg_l1_blocks();
}

typedef struct {
    int rows, k;    /* A^T's blocks: rows of C x k */
} bl_bg_blocks;

static inline bl_bg_blocks bl_bg_blocks_of(int l1)
{
    const bl_bg_blocks l1_blocks = {48, 160}, l2_blocks = {96, 800};
    return l1 ? l1_blocks : l2_blocks;
}

/* Is this kernel the one to use for these products: x86-64 with AVX-512 or AVX2+FMA, where it
 * was measured against OpenBLAS (elsewhere the BLAS keeps them: Accelerate on Apple silicon,
 * unmeasured). */
static inline int bl_bgemm_ok(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return bl_isa_wide() || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
    return 0;
#endif
}

/* k per block of a product whose B1 and B2 take `panels` panels together (with `at`, of the
 * blocks b) */
static inline int bl_bgemm_kc(int k, int panels, int at, bl_bg_blocks b)
{
    if (at)
        return k < b.k ? k : b.k;
    int kc = (int)(BL_BG_B_BYTES / ((size_t)(panels > 0 ? panels : 1) * BL_PANEL * sizeof(float)));
    kc -= kc % BL_PANEL;
    kc = kc < BL_BG_K_MIN ? BL_BG_K_MIN : kc > BL_BG_K_N ? BL_BG_K_N : kc;
    return k < kc ? k : kc;
}

static inline int bl_bgemm_panel_count(int n1, int n2)
{
    return bl_gate_panels(n1) + bl_gate_panels(n2);
}

/* Floats of the pack buffers of one bl_bgemm2 call: B1's and B2's panels, then A^T's rows.
 * They serve any call with at most n1 and n2 columns too (dX's halves use dX's buffer): with
 * `at`, k blocks do not depend on n; without, a block's panels take at most BL_BG_B_BYTES, or
 * BL_BG_K_MIN k of each panel, and never more than all of k. */
static inline size_t bl_bgemm2_floats(int n1, int n2, int k, int at)
{
    if (at) {   /* the larger of the two blockings' */
        size_t most = 0;
        for (int l1 = 0; l1 < 2; l1++) {
            const bl_bg_blocks b = bl_bg_blocks_of(l1);
            const int kc = bl_bgemm_kc(k, 0, 1, b);
            const size_t f = bl_packed_size(n1, kc) + bl_packed_size(n2, kc) + (size_t)b.rows * kc;
            most = f > most ? f : most;
        }
        return most;
    }
    const size_t floats = (size_t)bl_bgemm_panel_count(n1, n2) * BL_PANEL;
    const size_t least = floats * BL_BG_K_MIN, most = floats * (size_t)(k > 0 ? k : 0);
    const size_t cap = BL_BG_B_BYTES / sizeof(float) > least ? BL_BG_B_BYTES / sizeof(float)
                                                            : least;
    return most < cap ? most : cap;
}

static inline size_t bl_bgemm_floats(int n, int k, int at)
{
    return bl_bgemm2_floats(n, 0, k, at);
}

/* T[r][kk] = A[kk][r] (A row stride lda, T row stride kc): 16 x 16 tiles in registers (wide),
 * or 8 x 8 (narrow). */
static inline __attribute__((always_inline)) void
bl_transpose_block(const int wide, int rows, int kc, const float *A, size_t lda, float *T)
{
    const int tile = wide ? BL_PANEL : 8;
    int r0 = 0;
    for (; r0 + tile <= rows; r0 += tile) {
        int k0 = 0;
        for (; k0 + tile <= kc; k0 += tile) {
            if (wide) {
                bl_v16 t[BL_PANEL];
                for (int c = 0; c < BL_PANEL; c++)
                    t[c] = *(const bl_v16u *)(A + (size_t)(k0 + c) * lda + r0);
                bl_transpose16(t);
                for (int c = 0; c < BL_PANEL; c++)
                    *(bl_v16u *)(T + (size_t)(r0 + c) * kc + k0) = t[c];
            } else {
                bl_tile8(A + (size_t)k0 * lda + r0, lda, T + (size_t)r0 * kc + k0, kc);
            }
        }
        for (; k0 < kc; k0++)
            for (int c = 0; c < tile; c++)
                T[(size_t)(r0 + c) * kc + k0] = A[(size_t)k0 * lda + r0 + c];
    }
    for (; r0 < rows; r0++)
        for (int kk = 0; kk < kc; kk++)
            T[(size_t)r0 * kc + kk] = A[(size_t)kk * lda + r0];
}

/* The rows [0, rows) of C over one k block (kc) of the packed panels bp, in the blocks of
 * bl_pgemm_cols: wide, blocks of 3 panels within each group, a group's last 4 as 2 + 2 (a
 * block of 1 panel has too few accumulators to hide its loads); narrow, BL_NARROW_ROWS rows x 1
 * panel. */
static inline __attribute__((always_inline)) void
bl_bgemm_panels(const int wide, int rows, int n, int kc, const float *a, size_t la,
                const float *bp, float *C, size_t ldc, int add)
{
    const int P = (n + BL_PANEL - 1) / BL_PANEL, per = bl_block_panels(wide, rows);
    const size_t ps = bl_panel_step(kc);
    for (int p = 0; p < P;) {
        int e = bl_block_end(p, per, 0, P), nv = e - p, ks;
        if (wide && per == 3 && nv == 3 && bl_block_end(e, per, 0, P) - e == 1 && e % BL_GROUP)
            nv = 2;
        const int left = n - p * BL_PANEL;
        const float *w = bl_panel(bp, P, kc, p, &ks);
#ifdef __clang__
        /* the narrow block of 1 panel (bl_pgemm_cols' narrow choice for one panel) by name:
         * reached through that switch here, clang 22 keeps 2 of its 12 accumulators on the
         * stack (not clang 16 or 18, not gcc): dW and dX at 39-40% of the FMA peak, 78-87% so
         * (AVX2, medians) */
        if (!wide && nv == 1)
            bl_pgemm_rows(0, BL_NARROW_ROWS, 1, rows, kc, a, la, w, ks, ps, C + p * BL_PANEL,
                          ldc, left < BL_PANEL ? left : BL_PANEL, add, NULL, 0, 0);
        else
#endif
        bl_pgemm_cols(wide, nv, rows, kc, a, la, w, ks, ps,
                      C + p * BL_PANEL, ldc, left < nv * BL_PANEL ? left : nv * BL_PANEL, add,
                      NULL, 0, 0);   /* prefetching the next panels measured no gain here */
        p += nv;
    }
}

/* C1[m x n1] (+)= op(A) @ B1 and C2[m x n2] (+)= op(A) @ B2, all row-major: op(A) = A [m x k]
 * (row stride lda), or with `at` A^T of A [k x m]; B1 [k x n1], B2 [k x n2] (row strides ldb1,
 * ldb2; n2 may be 0). Two products with one left operand share its transposition (dW_x and
 * dW_h both read dA^T). add: accumulate into C, else overwrite. buf: bl_bgemm2_floats(n1, n2,
 * k, at) floats, 64-byte aligned. */
static inline __attribute__((always_inline)) void
bl_bgemm2_body(const int wide, int m, int k, const float *A, size_t lda, int at, int n1,
               const float *B1, size_t ldb1, float *C1, size_t ldc1, int n2, const float *B2,
               size_t ldb2, float *C2, size_t ldc2, int add, float *buf)
{
    const bl_bg_blocks b = bl_bg_blocks_of(bl_bg_l1_blocks());
    const int kc_max = bl_bgemm_kc(k, bl_bgemm_panel_count(n1, n2), at, b);
    const int R = at ? b.rows : BL_BG_ROWS_N;
    float *bp1 = buf, *bp2 = buf + bl_packed_size(n1, kc_max);
    float *ap = bp2 + bl_packed_size(n2, kc_max);
    for (int k0 = 0; k0 < k; k0 += kc_max) {
        const int kc = k - k0 < kc_max ? k - k0 : kc_max;
        bl_pack_panels_t(n1, kc, B1 + (size_t)k0 * ldb1, ldb1, bp1);
        if (n2 > 0)
            bl_pack_panels_t(n2, kc, B2 + (size_t)k0 * ldb2, ldb2, bp2);
        for (int i0 = 0; i0 < m; i0 += R) {
            const int rows = m - i0 < R ? m - i0 : R;
            const float *a = A + (size_t)i0 * lda + k0;
            size_t la = lda;
            if (at) {
                bl_transpose_block(wide, rows, kc, A + (size_t)k0 * lda + i0, lda, ap);
                a = ap;
                la = (size_t)kc;
            }
            bl_bgemm_panels(wide, rows, n1, kc, a, la, bp1, C1 + (size_t)i0 * ldc1, ldc1,
                            add || k0 > 0);
            if (n2 > 0)
                bl_bgemm_panels(wide, rows, n2, kc, a, la, bp2, C2 + (size_t)i0 * ldc2, ldc2,
                                add || k0 > 0);
        }
    }
}

/* bl_bgemm2_body, each blocking built only for the ISA levels that run it (_isa.h) */
BL_WIDE
static void bl_bgemm2_wide(int m, int k, const float *A, size_t lda, int at, int n1,
                           const float *B1, size_t ldb1, float *C1, size_t ldc1, int n2,
                           const float *B2, size_t ldb2, float *C2, size_t ldc2, int add,
                           float *buf)
{
    bl_bgemm2_body(1, m, k, A, lda, at, n1, B1, ldb1, C1, ldc1, n2, B2, ldb2, C2, ldc2, add,
                   buf);
}

BL_NARROW
static void bl_bgemm2_narrow(int m, int k, const float *A, size_t lda, int at, int n1,
                             const float *B1, size_t ldb1, float *C1, size_t ldc1, int n2,
                             const float *B2, size_t ldb2, float *C2, size_t ldc2, int add,
                             float *buf)
{
    bl_bgemm2_body(0, m, k, A, lda, at, n1, B1, ldb1, C1, ldc1, n2, B2, ldb2, C2, ldc2, add,
                   buf);
}

#ifdef BL_NARROW_AVX2
BL_NARROW_AVX2
static void bl_bgemm2_avx2(int m, int k, const float *A, size_t lda, int at, int n1,
                           const float *B1, size_t ldb1, float *C1, size_t ldc1, int n2,
                           const float *B2, size_t ldb2, float *C2, size_t ldc2, int add,
                           float *buf)
{
    bl_bgemm2_body(0, m, k, A, lda, at, n1, B1, ldb1, C1, ldc1, n2, B2, ldb2, C2, ldc2, add,
                   buf);
}
#endif

static inline void bl_bgemm2(int m, int k, const float *A, size_t lda, int at, int n1,
                             const float *B1, size_t ldb1, float *C1, size_t ldc1, int n2,
                             const float *B2, size_t ldb2, float *C2, size_t ldc2, int add,
                             float *buf)
{
    if (bl_isa_wide())
        bl_bgemm2_wide(m, k, A, lda, at, n1, B1, ldb1, C1, ldc1, n2, B2, ldb2, C2, ldc2, add,
                       buf);
#ifdef BL_NARROW_AVX2
    else if (bl_isa_avx2())
        bl_bgemm2_avx2(m, k, A, lda, at, n1, B1, ldb1, C1, ldc1, n2, B2, ldb2, C2, ldc2, add,
                       buf);
#endif
    else
        bl_bgemm2_narrow(m, k, A, lda, at, n1, B1, ldb1, C1, ldc1, n2, B2, ldb2, C2, ldc2, add,
                         buf);
}

/* dW_x = dA^T X and dW_h = dA^T H_prev over all 4H rows, shared by the threads that run
 * bl_bgemm_shared_run on it (one or two, joining at any time): bl_bgemm2's product with `at`,
 * overwriting C. Every piece is claimed by whichever thread comes first: the units of packing
 * (k block, group of B1's or B2's panels) into bp, then, once all are packed, the items (k
 * block, group of the blocks' rows of C) in that order; an item waits for its rows' previous
 * k block, which the other thread may still be running. Static halves left a thread idle for
 * 1-4 ms of an h512 step whenever the other core ran slower (on this VM either core, by
 * 5-10%, changing from run to run); claims also let a thread that finished its own work join
 * late (the other direction's products, backward lanes). Every element is summed as bl_bgemm2
 * sums it (k blocks of bl_bgemm_kc, in order), so the result does not depend on which thread
 * takes which rows, nor on how many threads there are. */
typedef struct {
    int m, k, n1, n2;
    const float *A;           /* dA [k x m], row stride lda */
    size_t lda;
    const float *B1, *B2;     /* [k x n1], [k x n2], row strides ldb1, ldb2 */
    size_t ldb1, ldb2;
    float *C1, *C2;           /* [m x n1], [m x n2], row strides ldc1, ldc2 */
    size_t ldc1, ldc2;
    float *bp;                /* bl_bgemm_shared_floats(n1, n2, k) floats, 64-byte aligned */
    bl_bg_blocks blocks;      /* A^T's, chosen at init */
    atomic_int *rows_kb;      /* per group of rows: its k blocks done (in bp, after the panels) */
    atomic_int pack_next, packed, next, done;   /* units claimed / packed, items claimed / done */
} bl_bgemm_shared;

/* The shared panels of the blocks b: B1's, then B2's, for every k block (each block's packing
 * as long as a full block's); then a counter per group of the m rows. */
static inline size_t bl_bgemm_shared_panels(int n1, int n2, int k, bl_bg_blocks b)
{
    const int kc = bl_bgemm_kc(k, 0, 1, b), nkb = (k + kc - 1) / kc;
    return (bl_packed_size(n1, kc) + bl_packed_size(n2, kc)) * (size_t)nkb;
}

/* Floats of bp: the larger of the two blockings' panels and counters */
static inline size_t bl_bgemm_shared_floats(int m, int n1, int n2, int k)
{
    size_t most = 0;
    for (int l1 = 0; l1 < 2; l1++) {
        const bl_bg_blocks b = bl_bg_blocks_of(l1);
        const size_t f = bl_bgemm_shared_panels(n1, n2, k, b) + (size_t)(m + b.rows - 1) / b.rows;
        most = f > most ? f : most;
    }
    return most;
}

/* Choose the job's blocks and set its counters; m, n1, n2, k and bp must be set. */
static inline void bl_bgemm_shared_init(bl_bgemm_shared *j)
{
    j->blocks = bl_bg_blocks_of(bl_bg_l1_blocks());
    j->rows_kb = (atomic_int *)(j->bp + bl_bgemm_shared_panels(j->n1, j->n2, j->k, j->blocks));
    for (int g = 0; g < (j->m + j->blocks.rows - 1) / j->blocks.rows; g++)
        atomic_init(&j->rows_kb[g], 0);
    atomic_init(&j->pack_next, 0);
    atomic_init(&j->packed, 0);
    atomic_init(&j->next, 0);
    atomic_init(&j->done, 0);
}

static inline void bl_wait_count(atomic_int *count, int target)
{
    unsigned spins = 0;
    while (atomic_load_explicit(count, memory_order_acquire) < target)
        bl_relax(spins++);
}

/* ap: the calling thread's transposed rows, bl_bgemm2_floats(n1, n2, k, 1) floats. Returns
 * when every item is done (every row of C is there to read), with how many items this thread
 * ran. */
static inline __attribute__((always_inline)) int
bl_bgemm_shared_body(const int wide, bl_bgemm_shared *j, float *ap)
{
    int ran = 0;
    const int kc_max = bl_bgemm_kc(j->k, 0, 1, j->blocks), nkb = (j->k + kc_max - 1) / kc_max;
    const int R = j->blocks.rows, ngroups = (j->m + R - 1) / R;
    const int q1 = bl_groups(j->n1), per_kb = q1 + bl_groups(j->n2), units = nkb * per_kb;
    const size_t s1 = bl_packed_size(j->n1, kc_max), s2 = bl_packed_size(j->n2, kc_max);
    float *bp2 = j->bp + s1 * (size_t)nkb;
    /* the packing, in units (k block, group of B1 or of B2) */
    for (int u; (u = atomic_fetch_add_explicit(&j->pack_next, 1, memory_order_relaxed))
                < units;) {
        const int kb = u / per_kb, q = u % per_kb;
        const int k0 = kb * kc_max, kc = j->k - k0 < kc_max ? j->k - k0 : kc_max;
        if (q < q1)
            bl_pack_groups_t(j->n1, kc, j->B1 + (size_t)k0 * j->ldb1, j->ldb1,
                             j->bp + s1 * (size_t)kb, q, q + 1);
        else
            bl_pack_groups_t(j->n2, kc, j->B2 + (size_t)k0 * j->ldb2, j->ldb2,
                             bp2 + s2 * (size_t)kb, q - q1, q - q1 + 1);
        atomic_fetch_add_explicit(&j->packed, 1, memory_order_release);
    }
    bl_wait_count(&j->packed, units);
    for (int i; (i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed))
                < nkb * ngroups;) {
        const int kb = i / ngroups, g = i % ngroups, i0 = g * R;
        const int rows = j->m - i0 < R ? j->m - i0 : R;
        const int k0 = kb * kc_max, kc = j->k - k0 < kc_max ? j->k - k0 : kc_max;
        bl_transpose_block(wide, rows, kc, j->A + (size_t)k0 * j->lda + i0, j->lda, ap);
        bl_wait_count(&j->rows_kb[g], kb);      /* claimed ngroups items ago: rarely waits */
        bl_bgemm_panels(wide, rows, j->n1, kc, ap, (size_t)kc,
                        j->bp + s1 * (size_t)kb, j->C1 + (size_t)i0 * j->ldc1, j->ldc1, kb > 0);
        if (j->n2 > 0)
            bl_bgemm_panels(wide, rows, j->n2, kc, ap, (size_t)kc,
                            bp2 + s2 * (size_t)kb, j->C2 + (size_t)i0 * j->ldc2, j->ldc2,
                            kb > 0);
        atomic_store_explicit(&j->rows_kb[g], kb + 1, memory_order_release);
        atomic_fetch_add_explicit(&j->done, 1, memory_order_release);
        ran++;
    }
    bl_wait_count(&j->done, nkb * ngroups);
    return ran;
}

BL_WIDE
static int bl_bgemm_shared_wide(bl_bgemm_shared *j, float *ap)
{
    return bl_bgemm_shared_body(1, j, ap);
}

BL_NARROW
static int bl_bgemm_shared_narrow(bl_bgemm_shared *j, float *ap)
{
    return bl_bgemm_shared_body(0, j, ap);
}

#ifdef BL_NARROW_AVX2
BL_NARROW_AVX2
static int bl_bgemm_shared_avx2(bl_bgemm_shared *j, float *ap)
{
    return bl_bgemm_shared_body(0, j, ap);
}
#endif

static inline int bl_bgemm_shared_run(bl_bgemm_shared *j, float *ap)
{
    if (bl_isa_wide())
        return bl_bgemm_shared_wide(j, ap);
#ifdef BL_NARROW_AVX2
    if (bl_isa_avx2())
        return bl_bgemm_shared_avx2(j, ap);
#endif
    return bl_bgemm_shared_narrow(j, ap);
}

/* C[m x n] (+)= op(A) @ B: bl_bgemm2 with one product; buf: bl_bgemm_floats(n, k, at). */
static inline void bl_bgemm(int m, int n, int k, const float *A, size_t lda, int at,
                            const float *B, size_t ldb, float *C, size_t ldc, int add, float *buf)
{
    bl_bgemm2(m, k, A, lda, at, n, B, ldb, C, ldc, 0, NULL, 0, NULL, 0, add, buf);
}

#endif
