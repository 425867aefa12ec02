/* The backward's whole-sequence products (dX = dA W_x, dW = dA^T X) on the panel kernel of
 * _pgemm.h, blocked for the caches as a GotoBLAS-style sgemm is: k in blocks whose B rows are
 * packed into panels, and C's rows in groups whose A stays in L2 while every panel block of
 * the k block passes it.
 *
 * On AVX-512 (Zen 5, 1 thread) this kernel ran these products 5-10% faster than OpenBLAS's
 * SkylakeX sgemm, with the packing included: h512's dX 218-224 against 201-205 GFLOP/s,
 * its dW 204-213 against 191-199 (the C prototype in BENCHMARKS.md, seventeenth session).
 *
 * Every element of C is summed in k order within a k block and the blocks are added in order,
 * so a result depends only on (m, n, k, at): not on which rows or columns a thread takes.
 */
#ifndef BNNSLSTM_BGEMM_H
#define BNNSLSTM_BGEMM_H

#include "_pgemm.h"

/* k per block and rows per group: A read in place (rows) streams well over the whole k up to
 * 2048 (dX's k = 4H), and in blocks of 1024 beyond; A^T (dW's k = S*N) is transposed into
 * blocks of 96 rows x 800 k (measured best of 48-128 x 512-full at h256-h1024, S*N 800-9600). */
#define BL_BG_ROWS_N 48
#define BL_BG_K_N 2048
#define BL_BG_KBLOCK_N 1024
#ifndef BL_BG_ROWS_T
#define BL_BG_ROWS_T 96
#endif
#ifndef BL_BG_K_T
#define BL_BG_K_T 800
#endif

/* Is this kernel the one to use for these products: x86-64 with AVX-512, where it was measured
 * against OpenBLAS (elsewhere the BLAS keeps them: Accelerate on Apple silicon, unmeasured). */
static inline int bl_bgemm_ok(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

static inline int bl_bgemm_kc(int k, int at)
{
    if (at)
        return k < BL_BG_K_T ? k : BL_BG_K_T;
    return k <= BL_BG_K_N ? k : BL_BG_KBLOCK_N;
}

/* Floats of the two pack buffers of one bl_bgemm call (B's panels, then A^T's rows). */
static inline size_t bl_bgemm_floats(int n, int k, int at)
{
    int kc = bl_bgemm_kc(k, at);
    return bl_packed_size(n, kc) + (at ? (size_t)BL_BG_ROWS_T * kc : 0);
}

/* T[r][kk] = A[kk][r] (A row stride lda, T row stride kc): 16 x 16 tiles in registers. */
BL_CLONES
static void bl_transpose_block(int rows, int kc, const float *A, size_t lda, float *T)
{
    int r0 = 0;
    for (; r0 + BL_PANEL <= rows; r0 += BL_PANEL) {
        int k0 = 0;
        for (; k0 + BL_PANEL <= kc; k0 += BL_PANEL) {
            bl_v16 t[BL_PANEL];
            for (int c = 0; c < BL_PANEL; c++)
                t[c] = *(const bl_v16u *)(A + (size_t)(k0 + c) * lda + r0);
            bl_transpose16(t);
            for (int c = 0; c < BL_PANEL; c++)
                *(bl_v16u *)(T + (size_t)(r0 + c) * kc + k0) = t[c];
        }
        for (; k0 < kc; k0++)
            for (int c = 0; c < BL_PANEL; c++)
                T[(size_t)(r0 + c) * kc + k0] = A[(size_t)k0 * lda + r0 + c];
    }
    for (; r0 < rows; r0++)
        for (int kk = 0; kk < kc; kk++)
            T[(size_t)r0 * kc + kk] = A[(size_t)kk * lda + r0];
}

/* C[m x n] (+)= op(A) @ B, all row-major: op(A) = A [m x k] (row stride lda), or with `at`
 * A^T of A [k x m]; B [k x n] (row stride ldb). add: accumulate into C, else overwrite.
 * buf: bl_bgemm_floats(n, k, at) floats, 64-byte aligned. Wide ISA only (32 registers). */
BL_CLONES
static void bl_bgemm(int m, int n, int k, const float *A, size_t lda, int at, const float *B,
                     size_t ldb, float *C, size_t ldc, int add, float *buf)
{
    const int kc_max = bl_bgemm_kc(k, at), R = at ? BL_BG_ROWS_T : BL_BG_ROWS_N;
    const int P = (n + BL_PANEL - 1) / BL_PANEL, per = bl_block_panels(1, R);
    float *bp = buf, *ap = buf + bl_packed_size(n, kc_max);
    for (int k0 = 0; k0 < k; k0 += kc_max) {
        const int kc = k - k0 < kc_max ? k - k0 : kc_max;
        bl_pack_panels_t(n, kc, B + (size_t)k0 * ldb, ldb, bp);
        for (int i0 = 0; i0 < m; i0 += R) {
            const int rows = m - i0 < R ? m - i0 : R;
            const float *a = A + (size_t)i0 * lda + k0;
            size_t la = lda;
            if (at) {
                bl_transpose_block(rows, kc, A + (size_t)k0 * lda + i0, lda, ap);
                a = ap;
                la = (size_t)kc;
            }
            for (int p = 0; p < P; p += per) {
                const int nv = P - p < per ? P - p : per;
                const int left = n - p * BL_PANEL;
                bl_pgemm_cols(1, nv, rows, kc, a, la, bp + (size_t)p * kc * BL_PANEL,
                              C + (size_t)i0 * ldc + p * BL_PANEL, ldc,
                              left < nv * BL_PANEL ? left : nv * BL_PANEL, add || k0 > 0);
            }
        }
    }
}

#endif
