# cython: language_level=3
# The entry points' bodies. bnns.pyx forwards to these; it cannot cimport _plan itself, since
# _plan's structs embed bnns types and Cython would then declare them out of order.
from libc.stdint cimport uint64_t

from bnnslstm.bnns cimport BNNSFilterParameters, BNNSLayerParametersLSTM

cdef size_t capacity_entry(const BNNSLayerParametersLSTM *layer_params) noexcept nogil
cdef int forward_entry(const BNNSLayerParametersLSTM *layer_params,
                       const BNNSFilterParameters *filter_params,
                       void *training_cache_ptr, size_t training_cache_capacity) noexcept nogil
cdef size_t packed_capacity_entry(const BNNSLayerParametersLSTM *layer_params) noexcept nogil
cdef int pack_entry(const BNNSLayerParametersLSTM *layer_params,
                    const BNNSFilterParameters *filter_params, void *packed,
                    size_t capacity) noexcept nogil
cdef int packed_forward_entry(const BNNSLayerParametersLSTM *layer_params,
                              const BNNSFilterParameters *filter_params, const void *packed,
                              size_t capacity) noexcept nogil
cdef int backward_entry(const BNNSLayerParametersLSTM *layer_params,
                        const BNNSLayerParametersLSTM *layer_delta_params,
                        const BNNSFilterParameters *filter_params,
                        const void *training_cache_ptr,
                        size_t training_cache_capacity) noexcept nogil
cdef const char *entry_last_error() noexcept nogil
cdef void entry_set_dropout_seed(uint64_t seed) noexcept nogil
cdef void entry_release_workspace() noexcept nogil
cdef int entry_check_abi(int version, size_t params_size, size_t desc_size, int own_version,
                         size_t own_params_size, size_t own_desc_size) noexcept nogil
