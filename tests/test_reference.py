"""The float64 reference backward, validated by central finite differences of the reference
forward, for every feature combination (so that it can serve as the kernel's oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from problems import random_problem

EPS = 1e-6


def loss(p, dy, dhn, dcn, masks=None):
    y, hn, cn = ref.forward(p, masks)
    return float((dy * y).sum() + (dhn * hn).sum() + (dcn * cn).sum())


def entries(rng, a, count=6):
    idx = rng.choice(a.size, size=min(count, a.size), replace=False)
    return [np.unravel_index(i, a.shape) for i in idx]


def fd_check(rng, p, masks=None):
    f64 = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
    # differentiate in float64: promote the problem's arrays
    for name in ("x", "h0", "c0"):
        setattr(p, name, f64(getattr(p, name)))
    for name in ("wx0", "wx1", "wh", "wc", "b"):
        arrays = getattr(p, name)
        if arrays is not None:
            setattr(p, name, [f64(a) for a in arrays])
    S, N, D, H, L = p.S, p.N, p.D, p.H, p.L
    dy = rng.standard_normal((S, N, D * H))
    dhn, dcn = rng.standard_normal((L, D, N, H)), rng.standard_normal((L, D, N, H))
    g = ref.backward(p, dy, dhn, dcn, masks)
    targets = [(p.x, g["x"]), (p.h0, g["h0"]), (p.c0, g["c0"])]
    for name in ("wx0", "wx1", "wh", "wc", "b"):
        if getattr(p, name) is not None:
            targets += [(a, ga) for a, ga in zip(getattr(p, name), g[name], strict=True)
                        if a is not None]
    for a, ga in targets:
        for i in entries(rng, a):
            keep = a[i]
            a[i] = keep + EPS
            up = loss(p, dy, dhn, dcn, masks)
            a[i] = keep - EPS
            down = loss(p, dy, dhn, dcn, masks)
            a[i] = keep
            np.testing.assert_allclose(ga[i], (up - down) / (2 * EPS), rtol=1e-5, atol=1e-7)


ACT_CASES = [None, [(2, 0.1, 0), (15, 0.2, 0.5), (5, 1.2, 0.8), (17, 0, 0)],
             [(31, 0, 0), (35, 0, 0), (12, 0.8, 0.04), (16, 1.1, 0.9)]]


@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("peephole", [None, "full", "diag", ["full", None, "diag", "full"]])
@pytest.mark.parametrize("acts", range(len(ACT_CASES)))
def test_reference_backward_by_finite_differences(rng, bidir, L, peephole, acts):
    act = ACT_CASES[acts]
    p = random_problem(rng, I=3, H=3, N=3, L=L, S=4, bidir=bidir, peephole=peephole,
                       acts=act, hidden_act=(4, 0, 0) if act else None,
                       bias=[True, False, True, True], lengths=[4, 2, 1])
    fd_check(rng, p)


def test_reference_backward_with_dropout_masks(rng):
    p = random_problem(rng, I=3, H=3, N=2, L=3, S=3, bidir=True)
    p.dropout = 0.4
    masks = [rng.random((3, 2, 6)) > 0.4 for _ in range(2)]
    fd_check(rng, p, masks)


@pytest.mark.parametrize("fn", sorted(ref.DERIVATIVES))
def test_reference_activation_derivatives(fn):
    alpha, beta = {8: (-0.5, 0.6), 28: (0.1, -0.2)}.get(fn, (0.7, 0.3))
    x = np.linspace(-4, 4, 801) + 0.0031   # off the kinks
    h = 1e-6
    numeric = (ref.activate((fn, alpha, beta), x + h) - ref.activate((fn, alpha, beta), x - h))
    np.testing.assert_allclose(ref.derivative((fn, alpha, beta), x), numeric / (2 * h),
                               rtol=1e-5, atol=1e-6)
