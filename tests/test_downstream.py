"""A downstream Cython module, compiled against the installed package, cimports the ABI."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from downstream import apple_constants, build_module
from test_layout import SPEC

import bnnslstm as bl


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    try:
        return build_module(tmp_path_factory.mktemp("downstream"))
    except subprocess.CalledProcessError as e:  # show the compiler's words, not just the code
        pytest.fail(f"downstream build failed:\n{e.stdout}\n{e.stderr}")


def test_constants_match_python_enums(downstream):
    # bnns.pxd and the Python enums are two transcriptions of spec section 2.
    assert downstream.constants() == apple_constants()


def test_struct_sizes(downstream):
    assert downstream.sizes() == {k: v[0] for k, v in SPEC.items()}


def test_forward_under_nogil_matches_python_api(downstream, rng):
    I, H, N, S = 5, 6, 3, 7
    x = rng.standard_normal((S, N, I)).astype(np.float32)
    lstm = bl.LSTM(I, H, seed=1)
    wx = np.stack([lstm.params[f"w_x_{g}_l0"] for g in ("input", "forget", "candidate", "output")])
    wh = np.stack([lstm.params[f"w_h_{g}_l0"] for g in ("input", "forget", "candidate", "output")])
    b = np.stack([lstm.params[f"b_{g}_l0"] for g in ("input", "forget", "candidate", "output")])
    y = np.full((S, N, H), 7.0, np.float32)
    hn = np.full((N, H), 7.0, np.float32)
    cn = np.full((N, H), 7.0, np.float32)
    rc, err, abi = downstream.forward(I, H, N, S, x.ctypes.data, wx.ctypes.data, wh.ctypes.data,
                                      b.ctypes.data, y.ctypes.data, hn.ctypes.data, cn.ctypes.data)
    assert (rc, err, abi) == (0, "", bl.ABI_VERSION)
    ry, (rhn, rcn) = lstm.forward(x)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(hn, rhn[0])
    np.testing.assert_array_equal(cn, rcn[0])


def test_streaming_on_packed_weights_under_nogil(downstream, rng):
    # One step per call on weights packed once, h and c carried between calls: the same as
    # one call over the whole sequence.
    I, H, N, S = 5, 6, 2, 9
    x = rng.standard_normal((S, N, I)).astype(np.float32)
    lstm = bl.LSTM(I, H, seed=2)
    gates = ("input", "forget", "candidate", "output")
    wx, wh, b = (np.stack([lstm.params[f"{k}_{g}_l0"] for g in gates])
                 for k in ("w_x", "w_h", "b"))
    y = np.full((S, N, H), 7.0, np.float32)
    rc, err, capacity = downstream.stream(I, H, N, S, x.ctypes.data, wx.ctypes.data,
                                          wh.ctypes.data, b.ctypes.data, y.ctypes.data)
    assert (rc, err) == (0, "") and capacity > 0
    np.testing.assert_array_equal(y, lstm.forward(x)[0])   # same panels, same sums


def test_error_from_downstream(downstream):
    x = np.zeros((1, 1, 1), np.float32)
    rc, err, _ = downstream.forward(0, 1, 1, 1, x.ctypes.data, 0, 0, 0, 0, 0, 0)
    assert rc == -1 and err == "input_size is 0"


@pytest.mark.parametrize("with_cache", [True, False])
def test_backward_under_nogil_matches_python_api(downstream, rng, with_cache):
    I, H, N, S = 4, 5, 3, 6
    x = rng.standard_normal((S, N, I)).astype(np.float32)
    dy = rng.standard_normal((S, N, H)).astype(np.float32)
    lstm = bl.LSTM(I, H, seed=2)
    gates = ("input", "forget", "candidate", "output")
    wx, wh, b = (np.stack([lstm.params[f"{k}_{g}_l0"] for g in gates]) for k in ("w_x", "w_h", "b"))
    dx = np.full_like(x, 7.0)
    dwx, dwh, db = np.full_like(wx, 7.0), np.full_like(wh, 7.0), np.full_like(b, 7.0)
    rc, err, capacity = downstream.backward(
        I, H, N, S, x.ctypes.data, wx.ctypes.data, wh.ctypes.data, b.ctypes.data,
        dy.ctypes.data, dx.ctypes.data, dwx.ctypes.data, dwh.ctypes.data, db.ctypes.data,
        with_cache)
    assert (rc, err) == (0, "")
    assert (capacity > 0) == with_cache
    lstm.forward(x, training=True)
    rdx, _, _ = lstm.backward(dy)
    np.testing.assert_array_equal(dx, rdx)
    for g, gate in enumerate(gates):
        np.testing.assert_array_equal(dwx[g], lstm.grads[f"w_x_{gate}_l0"])
        np.testing.assert_array_equal(dwh[g], lstm.grads[f"w_h_{gate}_l0"])
        np.testing.assert_array_equal(db[g], lstm.grads[f"b_{gate}_l0"])


def test_abi_check(downstream):
    # The module imported, so bnnslstm_require_abi() passed for its own compilation; a module
    # compiled against another layout or version gets -1 and a message (ImportError there).
    assert downstream.check_abi(bl.ABI_VERSION, 5040, 176) == (0, "")
    for version, params, desc in ((bl.ABI_VERSION - 1, 5040, 176), (bl.ABI_VERSION, 5032, 176),
                                  (bl.ABI_VERSION, 5040, 168)):
        rc, message = downstream.check_abi(version, params, desc)
        assert rc == -1 and "rebuild the module" in message
        assert f"compiled against bnnslstm ABI {version}" in message


@pytest.mark.parametrize("threads", [2, 4, 8])
def test_prange_threads_under_nogil(downstream, rng, threads):
    # Concurrent calls from Cython prange threads, shared weights, separate outputs:
    # each equals the sequential result bit for bit.
    I, H, N, S, copies = 5, 12, 3, 6, 16
    x = rng.standard_normal((S, N, I)).astype(np.float32)
    lstm = bl.LSTM(I, H, seed=4)
    gates = ("input", "forget", "candidate", "output")
    wx, wh, b = (np.stack([lstm.params[f"{k}_{g}_l0"] for g in gates]) for k in ("w_x", "w_h", "b"))
    y = np.full((copies, S, N, H), 7.0, np.float32)
    failures = downstream.parallel_forward(I, H, N, S, x.ctypes.data, wx.ctypes.data,
                                           wh.ctypes.data, b.ctypes.data, y.ctypes.data, copies,
                                           threads)
    assert failures == 0
    want, _ = lstm.forward(x)
    for i in range(copies):
        np.testing.assert_array_equal(y[i], want)
