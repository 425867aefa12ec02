# cython: language_level=3
"""The BNNS LSTM ABI, byte for byte (spec sections 1 and 2).

``from bnnslstm.bnns cimport *`` gives Cython code Apple's structs, typedefs, constants and
functions under Apple's names. Field order, types and therefore offsets match Apple's
``bnns_structures.h`` on LP64 (tests/test_layout.py checks every offset).
"""
from libc.stdint cimport int32_t, uint32_t, uint64_t

# --- 1.1 enum typedefs: every BNNS enum is stored as uint32_t -----------------------------
ctypedef uint32_t BNNSDataType
ctypedef uint32_t BNNSDataLayout
ctypedef uint32_t BNNSNDArrayFlags
ctypedef uint32_t BNNSActivationFunction
ctypedef uint32_t BNNSFlags
ctypedef uint32_t BNNSLayerFlags

# --- 1.2 allocator callbacks --------------------------------------------------------------
ctypedef int (*BNNSAlloc)(void **memptr, size_t alignment, size_t size) noexcept nogil
ctypedef void (*BNNSFree)(void *ptr) noexcept nogil

# --- 1.3 ----------------------------------------------------------------------------------
cdef enum:
    BNNS_MAX_TENSOR_DIMENSION = 8

# --- 2.1 BNNSDataType ---------------------------------------------------------------------
cdef enum:
    BNNSDataTypeFloatBit = 0x10000
    BNNSDataTypeFloat16 = 0x10010
    BNNSDataTypeFloat32 = 0x10020
    BNNSDataTypeBFloat16 = 0x18010
    BNNSDataTypeIntBit = 0x20000
    BNNSDataTypeInt1 = 0x20001
    BNNSDataTypeInt2 = 0x20002
    BNNSDataTypeInt4 = 0x20004
    BNNSDataTypeInt8 = 0x20008
    BNNSDataTypeInt16 = 0x20010
    BNNSDataTypeInt32 = 0x20020
    BNNSDataTypeInt64 = 0x20040
    BNNSDataTypeUIntBit = 0x40000
    BNNSDataTypeUInt1 = 0x40001
    BNNSDataTypeUInt2 = 0x40002
    BNNSDataTypeUInt3 = 0x40003
    BNNSDataTypeUInt4 = 0x40004
    BNNSDataTypeUInt6 = 0x40006
    BNNSDataTypeUInt8 = 0x40008
    BNNSDataTypeUInt16 = 0x40010
    BNNSDataTypeUInt32 = 0x40020
    BNNSDataTypeUInt64 = 0x40040
    BNNSDataTypeIndexedBit = 0x80000
    BNNSDataTypeIndexed1 = 0x80001
    BNNSDataTypeIndexed2 = 0x80002
    BNNSDataTypeIndexed4 = 0x80004
    BNNSDataTypeIndexed8 = 0x80008
    BNNSDataTypeMiscellaneousBit = 0x100000
    BNNSDataTypeBoolean = 0x100008

# --- 2.2 BNNSDataLayout -------------------------------------------------------------------
cdef enum:
    BNNSDataLayoutVector = 0x10000
    BNNSDataLayout1DLastMajor = 0x18000
    BNNSDataLayout1DFirstMajor = 0x18001
    BNNSDataLayoutRowMajorMatrix = 0x20000
    BNNSDataLayoutColumnMajorMatrix = 0x20001
    BNNSDataLayoutFullyConnectedSparse = 0x21001
    BNNSDataLayout2DLastMajor = 0x28000
    BNNSDataLayout2DFirstMajor = 0x28001
    BNNSDataLayoutImageCHW = 0x30000
    BNNSDataLayoutSNE = 0x30001
    BNNSDataLayoutNSE = 0x30002
    BNNSDataLayoutMHA_DHK = 0x30003
    BNNSDataLayout3DLastMajor = 0x38000
    BNNSDataLayout3DFirstMajor = 0x38001
    BNNSDataLayoutConvolutionWeightsOIHW = 0x40000
    BNNSDataLayoutConvolutionWeightsOIHrWr = 0x40001
    BNNSDataLayoutConvolutionWeightsIOHrWr = 0x40002
    BNNSDataLayoutConvolutionWeightsOIHW_Pack32 = 0x40010
    BNNSDataLayout4DLastMajor = 0x48000
    BNNSDataLayout4DFirstMajor = 0x48001
    BNNSDataLayout5DLastMajor = 0x58000
    BNNSDataLayout5DFirstMajor = 0x58001
    BNNSDataLayout6DLastMajor = 0x68000
    BNNSDataLayout6DFirstMajor = 0x68001
    BNNSDataLayout7DLastMajor = 0x78000
    BNNSDataLayout7DFirstMajor = 0x78001
    BNNSDataLayout8DLastMajor = 0x88000
    BNNSDataLayout8DFirstMajor = 0x88001

