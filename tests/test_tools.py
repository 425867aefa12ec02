"""tools/kernels.c, the kernels' own speed outside Python: it builds against the installed
headers with the command its header gives, and its products agree with a double-precision
reference (it exits 1 otherwise)."""

from __future__ import annotations

import platform
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from downstream import compiler

import bnnslstm as bl

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "kernels.c"


def documented_flags() -> list[str]:
    """The compiler flags of the build command in the tool's header comment."""
    text = TOOL.read_text()
    command = re.search(r"^ \*   cc (.*?)\n \*   \./kernels", text, re.S | re.M).group(1)
    words = shlex.split(command.replace("\\\n *", " "))
    return [w for w in words if w.startswith(("-O", "-std", "-f", "-W"))]


@pytest.mark.skipif(not TOOL.exists(), reason="not a source tree: no tools/")
def test_kernel_microbenchmark_builds_and_its_products_are_right(tmp_path):
    flags = documented_flags()
    assert "-ffp-contract=fast" in flags and "-O3" in flags
    exe = tmp_path / "kernels"
    build = subprocess.run([*compiler(), *flags, "-I", str(Path(bl.__file__).parent), str(TOOL),
                            "-o", str(exe), "-lpthread", "-lm"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), "--quick"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    products = [line for line in run.stdout.splitlines() if "GFLOP/s  " in line]
    assert len(products) == 9, run.stdout    # block, 3 steps, 2 projections, dh, dW, dX
    assert "GB/s of W" in run.stdout


@pytest.mark.skipif(not TOOL.exists() or platform.system() != "Linux"
                    or platform.machine() != "x86_64", reason="the per-ISA clones: x86-64 Linux")
def test_kernel_headers_build_for_this_cpu_alone(tmp_path):
    # meson's `native` option (-march=native) defines BL_NATIVE, which turns the per-ISA clones
    # off (_isa.h): with them, on a CPU with features beyond x86-64-v4 (a Zen 4's AVX-512 BF16),
    # gcc could not inline the kernel bodies into the v4 clones and the build failed. -O0
    # inlines always_inline functions too, and compiles in seconds.
    meson = (ROOT / "meson.build").read_text()
    assert re.search(r"if get_option\('native'\)\n(.*\n)*?.*'-DBL_NATIVE'.*\nendif", meson)
    cc = [*compiler(), "-O0", "-std=c11", "-march=native", "-DBL_NATIVE", "-Wno-unused-function",
          "-I", str(Path(bl.__file__).parent), "-c", str(TOOL), "-o", str(tmp_path / "k.o")]
    build = subprocess.run(cc, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
