"""A fit is a transaction: whatever stops it, the model is at a committed
state -- as before the call, or (divergence, interruption) at a completed
epoch of the call -- and never half-updated.

Failures are injected into the training loop (``crnn._training``) at a
chosen batch; the committed states are compared bit for bit with fits that
stop at the same epoch by themselves (``max_iter``)."""
import os
import pathlib
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import crnn
import crnn._training
from crnn import (ConvergenceWarning, RNNClassifier, RNNRegressor,
                  TrainingDivergedError)

N = 40
rng = np.random.default_rng(0)
X = rng.normal(size=(N, 6, 3))
y = X.sum(axis=(1, 2))
labels = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")


def quietly(model, X=X, y=y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **kwargs)


def make(cls=RNNRegressor, **params):
    defaults = dict(hidden_size=5, batch_size=8, max_iter=4, n_iter_no_change=100,
                    random_state=0, learning_rate=0.01)
    return cls(**{**defaults, **params})


def fail_at(monkeypatch, batch, error):
    """Make the ``batch``-th mini-batch (counting from 1) of the next fits raise."""
    original = crnn._training.TrainingData.loss_and_gradient
    calls = []

    def failing(*args, **kwargs):
        calls.append(None)
        if len(calls) == batch:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(crnn._training.TrainingData, "loss_and_gradient", failing)


def assert_same_state(a, b):
    sa, sb = a._get_state(), b._get_state()
    assert sa.keys() == sb.keys()
    for key in sa:
        if key == "rng":
            assert sa[key].bit_generator.state == sb[key].bit_generator.state
        elif key == "optimizer":
            assert (sa[key] is None) == (sb[key] is None)
            if sa[key] is not None:
                assert sa[key].keys() == sb[key].keys()
                for name in sa[key]:
                    np.testing.assert_array_equal(sa[key][name], sb[key][name])
        elif key == "history_":     # each epoch's time is measured, not computed
            assert ([{k: v for k, v in r.items() if k != "time"} for r in sa[key]]
                    == [{k: v for k, v in r.items() if k != "time"} for r in sb[key]])
        else:
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


# -- errors: the model is as before the call ---------------------------------------


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("a bug"), ValueError("x")])
def test_failed_first_fit_leaves_the_model_unfitted(monkeypatch, error):
    model = make()
    fail_at(monkeypatch, 7, error)         # in the second epoch
    with pytest.raises(type(error)):
        model.fit(X, y)
    assert not hasattr(model, "params_")
    with pytest.raises(crnn.NotFittedError):
        model.predict(X)


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
@pytest.mark.parametrize("how", ["refit", "warm_start", "partial_fit"])
@pytest.mark.parametrize("error", [MemoryError(), TrainingDivergedError("injected")])
def test_failed_refit_leaves_the_trained_model_bit_identical(monkeypatch, cls, how, error):
    target = labels if cls is RNNClassifier else y
    model = quietly(make(cls, solver="sgd"), y=target)
    copy = quietly(make(cls, solver="sgd"), y=target)
    model.set_params(warm_start=how == "warm_start", learning_rate=0.5)
    fail_at(monkeypatch, 2, error)         # in the first epoch of the call
    with pytest.raises(type(error)):
        if how == "partial_fit":
            model.partial_fit(X, target)
        else:
            model.fit(X, target)
    assert_same_state(model, copy)


# -- divergence: the best completed epoch that predicts finite values ---------------


def test_divergence_keeps_the_best_completed_epoch(monkeypatch):
    fail_at(monkeypatch, 5 * 3 + 2, TrainingDivergedError("injected"))   # epoch 4
    model = make(max_iter=10)
    with pytest.raises(TrainingDivergedError):
        model.fit(X, y)
    monkeypatch.undo()
    best = int(np.argmin(model.loss_curve_)) + 1
    assert model.n_iter_ == best and len(model.loss_curve_) == best <= 3
    assert_same_state(model, quietly(make(max_iter=best)))


