"""Every validation rule (spec section 6, D9, D15, D19, D20): -1 at the C level with a message
naming the field, BNNSError in Python, and no output buffer written."""

from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest
from problems import build, random_problem

import bnnslstm as bl
from bnnslstm import bnns

DL, DT, AF = bl.DataLayout, bl.DataType, bl.ActivationFunction
BIG = 1 << 62


def fresh(rng, **kw):
    opts = dict(I=3, H=4, N=3, L=2, S=4, bidir=True, peephole="full", lengths=[4, 3, 1])
    opts.update(kw)
    return build(random_problem(rng, **opts))


def expect_error(built, pattern: str, filter_params=None) -> str:
    faddr = ctypes.addressof(filter_params) if filter_params is not None else 0
    assert bnns._forward(ctypes.addressof(built.params), faddr, 0, 0) == -1
    message = bnns._last_error()
    assert re.search(pattern, message), message
    with pytest.raises(bl.BNNSError, match=pattern):
        bl.direct_apply_lstm_batch_training_caching(built.params, filter_params)
    for out in (built.y, built.hn, built.cn):
        assert np.all(out == 7.0), "an output buffer was written"
    return message


def set_attr(path: str, value):
    """A mutation that sets a dotted attribute path (with [k] indices) on the params."""
    def mutate(p):
        *head, last = re.split(r"\.", path)
        obj = p
        for part in head:
            name, _, idx = part.partition("[")
            obj = getattr(obj, name)
            if idx:
                obj = obj[int(idx[:-1])]
        name, _, idx = last.partition("[")
        if idx:
            getattr(obj, name)[int(idx[:-1])] = value
        else:
            setattr(obj, name, value)
    return mutate


X = "input_descriptor.data_desc"
Y = "output_descriptor.data_desc"
H0 = "input_descriptor.hidden_desc"
CN = "output_descriptor.cell_state_desc"

