"""BLAS back ends: one dispatch point, switched at run time, same results."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sysconfig

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm import _blas

COUNTING_BLAS = r"""
/* A "BLAS" that counts sgemm calls and forwards them to a real one. */
typedef void (*sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                        int *, float *, float *, int *);
static sgemm_t real;
long calls;
void set_real(void *fn) { real = (sgemm_t)fn; }
void sgemm_(char *ta, char *tb, int *m, int *n, int *k, float *alpha, float *a, int *lda,
            float *b, int *ldb, float *beta, float *c, int *ldc) {
    calls++;
    real(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
"""


@pytest.fixture(scope="module")
def counting_blas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blas")
    src, lib = tmp / "counting.c", tmp / "libcounting.so"
    src.write_text(COUNTING_BLAS)
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    subprocess.run([*cc.split(), "-shared", "-fPIC", "-O1", str(src), "-o", str(lib)],
                   check=True)
    handle = ctypes.CDLL(str(lib))
    handle.set_real(ctypes.c_void_p(_blas._scipy_address()))
    return str(lib), handle


def training_step(seed: int = 0):
    """Forward + backward on a batch large enough for BLAS on every product."""
    rng = np.random.default_rng(seed)
    lstm = bl.LSTM(6, 16, 2, bidirectional=True, peephole="full", seed=seed)
    x = rng.standard_normal((7, 20, 6)).astype(np.float32)
    y, _ = lstm.forward(x, training=True)
    dx, dh0, dc0 = lstm.backward(rng.standard_normal(y.shape).astype(np.float32))
    return [y, dx, dh0, dc0] + [lstm.grads[k] for k in sorted(lstm.grads)]


def test_every_gemm_goes_through_the_selected_back_end(counting_blas):
    # every GEMM the kernels do not do themselves, including the backward's products, which
    # the default back end runs on our own kernel on AVX-512 or AVX2
    path, handle = counting_blas
    with bl.blas("scipy"):
        reference = training_step()
    calls = ctypes.c_long.in_dll(handle, "calls")
    before = calls.value
    with bl.blas(path):
        assert bl.current_blas() == path
        assert _blas._current_address() != _blas._scipy_address()
        results = training_step()
    assert calls.value > before
    after = calls.value
    training_step()                             # the with-block restored the default
    assert calls.value == after and bl.current_blas() == "auto"
    assert _blas._own_products() == _blas._kernel_available()
    for a, b in zip(results, reference, strict=True):   # same real BLAS behind: identical
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(set(bl.available_blas()) - {"auto"}))
def test_installed_back_ends_agree(name):
    reference = training_step()
    with bl.blas(name):
        results = training_step()
    for a, b in zip(results, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_second_back_end_present_in_ci():
    # CI installs scipy-openblas32 with the test extras, so that two back ends are compared.
    if os.environ.get("CI"):
        assert "openblas32" in bl.available_blas()


def test_bad_back_ends_are_clear_errors(counting_blas, tmp_path):
    with pytest.raises(bl.BNNSError, match="not installed|cannot load"):
        bl.set_blas("no-such-blas")
    with pytest.raises(bl.BNNSError, match="cannot load"):
        bl.set_blas(str(tmp_path / "missing.so"))
    with pytest.raises(bl.BNNSError, match="exports none of dgemm_x"):
        bl.set_blas(counting_blas[0], symbol="dgemm_x")
    assert bl.current_blas() == "auto"


def test_default_runs_the_products_on_our_kernel_where_available(counting_blas):
    # "auto" is scipy's BLAS with the backward's products on our kernel (AVX-512 or AVX2): training
    # then calls no sgemm at all (no full peepholes); any chosen back end gets the products.
    path, handle = counting_blas
    calls = ctypes.c_long.in_dll(handle, "calls")
    rng = np.random.default_rng(0)
    lstm = bl.LSTM(6, 16, 2, bidirectional=True, seed=0)
    x = rng.standard_normal((7, 20, 6)).astype(np.float32)
    dy = rng.standard_normal((7, 20, 32)).astype(np.float32)

    def sgemm_calls() -> int:
        before = calls.value
        lstm.forward(x, training=True)
        lstm.backward(dy)
        return calls.value - before

    assert _blas._own_products() == _blas._kernel_available()
    with bl.blas(path):
        assert not _blas._own_products()
        assert sgemm_calls() > 0
        _blas._select(_blas._current_address(), True)   # the counting library under auto's rule
        assert (sgemm_calls() == 0) == _blas._kernel_available()
    assert bl.current_blas() == "auto" and _blas._own_products() == _blas._kernel_available()
