/* C[m x n] += A[m x k] @ W[n x k]^T with W packed once per call (the recurrent product).
 *
 * sgemm re-packs W on every call, and the time loop multiplies by the same W at every step: at
 * the batch sizes of recurrent steps (1 to 64 rows) that copy costs as much as the multiply.
 * As oneDNN does, W is packed once into panels of 16 output columns (zero padded), and a
 * register-blocked kernel streams each panel once per block of MR rows: per k, NV panel vectors
 * are loaded and every row's A[r][k] is broadcast against them. For the wide blocking the
 * panels are interleaved in groups of BL_GROUP ([group][k][panel of the group][16]), so that a
 * block of a group's panels reads one contiguous stream: at 1 to 4 rows (streaming W_h from L3
 * at every step) one stream ran 7-13% faster than six panels 32 KiB apart, and 35-41% with
 * 4 x 6 blocks at 4 rows. The narrow blocking's blocks are mostly 1 panel wide, and a panel
 * read as every sixth line of its group ran slower than the same panel on its own (bl_group).
 *
 * Every output element is one dot product accumulated in k order, whatever the blocking, so the
 * result of an element does not depend on m, on the panel range a thread takes, or on the ISA
 * level's blocking (only on whether the compiler contracts to FMA, which is fixed per build).
 */
#ifndef BNNSLSTM_PGEMM_H
#define BNNSLSTM_PGEMM_H

#include <stddef.h>
#include <string.h>

#include "_isa.h"

#define BL_PANEL 16
#define BL_GROUP 6      /* panels per group: the widest register block */
/* Rows of the wide blocking's blocks of 1 to 3 panels (bl_pgemm_cols). AVX-512: 9 x 3 = 27 of
 * the 32 registers accumulate (with 3 panel vectors and a broadcast, 31 in use). On a Zen 4,
 * one core, W in cache: 103-106 -> 105-109 GFLOP/s of a 115 peak at 16 to 1600 rows (H = 256
 * to 1024); 10 x 3 spilled, 12 and 14 x 2 were slower. In the forward (in one process,
 * per-round ratios 9 / 8 rows, 1 thread): db_train_h512_b64 0.96-0.97 and db_train_h1024_b64
 * 0.92-0.98, from the projection of all steps (1600 rows); t150, stack2 and training steps
 * within +-2%, the 2-thread forwards (their time loops run the same 8-row blocks as before)
 * within +-4%. */
#define BL_WIDE_ROWS 9

typedef float bl_v16 __attribute__((vector_size(64)));
typedef float bl_v16u __attribute__((vector_size(64), aligned(4)));   /* unaligned access */
/* 8-float vectors: the native width of AVX2, where gcc lowers bl_v16 through the stack */
typedef float bl_v8 __attribute__((vector_size(32)));
typedef float bl_v8u __attribute__((vector_size(32), aligned(4)));

/* The narrow blocking's vectors (bl_pgemm_block8), each one native register: AVX2's 8 floats;
 * on arm64 NEON's 4, and 5 rows to a block (20 accumulators of 32 registers; at 6 rows, 24
 * beside the panel vectors and the row values, gcc spilled in the k loop: 0.12-0.19 stack
 * accesses a multiply-add at 64 rows, none at 5). The wide blocking's 16-float vectors take 4
 * NEON registers each: its blocks' 24 accumulators are 96 registers, and gcc's build ran 6 to
 * 7 instructions a multiply-add there (BENCHMARKS.md). */
#if defined(__aarch64__)
typedef float bl_vn __attribute__((vector_size(16)));
typedef float bl_vnu __attribute__((vector_size(16), aligned(4)));
#define BL_VN 4
#define BL_VN_SPLAT(s) ((bl_vn){s, s, s, s})
#define BL_NARROW_ROWS 5
/* 1 x 6 panels is 24 vectors a row: unrolled in full, as the 12 of AVX2 are without asking
 * (under "GCC unroll 24" clang 16 kept the accumulators in memory, a load and a store per
 * FMLA: 2.7-7.3 instructions per FMLA) */
#ifdef __clang__
#define BL_UNROLL_VN _Pragma("clang loop unroll(full)")
#else
#define BL_UNROLL_VN _Pragma("GCC unroll 24")
#endif
#else
typedef bl_v8 bl_vn;
typedef bl_v8u bl_vnu;
#define BL_VN 8
#define BL_VN_SPLAT(s) ((bl_vn){s, s, s, s, s, s, s, s})
#define BL_NARROW_ROWS 6
#define BL_UNROLL_VN
#endif
#define BL_VPP (BL_PANEL / BL_VN)   /* vectors per panel row */
_Static_assert(BL_NARROW_ROWS <= 6, "bl_pgemm_block8 holds 6 rows");

/* Floats of the packed form of an [n x k] matrix. */
static inline size_t bl_packed_size(int n, int k)
{
    return (size_t)((n + BL_PANEL - 1) / BL_PANEL) * (size_t)k * BL_PANEL;
}

/* Panels per group of the packing on this CPU: BL_GROUP for the wide blocking; 1 for the narrow
 * one, whose blocks at 4 rows and more are 1 panel wide, so that each reads its panel as one
 * contiguous stream (see bl_pgemm_cols). */
static inline int bl_group(void)
{
    return bl_isa_wide() ? BL_GROUP : 1;
}

/* Floats from one panel to the next at the same k (within a group, or from group to group
 * of one panel each). */
static inline size_t bl_panel_step(int k)
{
    return bl_group() == 1 ? (size_t)k * BL_PANEL : BL_PANEL;
}

/* Panel p (at k = 0) of P panels packed at Wp; *ks: floats from one k to the next in it (its
 * group's width: bl_group() panels, fewer in the last group). */
static inline float *bl_panel(const float *Wp, int P, int k, int p, int *ks)
{
    const int G = bl_group(), g0 = p - p % G, gn = P - g0 < G ? P - g0 : G;
    *ks = gn * BL_PANEL;
    return (float *)Wp + (size_t)g0 * k * BL_PANEL + (size_t)(p - g0) * BL_PANEL;
}

typedef int bl_i16 __attribute__((vector_size(64)));
typedef int bl_i8 __attribute__((vector_size(32)));

/* Two-source shuffle by constant indices (I: the index vector type, for gcc): gcc and clang
 * spell it differently. */
#if defined(__clang__)
#define BL_SHUF(I, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define BL_SHUF(I, a, b, ...) __builtin_shuffle(a, b, (I){__VA_ARGS__})
#endif

/* One stage of an in-register n x n transpose of r[0 .. n) (vectors of type V, indices I): at
 * block size b, rows i and i + b swap their off-diagonal b-blocks. */
#define BL_STAGE(V, I, n, b, LO, HI)                                                             \
    for (int i = 0; i < (n); i++)                                                                \
        if (!(i & (b))) {                                                                        \
            V lo = r[i], hi = r[i + (b)];                                                        \
            r[i] = BL_SHUF(I, lo, hi, LO);                                                       \
            r[i + (b)] = BL_SHUF(I, lo, hi, HI);                                                 \
        }

