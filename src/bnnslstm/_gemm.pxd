# cython: language_level=3
"""The one place the kernels multiply matrices: row-major GEMM on top of Fortran-ABI sgemm,
and the small-batch kernel for C += A @ W^T when A has few rows."""
from libc.string cimport memset

from bnnslstm._blas cimport current_sgemm, dispatch_sgemm as sgemm

cdef extern from "_helper.h" nogil:
    ctypedef struct bl_helper:
        int running
    int helper_start "bl_helper_start"(bl_helper *h)
    void helper_stop "bl_helper_stop"(bl_helper *h)
    long online_cpus "bl_online_cpus"()
    ctypedef int (*set_threads_local_fn "bl_set_threads_local_fn")(int)
    set_threads_local_fn blas_threads_local "bl_blas_threads_local"(const void *sgemm_addr)
    void skinny_gemm_nt_split "bl_skinny_gemm_nt_split"(bl_helper *h, int m, int n, int k,
                                                        const float *A, int lda, const float *W,
                                                        int ldw, float *C, int ldc)

cdef enum:
    # Up to this many rows, streaming W once beats sgemm's per-call packing of W (measured:
    # H = 256 to 1024). At 16 rows it was 20% faster on one thread but 35% slower on two, where
    # sgemm splits the rows across cores and this kernel runs on one (BENCHMARKS.md).
    SKINNY_MAX_ROWS = 8

cdef inline set_threads_local_fn blas_thread_control() noexcept nogil:
    """openblas_set_num_threads_local of the selected BLAS, or NULL."""
    return blas_threads_local(current_sgemm())

cdef inline void gemm_rm(char ta, char tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta,
                         float *c, int ldc) noexcept nogil:
    """C[m x n] = alpha * op(A)[m x k] @ op(B)[k x n] + beta * C, all row-major.

    Row-major C is column-major C^T, so this is column-major C^T = op(B)^T @ op(A)^T.
    """
    sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *>b, &ldb, <float *>a, &lda, &beta, c, &ldc)

cdef inline void gemm_nt(bl_helper *helper, int m, int n, int k, const float *a, int lda,
                         const float *w, int ldw, float beta, float *c, int ldc) noexcept nogil:
    """C[m x n] = A[m x k] @ W[n x k]^T + beta * C (beta 0 or 1), row-major.

    Every forward product with a weight matrix W stored [out][in] goes through here; for few
    rows, a running helper thread (NULL: none) takes half of W's rows.
    """
    cdef int i
    if m <= SKINNY_MAX_ROWS:
        if beta == 0:
            for i in range(m):
                memset(c + <size_t>i * ldc, 0, n * sizeof(float))
        skinny_gemm_nt_split(helper, m, n, k, a, lda, w, ldw, c, ldc)
    else:
        gemm_rm(b'N', b'T', m, n, k, 1.0, a, lda, w, ldw, beta, c, ldc)
