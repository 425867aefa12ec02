"""``python -m bnnslstm bench``: bnnslstm against ONNX Runtime's LSTM and PyTorch's nn.LSTM.

    python -m bnnslstm bench [--threads 1,2] [--peers torch,onnxruntime] [--shapes FILE]
                             [--modes forward,frozen,train,saturation,seqlen] [--env both]
                             [--json OUT] [--plot OUT.png] [--memory] [--one-process]

'forward' times inference on every shape against both peers; 'frozen' the same with our
layer frozen (``LSTM.freeze``: weights packed once, as ONNX Runtime packs them when its
session is made, where 'forward' packs them per call); 'train' times a training step
(forward with the training cache, then backward with dL/dx and every weight gradient) on the
'training' shapes against PyTorch autograd (ONNX Runtime has no backward); 'saturation'
times both on the first training shape with the input as given and with saturated gates;
'seqlen' times the first inference shape at three sequence lengths and splits each party's
forward (ours per call and frozen) into a cost per call and a cost per time step.

Every party runs in the same process on the same weights and inputs, interleaved call by call;
each figure is the median of --repeats timed calls after warm-up, each call preceded by a short
pause so that no party's spinning worker threads slow the next. Each row of a table (one mode,
one shape, every thread count) gets a fresh process, as a training script does, so that no
party's time depends on the shapes timed before it (--one-process: all rows in one; see
child_runs). A ratio peer/ours comes with
the quartiles of its per-round ratios (each round runs every party once, back to back).
Thread counts are set for all alike: BLAS threads through threadpoolctl, torch.set_num_threads,
ORT intra_op_num_threads.
--env runs the whole table once per OpenBLAS setting, each in a fresh child process:
'as-given' keeps the environment, 'autodetect' removes OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
before scipy loads (see DESIGN.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bnnslstm._saturation import saturation_markdown, saturation_rows
from bnnslstm._seqlen import seqlen_markdown, seqlen_rows

SHAPES = Path(__file__).resolve().parent / "bench_shapes.json"   # DeepBench + one stacked
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


TITLES = {"forward": "Forward", "frozen": "Forward on frozen weights (LSTM.freeze)",
          "train": "Forward + backward (training step)"}


def forward_flops(s: dict) -> float:
    """oneDNN's count: 2*4H*(in+H)*B per step, layer and direction."""
    D = 2 if s["bidir"] else 1
    total = 0.0
    for layer in range(s["L"]):
        width = s["I"] if layer == 0 else D * s["H"]
        total += D * s["T"] * 2 * 4 * s["H"] * (width + s["H"]) * s["B"]
    return total


def sgemm_peak(threads: int, n: int = 2048, repeats: int = 7) -> float:
    """GFLOP/s of a large square sgemm through scipy's BLAS (the kernel's BLAS), the best of
    `repeats`: a peak, which a busy moment of the machine can only lower."""
    from scipy.linalg.blas import sgemm

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32, order="F")
    sgemm(1.0, a, a)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sgemm(1.0, a, a)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / min(times) / 1e9