/* In-register 16 x 16 transpose, in 4 stages (8 x 8 blocks, then 4 x 4 inside them, ...). */
#define BL_LO8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define BL_HI8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define BL_LO4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define BL_HI4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define BL_LO2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define BL_HI2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define BL_LO1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define BL_HI1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31

static inline __attribute__((always_inline)) void bl_transpose16(bl_v16 r[16])
{
    BL_STAGE(bl_v16, bl_i16, 16, 8, BL_LO8, BL_HI8)
    BL_STAGE(bl_v16, bl_i16, 16, 4, BL_LO4, BL_HI4)
    BL_STAGE(bl_v16, bl_i16, 16, 2, BL_LO2, BL_HI2)
    BL_STAGE(bl_v16, bl_i16, 16, 1, BL_LO1, BL_HI1)
}

/* An 8 x 8 tile (8 rows of src, row stride ldw, 8 floats each) transposed into dst[kk * ks + c],
 * kk, c < 8 (the narrow blocking's pack, and the backward's transposed blocks, _bgemm.h).
 * Each vector is loaded as two halves, rows c and c + 4 (a 128-bit load and an insert), so
 * that only in-lane shuffles remain, where a 3-stage transpose's lane-crossing stage costs 8
 * micro-ops a vector on a Zen 1: 1 MiB of weights in cache packed in 45-56 us instead of 62-75
 * (4 MiB, beyond the caches, the same: memory bound); a one-step forward at H = 512 took
 * 1.06-1.24 ms instead of 1.19-1.48 (N = 1). gcc before 12 has no __builtin_shufflevector: it
 * keeps the 3-stage transpose (bl_transpose8). gcc on arm64 builds the tile as four 4 x 4
 * transposes of NEON's own vectors: it built the 8-float shuffles through the stack there
 * (counted under qemu, instructions per float packed: 3.37 -> 1.49; clang's 1.16 with the
 * 8-float shuffles, 1.38 with these). */
#if defined(__aarch64__) && !defined(__clang__)
typedef int bl_i4 __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) void
bl_tile8(const float *src, size_t ldw, float *dst, size_t ks)
{
    for (int c0 = 0; c0 < 8; c0 += 4)
        for (int k0 = 0; k0 < 8; k0 += 4) {
            bl_vn r[4];
            for (int c = 0; c < 4; c++)
                r[c] = *(const bl_vnu *)(src + (c0 + c) * ldw + k0);
            const bl_vn a = BL_SHUF(bl_i4, r[0], r[1], 0, 4, 1, 5);
            const bl_vn b = BL_SHUF(bl_i4, r[2], r[3], 0, 4, 1, 5);
            const bl_vn c = BL_SHUF(bl_i4, r[0], r[1], 2, 6, 3, 7);
            const bl_vn d = BL_SHUF(bl_i4, r[2], r[3], 2, 6, 3, 7);
            float *o = dst + (size_t)k0 * ks + c0;
            *(bl_vnu *)o = BL_SHUF(bl_i4, a, b, 0, 1, 4, 5);
            *(bl_vnu *)(o + ks) = BL_SHUF(bl_i4, a, b, 2, 3, 6, 7);
            *(bl_vnu *)(o + 2 * ks) = BL_SHUF(bl_i4, c, d, 0, 1, 4, 5);
            *(bl_vnu *)(o + 3 * ks) = BL_SHUF(bl_i4, c, d, 2, 3, 6, 7);
        }
}
#elif defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
typedef float bl_v4 __attribute__((vector_size(16)));
typedef float bl_v4u __attribute__((vector_size(16), aligned(4)));

