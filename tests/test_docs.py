"""The documentation's examples run: Python blocks in order per file, Cython blocks compiled
against the installed package (a function `example()` in one is called)."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest
from downstream import compile_module

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_examples_run(path):
    code = blocks(path, "python")
    if not code:
        pytest.skip("no Python examples")
    for module in ("torch", "onnxruntime"):
        if any(f"import {module}" in c for c in code) and importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    namespace: dict = {}
    for c in code:
        exec(compile(c, str(path), "exec"), namespace)   # noqa: S102


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_cython_examples_compile(path, tmp_path):
    code = blocks(path, "cython")
    if not code:
        pytest.skip("no Cython examples")
    for i, source in enumerate(code):
        try:
            module = compile_module(tmp_path, f"doc_example_{i}", "# cython: language_level=3\n"
                                    + source)
        except subprocess.CalledProcessError as e:
            pytest.fail(f"{path.name} example {i} does not build:\n{e.stdout}\n{e.stderr}")
        if hasattr(module, "example"):
            module.example()
