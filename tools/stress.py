"""Random stress runs (not in CI: time): python tools/stress.py MODE [--seconds S] [--seed N].

forward  random forwards against the float64 reference, 1 or 2 threads, with guard bytes after
         every workspace (tests' CountingAllocator): a write past it fails
train    random training steps (forward with the cache, backward) likewise
threads  random bidirectional stacks (dropout in a third): a training step at 1 thread and at
         2, bit for bit

Stops at the first failure with its shape and exit status 1; prints the number of cases.
Run from the repository root, with bnnslstm installed (the test helpers come from tests/).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import bnnslstm as bl  # noqa: E402


def forward_case(rng: np.random.Generator) -> str | None:
    import reference as ref
    from problems import CountingAllocator, build, random_problem, run
    # a quarter with 32 to 40 rows, where a zero initial state (h0 absent, half the cases)
    # skips the first step's product and two threads split the rows
    N = int(rng.integers(1, 6)) if rng.random() < 0.75 else int(rng.integers(32, 41))
    shape = dict(I=int(rng.integers(1, 1200)), H=int(rng.integers(1, 400)),
                 L=int(rng.integers(1, 3)), S=int(rng.integers(1, 4)), N=N,
                 bidir=bool(rng.random() < 0.5), h0=bool(rng.random() < 0.5))
    guard = CountingAllocator(guard=1 << 20)
    fp = guard.filter_params()
    fp.n_threads = int(rng.integers(1, 3))
    p = random_problem(rng, **shape)
    y, hn, _ = run(build(p), fp)
    ry, rhn, _ = ref.forward(p)
    if guard.overruns or not (np.allclose(y, ry, rtol=1e-4, atol=2e-5)
                              and np.allclose(hn, rhn, rtol=1e-4, atol=2e-5)):
        return f"{shape} threads={fp.n_threads} overruns={guard.overruns}"
    return None


def train_case(rng: np.random.Generator) -> str | None:
    import test_backward
    from problems import CountingAllocator, random_problem
    S, N = int(rng.integers(1, 5)), int(rng.integers(1, 40))
    shape = dict(I=int(rng.integers(1, 700)), H=int(rng.integers(1, 330)),
                 L=int(rng.integers(1, 3)), S=S, N=N, bidir=bool(rng.random() < 0.6), scale=0.1)
    if rng.random() < 0.3:
        shape["lengths"] = sorted(rng.integers(0, S + 1, N).tolist(), reverse=True)
    guard = CountingAllocator(guard=1 << 20)
    fp = guard.filter_params()
    fp.n_threads = int(rng.integers(1, 3))
    try:
        test_backward.check(random_problem(rng, **shape), rng, filter_params=fp)
    except AssertionError as e:
        return f"{shape} threads={fp.n_threads}: {str(e)[:300]}"
    return f"{shape} threads={fp.n_threads} overruns={guard.overruns}" if guard.overruns else None


def threads_case(rng: np.random.Generator) -> str | None:
    I, H, L = int(rng.integers(1, 80)), int(rng.integers(64, 300)), int(rng.integers(1, 4))
    T, N = int(rng.integers(1, 30)), int(rng.integers(1, 48))
    lengths = None
    if rng.random() < 0.5:
        lengths = sorted(rng.integers(0, T + 1, N).tolist(), reverse=bool(rng.random() < 0.5))
    dropout = 0.2 if rng.random() < 0.3 else 0.0
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    dy = rng.standard_normal((T, N, 2 * H)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        lstm = bl.LSTM(I, H, L, bidirectional=True, dropout=dropout, seed=3)
        lstm.n_threads = threads
        y, _ = lstm.forward(x, lengths=lengths, training=True)
        outs.append([y, *lstm.backward(dy)] + [lstm.grads[k].copy() for k in sorted(lstm.grads)])
    if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(*outs, strict=True)):
        return f"I={I} H={H} L={L} T={T} N={N} lengths={lengths} dropout={dropout}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("forward", "train", "threads"))
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    case = {"forward": forward_case, "train": train_case, "threads": threads_case}[args.mode]
    rng = np.random.default_rng(args.seed)
    start, n = time.time(), 0
    while time.time() - start < args.seconds:
        failure = case(rng)
        if failure is not None:
            print(f"FAIL after {n} cases: {failure}")
            return 1
        n += 1
    print(f"ok: {n} {args.mode} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
