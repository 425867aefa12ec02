# cython: language_level=3
"""The BLAS dispatch point: every sgemm of the kernels calls the back end selected here; with
the default back end ("auto"), the backward's whole-sequence products may run on our own kernel
instead (own_products)."""

ctypedef void (*sgemm_t)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                         float *a, int *lda, float *b, int *ldb, float *beta, float *c,
                         int *ldc) noexcept nogil

cdef void dispatch_sgemm(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                         float *a, int *lda, float *b, int *ldb, float *beta, float *c,
                         int *ldc) noexcept nogil
cdef const void *current_sgemm() noexcept nogil
cdef bint own_products() noexcept nogil
