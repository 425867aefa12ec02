"""``python -m bnnslstm demo``: the main job, on built-in synthetic data.

Trains a stacked bidirectional LSTM (with dropout) plus a linear head to read the frequency of
noisy sine waves, using only bnnslstm's forward and backward passes and a small Adam optimizer
in numpy; prints the loss falling, the throughput and the BLAS in use. Exits 1 if the loss does
not fall.
"""

from __future__ import annotations

import time

import numpy as np

import bnnslstm as bl
from bnnslstm._blasinfo import blas_summary, kernel_gemms


def sine_batch(rng: np.random.Generator, T: int, N: int, I: int) -> tuple[np.ndarray, np.ndarray]:
    """x (T, N, I): noisy sines of one random frequency per sample (random phases per
    channel); y (N, 1): that frequency, scaled to about [-1, 1]."""
    freq = rng.uniform(0.1, 0.6, size=(1, N, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(1, N, I))
    t = np.arange(T)[:, None, None]
    x = np.sin(freq * t + phase) + 0.1 * rng.standard_normal((T, N, I))
    return x.astype(np.float32), ((freq[0] - 0.35) / 0.25).astype(np.float32)


class Adam:
    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-2) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            m, v = self.m[k] / (1 - 0.9 ** self.t), self.v[k] / (1 - 0.999 ** self.t)
            self.params[k] -= self.lr * m / (np.sqrt(v) + 1e-8)   # in place: views of weights


def main(steps: int = 120) -> int:
    rng = np.random.default_rng(0)
    T, N, I, H, L = 40, 64, 4, 32, 2
    print(f"bnnslstm {bl.__version__} (ABI {bl.ABI_VERSION}); GEMMs: {kernel_gemms()}; "
          f"BLAS: {blas_summary()}")
    print(f"task: read the frequency of noisy sine waves; model: {L}-layer bidirectional LSTM "
          f"(I={I}, H={H}, dropout 0.1) + linear head; batch {N} x {T} steps")
    lstm = bl.LSTM(I, H, L, bidirectional=True, dropout=0.1, seed=0)
    head = {"w": (rng.standard_normal((2 * H, 1)) * 0.1).astype(np.float32),
            "b": np.zeros(1, np.float32)}
    opt_lstm, opt_head = Adam(lstm.params), Adam(head)
    x_val, y_val = sine_batch(np.random.default_rng(1), T, 256, I)

    def predict(h_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feat = np.concatenate([h_n[-2], h_n[-1]], axis=1)     # top layer, both directions
        return feat, feat @ head["w"] + head["b"]

    def val_loss() -> float:
        _, (h_n, _) = lstm.forward(x_val)
        return float(np.mean((predict(h_n)[1] - y_val) ** 2))

    first = val_loss()
    print(f"step    0  validation loss {first:.4f}")
    busy = 0.0
    for step in range(1, steps + 1):
        x, target = sine_batch(rng, T, N, I)
        t0 = time.perf_counter()
        y, (h_n, _) = lstm.forward(x, training=True)
        feat, pred = predict(h_n)
        dpred = 2 * (pred - target) / N
        dh_n = np.zeros_like(h_n)
        dfeat = dpred @ head["w"].T
        dh_n[-2], dh_n[-1] = dfeat[:, :H], dfeat[:, H:]
        lstm.backward(np.zeros_like(y), dh_n)
        busy += time.perf_counter() - t0
        opt_lstm.step(lstm.grads)
        opt_head.step({"w": feat.T @ dpred, "b": dpred.sum(0)})
        if step % 20 == 0:
            train = float(np.mean((pred - target) ** 2))
            print(f"step {step:4d}  training loss {train:.4f}  validation loss {val_loss():.4f}")
    last = val_loss()
    flops = 3 * sum(T * 2 * 4 * H * ((I if layer == 0 else 2 * H) + H) * N * 2
                    for layer in range(L))       # forward + backward (twice the forward)
    print(f"throughput: {steps * N / busy:,.0f} sequences/s, {steps * N * T / busy:,.0f} "
          f"sample-steps/s, {steps * flops / busy / 1e9:.1f} GFLOP/s in forward+backward "
          f"({busy / steps * 1e3:.1f} ms per training step)")
    ok = last < 0.5 * first
    print(f"validation loss {first:.4f} -> {last:.4f}: "
          + ("fell" if ok else "did NOT fall by half (failure)"))
    return 0 if ok else 1
