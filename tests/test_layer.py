"""bnnslstm.LSTM: shapes, options, lengths, parameters, errors."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import bnnslstm as bl

GATES = ("input", "forget", "candidate", "output")
TOL = dict(rtol=1e-4, atol=2e-5)


def as_problem(lstm: bl.LSTM, x: np.ndarray, h0=None, c0=None) -> ref.Problem:
    """The layer's weights as a reference Problem (x as (T, N, I))."""
    L, D, H = lstm.num_layers, lstm.num_directions, lstm.hidden_size
    P = lstm.params

    def stack(kind: str, g: str, layers) -> np.ndarray:
        return np.stack([np.stack([P[f"{kind}_{g}_l{layer}" + ("_reverse" if d else "")]
                                   for d in range(D)]) for layer in layers])

    p = ref.Problem(
        I=lstm.input_size, H=H, N=x.shape[1], L=L, S=x.shape[0], bidir=lstm.bidirectional, x=x,
        wx0=[stack("w_x", g, [0]) for g in GATES],
        wx1=[stack("w_x", g, range(1, L)) for g in GATES] if L > 1 else None,
        wh=[stack("w_h", g, range(L)) for g in GATES],
        wc=[stack("w_c", g, range(L)) if lstm.peephole else None for g in GATES],
        b=[stack("b", g, range(L)) if lstm.bias else None for g in GATES],
        h0=None if h0 is None else h0.reshape(L, D, -1, H),
        c0=None if c0 is None else c0.reshape(L, D, -1, H),
        default_acts=lstm.default_activations,
        acts=[(a.function, a.alpha, a.beta) for a in lstm.gate_activations],
        hidden_act=(lstm.hidden_activation.function, lstm.hidden_activation.alpha,
                    lstm.hidden_activation.beta),
    )
    return p


def test_repeated_calls_point_at_their_own_arrays(rng):
    # From the second call of a geometry on, the struct is the last call's bytes with new data
    # pointers: each call must still read its own x, h0, c0 and write its own outputs.
    lstm = bl.LSTM(4, 5, 2, bidirectional=True, seed=2)
    calls = [(rng.standard_normal((6, 3, 4)).astype(np.float32),
              rng.standard_normal((4, 3, 5)).astype(np.float32),
              rng.standard_normal((4, 3, 5)).astype(np.float32)) for _ in range(3)]
    calls.append(calls[0])
    outs = [lstm.forward(*c) for c in calls]
    for (x, h0, c0), (y, (hn, cn)) in zip(calls, outs, strict=True):
        ry, rhn, rcn = ref.forward(as_problem(lstm, x, h0, c0))
        np.testing.assert_allclose(y, ry, **TOL)
        np.testing.assert_allclose(hn, rhn.reshape(hn.shape), **TOL)
        np.testing.assert_allclose(cn, rcn.reshape(cn.shape), **TOL)
    np.testing.assert_array_equal(outs[0][0], outs[3][0])
    assert not np.shares_memory(outs[0][0], outs[3][0])
    # a new geometry (no h0, another length) rebuilds the struct
    x = calls[1][0][:4]
    np.testing.assert_allclose(lstm.forward(x)[0], ref.forward(as_problem(lstm, x))[0], **TOL)


def test_reused_struct_bytes_equal_a_fresh_build(rng):
    lstm = bl.LSTM(4, 5, 1, seed=2)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    arrays = (x, None, None, np.empty((6, 3, 5), np.float32), np.empty((1, 1, 3, 5), np.float32),
              np.empty((1, 1, 3, 5), np.float32))
    fresh = bytes(lstm._params(3, 6, arrays, reuse=True))     # builds, and keeps the bytes
    other = (x.copy(),) + arrays[1:]
    lstm._params(3, 6, other, reuse=True)                     # reuses, other pointers
    assert bytes(lstm._params(3, 6, arrays, reuse=True)) == fresh
    assert bytes(lstm._params(3, 6, arrays, reuse=False)) == fresh