static inline __attribute__((always_inline)) void
bl_tile8(const float *src, size_t ldw, float *dst, size_t ks)
{
    bl_v8 t[8];
    for (int c = 0; c < 4; c++)
        for (int h = 0; h < 2; h++) {       /* t[c + 4h]: k in [4h, 4h + 4) of rows c, c + 4 */
            const bl_v4 lo = *(const bl_v4u *)(src + c * ldw + 4 * h);
            const bl_v4 hi = *(const bl_v4u *)(src + (c + 4) * ldw + 4 * h);
            t[c + 4 * h] = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
        }
    for (int q = 0; q < 8; q += 4) {        /* a 4 x 4 transpose in each 128-bit lane */
        const bl_v8 a = BL_SHUF(bl_i8, t[q], t[q + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        const bl_v8 b = BL_SHUF(bl_i8, t[q + 2], t[q + 3], 0, 8, 1, 9, 4, 12, 5, 13);
        const bl_v8 c = BL_SHUF(bl_i8, t[q], t[q + 1], 2, 10, 3, 11, 6, 14, 7, 15);
        const bl_v8 d = BL_SHUF(bl_i8, t[q + 2], t[q + 3], 2, 10, 3, 11, 6, 14, 7, 15);
        *(bl_v8u *)(dst + (size_t)q * ks) = BL_SHUF(bl_i8, a, b, 0, 1, 8, 9, 4, 5, 12, 13);
        *(bl_v8u *)(dst + (size_t)(q + 1) * ks) = BL_SHUF(bl_i8, a, b, 2, 3, 10, 11, 6, 7, 14, 15);
        *(bl_v8u *)(dst + (size_t)(q + 2) * ks) = BL_SHUF(bl_i8, c, d, 0, 1, 8, 9, 4, 5, 12, 13);
        *(bl_v8u *)(dst + (size_t)(q + 3) * ks) = BL_SHUF(bl_i8, c, d, 2, 3, 10, 11, 6, 7, 14, 15);
    }
}
#else
#define BL8_LO4 0, 1, 2, 3, 8, 9, 10, 11
#define BL8_HI4 4, 5, 6, 7, 12, 13, 14, 15
#define BL8_LO2 0, 1, 8, 9, 4, 5, 12, 13
#define BL8_HI2 2, 3, 10, 11, 6, 7, 14, 15
#define BL8_LO1 0, 8, 2, 10, 4, 12, 6, 14
#define BL8_HI1 1, 9, 3, 11, 5, 13, 7, 15

static inline __attribute__((always_inline)) void bl_transpose8(bl_v8 r[8])
{
    BL_STAGE(bl_v8, bl_i8, 8, 4, BL8_LO4, BL8_HI4)
    BL_STAGE(bl_v8, bl_i8, 8, 2, BL8_LO2, BL8_HI2)
    BL_STAGE(bl_v8, bl_i8, 8, 1, BL8_LO1, BL8_HI1)
}

static inline __attribute__((always_inline)) void
bl_tile8(const float *src, size_t ldw, float *dst, size_t ks)
{
    bl_v8 t[8];
    for (int c = 0; c < 8; c++)
        t[c] = *(const bl_v8u *)(src + c * ldw);
    bl_transpose8(t);
    for (int kk = 0; kk < 8; kk++)
        *(bl_v8u *)(dst + (size_t)kk * ks) = t[kk];
}
#endif

/* Panels [q0, q1) of P panels packed at Wp: panel q, column c at kk holds W[(q - q0)*16 + c][kk]
 * (0 from row `rows` on). Whole 16 x 16 tiles are transposed in registers (the pack runs once
 * per call and layer, and must cost no more than a few time steps); edge tiles go element by
 * element. The wide pack reads 16 rows at once, 16 streams too many for the hardware
 * prefetchers when W comes from memory (a call after a pause): each tile fetches the same
 * lines of the next panel's rows into L2. On a Zen 4 (one thread, 125 ms pauses, in one
 * process, per-round ratios with / without): db_inf_h512_b1's forward 0.90-0.94, h512_b4
 * 0.95-0.98, h1024_b4 0.98, db_inf_h256_b1_t150 0.97-1.00, the training shapes' 0.98-1.01;
 * at 2 threads 0.99-1.02. Into L1 it lost (0.98-1.06: at H = 1024 the 16 lines, 4 KiB
 * apart, share one L1 set).
 * Panels below `keep_end` (0: none) are where they are kept (not a chunk buffer reused while
 * in L2), lines a pause has left out of the caches, and this thread's to write. A wide panel
 * goes to k lines a group's width apart, a stride the hardware prefetchers do not follow for
 * stores, so each store waited for its line to come from memory: each tile also fetches for
 * write 16 lines of the next panel (all of them over the panel; the narrow pack's panels are
 * contiguous, its stores a stream). Packing 4 MiB from memory into memory (H = 512, alone,
 * caches flushed): 410-425 us instead of 835-910. The forward, per-round ratios with / without
 * (as above): 1 thread db_inf_h512_b1 0.87-0.89, h512_b4 0.93-0.94, h1024_b4 0.95-0.98, t150
 * 0.95-0.98; 2 threads 0.90-0.96, 0.92-0.98, 0.91-0.96, 0.98-1.01; the training shapes'
 * forward 0.99-1.00 (at 2 threads t150 1.01-1.05, the others 0.98), the training step within
 * +-0.3%. The tile's 16 loads come before its prefetches: interleaved with them (and their
 * conditions), gcc 12 kept the tile on the stack. Zen 4, 4 MiB in L3: 178-183 us, now 119-133
 * (from memory 275-280 either way into kept panels, 608 -> 347 into a chunk buffer); a
 * one-step forward at H = 512, N = 1, back to back: 0.53 -> 0.38 ms, db_inf_h512_b1 2.27 ->
 * 2.13 (frozen 1.84). */
BL_CLONED(bl_pack_range, bl_pack_range)(int P, int q0, int q1, int rows, int k, const float *W,
                                            size_t ldw, float *Wp, int keep_end)
{
    const int wide = bl_isa_wide();
    for (int q = q0; q < q1; q++) {
        int ks, nks = 0;
        float *dst = bl_panel(Wp, P, k, q, &ks);
        float *next = q + 1 < keep_end && wide ? bl_panel(Wp, P, k, q + 1, &nks) : NULL;
        const float *src = W + (size_t)(q - q0) * BL_PANEL * ldw;
        int left = rows - (q - q0) * BL_PANEL, r = left < BL_PANEL ? left : BL_PANEL;
        int k0 = 0;
        if (r == BL_PANEL && !wide)
            for (; k0 + 8 <= k; k0 += 8)
                for (int h = 0; h < BL_PANEL; h += 8)     /* two 8 x 8 tiles: columns h.. */
                    bl_tile8(src + h * ldw + k0, ldw, dst + (size_t)k0 * ks + h, ks);
        else if (r == BL_PANEL) {
            const int pf = left - BL_PANEL >= BL_PANEL ? BL_PANEL
                           : left > BL_PANEL ? left - BL_PANEL : 0;
            for (; k0 + BL_PANEL <= k; k0 += BL_PANEL) {
                bl_v16 t[BL_PANEL];
                const float *s = src + k0;
                for (int c = 0; c < BL_PANEL; c++)
                    t[c] = *(const bl_v16u *)(s + c * ldw);
                for (int c = 0; c < pf; c++)
                    __builtin_prefetch(s + (c + BL_PANEL) * ldw, 0, 1);
                if (next != NULL)
                    for (int c = 0; c < BL_PANEL; c++)
                        __builtin_prefetch(next + (size_t)(k0 + c) * nks, 1, 1);
                bl_transpose16(t);
                float *d = dst + (size_t)k0 * ks;
                for (int kk = 0; kk < BL_PANEL; kk++)
                    *(bl_v16 *)(d + (size_t)kk * ks) = t[kk];
            }
        }
        for (; k0 < k; k0++)
            for (int c = 0; c < BL_PANEL; c++)
                dst[(size_t)k0 * ks + c] = c < r ? src[c * ldw + k0] : 0.0f;
    }
}

/* Without clones (_isa.h) the pack, which a call runs once per weight matrix, is built like
 * the kernels (at the baseline's SSE2 gcc's packed 4 MiB at 2.8 GB/s, now 38) */
BL_BY_LEVEL(bl_pack_range, bl_pack_range,
            (int P, int q0, int q1, int rows, int k, const float *W, size_t ldw, float *Wp,
             int keep_end),
            (P, q0, q1, rows, k, W, ldw, Wp, keep_end))

/* The whole [n x k] matrix W (row stride ldw) into bl_packed_size(n, k) floats at Wp. */
static inline void bl_pack_panels(int n, int k, const float *W, size_t ldw, float *Wp)
{
    const int P = (n + BL_PANEL - 1) / BL_PANEL;
    bl_pack_range(P, 0, P, n, k, W, ldw, Wp, P);
}

/* dst[kk * ks + c] = src[kk * ldw + c] for c < width, kk < k: width is a constant at each call
 * (a full group's row), so the copy of each row unrolls (with a memcpy call per piece, h512's
 * backward spent 0.80 ms before its time loop, now 0.50). */
static inline __attribute__((always_inline)) void
bl_copy_rows(const int width, int k, float *restrict dst, int ks, const float *restrict src,
             size_t ldw)
{
    for (int kk = 0; kk < k; kk++)
        for (int c = 0; c < width; c++)
            dst[(size_t)kk * ks + c] = src[kk * ldw + c];
}

/* The same panels from W^T: panel p, column c at kk holds W[kk][p*16 + c], for C += A @ W with
 * W [k x n] row-major (the backward's products with W_h and W_x); groups [q0, q1) of them. A
 * group's row at kk is a copy of consecutive floats of W's row kk (bl_copy_rows in full groups
 * of either layout). */
BL_CLONES
static void bl_pack_groups_t(int n, int k, const float *W, size_t ldw, float *Wp, int q0, int q1)
{
    const int P = (n + BL_PANEL - 1) / BL_PANEL, G = bl_group();
    for (int g0 = q0 * G; g0 < P && g0 < q1 * G; g0 += G) {
        int ks;
        float *restrict dst = bl_panel(Wp, P, k, g0, &ks);
        const float *restrict src = W + g0 * BL_PANEL;
        const int cols = n - g0 * BL_PANEL;
        if (ks == BL_GROUP * BL_PANEL && cols >= ks) {
            bl_copy_rows(BL_GROUP * BL_PANEL, k, dst, ks, src, ldw);
        } else if (ks == BL_PANEL && cols >= ks) {
            bl_copy_rows(BL_PANEL, k, dst, ks, src, ldw);
        } else {
            for (int kk = 0; kk < k; kk++)
                for (int c = 0; c < ks; c++)
                    dst[(size_t)kk * ks + c] = c < cols ? src[kk * ldw + c] : 0.0f;
        }
    }
}

/* Groups of panels (bl_group() panels each, the last one fewer) of an [n x k] packing. */
static inline int bl_groups(int n)
{
    const int G = bl_group();
    return ((n + BL_PANEL - 1) / BL_PANEL + G - 1) / G;
}

static inline void bl_pack_panels_t(int n, int k, const float *W, size_t ldw, float *Wp)
{
    bl_pack_groups_t(n, k, W, ldw, Wp, 0, bl_groups(n));
}

/* Software prefetch into L2 of the block of panels that comes next, while this one runs.
 * Packed weights beyond the caches (h1024's W_h is 16 MiB) stream from memory once per step;
 * without it the first rows to pass a block wait for each line, as the hardware prefetcher
 * fetches too little ahead (m = 64, n = 4096, k = 1024: 166-190 GFLOP/s without, 192-204 with;
 * m = 32: 147-182 without, 168-202 with). Each block of rows prefetches its share of the next
 * block's lines: rows [o0, o1) of its nnv panels, one every `step` k. */
typedef struct {
    const float *nx;
    size_t ps;                      /* bl_panel_step */
    int nks, nnv, o0, o1, step;     /* nks: the next block's k stride */
} bl_pf;

static const bl_pf bl_no_pf = {NULL, 0, 0, 0, 0, 0, 1};

/* Row block rb of nrb's share of the prefetches of the next block (nx: NULL for none). */
static inline bl_pf bl_pf_share(const float *nx, int nks, int nnv, size_t ps, int k, int rb,
                                int nrb)
{
    bl_pf pf = bl_no_pf;
    if (nx != NULL) {
        int per = (k + nrb - 1) / nrb;
        pf.nx = nx;
        pf.ps = ps;
        pf.nks = nks;
        pf.nnv = nnv;
        pf.o0 = rb * per < k ? rb * per : k;
        pf.o1 = pf.o0 + per < k ? pf.o0 + per : k;
        pf.step = k / per > 1 ? k / per : 1;
    }
    return pf;
}

/* One MR x (NV*16) block of C over the whole k: the accumulators stay in registers. Wp: the
 * block's first panel (bl_panel), the others following it ps floats apart (bl_panel_step), ks
 * floats from one k to the next. `cols` is the number of valid columns (< NV*16 only in the
 * last block). MR and NV are constants at every call site, so the loops unroll fully. */
static inline __attribute__((always_inline)) void
bl_pgemm_block(const int MR, const int NV, int k, const float *A, size_t lda, const float *Wp,
               int ks, size_t ps, float *C, size_t ldc, int cols, int add, bl_pf pf)
{
    bl_v16 acc[BL_WIDE_ROWS][8];
    int next = pf.o0 < pf.o1 ? 0 : k, o = pf.o0;
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            acc[r][v] = (bl_v16){0};
            /* C is read only after the k loop: fetch its lines now (in the time loop they
               were last written by the projection, long since out of L1/L2) */
            __builtin_prefetch(C + r * ldc + v * BL_PANEL, 1, 3);
        }
    for (int kk = 0; kk < k; kk++) {
        if (kk == next) {
            for (int v = 0; v < pf.nnv; v++)
                __builtin_prefetch(pf.nx + (size_t)o * pf.nks + v * pf.ps, 0, 2);
            next = ++o < pf.o1 ? next + pf.step : k;
        }
        bl_v16 w[8];
        for (int v = 0; v < NV; v++)
            w[v] = *(const bl_v16 *)(Wp + (size_t)kk * ks + v * ps);
        for (int r = 0; r < MR; r++) {
            const float a = A[r * lda + kk];
            for (int v = 0; v < NV; v++)
                acc[r][v] += a * w[v];
        }
    }
    if (cols == NV * BL_PANEL) {
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++) {
                bl_v16u *c = (bl_v16u *)(C + r * ldc + v * BL_PANEL);
                *c = add ? *c + acc[r][v] : acc[r][v];
            }
    } else {
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NV; v++) {
                float tmp[BL_PANEL];
                int c0 = v * BL_PANEL;
                memcpy(tmp, &acc[r][v], sizeof tmp);
                for (int c = c0; c < cols && c < c0 + BL_PANEL; c++)
                    C[r * ldc + c] = add ? C[r * ldc + c] + tmp[c - c0] : tmp[c - c0];
            }
    }
}

