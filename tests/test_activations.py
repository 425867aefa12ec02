"""The kernel's elementwise functions (vectorized, no libm for sigmoid/tanh) against float64."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

from bnnslstm._abi import apply_activation


def kernel(fn: int, alpha: float, beta: float, x: np.ndarray) -> np.ndarray:
    out = np.array(x, dtype=np.float32)
    apply_activation(fn, alpha, beta, out)
    return out


@pytest.mark.parametrize("fn", [ref.SIGMOID, ref.TANH])
def test_sigmoid_tanh_relative_error(fn):
    # DESIGN: polynomial/rational forms with max relative error about 1e-6.
    x = np.linspace(-30, 30, 600_001, dtype=np.float32)
    x = np.concatenate([x, np.float32(10.0) ** np.arange(-30, 2, dtype=np.float32)])
    x = np.concatenate([x, -x])
    want = ref.activate((fn, 0, 0), x.astype(np.float64))
    got = kernel(fn, 0, 0, x).astype(np.float64)
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-30)
    keep = np.abs(want) > 1e-37 if fn == ref.SIGMOID else np.ones_like(rel, bool)
    assert rel[keep].max() < 2e-6, (x[keep][rel[keep].argmax()], rel[keep].max())


@pytest.mark.parametrize("fn", sorted(ref.ACTIVATIONS))
def test_every_function_against_reference(fn):
    alpha, beta = {8: (-0.5, 0.6), 28: (0.1, -0.2)}.get(fn, (0.7, 0.3))
    x = np.linspace(-6, 6, 12_007, dtype=np.float32)   # avoids the breakpoints +-alpha exactly
    want = ref.activate((fn, alpha, beta), x.astype(np.float64))
    np.testing.assert_allclose(kernel(fn, alpha, beta, x), want, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("fn", sorted(ref.ACTIVATIONS))
def test_nan_propagates(fn):
    # a short row (the scalar tail) and a long one (the vectorized loop), NaN at odd positions
    for n in (2, 37):
        x = np.where(np.arange(n) % 2, np.float32(np.nan), np.float32(1.0))
        out = kernel(fn, 0.7, 0.3, x)
        assert np.isnan(out[1::2]).all() and not np.isnan(out[::2]).any()


def test_saturation_and_infinities():
    x = np.array([-np.inf, -1e4, 1e4, np.inf], np.float32)
    np.testing.assert_array_equal(kernel(ref.TANH, 0, 0, x), [-1, -1, 1, 1])
    s = kernel(ref.SIGMOID, 0, 0, x)
    assert s[2] == 1 and s[3] == 1 and 0 <= s[0] < 1e-37 and 0 <= s[1] < 1e-37


@pytest.mark.parametrize("fn", sorted(ref.DERIVATIVES))
def test_kernel_derivatives_against_reference(fn):
    from bnnslstm._abi import apply_activation_grad

    alpha, beta = {8: (-0.5, 0.6), 28: (0.1, -0.2)}.get(fn, (0.7, 0.3))
    x = np.linspace(-6, 6, 12_007, dtype=np.float32)
    val, der = np.empty_like(x), np.empty_like(x)
    apply_activation_grad(fn, alpha, beta, x, val, der)
    xd = x.astype(np.float64)
    np.testing.assert_allclose(val, ref.activate((fn, alpha, beta), xd), rtol=2e-6, atol=2e-6)
    # atol: in float32 a saturated tanh is exactly +-1, so tiny derivatives come out as 0
    np.testing.assert_allclose(der, ref.derivative((fn, alpha, beta), xd), rtol=1e-5, atol=1e-5)