@pytest.mark.parametrize("peephole", [None, "diagonal", "full"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_reference(rng, peephole, bidirectional):
    lstm = bl.LSTM(4, 5, 3, bidirectional=bidirectional, peephole=peephole, seed=2)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    D = lstm.num_directions
    h0 = rng.standard_normal((3 * D, 3, 5)).astype(np.float32)
    c0 = rng.standard_normal((3 * D, 3, 5)).astype(np.float32)
    y, (hn, cn) = lstm.forward(x, h0, c0)
    ry, rhn, rcn = ref.forward(as_problem(lstm, x, h0, c0))
    np.testing.assert_allclose(y, ry, **TOL)
    np.testing.assert_allclose(hn, rhn.reshape(hn.shape), **TOL)
    np.testing.assert_allclose(cn, rcn.reshape(cn.shape), **TOL)
    assert y.shape == (6, 3, 5 * D) and hn.shape == (3 * D, 3, 5)


def test_custom_activations(rng):
    lstm = bl.LSTM(3, 4, gate_activations=["HardSigmoid", (15, 0.2, 0.5), "Tanh", "Sigmoid"],
                   hidden_activation=(bl.ActivationFunction.ScaledTanh, 1.5, 0.7), seed=4)
    assert not lstm.default_activations
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    y, _ = lstm.forward(x)
    np.testing.assert_allclose(y, ref.forward(as_problem(lstm, x))[0], **TOL)


def test_batch_first_equals_transposed(rng):
    a = bl.LSTM(3, 4, 2, bidirectional=True, seed=5)
    b = bl.LSTM(3, 4, 2, bidirectional=True, batch_first=True, seed=5)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    ya, (ha, ca) = a.forward(x)
    yb, (hb, cb) = b.forward(np.ascontiguousarray(x.transpose(1, 0, 2)))
    np.testing.assert_array_equal(ya, yb.transpose(1, 0, 2))
    np.testing.assert_array_equal(ha, hb)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_equal_separate_runs(rng, bidirectional, batch_first):
    # Each sample of a variable-length batch behaves as if run alone on its own prefix.
    lstm = bl.LSTM(3, 4, 2, bidirectional=bidirectional, batch_first=batch_first, seed=6)
    T, lengths = 6, np.array([2, 6, 0, 4, 6])
    N, D = len(lengths), lstm.num_directions
    x = rng.standard_normal((T, N, 3)).astype(np.float32)
    h0 = rng.standard_normal((2 * D, N, 4)).astype(np.float32)
    c0 = rng.standard_normal((2 * D, N, 4)).astype(np.float32)
    xin = x.transpose(1, 0, 2).copy() if batch_first else x
    y, (hn, cn) = lstm.forward(xin, h0, c0, lengths=lengths)
    if batch_first:
        y = y.transpose(1, 0, 2)
    for n, length in enumerate(lengths):
        if length == 0:
            np.testing.assert_array_equal(hn[:, n], h0[:, n])
            assert np.all(y[:, n] == 0)
            continue
        xn = x[:length, n:n + 1]
        if batch_first:
            xn = xn.transpose(1, 0, 2).copy()
        yn, (hnn, cnn) = lstm.forward(xn, h0[:, n:n + 1], c0[:, n:n + 1])
        if batch_first:
            yn = yn.transpose(1, 0, 2)
        np.testing.assert_allclose(y[:length, n], yn[:, 0], rtol=1e-5, atol=1e-6)
        assert np.all(y[length:, n] == 0)
        np.testing.assert_allclose(hn[:, n], hnn[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cn[:, n], cnn[:, 0], rtol=1e-5, atol=1e-6)


def test_params_are_live_views(rng):
    lstm = bl.LSTM(3, 4, 2, bidirectional=True, peephole="diagonal", seed=7)
    keys = {f"{k}_{g}_l{layer}{s}" for k in ("w_x", "w_h", "w_c", "b") for g in GATES
            for layer in range(2) for s in ("", "_reverse")}
    assert set(lstm.params) == keys
    assert lstm.params["w_x_input_l0"].shape == (4, 3)
    assert lstm.params["w_x_input_l1_reverse"].shape == (4, 8)
    assert lstm.params["w_c_output_l1"].shape == (4,)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    y0, _ = lstm.forward(x)
    lstm.params["w_h_forget_l0"] += 0.5
    y1, _ = lstm.forward(x)
    assert not np.allclose(y0, y1)
    np.testing.assert_allclose(y1, ref.forward(as_problem(lstm, x))[0], **TOL)


def test_seed_reproducible():
    a, b, c = bl.LSTM(3, 4, seed=1), bl.LSTM(3, 4, seed=1), bl.LSTM(3, 4, seed=2)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["w_x_input_l0"], c.params["w_x_input_l0"])


def test_bad_input_raises_bnns_error(rng):
    lstm = bl.LSTM(3, 4)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    with pytest.raises(bl.BNNSError, match="input_descriptor.data_desc.size\\[0\\] is 2"):
        lstm.forward(x[..., :2])
    with pytest.raises(bl.BNNSError, match="h0 has shape"):
        lstm.forward(x, np.zeros((2, 2, 4)))
    with pytest.raises(bl.BNNSError, match="lengths must lie in"):
        lstm.forward(x, lengths=[6, 1])
    with pytest.raises(bl.BNNSError, match="3 dimensions"):
        lstm.forward(x[0])
    with pytest.raises(ValueError, match="peephole"):
        bl.LSTM(3, 4, peephole="matrix")


@pytest.mark.parametrize("value", [-1, 2**64, 2.0, "2", True, None])
def test_bad_thread_count_is_refused_and_kept_out(value):
    # n_threads is a size_t in the struct: -1 would silently wrap to "every thread"
    lstm = bl.LSTM(3, 4)
    lstm.n_threads = 2
    with pytest.raises(bl.BNNSError, match="n_threads"):
        lstm.n_threads = value
    assert lstm.n_threads == 2
    lstm.n_threads = np.int64(1)
    assert lstm.n_threads == 1 and type(lstm.n_threads) is int


def test_float64_and_noncontiguous_input_are_converted(rng):
    lstm = bl.LSTM(3, 4, seed=8)
    x = rng.standard_normal((5, 2, 6))[..., ::2]
    y, _ = lstm.forward(x)
    y32, _ = lstm.forward(np.ascontiguousarray(x, np.float32))
    np.testing.assert_array_equal(y, y32)


def test_backward_needs_a_training_forward(rng):
    lstm = bl.LSTM(3, 4)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    with pytest.raises(bl.BNNSError, match="training=True"):
        lstm.backward(np.zeros((5, 2, 4), np.float32))
    lstm.forward(x)
    with pytest.raises(bl.BNNSError, match="training=True"):
        lstm.backward(np.zeros((5, 2, 4), np.float32))
    y, _ = lstm.forward(x, training=True)
    with pytest.raises(bl.BNNSError, match="dy has shape"):
        lstm.backward(np.zeros((5, 2, 3), np.float32))


@pytest.mark.parametrize("peephole", [None, "diagonal", "full"])
def test_backward_shapes_and_grads_keys(rng, peephole):
    lstm = bl.LSTM(3, 4, 2, bidirectional=True, peephole=peephole, seed=1)
    # The second step runs on the structs reused from the first (new data and gate pointers).
    for scale in (1.0, -0.5):
        x = rng.standard_normal((5, 2, 3)).astype(np.float32)
        y, (hn, cn) = lstm.forward(x, training=True)
        dx, dh0, dc0 = lstm.backward(np.full_like(y, scale), np.ones_like(hn))
        assert dx.shape == x.shape and dh0.shape == hn.shape and dc0.shape == cn.shape
        assert set(lstm.grads) == set(lstm.params)
        assert all(lstm.grads[k].shape == lstm.params[k].shape for k in lstm.params)
        # the gradients match the float64 reference on the same weights
        p = as_problem(lstm, x)
        want = ref.backward(p, np.full(y.shape, scale), np.ones((2, 2, 2, 4)), None)
        np.testing.assert_allclose(dx, want["x"], rtol=2e-4, atol=5e-5)
        np.testing.assert_allclose(lstm.grads["w_h_forget_l1_reverse"], want["wh"][1][1, 1],
                                   rtol=2e-4, atol=5e-5)


@pytest.mark.parametrize("peephole, bias, lengths",
                         [(None, True, None), ("diagonal", False, [5, 2]), ("full", True, [3, 5])])
def test_every_output_element_is_written(rng, monkeypatch, peephole, bias, lengths):
    # The layer allocates its outputs and gradients with np.empty: the kernel must set every
    # element. With np.empty poisoned (NaN), the results must equal those of a clean run.
    lstm = bl.LSTM(3, 4, 2, bidirectional=True, bias=bias, peephole=peephole, seed=1)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 2, 8)).astype(np.float32)

    def step() -> list[np.ndarray]:
        y, (hn, cn) = lstm.forward(x, lengths=lengths, training=True)
        outs = [y, hn, cn, *lstm.backward(dy)]
        return [a.copy() for a in outs] + [lstm.grads[k].copy() for k in sorted(lstm.grads)]

    clean = step()
    empty = np.empty
    made: list[tuple] = []

    def poisoned(*args, **kwargs):
        out = empty(*args, **kwargs)
        made.append(out.shape)
        out.fill(np.nan if out.dtype.kind == "f" else 0xFF)
        return out

    monkeypatch.setattr(np, "empty", poisoned)
    for a, b in zip(step(), clean, strict=True):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)
    assert set(lstm._shapes().values()) <= set(made)    # the gradients' storage was poisoned


