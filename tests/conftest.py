import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True, scope="session")
def two_threads_on_small_problems():
    """The tests' problems are small: keep the two-thread paths they check (bit-identical to
    one thread) from being skipped for calls below HELPER_MIN_MACS
    (test_small_calls_stay_on_one_thread checks that rule)."""
    from bnnslstm._forward import _helper_size_rule

    _helper_size_rule(False)
    yield
    _helper_size_rule(True)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A distinct, reproducible random stream per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=[False, True], ids=["dw_l2_blocks", "dw_l1_blocks"])
def dw_blocks(request: pytest.FixtureRequest):
    """Both of dW's blockings of dA^T (_bgemm.h chooses one by the CPU's L1 data cache), then
    the CPU's choice back."""
    from bnnslstm._backward import _dw_l1_blocks

    chosen = _dw_l1_blocks()
    _dw_l1_blocks(request.param)
    yield request.param
    _dw_l1_blocks(chosen)