CASES = {
    # zero scalars (the scalars are authoritative)
    "input_size=0": (set_attr("input_size", 0), r"^input_size is 0"),
    "hidden_size=0": (set_attr("hidden_size", 0), r"^hidden_size is 0"),
    "batch_size=0": (set_attr("batch_size", 0), r"^batch_size is 0"),
    "num_layers=0": (set_attr("num_layers", 0), r"^num_layers is 0"),
    "seq_len=0": (set_attr("seq_len", 0), r"^seq_len is 0"),
    # flags and dropout (D15, D6)
    "flags 0x4": (set_attr("lstm_flags", 0x6), r"lstm_flags 0x6 has unknown bits"),
    "flags high bit": (set_attr("lstm_flags", 0x80000003), r"lstm_flags 0x80000003"),
    "dropout<0": (set_attr("dropout", -0.1), r"dropout is -0.1"),
    "dropout=1": (set_attr("dropout", 1.0), r"dropout is 1"),
    "dropout nan": (set_attr("dropout", float("nan")), r"dropout is nan"),
    # inconsistent sizes
    "x size[0]": (set_attr(X + ".size[0]", 4), X + r"\.size\[0\] is 4, expected 3"),
    "x size[2]": (set_attr(X + ".size[2]", 9), X + r"\.size\[2\] is 9, expected 4"),
    "y size[0]": (set_attr(Y + ".size[0]", 4), Y + r"\.size\[0\] is 4, expected 8"),
    "h0 size[1]": (set_attr(H0 + ".size[1]", 2), H0 + r"\.size\[1\] is 2, expected 3"),
    "cN size[3]": (set_attr(CN + ".size[3]", 1), CN + r"\.size\[3\] is 1, expected 2"),
    "iw[0] size": (set_attr("input_gate.iw_desc[0].size[0]", 5),
                   r"input_gate\.iw_desc\[0\]\.size\[0\] is 5, expected 3"),
    "iw[1] size": (set_attr("forget_gate.iw_desc[1].size[0]", 4),
                   r"forget_gate\.iw_desc\[1\]\.size\[0\] is 4, expected 8"),
    "hw size": (set_attr("candidate_gate.hw_desc.size[1]", 3),
                r"candidate_gate\.hw_desc\.size\[1\] is 3, expected 4"),
    "cw size": (set_attr("output_gate.cw_desc.size[2]", 1),
                r"output_gate\.cw_desc\.size\[2\] is 1, expected 2"),
    "b size": (set_attr("input_gate.b_desc.size[0]", 5),
               r"input_gate\.b_desc\.size\[0\] is 5, expected 4"),
    # data types (D9)
    "x float16": (set_attr(X + ".data_type", DT.Float16), X + r"\.data_type is 0x10010"),
    "y int8": (set_attr(Y + ".data_type", DT.Int8), Y + r"\.data_type is 0x20008"),
    "h0 float16": (set_attr(H0 + ".data_type", DT.Float16), H0 + r"\.data_type"),
    "cN bfloat16": (set_attr(CN + ".data_type", DT.BFloat16), CN + r"\.data_type"),
    "hw int32": (set_attr("forget_gate.hw_desc.data_type", DT.Int32),
                 r"forget_gate\.hw_desc\.data_type is 0x20020"),
    "cw float16": (set_attr("candidate_gate.cw_desc.data_type", DT.Float16),
                   r"candidate_gate\.cw_desc\.data_type"),
    "b uint8": (set_attr("output_gate.b_desc.data_type", DT.UInt8), r"output_gate\.b_desc"),
    # layouts
    "x ImageCHW": (set_attr(X + ".layout", DL.ImageCHW), X + r"\.layout 0x30000"),
    "y 3DLastMajor": (set_attr(Y + ".layout", DL.ThreeDLastMajor), Y + r"\.layout 0x38000"),
    "iw ColumnMajor": (set_attr("input_gate.iw_desc[0].layout", DL.ColumnMajorMatrix),
                       r"input_gate\.iw_desc\[0\]\.layout 0x20001"),
    "hw 2DFirstMajor": (set_attr("input_gate.hw_desc.layout", DL.TwoDFirstMajor),
                        r"input_gate\.hw_desc\.layout 0x28001"),
    "hw Vector": (set_attr("input_gate.hw_desc.layout", DL.Vector),
                  r"input_gate\.hw_desc\.layout 0x10000"),
    "h0 5D": (set_attr(H0 + ".layout", DL.FiveDLastMajor), H0 + r"\.layout 0x58000"),
    # required pointers
    "x NULL": (set_attr(X + ".data", None), X + r"\.data is NULL"),
    "iw[0] NULL": (set_attr("output_gate.iw_desc[0].data", None),
                   r"output_gate\.iw_desc\[0\]\.data is NULL"),
    "hw NULL": (set_attr("forget_gate.hw_desc.data", None), r"forget_gate\.hw_desc\.data is NULL"),
    # strides
    "x strides decrease": (set_attr(X + ".stride[2]", 2),
                           X + r"\.stride\[2\] is 2.*must not decrease"),
    "x overlap": (set_attr(X + ".stride[1]", 2),
                  X + r"\.stride\[1\] is 2 .*too small for its strides"),
    "hw overlap": (set_attr("input_gate.hw_desc.stride[1]", 3),
                   r"input_gate\.hw_desc\.stride\[1\] is 3 .*too small"),
    "cN decrease": (set_attr(CN + ".stride[3]", 1), CN + r"\.stride\[3\] is 1.*must not decrease"),
    # sequence descriptor (D5)
    "seq increasing": (set_attr("sequence_descriptor.data", None), None),  # replaced below
    # overflow
    "x stride overflow": (set_attr(X + ".stride[2]", BIG), X + r": (byte )?extent overflows"),
    "hw stride overflow": (set_attr("input_gate.hw_desc.stride[3]", BIG),
                           r"input_gate\.hw_desc: (byte )?extent overflows"),
    "stride past address space": (set_attr(X + ".stride[2]", 1 << 55),
                                  X + r": byte extent overflows the address space"),
    "x bytes past address space": (
        lambda p: (setattr(p, "input_size", 1 << 30), setattr(p, "seq_len", 1 << 15),
                   setattr(p, "batch_size", 1 << 15),
                   setattr(p.input_descriptor.data_desc, "size", [0] * 8),
                   setattr(p.input_descriptor.data_desc, "stride", [0] * 8)),
        X + r": byte extent overflows the address space"),
    "huge input_size": (set_attr("input_size", BIG), r"fit in a 32-bit BLAS int"),
    "huge seq*batch": (lambda p: (setattr(p, "seq_len", 1 << 20),
                                  setattr(p, "batch_size", 1 << 12)), r"seq_len\*batch_size"),
    "huge hidden": (set_attr("hidden_size", 1 << 30), r"4\*hidden_size"),
}
del CASES["seq increasing"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule(rng, case):
    mutate, pattern = CASES[case]
    built = fresh(rng)
    mutate(built.params)
    expect_error(built, pattern)


def test_layer_params_null():
    assert bnns._forward(0, 0, 0, 0) == -1
    assert bnns._last_error() == "layer_params is NULL"


def test_iw1_required_when_widths_differ(rng):
    # D1: layers >= 1 read D*H = 8 wide inputs; with iw_desc[1] absent, input_size 3 != 8.
    built = fresh(rng)
    built.params.input_gate.iw_desc[1] = built.params.input_gate.iw_desc[0]
    expect_error(built, r"input_gate\.iw_desc\[1\]\.data is NULL or equal to iw_desc\[0\]")


@pytest.mark.parametrize("fn", [9, 10, 11, 13, 14, 21, 29, 36, 1000])
@pytest.mark.parametrize("slot", ["input_gate", "forget_gate", "candidate_gate", "output_gate",
                                  "hidden_activation"])
def test_non_elementwise_activation(rng, fn, slot):
    built = fresh(rng, acts=[(3, 0, 0), (3, 0, 0), (4, 0, 0), (3, 0, 0)])
    act = built.params.hidden_activation if slot == "hidden_activation" else \
        getattr(built.params, slot).activation
    act.function = fn
    expect_error(built, rf"{slot}(\.activation)?\.function {fn} is not an elementwise")


@pytest.mark.parametrize("values,dtype,pattern", [
    ([3, 3, 2, 3], np.uint32, r"sequence_descriptor\[3\] is 3, larger than the step before"),
    ([4, 1, 1, 1], np.uint32, r"sequence_descriptor\[0\] is 4, larger than batch_size 3"),
    ([3, 2, -1, 0], np.int32, r"sequence_descriptor\[2\] is -1, negative"),
    ([3, 2, 1, -1], np.int64, r"sequence_descriptor\[3\] is -1, negative"),
    ([2**63, 1, 1, 1], np.uint64, r"sequence_descriptor\[0\] is .*larger than batch_size"),
    ([3.0, 2.0, 1.0, 1.0], np.float32, r"sequence_descriptor\.data_type is 0x10020"),
])
def test_sequence_descriptor_rules(rng, values, dtype, pattern):
    built = fresh(rng)
    built.params.sequence_descriptor = bl.NDArrayDescriptor(
        data=np.array(values, dtype=dtype), layout=DL.Vector)
    expect_error(built, pattern)


def test_sequence_descriptor_layout_and_size(rng):
    built = fresh(rng)
    built.params.sequence_descriptor.layout = DL.RowMajorMatrix
    expect_error(built, r"sequence_descriptor\.layout 0x20000")
    built = fresh(rng)
    built.params.sequence_descriptor.size[0] = 5
    expect_error(built, r"sequence_descriptor\.size\[0\] is 5, expected 4")


def test_allocator_must_come_with_free(rng):
    built = fresh(rng)
    fp = bl.FilterParameters(alloc_memory=lambda memptr, a, s: 1)
    expect_error(built, r"alloc_memory and free_memory must be given together", fp)


def test_error_is_cleared_by_success(rng):
    built = fresh(rng)
    built.params.input_size = 0
    assert bnns._forward(ctypes.addressof(built.params), 0, 0, 0) == -1
    good = fresh(rng)
    assert bnns._forward(ctypes.addressof(good.params), 0, 0, 0) == 0
    assert bnns._last_error() == ""


def test_python_type_errors():
    with pytest.raises(TypeError, match="LayerParametersLSTM"):
        bl.direct_apply_lstm_batch_training_caching(object())