def test_reverse_time_gradients(rng):
    # ONNX direction="reverse" on x is the forward direction on each sample's reversed prefix.
    W = rng.uniform(-0.5, 0.5, (1, 16, 3)).astype(np.float32)
    R = rng.uniform(-0.5, 0.5, (1, 16, 4)).astype(np.float32)
    rev = bl.LSTM.from_onnx(W, R, direction="reverse")
    fwd = bl.LSTM.from_onnx(W, R, direction="forward")
    lengths = np.array([5, 3, 4])
    x = rng.standard_normal((5, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 3, 4)).astype(np.float32)

    def flip(a):
        out = np.zeros_like(a)
        for n, length in enumerate(lengths):
            out[:length, n] = a[:length, n][::-1]
        return out

    for n, length in enumerate(lengths):
        dy[length:, n] = 0
    rev.forward(x, lengths=lengths, training=True)
    dx_rev, _, _ = rev.backward(dy)
    fwd.forward(flip(x), lengths=lengths, training=True)
    dx_fwd, _, _ = fwd.backward(flip(dy))
    np.testing.assert_allclose(dx_rev, flip(dx_fwd), rtol=1e-6, atol=1e-7)


def test_layer_dropout_reproducible_with_seed(rng):
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    runs = []
    for _ in range(2):
        lstm = bl.LSTM(3, 8, 3, dropout=0.5, seed=11)
        runs.append([lstm.forward(x, training=True)[0] for _ in range(2)])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[0][1])     # a new mask each training call
    inference = bl.LSTM(3, 8, 3, dropout=0.5, seed=11).forward(x)[0]
    assert not np.array_equal(inference, runs[0][0])      # dropout only when training
