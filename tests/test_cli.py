"""python -m bnnslstm info, and the OpenBLAS core-type warning."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bnnslstm._blasinfo import core_type_warning


def test_info_runs():
    out = subprocess.run([sys.executable, "-m", "bnnslstm", "info"], capture_output=True,
                         text=True, check=True).stdout
    for needle in ("ABI version 1", "numpy", "scipy", "CPU:", "kernel BLAS:",
                   "BLAS back ends available: auto", "OPENBLAS_CORETYPE=",
                   "BNNSLayerParametersLSTM 5040", "BNNSFilterParameters 32"):
        assert needle in out, needle


@pytest.mark.parametrize("core,ext,warn", [
    ("Haswell", ["avx2", "fma", "avx512f"], "SkylakeX"),
    ("Zen", ["avx2", "avx512f"], "SkylakeX"),
    ("Sandybridge", ["avx", "avx2", "fma"], "Haswell"),
    ("SkylakeX", ["avx2", "avx512f"], None),
    ("Haswell", ["avx2", "fma"], None),
    ("neoversen1", ["asimd"], None),
    (None, ["avx512f"], None),
])
def test_core_type_warning(monkeypatch, core, ext, warn):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    message = core_type_warning(core, ext)
    if warn is None:
        assert message is None
    else:
        assert f"set to {warn}" in message and "OPENBLAS_CORETYPE=Haswell forces" in message


def test_core_type_warning_without_the_variable(monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert "autodetection chose them" in core_type_warning("Haswell", ["avx512f"])
    assert os.environ.get("OPENBLAS_CORETYPE") is None
