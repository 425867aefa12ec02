"""Float64 numpy reference of the BNNS LSTM forward pass, written from the spec alone.

It shares no code with the package: activations are the formulas of spec section 2.3, the cell
is section 3.1, stacking/directions section 3.2 and 3.5, per-step batch sizes decision D5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf, expit

SIGMOID, TANH = 3, 4
SELU_L, SELU_A = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


def sigmoid(x):
    return expit(x)   # accurate in the far negative tail, unlike 0.5 * (1 + tanh(x / 2))


def relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


# f(x, alpha, beta) for every elementwise BNNSActivationFunction (spec table 2.3).
ACTIVATIONS = {
    0: lambda x, a, b: x,
    1: lambda x, a, b: np.where(x < 0, 0.0, x),
    2: lambda x, a, b: np.where(x < 0, a * x, x),
    3: lambda x, a, b: sigmoid(x),
    4: lambda x, a, b: np.tanh(x),
    5: lambda x, a, b: a * np.tanh(b * x),
    6: lambda x, a, b: np.abs(x),
    7: lambda x, a, b: a * x,
    8: lambda x, a, b: np.minimum(np.maximum(x, a), b),
    12: lambda x, a, b: 0.5 * x * (1.0 + np.tanh(a * (x + b * x ** 3))),
    15: lambda x, a, b: np.maximum(0.0, np.minimum(1.0, a * x + b)),
    16: lambda x, a, b: a * np.logaddexp(0.0, b * x),
    17: lambda x, a, b: x / (1.0 + np.abs(x)),
    18: lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0.0))),
    19: lambda x, a, b: np.where(x >= 0, np.minimum(x, b), np.minimum(a * x, b)),
    20: lambda x, a, b: a * x + b,
    22: lambda x, a, b: -np.logaddexp(0.0, -x),
    23: lambda x, a, b: np.where(x >= 0, SELU_L * x,
                                 SELU_L * SELU_A * np.expm1(np.minimum(x, 0.0))),
    24: lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0.0) / a)),
    25: lambda x, a, b: np.where(np.abs(x) < abs(a), 0.0, x),
    26: lambda x, a, b: np.where(np.abs(x) < abs(a), 0.0, x - np.copysign(a, x)),
    27: lambda x, a, b: x - np.tanh(x),
    28: lambda x, a, b: np.where(x <= a, b, x),
    30: lambda x, a, b: x * relu6(x + 3.0) / 6.0,
    31: lambda x, a, b: x * sigmoid(x),
    32: lambda x, a, b: relu6(x),
    33: lambda x, a, b: erf(x),
    34: lambda x, a, b: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
    35: lambda x, a, b: x * sigmoid(1.702 * x),
}
NOT_ELEMENTWISE = (9, 10, 11, 13, 14, 21, 29)


def _dsig(x):
    s = sigmoid(x)
    return s * (1 - s)


def _dgelu_tanh(x, a, b):
    t = np.tanh(a * (x + b * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * a * (1 + 3 * b * x * x)


# f'(x, alpha, beta); at a kink, the derivative of the branch the formula takes for that x.
DERIVATIVES = {
    0: lambda x, a, b: np.ones_like(x),
    1: lambda x, a, b: np.where(x < 0, 0.0, 1.0),
    2: lambda x, a, b: np.where(x < 0, a, 1.0),
    3: lambda x, a, b: _dsig(x),
    4: lambda x, a, b: 1 - np.tanh(x) ** 2,
    5: lambda x, a, b: a * b * (1 - np.tanh(b * x) ** 2),
    6: lambda x, a, b: np.where(x < 0, -1.0, 1.0),
    7: lambda x, a, b: np.full_like(x, a),
    8: lambda x, a, b: np.where((x < a) | (x > b), 0.0, 1.0),
    12: _dgelu_tanh,
    15: lambda x, a, b: np.where((a * x + b < 0) | (a * x + b > 1), 0.0, a),
    16: lambda x, a, b: a * b * sigmoid(b * x),
    17: lambda x, a, b: 1 / (1 + np.abs(x)) ** 2,
    18: lambda x, a, b: np.where(x < 0, a * np.exp(np.minimum(x, 0)), 1.0),
    19: lambda x, a, b: np.where(x < 0, np.where(a * x > b, 0.0, a), np.where(x > b, 0.0, 1.0)),
    20: lambda x, a, b: np.full_like(x, a),
    22: lambda x, a, b: sigmoid(-x),
    23: lambda x, a, b: np.where(x < 0, SELU_L * SELU_A * np.exp(np.minimum(x, 0)), SELU_L),
    24: lambda x, a, b: np.where(x < 0, np.exp(np.minimum(x, 0) / a), 1.0),
    25: lambda x, a, b: np.where(np.abs(x) < abs(a), 0.0, 1.0),
    26: lambda x, a, b: np.where(np.abs(x) < abs(a), 0.0, 1.0),
    27: lambda x, a, b: np.tanh(x) ** 2,
    28: lambda x, a, b: np.where(x <= a, 0.0, 1.0),
    30: lambda x, a, b: relu6(x + 3) / 6 + np.where((x + 3 < 0) | (x + 3 > 6), 0.0, x / 6),
    31: lambda x, a, b: sigmoid(x) + x * _dsig(x),
    32: lambda x, a, b: np.where((x < 0) | (x > 6), 0.0, 1.0),
    33: lambda x, a, b: 2 / np.sqrt(np.pi) * np.exp(-x * x),
    34: lambda x, a, b: (0.5 * (1 + erf(x / np.sqrt(2)))
                         + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
    35: lambda x, a, b: sigmoid(1.702 * x) + 1.702 * x * _dsig(1.702 * x),
}


def derivative(act: tuple, x: np.ndarray) -> np.ndarray:
    fn, a, b = act
    with np.errstate(over="ignore", invalid="ignore"):
        return DERIVATIVES[fn](x, float(a), float(b))
DEFAULT_GATE_ACTS = [(SIGMOID, 0.0, 0.0), (SIGMOID, 0.0, 0.0), (TANH, 0.0, 0.0),
                     (SIGMOID, 0.0, 0.0)]


def activate(act: tuple, x: np.ndarray) -> np.ndarray:
    fn, a, b = act
    with np.errstate(over="ignore", invalid="ignore"):
        return ACTIVATIONS[fn](x, float(a), float(b))


@dataclass
class Problem:
    """One LSTM call, in the memory order of spec 3.3 (gates i, f, g, o)."""

    I: int
    H: int
    N: int
    L: int
    S: int
    bidir: bool
    x: np.ndarray                      # (S, N, I)
    wx0: list                          # per gate: (L or 1, D, H, I)  (iw_desc[0])
    wx1: list | None                   # per gate: (L-1, D, H, D*H)   (iw_desc[1]) or None
    wh: list                           # per gate: (L, D, H, H)
    wc: list = field(default_factory=lambda: [None] * 4)   # per gate: None, (L,D,H,H) or (L,D,H)
    b: list = field(default_factory=lambda: [None] * 4)    # per gate: None or (L, D, H)
    h0: np.ndarray | None = None       # (L, D, N, H)
    c0: np.ndarray | None = None
    default_acts: bool = True
    acts: list = field(default_factory=lambda: list(DEFAULT_GATE_ACTS))
    hidden_act: tuple = (TANH, 0.0, 0.0)
    batch_sizes: np.ndarray | None = None   # (S,)
    dropout: float = 0.0

    @property
    def D(self) -> int:
        return 2 if self.bidir else 1

    def input_weights(self, k: int, layer: int, d: int) -> np.ndarray:
        """Decision D1."""
        if layer > 0 and self.wx1 is not None:
            return self.wx1[k][layer - 1, d]
        return self.wx0[k][layer, d]


def forward(p: Problem, masks: list | None = None,
            tape: list | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y (S, N, D*H), h_n and c_n (L, D, N, H), all float64.

    masks: dropout keep-masks (S, N, D*H) of each layer boundary (D6: inverted dropout with
    p.dropout); tape: if a list, receives what backward needs, per layer."""
    f64 = np.float64
    acts = DEFAULT_GATE_ACTS if p.default_acts else p.acts
    hid = (TANH, 0.0, 0.0) if p.default_acts else p.hidden_act
    S, N, H, D = p.S, p.N, p.H, p.D
    bs = p.batch_sizes if p.batch_sizes is not None and S > 1 else np.full(S, N)
    hn = np.zeros((p.L, D, N, H))
    cn = np.zeros((p.L, D, N, H))
    inp = p.x.astype(f64)
    for layer in range(p.L):
        if layer > 0 and masks is not None:
            inp = inp * masks[layer - 1] / (1.0 - p.dropout)
        steps = []
        if tape is not None:
            tape.append({"input": inp, "steps": steps})
        out = np.zeros((S, N, D * H))
        for d in range(D):
            W = [p.input_weights(k, layer, d).astype(f64) for k in range(4)]
            R = [p.wh[k][layer, d].astype(f64) for k in range(4)]
            B = [np.zeros(H) if p.b[k] is None else p.b[k][layer, d].astype(f64) for k in range(4)]
            P = [None if p.wc[k] is None else p.wc[k][layer, d].astype(f64) for k in range(4)]
            h = np.zeros((N, H)) if p.h0 is None else p.h0[layer, d].astype(f64).copy()
            c = np.zeros((N, H)) if p.c0 is None else p.c0[layer, d].astype(f64).copy()

            def peep(k: int, cell: np.ndarray, P: list = P) -> np.ndarray:
                if P[k] is None:
                    return 0.0
                return cell * P[k] if P[k].ndim == 1 else cell @ P[k].T

            for t in (range(S) if d == 0 else range(S - 1, -1, -1)):
                n = int(bs[t])
                if n == 0:
                    continue
                xt, hp, cp = inp[t, :n], h[:n], c[:n]
                a = [xt @ W[k].T + hp @ R[k].T + B[k] for k in range(4)]
                i = activate(acts[0], a[0] + peep(0, cp))
                f = activate(acts[1], a[1] + peep(1, cp))
                g = activate(acts[2], a[2] + peep(2, cp))
                c_new = f * cp + i * g
                a[0], a[1], a[2] = a[0] + peep(0, cp), a[1] + peep(1, cp), a[2] + peep(2, cp)
                a[3] = a[3] + peep(3, c_new)                    # output peephole: new cell
                o = activate(acts[3], a[3])
                h_new = o * activate(hid, c_new)
                steps.append((d, t, n, hp.copy(), cp.copy(), a, c_new))
                h[:n], c[:n] = h_new, c_new
                out[t, :n, d * H:(d + 1) * H] = h_new
            hn[layer, d], cn[layer, d] = h, c
        inp = out
    return inp, hn, cn


