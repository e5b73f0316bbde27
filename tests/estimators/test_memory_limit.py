"""A model or batch too large for the memory limit is refused before
anything is allocated, with a message that says how much it needs;
crnn.set_config / config_context set the limit."""
import tracemalloc
import warnings

import numpy as np
import pytest

import crnn
from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor

rng = np.random.default_rng(0)
X, y = rng.normal(size=(8, 4, 3)), rng.normal(size=8)


@pytest.mark.parametrize("H", [17_000, 35_000])
def test_a_huge_model_is_refused_before_allocating(H):
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"training this RNNRegressor \(\d+ float64 "
                                              r"parameters\) would need [\d.]+ GiB, more "
                                              r"than the [\d.]+ [GM]iB that crnn may use"):
            RNNRegressor(H).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20
    assert not hasattr(RNNRegressor(H), "params_")


def test_the_limit_is_configurable():
    small = RNNClassifier(4, max_iter=1)
    with crnn.config_context(memory_limit=1000):
        assert crnn.get_config()["memory_limit"] == 1000
        with pytest.raises(MemoryError, match=r"more than the 1000 bytes that crnn may "
                                              r"use \(crnn.set_config"):
            small.fit(X, y > 0)
        with pytest.raises(MemoryError):
            small.partial_fit(X, y > 0, classes=[False, True])
    assert crnn.get_config()["memory_limit"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        small.fit(X, y > 0)                         # the default limit admits it


@pytest.mark.parametrize("value", [0, -1, 1.5, "1GB", True])
def test_bad_limits(value):
    with pytest.raises(ValueError, match="memory_limit must be None or an int >= 1"):
        crnn.set_config(memory_limit=value)
    assert crnn.get_config()["memory_limit"] is None


def test_available_memory_is_known():
    from crnn._config import available_memory

    nbytes, source = available_memory()
    assert nbytes > 1 << 20 and source
