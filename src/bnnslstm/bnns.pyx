# cython: language_level=3, boundscheck=False, wraparound=False
"""The BNNS entry points under Apple's names; Cython users cimport them from bnns.pxd."""
from bnnslstm._entry cimport (
    backward_entry, capacity_entry, entry_check_abi, entry_last_error, entry_release_workspace,
    entry_set_dropout_seed, forward_entry, pack_entry, packed_capacity_entry,
    packed_forward_entry,
)

cdef size_t BNNSComputeLSTMTrainingCacheCapacity(
        const BNNSLayerParametersLSTM *layer_params) noexcept nogil:
    return capacity_entry(layer_params)

cdef int BNNSDirectApplyLSTMBatchTrainingCaching(
        const BNNSLayerParametersLSTM *layer_params,
        const BNNSFilterParameters *filter_params,
        void *training_cache_ptr,
        const size_t training_cache_capacity) noexcept nogil:
    return forward_entry(layer_params, filter_params, training_cache_ptr,
                         training_cache_capacity)

cdef int BNNSDirectApplyLSTMBatchBackward(
        const BNNSLayerParametersLSTM *layer_params,
        const BNNSLayerParametersLSTM *layer_delta_params,
        const BNNSFilterParameters *filter_params,
        const void *training_cache_ptr,
        const size_t training_cache_capacity) noexcept nogil:
    return backward_entry(layer_params, layer_delta_params, filter_params, training_cache_ptr,
                          training_cache_capacity)

cdef size_t bnnslstm_packed_weights_capacity(
        const BNNSLayerParametersLSTM *layer_params) noexcept nogil:
    return packed_capacity_entry(layer_params)

cdef int bnnslstm_pack_weights(
        const BNNSLayerParametersLSTM *layer_params,
        const BNNSFilterParameters *filter_params,
        void *packed_weights,
        const size_t packed_weights_capacity) noexcept nogil:
    return pack_entry(layer_params, filter_params, packed_weights, packed_weights_capacity)

cdef int bnnslstm_direct_apply_lstm_batch_packed(
        const BNNSLayerParametersLSTM *layer_params,
        const BNNSFilterParameters *filter_params,
        const void *packed_weights,
        const size_t packed_weights_capacity) noexcept nogil:
    return packed_forward_entry(layer_params, filter_params, packed_weights,
                                packed_weights_capacity)

cdef void bnnslstm_set_dropout_seed(uint64_t seed) noexcept nogil:
    entry_set_dropout_seed(seed)

cdef void bnnslstm_release_workspace() noexcept nogil:
    entry_release_workspace()

cdef const char *bnnslstm_last_error() noexcept nogil:
    return entry_last_error()

cdef int bnnslstm_abi_version() noexcept nogil:
    return BNNSLSTM_ABI_VERSION

cdef int bnnslstm_check_abi(int abi_version, size_t sizeof_layer_params,
                            size_t sizeof_ndarray_descriptor) noexcept nogil:
    return entry_check_abi(abi_version, sizeof_layer_params, sizeof_ndarray_descriptor,
                           BNNSLSTM_ABI_VERSION, sizeof(BNNSLayerParametersLSTM),
                           sizeof(BNNSNDArrayDescriptor))

# --- Python access (bnnslstm._api wraps these with the struct mirrors) ------------------------

def _forward(size_t layer_params, size_t filter_params, size_t cache, size_t capacity) -> int:
    """Call the forward entry point on raw addresses, without the GIL."""
    cdef int rc
    with nogil:
        rc = BNNSDirectApplyLSTMBatchTrainingCaching(
            <const BNNSLayerParametersLSTM *>layer_params,
            <const BNNSFilterParameters *>filter_params, <void *>cache, capacity)
    return rc

def _capacity(size_t layer_params) -> int:
    return BNNSComputeLSTMTrainingCacheCapacity(<const BNNSLayerParametersLSTM *>layer_params)

def _backward(size_t layer_params, size_t delta_params, size_t filter_params, size_t cache,
              size_t capacity) -> int:
    """Call the backward entry point on raw addresses, without the GIL."""
    cdef int rc
    with nogil:
        rc = BNNSDirectApplyLSTMBatchBackward(
            <const BNNSLayerParametersLSTM *>layer_params,
            <const BNNSLayerParametersLSTM *>delta_params,
            <const BNNSFilterParameters *>filter_params, <const void *>cache, capacity)
    return rc

def _packed_capacity(size_t layer_params) -> int:
    return bnnslstm_packed_weights_capacity(<const BNNSLayerParametersLSTM *>layer_params)

def _pack(size_t layer_params, size_t filter_params, size_t packed, size_t capacity) -> int:
    cdef int rc
    with nogil:
        rc = bnnslstm_pack_weights(<const BNNSLayerParametersLSTM *>layer_params,
                                   <const BNNSFilterParameters *>filter_params,
                                   <void *>packed, capacity)
    return rc

def _forward_packed(size_t layer_params, size_t filter_params, size_t packed,
                    size_t capacity) -> int:
    """Call the packed-weights forward on raw addresses, without the GIL."""
    cdef int rc
    with nogil:
        rc = bnnslstm_direct_apply_lstm_batch_packed(
            <const BNNSLayerParametersLSTM *>layer_params,
            <const BNNSFilterParameters *>filter_params, <const void *>packed, capacity)
    return rc

def _set_dropout_seed(unsigned long long seed) -> None:
    bnnslstm_set_dropout_seed(seed)

def _release_workspace() -> None:
    bnnslstm_release_workspace()

def _last_error() -> str:
    return bnnslstm_last_error().decode("utf-8", "replace")

ABI_VERSION = BNNSLSTM_ABI_VERSION
