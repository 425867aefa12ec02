# cython: language_level=3
"""The entry points: validate, plan, allocate the workspace, run, free."""
from libc.stdint cimport uint64_t
from libc.stdio cimport snprintf

from bnnslstm._backward cimport backward_workspace_bytes, lstm_backward
from bnnslstm._cache cimport (
    Cache, cache_capacity, cache_check, cache_open, cache_seal, dropout_active,
)
from bnnslstm._checked cimport add_ovf
from bnnslstm._dropout cimport set_seed
from bnnslstm._forward cimport forward_workspace_bytes, lstm_forward
from bnnslstm._frozen cimport frozen_capacity, frozen_open, frozen_pack
from bnnslstm._memory cimport release_block, ws_alloc, ws_free
from bnnslstm._plan cimport (
    GradPlan, LSTMPlan, clear_error, last_error, plan_backward, plan_forward, set_error,
)
from bnnslstm._worker cimport helper_release

cdef size_t capacity_entry(const BNNSLayerParametersLSTM *layer_params) noexcept nogil:
    cdef LSTMPlan plan
    clear_error()
    if plan_forward(layer_params, NULL, &plan):
        return 0
    return cache_capacity(&plan)

cdef int run_forward(LSTMPlan *plan, Cache *cache) noexcept nogil:
    """The forward over a validated plan, in a workspace of its own (cache NULL: inference)."""
    cdef size_t nbytes
    cdef void *ws
    cdef int rc
    if forward_workspace_bytes(plan, &nbytes):
        return -1
    ws = ws_alloc(&plan.filter, nbytes)
    if ws == NULL:
        return set_error(b"could not allocate the forward workspace")
    rc = lstm_forward(plan, ws, cache)
    ws_free(&plan.filter, ws)
    return rc

cdef int forward_entry(const BNNSLayerParametersLSTM *layer_params,
                       const BNNSFilterParameters *filter_params,
                       void *training_cache_ptr, size_t training_cache_capacity) noexcept nogil:
    cdef LSTMPlan plan
    cdef Cache cache
    cdef int rc
    clear_error()
    if plan_forward(layer_params, filter_params, &plan):
        return -1
    if training_cache_ptr != NULL and cache_open(&plan, training_cache_ptr,
                                                 training_cache_capacity, &cache):
        return -1
    rc = run_forward(&plan, &cache if training_cache_ptr != NULL else NULL)
    if rc == 0 and training_cache_ptr != NULL:
        cache_seal(&plan, &cache)
    return rc

cdef size_t packed_capacity_entry(const BNNSLayerParametersLSTM *layer_params) noexcept nogil:
    cdef LSTMPlan plan
    clear_error()
    if plan_forward(layer_params, NULL, &plan):
        return 0
    return frozen_capacity(&plan)

cdef int pack_entry(const BNNSLayerParametersLSTM *layer_params,
                    const BNNSFilterParameters *filter_params, void *packed,
                    size_t capacity) noexcept nogil:
    cdef LSTMPlan plan
    clear_error()
    if plan_forward(layer_params, filter_params, &plan):
        return -1
    return frozen_pack(&plan, packed, capacity)

cdef int packed_forward_entry(const BNNSLayerParametersLSTM *layer_params,
                              const BNNSFilterParameters *filter_params, const void *packed,
                              size_t capacity) noexcept nogil:
    cdef LSTMPlan plan
    clear_error()
    if plan_forward(layer_params, filter_params, &plan) \
            or frozen_open(&plan, packed, capacity):
        return -1
    return run_forward(&plan, NULL)

cdef int backward_entry(const BNNSLayerParametersLSTM *layer_params,
                        const BNNSLayerParametersLSTM *layer_delta_params,
                        const BNNSFilterParameters *filter_params,
                        const void *training_cache_ptr,
                        size_t training_cache_capacity) noexcept nogil:
    cdef LSTMPlan plan, replay
    cdef GradPlan grad
    cdef Cache cache
    cdef size_t fwd_bytes, bwd_bytes, own_cache = 0, nbytes
    cdef char *ws
    cdef int rc = 0
    clear_error()
    if plan_backward(layer_params, layer_delta_params, filter_params, &plan, &grad):
        return -1
    if training_cache_ptr != NULL:
        if cache_open(&plan, <void *>training_cache_ptr, training_cache_capacity, &cache) \
                or cache_check(&plan, &cache):
            return -1
    elif dropout_active(&plan):
        return set_error(b"training_cache_ptr is NULL but dropout is active: the backward pass "
                         b"needs the forward call's dropout masks, kept in its training cache")
    else:
        own_cache = cache_capacity(&plan)     # D12: replay the forward into scratch memory
        if own_cache == 0:
            return -1
    if backward_workspace_bytes(&plan, &bwd_bytes) \
            or forward_workspace_bytes(&plan, &fwd_bytes):
        return -1
    if add_ovf(own_cache, max(bwd_bytes, fwd_bytes if own_cache else 0), &nbytes):
        return set_error(b"workspace size overflows size_t")
    ws = <char *>ws_alloc(&plan.filter, nbytes)
    if ws == NULL:
        return set_error(b"could not allocate the backward workspace")
    if own_cache:
        replay = plan                          # D12: never write the caller's forward outputs
        replay.y.data = NULL
        replay.hn.data = NULL
        replay.cn.data = NULL
        cache_open(&replay, ws, own_cache, &cache)
        rc = lstm_forward(&replay, ws + own_cache, &cache)
    if rc == 0:
        rc = lstm_backward(&plan, &grad, &cache, ws + own_cache)
    ws_free(&plan.filter, ws)
    return rc

cdef const char *entry_last_error() noexcept nogil:
    return last_error()

cdef void entry_set_dropout_seed(uint64_t seed) noexcept nogil:
    set_seed(seed)

cdef void entry_release_workspace() noexcept nogil:
    release_block()
    helper_release()

cdef int entry_check_abi(int version, size_t params_size, size_t desc_size, int own_version,
                         size_t own_params_size, size_t own_desc_size) noexcept nogil:
    cdef char msg[300]
    clear_error()
    if version == own_version and params_size == own_params_size and desc_size == own_desc_size:
        return 0
    snprintf(msg, sizeof(msg), "this module was compiled against bnnslstm ABI %d "
             "(BNNSLayerParametersLSTM %zu bytes, BNNSNDArrayDescriptor %zu bytes), but the "
             "installed bnnslstm has ABI %d (%zu, %zu bytes): rebuild the module against it",
             version, params_size, desc_size, own_version, own_params_size, own_desc_size)
    return set_error(msg)