/* One k of bl_pgemm_block8: acc[r][v] += A[r][kk] * (vector v of the panels' row kk). */
static inline __attribute__((always_inline)) void
bl_step8(const int MR, const int NV, int kk, const float *A, size_t lda, const float *Wp, int ks,
         size_t ps, bl_vn acc[6][BL_GROUP * BL_VPP])
{
#if defined(__aarch64__)
    /* each panel vector loaded where it is used: loaded all first, as below, clang kept all 24
     * of a 1-row block's in registers beside its 24 accumulators, and spilled. The rows through
     * pointers: from A[r * lda + kk] clang 22 reloaded multiples of lda from the stack at every
     * k (instructions per FMLA, 64-row step 2.12 -> 1.79, 4-row step at H = 1024 3.19 -> 2.94) */
    const float *ar[6];
    bl_vn a[6];
    for (int r = 0; r < MR && r < 6; r++)
        ar[r] = A + r * lda;
    for (int r = 0; r < MR && r < 6; r++)   /* a loop of its own: merged, clang 22 as before */
        a[r] = BL_VN_SPLAT(ar[r][kk]);
    BL_UNROLL_VN
    for (int v = 0; v < NV * BL_VPP; v++) {
        const bl_vn w =
            *(const bl_vn *)(Wp + (size_t)kk * ks + v / BL_VPP * ps + v % BL_VPP * BL_VN);
        for (int r = 0; r < MR && r < 6; r++)
            acc[r][v] += a[r] * w;
    }
#else
    bl_vn w[BL_GROUP * BL_VPP];
    for (int v = 0; v < NV * BL_VPP; v++)
        w[v] = *(const bl_vn *)(Wp + (size_t)kk * ks + v / BL_VPP * ps + v % BL_VPP * BL_VN);
    for (int r = 0; r < MR; r++) {
        const bl_vn a = BL_VN_SPLAT(A[r * lda + kk]);
        for (int v = 0; v < NV * BL_VPP; v++)
            acc[r][v] += a * w[v];
    }
#endif
}

/* The same block for 16 vector registers (AVX2): gcc lowers the 16-float vectors of
 * bl_pgemm_block badly there (every broadcast built on the stack: 15% of the FMA peak), so this
 * one works on 8-float vectors, two per panel, each a native ymm register (arm64: 4-float
 * vectors, bl_vn). Same sums in the same order as bl_pgemm_block, and the same prefetches (on a
 * Zen 1, fetching C's lines first made the time loop's forward 3-9% faster). */
static inline __attribute__((always_inline)) void
bl_pgemm_block8(const int MR, const int NV, int k, const float *A, size_t lda, const float *Wp,
                int ks, size_t ps, float *C, size_t ldc, int cols, int add, bl_pf pf)
{
    bl_vn acc[6][BL_GROUP * BL_VPP];
    int next = pf.o0 < pf.o1 ? 0 : k, o = pf.o0;
    for (int r = 0; r < MR; r++)
        BL_UNROLL_VN
        for (int v = 0; v < NV * BL_VPP; v++)
            acc[r][v] = (bl_vn){0};
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++)
            __builtin_prefetch(C + r * ldc + v * BL_PANEL, 1, 3);