def fma_peak(threads: int, iters: int = 20_000_000, repeats: int = 5) -> float:
    """GFLOP/s of the cores' float32 multiply-adds alone (bnnslstm._peak), `threads` threads
    at once, the best of `repeats`: a busy host can only lower it (a median of 5 once read
    140 GFLOP/s on a core that peaks at 226-240). No party's kernel can beat it, so peer time
    / (our flops / this peak) bounds the ratio peer/ours that any kernel could reach here."""
    from bnnslstm._peak import fma_flops

    fma_flops(iters // 10)
    return max(concurrent_rate(fma_flops, threads, iters) for _ in range(repeats))


def concurrent_rate(fn: Callable[[int], int], threads: int, arg: int) -> float:
    """G per second of fn(arg) (returning a count, releasing the GIL) run by `threads` threads
    started together."""
    import threading

    start = threading.Barrier(threads + 1)
    done = [0] * threads

    def run(i: int) -> None:
        start.wait()
        done[i] = fn(arg)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return sum(done) / (time.perf_counter() - t0) / 1e9


def blas_info() -> dict:
    """scipy's BLAS as threadpoolctl sees it, with its core type."""
    from bnnslstm._blasinfo import scipy_blas

    lib = scipy_blas() or {}
    return {k: lib.get(k) for k in ("internal_api", "version", "architecture", "filepath")}


def make_parties(s: dict, peers: list[str], threads: int, rng: np.random.Generator,
                 mode: str, backends: list[str] | None = None, x_scale: float = 1.0) -> dict:
    """name -> zero-argument callable running one forward pass (mode 'forward'; 'frozen':
    ours on weights packed once) or one forward+backward pass (mode 'train') on the same
    weights and x (standard normal, times x_scale)."""
    import bnnslstm as bl
    from bnnslstm._peers import onnx_lstm_model, onnx_tensors, ort_session

    D = 2 if s["bidir"] else 1
    layers = [onnx_tensors(rng, s["I"] if k == 0 else D * s["H"], s["H"], s["bidir"])
              for k in range(s["L"])]
    x = (rng.standard_normal((s["T"], s["B"], s["I"])) * x_scale).astype(np.float32)
    ours = bl.LSTM(s["I"], s["H"], s["L"], bidirectional=s["bidir"])
    for k, layer in enumerate(layers):   # copy ONNX weights layer by layer (gate order iofc)
        one = bl.LSTM.from_onnx(layer["W"], layer["R"], layer["B"], direction=layer["direction"])
        for key, value in one.params.items():
            ours.params[key.replace("_l0", f"_l{k}")][...] = value
    D = 2 if s["bidir"] else 1
    dy = rng.standard_normal((s["T"], s["B"], D * s["H"])).astype(np.float32)

    def train_ours():
        ours.forward(x, training=True)
        return ours.backward(dy)

    ours.n_threads = threads          # our own threads, like every party's
    inference = mode != "train"
    if mode == "frozen":
        ours.freeze()
    run_ours = (lambda: ours.forward(x)) if inference else train_ours
    if backends:                      # --blas: the same kernel on each BLAS back end
        def on(name: str):
            def run():
                with bl.blas(name):
                    return run_ours()
            return run
        return {f"bnnslstm[{name}]": on(name) for name in backends}
    parties = {"bnnslstm": run_ours}
    if "onnxruntime" in peers and inference:
        sess = ort_session(onnx_lstm_model(layers, s["I"]), threads)
        parties["onnxruntime"] = lambda: sess.run(None, {"X": x})
    if "torch" in peers:
        import torch

        torch.set_num_threads(threads)
        module = ours.to_torch()
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)

        def forward_torch():
            with torch.no_grad():
                return module(xt)

        def train_torch():        # the same work as ours: dL/dx and every weight gradient
            module.zero_grad(set_to_none=True)
            xg = xt.clone().requires_grad_()
            y, _ = module(xg)
            y.backward(dyt)
        parties["torch"] = forward_torch if inference else train_torch
    return parties


def timed_rounds(parties: dict, repeats: int, warmup: int = 2,
                 pause: float = 0.125) -> dict[str, list[float]]:
    """Seconds per call of each party in `repeats` rounds, every party once per round; before
    each timed call a pause lets the worker threads of the party that ran before park, so that
    no party pays for another's spinning. OpenBLAS's idle workers spin for 2**28 TSC cycles
    (about 0.1 s at 2.6 GHz) after each threaded call: with a shorter pause, a 2-thread
    training step of ours (its backward calls sgemm) slowed the PyTorch call after it, and a
    forward of ours just after an sgemm took twice its time."""
    times: dict[str, list[float]] = {name: [] for name in parties}
    for _ in range(warmup):
        for fn in parties.values():
            fn()
    for _ in range(repeats):
        for name, fn in parties.items():
            time.sleep(pause)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(v) for name, v in times.items()}


def time_interleaved(parties: dict, repeats: int, warmup: int = 2, pause: float = 0.125) -> dict:
    """Median seconds per party over `timed_rounds`."""
    return medians(timed_rounds(parties, repeats, warmup, pause))


