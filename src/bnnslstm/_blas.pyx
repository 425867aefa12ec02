# cython: language_level=3
"""The BLAS dispatch point (Fortran ABI sgemm with 32-bit ints).

The default is scipy's cython_blas (Accelerate on macOS, OpenBLAS elsewhere);
``bnnslstm.set_blas`` switches to any library exporting a Fortran-ABI sgemm. The pointer is
read once per GEMM call, so a switch takes effect at the next call; switch when no call is
in flight.
"""
from scipy.linalg.cython_blas cimport sgemm as scipy_sgemm

cdef sgemm_t selected = <sgemm_t>scipy_sgemm

cdef void dispatch_sgemm(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                         float *a, int *lda, float *b, int *ldb, float *beta, float *c,
                         int *ldc) noexcept nogil:
    selected(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

cdef const void *current_sgemm() noexcept nogil:
    return <const void *>selected

def _select(size_t address) -> None:
    """Dispatch to the sgemm at `address` (0: back to scipy's)."""
    global selected
    selected = <sgemm_t>address if address else <sgemm_t>scipy_sgemm

def _scipy_address() -> int:
    return <size_t>scipy_sgemm

def _current_address() -> int:
    return <size_t>selected
