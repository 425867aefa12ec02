"""tools/kernels.c, the kernels' own speed outside Python: it builds against the installed
headers with the command its header gives, and its products agree with a double-precision
reference (it exits 1 otherwise). Also the per-ISA builds of the kernels and passes, and
tools/tsan_ours.py, the verdict of the ThreadSanitizer run."""

from __future__ import annotations

import functools
import importlib.util
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
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


def run_tool(cc: Sequence[str], flags: list[str], tmp_path: Path) -> tuple[Path, str]:
    """Build the tool with `cc` and `flags` against the installed headers and run it with
    --quick (every product checked: exit 1 if one is off); its path and output."""
    exe = tmp_path / "kernels"
    build = subprocess.run([*cc, *flags, "-I", str(Path(bl.__file__).parent), str(TOOL), "-o",
                            str(exe), "-lpthread", "-lm"], capture_output=True, text=True,
                           timeout=600)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), "--quick"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return exe, run.stdout


@pytest.mark.skipif(not TOOL.exists(), reason="not a source tree: no tools/")
def test_kernel_microbenchmark_builds_and_its_products_are_right(tmp_path):
    flags = documented_flags()
    assert "-ffp-contract=fast" in flags and "-O3" in flags
    _, out = run_tool(compiler(), flags, tmp_path)
    products = [line for line in out.splitlines() if "GFLOP/s  " in line]
    assert len(products) == 9, out    # block, 3 steps, 2 projections, dh, dW, dX
    assert "GB/s of W" in out


@functools.cache
def gcc_x86_64_linux() -> bool:
    """Does the compiler build the per-ISA clones here (gcc on x86-64 Linux, _isa.h)?"""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    macros = subprocess.run([*compiler(), "-dM", "-E", "-x", "c", "/dev/null"],
                            capture_output=True, text=True).stdout
    return "__GNUC__" in macros and "__clang__" not in macros