#ifdef __clang__
    /* without prefetches, a loop without their test: in the loop below clang 22 reloads
     * pointers from the stack at every k (a 4-row step at H = 512 and the direct projection at
     * 75-78% of the FMA peak, 87-90% so, as gcc's) */
    if (next == k)
        for (int kk = 0; kk < k; kk++)
            bl_step8(MR, NV, kk, A, lda, Wp, ks, ps, acc);
    else
#endif
    for (int kk = 0; kk < k; kk++) {
        if (kk == next) {
            for (int v = 0; v < pf.nnv; v++)
                __builtin_prefetch(pf.nx + (size_t)o * pf.nks + v * pf.ps, 0, 2);
            next = ++o < pf.o1 ? next + pf.step : k;
        }
        bl_step8(MR, NV, kk, A, lda, Wp, ks, ps, acc);
    }
    for (int r = 0; r < MR; r++)
        BL_UNROLL_VN
        for (int v = 0; v < NV * BL_VPP; v++) {
            const int c0 = v * BL_VN;
            if (c0 + BL_VN <= cols) {
                bl_vnu *c = (bl_vnu *)(C + r * ldc + c0);
                *c = add ? *c + acc[r][v] : acc[r][v];
            } else {
                float tmp[BL_VN];
                memcpy(tmp, &acc[r][v], sizeof tmp);
                for (int c = c0; c < cols; c++)
                    C[r * ldc + c] = add ? C[r * ldc + c] + tmp[c - c0] : tmp[c - c0];
            }
        }
}

/* Rows [0, m) in blocks of MR, then the remaining rows in one smaller block (wide: in blocks
 * of at most MR rows and near the same size; each row count gets its own unrolled code: wide,
 * MR and NV are constants after inlining), in the wide
 * (bl_pgemm_block) or narrow (bl_pgemm_block8) blocking. nx (or NULL): the next block of nnv
 * panels, for the row blocks to prefetch in shares. */
static inline __attribute__((always_inline)) void
bl_pgemm_rows(const int wide, const int MR, const int NV, int m, int k, const float *A,
              size_t lda, const float *Wp, int ks, size_t ps, float *C, size_t ldc, int cols,
              int add, const float *nx, int nks, int nnv)
{
#define BL_BLOCK(R, A, C, pf)                                                                  \
    do {                                                                                       \
        if (wide)                                                                              \
            bl_pgemm_block(R, NV, k, A, lda, Wp, ks, ps, C, ldc, cols, add, pf);              \
        else                                                                                   \
            bl_pgemm_block8(R, NV, k, A, lda, Wp, ks, ps, C, ldc, cols, add, pf);             \
    } while (0)
    const int nrb = (m + MR - 1) / MR;
    int i = 0;
    if (wide) {
        /* nrb blocks of as near the same size as can be: in blocks of MR, the last one may
         * hold 1 or 2 rows, too few accumulators to hide the FMA latency (64 rows in blocks of
         * 9: 7 x 9 + 1; here 8 x 8) */
        const int base = m / nrb, extra = m % nrb;
        for (int b = 0; b < nrb; b++) {
            const int R = base + (b < extra);
            const bl_pf pf = bl_pf_share(nx, nks, nnv, ps, k, b, nrb);
            switch (R) {
#define BL_SIZED(R) case R: if (R <= MR) BL_BLOCK(R <= MR ? R : 1, A + i * lda, C + i * ldc, pf); break;
            BL_SIZED(9) BL_SIZED(8) BL_SIZED(7) BL_SIZED(6) BL_SIZED(5) BL_SIZED(4) BL_SIZED(3)
            BL_SIZED(2) BL_SIZED(1)
#undef BL_SIZED
            default: break;
            }
            i += R;
        }
        return;
    }
    for (; i + MR <= m; i += MR)
        BL_BLOCK(MR, A + i * lda, C + i * ldc, bl_pf_share(nx, nks, nnv, ps, k, i / MR, nrb));
    const bl_pf pf = bl_pf_share(nx, nks, nnv, ps, k, nrb - 1, nrb);
    A += i * lda;
    C += i * ldc;
    switch (m - i) {
#define BL_TAIL(R) case R: if (R < MR) BL_BLOCK(R < MR ? R : 1, A, C, pf); break;
    BL_TAIL(7) BL_TAIL(6) BL_TAIL(5) BL_TAIL(4) BL_TAIL(3) BL_TAIL(2) BL_TAIL(1)
#undef BL_TAIL
    default: break;
    }
#undef BL_BLOCK
}

/* One block of NV panels for every row, with the register blocking of the ISA level:
 * wide (32 vector registers of 16 floats: AVX-512): up to BL_WIDE_ROWS rows x 3 panels, or
 * 4 rows x 6 panels when there are few rows (enough independent FMAs in flight either way;
 * at 4 rows, 4 x 6 streamed W_h 12-17% faster than 4 x 3);
 * narrow (AVX2's 16 registers, arm64's 32 of 4 floats): bl_pgemm_block8, BL_NARROW_ROWS rows
 * x 1 panel (6: 12 ymm accumulators; arm64 5: 20 NEON), at 4 rows 4 x 1, each block reading
 * its panel as one stream (bl_group); at 1 to 3 rows 1 x 6, 2 x 3, 3 x 2 (a single panel would
 * leave too few chains to hide the FMA latency).
 * ps: bl_panel_step. */
static inline __attribute__((always_inline)) void
bl_pgemm_cols(int wide, int nv, int m, int k, const float *A, size_t lda, const float *Wp,
              int ks, size_t ps, float *C, size_t ldc, int cols, int add, const float *nx,
              int nks, int nnv)
{
#define BL_ROWS(W, MR, NV) bl_pgemm_rows(W, MR, NV, m, k, A, lda, Wp, ks, ps, C, ldc, cols, add, nx, nks, nnv)
#define BL_ROWS_NO_PF(W, MR, NV) bl_pgemm_rows(W, MR, NV, m, k, A, lda, Wp, ks, ps, C, ldc, cols, add, NULL, 0, 0)
    if (!wide) {
        switch (nv) {
        case 6: BL_ROWS(0, 1, 6); break;
        case 5: BL_ROWS(0, 1, 5); break;
        case 4: BL_ROWS(0, 1, 4); break;
        case 3: BL_ROWS(0, 2, 3); break;
        case 2: BL_ROWS(0, 3, 2); break;
        default: BL_ROWS(0, BL_NARROW_ROWS, 1); break;
        }
        return;
    }
    switch (nv) {
    case 6: BL_ROWS_NO_PF(1, 4, 6); break;
    case 5: BL_ROWS_NO_PF(1, 4, 5); break;
    case 4: BL_ROWS_NO_PF(1, 4, 4); break;
    case 3: BL_ROWS(1, BL_WIDE_ROWS, 3); break;
    case 2: BL_ROWS(1, BL_WIDE_ROWS, 2); break;
    default: BL_ROWS(1, BL_WIDE_ROWS, 1); break;
    }
#undef BL_ROWS
#undef BL_ROWS_NO_PF
}

