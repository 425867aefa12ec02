"""The benchmark's sequence-length case: per-call cost against per-step cost.

A forward call costs a fixed part (ours packs the weights, as DESIGN step 2 asks, unless the
layer is frozen; ONNX Runtime packed them once when its session was made) plus a part per time
step (at batch 1, streaming the recurrent weights). One inference shape is timed at three
sequence lengths, every party and length interleaved in one run; a line through the shortest
and the longest gives each party's cost per call and per step, which says which of the two a
gap at that shape is made of.
"""

from __future__ import annotations

import numpy as np


def lengths(s: dict) -> list[int]:
    """T = 1, the shape's own T, and 8 times it."""
    return [1, s["T"], 8 * s["T"]]


def seqlen_rows(s: dict, peers: list[str], threads: int, repeats: int) -> list[dict]:
    """One row per party: median ms at each length, and the fitted per-call and per-step
    microseconds."""
    from bnnslstm._bench import make_parties, time_interleaved

    Ts = lengths(s)
    runs = {}
    for T in Ts:
        shape = {**s, "T": T}
        parties = make_parties(shape, peers, threads, np.random.default_rng(1), "forward")
        frozen = make_parties(shape, [], threads, np.random.default_rng(1), "frozen")
        parties["bnnslstm frozen"] = frozen["bnnslstm"]
        runs.update({(name, T): fn for name, fn in parties.items()})
    med = time_interleaved(runs, repeats)
    rows = []
    for name in dict.fromkeys(name for name, _ in runs):
        ms = {T: med[name, T] * 1e3 for T in Ts}
        step = (ms[Ts[-1]] - ms[Ts[0]]) / (Ts[-1] - Ts[0])
        rows.append({"mode": "seqlen", "shape": s["name"], "threads": threads, "party": name,
                     "ms": ms, "per_step_us": step * 1e3,
                     "per_call_us": (ms[Ts[0]] - step * Ts[0]) * 1e3})
    return rows


def seqlen_markdown(res: dict) -> str:
    rows = res.get("seqlen", [])
    if not rows:
        return ""
    Ts = sorted(rows[0]["ms"], key=int)
    out = [f"\n### Per call and per step, OpenBLAS {res['env']} ({rows[0]['shape']}, forward, "
           f"T = {', '.join(map(str, Ts))})\n",
           "| threads | party | " + " | ".join(f"T={T} ms" for T in Ts)
           + " | per call us | per step us | " + " | ".join(f"party/ours T={T}" for T in Ts)
           + " |",
           "|" + "---|" * (4 + 2 * len(Ts))]
    for r in rows:
        ours = next(o for o in rows if o["threads"] == r["threads"] and o["party"] == "bnnslstm")
        out.append(f"| {r['threads']} | {r['party']} | "
                   + " | ".join(f"{r['ms'][T]:.3f}" for T in Ts)
                   + f" | {r['per_call_us']:.0f} | {r['per_step_us']:.1f} | "
                   + " | ".join(f"{r['ms'][T] / ours['ms'][T]:.2f}" for T in Ts) + " |")
    return "\n".join(out)
