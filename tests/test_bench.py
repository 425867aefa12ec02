"""The benchmark front end runs end to end on a tiny shape (figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import bnnslstm as bl

pytest.importorskip("threadpoolctl")
pytest.importorskip("onnxruntime")


def test_bench_cli_runs(tmp_path):
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps({"shapes": [
        {"name": "tiny_train", "T": 3, "B": 2, "I": 4, "H": 8, "L": 2, "bidir": True,
         "kind": "training"}]}))
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bnnslstm", "bench", "--shapes", str(shapes), "--threads", "1",
         "--repeats", "1", "--env", "as-given", "--peers", "onnxruntime", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "core type" in proc.stdout and "| tiny_train | 1 |" in proc.stdout
    rows = json.loads(out.read_text())[0]["rows"]
    assert {r["mode"] for r in rows} == {"forward", "frozen", "train"}
    assert all(r["ms"]["bnnslstm"] > 0 for r in rows)
    assert "onnxruntime" in rows[0]["ratio"]
    assert len({r["pid"] for r in rows}) == 3       # each row timed in a fresh process
    for r in rows:      # one round: its paired ratio is the ratio of the medians
        for peer, ratio in r["ratio"].items():
            assert r["ratio_quartiles"][peer] == pytest.approx([ratio, ratio])
    for r in rows:      # the ceiling is the ratio with ours at the FMA peak
        assert r["fma_peak_gflops"] > 0
        assert r["ceiling"].keys() == r["ratio"].keys()
        for peer, ratio in r["ratio"].items():
            assert r["ceiling"][peer] == pytest.approx(ratio / r["fma_fraction"])
    saturation = json.loads(out.read_text())[0]["saturation"]      # a default mode
    assert {(r["mode"], r["party"]) for r in saturation} == {
        ("saturation-forward", "bnnslstm"), ("saturation-forward", "onnxruntime"),
        ("saturation-train", "bnnslstm")}
    for r in saturation:
        assert r["cliff"] == pytest.approx(r["ms_saturated"] / r["ms"])
    assert "### Saturated gates" in proc.stdout
    seqlen = json.loads(out.read_text())[0]["seqlen"]      # a default mode too
    assert [r["party"] for r in seqlen] == ["bnnslstm", "onnxruntime", "bnnslstm frozen"]
    for r in seqlen:    # a line through T = 1 and T = 8 * 3: cost per call + T * cost per step
        ms = {int(T): v for T, v in r["ms"].items()}
        assert sorted(ms) == [1, 3, 24] and all(v > 0 for v in ms.values())
        assert r["per_step_us"] == pytest.approx((ms[24] - ms[1]) / 23 * 1e3)
        assert r["per_call_us"] + r["per_step_us"] == pytest.approx(ms[1] * 1e3)
    assert "### Per call and per step" in proc.stdout
    assert "### Forward on frozen weights (LSTM.freeze)" in proc.stdout


def test_one_process_times_every_row_in_one(tmp_path):
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps({"shapes": [
        {"name": f"tiny{k}", "T": 2, "B": 2, "I": 4, "H": 8, "L": 1, "bidir": False,
         "kind": "training"} for k in range(2)]}))
    out = tmp_path / "out.json"
    base = [sys.executable, "-m", "bnnslstm", "bench", "--shapes", str(shapes), "--threads",
            "1", "--repeats", "1", "--env", "as-given", "--peers", "", "--modes",
            "forward,train", "--json", str(out)]
    pids = {}
    for flag in ([], ["--one-process"]):
        proc = subprocess.run(base + flag, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(out.read_text())[0]["rows"]
        assert [(r["mode"], r["shape"]) for r in rows] == [
            ("forward", "tiny0"), ("forward", "tiny1"), ("train", "tiny0"), ("train", "tiny1")]
        pids[bool(flag)] = {r["pid"] for r in rows}
    assert len(pids[False]) == 4 and len(pids[True]) == 1


def test_frozen_mode_times_a_frozen_layer():
    from bnnslstm._bench import make_parties

    s = {"name": "t", "T": 2, "B": 1, "I": 3, "H": 4, "L": 1, "bidir": False}
    parties = make_parties(s, [], 1, np.random.default_rng(0), "frozen")
    ours = next(c.cell_contents for c in parties["bnnslstm"].__closure__
                if isinstance(c.cell_contents, bl.LSTM))
    assert ours.frozen
    y, _ = parties["bnnslstm"]()
    ours.unfreeze()
    np.testing.assert_array_equal(y, parties["bnnslstm"]()[0])


def test_paired_quartiles_pair_each_round():
    from bnnslstm._bench import paired_quartiles

    # per-round ratios peer/ours: 2, 1, 0.5, 3, 1 -> sorted 0.5, 1, 1, 2, 3: quartiles 1 and 2
    times = {"ours": [1.0, 2.0, 4.0, 1.0, 1.0], "peer": [2.0, 2.0, 2.0, 3.0, 1.0]}
    assert paired_quartiles(times, "ours") == {"peer": pytest.approx((1.0, 2.0))}
    assert paired_quartiles({"ours": [3.0], "p": [1.5]}, "ours") == {"p": (0.5, 0.5)}   # one round


def test_fma_probe_counts_its_flops():
    from bnnslstm._peak import fma_flops

    per_iteration = fma_flops(1)            # 12 vector FMAs of 4, 8 or 16 floats
    assert per_iteration in (12 * 2 * 4, 12 * 2 * 8, 12 * 2 * 16)
    assert fma_flops(1000) == 1000 * per_iteration
    assert fma_flops(0) == 0
    with pytest.raises(ValueError):
        fma_flops(-1)


def test_bench_compares_blas_back_ends(tmp_path):
    import bnnslstm as bl

    names = ",".join(list(bl.available_blas())[:2])
    shapes = tmp_path / "shapes.json"
    shapes.write_text(json.dumps({"shapes": [
        {"name": "tiny", "T": 3, "B": 20, "I": 4, "H": 8, "L": 1, "bidir": False,
         "kind": "inference"}]}))
    proc = subprocess.run(
        [sys.executable, "-m", "bnnslstm", "bench", "--shapes", str(shapes), "--threads", "1",
         "--repeats", "1", "--env", "as-given", "--blas", names, "--modes", "forward"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first = names.split(",")[0]
    assert f"bnnslstm[{first}] ms" in proc.stdout


def test_geometric_means_state_both_ceilings():
    from bnnslstm._bench import markdown

    def row(shape: str, ours_ms: float, torch_ms: float, gflops: float) -> dict:
        return {"mode": "train", "shape": shape, "threads": 1, "ms": {"bnnslstm": ours_ms,
                "torch": torch_ms}, "gflops": gflops, "peak_fraction": gflops / 200.0,
                "fma_fraction": gflops / 250.0, "sgemm_peak_gflops": 200.0,
                "fma_peak_gflops": 250.0, "ratio": {"torch": torch_ms / ours_ms},
                "ceiling": {"torch": torch_ms / ours_ms * 250.0 / gflops}}

    # ours at 100 and 160 GFLOP/s: at the sgemm peak (200) torch/ours would be 1.2 * 2 = 2.4
    # and 1.5 * 1.25 = 1.875, geometric mean sqrt(4.5) = 2.12; at the FMA peak 3.0 and 2.34
    res = {"env": "autodetect", "blas": {"architecture": "X"}, "OPENBLAS_CORETYPE": None,
           "rows": [row("a", 10.0, 12.0, 100.0), row("b", 10.0, 15.0, 160.0)],
           "saturation": [], "seqlen": []}
    text = markdown([res])
    assert ("**1.34** (ceiling 2.65: ours at the FMA peak 250 GFLOP/s; 2.12 at the sgemm peak "
            "200 GFLOP/s)") in text
    res["env"] = "as-given"     # a half-speed sgemm there: no such ceiling
    assert "**1.34** (ceiling 2.65: ours at the FMA peak 250 GFLOP/s)\n" in markdown([res])


def test_rows_share_the_median_peaks_of_their_thread_count():
    from bnnslstm._bench import pool_peaks

    def row(threads, fma, sgemm, gflops, ratio):
        return {"threads": threads, "fma_peak_gflops": fma, "sgemm_peak_gflops": sgemm,
                "gflops": gflops, "fma_fraction": gflops / fma, "peak_fraction": gflops / sgemm,
                "ratio": {"torch": ratio}, "ceiling": {"torch": ratio * fma / gflops}}

    rows = [row(1, 200.0, 150.0, 100.0, 1.2), row(1, 240.0, 210.0, 120.0, 1.5),
            row(1, 230.0, 200.0, 110.0, 1.1), row(2, 400.0, 300.0, 200.0, 1.1)]
    pool_peaks(rows)
    assert [(r["fma_peak_gflops"], r["sgemm_peak_gflops"]) for r in rows] == [
        (230.0, 200.0)] * 3 + [(400.0, 300.0)]
    assert rows[0]["fma_fraction"] == pytest.approx(100 / 230)
    assert rows[0]["peak_fraction"] == pytest.approx(100 / 200)
    assert rows[0]["ceiling"]["torch"] == pytest.approx(1.2 * 230 / 100)
    assert rows[3]["ceiling"]["torch"] == pytest.approx(1.1 * 400 / 200)
    assert [r["probed_sgemm_gflops"] for r in rows] == [150.0, 210.0, 200.0, 300.0]
