"""Python mirrors of the BNNS structs (spec section 1), as ctypes structures.

Keyword arguments are the Swift initializer labels; omitted fields are zero/nil like Swift's
``init()``. ``bytes(obj)`` gives the raw struct bytes. An ``NDArrayDescriptor`` built from a
numpy array keeps the array alive, and the reference travels with the bytes when the descriptor
is copied into an enclosing struct (ctypes keeps it in the target's ``_objects``).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

from bnnslstm._enums import DataType

MAX_DIM = 8  # BNNS_MAX_TENSOR_DIMENSION

BNNSAlloc = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                             ctypes.c_size_t)
BNNSFree = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

_DTYPES = {
    np.dtype(np.float32): DataType.Float32, np.dtype(np.float16): DataType.Float16,
    np.dtype(np.int8): DataType.Int8, np.dtype(np.int16): DataType.Int16,
    np.dtype(np.int32): DataType.Int32, np.dtype(np.int64): DataType.Int64,
    np.dtype(np.uint8): DataType.UInt8, np.dtype(np.uint16): DataType.UInt16,
    np.dtype(np.uint32): DataType.UInt32, np.dtype(np.uint64): DataType.UInt64,
    np.dtype(np.bool_): DataType.Boolean,
}


class _Struct(ctypes.Structure):
    """Keyword construction that also accepts tuples/lists for fixed-size array fields."""

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        for name, value in fields.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        ftype = _array_fields(type(self)).get(name)
        if ftype is not None and isinstance(value, (list, tuple)):
            value = ftype(*value)
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={_show(getattr(self, n))}" for n, _ in self._fields_)
        return f"{type(self).__name__}({body})"


@functools.cache
def _array_fields(cls: type) -> dict[str, type]:
    """The fixed-size array fields of a struct class (looked up on every field assignment)."""
    return {name: t for name, t, *_ in cls._fields_ if issubclass(t, ctypes.Array)}


def _show(v: Any) -> str:
    if isinstance(v, ctypes.Array):
        return repr(list(v)) if not isinstance(v[0], ctypes.Structure) else f"({len(v)} structs)"
    if isinstance(v, ctypes.Structure):
        return f"{type(v).__name__}(...)"
    return repr(v)


class Activation(_Struct):
    """``BNNSActivation`` (48 bytes)."""

    _fields_ = [
        ("function", ctypes.c_uint32), ("alpha", ctypes.c_float), ("beta", ctypes.c_float),
        ("iscale", ctypes.c_int32), ("ioffset", ctypes.c_int32), ("ishift", ctypes.c_int32),
        ("iscale_per_channel", ctypes.c_void_p), ("ioffset_per_channel", ctypes.c_void_p),
        ("ishift_per_channel", ctypes.c_void_p),
    ]


def _layout_rank(layout: int) -> int | None:
    return None if layout == 0 else int(layout) >> 16


def _array_geometry(a: np.ndarray, layout: int) -> tuple[list[int], list[int]]:
    """BNNS sizes/strides (fastest dimension first, in elements) of a numpy array.

    For a layout of lower rank than the array, the outer dimensions fold into the last one
    (as the kernel reads them); this needs them to be uniformly strided.
    """
    if any(s < 0 or s % a.itemsize for s in a.strides):
        raise ValueError("NDArrayDescriptor needs non-negative strides that are multiples of "
                         "the item size")
    shape = list(reversed(a.shape)) or [1]
    strides = [s // a.itemsize for s in reversed(a.strides)] or [1]
    rank = _layout_rank(layout)
    if rank is not None and rank < len(shape):
        inner, outer = shape[: rank - 1], shape[rank - 1:]
        folded = int(np.prod(outer))
        step = strides[rank - 1]
        expect = step
        for n, s in zip(outer, strides[rank - 1:], strict=True):
            if n > 1 and s != expect:
                raise ValueError(f"array dimensions {outer} cannot fold into one dimension of a "
                                 f"rank-{rank} layout: they are not uniformly strided")
            expect *= n
        shape, strides = inner + [folded], strides[: rank - 1] + [step]
    if len(shape) > MAX_DIM:
        raise ValueError(f"array has {len(shape)} dimensions, BNNS allows {MAX_DIM}")
    # A dimension of extent 1 has no meaningful stride; 0 asks for the contiguous fill.
    strides = [0 if n == 1 else s for n, s in zip(shape, strides, strict=True)]
    return shape, strides


class NDArrayDescriptor(_Struct):
    """``BNNSNDArrayDescriptor`` (176 bytes).

    ``data`` may be a numpy array: unless given, ``size``, ``stride`` and ``data_type`` are
    then taken from it (sizes fastest dimension first, strides in elements), and the array is
    kept alive by this descriptor and by every struct it is copied into.
    """

    _fields_ = [
        ("flags", ctypes.c_uint32), ("layout", ctypes.c_uint32),
        ("size", ctypes.c_size_t * MAX_DIM), ("stride", ctypes.c_size_t * MAX_DIM),
        ("data", ctypes.c_void_p), ("data_type", ctypes.c_uint32),
        ("table_data", ctypes.c_void_p), ("table_data_type", ctypes.c_uint32),
        ("data_scale", ctypes.c_float), ("data_bias", ctypes.c_float),
    ]

    def __init__(self, **fields: Any) -> None:
        data = fields.pop("data", None)
        super().__init__(**fields)
        if isinstance(data, np.ndarray):
            self._attach(data, set_size="size" not in fields, set_stride="stride" not in fields,
                         set_type="data_type" not in fields)
        elif data is not None:
            self.data = data

    def _attach(self, a: np.ndarray, set_size: bool, set_stride: bool, set_type: bool) -> None:
        if not a.flags.writeable:
            raise ValueError("NDArrayDescriptor needs a writable array (BNNS data is void *); "
                             "pass np.array(a) for a read-only one")
        size, stride = _array_geometry(a, self.layout)
        if set_size:
            self.size = size
        if set_stride:
            self.stride = stride
        if set_type:
            self.data_type = _DTYPES.get(a.dtype, 0)
        if a.nbytes == 0:
            self.data = a.ctypes.data
            return
        # A ctypes view of the memory block holding the array; a pointer cast from it keeps the
        # view (and so the array) alive, and moving the pointer to the array's first element
        # does not drop that reference.
        owner = a if a.flags.c_contiguous else _owner(a)
        view = (ctypes.c_char * owner.nbytes).from_buffer(owner)
        ptr = ctypes.cast(view, ctypes.c_void_p)
        # cast() also files `view` in the keep-alive dict it shares with `view`: a reference
        # cycle, which left each call's arrays to the cyclic gc (and every call's outputs on
        # fresh pages). The memoryview in that dict is what keeps the array alive.
        del ptr._objects[id(view)]
        ptr.value = a.ctypes.data
        self.data = ptr


def _owner(a: np.ndarray) -> np.ndarray:
    """The C-contiguous array whose memory a strided view lives in."""
    base = a
    while isinstance(base.base, np.ndarray):
        base = base.base
    if not base.flags.c_contiguous:
        raise ValueError("NDArrayDescriptor: a strided array must be a view of a C-contiguous "
                         "array")
    return base


class LSTMGateDescriptor(_Struct):
    """``BNNSLSTMGateDescriptor`` (928 bytes); ``iw_desc`` is a 2-tuple, as in Swift."""

    _fields_ = [
        ("iw_desc", NDArrayDescriptor * 2), ("hw_desc", NDArrayDescriptor),
        ("cw_desc", NDArrayDescriptor), ("b_desc", NDArrayDescriptor),
        ("activation", Activation),
    ]


class LSTMDataDescriptor(_Struct):
    """``BNNSLSTMDataDescriptor`` (528 bytes)."""

    _fields_ = [
        ("data_desc", NDArrayDescriptor), ("hidden_desc", NDArrayDescriptor),
        ("cell_state_desc", NDArrayDescriptor),
    ]


class LayerParametersLSTM(_Struct):
    """``BNNSLayerParametersLSTM`` (5040 bytes)."""

    _fields_ = [
        ("input_size", ctypes.c_size_t), ("hidden_size", ctypes.c_size_t),
        ("batch_size", ctypes.c_size_t), ("num_layers", ctypes.c_size_t),
        ("seq_len", ctypes.c_size_t), ("dropout", ctypes.c_float),
        ("lstm_flags", ctypes.c_uint32), ("sequence_descriptor", NDArrayDescriptor),
        ("input_descriptor", LSTMDataDescriptor), ("output_descriptor", LSTMDataDescriptor),
        ("input_gate", LSTMGateDescriptor), ("forget_gate", LSTMGateDescriptor),
        ("candidate_gate", LSTMGateDescriptor), ("output_gate", LSTMGateDescriptor),
        ("hidden_activation", Activation),
    ]

    @property
    def gates(self) -> tuple[LSTMGateDescriptor, ...]:
        """The four gates in struct order (input, forget, candidate, output)."""
        return (self.input_gate, self.forget_gate, self.candidate_gate, self.output_gate)


class FilterParameters(_Struct):
    """``BNNSFilterParameters`` (32 bytes). The allocator fields take a ``BNNSAlloc``/``BNNSFree``
    ctypes function or a Python callable, which is wrapped (and kept alive) for you."""

    _fields_ = [
        ("flags", ctypes.c_uint32), ("n_threads", ctypes.c_size_t),
        ("alloc_memory", BNNSAlloc), ("free_memory", BNNSFree),
    ]

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "alloc_memory" and value is not None and not isinstance(value, BNNSAlloc):
            value = BNNSAlloc(value)
        elif name == "free_memory" and value is not None and not isinstance(value, BNNSFree):
            value = BNNSFree(value)
        super().__setattr__(name, value)