def test_divergence_sweep(tmp_path):
    """72 fits (12 seeds; identity, ReLU and tanh; SGD and Adam at learning
    rates from 1e2 to 1e8): after TrainingDivergedError, a model predicts
    finite values, saves, loads and trains on -- or, if no epoch of the fit
    completed, it is unfitted."""
    counts = {"converged": 0, "kept an epoch": 0, "unfitted": 0}
    for solver in ("sgd", "adam"):
        for activation in ("identity", "relu", "tanh"):
            for seed in range(12):
                data = np.random.default_rng(seed)
                Xs = data.normal(size=(64, 10, 3))
                ys = Xs.sum(axis=(1, 2))
                lr = 10.0 ** (data.uniform(2, 4) if solver == "sgd" else data.uniform(4, 8))
                model = RNNRegressor(4, activation=activation, solver=solver,
                                     momentum=0.0, learning_rate=lr,
                                     batch_size=int(data.choice([16, 64])),
                                     max_iter=30, random_state=seed)
                try:
                    quietly(model, Xs, ys)
                    counts["converged"] += 1
                    continue
                except TrainingDivergedError:
                    pass
                if not hasattr(model, "params_"):
                    counts["unfitted"] += 1
                    continue
                counts["kept an epoch"] += 1
                assert np.isfinite(model.predict(Xs)).all()
                model.save(tmp_path / "m.npz")
                loaded = crnn.load(tmp_path / "m.npz")
                loaded.set_params(learning_rate=1e-6, clip_norm=1.0)
                loaded.partial_fit(Xs, ys)
                assert np.isfinite(loaded.predict(Xs)).all()
    print(counts)
    assert counts["kept an epoch"] >= 10 and counts["unfitted"] >= 10, counts


def test_reported_divergence_predicts_finite_values():
    """Full-batch identity Elman with SGD at a learning rate of 100."""
    Xs = np.random.default_rng(0).normal(size=(64, 10, 3))
    ys = Xs.sum(axis=(1, 2))
    model = RNNRegressor(4, activation="identity", solver="sgd", momentum=0.0,
                         learning_rate=100.0, batch_size=64, max_iter=30,
                         random_state=0)
    with pytest.raises(TrainingDivergedError):
        model.fit(Xs, ys)
    if hasattr(model, "params_"):
        assert not np.isnan(model.predict(Xs)).any()


def test_partial_fit_divergence_restores_the_optimizer(tmp_path):
    model = make(solver="sgd", momentum=0.9)
    model.partial_fit(X, y)
    before = model._get_state(copy_arrays=True)
    model.set_params(learning_rate=1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(TrainingDivergedError):
            model.partial_fit(X, y * 1e12)
    np.testing.assert_array_equal(model._get_state()["optimizer"]["velocity"],
                                  before["optimizer"]["velocity"])
    model.save(tmp_path / "m.npz")                    # nothing non-finite to refuse
    model.set_params(learning_rate=0.01)
    model.partial_fit(X, y)
    assert np.isfinite(model.predict(X)).all() and model.n_iter_ == 2


# -- interruption: the last completed epoch ------------------------------------------


@pytest.mark.parametrize("early_stopping", [False, True])
def test_interrupt_keeps_the_last_completed_epoch(monkeypatch, early_stopping):
    # 5 batches of 8 per epoch without early stopping, 5 (36 sequences) with.
    fail_at(monkeypatch, 5 * 3 + 2, KeyboardInterrupt())       # in epoch 4
    model = make(max_iter=10, early_stopping=early_stopping)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    monkeypatch.undo()
    assert model.n_iter_ == 3 and len(model.loss_curve_) == 3
    # Exactly a fit stopped after 3 epochs (with early stopping: its best weights).
    assert_same_state(model, quietly(make(max_iter=3, early_stopping=early_stopping)))


def test_interrupt_in_the_first_epoch_leaves_the_model_as_before(monkeypatch):
    model = make()
    fail_at(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    assert not hasattr(model, "params_")


CHILD = """
import os, signal, sys, warnings
import numpy as np
import crnn, crnn._training
from crnn import RNNRegressor

X = np.random.default_rng(0).normal(size=(40, 6, 3))
y = X.sum(axis=(1, 2))
def make(**kw):
    kw.setdefault("max_iter", 10)
    return RNNRegressor(5, batch_size=8, n_iter_no_change=100, random_state=0,
                        learning_rate=0.01, **kw)
original = crnn._training.TrainingData.loss_and_gradient
calls = []
def signalling(*args, **kwargs):
    calls.append(None)
    if len(calls) == 17:                   # epoch 4, batch 2
        os.kill(os.getpid(), signal.SIGINT)
    return original(*args, **kwargs)
crnn._training.TrainingData.loss_and_gradient = signalling
model = make(early_stopping={early_stopping})
try:
    model.fit(X, y)
except KeyboardInterrupt:
    print("interrupted")
crnn._training.TrainingData.loss_and_gradient = original
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ref = make(early_stopping={early_stopping}, max_iter=3).fit(X, y)
print(model.n_iter_, len(model.loss_curve_), model.t_,
      bool((model.params_ == ref.params_).all()), model.loss_curve_ == ref.loss_curve_)
"""


@pytest.mark.parametrize("early_stopping", [False, True])
def test_sigint_in_a_child_process(early_stopping):
    code = textwrap.dedent(CHILD.format(early_stopping=early_stopping))
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(crnn.__file__).parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "interrupted"
    n_train = 36 if early_stopping else 40
    assert lines[1] == f"3 3 {3 * n_train} True True"
