"""``python -m bnnslstm demo``: the main job, on built-in synthetic data.

Until the training pass lands this is forward-only: it runs a stacked bidirectional LSTM on
synthetic sequences, checks the result against a float64 evaluation of the same network (plain
numpy, written here from the spec's cell equations), then reports speed and the BLAS in use.
"""

from __future__ import annotations

import time

import numpy as np

import bnnslstm as bl
from bnnslstm._blasinfo import blas_summary


def synthetic_sequences(rng: np.random.Generator, T: int, N: int, I: int) -> np.ndarray:
    """Noisy sums of sines with random frequencies and phases, shape (T, N, I)."""
    t = np.arange(T)[:, None, None]
    freq = rng.uniform(0.05, 0.5, size=(1, N, I))
    phase = rng.uniform(0, 2 * np.pi, size=(1, N, I))
    return (np.sin(freq * t + phase) + 0.1 * rng.standard_normal((T, N, I))).astype(np.float32)


def float64_forward(lstm: bl.LSTM, x: np.ndarray) -> np.ndarray:
    """y of a default-activation LSTM in float64: i, f, g, o gates, c = f c + i g, h = o tanh c."""
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    P, H, D = lstm.params, lstm.hidden_size, lstm.num_directions
    inp = x.astype(np.float64)
    for layer in range(lstm.num_layers):
        out = np.zeros(inp.shape[:2] + (D * H,))
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w = {k: [P[f"{k}_{g}{sfx}"].astype(np.float64) for g in bl._layer.GATES]
                 for k in ("w_x", "w_h", "b")}
            h = c = np.zeros((inp.shape[1], H))
            for t in (range(inp.shape[0]) if d == 0 else reversed(range(inp.shape[0]))):
                a = [inp[t] @ w["w_x"][k].T + h @ w["w_h"][k].T + w["b"][k] for k in range(4)]
                c = sig(a[1]) * c + sig(a[0]) * np.tanh(a[2])
                h = sig(a[3]) * np.tanh(c)
                out[t, :, d * H:(d + 1) * H] = h
        inp = out
    return inp


def timed(fn, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    rng = np.random.default_rng(0)
    print(f"bnnslstm {bl.__version__} (ABI {bl.ABI_VERSION}); BLAS: {blas_summary()}")

    T, N, I, H, L = 40, 16, 8, 32, 2
    x = synthetic_sequences(rng, T, N, I)
    lstm = bl.LSTM(I, H, L, bidirectional=True, seed=0)
    y, (h_n, c_n) = lstm.forward(x)
    err = float(np.abs(y - float64_forward(lstm, x)).max())
    print(f"forward of a {L}-layer bidirectional LSTM (T={T}, N={N}, I={I}, H={H}) on "
          f"synthetic sines: y {y.shape}, h_n {h_n.shape}")
    print(f"max |y - float64 evaluation| = {err:.2e}  ({'ok' if err < 1e-4 else 'MISMATCH'})")

    T, N, H = 25, 64, 512
    big = bl.LSTM(H, H, seed=1)
    xb = synthetic_sequences(rng, T, N, H)
    seconds = timed(lambda: big.forward(xb))
    flops = T * 2 * 4 * H * (H + H) * N
    print(f"speed: forward T={T} N={N} I=H={H} in {seconds * 1e3:.2f} ms = "
          f"{flops / seconds / 1e9:.1f} GFLOP/s, {T * N / seconds:,.0f} samples-steps/s")
    return 0 if err < 1e-4 else 1
