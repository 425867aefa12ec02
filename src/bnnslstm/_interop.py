"""Weights from and to PyTorch's ``nn.LSTM`` and the ONNX ``LSTM`` operator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bnnslstm._api import BNNSError
from bnnslstm._enums import ActivationFunction as AF
from bnnslstm._layer import GATES, param_key

if TYPE_CHECKING:
    from bnnslstm._layer import LSTM

# ---------------------------------------------------------------------------------------------
# PyTorch: gates stacked i, f, g, o (the struct's order); one bias per gate is b_ih + b_hh.


def from_torch(cls: type[LSTM], module: Any) -> LSTM:
    if getattr(module, "proj_size", 0):
        raise BNNSError("torch.nn.LSTM with proj_size > 0 has no BNNS equivalent")
    lstm = cls(module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
               bidirectional=module.bidirectional, batch_first=module.batch_first,
               dropout=module.dropout)
    H = module.hidden_size
    for layer in range(module.num_layers):
        for d in range(lstm.num_directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih = _np(getattr(module, "weight_ih" + sfx))
            w_hh = _np(getattr(module, "weight_hh" + sfx))
            b = (_np(getattr(module, "bias_ih" + sfx)) + _np(getattr(module, "bias_hh" + sfx))
                 if module.bias else None)
            for g, gate in enumerate(GATES):
                rows = slice(g * H, (g + 1) * H)
                lstm.params[param_key("w_x", gate, layer, d)][...] = w_ih[rows]
                lstm.params[param_key("w_h", gate, layer, d)][...] = w_hh[rows]
                if b is not None:
                    lstm.params[param_key("b", gate, layer, d)][...] = b[rows]
    return lstm


def to_torch(lstm: LSTM) -> Any:
    import torch

    if lstm.peephole is not None or not lstm.default_activations or lstm._reverse_time:
        raise BNNSError("only LSTMs without peepholes, with default activations and forward "
                        "time order convert to torch.nn.LSTM")
    module = torch.nn.LSTM(lstm.input_size, lstm.hidden_size, lstm.num_layers, bias=lstm.bias,
                           batch_first=lstm.batch_first, dropout=lstm.dropout,
                           bidirectional=lstm.bidirectional)
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            for d in range(lstm.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")

                def stacked(kind: str, layer: int = layer, d: int = d) -> Any:
                    return torch.from_numpy(np.concatenate(
                        [lstm.params[param_key(kind, g, layer, d)] for g in GATES]))

                getattr(module, "weight_ih" + sfx).copy_(stacked("w_x"))
                getattr(module, "weight_hh" + sfx).copy_(stacked("w_h"))
                if lstm.bias:
                    getattr(module, "bias_ih" + sfx).copy_(stacked("b"))
                    getattr(module, "bias_hh" + sfx).zero_()
    return module


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)

# ---------------------------------------------------------------------------------------------
# ONNX: W [D, 4H, I], R [D, 4H, H], B [D, 8H] (Wb then Rb), P [D, 3H]; gates i, o, f, c.

_ONNX_BLOCK = {"input": 0, "output": 1, "forget": 2, "candidate": 3}   # block of each gate
_ONNX_PEEP = {"input": 0, "output": 1, "forget": 2}

# name: (BNNS function, number of alphas, number of betas, default alpha, default beta)
_ONNX_ACTS = {
    "Sigmoid": (AF.Sigmoid, 0, 0, 0.0, 0.0),
    "Tanh": (AF.Tanh, 0, 0, 0.0, 0.0),
    "Relu": (AF.RectifiedLinear, 0, 0, 0.0, 0.0),
    "Softsign": (AF.Softsign, 0, 0, 0.0, 0.0),
    "Softplus": (AF.Softplus, 0, 0, 1.0, 1.0),       # log(1 + e^x): alpha = beta = 1
    "LeakyRelu": (AF.LeakyRectifiedLinear, 1, 0, 0.01, 0.0),
    "ThresholdedRelu": (AF.Threshold, 1, 0, 1.0, 0.0),  # x > alpha ? x : 0
    "Elu": (AF.ELU, 1, 0, 1.0, 0.0),
    "ScaledTanh": (AF.ScaledTanh, 1, 1, 1.0, 1.0),
    "HardSigmoid": (AF.HardSigmoid, 1, 1, 0.2, 0.5),
    "Affine": (AF.LinearWithBias, 1, 1, 1.0, 0.0),
}


def onnx_activations(names: list[str], alphas: list[float] | None,
                     betas: list[float] | None) -> list[tuple[AF, float, float]]:
    """ONNX activation attributes as (function, alpha, beta): alphas/betas are consumed in
    order by the functions that take them, defaults filling in (as ONNX Runtime reads them)."""
    alphas, betas = list(alphas or []), list(betas or [])
    out = []
    for name in names:
        key = next((k for k in _ONNX_ACTS if k.lower() == name.lower()), None)
        if key is None:
            raise BNNSError(f"ONNX activation {name!r} has no BNNS equivalent")
        fn, na, nb, alpha, beta = _ONNX_ACTS[key]
        if na and alphas:
            alpha = alphas.pop(0)
        if nb and betas:
            beta = betas.pop(0)
        out.append((fn, alpha, beta))
    return out


def from_onnx(cls: type[LSTM], W: Any, R: Any, B: Any = None, P: Any = None, *,
              direction: str = "forward", activations: list[str] | None = None,
              activation_alpha: list[float] | None = None,
              activation_beta: list[float] | None = None, clip: float | None = None,
              input_forget: int = 0, batch_first: bool = False) -> LSTM:
    """An LSTM equal to ONNX ``LSTM(X, W, R, B, sequence_lens, P)`` with these attributes.

    ``direction="reverse"`` runs the sequence backwards (each sample from its last valid step),
    which BNNS has no flag for: the layer reverses x and y around the forward call.
    """
    if clip is not None or input_forget:
        raise BNNSError("ONNX LSTM 'clip' and 'input_forget' have no BNNS equivalent")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise BNNSError(f"direction must be forward, reverse or bidirectional, not {direction!r}")
    W, R = np.asarray(W, np.float32), np.asarray(R, np.float32)
    D = 2 if direction == "bidirectional" else 1
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D:
        raise BNNSError(f"W and R must be [{D}, 4H, ...] for direction {direction!r}")
    H, I = R.shape[2], W.shape[2]
    acts = None
    if activations is not None:
        acts = onnx_activations(activations, activation_alpha, activation_beta)
        if len(acts) != 3 * D or (D == 2 and acts[:3] != acts[3:]):
            raise BNNSError("BNNS applies one set of activations (f, g, h) to both directions")
    f, g, h = acts[:3] if acts else (None, None, None)
    lstm = cls(I, H, 1, bias=B is not None, bidirectional=D == 2, batch_first=batch_first,
               peephole=None if P is None else "diagonal",
               gate_activations=None if acts is None else [f, f, g, f],
               hidden_activation=h)
    lstm._reverse_time = direction == "reverse"
    bias = None if B is None else np.asarray(B, np.float32).reshape(D, 2, 4 * H).sum(1)
    peep = None if P is None else np.asarray(P, np.float32).reshape(D, 3 * H)
    for d in range(D):
        for gate in GATES:
            rows = slice(_ONNX_BLOCK[gate] * H, (_ONNX_BLOCK[gate] + 1) * H)
            lstm.params[param_key("w_x", gate, 0, d)][...] = W[d, rows]
            lstm.params[param_key("w_h", gate, 0, d)][...] = R[d, rows]
            if bias is not None:
                lstm.params[param_key("b", gate, 0, d)][...] = bias[d, rows]
            if peep is not None:
                wc = lstm.params[param_key("w_c", gate, 0, d)]
                if gate in _ONNX_PEEP:
                    k = _ONNX_PEEP[gate]
                    wc[...] = peep[d, k * H:(k + 1) * H]
                else:
                    wc[...] = 0.0   # ONNX has no candidate-gate peephole
    return lstm