/* Panels per block of bl_pgemm_panels (at most BL_GROUP): its register blocking by ISA and
 * rows. */
static inline int bl_block_panels(int wide, int m)
{
    return wide ? (m <= 4 ? 6 : 3) : m == 1 ? 6 : m == 2 ? 3 : m == 3 ? 2 : 1;
}
#define BL_MAX_BLOCK_PANELS BL_GROUP

/* Panels per chunk of a unit split's step (units_loop, _forward.pyx), of P per gate: an eighth
 * of the gate, 4 panels at least (at H = 256, chunks of 1 or 2 panels ran 1-2% slower than 4),
 * never fewer than 2 chunks. Wide, from 24 panels (H >= 384): that eighth rounded down to whole
 * blocks of 3 panels (the blocking from 5 rows on), so that no chunk cuts a block. Chunks of 4
 * cut every other block into blocks of 1 and 2 panels, whose fewer accumulators ran the product
 * 4-8% slower than whole gates (Zen 4, one thread, 64 rows, H = 256 to 1024), chunks of 8 at
 * H = 1024 3-4%; chunks of 3, 6 or 12 ran as fast as whole gates. Below 24 panels, chunks of 3
 * came in odd numbers that the two threads could not halve (H = 128, 16 rows: 9% slower). */
static inline int bl_unit_chunk(int P)
{
    const int per = P / 8, block = bl_block_panels(1, BL_WIDE_ROWS);
    int c = per > 4 ? per : 4;
    if (bl_isa_wide() && P >= 8 * block)
        c = per - per % block;
    c = c < P / 2 ? c : P / 2;
    return c > 1 ? c : 1;
}

/* The block of at most `per` panels that starts at panel p (going up) or ends at panel e
 * (going down), within [c0, c1) and within one group of a packing whose panel 0 is panel o. */
static inline int bl_block_end(int p, int per, int o, int c1)
{
    int q = p - o, e = p + per, g1 = o + q - q % BL_GROUP + BL_GROUP;
    e = e < g1 ? e : g1;
    return e < c1 ? e : c1;
}

static inline int bl_block_start(int e, int per, int o, int c0)
{
    int q = e - 1 - o, s = e - per, g0 = o + q - q % BL_GROUP;
    s = s > g0 ? s : g0;
    return s > c0 ? s : c0;
}

/* The direct form packs W in chunks of bl_direct_panels(k) panels (about BL_DIRECT_BYTES, kept
 * in L2 while the rows pass) and runs the rows over a chunk in groups of bl_direct_rows(k)
 * (whose A stays in L1 while it passes every block of the chunk). Streaming every row of A
 * past each small block instead re-reads all of A from memory per block: at the 9600 rows
 * x 256 of a 150-step projection that ran at 78% of the sgemm peak. */
#define BL_DIRECT_BYTES (384 * 1024)
#define BL_DIRECT_A_BYTES (24 * 1024)
#define BL_DIRECT_MAX_PANELS 60

static inline int bl_direct_panels(int k)
{
    size_t n = BL_DIRECT_BYTES / ((size_t)(k > 0 ? k : 1) * BL_PANEL * sizeof(float));
    n -= n % BL_MAX_BLOCK_PANELS;
    return n < BL_MAX_BLOCK_PANELS ? BL_MAX_BLOCK_PANELS
           : n > BL_DIRECT_MAX_PANELS ? BL_DIRECT_MAX_PANELS : (int)n;
}

/* ... in whole blocks of the ISA level's rows (BL_WIDE_ROWS wide, BL_NARROW_ROWS narrow: at
 * k = 512, 8 rows would leave a third of them to a 2-row block) */
static inline int bl_direct_rows(int wide, int k)
{
    const size_t mr = wide ? BL_WIDE_ROWS : BL_NARROW_ROWS;
    size_t r = BL_DIRECT_A_BYTES / ((size_t)(k > 0 ? k : 1) * sizeof(float));
    r -= r % mr;
    return r < mr ? (int)mr : r > 256 ? (int)(256 - 256 % mr) : (int)r;
}

/* Floats of a direct-form chunk buffer (one per thread). */
static inline size_t bl_direct_floats(int k)
{
    return (size_t)bl_direct_panels(k) * k * BL_PANEL;
}

/* The direct form's next chunk of W, prefetched into L2 by the blocks of this one (bl_pf, a
 * window of lines for each block): the chunk's pack then reads W's rows from L2, not from
 * memory (a call after a pause) or L3, while the pack's own prefetches reach only a panel
 * ahead. Wide blocking, W's rows contiguous (ldw == k: the chunk is one run of lines). On a Zen
 * 4, one core, the projection alone, caches flushed before each call (best of 21, without ->
 * with): 25 rows, n = 2048, k = 512 740 -> 638 us; 100 rows 2128-2162 -> 2042-2050; 100 rows at
 * H = 1024 8379-8396 -> 8134-8145; 150 rows at H = 256 819-834 -> 802-804; 1600 rows the same.
 * In the layer (one process, 1 thread, calls alternating with and without, caches flushed and
 * a 125 ms pause before each; median per-pair ratio): db_inf_h512_b1 1.021-1.023,
 * db_inf_h512_b4 1.005-1.006, db_inf_h256_b1_t150 1.007-1.009, db_inf_h1024_b4 0.996-1.003;
 * 2 threads and db_train_h512_b64's forward 0.996-1.013. */
typedef struct {
    const float *next;      /* the next chunk's first row, or NULL */
    size_t lines, done;     /* its 16-float lines, and those given out */
    int nnv;                /* lines a block fetches per k */
} bl_chunk_pf;

/* The next chunk is panels [c1, c2) of W; `calls` blocks of this chunk share its lines. */
static inline bl_chunk_pf bl_chunk_pf_make(int wide, const float *W, size_t ldw, int n, int k,
                                           int c1, int c2, int calls)
{
    bl_chunk_pf c = {NULL, 0, 0, 0};
    if (!wide || W == NULL || ldw != (size_t)k || c1 >= c2 || calls < 1)
        return c;
    const int left = n - c1 * BL_PANEL, rows = left < (c2 - c1) * BL_PANEL ? left
                                                                           : (c2 - c1) * BL_PANEL;
    const size_t window = (size_t)calls * k;
    c.lines = ((size_t)rows * k + BL_PANEL - 1) / BL_PANEL;
    c.nnv = (int)((c.lines + window - 1) / window);
    if (c.lines >= (size_t)k * c.nnv)       /* else too few lines for one block's window */
        c.next = W + (size_t)c1 * BL_PANEL * ldw;
    return c;
}

/* One block's window (k * nnv lines from the returned address), or NULL when every line is
 * given out. The last window ends at the chunk's end (it may repeat lines), never past it. */
static inline const float *bl_chunk_pf_take(bl_chunk_pf *c, int k)
{
    if (c->next == NULL || c->done >= c->lines)
        return NULL;
    const size_t w = (size_t)k * c->nnv, at = c->done + w <= c->lines ? c->done : c->lines - w;
    c->done += w;
    return c->next + at * BL_PANEL;
}