# --- 2.3 BNNSActivationFunction -----------------------------------------------------------
cdef enum:
    BNNSActivationFunctionIdentity = 0
    BNNSActivationFunctionRectifiedLinear = 1
    BNNSActivationFunctionLeakyRectifiedLinear = 2
    BNNSActivationFunctionSigmoid = 3
    BNNSActivationFunctionTanh = 4
    BNNSActivationFunctionScaledTanh = 5
    BNNSActivationFunctionAbs = 6
    BNNSActivationFunctionLinear = 7
    BNNSActivationFunctionClamp = 8
    BNNSActivationFunctionIntegerLinearSaturate = 9
    BNNSActivationFunctionIntegerLinearSaturatePerChannel = 10
    BNNSActivationFunctionSoftmax = 11
    BNNSActivationFunctionGELUApproximation = 12
    BNNSActivationFunctionGumbel = 13
    BNNSActivationFunctionGumbelMax = 14
    BNNSActivationFunctionHardSigmoid = 15
    BNNSActivationFunctionSoftplus = 16
    BNNSActivationFunctionSoftsign = 17
    BNNSActivationFunctionELU = 18
    BNNSActivationFunctionClampedLeakyRectifiedLinear = 19
    BNNSActivationFunctionLinearWithBias = 20
    BNNSActivationFunctionLogSoftmax = 21
    BNNSActivationFunctionLogSigmoid = 22
    BNNSActivationFunctionSELU = 23
    BNNSActivationFunctionCELU = 24
    BNNSActivationFunctionHardShrink = 25
    BNNSActivationFunctionSoftShrink = 26
    BNNSActivationFunctionTanhShrink = 27
    BNNSActivationFunctionThreshold = 28
    BNNSActivationFunctionPReLUPerChannel = 29
    BNNSActivationFunctionGELUApproximation2 = 30
    BNNSActivationFunctionHardSwish = 30
    BNNSActivationFunctionSiLU = 31
    BNNSActivationFunctionReLU6 = 32
    BNNSActivationFunctionErf = 33
    BNNSActivationFunctionGELU = 34
    BNNSActivationFunctionGELUApproximationSigmoid = 35

# --- 2.4 to 2.6 flags ---------------------------------------------------------------------
cdef enum:
    BNNSNDArrayFlagBackpropSet = 0
    BNNSNDArrayFlagBackpropAccumulate = 1
    BNNSFlagsUseClientPtr = 0x0001
    BNNSLayerFlagsLSTMBidirectional = 0x0001
    BNNSLayerFlagsLSTMDefaultActivations = 0x0002

# --- 1.4 to 1.9 structs (field order is the ABI: do not reorder) --------------------------
ctypedef struct BNNSActivation:
    BNNSActivationFunction function
    float alpha
    float beta
    int32_t iscale
    int32_t ioffset
    int32_t ishift
    const int32_t *iscale_per_channel
    const int32_t *ioffset_per_channel
    const int32_t *ishift_per_channel

ctypedef struct BNNSNDArrayDescriptor:
    BNNSNDArrayFlags flags
    BNNSDataLayout layout
    size_t size[8]      # BNNS_MAX_TENSOR_DIMENSION
    size_t stride[8]    # in elements; 0 = contiguous
    void *data
    BNNSDataType data_type
    void *table_data
    BNNSDataType table_data_type
    float data_scale
    float data_bias

ctypedef struct BNNSLSTMGateDescriptor:
    BNNSNDArrayDescriptor iw_desc[2]
    BNNSNDArrayDescriptor hw_desc
    BNNSNDArrayDescriptor cw_desc
    BNNSNDArrayDescriptor b_desc
    BNNSActivation activation

ctypedef struct BNNSLSTMDataDescriptor:
    BNNSNDArrayDescriptor data_desc
    BNNSNDArrayDescriptor hidden_desc
    BNNSNDArrayDescriptor cell_state_desc

