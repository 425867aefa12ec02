"""ONNX Runtime's LSTM operator as an oracle, through LSTM.from_onnx."""

from __future__ import annotations

import numpy as np
import pytest

import bnnslstm as bl
from bnnslstm._peers import onnx_lstm_model, ort_session

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
TOL = dict(rtol=2e-5, atol=2e-6)


def run_ort(x, W, R, B, P, h0, c0, lengths, **attrs):
    """Y as (S, D, N, H), Y_h and Y_c as (D, N, H) from an ONNX Runtime session."""
    layer = dict(W=W, R=R, B=B, P=P, with_state=True, with_lens=lengths is not None, **attrs)
    feed = {"X": x, "initial_h": h0, "initial_c": c0}
    if lengths is not None:
        feed["sequence_lens"] = lengths.astype(np.int32)
    return ort_session(onnx_lstm_model([layer], x.shape[2])).run(None, feed)


def case(rng, direction, peephole=True, lengths=None, acts=None, T=6, N=4, I=5, H=3):
    D = 2 if direction == "bidirectional" else 1
    u = lambda *s: rng.uniform(-0.6, 0.6, size=s).astype(np.float32)  # noqa: E731
    x, W, R, B = u(T, N, I), u(D, 4 * H, I), u(D, 4 * H, H), u(D, 8 * H)
    P = u(D, 3 * H) if peephole else None
    h0, c0 = u(D, N, H), u(D, N, H)
    lengths = None if lengths is None else np.asarray(lengths)
    attrs = {"direction": direction}
    if acts:
        attrs.update(acts)
    Y, Yh, Yc = run_ort(x, W, R, B, P, h0, c0, lengths, **attrs)
    lstm = bl.LSTM.from_onnx(W, R, B, P, direction=direction, **(acts or {}))
    y, (hn, cn) = lstm.forward(x, h0, c0, lengths=lengths)
    y = y.reshape(T, N, D, H).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(y, Y, **TOL)
    np.testing.assert_allclose(hn, Yh, **TOL)
    np.testing.assert_allclose(cn, Yc, **TOL)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_diagonal_peepholes(rng, direction):
    case(rng, direction)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_sequence_lens(rng, direction):
    case(rng, direction, lengths=[6, 2, 5, 1])


@pytest.mark.parametrize("acts", [
    {"activations": ["HardSigmoid", "ScaledTanh", "LeakyRelu"],
     "activation_alpha": [0.3, 1.1, 0.05], "activation_beta": [0.4, 0.9]},
    {"activations": ["Sigmoid", "Affine", "Softsign"],
     "activation_alpha": [0.8], "activation_beta": [0.1]},
    {"activations": ["HardSigmoid", "Elu", "Softplus"]},
    {"activations": ["Sigmoid", "Relu", "ThresholdedRelu"], "activation_alpha": [0.2]},
])
def test_custom_activations(rng, acts):
    case(rng, "forward", acts=acts, lengths=[6, 6, 3, 4])


def test_custom_activations_bidirectional(rng):
    acts = {"activations": ["HardSigmoid", "Tanh", "Softsign"] * 2,
            "activation_alpha": [0.25, 0.25], "activation_beta": [0.45, 0.45]}
    case(rng, "bidirectional", acts=acts)


def test_unsupported_attributes():
    W, R = np.zeros((1, 8, 3), np.float32), np.zeros((1, 8, 2), np.float32)
    with pytest.raises(bl.BNNSError, match="clip"):
        bl.LSTM.from_onnx(W, R, clip=3.0)
    with pytest.raises(bl.BNNSError, match="no BNNS equivalent"):
        bl.LSTM.from_onnx(W, R, activations=["Gelu", "Tanh", "Tanh"])
