"""The backward's whole-sequence products on our kernel (_bgemm.h): dX = dA W_x (A as it lies)
and dW = dA^T X (A transposed in blocks), against float64 numpy at every edge the blocking
meets (row groups and their tails, partial panels, k in several blocks), writing nothing outside
C, and bit for bit the same when two threads each take half of the columns."""
import itertools

import numpy as np
import pytest
from bnnslstm._backward import _bgemm, _bgemm2

from bnnslstm._blas import _kernel_available

pytestmark = [pytest.mark.skipif(not _kernel_available(),
                                 reason="neither AVX-512 nor AVX2: BLAS does these"),
              pytest.mark.usefixtures("dw_blocks")]


def case(rng, m, n, k, at):
    a = rng.standard_normal((k, m) if at else (m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = np.full((m, n + 5), np.nan, np.float32)      # 5 padding columns must stay NaN
    c[:, :n] = rng.standard_normal((m, n)).astype(np.float32)
    op = a.astype(np.float64).T if at else a.astype(np.float64)
    return a, b, c, op @ b.astype(np.float64)


# rows: below, at and past a register block (8) and a row group (48; transposed 48 or 96); k:
# one block, and past a block (as it lies: 2048 for a few panels, 848 for the 19 of 300 columns;
# transposed: 160 or 800). Every test of this file runs both of dW's blockings (dw_blocks).
@pytest.mark.parametrize(("at", "ms", "ns", "ks"), [
    (False, (1, 7, 9, 48, 49, 100), (1, 16, 17, 50), (1, 17, 2100)),
    (False, (1, 49), (300,), (17, 2100)),
    (True, (1, 7, 9, 48, 49, 97, 100), (1, 16, 17, 50), (1, 17, 161, 801, 1700)),
])
@pytest.mark.parametrize("add", [False, True])
def test_matches_float64(rng, at, ms, ns, ks, add):
    for m, n, k in itertools.product(ms, ns, ks):
        a, b, c, product = case(rng, m, n, k, at)
        want = product + (c[:, :n].astype(np.float64) if add else 0.0)
        _bgemm(a, b, c, at, add)
        np.testing.assert_allclose(c[:, :n], want, rtol=1e-5, atol=1e-5 * np.sqrt(k) * 4)
        assert np.isnan(c[:, n:]).all()


@pytest.mark.parametrize("at", [False, True])
def test_column_halves_are_the_whole_bit_for_bit(rng, at):
    # the backward's two parts each take whole panels of dX's columns
    for m, n, k in ((49, 50, 2100), (97, 33, 1700), (5, 17, 3)):
        a, b, c, _ = case(rng, m, n, k, at)
        whole, halves = c.copy(), c.copy()
        _bgemm(a, b, whole, at, True)
        mid = (n + 15) // 16 // 2 * 16
        _bgemm(a, b, halves, at, True, 0, mid)
        _bgemm(a, b, halves, at, True, mid, n)
        assert np.array_equal(whole, halves, equal_nan=True)


@pytest.mark.parametrize("at", [False, True])
def test_a_buffer_for_n_columns_serves_fewer(rng, at):
    # dx_part's halves run in a buffer sized for dX's whole width; k blocks as they lie depend
    # on the columns (more k for fewer), yet the buffer must hold the narrower product's
    # panels: every width up to 1200 against buffers for 1200 and for the nearest panel above
    k = 2100
    a = rng.standard_normal((k, 3) if at else (3, k)).astype(np.float32)
    b = rng.standard_normal((k, 1200)).astype(np.float32)
    want = (a.astype(np.float64).T if at else a.astype(np.float64)) @ b.astype(np.float64)
    for n in range(1, 1201, 7):
        for sized_for in (1200, min(1200, (n + 15) // 16 * 16 + 16)):
            c = np.zeros((3, 1200), np.float32)
            _bgemm(a, b, c, at, False, 0, n, sized_for)      # raises if it wrote past
            np.testing.assert_allclose(c[:, :n], want[:, :n], rtol=1e-5, atol=1e-3)


def test_two_products_share_the_transposition_bit_for_bit(rng):
    # dW_x and dW_h in one call: each as its own call gives, past a k block and a row group
    for m, n1, n2, k in ((97, 50, 17, 1700), (9, 64, 48, 801), (3, 1, 16, 5)):
        a, b1, c1, want1 = case(rng, m, n1, k, True)
        b2 = rng.standard_normal((k, n2)).astype(np.float32)
        c2 = np.full((m, n2 + 3), np.nan, np.float32)
        one1, one2 = c1.copy(), c2.copy()
        _bgemm2(a, b1, c1, b2, c2)
        _bgemm(a, b1, one1, True, False)
        _bgemm(a, b2, one2, True, False)
        assert np.array_equal(c1, one1, equal_nan=True)
        assert np.array_equal(c2, one2, equal_nan=True)
        np.testing.assert_allclose(c1[:, :n1], want1, rtol=1e-5, atol=1e-5 * np.sqrt(k) * 4)
        assert np.isnan(c1[:, n1:]).all() and np.isnan(c2[:, n2:]).all()


def test_the_blockings_sum_in_their_own_k_blocks(rng, dw_blocks):
    # The chosen blocking is the one that runs: dA^T's k = 1700 is summed in blocks of 160 or
    # 800, so the two give different last bits (each against float64 in the tests above)
    from bnnslstm._backward import _dw_l1_blocks
    a, b, c, _ = case(rng, 100, 50, 1700, True)
    mine, other = c.copy(), c.copy()
    _bgemm(a, b, mine, True, False)
    _dw_l1_blocks(not dw_blocks)
    _bgemm(a, b, other, True, False)      # the fixture chooses the CPU's blocks back
    assert not np.array_equal(mine, other, equal_nan=True)


def test_bad_shapes_are_refused(rng):
    a, b, c, _ = case(rng, 3, 8, 5, False)
    with pytest.raises(ValueError, match="shapes"):
        _bgemm(a, b[:4], c, False, False)
    with pytest.raises(ValueError, match="shapes"):
        _bgemm(a, b, c, False, False, 4, 2)