def compile_c(source: Path, flags: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Compile `source` against the installed headers (-O0: always_inline functions are
    inlined there too, and it takes seconds)."""
    return subprocess.run([*compiler(), "-O0", "-std=c11", "-Wno-unused-function", *flags, "-I",
                           str(Path(bl.__file__).parent), "-c", str(source), "-o",
                           str(tmp_path / "out.o")], capture_output=True, text=True)


@pytest.mark.skipif(not TOOL.exists() or not gcc_x86_64_linux(),
                    reason="the per-ISA clones: gcc, x86-64 Linux")
@pytest.mark.parametrize("baseline", ["-march=native", "-march=haswell", "-march=skylake-avx512",
                                      "-march=x86-64-v2"])
def test_kernel_headers_build_on_any_baseline(tmp_path, baseline):
    # A clone's target (arch=x86-64-v4, ...) on a baseline that is not an x86-64 level (CFLAGS
    # or meson's `native` option: -march=native, -march=haswell) takes away the baseline's arch
    # or features, which the always-inline kernel bodies are built with: gcc cannot inline them
    # into the clone and the build failed. _isa.h builds no clones there (x86-64-v2: clones).
    build = compile_c(TOOL, [baseline], tmp_path)
    assert build.returncode == 0, build.stderr


@pytest.mark.skipif(not gcc_x86_64_linux(), reason="the per-ISA clones: gcc, x86-64 Linux")
def test_meson_probe_turns_the_clones_off_where_they_cannot_build(tmp_path):
    # An extension named on its own (-maes) leaves the arch an x86-64 level, which the header
    # cannot tell from one: meson.build compiles this probe with the build's flags and defines
    # BL_NO_CLONES when it fails. The probe must fail exactly where the kernels would.
    meson = (ROOT / "meson.build").read_text()
    probe = re.search(r"clones_probe = '''\n(.*?)'''", meson, re.S)
    assert probe and "kernel_c_args += ['-DBL_NO_CLONES']" in meson
    source = tmp_path / "probe.c"
    source.write_text(probe.group(1))
    for flags, builds in [([], True), (["-maes"], False), (["-maes", "-DBL_NO_CLONES"], True)]:
        assert (compile_c(source, flags, tmp_path).returncode == 0) == builds, flags
        if TOOL.exists():
            assert (compile_c(TOOL, flags, tmp_path).returncode == 0) == builds, flags


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (Linux; elsewhere none)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# Make this CPU answer that it has no AVX-512 (every other feature as it is claimed: the test
# runs only where the CPU has AVX2 and FMA)
NO_AVX512 = '-D__builtin_cpu_supports(x)=(__builtin_strncmp((x), "avx512", 6) != 0)'


# What the kernels take the wide blocking with (bl_isa_wide)
AVX512 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
QUICK_FLAGS = ["-O1", "-std=c11", "-ffp-contract=fast", "-Wno-unused-function"]


@pytest.mark.skipif(not TOOL.exists() or not gcc_x86_64_linux()
                    or not {"avx2", "fma"} <= cpu_flags(), reason="gcc, x86-64 Linux, AVX2")
@pytest.mark.parametrize("flags", [["-march=haswell"], ["-maes", "-DBL_NO_CLONES", NO_AVX512]])
def test_kernels_without_clones_compute_right(tmp_path, flags):
    # Builds without clones run kernels that the wheel's build never has: the wide blocking
    # with AVX-512 added to a baseline (-march=haswell, on an AVX-512 CPU), and, on a baseline
    # below AVX2 (-maes alone, BL_NO_CLONES as meson's probe defines it), the narrow
    # blocking's AVX2 build, which a CPU without AVX-512 takes. The tool checks every product.
    exe, out = run_tool(compiler(), QUICK_FLAGS + flags, tmp_path)
    wide = NO_AVX512 not in flags and AVX512 <= cpu_flags()
    assert ("AVX-512 (wide)" if wide else "AVX2 or portable (narrow)") in out
    if shutil.which("nm"):
        symbols = subprocess.run(["nm", str(exe)], capture_output=True, text=True).stdout
        assert ("bl_pgemm_panels_avx2" in symbols) == (NO_AVX512 in flags), symbols


@functools.cache
def clang() -> tuple[str, ...] | None:
    """A clang: `clang` on PATH, else zig's (the ziglang package, which .ci/run installs; built
    for the x86-64 baseline, as a wheel's compiler would be)."""
    if shutil.which("clang"):
        return ("clang",)
    if importlib.util.find_spec("ziglang") is not None:
        return (sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-linux-gnu",
                "-mcpu=x86_64")
    return None


@pytest.mark.skipif(not TOOL.exists() or platform.system() != "Linux"
                    or platform.machine() != "x86_64" or clang() is None
                    or not {"avx2", "fma"} <= cpu_flags(), reason="clang, x86-64 Linux, AVX2")
@pytest.mark.parametrize("avx512", [True, False])
def test_kernels_built_by_clang_compute_right(tmp_path, avx512):
    # clang builds no clones (macOS on Intel builds with it): its kernels add AVX-512, or AVX2
    # and FMA, to the baseline (_isa.h). Zig's clang does not detect the CPU, so the CPU's
    # answers are given (all yes, or no AVX-512), within what this CPU has.
    if avx512 and not AVX512 <= cpu_flags():
        pytest.skip("this CPU has no AVX-512")
    answer = "-D__builtin_cpu_supports(x)=1" if avx512 else NO_AVX512
    exe, out = run_tool(clang(), [*QUICK_FLAGS, answer], tmp_path)
    assert ("AVX-512 (wide)" if avx512 else "AVX2 or portable (narrow)") in out
    # ... and the kernel that ran is built with those units (before, clang built it for the
    # baseline's SSE2: no zmm or ymm FMA in it, a quarter of the FMA peak)
    kernel, fma = ("bl_pgemm_panels_wide", "zmm") if avx512 else ("bl_pgemm_panels_avx2", "ymm")
    if shutil.which("objdump"):
        dis = subprocess.run(["objdump", "-d", f"--disassemble={kernel}", str(exe)],
                             capture_output=True, text=True).stdout
        assert re.search(rf"vfmadd\w+\s.*%{fma}", dis), dis[-2000:]


# The elementwise passes of builds without clones: each built per ISA level (_cell.h,
# _cellgrad.h), as the kernels are; the run-time choice must give the baseline body's values
# to rounding, and the cell's those of a double-precision cell.
PASSES_C = r"""
#include <math.h>
#include <stdio.h>
#include "_cell.h"
#include "_cellgrad.h"
enum { N = 5, H = 67 };   /* 67 units: whole vectors and a tail */
static float g[N][4 * H], b[4 * H], c0[N][H], c[N][H], h[N][H], pre[N][4 * H], c1[N][H],
    h1[N][H], pre1[N][4 * H], dy[N][H], dc[N][H], da[N][4 * H], dc1[N][H], da1[N][4 * H];
static double sig(double x) { return 1 / (1 + exp(-x)); }
static int off(float x, float ref) { return fabsf(x - ref) > 1e-5f * (1 + fabsf(ref)); }
int main(void)
{
    unsigned s = 7;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < 4 * H; j++) {
            s = s * 1103515245u + 12345u;
            g[n][j] = (float)((s >> 8) & 0xffff) / 8192.0f - 4.0f;
            if (j < H) c0[n][j] = c[n][j] = c1[n][j] = g[n][j] / 4, dy[n][j] = g[n][j] / 8;
        }
    for (int j = 0; j < 4 * H; j++) b[j] = 0.01f * (float)(j % 7);
    bl_cell_default_rows_c(N, H, 0, H, g[0], b, c[0], h[0], pre[0]);
    bl_cell_default_rows_body(N, H, 0, H, g[0], b, c1[0], h1[0], pre1[0]);
    bl_grad_default_rows_c(N, H, pre[0], c[0], c0[0], dy[0], H, h[0], dc[0], da[0]);
    bl_grad_default_rows_body(N, H, pre[0], c[0], c0[0], dy[0], H, h[0], dc1[0], da1[0]);
    int bad = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < H; j++) {
            const float *q = g[n];
            double ai = q[j] + b[j], af = q[H + j] + b[H + j], ag = q[2 * H + j] + b[2 * H + j];
            double ao = q[3 * H + j] + b[3 * H + j];
            double cn = sig(af) * c0[n][j] + sig(ai) * tanh(ag), hn = sig(ao) * tanh(cn);
            bad += off(c[n][j], (float)cn) + off(h[n][j], (float)hn) + off(c[n][j], c1[n][j])
                   + off(h[n][j], h1[n][j]) + off(dc[n][j], dc1[n][j]);
            for (int k = 0; k < 4; k++)
                bad += off(da[n][k * H + j], da1[n][k * H + j]);
        }
    printf("%d values off\n", bad);
    return bad != 0;
}
"""


def run_passes(command: Sequence[str], flags: list[str], tmp_path: Path,
               runner: Sequence[str] = ()) -> tuple[Path, subprocess.CompletedProcess]:
    """Build PASSES_C with `command` and `flags` against the installed headers and run it
    (under `runner`: an emulator, or nothing); its path and the run."""
    source, exe = tmp_path / "passes.c", tmp_path / "passes"
    source.write_text(PASSES_C)
    build = subprocess.run([*command, *flags, "-I", str(Path(bl.__file__).parent), str(source),
                            "-o", str(exe), "-lm"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    return exe, subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not TOOL.exists() or platform.system() != "Linux"
                    or platform.machine() != "x86_64" or not {"avx2", "fma"} <= cpu_flags(),
                    reason="x86-64 Linux, AVX2")
@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("avx512", [True, False])
def test_elementwise_passes_without_clones_compute_right(tmp_path, cc, avx512):
    if avx512 and not AVX512 <= cpu_flags():
        pytest.skip("this CPU has no AVX-512")
    if cc == "clang" and clang() is None:
        pytest.skip("no clang")
    if cc == "gcc" and not gcc_x86_64_linux():
        pytest.skip("not gcc on x86-64 Linux")
    command = clang() if cc == "clang" else compiler()
    # gcc: a baseline the clones cannot build on (as meson's probe finds); clang never clones.
    # The CPU's answers are given (zig's clang cannot detect them).
    answer = "-D__builtin_cpu_supports(x)=1" if avx512 else NO_AVX512
    flags = [*QUICK_FLAGS, answer] + (["-maes", "-DBL_NO_CLONES"] if cc == "gcc" else [])
    exe, run = run_passes(command, flags, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    if shutil.which("nm"):   # the level's own build is there to be taken
        symbols = subprocess.run(["nm", str(exe)], capture_output=True, text=True).stdout
        level = "wide" if avx512 else "fma"
        assert f"bl_cell_default_rows_{level}" in symbols, symbols
        assert f"bl_grad_default_rows_{level}" in symbols, symbols


@functools.cache
def arm64_compilers() -> dict[str, tuple[str, ...]]:
    """Compilers that build static arm64 Linux programs here: Debian's cross gcc
    (gcc-aarch64-linux-gnu) and zig's clang (musl), as far as they are installed."""
    found: dict[str, tuple[str, ...]] = {}
    if shutil.which("aarch64-linux-gnu-gcc"):
        found["gcc"] = ("aarch64-linux-gnu-gcc",)
    if importlib.util.find_spec("ziglang") is not None:
        found["clang"] = (sys.executable, "-m", "ziglang", "cc", "-target", "aarch64-linux-musl")
    return found


@pytest.mark.skipif(not TOOL.exists() or shutil.which("qemu-aarch64") is None,
                    reason="tools/ and qemu-aarch64 (Debian's qemu-user)")
@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_arm64_kernels_and_cell_passes_compute_right(tmp_path, cc):
    # arm64 (Apple silicon with clang, Linux with gcc) takes the narrow blocking on NEON's
    # 4-float vectors (_pgemm.h, bl_vn) in blocks of 5 rows; no arm64 machine runs the suite, so
    # both are built for it here and run under qemu: every product of the tool (its block sizes
    # and tails at 1 to 13 rows) and the default cell's passes, against double precision. With
    # the tool's documented flags (the extension's, -O3): the code that ships.
    if cc not in arm64_compilers():
        pytest.skip(f"no arm64 {cc}")
    command = [*arm64_compilers()[cc], *documented_flags(), "-static"]
    exe = tmp_path / "kernels"
    build = subprocess.run([*command, "-I", str(Path(bl.__file__).parent), str(TOOL), "-o",
                            str(exe), "-lpthread", "-lm"], capture_output=True, text=True,
                           timeout=600)
    assert build.returncode == 0, build.stderr
    run = subprocess.run(["qemu-aarch64", str(exe), "--tiny"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "(narrow)" in run.stdout and run.stdout.count("GFLOP/s  ") == 19, run.stdout
    # the cell passes: arm64 has one build of each (no per-level bodies to compare with)
    same = ["-Dbl_cell_default_rows_body=bl_cell_default_rows_c",
            "-Dbl_grad_default_rows_body=bl_grad_default_rows_c"]
    _, run = run_passes(command, same, tmp_path, runner=["qemu-aarch64"])
    assert run.returncode == 0 and "0 values off" in run.stdout, run.stdout + run.stderr


OTHERS_ONLY = """==================
WARNING: ThreadSanitizer: data race (pid=4848)
  Write of size 8 at 0x7ba400069200 by main thread:
    #0 free ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:706 (libtsan.so+0x47e82)
    #1 array_dealloc <null> (_multiarray_umath.cpython-311-x86_64-linux-gnu.so+0x175312)

  Previous write of size 8 at 0x7ba400069200 by thread T4:
    #0 memset sanitizer_common_interceptors.inc:799 (libtsan.so+0x5cbc4)
    #1 dgemm_beta_SKYLAKEX <null> (libscipy_openblas64_-32a4b2a6.so+0xc78582)

SUMMARY: ThreadSanitizer: data race in array_dealloc
==================
"""
OURS = OTHERS_ONLY.replace(
    "#1 array_dealloc <null>",
    "#1 bl_pgemm_block ../src/bnnslstm/_pgemm.h:416 "
    "(_forward.cpython-311-x86_64-linux-gnu.so+0x54b0a)")


@pytest.mark.skipif(not (ROOT / "tools" / "tsan_ours.py").exists(),
                    reason="not a source tree: no tools/")
def test_tsan_filter_fails_on_our_frames_only(tmp_path):
    """tools/sanitize.sh tsan decides with tools/tsan_ours.py: a report with a frame of ours
    fails the run, reports in other libraries' threads alone do not, and no log is no report."""
    def run(*texts: str) -> subprocess.CompletedProcess:
        paths = []
        for i, text in enumerate(texts):
            paths.append(tmp_path / f"tsan.{i}")
            paths[-1].write_text(text)
        return subprocess.run([sys.executable, str(ROOT / "tools" / "tsan_ours.py"), *paths],
                              capture_output=True, text=True, timeout=60)
    ours = run(OTHERS_ONLY, OURS)
    assert ours.returncode == 1 and "2 reports, 1 with a bnnslstm frame" in ours.stdout
    assert ours.stdout.count("WARNING: ThreadSanitizer") == 1 and "bl_pgemm_block" in ours.stdout
    others = run(OTHERS_ONLY + OTHERS_ONLY)
    assert others.returncode == 0 and "2 reports, 0 with" in others.stdout, others.stdout
    assert run().returncode == 0
