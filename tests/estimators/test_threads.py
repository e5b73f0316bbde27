"""crnn's threads: one BLAS thread for its products, ``n_jobs`` threads over
blocks of sequences, and results that do not depend on either.

The blocks a ``predict`` runs depend on the data and the network only, so
every ``n_jobs`` gives bit-identical outputs (asserted with
``assert_array_equal``: no tolerance). The BLAS thread count the process
set is restored after every call, also when calls overlap in threads.
"""
import os
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from crnn import RNNClassifier, RNNRegressor, _threads
from crnn._estimators import _predict_blocks
from crnn._network import RecurrentNetwork
from crnn.kernels import blas

# Two-epoch fits: the weights are what matter here, not convergence.
pytestmark = pytest.mark.filterwarnings("ignore::crnn.exceptions.ConvergenceWarning")

needs_blas_threads = pytest.mark.skipif(
    blas.blas_thread_count() is None, reason="scipy's BLAS reports no thread count")


def ragged(rng, n, I=3, low=2, high=30):
    return [rng.normal(size=(int(L), I)) for L in rng.integers(low, high, size=n)]


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_is_bit_identical_for_any_n_jobs(cell, dtype):
    rng = np.random.default_rng(0)
    X = ragged(rng, 300)
    y = np.array([x.sum() for x in X])
    model = RNNRegressor(8, cell=cell, num_layers=2, bidirectional=True, dtype=dtype,
                         max_iter=2, random_state=0).fit(X, y)
    assert len(_predict_blocks(300, 30, model._network())) > 3   # several blocks
    outputs = []
    for n_jobs in (1, 2, 3, None, -1):
        model.set_params(n_jobs=n_jobs)
        outputs.append(model.predict(X, return_state=True))
    for Y, state in outputs[1:]:
        np.testing.assert_array_equal(Y, outputs[0][0])
        for got, expected in zip(np.atleast_1d(state), np.atleast_1d(outputs[0][1])):
            np.testing.assert_array_equal(got, expected)


def test_predict_proba_and_sequences_are_bit_identical_for_any_n_jobs():
    rng = np.random.default_rng(1)
    X = ragged(rng, 200)
    labels = [(x[:, 0] > 0).astype(int) for x in X]
    model = RNNClassifier(6, cell="gru", return_sequences=True, max_iter=2,
                          random_state=0).fit(X, labels)
    expected = model.set_params(n_jobs=1).predict_proba(X)
    got = model.set_params(n_jobs=2).predict_proba(X)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert model.score(X, labels) == model.set_params(n_jobs=1).score(X, labels)


def test_the_blocks_cover_every_sequence_once_in_order():
    network = RecurrentNetwork(3, 8, 1, cell="lstm")
    for n in (1, 63, 64, 65, 513, 4096):
        blocks = _predict_blocks(n, 50, network)
        np.testing.assert_array_equal(np.concatenate(blocks), np.arange(n))
        assert len(blocks) <= max(1, -(-n // 64))
        assert len(blocks) == 1 or min(b.size for b in blocks[:-1]) >= 64


@needs_blas_threads
def test_blas_runs_on_one_thread_in_crnn_and_is_restored_after():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 10, 3))
    y = X.sum((1, 2))
    seen = []
    model = RNNRegressor(4, max_iter=1, random_state=0)
    with threadpool_limits(2):
        before = blas.blas_thread_count()

        def spy(block):
            seen.append(blas.blas_thread_count())
            return block

        _threads.map_blocks(spy, range(4), 2)
        model.fit(X, y).predict(X)
        assert blas.blas_thread_count() == before
        assert blas.blas_threads_held() == (0, 0)
    assert seen == [1, 1, 1, 1]


@needs_blas_threads
def test_overlapping_calls_in_threads_restore_the_thread_count():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 20, 3))
    model = RNNRegressor(16, cell="lstm", max_iter=1, random_state=0,
                         n_jobs=2).fit(X, X.sum((1, 2)))
    expected = model.predict(X)
    results, errors = [], []

    def call():
        try:
            for _ in range(3):
                results.append(model.predict(X))
        except Exception as error:          # pragma: no cover - reported below
            errors.append(error)

    with threadpool_limits(2):
        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert blas.blas_thread_count() == 2
    assert not errors and len(results) == 12
    for Y in results:
        np.testing.assert_array_equal(Y, expected)
    assert blas.blas_threads_held() == (0, 0)


def test_release_without_hold_is_refused():
    with pytest.raises(RuntimeError, match="without hold_blas_threads"):
        blas.release_blas_threads()


