# cython: language_level=3
"""The one place the kernels call BLAS: row-major GEMM on top of Fortran-ABI sgemm."""
from scipy.linalg.cython_blas cimport sgemm

cdef inline void gemm_rm(char ta, char tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta,
                         float *c, int ldc) noexcept nogil:
    """C[m x n] = alpha * op(A)[m x k] @ op(B)[k x n] + beta * C, all row-major.

    Row-major C is column-major C^T, so this is column-major C^T = op(B)^T @ op(A)^T.
    """
    sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *>b, &ldb, <float *>a, &lda, &beta, c, &ldc)
