"""bnnslstm: Apple Accelerate's BNNS LSTM, portable, byte-compatible and fast.

Three ways in: ``cimport bnnslstm.bnns`` from Cython (Apple's structs and functions), the struct
mirrors and functions below from Python, and the ``LSTM`` layer.
"""

from bnnslstm._api import (
    BNNSError,
    compute_lstm_training_cache_capacity,
    direct_apply_lstm_batch_backward,
    direct_apply_lstm_batch_packed,
    direct_apply_lstm_batch_training_caching,
    pack_weights,
    packed_weights_capacity,
    set_dropout_seed,
)
from bnnslstm._backends import available_blas, blas, current_blas, set_blas
from bnnslstm._enums import (
    ActivationFunction,
    DataLayout,
    DataType,
    Flags,
    LayerFlags,
    NDArrayFlags,
)
from bnnslstm._layer import LSTM
from bnnslstm._mirror import (
    Activation,
    FilterParameters,
    LayerParametersLSTM,
    LSTMDataDescriptor,
    LSTMGateDescriptor,
    NDArrayDescriptor,
)
from bnnslstm.bnns import ABI_VERSION

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION", "LSTM", "Activation", "ActivationFunction", "BNNSError", "DataLayout",
    "DataType", "FilterParameters", "Flags", "LSTMDataDescriptor", "LSTMGateDescriptor",
    "LayerFlags", "LayerParametersLSTM", "NDArrayDescriptor", "NDArrayFlags",
    "compute_lstm_training_cache_capacity", "direct_apply_lstm_batch_backward",
    "direct_apply_lstm_batch_training_caching", "set_dropout_seed",
    "direct_apply_lstm_batch_packed", "pack_weights", "packed_weights_capacity",
    "available_blas", "blas", "current_blas", "set_blas",
]
