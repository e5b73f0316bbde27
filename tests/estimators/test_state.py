"""The fitted state has one owner: ``_get_state`` gives all of it,
``_set_state`` installs all of it or nothing. Checked against a second
estimator that continues from the state (bit for bit), and against states
that do not fit the hyper-parameters."""
import warnings

import numpy as np
import pytest

from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor
from crnn._training import (DivergenceGuard, NoImprovement, minibatches,
                            validation_split)
from crnn.exceptions import TrainingDivergedError

rng = np.random.default_rng(0)
X = rng.normal(size=(24, 5, 3))
Y = {RNNRegressor: X.sum(axis=(1, 2)), RNNClassifier: np.where(X[:, 0, 0] > 0, "a", "b")}


def fitted(cls, seed=0, **params):
    model = cls(4, max_iter=2, random_state=seed, batch_size=8, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, Y[cls])


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_state_round_trip_continues_bit_for_bit(cls, solver):
    a = fitted(cls, solver=solver)
    state = a._get_state(copy_arrays=True)
    assert set(state) == set(cls._FITTED_ATTRIBUTES + cls._TARGET_STATE) | {
        "params_", "optimizer", "rng", "architecture"}
    assert state["optimizer"]["kind"] == solver
    b = cls(**a.get_params())
    b._set_state(state)
    np.testing.assert_array_equal(b.predict(X), a.predict(X))
    a.partial_fit(X, Y[cls])
    b.partial_fit(X, Y[cls])
    np.testing.assert_array_equal(b.params_, a.params_)
    assert b.loss_curve_ == a.loss_curve_ and b.n_iter_ == a.n_iter_ == 3


def test_copied_state_is_independent():
    model = fitted(RNNRegressor)
    before = model.predict(X)
    state = model._get_state(copy_arrays=True)
    state["params_"][:] = 0
    state["optimizer"]["m"][:] = 1
    state["loss_curve_"].append(9.0)
    state["rng"].random(10)
    np.testing.assert_array_equal(model.predict(X), before)
    assert len(model.loss_curve_) == 2
    assert not (model._get_state()["optimizer"]["m"] == 1).all()


def test_unfitted_model_has_no_state():
    from crnn import NotFittedError
    with pytest.raises(NotFittedError):
        RNNRegressor()._get_state()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("rng"), "a fitted state has the entries"),
    (lambda s: s.update(params_=s["params_"][:-1]), "hyper-parameters define"),
    (lambda s: s.update(params_=s["params_"].astype(np.int64)), "params_ must be"),
    (lambda s: s["optimizer"].update(m=s["optimizer"]["m"][:3]), "optimizer's 'm'"),
    (lambda s: s["optimizer"].update(kind="rmsprop"), "unknown optimizer state"),
    (lambda s: s.update(rng=0), "rng must be a numpy Generator"),
])
def test_set_state_refuses_and_changes_nothing(change, message):
    model = fitted(RNNRegressor)
    state = model._get_state(copy_arrays=True)
    change(state)
    target = fitted(RNNRegressor, seed=1)
    before = target._get_state(copy_arrays=True)
    with pytest.raises(ValueError, match=message):
        target._set_state(state)
    after = target._get_state()
    np.testing.assert_array_equal(after["params_"], before["params_"])
    assert after["optimizer"]["kind"] == before["optimizer"]["kind"]
    np.testing.assert_array_equal(after["optimizer"]["m"], before["optimizer"]["m"])
    fresh = RNNRegressor(4)
    with pytest.raises(ValueError, match=message):
        fresh._set_state(state)
    assert not hasattr(fresh, "params_")


def test_state_of_a_model_whose_architecture_changed_is_refused():
    model = fitted(RNNRegressor)
    state = model._get_state(copy_arrays=True)
    model.set_params(hidden_size=5)
    with pytest.raises(ValueError, match=r"fitted with other hyper-parameters "
                                         r"\(hidden_size: 4 -> 5\)"):
        model._set_state(state)


# -- the steps of the training loop -----------------------------------------------


def test_validation_split():
    train, val = validation_split(20, 0.25, np.random.default_rng(1))
    assert val.size == 5 and train.size == 15
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(20))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    train, val = validation_split(3, 0.01, np.random.default_rng(1))
    assert val.size == 1                       # at least one held out
    with pytest.raises(ValueError, match="at least 2 samples"):
        validation_split(1, 0.5, np.random.default_rng(1))


def test_minibatches_cover_the_order_once():
    order = np.random.default_rng(2).permutation(10)
    batches = list(minibatches(order, 4))
    assert [b.size for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), order)


def test_no_improvement_counts_consecutive_epochs():
    counter = NoImprovement(np.inf, tol=0.1, patience=2)
    stops = [counter.update(s) for s in [1.0, 0.95, 0.5, 0.45, 0.44]]
    # 0.95 is within tol of 1.0 (count 1); 0.5 improves (reset); 0.45, 0.44 do not.
    assert stops == [False, False, False, False, True]
    assert counter.best == 0.44


def test_divergence_guard():
    params = np.arange(4.0)
    guard = DivergenceGuard(params, learning_rate=0.1, clip_norm=None)
    guard.check("loss", 1.0, epoch=2)             # finite values pass
    guard.check_weights(epoch=2)
    params[0] = np.inf
    with pytest.raises(TrainingDivergedError, match="epoch 3: the weights"):
        guard.check_weights(epoch=3)
    with pytest.raises(TrainingDivergedError, match="the loss became nan"):
        guard.check("loss", np.nan, epoch=3)
