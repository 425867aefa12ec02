import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A distinct, reproducible random stream per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