def backward(p: Problem, dy=None, dhn=None, dcn=None, masks: list | None = None) -> dict:
    """Gradients of L = <dy, y> + <dhn, h_n> + <dcn, c_n> (spec 4.3), float64.

    Returns x, h0, c0 and, per gate (lists of 4 like the Problem's), wx0, wx1, wh, wc, b."""
    acts = DEFAULT_GATE_ACTS if p.default_acts else p.acts
    hid = (TANH, 0.0, 0.0) if p.default_acts else p.hidden_act
    S, N, H, D, L = p.S, p.N, p.H, p.D, p.L
    tape: list = []
    forward(p, masks, tape)
    g = {"wx0": [np.zeros(w.shape) for w in p.wx0],
         "wx1": None if p.wx1 is None else [np.zeros(w.shape) for w in p.wx1],
         "wh": [np.zeros(w.shape) for w in p.wh],
         "wc": [None if w is None else np.zeros(w.shape) for w in p.wc],
         "b": [None if b is None else np.zeros(b.shape) for b in p.b],
         "h0": np.zeros((L, D, N, H)), "c0": np.zeros((L, D, N, H))}
    dout = np.zeros((S, N, D * H)) if dy is None else np.array(dy, np.float64)
    for layer in range(L - 1, -1, -1):
        inp = tape[layer]["input"]
        dinp = np.zeros(inp.shape)
        for d in range(D):
            W = [p.input_weights(k, layer, d).astype(np.float64) for k in range(4)]
            R = [p.wh[k][layer, d].astype(np.float64) for k in range(4)]
            P = [None if p.wc[k] is None else p.wc[k][layer, d].astype(np.float64)
                 for k in range(4)]
            dh_next = np.zeros((N, H)) if dhn is None else np.array(dhn[layer, d], np.float64)
            dc_next = np.zeros((N, H)) if dcn is None else np.array(dcn[layer, d], np.float64)
            for (dd, t, n, hp, cp, a, c) in reversed(tape[layer]["steps"]):
                if dd != d:
                    continue
                val = [activate(acts[k], a[k]) for k in range(4)]
                der = [derivative(acts[k], a[k]) for k in range(4)]
                dh = dout[t, :n, d * H:(d + 1) * H] + dh_next[:n]
                dc = dc_next[:n].copy()
                da_o = dh * activate(hid, c) * der[3]
                dc += dh * val[3] * derivative(hid, c)
                if P[3] is not None:
                    dc += da_o * P[3] if P[3].ndim == 1 else da_o @ P[3]
                da = [dc * val[2] * der[0], dc * cp * der[1], dc * val[0] * der[2], da_o]
                dc_prev = dc * val[1]
                for k in range(3):
                    if P[k] is not None:
                        dc_prev += da[k] * P[k] if P[k].ndim == 1 else da[k] @ P[k]
                dh_next[:n] = sum(da[k] @ R[k] for k in range(4))
                dc_next[:n] = dc_prev
                dinp[t, :n] += sum(da[k] @ W[k] for k in range(4))
                for k in range(4):
                    if layer > 0 and p.wx1 is not None:
                        g["wx1"][k][layer - 1, d] += da[k].T @ inp[t, :n]
                    else:
                        g["wx0"][k][layer, d] += da[k].T @ inp[t, :n]
                    g["wh"][k][layer, d] += da[k].T @ hp
                    if g["b"][k] is not None:
                        g["b"][k][layer, d] += da[k].sum(0)
                    if P[k] is not None:
                        cell = c if k == 3 else cp
                        g["wc"][k][layer, d] += ((da[k] * cell).sum(0) if P[k].ndim == 1
                                                 else da[k].T @ cell)
            g["h0"][layer, d], g["c0"][layer, d] = dh_next, dc_next
        if layer > 0 and masks is not None:
            dinp = dinp * masks[layer - 1] / (1.0 - p.dropout)
        dout = dinp
    g["x"] = dout
    return g
