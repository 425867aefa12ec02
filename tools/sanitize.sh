#!/usr/bin/env bash
# Memory-safety, data-race and undefined-behaviour runs (issue: reliability), outside CI's time
# budget:
#   tools/sanitize.sh asan       AddressSanitizer build, the kernel test subset under it
#   tools/sanitize.sh valgrind   valgrind memcheck on a smaller subset
#   tools/sanitize.sh tsan       ThreadSanitizer build, the tests that run two threads
#   tools/sanitize.sh ubsan      UndefinedBehaviorSanitizer build, the kernel tests under it
# Each builds bnnslstm into its own virtual environment (debug info, -O2) and exits non-zero
# on any reported error. Results of the last run are in docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-asan}"
case "$mode" in           # meson's b_sanitize for each mode (valgrind: none)
    asan) sanitize=address ;;
    tsan) sanitize=thread ;;
    ubsan) sanitize=undefined ;;
    valgrind) sanitize= ;;
    *) echo "usage: tools/sanitize.sh [asan|valgrind|tsan|ubsan]" >&2; exit 2 ;;
esac
venv="${TMPDIR:-/tmp}/bl-sanitize-$mode-venv"   # no "bnnslstm" in it: the filter reads paths
rm -rf "$venv" "build-$mode"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet meson-python meson ninja "Cython>=3.0.8" scipy numpy pytest \
    hypothesis
build=(-Csetup-args=-Dbuildtype=debugoptimized)
if [ -n "$sanitize" ]; then     # its runtime resolves at load time: no --no-undefined
    build+=(-Csetup-args=-Db_sanitize="$sanitize" -Csetup-args=-Db_lundef=false)
fi
python -m pip install --quiet --no-build-isolation -Cbuild-dir="build-$mode" "${build[@]}" .
SUBSET=(tests/test_forward.py tests/test_backward.py tests/test_validation.py
        tests/test_training_cache.py tests/test_fuzz.py tests/test_layer.py)
if [ "$mode" = asan ]; then
    # Python itself is not instrumented: preload the runtime; CPython's own allocations are
    # not leaks of ours, so leak detection is off (use valgrind for that).
    LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
    BNNSLSTM_FUZZ_EXAMPLES=300 python -m pytest -q -p no:cacheprovider "${SUBSET[@]}"
elif [ "$mode" = tsan ]; then
    # Our threads (the helper, the unit and row splits, the direction lanes, the shared
    # products' claims) are created and synchronized in instrumented code. numpy's and scipy's
    # OpenBLAS threads are not, and TSan reports their hand-offs (the tests' float64
    # references): log every report, then fail on those with a frame of ours. TSan cannot
    # follow a fork of a threaded process, so the test that forks is left out.
    log="${TMPDIR:-/tmp}/bnnslstm-tsan"
    rm -f "$log".*
    LD_PRELOAD="$(gcc -print-file-name=libtsan.so)" \
    TSAN_OPTIONS="halt_on_error=0 exitcode=0 die_after_fork=0 log_path=$log" \
    BNNSLSTM_FUZZ_EXAMPLES=50 python -m pytest -q -p no:cacheprovider tests/test_worker.py \
        tests/test_forward.py tests/test_backward.py tests/test_frozen.py tests/test_layer.py \
        tests/test_reliability.py \
        --deselect tests/test_worker.py::test_fork_child_starts_its_own_worker
    shopt -s nullglob
    python tools/tsan_ours.py "$log".*
elif [ "$mode" = ubsan ]; then
    # Any undefined behaviour (overflow, a bad shift or index, a misaligned or null access)
    # aborts its test process, which fails the run. The checks change how gcc vectorizes and
    # contracts the cell pass's C clone, so the test comparing it bit for bit with the
    # intrinsics pass is left out (it fails under the checks alone, with no report).
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 BNNSLSTM_FUZZ_EXAMPLES=300 \
        python -m pytest -q -p no:cacheprovider "${SUBSET[@]}" tests/test_pgemm.py \
        tests/test_bgemm.py tests/test_cell.py tests/test_frozen.py tests/test_projection.py \
        tests/test_subnormals.py tests/test_worker.py tests/test_reliability.py \
        --deselect tests/test_cell.py::test_forward_pass_matches_c
else
    # An uninstrumented CPython gives memcheck false positives (vectorized memcmp, its own
    # allocator, glibc's loader); a suppression for "any Python frame" would also hide ours,
    # since our frames always sit above Python's. So: log everything, then fail on any error
    # record with a frame in bnnslstm's modules.
    log="${TMPDIR:-/tmp}/bnnslstm-valgrind.log"
    PYTHONMALLOC=malloc BNNSLSTM_FUZZ_EXAMPLES=30 valgrind --tool=memcheck \
        --errors-for-leak-kinds=definite --leak-check=full --show-leak-kinds=definite \
        --suppressions=tools/valgrind-python.supp --num-callers=40 --log-file="$log" \
        python -m pytest -q -p no:cacheprovider -x \
        "tests/test_forward.py::test_stacks_and_directions" \
        "tests/test_forward.py::test_peepholes_per_gate" \
        "tests/test_backward.py::test_stacks_and_directions" \
        "tests/test_backward.py::test_sequence_batch_sizes" \
        "tests/test_training_cache.py" "tests/test_validation.py" "tests/test_fuzz.py"
    python tools/valgrind_ours.py "$log"
fi
