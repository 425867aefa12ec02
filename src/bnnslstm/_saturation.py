"""The benchmark's saturation case: does any party slow down when the gates saturate?

Saturated gates (|pre-activation| in the tens) make sigmoid outputs and their derivatives tiny,
and their products with the cell state and the gradients fall below FLT_MIN: subnormal floats,
which many CPUs handle in microcode at tens to hundreds of cycles each. bnnslstm flushes them
to zero inside the kernel (DESIGN step 9). Here each party runs one shape with its input as
given and with the input times SCALE (the same weights), interleaved in one run; the ratio
saturated / normal shows a cliff if there is one, and the share of subnormal values in each
party's saturated output shows that the case produces them where nothing flushes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALE = 100.0        # x * 100: most gate pre-activations are far beyond +-10


def subnormal_share(out: Any) -> float:
    """Share of nonzero subnormal values in the first array of a party's forward output."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    a = np.asarray(out.detach() if hasattr(out, "detach") else out, np.float32)
    return float(np.mean((a != 0) & (np.abs(a) < np.finfo(np.float32).tiny)))


def saturation_rows(s: dict, peers: list[str], threads: int, repeats: int) -> list[dict]:
    """One row per (mode, party): median ms with the input as given and times SCALE."""
    from bnnslstm._bench import make_parties, time_interleaved

    rows = []
    for mode in ("forward", "train"):
        normal = make_parties(s, peers, threads, np.random.default_rng(1), mode)
        saturated = make_parties(s, peers, threads, np.random.default_rng(1), mode,
                                 x_scale=SCALE)
        share = {}
        if mode == "forward":
            share = {name: subnormal_share(fn()) for name, fn in saturated.items()}
        both = {**{(name, False): fn for name, fn in normal.items()},
                **{(name, True): fn for name, fn in saturated.items()}}
        med = time_interleaved(both, repeats)
        for name in normal:
            rows.append({"mode": f"saturation-{mode}", "shape": s["name"], "threads": threads,
                         "party": name, "ms": med[name, False] * 1e3,
                         "ms_saturated": med[name, True] * 1e3,
                         "cliff": med[name, True] / med[name, False],
                         "subnormal_share": share.get(name)})
    return rows


def saturation_markdown(res: dict) -> str:
    rows = res.get("saturation", [])
    if not rows:
        return ""
    out = [f"\n### Saturated gates, OpenBLAS {res['env']} ({rows[0]['shape']}, input x "
           f"{SCALE:g})\n",
           "| mode | threads | party | normal ms | saturated ms | saturated/normal "
           "| subnormal share of saturated y |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        share = "" if r["subnormal_share"] is None else f"{100 * r['subnormal_share']:.2f}%"
        out.append(f"| {r['mode'].removeprefix('saturation-')} | {r['threads']} | {r['party']} "
                   f"| {r['ms']:.3f} | {r['ms_saturated']:.3f} | {r['cliff']:.2f} | {share} |")
    return "\n".join(out)
