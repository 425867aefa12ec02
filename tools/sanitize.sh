#!/usr/bin/env bash
# Memory-safety runs (issue: reliability), outside CI's time budget:
#   tools/sanitize.sh asan       AddressSanitizer build, the kernel test subset under it
#   tools/sanitize.sh valgrind   valgrind memcheck on a smaller subset
# Each builds bnnslstm into its own virtual environment (debug info, -O1) and exits non-zero
# on any reported error. Results of the last run are in docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-asan}"
venv="${TMPDIR:-/tmp}/bl-sanitize-$mode-venv"   # no "bnnslstm" in it: the filter reads paths
rm -rf "$venv" "build-$mode"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet meson-python meson ninja "Cython>=3.0.8" scipy numpy pytest \
    hypothesis
SUBSET=(tests/test_forward.py tests/test_backward.py tests/test_validation.py
        tests/test_training_cache.py tests/test_fuzz.py tests/test_layer.py)
if [ "$mode" = asan ]; then
    python -m pip install --quiet --no-build-isolation -Cbuild-dir="build-$mode" \
        -Csetup-args=-Db_sanitize=address -Csetup-args=-Db_lundef=false \
        -Csetup-args=-Dbuildtype=debugoptimized .
    # Python itself is not instrumented: preload the runtime; CPython's own allocations are
    # not leaks of ours, so leak detection is off (use valgrind for that).
    LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
    BNNSLSTM_FUZZ_EXAMPLES=300 python -m pytest -q -p no:cacheprovider "${SUBSET[@]}"
else
    python -m pip install --quiet --no-build-isolation -Cbuild-dir="build-$mode" \
        -Csetup-args=-Dbuildtype=debugoptimized .
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
