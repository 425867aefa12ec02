"""The default cell's elementwise passes (forward _cell.h, backward _cellgrad.h): the AVX2
intrinsics pass against gcc's C clones bit for bit, against float64, and the same result for a
unit wherever it lies in a row. The AVX2 pass is tested wherever the CPU can run it: AVX-512
CPUs take the C clones (their x86-64-v4 build), and the two agree bit for bit there too."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from bnnslstm._backward import _grad_pass

from bnnslstm._forward import _avx2_passes, _avx2_runs, _cell_pass

needs_avx2 = pytest.mark.skipif(not _avx2_runs(), reason="no AVX2 passes on this CPU")
# floats per vector of the C clone this CPU takes: 8 (x86-64-v3), 16 (v4, on AVX-512 CPUs)
C_WIDTH = 8 if _avx2_passes() else 16

# every float class the clamps and selects meet: NaN, infinities, signed zeros, subnormals,
# the clamps of exp (-87.34, 87, 88), of tanh (+-7.9053) and its small-x branch (4e-4), each
# with its neighbours
EDGES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 87.0, -87.0, 88.0,
                  -88.0, 87.33654, -87.33654, 7.9053111, -7.9053111, 4e-4, -4e-4, 1e4, -1e4],
                 np.float32)
EDGES = np.concatenate([EDGES, np.nextafter(EDGES, np.float32(np.inf)),
                        np.nextafter(EDGES, np.float32(-np.inf))])


def inputs(rng: np.random.Generator, shape: tuple, scale: float) -> np.ndarray:
    """Normal values times `scale`, about one in five replaced by an edge value."""
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    edge = rng.random(shape) < 0.2
    x[edge] = rng.choice(EDGES, int(edge.sum()))
    return x


def forward(g, bias, c, avx2: bool, u0: int = 0, u1: int | None = None, keep: bool = True):
    c = c.copy()
    h = np.full_like(c, -7.0)
    pre = np.full_like(g, -7.0)
    _cell_pass(g, bias, c, h, pre, u0, c.shape[1] if u1 is None else u1, avx2, keep)
    return c, h, pre


def backward(pre, cell, cprev, dy, dh_next, dc, avx2: bool):
    dc = dc.copy()
    da = np.full_like(pre, -7.0)
    _grad_pass(pre, cell, cprev, dy, dh_next, dc, da, avx2)
    return dc, da


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (signed zeros too), a NaN where the other has a NaN (its sign and payload
    depend on which operand of an instruction carried it)."""
    nan = np.isnan(a)
    return bool((nan == np.isnan(b)).all() and a[~nan].tobytes() == b[~nan].tobytes())


@needs_avx2
@pytest.mark.parametrize("H", [8, 16, 24, 48, 256])
@pytest.mark.parametrize("scale", [3.0, 100.0])
def test_forward_pass_matches_c(rng, H, scale):
    # whole vectors (H a multiple of the clone's width): gcc's clones run every unit in vector
    # code, whose operations and contractions the AVX2 pass repeats
    if H % C_WIDTH:
        pytest.skip(f"H = {H} leaves units to the C clone's scalar code at width {C_WIDTH}")
    g, c = inputs(rng, (5, 4 * H), scale), inputs(rng, (5, H), scale)
    bias = inputs(rng, (4 * H,), 1.0)
    for a, b in zip(forward(g, bias, c, True), forward(g, bias, c, False), strict=True):
        assert same(a, b)
    # inference (no pre-activations kept): the same c and h, pre left alone
    for avx2 in (True, False):
        c1, h1, pre1 = forward(g, bias, c, avx2, keep=False)
        c2, h2, _ = forward(g, bias, c, avx2)
        assert same(c1, c2) and same(h1, h2)
        assert (pre1 == -7).all()


@needs_avx2
@pytest.mark.parametrize("H", [8, 16, 24, 48, 256])
@pytest.mark.parametrize("scale", [3.0, 100.0])
def test_backward_pass_matches_c(rng, H, scale):
    pre = inputs(rng, (5, 4 * H), scale)
    cell, cprev, dy, dh_next, dc = (inputs(rng, (5, H), scale) for _ in range(5))
    one = backward(pre, cell, cprev, dy, dh_next, dc, True)
    two = backward(pre, cell, cprev, dy, dh_next, dc, False)
    for a, b in zip(one, two, strict=True):
        assert same(a, b)