/* Columns [16*p0, min(16*p1, n)) of C (panels [p0, p1) of Wp), every row of A.
 * The direct form (W non-NULL: W [n x k] as it lies, row stride ldw; Wp unused) packs the
 * panels chunk by chunk into buf (bl_direct_floats(k) floats) as sgemm packs: for a product
 * that streams each panel once (the projection of all time steps) this saves writing the whole
 * packed W out to memory and reading it back. With `keep`, buf is instead where all the
 * panels are kept (the layout of Wp) for later products: the first step packs W_h as it
 * multiplies by it, reading W_h once for both. Either way the same kernel computes each
 * element over the whole k, so results are identical. Blocks never cross a range of BL_GROUP
 * panels (in the wide layout, a group); rev visits them last to first. pf (panels only): each
 * block prefetches the next (bl_pf); in the direct form the blocks prefetch the next chunk
 * (bl_chunk_pf). */
static inline __attribute__((always_inline)) void
bl_pgemm_panels_body(const int wide, int m, int n, int k, const float *A, size_t lda,
                     const float *Wp, int p0, int p1, float *C, size_t ldc, const float *W,
                     size_t ldw, float *buf, int keep, int add, int rev, int pf)
{
    const int P = (n + BL_PANEL - 1) / BL_PANEL, per = bl_block_panels(wide, m);
    const int chunk = W != NULL ? bl_direct_panels(k) : p1 - p0;
    const int group = W != NULL ? bl_direct_rows(wide, k) : m;
    const size_t ps = bl_panel_step(k);
    for (int c0 = p0; c0 < p1; c0 += chunk) {
        const int c1 = c0 + chunk < p1 ? c0 + chunk : p1;
        /* the chunk's packing: LP panels at L whose panel 0 is panel o of W */
        const float *L = Wp;
        int LP = P, o = 0;
        if (W != NULL) {
            int left = n - c0 * BL_PANEL;
            const float *src = W + (size_t)c0 * BL_PANEL * ldw;
            if (keep) {
                L = buf;
                bl_pack_range(P, c0, c1, left, k, src, ldw, buf, p1);
            } else {
                L = buf, LP = c1 - c0, o = c0;
                bl_pack_range(LP, 0, LP, left, k, src, ldw, buf, 0);
            }
        }
        bl_chunk_pf next_chunk = bl_chunk_pf_make(
            wide, W, ldw, n, k, c1, c1 + chunk < p1 ? c1 + chunk : p1,
            (m + group - 1) / group * ((c1 - c0 + per - 1) / per));
        for (int i = 0; i < m; i += group) {
            const int rows = m - i < group ? m - i : group;
            /* the block [p, e), and the next one [np, ne) (empty at the end) */
            int p = rev ? bl_block_start(c1, per, o, c0) : c0;
            int e = rev ? c1 : bl_block_end(c0, per, o, c1);
            while (p < e) {
                const int np = rev ? (p > c0 ? bl_block_start(p, per, o, c0) : p) : e;
                const int ne = rev ? p : (e < c1 ? bl_block_end(e, per, o, c1) : e);
                const int nv = e - p, left = n - p * BL_PANEL;
                const int cols = left < nv * BL_PANEL ? left : nv * BL_PANEL;
                int ks, nks = 0, nnv = 0;
                const float *w = bl_panel(L, LP, k, p - o, &ks), *nx = NULL;
                if (np < ne && pf && W == NULL) {    /* panels only: prefetch the next block */
                    nx = bl_panel(L, LP, k, np - o, &nks);
                    nnv = ne - np;
                } else if ((nx = bl_chunk_pf_take(&next_chunk, k)) != NULL) {
                    nks = BL_PANEL * next_chunk.nnv;     /* nnv lines a k, in order */
                    nnv = next_chunk.nnv;
                }
                bl_pgemm_cols(wide, nv, rows, k, A + (size_t)i * lda, lda, w, ks, ps,
                              C + (size_t)i * ldc + p * BL_PANEL, ldc, cols, add, nx, nks, nnv);
                p = np;
                e = ne;
            }
        }
    }
}

/* bl_pgemm_panels_body, each blocking built only for the ISA levels that run it (_isa.h) */
BL_WIDE
static void bl_pgemm_panels_wide(int m, int n, int k, const float *A, size_t lda,
                                 const float *Wp, int p0, int p1, float *C, size_t ldc,
                                 const float *W, size_t ldw, float *buf, int keep, int add,
                                 int rev, int pf)
{
    bl_pgemm_panels_body(1, m, n, k, A, lda, Wp, p0, p1, C, ldc, W, ldw, buf, keep, add, rev,
                         pf);
}

BL_NARROW
static void bl_pgemm_panels_narrow(int m, int n, int k, const float *A, size_t lda,
                                   const float *Wp, int p0, int p1, float *C, size_t ldc,
                                   const float *W, size_t ldw, float *buf, int keep, int add,
                                   int rev, int pf)
{
    bl_pgemm_panels_body(0, m, n, k, A, lda, Wp, p0, p1, C, ldc, W, ldw, buf, keep, add, rev,
                         pf);
}

#ifdef BL_NARROW_AVX2
BL_NARROW_AVX2
static void bl_pgemm_panels_avx2(int m, int n, int k, const float *A, size_t lda,
                                 const float *Wp, int p0, int p1, float *C, size_t ldc,
                                 const float *W, size_t ldw, float *buf, int keep, int add,
                                 int rev, int pf)
{
    bl_pgemm_panels_body(0, m, n, k, A, lda, Wp, p0, p1, C, ldc, W, ldw, buf, keep, add, rev,
                         pf);
}
#endif

static inline void bl_pgemm_panels(int wide, int m, int n, int k, const float *A, size_t lda,
                                   const float *Wp, int p0, int p1, float *C, size_t ldc,
                                   const float *W, size_t ldw, float *buf, int keep, int add,
                                   int rev, int pf)
{
    if (wide)
        bl_pgemm_panels_wide(m, n, k, A, lda, Wp, p0, p1, C, ldc, W, ldw, buf, keep, add, rev,
                             pf);
#ifdef BL_NARROW_AVX2
    else if (bl_isa_avx2())
        bl_pgemm_panels_avx2(m, n, k, A, lda, Wp, p0, p1, C, ldc, W, ldw, buf, keep, add, rev,
                             pf);
#endif
    else
        bl_pgemm_panels_narrow(m, n, k, A, lda, Wp, p0, p1, C, ldc, W, ldw, buf, keep, add,
                               rev, pf);
}

/* Is W big enough for the blocks to prefetch the next (bl_pf): beyond what the caches keep from
 * one step to the next. Wide blocking, with at least two blocks of rows to share the
 * prefetches: past 2 MiB. On a Zen 4 (1 MiB L2, 32 MiB L3) measured to gain at 16 MiB, in the
 * noise at 4 and 8 MiB; on an Intel Xeon (Emerald Rapids: 2 MiB L2, its L3 slower to a core),
 * one step at 64 rows, H = 512 (4 MiB), 215 -> 234 GFLOP/s and the backward's dh 213 -> 230
 * (95% of the FMA peak, as at 16 MiB). Narrow blocking, on a Zen 1
 * (512 KiB L2; GFLOP/s of the product alone, without -> with): from 1 MiB at 16 rows and more
 * (m = 64: 1 MiB 37.6 -> 38.6, 4 MiB 36.4 -> 38.5, 16 MiB 35.0 -> 38.3; m = 16, 4 MiB 32.8 ->
 * 36.8), and past 8 MiB at 2 rows and more (m = 4, 16 MiB: 12.4 -> 15.0; the forward of h1024
 * b4 84-89 -> 71-73 ms), where at 4 MiB it lost (m = 4: 36 -> 28.5). Below 4 MiB, from 32 rows:
 * at 16 rows and 1 MiB (stack2's W_h) it lost (38.3-38.6 -> 36.9-37.3, best of 20; stack2's
 * forward at 1 thread 1% faster without). */
