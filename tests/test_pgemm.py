"""The packed GEMM (_pgemm.h) on its own: every register-block shape and edge the kernels can
meet (row blocks of 1 to 9 rows, partial panels, k not a multiple of 16, gates split between
threads), against float64 numpy, and nothing written outside C[:m, :n]; its direct form (W
packed block by block as the rows pass) and its reversed panel order (alternate time steps)
against the same and bit for bit against the packed form."""
import itertools

import numpy as np
import pytest

from bnnslstm._forward import _pgemm


def case(rng, m, n, k, transposed):
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n) if transposed else (n, k)).astype(np.float32)
    c = np.full((m, n + 5), np.nan, np.float32)      # 5 padding columns must stay NaN
    c[:, :n] = rng.standard_normal((m, n)).astype(np.float32)
    want = c[:, :n].astype(np.float64) + a.astype(np.float64) @ (
        w.astype(np.float64) if transposed else w.astype(np.float64).T)
    return a, w, c, want


@pytest.mark.parametrize("m", [1, 2, 3, 5, 7, 8, 9, 10, 16, 17, 18, 23, 26, 64, 100])
@pytest.mark.parametrize("gates", [1, 3, 4])
@pytest.mark.parametrize("direct", [False, True])
def test_matches_float64(rng, m, gates, direct):
    for H, k in itertools.product([1, 15, 16, 17, 40, 100], [1, 7, 16, 33]):
        for helper in (False, True):
            a, w, c, want = case(rng, m, gates * H, k, False)
            _pgemm(a, w, c, gates, False, helper, direct)
            np.testing.assert_allclose(c[:, :gates * H], want, rtol=1e-5, atol=1e-5 * k)
            assert np.isnan(c[:, gates * H:]).all()


def test_a_row_does_not_depend_on_the_row_count(rng):
    # The row blocks (up to 9 rows, near-equal sizes: 17 rows are 9 + 8, 64 are 8 x 8) change
    # with m; each element is the same dot product in k order whatever block holds its row.
    a, w, c, _ = case(rng, 40, 4 * 40, 33, False)
    whole = c.copy()
    _pgemm(a, w, whole, 4, False, False)
    for m in range(1, 40):
        part = c[:m].copy()
        _pgemm(a[:m].copy(), w, part, 4, False, False)
        assert np.array_equal(part, whole[:m], equal_nan=True), m


@pytest.mark.parametrize("m", [1, 2, 3, 8, 23])
def test_direct_is_the_packed_product_bit_for_bit(rng, m):
    # 100 units = 7 panels per gate: blocks of 6 (m <= 2) or 3 panels end inside a gate. With
    # whole panels per gate (80, 32 units) the direct form's chunks (6 panels at these k) span
    # gates, and the second thread's half starts inside one
    for H, k in ((100, 33), (40, 64), (17, 5), (80, 600), (32, 1024)):
        a, w, c, _ = case(rng, m, 4 * H, k, False)
        packed, direct = c.copy(), c.copy()
        _pgemm(a, w, packed, 4, False, False)
        _pgemm(a, w, direct, 4, False, True, True)
        assert np.array_equal(packed, direct, equal_nan=True)


@pytest.mark.parametrize("m", [1, 2, 3, 8, 23])
@pytest.mark.parametrize(("gates", "transposed"), [(1, False), (4, False), (1, True)])
def test_reversed_panel_order_is_bit_identical(rng, m, gates, transposed):
    # the time loops visit the panels last to first on every other step
    for H, k, helper in itertools.product((17, 100), (5, 33), (False, True)):
        a, w, c, want = case(rng, m, gates * H, k, transposed)
        forward, backward = c.copy(), c.copy()
        _pgemm(a, w, forward, gates, transposed, helper)
        _pgemm(a, w, backward, gates, transposed, helper, rev=True)
        assert np.array_equal(forward, backward, equal_nan=True)
        np.testing.assert_allclose(backward[:, :gates * H], want, rtol=1e-5, atol=1e-5 * k)


