# cython: language_level=3, boundscheck=False, wraparound=False
"""The BNNS entry points under Apple's names; Cython users cimport them from bnns.pxd."""
from bnnslstm._entry cimport entry_last_error, forward_entry

cdef int BNNSDirectApplyLSTMBatchTrainingCaching(
        const BNNSLayerParametersLSTM *layer_params,
        const BNNSFilterParameters *filter_params,
        void *training_cache_ptr,
        const size_t training_cache_capacity) noexcept nogil:
    return forward_entry(layer_params, filter_params, training_cache_ptr,
                         training_cache_capacity)

cdef const char *bnnslstm_last_error() noexcept nogil:
    return entry_last_error()

cdef int bnnslstm_abi_version() noexcept nogil:
    return BNNSLSTM_ABI_VERSION

# --- Python access (bnnslstm._api wraps these with the struct mirrors) ------------------------

def _forward(size_t layer_params, size_t filter_params, size_t cache, size_t capacity) -> int:
    """Call the forward entry point on raw addresses, without the GIL."""
    cdef int rc
    with nogil:
        rc = BNNSDirectApplyLSTMBatchTrainingCaching(
            <const BNNSLayerParametersLSTM *>layer_params,
            <const BNNSFilterParameters *>filter_params, <void *>cache, capacity)
    return rc

def _last_error() -> str:
    return bnnslstm_last_error().decode("utf-8", "replace")

ABI_VERSION = BNNSLSTM_ABI_VERSION
