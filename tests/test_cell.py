"""The default cell's elementwise passes (forward _cell.h, backward _cellgrad.h): the intrinsics
passes (AVX2, AVX-512: _simd.h) against gcc's C clones bit for bit, against float64, and the
same result for a unit wherever it lies in a row. Each intrinsics pass is tested wherever the
CPU can run it, taken or not: an AVX-512 CPU takes the 16-float one (the forward's in inference
only) and runs the 8-float one too, and both agree bit for bit with its clone of the C forms
(x86-64-v4)."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from bnnslstm._backward import _grad_pass

from bnnslstm._forward import _cell_pass, _simd_width, _simd_widths

# the intrinsics passes this CPU runs (none: the tests of them skip)
WIDTHS = _simd_widths() or [pytest.param(0, marks=pytest.mark.skip("no intrinsics passes"))]
# floats per vector of the C clone this CPU takes: 8 (x86-64-v3), 16 (v4, on AVX-512 CPUs)
C_WIDTH = 16 if _simd_width() == 16 else 8

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


def forward(g, bias, c, width: int, u0: int = 0, u1: int | None = None, keep: bool = True):
    c = c.copy()
    h = np.full_like(c, -7.0)
    pre = np.full_like(g, -7.0)
    _cell_pass(g, bias, c, h, pre, u0, c.shape[1] if u1 is None else u1, width, keep)
    return c, h, pre


def backward(pre, cell, cprev, dy, dh_next, dc, width: int):
    dc = dc.copy()
    da = np.full_like(pre, -7.0)
    _grad_pass(pre, cell, cprev, dy, dh_next, dc, da, width)
    return dc, da


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (signed zeros too), a NaN where the other has a NaN (its sign and payload
    depend on which operand of an instruction carried it)."""
    nan = np.isnan(a)
    return bool((nan == np.isnan(b)).all() and a[~nan].tobytes() == b[~nan].tobytes())


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("H", [8, 16, 24, 48, 256])
@pytest.mark.parametrize("scale", [3.0, 100.0])
def test_forward_pass_matches_c(rng, width, H, scale):
    # whole vectors (H a multiple of the clone's width): gcc's clones run every unit in vector
    # code, whose operations and contractions the intrinsics passes repeat
    if H % C_WIDTH:
        pytest.skip(f"H = {H} leaves units to the C clone's scalar code at width {C_WIDTH}")
    g, c = inputs(rng, (5, 4 * H), scale), inputs(rng, (5, H), scale)
    bias = inputs(rng, (4 * H,), 1.0)
    for a, b in zip(forward(g, bias, c, width), forward(g, bias, c, 0), strict=True):
        assert same(a, b)
    # inference (no pre-activations kept): the same c and h, pre left alone
    for w in (width, 0):
        c1, h1, pre1 = forward(g, bias, c, w, keep=False)
        c2, h2, _ = forward(g, bias, c, w)
        assert same(c1, c2) and same(h1, h2)
        assert (pre1 == -7).all()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("H", [8, 16, 24, 48, 256])
@pytest.mark.parametrize("scale", [3.0, 100.0])
def test_backward_pass_matches_c(rng, width, H, scale):
    pre = inputs(rng, (5, 4 * H), scale)
    cell, cprev, dy, dh_next, dc = (inputs(rng, (5, H), scale) for _ in range(5))
    one = backward(pre, cell, cprev, dy, dh_next, dc, width)
    two = backward(pre, cell, cprev, dy, dh_next, dc, 0)
    for a, b in zip(one, two, strict=True):
        assert same(a, b)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("H", [1, 5, 7, 9, 15, 17, 23, 31, 37])
