"""torch.nn.LSTM as an oracle, through LSTM.from_torch / to_torch."""

from __future__ import annotations

import numpy as np
import pytest

import bnnslstm as bl

torch = pytest.importorskip("torch")
TOL = dict(rtol=1e-5, atol=2e-6)


def torch_run(module, x, h0=None, c0=None):
    with torch.no_grad():
        state = None if h0 is None else (torch.from_numpy(h0), torch.from_numpy(c0))
        y, (hn, cn) = module(torch.from_numpy(x), state)
    return y.numpy(), hn.numpy(), cn.numpy()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
def test_stacked_bidirectional(rng, bias, batch_first):
    torch.manual_seed(0)
    T, N, I, H, L = 9, 4, 6, 8, 3
    module = torch.nn.LSTM(I, H, L, bias=bias, bidirectional=True, batch_first=batch_first)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(np.float32)
    h0 = rng.standard_normal((2 * L, N, H)).astype(np.float32)
    c0 = rng.standard_normal((2 * L, N, H)).astype(np.float32)
    ours = bl.LSTM.from_torch(module)
    y, (hn, cn) = ours.forward(x, h0, c0)
    ty, thn, tcn = torch_run(module, x, h0, c0)
    for a, b in ((y, ty), (hn, thn), (cn, tcn)):
        np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequence(rng, bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(1)
    T, I, H, L = 7, 5, 6, 2
    lengths = np.array([3, 7, 1, 5, 7, 2])
    N = len(lengths)
    module = torch.nn.LSTM(I, H, L, bidirectional=bidirectional)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    D = 2 if bidirectional else 1
    h0 = rng.standard_normal((L * D, N, H)).astype(np.float32)
    c0 = rng.standard_normal((L * D, N, H)).astype(np.float32)
    with torch.no_grad():
        packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                      enforce_sorted=False)
        out, (thn, tcn) = module(packed, (torch.from_numpy(h0), torch.from_numpy(c0)))
        ty, _ = pad_packed_sequence(out, total_length=T)
    y, (hn, cn) = bl.LSTM.from_torch(module).forward(x, h0, c0, lengths=lengths)
    np.testing.assert_allclose(y, ty.numpy(), **TOL)
    np.testing.assert_allclose(hn, thn.numpy(), **TOL)
    np.testing.assert_allclose(cn, tcn.numpy(), **TOL)


def test_to_torch_round_trip(rng):
    ours = bl.LSTM(4, 5, 2, bidirectional=True, seed=3)
    module = ours.to_torch()
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    y, (hn, cn) = ours.forward(x)
    ty, thn, tcn = torch_run(module, x)
    np.testing.assert_allclose(y, ty, **TOL)
    np.testing.assert_allclose(hn, thn, **TOL)


def test_to_torch_refuses_what_torch_lacks():
    with pytest.raises(bl.BNNSError, match="peepholes"):
        bl.LSTM(3, 4, peephole="diagonal").to_torch()


def torch_grads(module, x, h0, c0, dy, dhn, dcn, lengths=None):
    """Autograd gradients of <dy, y> + <dhn, h_n> + <dcn, c_n>."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    xt = torch.from_numpy(x).requires_grad_()
    h0t = torch.from_numpy(h0).requires_grad_()
    c0t = torch.from_numpy(c0).requires_grad_()
    inp = xt
    if lengths is not None:
        inp = pack_padded_sequence(xt, torch.from_numpy(lengths), enforce_sorted=False,
                                   batch_first=module.batch_first)
    out, (hn, cn) = module(inp, (h0t, c0t))
    if lengths is not None:
        out, _ = pad_packed_sequence(out, total_length=x.shape[1 if module.batch_first else 0],
                                     batch_first=module.batch_first)
    loss = (out * torch.from_numpy(dy)).sum() + (hn * torch.from_numpy(dhn)).sum() \
        + (cn * torch.from_numpy(dcn)).sum()
    module.zero_grad()
    loss.backward()
    return xt.grad.numpy(), h0t.grad.numpy(), c0t.grad.numpy()


GRAD_TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths", [None, [3, 7, 1, 5, 7]])
def test_gradients_match_autograd(rng, bias, batch_first, lengths):
    torch.manual_seed(2)
    T, I, H, L, N = 7, 5, 6, 3, 5
    module = torch.nn.LSTM(I, H, L, bias=bias, bidirectional=True, batch_first=batch_first)
    lengths = None if lengths is None else np.array(lengths)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((2 * L, N, H)).astype(np.float32) for _ in range(2))
    ours = bl.LSTM.from_torch(module)
    y, _ = ours.forward(x, h0, c0, lengths=lengths, training=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    if lengths is not None:         # what lies past a sample's length is not an output
        for n, length in enumerate(lengths):
            (dy[n, length:] if batch_first else dy[length:, n])[...] = 0
    dhn, dcn = (rng.standard_normal((2 * L, N, H)).astype(np.float32) for _ in range(2))
    dx, dh0, dc0 = ours.backward(dy, dhn, dcn)
    tdx, tdh0, tdc0 = torch_grads(module, x, h0, c0, dy, dhn, dcn, lengths)
    np.testing.assert_allclose(dx, tdx, **GRAD_TOL)
    np.testing.assert_allclose(dh0, tdh0, **GRAD_TOL)
    np.testing.assert_allclose(dc0, tdc0, **GRAD_TOL)
    for layer in range(L):
        for sfx in ("", "_reverse"):
            name = f"_l{layer}{sfx}"
            for g, gate in enumerate(("input", "forget", "candidate", "output")):
                rows = slice(g * H, (g + 1) * H)
                np.testing.assert_allclose(
                    ours.grads[f"w_x_{gate}{name}"],
                    getattr(module, "weight_ih" + name).grad.numpy()[rows], **GRAD_TOL)
                np.testing.assert_allclose(
                    ours.grads[f"w_h_{gate}{name}"],
                    getattr(module, "weight_hh" + name).grad.numpy()[rows], **GRAD_TOL)
                if bias:   # one BNNS bias stands for b_ih + b_hh: both have its gradient
                    np.testing.assert_allclose(
                        ours.grads[f"b_{gate}{name}"],
                        getattr(module, "bias_ih" + name).grad.numpy()[rows], **GRAD_TOL)
