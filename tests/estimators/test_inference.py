"""What ``predict`` keeps between calls, and what it must not.

A fitted model lends its calls networks from a pool (a network holds its
compiled passes' workspace): a small call reuses one instead of building a
network and growing its workspace. The pool lives beside the estimator,
not in it, so a predict changes nothing of the estimator (its ``__dict__``,
its pickle); it follows architecture changes; it keeps no large workspace;
threads calling ``predict`` at once each get their own network.
"""
import copy
import pickle
import threading

import numpy as np
import pytest

import crnn._estimators as estimators
from crnn import RNNClassifier, RNNRegressor

pytestmark = pytest.mark.filterwarnings("ignore::crnn.exceptions.ConvergenceWarning")


def fitted(cls=RNNRegressor, **params):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8, 3)).astype(np.float32)
    y = X[:, -1, 0] if cls is RNNRegressor else (X[:, -1, 0] > 0).astype(int)
    params = dict(dict(hidden_size=6, cell="lstm", max_iter=2, random_state=0,
                       dtype="float32"), **params)
    return cls(**params).fit(X, y), X


def count_networks(monkeypatch, model):
    built = []
    original = type(model)._network

    def counting(self):
        built.append(None)
        return original(self)
    monkeypatch.setattr(type(model), "_network", counting)
    return built


def test_small_calls_reuse_one_network(monkeypatch):
    model, X = fitted()
    built = count_networks(monkeypatch, model)
    first = model.predict(X[:1])
    for _ in range(5):
        np.testing.assert_array_equal(model.predict(X[:1]), first)
    assert len(built) == 1


def test_predict_changes_nothing_of_the_estimator():
    model, X = fitted(RNNClassifier)
    before = dict(model.__dict__)
    blob = pickle.dumps(model)
    model.predict(X)
    model.predict_proba(X[:3], return_state=True)
    assert model.__dict__.keys() == before.keys()
    assert all(model.__dict__[k] is before[k] for k in before)
    assert pickle.dumps(model) == blob
    np.testing.assert_array_equal(copy.deepcopy(model).predict(X), model.predict(X))


def test_a_large_call_leaves_no_large_workspace_in_the_pool(monkeypatch):
    monkeypatch.setattr(estimators, "_POOLED_WORKSPACE_BYTES", 1 << 14)
    model, X = fitted()
    model.predict(X[:1])
    pool = model._network_pool()
    small = pool.get()
    assert small.stack.workspace_nbytes <= 1 << 14
    pool.put(small)
    first = model.predict(X[:1])
    model.predict(np.repeat(X, 20, axis=0))          # 800 sequences: a large workspace
    kept = []
    while not pool.idle.empty():
        kept.append(pool.idle.get_nowait())
    assert all(n.stack.workspace_nbytes <= 1 << 14 for n in kept)
    assert small not in kept                          # it grew, and was let go
    np.testing.assert_array_equal(model.predict(X[:1]), first)


def test_the_pool_follows_the_architecture():
    model, X = fitted(cell="gru", hidden_size=4)
    model.predict(X)
    model.set_params(hidden_size=5)
    with pytest.raises(ValueError, match="hidden_size"):
        model.predict(X)
    model.set_params(hidden_size=4)
    model.predict(X)
    model.set_params(hidden_size=7, cell="elman").fit(X, X[:, 0, 0])
    fresh = RNNRegressor(7, cell="elman", max_iter=2, random_state=0,
                         dtype="float32").fit(X, X[:, 0, 0])
    np.testing.assert_array_equal(model.predict(X), fresh.predict(X))


def test_threads_calling_predict_at_once_get_their_own_networks():
    model, X = fitted(cell="gru")
    inputs = [np.random.default_rng(k).normal(size=(1 + k, 8, 3)).astype(np.float32)
              for k in range(8)]
    expected = [model.predict(x) for x in inputs]
    results, errors = {}, []
    start = threading.Barrier(8)

    def work(k):
        try:
            start.wait()
            for _ in range(50):
                got = model.predict(inputs[k])
                if not np.array_equal(got, expected[k]):
                    raise AssertionError(f"thread {k}: another result")
            results[k] = True
        except Exception as exc:          # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
@pytest.mark.parametrize("n", [1, 3, 64, 65])
def test_the_short_path_of_a_few_sequences_gives_the_general_paths_bits(cls, n):
    model, X = fitted(cls, cell="gru", num_layers=2, bidirectional=True)
    Z = np.random.default_rng(n).normal(size=(n, 8, 3)).astype(np.float32)
    lengths = np.full(n, 8)                       # the general path: validated, packed
    if cls is RNNClassifier:
        np.testing.assert_array_equal(model.predict_proba(Z),
                                      model.predict_proba(Z, lengths))
    np.testing.assert_array_equal(model.predict(Z), model.predict(Z, lengths))
    bad = Z.copy()
    bad[0, 1, 2] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(the first at "
                                         r"index \(0, 1, 2\)"):
        model.predict(bad)
    with pytest.raises(ValueError, match="features"):
        model.predict(Z[..., :2].copy())
