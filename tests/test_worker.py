"""The helper's worker thread (_worker.h): one per calling thread, kept between calls, asleep
when idle, kept off the caller's CPU within the caller's affinity, joined when its thread exits
or by bnnslstm_release_workspace, and started anew in a fork's child. Each check runs in a fresh
process, so that the worker counters see only its script."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMMON = """
import numpy as np, bnnslstm as bl, time
from bnnslstm._worker import _workers
lstm = bl.LSTM(64, 128, seed=3)
x = np.random.default_rng(0).standard_normal((12, 20, 64)).astype(np.float32)
lstm.n_threads = 1
want = lstm.forward(x)[0]
lstm.n_threads = 2
assert _workers() == (0, 0), _workers()

def settle(live):
    # a thread's exit runs the key destructors after threading's join returns
    deadline = time.monotonic() + 10
    while _workers()[1] != live and time.monotonic() < deadline:
        time.sleep(0.01)
    return _workers()
"""

KEPT = COMMON + """
import threading
for _ in range(3):
    assert np.array_equal(lstm.forward(x)[0], want)
assert _workers() == (1, 1), _workers()
got = []
def call():
    got.append(np.array_equal(lstm.forward(x)[0], want))
    got.append(_workers())
    got.append(np.array_equal(lstm.forward(x)[0], want))
t = threading.Thread(target=call)
t.start()
t.join()
assert got[0] and got[2] and got[1] == (2, 2), got
assert settle(1) == (2, 1), _workers()
assert np.array_equal(lstm.forward(x)[0], want) and _workers() == (2, 1), _workers()
from bnnslstm.bnns import _release_workspace
_release_workspace()                # stops this thread's worker, at once
assert _workers() == (2, 0), _workers()
_release_workspace()
assert np.array_equal(lstm.forward(x)[0], want) and _workers() == (3, 1), _workers()
print("ok")
"""

FORK = COMMON + """
import os, signal
assert np.array_equal(lstm.forward(x)[0], want) and _workers() == (1, 1)
pid = os.fork()
if pid == 0:
    signal.alarm(30)        # a child waiting on its parent's worker would hang: fail instead
    ok = np.array_equal(lstm.forward(x)[0], want) and _workers() == (2, 2)
    ok = ok and np.array_equal(lstm.forward(x)[0], want) and _workers() == (2, 2)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
assert np.array_equal(lstm.forward(x)[0], want) and _workers() == (1, 1), _workers()
print("ok")
"""


THREADS = COMMON + """
import os
def tasks():
    return set(os.listdir("/proc/self/task"))

def cpu_ticks(tid):
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])       # utime + stime
"""

IDLE = THREADS + """
before = tasks()
assert np.array_equal(lstm.forward(x)[0], want) and _workers() == (1, 1)
new = tasks() - before
assert len(new) == 1, new
tid = new.pop()
time.sleep(0.2)                     # past its spin after the call: asleep
t0 = cpu_ticks(tid)
time.sleep(1.0)
used = cpu_ticks(tid) - t0
assert used <= 2, f"the idle worker used {used} clock ticks in 1 s"
assert np.array_equal(lstm.forward(x)[0], want) and _workers() == (1, 1)  # and wakes
print("ok")
"""


AFFINITY = THREADS + """
cpus = set(os.sched_getaffinity(0))
before = tasks()
assert np.array_equal(lstm.forward(x)[0], want)
(tid,) = tasks() - before
tid = int(tid)
placed = os.sched_getaffinity(tid)
assert placed < cpus and len(placed) == len(cpus) - 1, (placed, cpus)   # off the caller's CPU
(one,) = cpus - placed               # the caller's CPU then, which the worker was kept off
os.sched_setaffinity(0, {one})      # this thread only
assert np.array_equal(lstm.forward(x)[0], want)
assert os.sched_getaffinity(tid) == {one}, os.sched_getaffinity(tid)
os.sched_setaffinity(0, cpus)
assert np.array_equal(lstm.forward(x)[0], want)
placed = os.sched_getaffinity(tid)
assert placed < cpus and len(placed) == len(cpus) - 1, (placed, cpus)
print("ok")
"""


def run(script: str) -> None:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_worker_is_kept_between_calls_and_joined_when_its_thread_exits():
    # Three calls start one worker; a second thread gets its own, which ends with the thread;
    # bnnslstm_release_workspace stops the caller's, and the next call starts another
    run(KEPT)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork()")
def test_fork_child_starts_its_own_worker():
    # The child inherits the parent's record of a worker but not its thread
    run(FORK)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
def test_idle_worker_sleeps():
    # After its spin (200 us) the worker waits on a condition variable: a second of idleness
    # costs it no CPU time (clock ticks of 10 ms), and the next call wakes it
    run(IDLE)


@pytest.mark.skipif(not sys.platform.startswith("linux")
                    or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and 2 CPUs")
def test_worker_follows_the_callers_cpus():
    # Kept off the caller's CPU, within the caller's affinity, also when that changes between
    # calls (a caller restricted to one CPU shares it, as a thread it started would)
    run(AFFINITY)
