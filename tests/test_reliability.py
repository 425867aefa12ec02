"""Threads, leaks, determinism, non-finite values and resource limits (issue: reliability)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from problems import CountingAllocator, build, build_delta, random_problem

import bnnslstm as bl


def training_step(lstm: bl.LSTM, x: np.ndarray, dy: np.ndarray) -> list[np.ndarray]:
    y, (hn, cn) = lstm.forward(x, training=True)
    dx, dh0, dc0 = lstm.backward(dy)
    return [y, hn, cn, dx, dh0, dc0] + [lstm.grads[k] for k in sorted(lstm.grads)]


@pytest.mark.parametrize("n_threads", [2, 4, 8])
def test_concurrent_calls_on_shared_weights_are_bit_identical(n_threads):
    # Shared weights (one params struct template), separate inputs/outputs per thread.
    template = bl.LSTM(5, 16, 2, bidirectional=True, peephole="diagonal", seed=3)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((6, 9, 5)).astype(np.float32) for _ in range(n_threads)]
    dys = [rng.standard_normal((6, 9, 32)).astype(np.float32) for _ in range(n_threads)]

    def layer() -> bl.LSTM:     # a layer object per thread, all pointing at the same weights
        other = bl.LSTM(5, 16, 2, bidirectional=True, peephole="diagonal", seed=3)
        other._w, other._template, other.params = template._w, template._template, template.params
        return other

    sequential = [training_step(layer(), x, dy) for x, dy in zip(xs, dys, strict=True)]
    results: list = [None] * n_threads
    errors: list = []

    def work(i: int) -> None:
        try:
            lstm = layer()
            for _ in range(5):
                results[i] = training_step(lstm, xs[i], dys[i])
        except Exception as e:   # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, sequential, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_backward_restores_the_blas_thread_count():
    # With two threads the backward makes OpenBLAS single-threaded while its whole-sequence
    # products run (process-wide, as threadpoolctl's limits are); overlapping calls from
    # several Python threads share one save and restore, and the count must come back.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from bnnslstm._backward import _blas_single_threads, _helper_products

    from bnnslstm._blas import _own_products

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["internal_api"] == "openblas"]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 64)).astype(np.float32)
    dy = rng.standard_normal((8, 16, 128)).astype(np.float32)
    with threadpoolctl.threadpool_limits(2):
        before, products = blas_threads(), _helper_products()
        lstm = bl.LSTM(64, 128, seed=0)
        lstm.n_threads = 1
        want = training_step(lstm, x, dy)
        results: list = []

        def work() -> None:
            layer = bl.LSTM(64, 128, seed=0)
            layer.n_threads = 2
            for _ in range(5):
                results.append(training_step(layer, x, dy))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert blas_threads() == before
        assert len(results) == 20
        for got in results:
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
        if _own_products() or _blas_single_threads():
            assert _helper_products() - products == 20


def test_calls_release_the_gil():
    # While one thread is inside a long call, another thread keeps running Python code.
    lstm = bl.LSTM(256, 256, seed=0)
    x = np.random.default_rng(0).standard_normal((400, 32, 256)).astype(np.float32)
    inside = threading.Event()
    done = threading.Event()
    counts = []

    def spin() -> None:
        inside.wait()
        n = 0
        while not done.is_set():
            n += 1
        counts.append(n)

    t = threading.Thread(target=spin)
    t.start()
    inside.set()
    lstm.forward(x)
    done.set()
    t.join()
    assert counts[0] > 10_000   # held GIL: the spinner could not have run during the call


def rss_kib() -> int:
    with open("/proc/self/statm") as f:         # resident pages
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_ten_thousand_training_steps_keep_rss_flat():
    lstm = bl.LSTM(4, 8, 2, bidirectional=True, dropout=0.2, peephole="full", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    dy = rng.standard_normal((5, 3, 16)).astype(np.float32)
    for _ in range(1000):                     # warm up allocator caches
        training_step(lstm, x, dy)
    before = rss_kib()
    for _ in range(10_000):
        training_step(lstm, x, dy)
    assert rss_kib() - before < 4096          # KiB: no per-call growth


def test_allocator_callbacks_are_balanced():
    counting = CountingAllocator()
    fp = counting.filter_params()
    rng = np.random.default_rng(1)
    p = random_problem(rng, L=2, bidir=True, peephole="diag")
    built = build(p)
    for _ in range(200):
        cache = np.empty(bl.compute_lstm_training_cache_capacity(built.params), np.uint8)
        bl.direct_apply_lstm_batch_training_caching(built.params, fp, cache)
        delta = build_delta(p, *[rng.standard_normal(a.shape).astype(np.float32)
                                 for a in (built.y, built.hn, built.cn)])
        bl.direct_apply_lstm_batch_backward(built.params, delta.params, fp, cache)
        bl.direct_apply_lstm_batch_backward(built.params, delta.params, fp)   # replay path
    assert counting.allocs == counting.frees == 600 and not counting.live


def test_resource_limits_backward():
    rng = np.random.default_rng(2)
    p = random_problem(rng, L=2)
    built = build(p)
    delta = build_delta(p, rng.standard_normal(built.y.shape).astype(np.float32), fill=3.0)
    fp = bl.FilterParameters(alloc_memory=lambda m, a, s: 12, free_memory=lambda ptr: None)
    with pytest.raises(bl.BNNSError, match="could not allocate the backward workspace"):
        bl.direct_apply_lstm_batch_backward(built.params, delta.params, fp)
    assert np.all(delta.grads["x"] == 3.0)


DETERMINISM = """
import numpy as np, bnnslstm as bl
lstm = bl.LSTM(6, 24, 2, bidirectional=True, dropout=0.3, peephole="full", seed=5)
lstm.n_threads = 1
rng = np.random.default_rng(0)
x = rng.standard_normal((7, 20, 6)).astype(np.float32)
y, _ = lstm.forward(x, training=True, lengths=rng.integers(1, 8, 20))
lstm.backward(rng.standard_normal(y.shape).astype(np.float32))
import hashlib
h = hashlib.sha256(y.tobytes())
for k in sorted(lstm.grads):
    h.update(lstm.grads[k].tobytes())
print(h.hexdigest())
"""


def test_bit_identical_across_runs():
    # Same inputs, seed and thread count: the same bits, across processes.
    digests = {subprocess.run([sys.executable, "-c", DETERMINISM], capture_output=True,
                              text=True, check=True).stdout.strip() for _ in range(3)}
    assert len(digests) == 1


def test_non_finite_values_propagate():
    # IEEE arithmetic: a NaN or Inf in one sample's input reaches that sample's outputs only
    # (rows of the batch never mix); NaN weights make every output NaN. No error, no hang.
    lstm = bl.LSTM(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3, 3)).astype(np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        xb = x.copy()
        xb[2, 1, 0] = bad
        y, (hn, cn) = lstm.forward(xb)
        assert np.all(np.isfinite(y[:2])) and np.all(np.isfinite(y[:, [0, 2]]))
        assert np.all(np.isfinite(hn[:, [0, 2]]))
        if np.isnan(bad):
            assert np.all(np.isnan(y[2:, 1])) and np.isnan(hn[0, 1]).all()
    lstm.params["w_h_forget_l0"][0, 0] = np.nan
    y, _ = lstm.forward(x)
    # NaN * 0 is NaN: unit 0 is NaN from step 0 (h starts at 0), every unit from step 1 on
    assert np.isnan(y[0, :, 0]).all() and np.isnan(y[1:]).all()
