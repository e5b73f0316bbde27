"""One fitted model serves ``predict`` from several threads at once.

The kernels run without the GIL and keep no state between calls, so
concurrent calls must give exactly the serial results.
"""
import threading
import warnings

import numpy as np
import pytest

from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_concurrent_predict_equals_serial(cell):
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(L, 3)) for L in rng.integers(1, 40, size=64)]
    y = [rng.normal(size=L) for L in map(len, X)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = RNNRegressor(16, cell=cell, num_layers=2, bidirectional=True,
                             return_sequences=True, max_iter=1, random_state=0).fit(X, y)
    inputs = [X[i::4] for i in range(4)]
    serial = [model.predict(part) for part in inputs]

    results = {}
    barrier = threading.Barrier(8)

    def work(k):
        barrier.wait()
        for _ in range(5):
            out = model.predict(inputs[k % 4])
            results.setdefault(k, []).append(out)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(8))
    for k, outs in results.items():
        for out in outs:
            for got, expected in zip(out, serial[k % 4]):
                np.testing.assert_array_equal(got, expected)


def test_concurrent_predict_proba_of_a_classifier():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 30, 4))
    labels = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = RNNClassifier(8, cell="lstm", max_iter=1, random_state=0).fit(X, labels)
    expected = model.predict_proba(X)
    outs = [None] * 6

    def work(k):
        outs[k] = model.predict_proba(X)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outs:
        np.testing.assert_array_equal(out, expected)