@pytest.mark.parametrize("m", [1, 4, 9, 64])
def test_transposed_matches_float64(rng, m):
    for n, k in itertools.product([1, 16, 17, 40], [1, 16, 64, 130]):
        a, w, c, want = case(rng, m, n, k, True)
        _pgemm(a, w, c, 1, True, False)
        np.testing.assert_allclose(c[:, :n], want, rtol=1e-5, atol=1e-5 * k)
        assert np.isnan(c[:, n:]).all()


@pytest.mark.parametrize("m", [1, 3, 4, 5, 9])
def test_group_edges_are_bit_identical(rng, m):
    # No block crosses a range of 6 panels (the wide layout's groups; the narrow layout
    # packs panels one by one): 7, 11 and 13 panels per gate end in ranges of 1, 5 and 1;
    # two threads split 3 gates of 7 panels inside a range; reversed blocks (2 + 3 of a range
    # of 5) and kept panels (written while multiplying) give the same bits as the packed
    # product.
    for gates, H, k in ((1, 100, 33), (3, 112, 20), (4, 170, 17), (1, 208, 40)):
        for helper in (False, True):
            a, w, c, want = case(rng, m, gates * H, k, False)
            runs = {name: c.copy() for name in ("packed", "rev", "direct", "twice", "keep")}
            _pgemm(a, w, runs["packed"], gates, False, helper)
            _pgemm(a, w, runs["rev"], gates, False, helper, rev=True)
            _pgemm(a, w, runs["direct"], gates, False, helper, direct=True)
            _pgemm(a, w, runs["twice"], gates, False, helper)
            _pgemm(a, w, runs["twice"], gates, False, helper)
            _pgemm(a, w, runs["keep"], gates, False, helper, keep=True)
            np.testing.assert_allclose(runs["packed"][:, :gates * H], want, rtol=1e-5,
                                       atol=1e-5 * k)
            for name in ("rev", "direct"):
                assert np.array_equal(runs[name], runs["packed"], equal_nan=True), name
            assert np.array_equal(runs["keep"], runs["twice"], equal_nan=True)


@pytest.mark.parametrize("m", [2, 3, 4, 16, 23, 64])
def test_weights_past_the_prefetch_size(rng, m):
    # packed W over 8 MiB: each block of panels prefetches the next (bl_pf), in the shares of
    # the row blocks, to the end of each gate (33 panels: the last block is partial); on AVX2
    # also at 2 to 4 rows, where blocks of 2 or 3 panels prefetch the next such block
    for gates, H, k, transposed in ((4, 520, 1100, False), (1, 1100, 2100, True)):
        a, w, c, want = case(rng, m, gates * H, k, transposed)
        forward, backward = c.copy(), c.copy()
        _pgemm(a, w, forward, gates, transposed, True)
        _pgemm(a, w, backward, gates, transposed, False, rev=True)
        np.testing.assert_allclose(forward[:, :gates * H], want, rtol=1e-5, atol=1e-5 * k)
        assert np.array_equal(forward, backward, equal_nan=True)


@pytest.mark.parametrize("direct", [False, True])
def test_helper_split_is_bit_identical(rng, direct):
    # 3 gates of 40 units: 3 panels each, so the two halves (4 and 5 panels) meet in a gate
    for m in (1, 6, 33):
        a, w, c, _ = case(rng, m, 3 * 40, 50, False)
        one, two = c.copy(), c.copy()
        _pgemm(a, w, one, 3, False, False, direct)
        _pgemm(a, w, two, 3, False, True, direct)
        assert np.array_equal(one, two, equal_nan=True)


def test_bad_shapes_are_refused(rng):
    a, w, c, _ = case(rng, 3, 8, 5, False)
    with pytest.raises(ValueError, match="shapes"):
        _pgemm(a, w, c, 3, False, False)         # 8 rows are not 3 gates
    with pytest.raises(ValueError, match="shapes"):
        _pgemm(np.ascontiguousarray(a[:, :4]), w, c, 1, False, False)  # k mismatch
    with pytest.raises(ValueError, match="shapes"):
        _pgemm(a, w[:6], c, 3, False, False, True, True)   # no reversed direct form