def paired_quartiles(times: dict[str, list[float]], base: str) -> dict[str, tuple[float, float]]:
    """First and third quartiles of each peer's per-round ratio peer/base. The parties of one
    round ran back to back, so the ratio of a round pairs calls made in the same machine
    state; the spread of these ratios is how far one round's verdict can stray from the
    median's."""
    out = {}
    for name, v in times.items():
        if name == base:
            continue
        ratios = [p / b for p, b in zip(v, times[base], strict=True)]
        if len(ratios) < 2:
            out[name] = (ratios[0], ratios[0])
        else:
            q = statistics.quantiles(ratios, n=4, method="inclusive")
            out[name] = (q[0], q[2])
    return out


def table_runs(shapes: list[dict], modes: list[str]) -> list[tuple[str, dict]]:
    """The (mode, shape) rows of the tables: every shape for forward and frozen, the training
    shapes for train."""
    return [(mode, s) for mode in modes for s in shapes
            if mode in ("forward", "frozen") or (mode == "train" and s["kind"] == "training")]


def child_runs(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(modes, shape names) of each child process of one OpenBLAS setting. Each table row
    and each of saturation and seqlen gets a fresh process (--one-process: one for all), so
    that no party's time depends on what ran before it: glibc returns freed memory above its
    trim threshold to the system, and that threshold grows with the largest block freed so
    far, so after a larger shape a party that allocates per call (PyTorch) stops paying page
    faults that it pays in a fresh process (stack2_bidir_h256_b16, 1 thread: PyTorch's
    training step 79-94 ms in a fresh process, 67-84 with the threshold grown)."""
    shapes = json.loads(Path(args.shapes).read_text())["shapes"]
    modes = args.modes.split(",")
    names = [s["name"] for s in shapes]
    if args.one_process:
        return [(args.modes, names)]
    runs = [(mode, [s["name"]]) for mode, s in table_runs(shapes, modes)]
    runs += [(mode, []) for mode in modes if mode in ("saturation", "seqlen")]
    return runs or [(args.modes, [])]         # nothing to time: one child, empty tables


def pool_peaks(rows: list[dict]) -> None:
    """Give every row of one OpenBLAS setting the median of the FMA and sgemm peaks that its
    processes probed at its thread count (each probe the best of its repeats), and recompute
    its fractions and ceilings. With a process per row, one row's unlucky probe would
    otherwise put it above 100% (a probe of 156 GFLOP/s against 203-206 in the other
    processes of the same run). Not the highest probe: that is the luckiest moment of some
    twenty, where one probe per run (--one-process) is a typical one, and the fractions
    would no longer compare with that protocol's (the highest 1-thread sgemm probe of a run
    was 221 GFLOP/s, the median 209). Each row keeps its own probes as probed_*."""
    for r in rows:
        r.setdefault("probed_fma_gflops", r["fma_peak_gflops"])
        r.setdefault("probed_sgemm_gflops", r["sgemm_peak_gflops"])
    for t in {r["threads"] for r in rows}:
        at_t = [r for r in rows if r["threads"] == t]
        fma = statistics.median(r["probed_fma_gflops"] for r in at_t)
        peak = statistics.median(r["probed_sgemm_gflops"] for r in at_t)
        for r in at_t:
            r["fma_peak_gflops"], r["sgemm_peak_gflops"] = fma, peak
            r["fma_fraction"], r["peak_fraction"] = r["gflops"] / fma, r["gflops"] / peak
            r["ceiling"] = {k: v / r["fma_fraction"] for k, v in r["ratio"].items()}


def child(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_limits

    shapes = json.loads(Path(args.shapes).read_text())["shapes"]
    peers = [p for p in args.peers.split(",") if p]
    backends = [b for b in args.blas.split(",") if b] if args.blas else None
    modes = args.modes.split(",")
    only = set(args.only.split(","))
    runs = [(mode, s) for mode, s in table_runs(shapes, modes) if s["name"] in only]
    saturated = next((s for s in shapes if s["kind"] == "training"), shapes[0])
    inference = next((s for s in shapes if s["kind"] == "inference"), shapes[0])
    result = {"env": args.env, "blas": blas_info(),
              "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "rows": [],
              "saturation": [], "seqlen": []}
    rng = np.random.default_rng(0)
    import bnnslstm as bl
    for name in backends or []:       # load them now: threadpoolctl limits loaded libraries only
        with bl.blas(name):
            pass
    for threads in [int(t) for t in args.threads.split(",")]:
        with threadpool_limits(limits=threads):
            time.sleep(0.25)           # no party's workers may still spin beside the probe
            fma = fma_peak(threads)
            peak = sgemm_peak(threads)
            for mode, s in runs:
                times = timed_rounds(make_parties(s, peers, threads, rng, mode, backends),
                                     args.repeats)
                med = medians(times)
                base = next(iter(med))     # ratios are against bnnslstm (or the first back end)
                flops = forward_flops(s) * (3 if mode == "train" else 1)  # backward = 2 forwards
                gflops = flops / med[base] / 1e9
                row = {"mode": mode, "shape": s["name"], "threads": threads, "pid": os.getpid(),
                       "sgemm_peak_gflops": peak, "fma_peak_gflops": fma,
                       "ms": {k: v * 1e3 for k, v in med.items()}, "gflops": gflops,
                       "peak_fraction": gflops / peak, "fma_fraction": gflops / fma,
                       "base": base,
                       "ratio": {k: v / med[base] for k, v in med.items() if k != base},
                       "ratio_quartiles": paired_quartiles(times, base),
                       # the ratio if ours ran at the FMA peak: no kernel can go past it
                       "ceiling": {k: v * fma * 1e9 / flops for k, v in med.items()
                                   if k != base}}
                result["rows"].append(row)
                print(format_row(row), file=sys.stderr, flush=True)
            if "saturation" in modes and not backends:
                for row in saturation_rows(saturated, peers, threads, args.repeats):
                    result["saturation"].append(row)
                    print(f"{row['mode']} t={threads} {row['party']}: {row['ms']:.3f} -> "
                          f"{row['ms_saturated']:.3f} ms", file=sys.stderr, flush=True)
            if "seqlen" in modes and not backends:
                for row in seqlen_rows(inference, peers, threads, args.repeats):
                    result["seqlen"].append(row)
                    print(f"seqlen t={threads} {row['party']}: {row['per_call_us']:.0f} us per "
                          f"call, {row['per_step_us']:.1f} us per step", file=sys.stderr,
                          flush=True)
    print(json.dumps(result))


def format_row(r: dict) -> str:
    ms = " ".join(f"{k}={v:8.3f}ms" for k, v in r["ms"].items())
    ratio = " ".join(f"{k}/{r['base']}={v:5.2f} {spread(r, k)}" for k, v in r["ratio"].items())
    return (f"{r['mode']:7s} {r['shape']:24s} t={r['threads']} {ms}  {r['gflops']:6.1f} GFLOP/s "
            f"({100 * r['peak_fraction']:4.1f}% of sgemm {r['sgemm_peak_gflops']:.0f}, "
            f"{100 * r['fma_fraction']:4.1f}% of FMA {r['fma_peak_gflops']:.0f})  {ratio}")


def spread(r: dict, peer: str) -> str:
    """'(q1-q3)' of the per-round ratios, or '' for rows of runs that did not record them."""
    q = r.get("ratio_quartiles", {}).get(peer)
    return f"({q[0]:.2f}-{q[1]:.2f})" if q else ""


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def markdown(results: list[dict]) -> str:
    out = []
    sections = [(res, mode) for res in results
                for mode in dict.fromkeys(r["mode"] for r in res["rows"])]
    for res, mode in sections:
        blas = res["blas"]
        rows = [r for r in res["rows"] if r["mode"] == mode]
        title = TITLES[mode]
        out.append(f"\n### {title}, OpenBLAS {res['env']} (core type "
                   f"{blas.get('architecture')}, OPENBLAS_CORETYPE={res['OPENBLAS_CORETYPE']})\n")
        peers = sorted({k for r in rows for k in r["ratio"]})
        base = rows[0].get("base", "bnnslstm")
        ours = "first" if base != "bnnslstm" else "ours"
        caps = peers if ours == "ours" else []    # back ends: one kernel, no ceiling
        out.append((f"| shape | threads | {base} ms | " + " | ".join(f"{p} ms" for p in peers)
                    + " | GFLOP/s | % sgemm peak | % FMA peak | "
                    + "".join(f"{p}/{ours} | " for p in peers)
                    + "".join(f"{p}/{ours} ceiling | " for p in caps)).rstrip())
        out.append("|" + "---|" * (6 + 2 * len(peers) + len(caps)))
        for r in rows:
            out.append((f"| {r['shape']} | {r['threads']} | {r['ms'][base]:.3f} | "
                        + " | ".join(f"{r['ms'][p]:.3f}" for p in peers)
                        + f" | {r['gflops']:.1f} | {100 * r['peak_fraction']:.0f}% | "
                        + f"{100 * r['fma_fraction']:.0f}% | "
                        + "".join(f"{r['ratio'][p]:.2f} {spread(r, p)} | " for p in peers)
                        + "".join(f"{r['ceiling'][p]:.2f} | " for p in caps)).rstrip())
        for p in peers:
            for t in sorted({r["threads"] for r in rows}):
                at_t = [r for r in rows if r["threads"] == t]
                geo = geomean([r["ratio"][p] for r in at_t])
                cap = ""
                if caps:
                    cap = (f" (ceiling {geomean([r['ceiling'][p] for r in at_t]):.2f}: {ours} "
                           f"at the FMA peak {at_t[0]['fma_peak_gflops']:.0f} GFLOP/s")
                    if res["env"] == "autodetect":   # as-given: a half-speed sgemm
                        at_sgemm = geomean([r["ratio"][p] / r["peak_fraction"] for r in at_t])
                        cap += (f"; {at_sgemm:.2f} at the sgemm peak "
                                f"{at_t[0]['sgemm_peak_gflops']:.0f} GFLOP/s")
                    cap += ")"
                if all(p in r.get("ratio_quartiles", {}) for r in at_t):
                    lo, hi = (geomean([r["ratio_quartiles"][p][i] for r in at_t]) for i in (0, 1))
                    cap += f"; the shapes' quartiles give {lo:.2f}-{hi:.2f}"
                out.append(f"\nGeometric mean {p}/{ours}, {t} thread(s): **{geo:.2f}**{cap}")
    out += [saturation_markdown(res) for res in results]
    out += [seqlen_markdown(res) for res in results]
    return "\n".join(out)


def plot(results: list[dict], path: str) -> None:
    """Bar chart of peer/ours per shape, one panel per (OpenBLAS setting, mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(res, mode) for res in results
              for mode in dict.fromkeys(r["mode"] for r in res["rows"])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.6 * len(panels)), squeeze=False)
    for ax, (res, mode) in zip(axes[:, 0], panels, strict=True):
        rows = [r for r in res["rows"] if r["mode"] == mode]
        shapes = list(dict.fromkeys(r["shape"] for r in rows))
        bars = sorted({(p, r["threads"]) for r in rows for p in r["ratio"]})
        width = 0.8 / max(len(bars), 1)
        for i, (peer, t) in enumerate(bars):
            at = [next((r for r in rows if r["shape"] == s and r["threads"] == t), None)
                  for s in shapes]
            vals = [r["ratio"][peer] if r else 0.0 for r in at]
            # whiskers: the quartiles of the per-round ratios, which the ratio of the medians
            # may lie outside (a whisker's length is then 0)
            quart = [r.get("ratio_quartiles", {}).get(peer) if r else None for r in at]
            err = [[max(v - q[0], 0.0) if q else 0.0 for v, q in zip(vals, quart, strict=True)],
                   [max(q[1] - v, 0.0) if q else 0.0 for v, q in zip(vals, quart, strict=True)]]
            ax.bar([k + i * width for k in range(len(shapes))], vals, width, yerr=err,
                   capsize=2, error_kw={"linewidth": 0.8}, label=f"{peer}/ours, {t} thread(s)")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(shapes))], shapes, fontsize=8,
                      rotation=12, ha="right")
        ax.set_ylabel("peer time / our time")
        ax.set_title(f"{TITLES[mode]}, OpenBLAS "
                     f"{res['env']} ({res['blas'].get('architecture')})", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


MEMORY_CHILD = """
import resource, sys, numpy as np
party, T, B, H = sys.argv[1], 25, 64, 1024
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, H)).astype(np.float32)
dy = rng.standard_normal((T, B, H)).astype(np.float32)
if party == "bnnslstm":
    import bnnslstm as bl
    m = bl.LSTM(H, H, seed=0)
    step = lambda: (m.forward(x, training=True), m.backward(dy))
else:
    import torch
    m = torch.nn.LSTM(H, H)
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    def step():
        y, _ = m(xt.clone().requires_grad_())
        y.backward(dyt)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(3):
    step()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before, after)
"""


def peak_memory(peers: list[str]) -> dict:
    """Peak RSS growth (KiB) of three training steps on db_train_h1024_b64, each party in a
    fresh process, beyond what its inputs and weights already hold."""
    out = {}
    for party in ["bnnslstm"] + [p for p in peers if p == "torch"]:
        proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, party], check=True,
                              capture_output=True, text=True)
        grown, total = (int(v) for v in proc.stdout.split())
        out[party] = {"growth_kib": grown, "peak_kib": total}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bnnslstm bench",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--peers", default="onnxruntime,torch")
    ap.add_argument("--shapes", default=str(SHAPES), help="a shapes.json file")
    ap.add_argument("--modes", default="forward,frozen,train,saturation,seqlen",
                    help="comma-separated: forward (inference), frozen (inference, our layer "
                    "frozen: weights packed once), train (forward + backward), "
                    "saturation (the first training shape with saturated gates, both modes), "
                    "seqlen (the first inference shape at three lengths: per call, per step)")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--env", default="both", choices=["as-given", "autodetect", "both"],
                    help="OpenBLAS core type: the environment as given, autodetect, or both")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--plot", help="write a bar chart of the ratios here (needs matplotlib)")
    ap.add_argument("--memory", action="store_true",
                    help="also measure peak RSS of a training step on db_train_h1024_b64")
    ap.add_argument("--blas", help="compare BLAS back ends instead of peers, e.g. "
                    "scipy,openblas32,mkl (ratios against the first)")
    ap.add_argument("--one-process", action="store_true",
                    help="time every row of an OpenBLAS setting in one process (by default "
                    "each row gets a fresh one: see child_runs)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--only", default="", help=argparse.SUPPRESS)     # child: shape names
    args = ap.parse_args(argv)
    if not set(args.modes.split(",")) <= {"forward", "frozen", "train", "saturation", "seqlen"}:
        ap.error(f"--modes: expected forward, frozen, train, saturation and/or seqlen, got "
                 f"{args.modes!r}")
    if args.child:
        child(args)
        return 0
    results = []
    for env_mode in (["as-given", "autodetect"] if args.env == "both" else [args.env]):
        env = dict(os.environ)
        if env_mode == "autodetect":
            for var in OPENBLAS_VARS:
                env.pop(var, None)
        print(f"== OpenBLAS {env_mode} ==", file=sys.stderr, flush=True)
        merged: dict = {}
        for modes, names in child_runs(args):
            cmd = [sys.executable, "-m", "bnnslstm._bench", "--child", "--env", env_mode,
                   "--threads", args.threads, "--peers", args.peers, "--shapes", args.shapes,
                   "--modes", modes, "--repeats", str(args.repeats), "--only", ",".join(names)]
            if args.blas:
                cmd += ["--blas", args.blas]
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
            res = json.loads(proc.stdout)
            if not merged:
                merged = res
            else:
                for key in ("rows", "saturation", "seqlen"):
                    merged[key] += res[key]
        pool_peaks(merged["rows"])
        results.append(merged)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    for res in results:
        blas = res["blas"]
        print(f"OpenBLAS {res['env']}: {blas.get('internal_api')} {blas.get('version')}, "
              f"core type {blas.get('architecture')}, OPENBLAS_CORETYPE="
              f"{res['OPENBLAS_CORETYPE']}")
    print(markdown(results))
    if args.memory:
        mem = peak_memory([p for p in args.peers.split(",") if p])
        print("\nPeak RSS growth of three training steps on db_train_h1024_b64 (fresh process):")
        for party, m in mem.items():
            print(f"  {party}: {m['growth_kib'] / 1024:.0f} MiB (peak {m['peak_kib'] / 1024:.0f}"
                  f" MiB)")
        results.append({"memory": mem})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.plot:
        plot([r for r in results if "rows" in r], args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
