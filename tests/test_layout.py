"""Struct sizes and field offsets against spec section 1, from the compiled Cython structs and
from the Python ctypes mirrors."""

from __future__ import annotations

import ctypes
import gc
import weakref

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm._abi import layout

# Spec tables 1.4 to 1.9 (and the nested paths of 1.8), transcribed.
SPEC = {
    "BNNSActivation": (48, {
        "function": 0, "alpha": 4, "beta": 8, "iscale": 12, "ioffset": 16, "ishift": 20,
        "iscale_per_channel": 24, "ioffset_per_channel": 32, "ishift_per_channel": 40}),
    "BNNSNDArrayDescriptor": (176, {
        "flags": 0, "layout": 4, "size": 8, "stride": 72, "data": 136, "data_type": 144,
        "table_data": 152, "table_data_type": 160, "data_scale": 164, "data_bias": 168}),
    "BNNSLSTMGateDescriptor": (928, {
        "iw_desc": 0, "iw_desc[1]": 176, "hw_desc": 352, "cw_desc": 528, "b_desc": 704,
        "activation": 880}),
    "BNNSLSTMDataDescriptor": (528, {"data_desc": 0, "hidden_desc": 176, "cell_state_desc": 352}),
    "BNNSLayerParametersLSTM": (5040, {
        "input_size": 0, "hidden_size": 8, "batch_size": 16, "num_layers": 24, "seq_len": 32,
        "dropout": 40, "lstm_flags": 44, "sequence_descriptor": 48, "input_descriptor": 224,
        "output_descriptor": 752, "input_gate": 1280, "forget_gate": 2208,
        "candidate_gate": 3136, "output_gate": 4064, "hidden_activation": 4992,
        "sequence_descriptor.data": 184,
        "input_descriptor.data_desc.data": 360, "input_descriptor.hidden_desc.data": 536,
        "input_descriptor.cell_state_desc.data": 712,
        "output_descriptor.data_desc.data": 888, "output_descriptor.hidden_desc.data": 1064,
        "output_descriptor.cell_state_desc.data": 1240,
        "input_gate.iw_desc[0].data": 1416, "input_gate.iw_desc[1].data": 1592,
        "input_gate.hw_desc.data": 1768, "input_gate.cw_desc.data": 1944,
        "input_gate.b_desc.data": 2120, "input_gate.activation.function": 2160,
        "forget_gate.activation.function": 3088, "candidate_gate.activation.function": 4016,
        "output_gate.activation.function": 4944, "hidden_activation.function": 4992}),
    "BNNSFilterParameters": (32, {"flags": 0, "n_threads": 8, "alloc_memory": 16,
                                  "free_memory": 24}),
}

MIRRORS = {
    "BNNSActivation": bl.Activation, "BNNSNDArrayDescriptor": bl.NDArrayDescriptor,
    "BNNSLSTMGateDescriptor": bl.LSTMGateDescriptor,
    "BNNSLSTMDataDescriptor": bl.LSTMDataDescriptor,
    "BNNSLayerParametersLSTM": bl.LayerParametersLSTM, "BNNSFilterParameters": bl.FilterParameters,
}


@pytest.mark.parametrize("struct", sorted(SPEC))
def test_cython_struct_layout(struct):
    size, offsets = layout()[struct]
    assert size == SPEC[struct][0]
    assert offsets == SPEC[struct][1]


def mirror_offset(cls: type, path: str) -> int:
    """Offset of a dotted field path (with [k] for array elements) in a ctypes mirror."""
    total = 0
    for part in path.split("."):
        name, _, idx = part.partition("[")
        field = getattr(cls, name)
        total += field.offset
        ftype = dict(cls._fields_)[name]
        if issubclass(ftype, ctypes.Array):
            total += int(idx[:-1] or 0) * ctypes.sizeof(ftype._type_) if idx else 0
            ftype = ftype._type_
        cls = ftype
    return total


@pytest.mark.parametrize("struct", sorted(SPEC))
def test_python_mirror_layout(struct):
    cls = MIRRORS[struct]
    assert ctypes.sizeof(cls) == SPEC[struct][0]
    assert ctypes.alignment(cls) == 8
    for path, offset in SPEC[struct][1].items():
        assert mirror_offset(cls, path) == offset, path


def test_bytes_round_trip():
    d = bl.NDArrayDescriptor(layout=bl.DataLayout.SNE, size=(3, 2, 5),
                             data_type=bl.DataType.Float32)
    raw = bytes(d)
    assert len(raw) == 176
    assert int.from_bytes(raw[4:8], "little") == 0x30001
    assert [int.from_bytes(raw[8 + 8 * k:16 + 8 * k], "little") for k in range(3)] == [3, 2, 5]
    assert int.from_bytes(raw[144:148], "little") == 0x10020
    assert bytes(bl.NDArrayDescriptor.from_buffer_copy(raw)) == raw


@pytest.mark.parametrize("strided", [False, True])
def test_descriptor_keeps_its_array_alive_without_a_cycle(strided):
    # The descriptor, and a struct it is copied into, keep the array alive; once both are
    # gone the array is freed at once, not left to the cyclic collector (whose delay put
    # every forward's outputs on fresh pages).
    memory = np.arange(24, dtype=np.float32)
    a = memory.reshape(4, 6)[:, 1:4] if strided else memory.reshape(4, 6)
    alive = weakref.ref(memory)
    gc.disable()
    try:
        d = bl.NDArrayDescriptor(data=a, layout=bl.DataLayout.RowMajorMatrix)
        p = bl.LayerParametersLSTM()
        p.input_descriptor.data_desc = d
        first = a[0, 0]
        del a, memory, d
        assert alive() is not None
        assert ctypes.c_float.from_address(p.input_descriptor.data_desc.data).value == first
        del p
        assert alive() is None
    finally:
        gc.enable()


def test_swift_style_defaults_are_zero():
    assert bytes(bl.LayerParametersLSTM()) == bytes(5040)
    assert bytes(bl.Activation()) == bytes(48)