#define BL_PF_MIN_BYTES_WIDE ((size_t)2 << 20)
#define BL_PF_MIN_BYTES ((size_t)8 << 20)
#define BL_PF_MIN_BYTES_NARROW ((size_t)1 << 20)
#define BL_PF_16_ROWS_BYTES_NARROW ((size_t)4 << 20)    /* below it, from 32 rows */

static inline int bl_pf_wanted(int m, int n, int k)
{
    const size_t bytes = (size_t)n * (size_t)k * sizeof(float);
    if (bl_isa_wide())
        return m >= 16 && bytes > BL_PF_MIN_BYTES_WIDE;
    if (bytes > BL_PF_MIN_BYTES)
        return m >= 2;
    if (bytes < BL_PF_MIN_BYTES_NARROW)
        return 0;
    return m >= (bytes < BL_PF_16_ROWS_BYTES_NARROW ? 32 : 16);
}

/* Gate-blocked form: W is `gates` blocks of H rows ([gates*H x k], row stride ldw), each gate
 * packed on its own (P = ceil(H/16) panels) so that a gate's columns of C start on a panel. */
static inline int bl_gate_panels(int H) { return (H + BL_PANEL - 1) / BL_PANEL; }

/* Packing as a task for two threads: part 0 packs the first half of the gates. */
typedef struct {
    int gates, H, k;
    size_t ldw;
    const float *W;
    float *Wp;
} bl_pack_job;

static void bl_pack_task(void *job, int part)
{
    const bl_pack_job *j = (const bl_pack_job *)job;
    int g0 = part == 0 ? 0 : j->gates / 2, g1 = part == 0 ? j->gates / 2 : j->gates;
    for (int g = g0; g < g1; g++)
        bl_pack_panels(j->H, j->k, j->W + (size_t)g * j->H * j->ldw, j->ldw,
                       j->Wp + g * bl_packed_size(j->H, j->k));
}

/* C[m x gates*H] (+)= A[m x k] @ W^T (add: accumulate, else overwrite), as work items
 * (gate, panel) = g*P + p that two threads can share: items [0, split) are part 0, the rest
 * part 1. W NULL: from the panels Wp; else the direct form from W (row stride ldw), part i
 * packing its blocks into buf[i], or with keep into the panels `keep` (the layout of Wp).
 * rev (panels only): each part visits its gates and blocks last to first. */
typedef struct {
    int m, H, k, gates, split, add, rev, pf;
    size_t lda, ldc;
    const float *A, *Wp;
    float *C;
    const float *W;
    size_t ldw;
    float *buf[2];
    float *keep;
} bl_pgemm_job;

static void bl_pgemm_items(const bl_pgemm_job *j, int i0, int i1, float *buf)
{
    const int P = bl_gate_panels(j->H), wide = bl_isa_wide();
    /* The direct form into its own buffer, each gate a whole number of panels: items are the
     * panels of W as one [gates*H x k] matrix, so that a chunk may span gates. A group of rows
     * then passes chunks of full size (per gate, H = 256 at k = 256 was 16 panels of 24), and
     * x is streamed from memory once per chunk, not per gate and chunk (Intel Xeon, one
     * core, tools/kernels.c: the projection of 9600 rows, H = 256, 86 -> 89% of the FMA peak,
     * 800 rows with k = 512 85 -> 89%, k = 128 82 -> 85%, 1600 rows at H = 1024 92 -> 93%) */
    if (j->W != NULL && j->keep == NULL && j->H % BL_PANEL == 0) {
        bl_pgemm_panels(wide, j->m, j->gates * j->H, j->k, j->A, j->lda, NULL, i0, i1, j->C,
                        j->ldc, j->W, j->ldw, buf, 0, j->add, j->rev, j->pf);
        return;
    }
    const int g0 = i0 / P, g1 = (i1 + P - 1) / P < j->gates ? (i1 + P - 1) / P : j->gates;
    for (int gi = g0; gi < g1; gi++) {
        int g = j->rev ? g0 + g1 - 1 - gi : gi;
        int p0 = i0 > g * P ? i0 - g * P : 0, p1 = i1 < (g + 1) * P ? i1 - g * P : P;
        const size_t gate = g * bl_packed_size(j->H, j->k);
        bl_pgemm_panels(wide, j->m, j->H, j->k, j->A, j->lda, j->W ? NULL : j->Wp + gate, p0,
                        p1, j->C + (size_t)g * j->H, j->ldc,
                        j->W ? j->W + (size_t)g * j->H * j->ldw : NULL, j->ldw,
                        j->keep ? j->keep + gate : buf, j->keep != NULL, j->add, j->rev, j->pf);
    }
}

static void bl_pgemm_task(void *job, int part)
{
    const bl_pgemm_job *j = (const bl_pgemm_job *)job;
    if (part == 0)
        bl_pgemm_items(j, 0, j->split, j->buf[0]);
    else
        bl_pgemm_items(j, j->split, j->gates * bl_gate_panels(j->H), j->buf[1]);
}

/* The whole job on this thread, its items in one pass: with rev, all of them last to first
 * (the direct form packs every chunk into buf[0]). Its two parts one after the other
 * would each reverse only their own half, so that a step started in the middle of the panels
 * the step before had visited, not on its last ones, which L2 still holds (Intel Xeon, 1
 * thread, N = 1, H = 512, frozen: 123 -> 87 us a step; the product alone 74). */
static void bl_pgemm_all(const bl_pgemm_job *j)
{
    bl_pgemm_items(j, 0, j->gates * bl_gate_panels(j->H), j->buf[0]);
}

/* Panels [p0, p1) of every gate (units [16*p0, min(16*p1, H)) of each): one thread's share
 * of a product in a unit split, panels only (W NULL). */
static void bl_pgemm_units(const bl_pgemm_job *j, int p0, int p1)
{
    const int P = bl_gate_panels(j->H);
    for (int g = 0; g < j->gates; g++)
        bl_pgemm_items(j, g * P + p0, g * P + p1, NULL);
}

static inline bl_pgemm_job bl_pgemm_job_make(int m, int gates, int H, int k, const float *A,
                                             size_t lda, const float *Wp, float *C, size_t ldc,
                                             int add)
{
    bl_pgemm_job j = {m, H, k, gates, gates * bl_gate_panels(H) / 2, add, 0,
                      bl_pf_wanted(m, gates * H, k), lda, ldc, A, Wp, C, NULL, 0, {NULL, NULL},
                      NULL};
    return j;
}

#endif