@needs_blas_threads
def test_effective_n_jobs_honours_the_process_limits():
    cpus = _threads.available_cpus()
    assert 1 <= cpus <= os.cpu_count()
    with threadpool_limits(1):
        assert _threads.effective_n_jobs(None) == 1      # threadpoolctl's limit
    with threadpool_limits(cpus):
        assert _threads.effective_n_jobs(None) == cpus
    with _threads.one_blas_thread():                    # crnn's own hold is not a limit
        assert _threads.effective_n_jobs(None) == min(cpus, blas.blas_threads_held()[1] or 1)
    assert _threads.effective_n_jobs(5) == 5
    assert _threads.effective_n_jobs(-1) == cpus
    assert _threads.effective_n_jobs(-2) == max(1, cpus - 1)
    assert _threads.effective_n_jobs(-(cpus + 5)) == 1
    with pytest.raises(ValueError, match="n_jobs == 0"):
        _threads.effective_n_jobs(0)


@pytest.mark.parametrize("v2, v1, expected", [
    ("200000 100000\n", None, 2),
    ("150000 100000\n", None, 2),          # 1.5 cores: rounded up
    ("max 100000\n", None, None),
    (None, ("50000", "100000"), 1),
    (None, ("-1", "100000"), None),
    (None, None, None),
])
def test_cgroup_quota(tmp_path, monkeypatch, v2, v1, expected):
    paths = [tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"]
    if v2 is not None:
        paths[0].write_text(v2)
    if v1 is not None:
        paths[1].write_text(v1[0])
        paths[2].write_text(v1[1])
    monkeypatch.setattr(_threads, "CGROUP_CPU_MAX", str(paths[0]))
    monkeypatch.setattr(_threads, "CGROUP_V1_QUOTA", (str(paths[1]), str(paths[2])))
    assert _threads._cgroup_cpus() == expected
    if expected:
        assert _threads.available_cpus() <= expected


def test_map_blocks_keeps_order_and_raises_the_first_error():
    assert _threads.map_blocks(lambda b: b * b, range(10), 3) == [b * b for b in range(10)]

    def fail(block):
        if block == 4:
            raise ValueError("block 4")
        return block

    with pytest.raises(ValueError, match="block 4"):
        _threads.map_blocks(fail, range(8), 2)
    assert blas.blas_threads_held() == (0, 0)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_bad_n_jobs_is_refused(n_jobs):
    X = np.zeros((4, 3, 1))
    with pytest.raises((ValueError, TypeError), match="n_jobs"):
        RNNRegressor(2, n_jobs=n_jobs, max_iter=1).fit(X, np.zeros(4))


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_is_bit_identical_for_any_n_jobs(cell, dtype):
    """Mini-batches of 64 run as 4 blocks of 16 sequences on n_jobs threads
    (3: more threads than cores); ragged sequences, two bidirectional layers
    with dropout between them, weight decay."""
    rng = np.random.default_rng(4)
    X = ragged(rng, 200)
    y = np.array([x[-1].sum() for x in X])
    params = [RNNRegressor(6, cell=cell, num_layers=2, bidirectional=True, dropout=0.3,
                           alpha=1e-3, batch_size=64, max_iter=2, dtype=dtype,
                           random_state=0, n_jobs=n_jobs).fit(X, y).params_
              for n_jobs in (1, 2, 3)]
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])


def test_classifier_fit_is_bit_identical_for_any_n_jobs():
    rng = np.random.default_rng(5)
    X = ragged(rng, 150)
    labels = [(x[:, 0] > 0).astype(int) for x in X]
    models = [RNNClassifier(5, cell="lstm", return_sequences=True, max_iter=2,
                            random_state=0, n_jobs=n_jobs).fit(X, labels)
              for n_jobs in (1, 2)]
    np.testing.assert_array_equal(models[0].params_, models[1].params_)
    assert models[0].loss_curve_ == models[1].loss_curve_


def test_blocks_add_up_to_the_whole_batch():
    """The blocks' losses and gradients sum to the whole batch's, to
    rounding: the split changes the summation order only."""
    from crnn._training import BlockGradients, training_blocks
    from crnn._validation import check_sequences
    rng = np.random.default_rng(6)
    seqs = check_sequences(ragged(rng, 50), np.float64)
    target = rng.normal(size=(50, 1))
    network = RecurrentNetwork(3, 7, 1, cell="gru")
    params = network.init_params(rng, random_biases=True)
    idx = np.arange(50)
    assert [b.size for b in training_blocks(idx)] == [17, 17, 16]
    blocks = BlockGradients(network, lambda: RecurrentNetwork(3, 7, 1, cell="gru"), params,
                            2, None)
    grad = np.empty_like(params)
    loss = blocks(params, seqs, idx, target, False, 1e-3, grad, None)
    batch = seqs.pack(idx)
    expected, expected_grad = network.loss_grad(params, batch, batch.targets(target, False),
                                                1e-3)
    assert abs(loss - expected) <= 1e-14 * abs(expected)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
