# cython: language_level=3
"""The BLAS dispatch point (Fortran ABI sgemm with 32-bit ints).

The default is scipy's cython_blas (Accelerate on macOS, OpenBLAS elsewhere), with the
backward's whole-sequence products on our own blocked kernel where that is faster (_bgemm.h);
``bnnslstm.set_blas`` switches to any library exporting a Fortran-ABI sgemm, which then takes
every GEMM the kernels do not do themselves. The pointer is read once per GEMM call, so a switch
takes effect at the next call; switch when no call is in flight.
"""
from scipy.linalg.cython_blas cimport sgemm as scipy_sgemm

cdef extern from "_bgemm.h" nogil:
    bint bgemm_ok "bl_bgemm_ok"()

cdef sgemm_t selected = <sgemm_t>scipy_sgemm
cdef bint own = True       # the default back end: our kernel for the backward's products

cdef void dispatch_sgemm(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                         float *a, int *lda, float *b, int *ldb, float *beta, float *c,
                         int *ldc) noexcept nogil:
    selected(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

cdef const void *current_sgemm() noexcept nogil:
    return <const void *>selected

cdef bint own_products() noexcept nogil:
    """Do the backward's whole-sequence products run on our kernel (not through the BLAS)?"""
    return own and bgemm_ok()

def _select(size_t address, bint own_kernel=False) -> None:
    """Dispatch to the sgemm at `address` (0: back to scipy's); own_kernel: the backward's
    products on our kernel where the CPU allows it."""
    global selected, own
    selected = <sgemm_t>address if address else <sgemm_t>scipy_sgemm
    own = own_kernel

def _own() -> bool:
    """Is our kernel selected for the backward's products (whatever the CPU)?"""
    return own

def _kernel_available() -> bool:
    """Does this CPU run our kernel for the backward's products (AVX-512 or AVX2+FMA)?"""
    return bgemm_ok()

def _own_products() -> bool:
    """Do the backward's products run on our kernel on this CPU (tests)?"""
    return own_products()

def _scipy_address() -> int:
    return <size_t>scipy_sgemm

def _current_address() -> int:
    return <size_t>selected
