"""The backward pass (spec 4.3, D7, D8, D12) against the float64 reference backward."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import reference as ref
from problems import GRAD_KEYS, build, build_delta, random_problem, slot_problem

import bnnslstm as bl

RTOL, ATOL = 2e-4, 5e-5


def incoming(rng, p, dy=True, dhn=True, dcn=True):
    S, N, D, H, L = p.S, p.N, p.D, p.H, p.L
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return (f(S, N, D * H) if dy else None, f(L, D, N, H) if dhn else None,
            f(L, D, N, H) if dcn else None)


def run_training(p, dy, dhn, dcn, *, cache=True, fwd=None, delta=None, filter_params=None):
    """Forward with (or without) a training cache, then backward; returns the delta."""
    built = build(p, **(fwd or {}))
    c = None
    if cache:
        c = np.zeros(bl.compute_lstm_training_cache_capacity(built.params), np.uint8)
        bl.direct_apply_lstm_batch_training_caching(built.params, filter_params, c)
    delta_built = build_delta(p, dy, dhn, dcn, **(delta or {}))
    bl.direct_apply_lstm_batch_backward(built.params, delta_built.params, filter_params, c)
    return built, delta_built


def compare(got: dict, want: dict, keys=("x", "h0", "c0") + GRAD_KEYS):
    for key in keys:
        g, w = got.get(key), want.get(key)
        if isinstance(w, list):
            for k in range(4):
                if g is not None and g[k] is not None and w[k] is not None:
                    np.testing.assert_allclose(g[k], w[k], rtol=RTOL, atol=ATOL,
                                               err_msg=f"{key}[{k}]")
        elif g is not None and w is not None:
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=key)


def check(p, rng, dy=True, dhn=True, dcn=True, **kw):
    dy, dhn, dcn = incoming(rng, p, dy, dhn, dcn)
    _, delta = run_training(p, dy, dhn, dcn, **kw)
    got = delta.read()
    compare(got, ref.backward(p, dy, dhn, dcn))
    return got


@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("L", [1, 2, 3, 4])
@pytest.mark.parametrize("separate_wx1", [True, False])
def test_stacks_and_directions(rng, bidir, L, separate_wx1):
    H = 4
    I = 2 * H if (bidir and not separate_wx1) else (H if not separate_wx1 else 3)
    p = random_problem(rng, I=I, H=H, N=3, L=L, S=5, bidir=bidir, separate_wx1=separate_wx1)
    check(p, rng)


@pytest.mark.parametrize("N", [1, 5, 17])
def test_larger_odd_sizes(rng, N):
    p = random_problem(rng, I=19, H=37, N=N, L=2, S=6, bidir=True, peephole="full", scale=0.2)
    check(p, rng)


@pytest.mark.parametrize("bias", [[True] * 4, [False] * 4, [False, True, False, True]])
def test_bias_per_gate(rng, bias):
    check(random_problem(rng, L=2, bidir=True, bias=bias), rng)


PEEPHOLE_CASES = [
    ["full"] * 4, ["diag"] * 4, [None, None, None, "full"], ["full", None, "full", None],
    [None, "diag", None, "diag"], ["diag", "full", "full", "diag"], [None, None, "full", None],
]


@pytest.mark.parametrize("peeps", PEEPHOLE_CASES)
@pytest.mark.parametrize("stacked", [False, True])
def test_peepholes(rng, peeps, stacked):
    p = random_problem(rng, H=5, L=2, bidir=True, peephole=peeps)
    check(p, rng, fwd={"stacked": stacked})


ELEMENTWISE = sorted(ref.ACTIVATIONS)


@pytest.mark.parametrize("fn", ELEMENTWISE)
@pytest.mark.parametrize("slot", ["input", "forget", "candidate", "output", "hidden"])
def test_every_activation_in_every_slot(rng, fn, slot):
    p = slot_problem(rng, fn, slot, H=5)
    check(p, rng)


@pytest.mark.parametrize("x_layout,y_layout", [("SNE", "NSE"), ("NSE", "SNE"), (0, 0)])
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("weight_layout,state_layout", [(0, 0), ("4D", "3D"), ("2D", "Vector")])
def test_layouts_and_strides(rng, x_layout, y_layout, strided, weight_layout, state_layout):
    p = random_problem(rng, I=3, H=4, N=3, S=4, L=2, bidir=True, peephole="diag")
    layouts = dict(x_layout=x_layout, y_layout=y_layout, strided=strided,
                   weight_layout=weight_layout, state_layout=state_layout)
    check(p, rng, fwd=layouts, delta=layouts)


@pytest.mark.parametrize("lengths", [[5, 5, 5], [5, 3, 1], [4, 2, 2], [5, 0, 0]])
@pytest.mark.parametrize("bidir", [False, True])
def test_sequence_batch_sizes(rng, lengths, bidir):
    p = random_problem(rng, N=3, S=5, L=2, bidir=bidir, lengths=lengths, peephole="full")
    got = check(p, rng)
    for n, length in enumerate(sorted(lengths, reverse=True)):
        assert np.all(got["x"][length:, n] == 0.0)     # padded steps of x get no gradient


def test_padded_x_garbage_does_not_leak(rng):
    # NaN at padded positions of x must not reach any gradient (0 * NaN).
    p = random_problem(rng, N=3, S=4, lengths=[4, 2, 1])
    for n, length in enumerate([4, 2, 1]):
        p.x[length:, n] = np.nan
    got = check(p, rng)
    for key in GRAD_KEYS:
        for a in got[key]:
            assert a is None or np.all(np.isfinite(a)), key


@pytest.mark.parametrize("dy,dhn,dcn", [(True, False, False), (False, True, False),
                                        (False, False, True), (False, False, False)])
def test_incoming_gradients_may_be_null(rng, dy, dhn, dcn):
    p = random_problem(rng, L=2, bidir=True, peephole="diag")
    got = check(p, rng, dy=dy, dhn=dhn, dcn=dcn)
    if not (dy or dhn or dcn):
        assert not np.any(got["x"]) and not np.any(got["wh"][0])


@pytest.mark.parametrize("initial", [(False, False), (True, False), (False, True)])
def test_null_initial_state(rng, initial):
    check(random_problem(rng, L=2, bidir=True, h0=initial[0], c0=initial[1]), rng)


@pytest.mark.parametrize("want", [("x",), ("h0", "c0"), ("wx0", "wx1"), ("wh",), ("wc", "b"),
                                  ()])
def test_null_gradient_outputs_are_skipped(rng, want):
    p = random_problem(rng, L=2, bidir=True, peephole="full", separate_wx1=True)
    dy, dhn, dcn = incoming(rng, p)
    _, delta = run_training(p, dy, dhn, dcn, delta={"want": want, "fill": 7.0})
    got = delta.read()
    compare(got, ref.backward(p, dy, dhn, dcn), keys=want)
    for key in set(("x", "h0", "c0") + GRAD_KEYS) - set(want):
        value = got.get(key)
        assert value is None or all(a is None for a in value), key


def test_accumulate_flag_adds(rng):
    # D7: BackpropAccumulate adds to the buffer (here pre-filled with 7) instead of overwriting.
    p = random_problem(rng, L=2, bidir=True, peephole="diag", separate_wx1=True)
    dy, dhn, dcn = incoming(rng, p)
    _, delta = run_training(p, dy, dhn, dcn, delta={"accumulate": True, "fill": 7.0})
    want = ref.backward(p, dy, dhn, dcn)
    shifted = {k: ([None if a is None else a + 7.0 for a in v] if isinstance(v, list)
                   else (None if v is None else v + 7.0)) for k, v in want.items()}
    compare(delta.read(), shifted)


def test_without_cache_equals_with_cache(rng):
    # D12: backward without a cache replays the forward internally, with the same result...
    p = random_problem(rng, L=3, bidir=True, peephole="full", lengths=[4, 3, 1], S=4, N=3)
    dy, dhn, dcn = incoming(rng, p)
    _, with_cache = run_training(p, dy, dhn, dcn, cache=True)
    built, without = run_training(p, dy, dhn, dcn, cache=False)
    a, b = with_cache.read(), without.read()
    for key in ("x", "h0", "c0"):
        np.testing.assert_array_equal(a[key], b[key])
    for key in GRAD_KEYS:
        for ga, gb in zip(a[key], b[key], strict=True):
            assert (ga is None) == (gb is None)
            if ga is not None:
                np.testing.assert_array_equal(ga, gb)
    # ...and never writes the caller's forward outputs (they still hold build()'s fill of 7).
    assert np.all(built.y == 7.0) and np.all(built.hn == 7.0) and np.all(built.cn == 7.0)


def test_one_cache_serves_several_backward_calls(rng):
    p = random_problem(rng, L=2, bidir=True)
    built = build(p)
    cache = np.zeros(bl.compute_lstm_training_cache_capacity(built.params), np.uint8)
    bl.direct_apply_lstm_batch_training_caching(built.params, None, cache)
    snapshot = cache.copy()
    results = []
    for _ in range(2):
        dy, dhn, dcn = incoming(np.random.default_rng(5), p)
        delta = build_delta(p, dy, dhn, dcn)
        bl.direct_apply_lstm_batch_backward(built.params, delta.params, None, cache)
        results.append(delta.read())
    np.testing.assert_array_equal(results[0]["x"], results[1]["x"])
    np.testing.assert_array_equal(cache, snapshot)    # const: backward leaves it as it was


def test_training_forward_outputs_equal_inference(rng):
    p = random_problem(rng, L=3, bidir=True, peephole="full", lengths=[5, 2, 2], S=5, N=3)
    inference = build(p)
    bl.direct_apply_lstm_batch_training_caching(inference.params)
    training = build(p)
    cache = np.zeros(bl.compute_lstm_training_cache_capacity(training.params), np.uint8)
    bl.direct_apply_lstm_batch_training_caching(training.params, None, cache)
    for a, b in zip(inference.outputs(), training.outputs(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("H, N, after, peephole", [
    (20, 32, False, None), (20, 31, True, None), (512, 32, True, None),
    (20, 32, False, "full"), (20, 32, False, "diag")])
@pytest.mark.parametrize("bidir", [False, True])
def test_dx_in_or_after_the_loop(rng, H, N, after, peephole, bidir):
    # db summed in the time loop (the default cell's one-sweep pass without peepholes, the
    # general pass with them), with inactive samples at some steps; dX runs in the time loop
    # from 32 rows on, unless W_x and W_h packed exceed what stays in cache (H = 512), when it
    # is one product after the loop
    from bnnslstm._backward import _dx_after_loop
    lengths = [3] * (N - 12) + [2] * 6 + [1] * 5 + [0]
    p = random_problem(rng, I=4, H=H, N=N, S=3, bidir=bidir, lengths=lengths, scale=0.1,
                       peephole=peephole)
    before = _dx_after_loop()
    got = check(p, rng)
    assert _dx_after_loop() - before == (1 + bidir if after else 0)
    for n, length in enumerate(lengths):
        assert np.all(got["x"][length:, n] == 0.0)     # padded steps of x get no gradient


@pytest.mark.parametrize("H, N", [(520, 5), (1040, 16)])
def test_recurrent_product_in_k_blocks(rng, H, N):
    # 4H past 2048: dh = dA W_h goes in k blocks of 1024, the last one partial (32 or 64);
    # at H = 1040 with 16 rows the packed W_h (17 MiB) also takes the prefetching path
    p = random_problem(rng, I=4, H=H, N=N, S=3, scale=0.1)
    check(p, rng)


@pytest.mark.parametrize("I, H, L, bidir, S, N, peephole", [
    (24, 40, 1, False, 30, 40, None),       # S*N = 1200: 8 or 2 k blocks; 4H = 160: 3 x 48 + 16
                                            # rows, or 96 + 64 (dW's two blockings, dw_blocks)
    (16, 56, 2, True, 17, 50, "diagonal"),  # the upper layer's input 112 wide
    (8, 16, 1, False, 3, 20, "full"),       # full peepholes: the halves, never shared
])
def test_shared_weight_gradients_are_bit_identical(I, H, L, bidir, S, N, peephole, dw_blocks):
    # With two threads on our kernel, the parts share dW_x and dW_h, claiming (k block, row
    # group) items as they finish; the gradients must equal the static halves' and one
    # thread's bit for bit, whichever part took which items. LSTM's gradients are stacked:
    # the products write them in place (8 gate blocks per layer and direction), and through
    # scratch they are the same.
    from bnnslstm._backward import _dw_in_place, _shared_dw

    from bnnslstm._blas import _own_products
    rng = np.random.default_rng(7)
    x = rng.standard_normal((S, N, I)).astype(np.float32)
    dy = rng.standard_normal((S, N, (1 + bidir) * H)).astype(np.float32)
    results = []
    for threads, shared, in_place in ((1, True, True), (2, True, True), (2, False, True),
                                      (1, True, False), (2, True, False)):
        lstm = bl.LSTM(I, H, L, bidirectional=bidir, peephole=peephole, seed=3)
        lstm.n_threads = threads
        lstm.forward(x, training=True)
        _shared_dw(shared)
        _dw_in_place(in_place)
        try:
            before = _shared_dw(), _dw_in_place()
            dx = lstm.backward(dy)[0]
            used = _shared_dw() - before[0], _dw_in_place() - before[1]
        finally:
            _shared_dw(True)
            _dw_in_place(True)
        expected = L * (1 + bidir) if threads == 2 and shared and peephole != "full" \
            and _own_products() else 0
        assert used == (expected, 8 * L * (1 + bidir) if in_place else 0)
        results.append([dx] + [lstm.grads[k].copy() for k in sorted(lstm.grads)])
    for other in results[1:]:
        for one, two in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("stacked, accumulate", [
    ("dense", False), ("padded", False), ("dense", True), (None, False)])
@pytest.mark.parametrize("threads", [1, 2])
def test_weight_gradients_in_place(stacked, accumulate, threads):
    # The products write dW_x and dW_h straight into the caller's tensors when the four gates'
    # blocks are stacked with unit column stride and set (not accumulated): the 8 gate blocks
    # of each (layer, direction). The result equals the reference's, and a padded row's tail
    # stays as it was.
    from bnnslstm._backward import _dw_in_place
    rng = np.random.default_rng(11)
    p = random_problem(rng, I=24, H=40, N=33, L=2, S=5, bidir=True, scale=0.2)
    dy, dhn, dcn = incoming(rng, p)
    fill = 7.0 if accumulate else 0.0
    before = _dw_in_place()
    _, delta = run_training(p, dy, dhn, dcn, filter_params=bl.FilterParameters(n_threads=threads),
                            delta={"stacked": stacked, "accumulate": accumulate, "fill": fill})
    assert _dw_in_place() - before == (8 * p.L * p.D if stacked and not accumulate else 0)
    got = delta.read()
    for key in ("wx0", "wx1", "wh"):
        for a in got[key]:
            if a is not None and stacked == "padded":     # the 3 floats after each row
                tail = np.lib.stride_tricks.as_strided(
                    a[..., -1:], a.shape[:-1] + (4,), a.strides)[..., 1:]
                assert np.isnan(tail).all(), key
        got[key] = [None if a is None else a - fill for a in got[key]]
    compare(got, ref.backward(p, dy, dhn, dcn), keys=("wx0", "wx1", "wh"))


@pytest.mark.parametrize("x_layout, strided, accumulate, lengths, in_place", [
    ("SNE", False, False, None, True), ("SNE", False, False, [5, 3, 3, 1], True),
    ("SNE", False, True, None, False), ("NSE", False, False, None, False),
    ("SNE", True, False, None, False)])
@pytest.mark.parametrize("bidir", [False, True])
def test_dx_in_place(x_layout, strided, accumulate, lengths, in_place, bidir):
    # Layer 0's loop and products write dL/dx straight into the caller's tensor when it is a
    # dense [S][N][I] block that is set, not accumulated; padded steps still get 0
    from bnnslstm._backward import _dx_in_place
    rng = np.random.default_rng(3)
    p = random_problem(rng, I=6, H=8, N=4, S=5, L=2, bidir=bidir, lengths=lengths)
    dy, dhn, dcn = incoming(rng, p)
    fill = 7.0 if accumulate else np.nan      # a NaN left anywhere fails the comparison
    before = _dx_in_place()
    _, delta = run_training(p, dy, dhn, dcn, delta={
        "x_layout": x_layout, "strided": strided, "accumulate": accumulate, "fill": fill})
    assert _dx_in_place() - before == in_place
    got = delta.read()
    want = ref.backward(p, dy, dhn, dcn)
    np.testing.assert_allclose(got["x"] - (fill if accumulate else 0.0), want["x"], rtol=RTOL,
                               atol=ATOL)


@pytest.mark.parametrize("N, lengths, in_place", [
    (9, None, True), (9, [7, 7, 6, 5, 5, 3, 2, 2, 1], True), (40, None, True), (9, None, False)])
def test_direction_lanes_share_their_products(N, lengths, in_place):
    # With direction lanes each thread runs one direction's time loop, then claims pieces of
    # both directions' products (dX's halves below 32 rows, where the loop leaves dX to them;
    # the shared dW; the gate pairs' tails), its own first: bit for bit what the lanes give
    # with each direction's products on its own thread, and what one thread gives
    from bnnslstm._backward import _dw_in_place, _lanes_shared, _shared_dw

    from bnnslstm._blas import _own_products
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, N, 24)).astype(np.float32)
    dy = rng.standard_normal((7, N, 256)).astype(np.float32)
    results = []
    for threads, shared in ((2, True), (2, False), (1, True)):
        lstm = bl.LSTM(24, 128, 2, bidirectional=True, dropout=0.1, seed=1)
        lstm.n_threads = threads
        lstm.forward(x, lengths=lengths, training=True)
        _shared_dw(shared)
        _dw_in_place(in_place)
        try:
            before = _lanes_shared()[0]
            dx = lstm.backward(dy)[0]
            used = _lanes_shared()[0] - before
        finally:
            _shared_dw(True)
            _dw_in_place(True)
        assert used == (2 if threads == 2 and shared and _own_products() else 0)
        results.append([dx] + [lstm.grads[k].copy() for k in sorted(lstm.grads)])
    for other in results[1:]:
        for one, two in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("late", [0, 1])
def test_a_late_direction_is_joined(late):
    # Direction `late`'s time loop starts 20 ms late (a test knob): the other thread finishes
    # its own direction's products first, waits until the late one's loop is done and its
    # products are set up, then runs some of them with it. Bit for bit what one thread gives.
    from bnnslstm._backward import _lanes_shared

    from bnnslstm._blas import _own_products
    if not _own_products():
        pytest.skip("products on a BLAS: the lanes do not share them")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 9, 24)).astype(np.float32)
    dy = rng.standard_normal((7, 9, 256)).astype(np.float32)
    results = []
    for threads in (1, 2):
        lstm = bl.LSTM(24, 128, 2, bidirectional=True, seed=1)
        lstm.n_threads = threads
        lstm.forward(x, training=True)
        before = _lanes_shared(late)
        try:
            dx = lstm.backward(dy)[0]
        finally:
            after = _lanes_shared(-1)
        results.append([dx] + [lstm.grads[k].copy() for k in sorted(lstm.grads)])
    shared, joined = (a - b for a, b in zip(after, before, strict=True))
    assert shared == 2 and joined >= 1
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


def test_in_place_gradients_with_direction_lanes():
    # Both directions of each layer on a thread of their own (H = 128, 2 threads): dW and dX
    # in place or through scratch, bit for bit the same
    from bnnslstm._backward import _direction_lanes, _dw_in_place, _dx_in_place
    rng = np.random.default_rng(9)
    x = rng.standard_normal((7, 9, 24)).astype(np.float32)
    dy = rng.standard_normal((7, 9, 256)).astype(np.float32)
    results = []
    for in_place in (True, False):
        lstm = bl.LSTM(24, 128, 2, bidirectional=True, seed=1)
        lstm.n_threads = 2
        lstm.forward(x, training=True)
        _dw_in_place(in_place)
        try:
            before = _direction_lanes(), _dx_in_place()
            dx = lstm.backward(dy)[0]
            assert _dx_in_place() - before[1] == in_place
            lanes = _direction_lanes() - before[0]
        finally:
            _dw_in_place(True)
        results.append([dx] + [lstm.grads[k].copy() for k in sorted(lstm.grads)])
    from bnnslstm._blas import _own_products
    assert lanes == (2 if _own_products() else 0)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


def test_choosing_dw_blocks_while_products_run_harms_nothing():
    # Every buffer is sized for either blocking and each product reads the choice once (a
    # shared one into its job): flipping it from another thread while two-thread backward
    # calls run gives gradients as close to the first call's as either blocking does.
    from bnnslstm._backward import _dw_l1_blocks
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 40, 24)).astype(np.float32)
    dy = rng.standard_normal((30, 40, 40)).astype(np.float32)
    lstm = bl.LSTM(24, 40, 1, seed=3)
    lstm.n_threads = 2

    def step():
        lstm.forward(x, training=True)
        dx = lstm.backward(dy)[0]
        return [dx] + [lstm.grads[k].copy() for k in sorted(lstm.grads)]

    want = step()
    chosen, stop = _dw_l1_blocks(), threading.Event()

    def flip():
        i = 0
        while not stop.is_set():
            _dw_l1_blocks(i % 2)
            i += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(20):
            for got, ref_ in zip(step(), want, strict=True):
                np.testing.assert_allclose(got, ref_, rtol=1e-4, atol=1e-5)
    finally:
        stop.set()
        flipper.join()
        _dw_l1_blocks(chosen)


def test_the_cpu_chooses_by_its_l1_data_cache():
    # dW's blocks, as a fresh process chooses them (the tests may have chosen here): 48 x 160
    # where the L1 data cache holds 48 KiB or more, else (or where it is unknown) 96 x 800
    try:
        l1 = os.sysconf("SC_LEVEL1_DCACHE_SIZE")
    except (ValueError, OSError):
        l1 = 0
    out = subprocess.run([sys.executable, "-c", "from bnnslstm._backward import _dw_l1_blocks; "
                          "print(int(_dw_l1_blocks()))"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ("1" if l1 >= 48 * 1024 else "0")