ctypedef struct BNNSLayerParametersLSTM:
    size_t input_size
    size_t hidden_size
    size_t batch_size
    size_t num_layers
    size_t seq_len
    float dropout
    uint32_t lstm_flags
    BNNSNDArrayDescriptor sequence_descriptor
    BNNSLSTMDataDescriptor input_descriptor
    BNNSLSTMDataDescriptor output_descriptor
    BNNSLSTMGateDescriptor input_gate
    BNNSLSTMGateDescriptor forget_gate
    BNNSLSTMGateDescriptor candidate_gate
    BNNSLSTMGateDescriptor output_gate
    BNNSActivation hidden_activation

ctypedef struct BNNSFilterParameters:
    uint32_t flags
    size_t n_threads
    BNNSAlloc alloc_memory
    BNNSFree free_memory

# --- 4.1 to 4.3 the entry points (Apple's exact C signatures) -----------------------------
cdef size_t BNNSComputeLSTMTrainingCacheCapacity(
    const BNNSLayerParametersLSTM *layer_params) noexcept nogil

cdef int BNNSDirectApplyLSTMBatchTrainingCaching(
    const BNNSLayerParametersLSTM *layer_params,
    const BNNSFilterParameters *filter_params,
    void *training_cache_ptr,
    const size_t training_cache_capacity) noexcept nogil

cdef int BNNSDirectApplyLSTMBatchBackward(
    const BNNSLayerParametersLSTM *layer_params,
    const BNNSLayerParametersLSTM *layer_delta_params,
    const BNNSFilterParameters *filter_params,
    const void *training_cache_ptr,
    const size_t training_cache_capacity) noexcept nogil

# --- bnnslstm extensions ------------------------------------------------------------------
cdef enum:
    # Bumped whenever a struct above or a function signature changes.
    BNNSLSTM_ABI_VERSION = 1

cdef const char *bnnslstm_last_error() noexcept nogil
cdef int bnnslstm_abi_version() noexcept nogil
# 0 if a module compiled with these values can use this library, else -1 (message set).
cdef int bnnslstm_check_abi(int abi_version, size_t sizeof_layer_params,
                            size_t sizeof_ndarray_descriptor) noexcept nogil

# ABI safety for cimporting modules: call this once at module level,
#     bnnslstm_require_abi()
# and a module compiled against another struct layout fails at import with ImportError instead
# of computing garbage (the values below are those of the module's own compilation).
cdef inline int bnnslstm_require_abi() except -1:
    if bnnslstm_check_abi(BNNSLSTM_ABI_VERSION, sizeof(BNNSLayerParametersLSTM),
                          sizeof(BNNSNDArrayDescriptor)) != 0:
        raise ImportError(bnnslstm_last_error().decode())
    return 0
# Dropout (D6): seeds this thread's mask generator; the masks of the training calls that follow
# on this thread are then reproducible.
cdef void bnnslstm_set_dropout_seed(uint64_t seed) noexcept nogil
# Frozen weights (opt in, inference): W_x and W_h of every layer and direction packed once
# into caller memory (64-byte aligned inside it, as the training cache), for forward calls of
# any batch size and sequence length that then skip packing. Such a call reads W_x and W_h
# from the packed copy, never from the descriptors: weights changed after packing need a new
# bnnslstm_pack_weights. The capacity is 0 (message set) when the parameters are invalid.
cdef size_t bnnslstm_packed_weights_capacity(
    const BNNSLayerParametersLSTM *layer_params) noexcept nogil
cdef int bnnslstm_pack_weights(
    const BNNSLayerParametersLSTM *layer_params,
    const BNNSFilterParameters *filter_params,
    void *packed_weights,
    const size_t packed_weights_capacity) noexcept nogil
# BNNSDirectApplyLSTMBatchTrainingCaching without a training cache, on packed weights.
cdef int bnnslstm_direct_apply_lstm_batch_packed(
    const BNNSLayerParametersLSTM *layer_params,
    const BNNSFilterParameters *filter_params,
    const void *packed_weights,
    const size_t packed_weights_capacity) noexcept nogil
# Without allocator callbacks each thread keeps its largest workspace for its next call, and
# each thread that made a call with n_threads != 1 keeps its helper thread; this frees the
# calling thread's workspace and stops its helper now (both also go when the thread exits).
cdef void bnnslstm_release_workspace() noexcept nogil
