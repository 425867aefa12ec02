/* C[m x n] += A[m x k] @ W[n x k]^T for small m (row-major, unit inner strides).
 *
 * The recurrent GEMM of a small batch: BLAS sgemm re-packs all of W on every call, which costs
 * more than the multiply when m is 1 to 8. Here each row of W is read once and used for up to
 * four rows of A while it sits in L1, so W streams from cache/memory exactly once per call.
 */
#ifndef BNNSLSTM_SKINNY_H
#define BNNSLSTM_SKINNY_H

#include <stddef.h>

#include "_isa.h"

BL_CLONES
static void bl_skinny_gemm_nt(int m, int n, int k, const float *A, int lda, const float *W,
                              int ldw, float *C, int ldc)
{
    for (int r = 0; r < n; r++) {
        const float *w = W + (size_t)r * ldw;
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            const float *a0 = A + (size_t)i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
            for (int j = 0; j < k; j++) {
                s0 += w[j] * a0[j];
                s1 += w[j] * a1[j];
                s2 += w[j] * a2[j];
                s3 += w[j] * a3[j];
            }
            C[(size_t)i * ldc + r] += s0;
            C[(size_t)(i + 1) * ldc + r] += s1;
            C[(size_t)(i + 2) * ldc + r] += s2;
            C[(size_t)(i + 3) * ldc + r] += s3;
        }
        for (; i < m; i++) {
            const float *a = A + (size_t)i * lda;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int j = 0; j < k; j++)
                s += w[j] * a[j];
            C[(size_t)i * ldc + r] += s;
        }
    }
}

#endif
