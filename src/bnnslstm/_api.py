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


def _cache_buffer(cache: Any) -> tuple[int, int]:
    """(address, capacity) of a writable buffer such as a numpy array or bytearray."""
    if cache is None:
        return 0, 0
    arr = np.frombuffer(cache, dtype=np.uint8)
    if not arr.flags.writeable:
        raise TypeError("training_cache must be a writable buffer")
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
    cache, capacity = _cache_buffer(training_cache)
    if bnns._forward(addr, faddr, cache, capacity) != 0:
        raise BNNSError(bnns._last_error())
