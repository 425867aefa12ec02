"""Saturated gates make subnormal floats; the kernel flushes them (DESIGN step 9, README:
"Denormals are flushed to zero inside the kernel") and restores the caller's FP state."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import reference as ref
from problems import build, random_problem, run

import bnnslstm as bl

FLT_MIN = np.finfo(np.float32).tiny

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"),
    reason="the kernel sets flush-to-zero on x86-64 and arm64 only")


def subnormal(a: np.ndarray) -> np.ndarray:
    return (a != 0) & (np.abs(a) < FLT_MIN)


@pytest.mark.parametrize(("H", "n_threads"), [(16, 1), (128, 2)])   # 128: with a helper thread
def test_saturated_gates_give_no_subnormal_outputs(rng, H, n_threads):
    p = random_problem(rng, I=16, H=H, N=8, S=12)
    p.x = p.x * np.float32(200)            # gate pre-activations in the tens to hundreds
    y, hn, cn = run(build(p), bl.FilterParameters(n_threads=n_threads))
    ry, _, _ = ref.forward(p)
    # the case makes them: outputs that a float32 kernel without flushing would round to
    # subnormals (the reference's own sigmoid goes lower still, unclamped)
    assert subnormal(ry).any()
    assert not subnormal(y).any() and not subnormal(hn).any() and not subnormal(cn).any()
    np.testing.assert_allclose(y, ry, rtol=1e-4, atol=2e-5)
    # the caller's FP state is back: float32 arithmetic here makes subnormals again
    assert np.float32(FLT_MIN) / np.float32(4) != 0


def test_saturated_backward_gives_no_subnormal_gradients(rng):
    lstm = bl.LSTM(16, 16, seed=3)
    x = rng.standard_normal((12, 8, 16)).astype(np.float32) * np.float32(200)
    lstm.forward(x, training=True)
    dx, dh0, dc0 = lstm.backward(rng.standard_normal((12, 8, 16)).astype(np.float32))
    for g in [dx, dh0, dc0, *lstm.grads.values()]:
        assert not subnormal(np.asarray(g)).any()
    assert np.float32(FLT_MIN) / np.float32(4) != 0
