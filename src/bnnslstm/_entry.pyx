# cython: language_level=3
"""The entry points: validate, plan, allocate the workspace, run, free."""
from bnnslstm._forward cimport forward_workspace_bytes, lstm_forward
from bnnslstm._memory cimport ws_alloc, ws_free
from bnnslstm._plan cimport LSTMPlan, clear_error, last_error, plan_forward, set_error

cdef int forward_entry(const BNNSLayerParametersLSTM *layer_params,
                       const BNNSFilterParameters *filter_params,
                       void *training_cache_ptr, size_t training_cache_capacity) noexcept nogil:
    cdef LSTMPlan plan
    cdef size_t nbytes
    cdef void *ws
    cdef int rc
    clear_error()
    if plan_forward(layer_params, filter_params, &plan):
        return -1
    if training_cache_ptr != NULL:
        return set_error(b"training_cache_ptr: the training cache is not supported yet "
                         b"(pass NULL for inference)")
    if forward_workspace_bytes(&plan, &nbytes):
        return -1
    ws = ws_alloc(&plan.filter, nbytes)
    if ws == NULL:
        return set_error(b"could not allocate the forward workspace")
    rc = lstm_forward(&plan, ws)
    ws_free(&plan.filter, ws)
    return rc

cdef const char *entry_last_error() noexcept nogil:
    return last_error()
