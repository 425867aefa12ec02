"""The training cache (D10, D11) and dropout (D6)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import reference as ref
from problems import build, build_delta, random_problem
from test_backward import compare, incoming

import bnnslstm as bl
from bnnslstm import bnns
from bnnslstm._cache import _mask_offset


def capacity(built) -> int:
    return bl.compute_lstm_training_cache_capacity(built.params)


def test_capacity_is_exactly_what_is_written_plus_slack(rng):
    # D10: header + pre-activations + cells + layer outputs (+ masks) + 64 bytes of slack;
    # cells and outputs have a step of room on either side for the initial state.
    p = random_problem(rng, I=3, H=4, N=2, L=2, S=3, bidir=True)
    S, N, H, D, L = 3, 2, 4, 2, 2
    up = lambda n: -(-n // 64) * 64  # noqa: E731
    want = 64 + up(L * D * S * N * 4 * H * 4) + up(L * D * (S + 2) * N * H * 4) \
        + up(L * (S + 2) * N * D * H * 4) + 64
    assert capacity(build(p)) == want
    p.dropout = 0.5
    built = build(p)
    built.params.dropout = 0.5
    assert capacity(built) == want + up((L - 1) * S * N * D * H)


def test_unaligned_cache_pointer_works(rng):
    # Apple's article allocates the cache with alignment 1.
    p = random_problem(rng, L=2, bidir=True, peephole="diag")
    built = build(p)
    cap = capacity(built)
    raw = np.zeros(cap + 3, np.uint8)
    cache = raw[3:]
    bl.direct_apply_lstm_batch_training_caching(built.params, None, cache)
    dy, dhn, dcn = incoming(rng, p)
    delta = build_delta(p, dy, dhn, dcn)
    bl.direct_apply_lstm_batch_backward(built.params, delta.params, None, cache)
    compare(delta.read(), ref.backward(p, dy, dhn, dcn))


def test_capacity_below_minimum_is_refused(rng):
    built = build(random_problem(rng))
    cache = np.zeros(capacity(built) - 1, np.uint8)
    with pytest.raises(bl.BNNSError, match="training_cache_capacity is .* below"):
        bl.direct_apply_lstm_batch_training_caching(built.params, None, cache)
    assert np.all(built.y == 7.0)
    delta = build_delta(built.problem, *incoming(rng, built.problem))
    with pytest.raises(bl.BNNSError, match="below"):
        bl.direct_apply_lstm_batch_backward(built.params, delta.params, None, cache)


def test_capacity_of_invalid_parameters_is_zero():
    params = bl.LayerParametersLSTM()
    assert bnns._capacity(ctypes.addressof(params)) == 0
    with pytest.raises(bl.BNNSError, match="input_size is 0"):
        bl.compute_lstm_training_cache_capacity(params)


def test_cache_from_other_parameters_is_refused(rng):
    p = random_problem(rng, N=3, S=4, lengths=[4, 3, 1])
    built = build(p)
    cache = np.zeros(capacity(built) + 4096, np.uint8)
    bl.direct_apply_lstm_batch_training_caching(built.params, None, cache)
    other = build(p)
    other.params.sequence_descriptor = bl.NDArrayDescriptor()     # now all samples run
    delta = build_delta(p, *incoming(rng, p))
    with pytest.raises(bl.BNNSError, match="filled for different parameters"):
        bl.direct_apply_lstm_batch_backward(other.params, delta.params, None, cache)
    assert all(np.all(g == 0) for g in delta.grads["wh"])          # nothing written


def test_unfilled_cache_is_refused(rng):
    built = build(random_problem(rng))
    cache = np.zeros(capacity(built), np.uint8)
    delta = build_delta(built.problem, *incoming(rng, built.problem))
    with pytest.raises(bl.BNNSError, match="not filled by a forward call"):
        bl.direct_apply_lstm_batch_backward(built.params, delta.params, None, cache)


def test_delta_gradient_validation(rng):
    p = random_problem(rng, L=2, bidir=True, separate_wx1=True)
    built = build(p)
    for mutate, pattern in [
        (lambda d: setattr(d.input_gate.hw_desc, "data_type", bl.DataType.Float16),
         r"layer_delta_params\.input_gate\.hw_desc\.data_type"),
        (lambda d: d.forget_gate.iw_desc[1].size.__setitem__(0, 3),
         r"layer_delta_params\.forget_gate\.iw_desc\[1\]\.size\[0\] is 3, expected 8"),
        (lambda d: setattr(d.output_descriptor.data_desc, "layout", bl.DataLayout.ImageCHW),
         r"layer_delta_params\.output_descriptor\.data_desc\.layout"),
        (lambda d: setattr(d.input_descriptor.hidden_desc, "flags", 2),
         r"layer_delta_params\.input_descriptor\.hidden_desc\.flags is 0x2"),
        (lambda d: d.output_gate.iw_desc.__setitem__(1, d.output_gate.iw_desc[0]),
         r"output_gate\.iw_desc\[1\]\.data equals iw_desc\[0\]\.data"),
    ]:
        delta = build_delta(p, *incoming(rng, p), fill=5.0)
        mutate(delta.params)
        assert bnns._backward(ctypes.addressof(built.params), ctypes.addressof(delta.params),
                              0, 0, 0) == -1
        assert "layer_delta_params" in bnns._last_error()
        with pytest.raises(bl.BNNSError, match=pattern):
            bl.direct_apply_lstm_batch_backward(built.params, delta.params)
        assert np.all(delta.grads["x"] == 5.0)
    assert bnns._backward(ctypes.addressof(built.params), 0, 0, 0, 0) == -1
    assert bnns._last_error() == "layer_delta_params is NULL"


# ---------------------------------------------------------------------------------------------
# dropout (D6)

def dropout_problem(rng, p_drop=0.3, **kw):
    opts = dict(I=4, H=8, N=16, L=3, S=20, bidir=True)
    opts.update(kw)
    p = random_problem(rng, **opts)
    p.dropout = p_drop
    built = build(p)
    built.params.dropout = p_drop
    return p, built


def forward_with_cache(built):
    cache = np.zeros(capacity(built), np.uint8)
    bl.direct_apply_lstm_batch_training_caching(built.params, None, cache)
    return cache


def masks_of(built, cache) -> list[np.ndarray]:
    off, size = _mask_offset(ctypes.addressof(built.params), cache.ctypes.data)
    p = built.problem
    return [cache[off + k * size: off + (k + 1) * size].reshape(p.S, p.N, p.D * p.H).astype(bool)
            for k in range(p.L - 1)]


def test_dropout_keep_rate_and_independence(rng):
    p, built = dropout_problem(rng, p_drop=0.3, H=32, N=32, S=50)
    bl.set_dropout_seed(123)
    masks = masks_of(built, forward_with_cache(built))
    for m in masks:                        # 51,200 draws each: 4.5 sigma is about 0.009
        assert abs(m.mean() - 0.7) < 0.009
    assert abs((masks[0] == masks[1]).mean() - (0.7 ** 2 + 0.3 ** 2)) < 0.01   # independent


def test_dropout_scaling_and_gradients_match_reference(rng):
    # Inverted dropout: kept values scaled by 1/(1-p); backward uses the same masks.
    p, built = dropout_problem(rng, p_drop=0.4)
    cache = forward_with_cache(built)
    masks = masks_of(built, cache)
    y, hn, cn = built.outputs()
    ry, rhn, rcn = ref.forward(p, masks)
    np.testing.assert_allclose(y, ry, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(hn, rhn, rtol=1e-4, atol=2e-5)
    dy, dhn, dcn = incoming(rng, p)
    delta = build_delta(p, dy, dhn, dcn)
    bl.direct_apply_lstm_batch_backward(built.params, delta.params, None, cache)
    compare(delta.read(), ref.backward(p, dy, dhn, dcn, masks))


def test_dropout_reproducible_for_a_seed(rng):
    p, built = dropout_problem(rng)
    bl.set_dropout_seed(7)
    first = masks_of(built, forward_with_cache(built))
    second = masks_of(built, forward_with_cache(built))
    bl.set_dropout_seed(7)
    again = masks_of(built, forward_with_cache(built))
    bl.set_dropout_seed(8)
    other = masks_of(built, forward_with_cache(built))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], second[0])    # each call draws a new mask
    assert not np.array_equal(first[0], other[0])


def test_no_dropout_without_cache_or_single_layer(rng):
    # Without a cache the call is inference: dropout is off (D6), as it is for one layer.
    p, built = dropout_problem(rng, p_drop=0.5)
    bl.direct_apply_lstm_batch_training_caching(built.params)
    ry, _, _ = ref.forward(p)
    np.testing.assert_allclose(built.outputs()[0], ry, rtol=1e-4, atol=2e-5)
    p1, built1 = dropout_problem(rng, p_drop=0.5, L=1)
    cache = forward_with_cache(built1)
    np.testing.assert_allclose(built1.outputs()[0], ref.forward(p1)[0], rtol=1e-4, atol=2e-5)
    assert capacity(built1) == cache.size


def test_backward_with_dropout_needs_the_cache(rng):
    p, built = dropout_problem(rng)
    delta = build_delta(p, *incoming(rng, p), fill=3.0)
    with pytest.raises(bl.BNNSError, match="dropout is active"):
        bl.direct_apply_lstm_batch_backward(built.params, delta.params)
    assert np.all(delta.grads["x"] == 3.0)
