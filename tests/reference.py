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

    @property
    def D(self) -> int:
        return 2 if self.bidir else 1

    def input_weights(self, k: int, layer: int, d: int) -> np.ndarray:
        """Decision D1."""
        if layer > 0 and self.wx1 is not None:
            return self.wx1[k][layer - 1, d]
        return self.wx0[k][layer, d]


def forward(p: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y (S, N, D*H), h_n and c_n (L, D, N, H), all float64."""
    f64 = np.float64
    acts = DEFAULT_GATE_ACTS if p.default_acts else p.acts
    hid = (TANH, 0.0, 0.0) if p.default_acts else p.hidden_act
    S, N, H, D = p.S, p.N, p.H, p.D
    bs = p.batch_sizes if p.batch_sizes is not None and S > 1 else np.full(S, N)
    hn = np.zeros((p.L, D, N, H))
    cn = np.zeros((p.L, D, N, H))
    inp = p.x.astype(f64)
    for layer in range(p.L):
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
                o = activate(acts[3], a[3] + peep(3, c_new))   # output peephole: new cell
                h_new = o * activate(hid, c_new)
                h[:n], c[:n] = h_new, c_new
                out[t, :n, d * H:(d + 1) * H] = h_new
            hn[layer, d], cn[layer, d] = h, c
        inp = out
    return inp, hn, cn
