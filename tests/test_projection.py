"""The input projection made in chunks inside the time loop (DESIGN step 3), which the forward
does when the gates of all steps would not stay in cache and the weights would: S*N*4H floats
of 16 MiB or more, W_x and W_h of 4 MiB or less. Same results as one projection of all steps."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from problems import GRAD_KEYS, build, random_problem, run
from test_backward import incoming, run_training

import bnnslstm as bl
from bnnslstm._forward import _projection_chunks

RTOL, ATOL = 1e-4, 2e-5

# 300 steps x 64 samples x 4H = 256: 19.7 MB of gates (chunks of 128 KiB of x are 32 steps
# of layer 0 and 4 or 8 of layer 1, so 300 steps end on a partial chunk).
# Weights in +-0.2: at +-0.5 float32 rounding grows over 300 steps past the tolerances in the
# backward, chunked or not.
BIG = dict(I=16, H=64, N=64, S=300, L=2, scale=0.2)
LENGTHS = [300] * 20 + [257] * 20 + [31] * 23 + [1]


def chunks_made(fn, *args, **kwargs):
    before = _projection_chunks()
    out = fn(*args, **kwargs)
    return out, _projection_chunks() - before


@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_chunked_forward_against_reference(rng, bidir, threads, lengths):
    # threads 2: unidirectional splits the batch rows (each thread projects its own rows,
    # step by step), bidirectional runs the directions at once, each projecting all rows.
    p = random_problem(rng, bidir=bidir, lengths=lengths, **BIG)
    (y, hn, cn), made = chunks_made(run, build(p), bl.FilterParameters(n_threads=threads))
    assert made >= 2 * BIG["L"] * (1 + bidir)      # several chunks per (layer, direction)
    ry, rhn, rcn = ref.forward(p)
    np.testing.assert_allclose(y, ry, rtol=RTOL, atol=ATOL, err_msg="y")
    np.testing.assert_allclose(hn, rhn, rtol=RTOL, atol=ATOL, err_msg="h_n")
    np.testing.assert_allclose(cn, rcn, rtol=RTOL, atol=ATOL, err_msg="c_n")


@pytest.mark.parametrize("threads", [1, 2])
def test_chunked_forward_equals_one_sample_runs(rng, threads):
    # A sample alone has 1/64 of the gates and projects all steps at once; every element is
    # the same dot products in the same order either way, so the outputs are bit for bit equal.
    lstm = bl.LSTM(16, 64, 2, bidirectional=True, seed=3)
    lstm.n_threads = threads
    x = rng.standard_normal((300, 64, 16)).astype(np.float32)
    lengths = np.array(LENGTHS)[rng.permutation(64)]
    (y, (hn, cn)), made = chunks_made(lstm.forward, x, lengths=lengths)
    assert made > 0
    for n in range(0, 64, 5):
        T = lengths[n]
        (y1, (hn1, cn1)), made = chunks_made(lstm.forward, x[:T, n:n + 1])
        assert made == 0
        assert np.array_equal(y[:T, n], y1[:, 0]) and not y[T:, n].any()
        assert np.array_equal(hn[:, n], hn1[:, 0]) and np.array_equal(cn[:, n], cn1[:, 0])


@pytest.mark.parametrize("bidir", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_chunked_training_against_reference(rng, bidir, threads):
    # The cache the chunked forward keeps (pre-activations, cells, outputs) drives the
    # backward: its gradients must match the reference's.
    p = random_problem(rng, bidir=bidir, lengths=LENGTHS, **BIG)
    dy, dhn, dcn = incoming(rng, p)
    (_, delta), made = chunks_made(run_training, p, dy, dhn, dcn,
                                   filter_params=bl.FilterParameters(n_threads=threads))
    assert made > 0
    got, want = delta.read(), ref.backward(p, dy, dhn, dcn)
    for key in ("x", "h0", "c0") + GRAD_KEYS:
        gs, ws = got.get(key), want.get(key)
        for k, (g, w) in enumerate(zip(as_list(gs), as_list(ws), strict=True)):
            if w is not None:
                # normwise: the weight gradients sum 19 200 terms, some cancel
                err = np.abs(g - w).max() / (np.abs(w).max() + 1.0)
                assert err < 2e-5, (key, k, err)


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]
