"""Frozen weights (bnnslstm_pack_weights + bnnslstm_direct_apply_lstm_batch_packed, and
LSTM.freeze): the same results as packing per call, bit for bit, and clear errors that write
nothing."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import reference as ref
from problems import build, random_problem

import bnnslstm as bl

RTOL, ATOL = 1e-4, 2e-5


def packed_run(built, packed, filter_params=None) -> tuple:
    bl.direct_apply_lstm_batch_packed(built.params, packed, filter_params)
    return built.outputs()


CASES = [   # (I, H, N, L, S, bidir, peephole, lengths, strided, stacked)
    (3, 4, 2, 1, 5, False, None, None, False, False),
    (5, 16, 3, 2, 4, True, None, None, True, False),
    (6, 7, 2, 3, 3, True, "full", None, False, True),
    (4, 9, 3, 2, 6, False, "diag", [6, 2, 4], True, True),
    (8, 24, 1, 1, 1, False, None, None, False, True),         # streaming: one step per call
    (10, 32, 20, 1, 5, True, None, [5, 5, 1] + [3] * 17, False, True),   # rows split (2 threads)
    (7, 130, 2, 2, 3, True, None, None, False, False),       # helper thread (H >= 128)
    (9, 130, 3, 2, 1, False, None, None, False, True),       # helper thread, one step
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("threads", [1, 2])
def test_packed_matches_per_call_and_reference(rng, case, threads):
    I, H, N, L, S, bidir, peep, lengths, strided, stacked = case
    p = random_problem(rng, I=I, H=H, N=N, L=L, S=S, bidir=bidir, peephole=peep,
                       lengths=lengths)
    fp = bl.FilterParameters(n_threads=threads)
    per_call = build(p, strided=strided, stacked=stacked)
    bl.direct_apply_lstm_batch_training_caching(per_call.params, fp)
    frozen = build(p, strided=strided, stacked=stacked)
    packed = bl.pack_weights(frozen.params, fp)
    assert packed.size == bl.packed_weights_capacity(frozen.params)
    for got, want, name in zip(packed_run(frozen, packed, fp), per_call.outputs(),
                               ("y", "h_n", "c_n"), strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)     # the same panels, same sums
    for got, want, name in zip(frozen.outputs(), ref.forward(p), ("y", "h_n", "c_n"),
                               strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)


def test_packed_weights_serve_any_batch_and_length(rng):
    p = random_problem(rng, I=5, H=8, N=2, L=2, S=3, bidir=True)
    packed = bl.pack_weights(build(p).params)
    for N, S in [(1, 1), (4, 7), (2, 3)]:
        q = random_problem(rng, I=5, H=8, N=N, L=2, S=S, bidir=True)
        q.wx0, q.wx1, q.wh, q.b = p.wx0, p.wx1, p.wh, p.b
        q.x = rng.uniform(-1, 1, size=(S, N, 5)).astype(np.float32)
        q.h0 = q.c0 = None
        built = build(q)
        for got, want in zip(packed_run(built, packed), ref.forward(q), strict=True):
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_packed_weights_are_a_snapshot(rng):
    # The call reads W_x and W_h from the packed copy (documented): changing the caller's
    # weights afterwards changes nothing until they are packed again.
    p = random_problem(rng, I=4, H=6, N=2, S=4)
    built = build(p)
    packed = bl.pack_weights(built.params)
    before = [a.copy() for a in packed_run(built, packed)]
    w_h = np.ctypeslib.as_array((ctypes.c_float * 36).from_address(
        built.params.input_gate.hw_desc.data))         # the caller's W_h of the input gate
    w_h += 1.0
    for got, want in zip(packed_run(built, packed), before, strict=True):
        np.testing.assert_array_equal(got, want)
    changed = [a.copy() for a in packed_run(built, bl.pack_weights(built.params))]
    assert not np.array_equal(changed[0], before[0])


def _outputs_untouched(built) -> None:
    for a in built.outputs():
        assert np.all(a == 7.0), "a failed call wrote an output buffer"


@pytest.mark.parametrize("what", ["hidden_size", "input_size", "num_layers", "direction"])
def test_packed_for_other_sizes_is_refused(rng, what):
    kw = dict(I=4, H=6, N=2, L=2, S=3, bidir=False)
    other = dict(kw, **{"hidden_size": {"H": 5}, "input_size": {"I": 3},
                        "num_layers": {"L": 1}, "direction": {"bidir": True}}[what])
    packed = bl.pack_weights(build(random_problem(rng, **other)).params)
    built = build(random_problem(rng, **kw))
    with pytest.raises(bl.BNNSError, match="packed weights are for"):
        bl.direct_apply_lstm_batch_packed(built.params, packed)
    _outputs_untouched(built)


def test_bad_packed_buffers_are_refused(rng):
    built = build(random_problem(rng, I=4, H=6, N=2, S=3))
    packed = bl.pack_weights(built.params)
    cases = [
        (packed[:-1], "below the"),                                   # too small
        (np.zeros_like(packed), "not made by bnnslstm_pack_weights"),  # never packed
        (np.empty(0, np.uint8), "NULL"),
    ]
    # Packed by a build whose panels had another layout (the header's version, bytes 4-7).
    older = packed.copy()
    older[4:8] = np.frombuffer(np.uint32(1).tobytes(), np.uint8)
    cases.append((older, "layout of version 1 .* pack them again"))
    # The same bytes at an address 4 bytes further on: the panels would be misaligned.
    shifted = np.empty(packed.size + 64, np.uint8)
    offset = (packed.ctypes.data + 4 - shifted.ctypes.data) % 64
    shifted[offset:offset + packed.size] = packed
    cases.append((shifted[offset:offset + packed.size], "another alignment"))
    for buf, message in cases:
        with pytest.raises(bl.BNNSError, match=message):
            bl.direct_apply_lstm_batch_packed(built.params, buf)
        _outputs_untouched(built)


def test_pack_into_a_small_buffer_writes_nothing(rng):
    built = build(random_problem(rng, I=4, H=6, N=2, S=3))
    need = bl.packed_weights_capacity(built.params)
    buf = np.full(need - 1, 0xAB, np.uint8)
    assert bl.bnns._pack(bl._api._address(built.params, bl.LayerParametersLSTM, "params"), 0,
                         buf.ctypes.data, buf.size) == -1
    assert "below the" in bl.bnns._last_error()
    assert np.all(buf == 0xAB)


def test_pack_validates_the_parameters(rng):
    built = build(random_problem(rng, I=4, H=6, N=2, S=3))
    built.params.hidden_size = 0
    with pytest.raises(bl.BNNSError, match="hidden_size is 0"):
        bl.pack_weights(built.params)
    with pytest.raises(bl.BNNSError, match="hidden_size is 0"):
        bl.packed_weights_capacity(built.params)


# -- the layer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True),
                                dict(peephole="diagonal", batch_first=True)])
def test_frozen_layer_matches_unfrozen(rng, kw):
    m = bl.LSTM(6, 10, seed=3, **kw)
    x = rng.standard_normal((2, 5, 6) if kw.get("batch_first") else (5, 2, 6)).astype(
        np.float32)
    want = m.forward(x, lengths=[5, 3])
    m.freeze()
    assert m.frozen
    got = m.forward(x, lengths=[5, 3])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1][0], want[1][0])
    np.testing.assert_array_equal(got[1][1], want[1][1])
    y, _ = m.forward(x[:1])                   # another length: the same packed weights
    np.testing.assert_array_equal(y, m.forward(x[:1], training=True)[0])


def test_frozen_layer_weights_are_read_only_until_unfrozen(rng):
    m = bl.LSTM(4, 6, seed=0)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    m.freeze()
    with pytest.raises(ValueError, match="read-only"):
        m.params["w_h_input_l0"][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        m.params["b_output_l0"] += 1.0
    m.unfreeze()
    assert not m.frozen
    before, _ = m.forward(x)
    m.params["w_h_input_l0"] *= 2.0           # writable again, and the change is seen
    after, _ = m.forward(x)
    assert not np.array_equal(before, after)
    m.freeze()                                # packs the changed weights
    np.testing.assert_array_equal(m.forward(x)[0], after)


def test_frozen_layer_still_trains(rng):
    m = bl.LSTM(4, 6, seed=0)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    dy = rng.standard_normal((3, 2, 6)).astype(np.float32)
    m.forward(x, training=True)
    want = m.backward(dy)
    m.freeze()
    m.forward(x, training=True)
    for got, w in zip(m.backward(dy), want, strict=True):
        np.testing.assert_array_equal(got, w)
