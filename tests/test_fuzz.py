"""Property-based fuzzing of validation (hypothesis).

Each case mutates a valid, randomly shaped problem's structs with a random list of mutations of
two kinds, whose outcome the spec fixes:

* invalidating (zero scalars, unknown flags, bad dropout, wrong data types or layouts,
  mismatching sizes, decreasing strides, NULL required data, non-elementwise activations, bad
  sequence batch sizes): the call must return -1 with a message and write nothing;
* meaning-preserving (zero sizes, zero strides where they equal the contiguous fill, layout 0
  for the natural layout, data_type 0, ignored fields, activations under the defaults flag,
  random bytes in fields the LSTM ignores): the call must succeed with the unmutated result.

Outputs live in NaN-padded strided buffers, so a write outside the described elements (or a
read of the padding) shows up. Inputs are never described larger than their buffers, so no
mutation can make a correct kernel touch memory it does not own.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
import reference as ref
from problems import build, random_problem

import bnnslstm as bl
from bnnslstm import bnns

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
DL, DT = bl.DataLayout, bl.DataType
CASES = {"rejected": 0, "accepted": 0}

# descriptor paths: (path, required, kind) — kind "seq", "state", "weight" or "vector"
def descriptor_paths(p) -> list[tuple[str, bool, str]]:
    out = [("input_descriptor.data_desc", True, "seq"),
           ("output_descriptor.data_desc", False, "seq"),
           ("input_descriptor.hidden_desc", False, "state"),
           ("output_descriptor.cell_state_desc", False, "state")]
    for g in ("input_gate", "forget_gate", "candidate_gate", "output_gate"):
        out += [(f"{g}.iw_desc[0]", True, "weight"), (f"{g}.hw_desc", True, "weight"),
                (f"{g}.b_desc", False, "vector")]
    return out


def get(params, path):
    obj = params
    for part in path.split("."):
        name, _, idx = part.partition("[")
        obj = getattr(obj, name)
        if idx:
            obj = obj[int(idx[:-1])]
    return obj


def rank_of(d) -> int:
    return 3 if d.layout in (0, DL.SNE, DL.NSE) and d.size[3] == 0 else \
        max(k + 1 for k in range(8) if d.size[k] or k == 0)


INVALIDATING = ["scalar_zero", "flags", "dropout", "data_type", "layout", "size", "stride",
                "null", "activation", "sequence"]
PRESERVING = ["size_zero", "stride_zero", "data_type_zero", "ignored_fields", "ignored_bytes",
              "activation_under_default"]

IGNORED_OFFSETS = [148, 149, 150, 151, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170,
                   171, 172, 173, 174, 175]   # padding, table_data_type, data_scale, data_bias


def mutate(built, kind: str, draw) -> bool:
    """Apply one mutation of the given kind (draw = a hypothesis draw function); True if it
    makes the call invalid (False for preserving ones and for no-ops)."""
    P, p = built.params, built.problem
    paths = descriptor_paths(p)
    path, required, dkind = draw(st.sampled_from(paths))
    d = get(P, path)
    if kind == "scalar_zero":
        setattr(P, draw(st.sampled_from(["input_size", "hidden_size", "batch_size",
                                         "num_layers", "seq_len"])), 0)
    elif kind == "flags":
        P.lstm_flags |= draw(st.integers(2, 31)) << 2
    elif kind == "dropout":
        P.dropout = draw(st.sampled_from([-0.5, 1.0, 1.5, float("nan"), float("inf")]))
    elif kind == "data_type":
        d.data_type = draw(st.sampled_from([DT.Float16, DT.BFloat16, DT.Int8, DT.Int32,
                                            DT.UInt8, 0x12345]))
    elif kind == "layout":
        bad = {"seq": [DL.ImageCHW, DL.ThreeDLastMajor, DL.Vector, DL.RowMajorMatrix],
               "state": [DL.ColumnMajorMatrix, DL.FiveDLastMajor, DL.SNE, DL.TwoDFirstMajor],
               "weight": [DL.ColumnMajorMatrix, DL.Vector, DL.SNE, DL.FourDFirstMajor],
               "vector": [DL.ColumnMajorMatrix, DL.SNE, DL.FiveDLastMajor]}[dkind]
        d.layout = draw(st.sampled_from(bad + [0x7FFF0000]))
    elif kind == "size":           # a nonzero size that cannot be the implied one
        k = draw(st.integers(0, rank_of(d) - 1))
        d.size[k] = draw(st.sampled_from([d.size[k] + 1, d.size[k] + 7, 1 << 40])) \
            if d.size[k] else 1 << 40
    elif kind == "stride":         # decreasing strides
        r = rank_of(d)
        if r < 2:
            return False
        k = draw(st.integers(1, r - 1))
        d.stride[k - 1], d.stride[k] = max(d.stride[k - 1], 2), 1
    elif kind == "null":
        req = [q for q in paths if q[1]]
        get(P, draw(st.sampled_from(req))[0]).data = None
    elif kind == "activation":
        P.lstm_flags &= ~bl.LayerFlags.LSTMDefaultActivations
        bad = draw(st.sampled_from([9, 10, 11, 13, 14, 21, 29, 36, 1000]))
        if draw(st.booleans()):
            P.hidden_activation.function = bad
        else:
            P.gates[draw(st.integers(0, 3))].activation.function = bad
    elif kind == "sequence":
        if p.S == 1:               # spec 3.4: ignored when seq_len is 1
            return False
        vals = np.array(draw(st.lists(st.integers(0, p.N + 2), min_size=p.S, max_size=p.S)),
                        np.uint32)
        bad_index = draw(st.integers(0, p.S - 1))
        if bad_index > 0:
            vals[bad_index] = vals[bad_index - 1] + 1      # increasing
        else:
            vals[0] = p.N + 1                              # larger than the batch
        P.sequence_descriptor = bl.NDArrayDescriptor(data=vals, layout=DL.Vector)
    elif kind == "size_zero":
        d.size[draw(st.integers(0, 7))] = 0
    elif kind == "stride_zero":
        # a stride equal to the contiguous fill may be given as 0
        r = rank_of(d)
        for k in range(r):
            fill = 1 if k == 0 else (d.stride[k - 1] or 0) * (d.size[k - 1] or 0)
            if d.stride[k] == fill and fill:
                d.stride[k] = 0
                break
    elif kind == "data_type_zero":
        if d.data_type == DT.Float32:
            d.data_type = 0
    elif kind == "ignored_fields":
        d.flags = draw(st.integers(0, 2**32 - 1))      # forward descriptors ignore flags
        d.data_scale, d.data_bias = draw(st.floats(-9, 9)), draw(st.floats(-9, 9))
        d.table_data_type = draw(st.integers(0, 2**32 - 1))
    elif kind == "ignored_bytes":
        raw = (ctypes.c_char * ctypes.sizeof(d)).from_address(ctypes.addressof(d))
        raw[draw(st.sampled_from(IGNORED_OFFSETS))] = bytes([draw(st.integers(0, 255))])
    elif kind == "activation_under_default":
        if P.lstm_flags & bl.LayerFlags.LSTMDefaultActivations:
            P.gates[draw(st.integers(0, 3))].activation.function = draw(st.integers(0, 2**32 - 1))
            P.hidden_activation.alpha = draw(st.floats(allow_nan=True))
    return kind in INVALIDATING


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    L, bidir = draw(st.integers(1, 3)), draw(st.booleans())
    N, S = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    hypothesis.assume(N != S)            # SNE and NSE of equal sizes would be ambiguous
    layouts = dict(x_layout=draw(st.sampled_from(["SNE", "NSE", 0])),
                   strided=draw(st.booleans()), state_layout=draw(st.sampled_from([0, "4D"])))
    kinds = draw(st.lists(st.sampled_from(INVALIDATING + PRESERVING), min_size=1, max_size=4))
    return seed, L, bidir, N, S, layouts, kinds


# BNNSLSTM_FUZZ_EXAMPLES=20000 for a long campaign; CI runs the default.
@hypothesis.settings(max_examples=int(os.environ.get("BNNSLSTM_FUZZ_EXAMPLES", 1500)),
                     deadline=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(case=cases(), data=st.data())
def test_mutated_structs(case, data):
    seed, L, bidir, N, S, layouts, kinds = case
    rng = np.random.default_rng(seed)
    p = random_problem(rng, I=3, H=4, N=N, L=L, S=S, bidir=bidir,
                       lengths=list(rng.integers(1, S + 1, N)) if S > 1 else None)
    built = build(p, **layouts)
    gaps = [np.isnan(a.base).copy() if a.base is not None else None
            for a in (built.y, built.hn, built.cn)]
    invalid = False
    # preserving mutations first: applied after, they could undo an invalidating one
    for kind in sorted(kinds, key=lambda k: k in INVALIDATING):
        invalid = mutate(built, kind, data.draw) or invalid
    rc = bnns._forward(ctypes.addressof(built.params), 0, 0, 0)
    if rc != 0:
        CASES["rejected"] += 1
        assert bnns._last_error(), "-1 without a message"
        for out in (built.y, built.hn, built.cn):
            assert np.all(out == 7.0), "a rejected call wrote an output"
    else:
        CASES["accepted"] += 1
        assert not invalid, f"accepted after {kinds}"
        y, hn, cn = built.outputs()
        ry, rhn, rcn = ref.forward(p)
        for got, want in ((y, ry), (hn, rhn), (cn, rcn)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
        for out, gap in zip((built.y, built.hn, built.cn), gaps, strict=True):
            if gap is not None:          # the NaN padding between described elements
                assert np.isnan(out.base[gap]).all(), "a write outside the described elements"
    if invalid:
        assert rc == -1, f"{kinds} should be rejected"


def test_zz_fuzz_report():
    # How many cases ran (printed with pytest -s; also asserted not to be trivially few).
    total = CASES["rejected"] + CASES["accepted"]
    print(f"fuzz cases: {total} ({CASES['rejected']} rejected, {CASES['accepted']} accepted)")
    if total:      # both kinds of outcome are exercised, whatever the case count
        assert CASES["rejected"] >= total // 4 and CASES["accepted"] >= max(1, total // 50)
