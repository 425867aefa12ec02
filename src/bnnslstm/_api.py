"""The BNNS functions for Python: struct mirrors in, ``BNNSError`` instead of -1."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from bnnslstm import bnns
from bnnslstm._mirror import FilterParameters, LayerParametersLSTM


class BNNSError(ValueError):
    """A BNNS call returned -1; the message says which descriptor/field and why."""


def _address(obj: Any, kind: type, name: str) -> int:
    if obj is None:
        return 0
    if not isinstance(obj, kind):
        raise TypeError(f"{name} must be a bnnslstm.{kind.__name__}, not {type(obj).__name__}")
    return ctypes.addressof(obj)


def _buffer(obj: Any, name: str, writable: bool = True) -> tuple[int, int]:
    """(address, capacity) of a buffer such as a numpy array or bytearray; (0, 0) for None."""
    if obj is None:
        return 0, 0
    arr = np.frombuffer(obj, dtype=np.uint8)
    if writable and not arr.flags.writeable:
        raise TypeError(f"{name} must be a writable buffer")
    return (arr.ctypes.data if arr.size else 0), arr.size


def direct_apply_lstm_batch_training_caching(
    params: LayerParametersLSTM,
    filter_params: FilterParameters | None = None,
    training_cache: Any = None,
) -> None:
    """``BNNSDirectApplyLSTMBatchTrainingCaching``: the forward pass, GIL released.

    Writes y, h_n and c_n into the buffers of ``params.output_descriptor``.
    """
    addr = _address(params, LayerParametersLSTM, "params")
    faddr = _address(filter_params, FilterParameters, "filter_params")
    cache, capacity = _buffer(training_cache, "training_cache")
    if bnns._forward(addr, faddr, cache, capacity) != 0:
        raise BNNSError(bnns._last_error())


def compute_lstm_training_cache_capacity(params: LayerParametersLSTM) -> int:
    """``BNNSComputeLSTMTrainingCacheCapacity``: bytes of training cache these parameters need."""
    capacity = bnns._capacity(_address(params, LayerParametersLSTM, "params"))
    if capacity == 0:
        raise BNNSError(bnns._last_error())
    return capacity


def direct_apply_lstm_batch_backward(
    params: LayerParametersLSTM,
    delta_params: LayerParametersLSTM,
    filter_params: FilterParameters | None = None,
    training_cache: Any = None,
) -> None:
    """``BNNSDirectApplyLSTMBatchBackward``: gradients into ``delta_params``' buffers.

    ``delta_params.output_descriptor`` carries dL/dy, dL/dh_n, dL/dc_n (NULL data = 0); its
    ``input_descriptor`` and gate descriptors receive dL/dx, dL/dh0, dL/dc0 and the weight,
    peephole and bias gradients (NULL data = not computed). Without ``training_cache`` the
    forward pass is replayed internally.
    """
    addr = _address(params, LayerParametersLSTM, "params")
    daddr = _address(delta_params, LayerParametersLSTM, "delta_params")
    faddr = _address(filter_params, FilterParameters, "filter_params")
    cache, capacity = _buffer(training_cache, "training_cache")
    if bnns._backward(addr, daddr, faddr, cache, capacity) != 0:
        raise BNNSError(bnns._last_error())


def packed_weights_capacity(params: LayerParametersLSTM) -> int:
    """``bnnslstm_packed_weights_capacity``: bytes that ``pack_weights`` fills."""
    capacity = bnns._packed_capacity(_address(params, LayerParametersLSTM, "params"))
    if capacity == 0:
        raise BNNSError(bnns._last_error())
    return capacity


def pack_weights(params: LayerParametersLSTM,
                 filter_params: FilterParameters | None = None) -> np.ndarray:
    """``bnnslstm_pack_weights``: W_x and W_h of every layer and direction, packed once for
    ``direct_apply_lstm_batch_packed`` (a copy: later changes to the weights are not seen).

    The panels fit calls of any batch size and sequence length with the same input size,
    hidden size, layers and directions.
    """
    addr = _address(params, LayerParametersLSTM, "params")
    faddr = _address(filter_params, FilterParameters, "filter_params")
    packed = np.empty(packed_weights_capacity(params), np.uint8)
    if bnns._pack(addr, faddr, packed.ctypes.data, packed.size) != 0:
        raise BNNSError(bnns._last_error())
    return packed


def direct_apply_lstm_batch_packed(
    params: LayerParametersLSTM,
    packed: Any,
    filter_params: FilterParameters | None = None,
) -> None:
    """``bnnslstm_direct_apply_lstm_batch_packed``: the inference forward with W_x and W_h
    from ``pack_weights``' buffer instead of the descriptors (which are still validated);
    biases and peepholes come from the descriptors. GIL released."""
    addr = _address(params, LayerParametersLSTM, "params")
    faddr = _address(filter_params, FilterParameters, "filter_params")
    buf, capacity = _buffer(packed, "packed", writable=False)
    if bnns._forward_packed(addr, faddr, buf, capacity) != 0:
        raise BNNSError(bnns._last_error())


def set_dropout_seed(seed: int) -> None:
    """Seed this thread's dropout generator (``bnnslstm_set_dropout_seed``)."""
    bnns._set_dropout_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)