def test_a_unit_does_not_depend_on_where_it_lies(rng, width, H):
    # rows that end in part of a vector (masked lanes) and unit ranges that start anywhere:
    # each unit's result is the one it gets in a whole vector of a wider row
    W = 48
    g, c = inputs(rng, (3, 4 * W), 3.0), inputs(rng, (3, W), 3.0)
    bias = inputs(rng, (4 * W,), 1.0)
    wide = forward(g, bias, c, width)
    narrow_g = np.ascontiguousarray(g.reshape(3, 4, W)[:, :, :H].reshape(3, 4 * H))
    narrow_b = np.ascontiguousarray(bias.reshape(4, W)[:, :H].reshape(4 * H))
    narrow = forward(narrow_g, narrow_b, np.ascontiguousarray(c[:, :H]), width)
    assert same(narrow[0], wide[0][:, :H]) and same(narrow[1], wide[1][:, :H])
    assert same(narrow[2], np.ascontiguousarray(wide[2].reshape(3, 4, W)[:, :, :H]).reshape(3, -1))
    u0 = min(H, 3)                       # units [u0, H) of the wide row; the others untouched
    part = forward(g, bias, c, width, u0, H)
    assert same(part[0][:, u0:H], wide[0][:, u0:H]) and same(part[0][:, :u0], c[:, :u0])
    assert same(part[1][:, u0:H], wide[1][:, u0:H]) and (part[1][:, H:] == -7).all()
    pre, pre_wide = part[2].reshape(3, 4, W), wide[2].reshape(3, 4, W)
    assert same(pre[:, :, u0:H], pre_wide[:, :, u0:H]) and (pre[:, :, H:] == -7).all()
    # the backward: the first H units of a W-wide row
    p, cell, cprev, dy, dh_next, dc = inputs(rng, (3, 4 * W), 3.0), *(
        inputs(rng, (3, W), 3.0) for _ in range(5))
    dcw, daw = backward(p, cell, cprev, dy, dh_next, dc, width)
    cut = [np.ascontiguousarray(a[:, :H]) for a in (cell, cprev, dy, dh_next, dc)]
    pn = np.ascontiguousarray(p.reshape(3, 4, W)[:, :, :H].reshape(3, 4 * H))
    dcn, dan = backward(pn, *cut, width)
    assert same(dcn, dcw[:, :H])
    assert same(dan, np.ascontiguousarray(daw.reshape(3, 4, W)[:, :, :H]).reshape(3, -1))


@pytest.mark.parametrize("width", [0, *WIDTHS])
@pytest.mark.parametrize("H", [13, 64])
def test_passes_against_float64(rng, width, H):
    # spec 3.5 and 4.3 in float64 (pre-activations within the functions' accurate range)
    g = rng.standard_normal((4, 4 * H)).astype(np.float32) * 4
    bias = rng.standard_normal(4 * H).astype(np.float32)
    c0 = rng.standard_normal((4, H)).astype(np.float32)
    c, h, pre = forward(g, bias, c0, width)
    a = (g + bias).astype(np.float64).reshape(4, 4, H)
    i, f, o = ref.sigmoid(a[:, 0]), ref.sigmoid(a[:, 1]), ref.sigmoid(a[:, 3])
    gg = np.tanh(a[:, 2])
    want_c = f * c0 + i * gg
    np.testing.assert_allclose(c, want_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, o * np.tanh(want_c), rtol=1e-5, atol=1e-6)
    assert same(pre, g + bias)
    dy, dh_next, dc0 = (rng.standard_normal((4, H)).astype(np.float32) for _ in range(3))
    dc, da = backward(pre, c, c0, dy, dh_next, dc0, width)
    th = np.tanh(c.astype(np.float64))
    dh = dy.astype(np.float64) + dh_next
    d = dc0 + dh * o * (1 - th * th)
    want = np.stack([d * gg * i * (1 - i), d * c0 * f * (1 - f), d * i * (1 - gg * gg),
                     dh * th * o * (1 - o)], axis=1).reshape(4, 4 * H)
    np.testing.assert_allclose(da, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dc, d * f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("width", [0, *WIDTHS])
def test_nan_stays_in_its_unit(width):
    H = 19
    g = np.zeros((2, 4 * H), np.float32)
    g[1, 2 * H + 17] = np.nan                     # the g gate of unit 17, row 1
    c, h, _ = forward(g, np.zeros(4 * H, np.float32), np.zeros((2, H), np.float32), width)
    bad = np.isnan(c) | np.isnan(h)
    assert bad[1, 17] and bad.sum() == 1 and np.isnan(c[1, 17]) and np.isnan(h[1, 17])


def test_shape_errors():
    g, c = np.zeros((2, 32), np.float32), np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError):
        _cell_pass(g, np.zeros(32, np.float32), c, c.copy(), g.copy(), 0, 9, 0, True)
    with pytest.raises(ValueError):
        _grad_pass(g, c, c, c, c, np.zeros((3, 8), np.float32), g.copy(), 0)