@needs_avx2
@pytest.mark.parametrize("H", [1, 5, 7, 9, 15, 17, 23, 37])
def test_a_unit_does_not_depend_on_where_it_lies(rng, H):
    # rows that end in part of a vector (masked lanes) and unit ranges that start anywhere:
    # each unit's result is the one it gets in a whole vector of a wider row
    W = 48
    g, c = inputs(rng, (3, 4 * W), 3.0), inputs(rng, (3, W), 3.0)
    bias = inputs(rng, (4 * W,), 1.0)
    wide = forward(g, bias, c, True)
    narrow_g = np.ascontiguousarray(g.reshape(3, 4, W)[:, :, :H].reshape(3, 4 * H))
    narrow_b = np.ascontiguousarray(bias.reshape(4, W)[:, :H].reshape(4 * H))
    narrow = forward(narrow_g, narrow_b, np.ascontiguousarray(c[:, :H]), True)
    assert same(narrow[0], wide[0][:, :H]) and same(narrow[1], wide[1][:, :H])
    assert same(narrow[2], np.ascontiguousarray(wide[2].reshape(3, 4, W)[:, :, :H]).reshape(3, -1))
    u0 = min(H, 3)                       # units [u0, H) of the wide row; the others untouched
    part = forward(g, bias, c, True, u0, H)
    assert same(part[0][:, u0:H], wide[0][:, u0:H]) and same(part[0][:, :u0], c[:, :u0])
    assert same(part[1][:, u0:H], wide[1][:, u0:H]) and (part[1][:, H:] == -7).all()
    pre, pre_wide = part[2].reshape(3, 4, W), wide[2].reshape(3, 4, W)
    assert same(pre[:, :, u0:H], pre_wide[:, :, u0:H]) and (pre[:, :, H:] == -7).all()
    # the backward: the first H units of a W-wide row
    p, cell, cprev, dy, dh_next, dc = inputs(rng, (3, 4 * W), 3.0), *(
        inputs(rng, (3, W), 3.0) for _ in range(5))
    dcw, daw = backward(p, cell, cprev, dy, dh_next, dc, True)
    cut = [np.ascontiguousarray(a[:, :H]) for a in (cell, cprev, dy, dh_next, dc)]
    pn = np.ascontiguousarray(p.reshape(3, 4, W)[:, :, :H].reshape(3, 4 * H))
    dcn, dan = backward(pn, *cut, True)
    assert same(dcn, dcw[:, :H])
    assert same(dan, np.ascontiguousarray(daw.reshape(3, 4, W)[:, :, :H]).reshape(3, -1))


@pytest.mark.parametrize("avx2", [False, pytest.param(True, marks=needs_avx2)])
@pytest.mark.parametrize("H", [13, 64])
def test_passes_against_float64(rng, avx2, H):
    # spec 3.5 and 4.3 in float64 (pre-activations within the functions' accurate range)
    g = rng.standard_normal((4, 4 * H)).astype(np.float32) * 4
    bias = rng.standard_normal(4 * H).astype(np.float32)
    c0 = rng.standard_normal((4, H)).astype(np.float32)
    c, h, pre = forward(g, bias, c0, avx2)
    a = (g + bias).astype(np.float64).reshape(4, 4, H)
    i, f, o = ref.sigmoid(a[:, 0]), ref.sigmoid(a[:, 1]), ref.sigmoid(a[:, 3])
    gg = np.tanh(a[:, 2])
    want_c = f * c0 + i * gg
    np.testing.assert_allclose(c, want_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, o * np.tanh(want_c), rtol=1e-5, atol=1e-6)
    assert same(pre, g + bias)
    dy, dh_next, dc0 = (rng.standard_normal((4, H)).astype(np.float32) for _ in range(3))
    dc, da = backward(pre, c, c0, dy, dh_next, dc0, avx2)
    th = np.tanh(c.astype(np.float64))
    dh = dy.astype(np.float64) + dh_next
    d = dc0 + dh * o * (1 - th * th)
    want = np.stack([d * gg * i * (1 - i), d * c0 * f * (1 - f), d * i * (1 - gg * gg),
                     dh * th * o * (1 - o)], axis=1).reshape(4, 4 * H)
    np.testing.assert_allclose(da, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dc, d * f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("avx2", [False, pytest.param(True, marks=needs_avx2)])
def test_nan_stays_in_its_unit(avx2):
    H = 19
    g = np.zeros((2, 4 * H), np.float32)
    g[1, 2 * H + 17] = np.nan                     # the g gate of unit 17, row 1
    c, h, _ = forward(g, np.zeros(4 * H, np.float32), np.zeros((2, H), np.float32), avx2)
    bad = np.isnan(c) | np.isnan(h)
    assert bad[1, 17] and bad.sum() == 1 and np.isnan(c[1, 17]) and np.isnan(h[1, 17])


def test_shape_errors():
    g, c = np.zeros((2, 32), np.float32), np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError):
        _cell_pass(g, np.zeros(32, np.float32), c, c.copy(), g.copy(), 0, 9, False, True)
    with pytest.raises(ValueError):
        _grad_pass(g, c, c, c, c, np.zeros((3, 8), np.float32), g.copy(), False)
