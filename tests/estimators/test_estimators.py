"""Behaviour of ``RNNRegressor`` and ``RNNClassifier``: fitting, prediction
shapes, incremental training, reproducibility, the optimizers and their
options, stopping rules, divergence, verbosity and serialisation."""
import pickle
import re
import warnings

import numpy as np
import pytest

import crnn
from crnn import (ConvergenceWarning, RNNClassifier, RNNRegressor,
                  TrainingDivergedError)

N, T, F, H = 40, 6, 3, 5


def n_params(I, H, O):
    return H * I + H * H + H + O * H + O


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(N, T, F))
    y = np.tanh(X.sum(axis=(1, 2)) / 2)
    return X, y


@pytest.fixture(scope="module")
def seq_data():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(N, T, F))
    y = np.tanh(np.cumsum(X[:, :, 0], axis=1) / 2)  # (N, T): running total
    return X, y


@pytest.fixture(scope="module")
def clf_data():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(N, T, F))
    s = X[:, :, 0].sum(axis=1)
    y = np.where(s > 0.5, "up", np.where(s < -0.5, "down", "flat"))
    assert set(y) == {"up", "down", "flat"}
    return X, y


def make(cls=RNNRegressor, **kwargs):
    kwargs.setdefault("hidden_size", H)
    kwargs.setdefault("random_state", 0)
    kwargs.setdefault("max_iter", 2)
    return cls(**kwargs)


def fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


# -- basics -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_fit_returns_self(cls, data):
    X, y = data
    y = y > 0 if cls is RNNClassifier else y
    model = make(cls)
    assert fit_quietly(model, X, y) is model
    assert model.partial_fit(X, y) is model


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_get_params_returns_init_args_unchanged(cls):
    gen = np.random.default_rng(7)
    params = dict(hidden_size=7, cell="elman", activation="relu", return_sequences=True,
                  solver="sgd", learning_rate=0.05, momentum=0.5, nesterov=True,
                  beta_1=0.8, beta_2=0.99, epsilon=1e-6, batch_size=3, max_iter=9,
                  tol=0.5, n_iter_no_change=4, early_stopping=True,
                  validation_fraction=0.3, validation_split="last", shuffle=False,
                  clip_norm=2.5, alpha=0.01,
                  dtype="float32", random_state=gen, verbose=2, warm_start=True,
                  num_layers=2, bidirectional=True, dropout=0.25, bptt_steps=5,
                  forget_bias=0.5, vocab_size=11, embedding_dim=6, padding_idx=2,
                  lr_schedule="cosine", lr_decay=0.1, lr_step=7, warmup_epochs=2,
                  callbacks=[print], n_jobs=3)
    if cls is RNNRegressor:
        params["output_activation"] = "tanh"
    else:
        params["class_weight"] = {0: 2.0}
    model = cls(**params)
    got = model.get_params()
    assert set(got) == set(params)
    for name, value in params.items():
        assert got[name] is value, name
    # and the defaults are the __init__ defaults
    assert cls().get_params()["hidden_size"] == 32
    assert cls().get_params()["random_state"] is None


def test_set_params_changes_get_params():
    model = RNNRegressor()
    assert model.set_params(hidden_size=3, solver="sgd") is model
    assert model.get_params()["hidden_size"] == 3
    assert model.get_params()["solver"] == "sgd"


def test_fitted_attributes_regressor(data):
    X, y = data
    model = fit_quietly(make(max_iter=3, batch_size=16, n_iter_no_change=100), X, y)
    assert model.n_features_in_ == F
    assert model.n_outputs_ == 1
    assert model.params_.shape == (n_params(F, H, 1),)
    assert model.params_.dtype == np.float64
    assert model.n_iter_ == 3
    assert len(model.loss_curve_) == model.n_iter_
    assert model.t_ == 3 * N
    assert model.loss_ == model.loss_curve_[-1]
    assert all(np.isfinite(model.loss_curve_))
    assert model.best_loss_ == min(model.loss_curve_)
    assert model.validation_loss_curve_ == []


def test_fitted_attributes_classifier(clf_data):
    X, y = clf_data
    model = fit_quietly(make(RNNClassifier, max_iter=4, n_iter_no_change=100), X, y)
    assert model.n_features_in_ == F
    assert model.n_outputs_ == 3
    assert model.params_.shape == (n_params(F, H, 3),)
    assert model.n_iter_ == len(model.loss_curve_) == 4
    assert model.t_ == 4 * N
    assert model.loss_ == model.loss_curve_[-1]


def test_unfitted_has_no_fitted_attributes():
    model = RNNRegressor()
    for name in ("params_", "n_features_in_", "n_outputs_", "n_iter_", "loss_curve_", "t_"):
        assert not hasattr(model, name)


# -- prediction shapes --------------------------------------------------------


@pytest.mark.parametrize("return_sequences, y_shape, pred_tail", [
    (False, (N,), ()),
    (False, (N, 2), (2,)),
    (True, (N, T), (None,)),
    (True, (N, T, 2), (None, 2)),
])
def test_regressor_predict_shapes(return_sequences, y_shape, pred_tail):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N, T, F))
    y = rng.normal(size=y_shape)
    model = fit_quietly(make(return_sequences=return_sequences), X, y)
    assert model.n_outputs_ == (y_shape[-1] if len(y_shape) == (3 if return_sequences else 2) else 1)
    for steps in (T, 2, T + 4):  # a different number of steps than in fit works
        X_new = rng.normal(size=(7, steps, F))
        pred = model.predict(X_new)
        expected = (7,) + tuple(steps if d is None else d for d in pred_tail)
        assert pred.shape == expected
        assert pred.dtype == np.float64
        assert np.isfinite(pred).all()
    assert model.predict(X).shape == y_shape


def test_return_sequences_predictions_are_causal(seq_data):
    X, y = seq_data
    model = fit_quietly(make(return_sequences=True), X, y)
    full = model.predict(X)
    for k in (1, 3, T):
        np.testing.assert_allclose(model.predict(X[:, :k]), full[:, :k], rtol=1e-12, atol=1e-14)


def test_sequence_to_one_reads_the_last_step(data):
    X, y = data
    model = fit_quietly(make(), X, y)
    # Same weights in a sequence-to-sequence model: its last step is the
    # sequence-to-one prediction, and its step k the prediction on X[:, :k].
    seq = fit_quietly(make(return_sequences=True, max_iter=1), X, np.zeros((N, T)))
    seq.params_[...] = model.params_
    steps = seq.predict(X)
    np.testing.assert_allclose(steps[:, -1], model.predict(X), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(steps[:, 2], model.predict(X[:, :3]), rtol=1e-12, atol=1e-14)


def test_prediction_depends_on_order_of_steps(data):
    X, y = data
    model = fit_quietly(make(), X, y)
    assert not np.allclose(model.predict(X), model.predict(X[:, ::-1]))


def test_predict_is_batch_independent(data):
    X, y = data
    model = fit_quietly(make(), X, y)
    full = model.predict(X)
    np.testing.assert_allclose(model.predict(X[5:9]), full[5:9], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.predict(X[:1]), full[:1], rtol=1e-12, atol=1e-14)


def test_score_regressor(data):
    X, y = data
    model = fit_quietly(make(max_iter=1), X, y)
    pred = model.predict(X)
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert model.score(X, y) == pytest.approx(r2, rel=1e-12)


# -- classifier ---------------------------------------------------------------


def test_classifier_string_labels(clf_data):
    X, y = clf_data
    model = fit_quietly(make(RNNClassifier), X, y)
    np.testing.assert_array_equal(model.classes_, ["down", "flat", "up"])
    pred = model.predict(X)
    assert pred.shape == (N,)
    assert pred.dtype.kind == "U"
    assert set(pred) <= {"down", "flat", "up"}
    proba = model.predict_proba(X)
    assert proba.shape == (N, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (proba >= 0).all()
    np.testing.assert_array_equal(pred, model.classes_[np.argmax(proba, axis=1)])
    assert model.score(X, y) == pytest.approx(np.mean(pred == y))


def test_classifier_int_labels_sorted(clf_data):
    X, _ = clf_data
    y = np.array([7, -2, 3, 7, 3] * (N // 5))
    model = fit_quietly(make(RNNClassifier), X, y)
    np.testing.assert_array_equal(model.classes_, [-2, 3, 7])
    pred = model.predict(X)
    assert pred.dtype.kind == "i"
    assert set(pred.tolist()) <= {-2, 3, 7}
    assert model.predict_proba(X).shape == (N, 3)


def test_classifier_bool_and_list_labels(clf_data):
    X, y = clf_data
    model = fit_quietly(make(RNNClassifier), X, list(y == "up"))
    np.testing.assert_array_equal(model.classes_, [False, True])
    assert model.predict(X).dtype == bool


def test_classifier_return_sequences(clf_data):
    X, _ = clf_data
    y = np.where(np.cumsum(X[:, :, 0], axis=1) > 0, "pos", "neg")
    model = fit_quietly(make(RNNClassifier, return_sequences=True), X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (N, T, 2)
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    pred = model.predict(X)
    assert pred.shape == (N, T)
    assert pred.dtype.kind == "U"
    np.testing.assert_array_equal(pred, model.classes_[np.argmax(proba, axis=-1)])
    assert model.predict(X[:, :2]).shape == (N, 2)
    assert model.score(X, y) == pytest.approx(np.mean(pred == y))


def test_classifier_learns(clf_data):
    X, y = clf_data
    model = fit_quietly(make(RNNClassifier, learning_rate=0.02, max_iter=60,
                             batch_size=8), X, y)
    assert model.score(X, y) > 0.8


def test_classifier_proba_extreme_inputs_sum_to_one(clf_data):
    X, y = clf_data
    model = fit_quietly(make(RNNClassifier), X, y)
    model.weights_["W_y"][...] *= 1e3  # saturated logits
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# -- partial_fit and warm_start -----------------------------------------------


def test_partial_fit_regressor_increments(data):
    X, y = data
    model = make()
    previous = None
    for i in range(1, 4):
        model.partial_fit(X, y)
        assert model.n_iter_ == i
        assert model.t_ == i * N
        assert len(model.loss_curve_) == i
        if previous is not None:
            assert not np.array_equal(model.params_, previous)
        previous = model.params_.copy()


def test_partial_fit_classifier_increments(clf_data):
    X, y = clf_data
    model = make(RNNClassifier)
    model.partial_fit(X[:10], y[:10], classes=["up", "down", "flat"])
    np.testing.assert_array_equal(model.classes_, ["down", "flat", "up"])
    assert model.n_iter_ == 1
    model.partial_fit(X[10:], y[10:])
    assert model.n_iter_ == 2
    assert model.t_ == N
    model.partial_fit(X, y)
    assert model.n_iter_ == 3
    assert model.predict_proba(X).shape == (N, 3)


def test_partial_fit_continues_after_fit(data):
    X, y = data
    model = fit_quietly(make(max_iter=2, n_iter_no_change=100), X, y)
    params = model.params_.copy()
    model.partial_fit(X, y)
    assert model.n_iter_ == 3
    assert not np.array_equal(model.params_, params)


def test_partial_fit_equals_fit_epochs(data):
    """Three partial_fit calls are three epochs of fit, bit for bit."""
    X, y = data
    a = make(batch_size=16)
    for _ in range(3):
        a.partial_fit(X, y)
    b = fit_quietly(make(batch_size=16, max_iter=3, n_iter_no_change=100), X, y)
    np.testing.assert_array_equal(a.params_, b.params_)
    assert a.loss_curve_ == b.loss_curve_


def test_warm_start_continues(data, monkeypatch):
    X, y = data
    model = fit_quietly(make(warm_start=True, max_iter=3, n_iter_no_change=100), X, y)
    after_first = model.params_.copy()
    seen = []
    original = type(model)._train

    def spy(self, state, *args, **kwargs):
        seen.append(state["params_"].copy())
        return original(self, state, *args, **kwargs)

    monkeypatch.setattr(type(model), "_train", spy)
    fit_quietly(model, X, y)
    np.testing.assert_array_equal(seen[0], after_first)
    assert model.n_iter_ == 6
    assert len(model.loss_curve_) == 6
    assert model.t_ == 6 * N
    # Two warm-started fits of 3 epochs are one fit of 6 epochs, bit for bit
    # (weights, optimizer state and random stream all carry over).
    monkeypatch.undo()
    once = fit_quietly(make(max_iter=6, n_iter_no_change=100), X, y)
    np.testing.assert_array_equal(model.params_, once.params_)


def test_no_warm_start_reinitialises(data):
    X, y = data
    model = fit_quietly(make(max_iter=3, n_iter_no_change=100), X, y)
    first = model.params_.copy()
    fit_quietly(model, X, y)
    assert model.n_iter_ == 3
    assert len(model.loss_curve_) == 3
    np.testing.assert_array_equal(model.params_, first)  # same seed, fresh start


def test_warm_start_refits_after_new_features(data):
    X, y = data
    model = fit_quietly(make(warm_start=False), X, y)
    fit_quietly(model, X[:, :, :2], y)
    assert model.n_features_in_ == 2
    assert model.predict(X[:, :, :2]).shape == (N,)


def test_warm_start_uses_new_learning_rate(data):
    X, y = data
    a = fit_quietly(make(warm_start=True, solver="sgd", momentum=0.0, max_iter=1), X, y)
    b = fit_quietly(make(warm_start=True, solver="sgd", momentum=0.0, max_iter=1), X, y)
    a.set_params(learning_rate=0.1)
    fit_quietly(a, X, y)
    fit_quietly(b, X, y)
    assert not np.array_equal(a.params_, b.params_)


# -- reproducibility and precision --------------------------------------------


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_same_seed_same_params(cls, data):
    X, y = data
    y = y > 0 if cls is RNNClassifier else y
    a = fit_quietly(make(cls, random_state=42, max_iter=3, batch_size=8), X, y)
    b = fit_quietly(make(cls, random_state=42, max_iter=3, batch_size=8), X, y)
    c = fit_quietly(make(cls, random_state=43, max_iter=3, batch_size=8), X, y)
    assert a.params_.tobytes() == b.params_.tobytes()
    assert a.loss_curve_ == b.loss_curve_
    assert not np.allclose(a.params_, c.params_)


def test_seed_drives_shuffling(data):
    """With the same initial weights, the seed also decides the batch order."""
    X, y = data
    a = make(random_state=0, max_iter=1, batch_size=4)
    b = make(random_state=0, max_iter=1, batch_size=4, shuffle=False)
    fit_quietly(a, X, y)
    fit_quietly(b, X, y)
    assert not np.array_equal(a.params_, b.params_)


def test_random_state_none_differs(data):
    X, y = data
    a = fit_quietly(make(random_state=None, max_iter=1), X, y)
    b = fit_quietly(make(random_state=None, max_iter=1), X, y)
    assert not np.array_equal(a.params_, b.params_)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_float32_close_to_float64(solver, data):
    X, y = data
    kwargs = dict(solver=solver, learning_rate=0.01, max_iter=1, batch_size=8, random_state=3)
    m64 = fit_quietly(make(**kwargs), X, y)
    m32 = fit_quietly(make(dtype="float32", **kwargs), X, y)
    assert m32.params_.dtype == np.float32
    assert m64.params_.dtype == np.float64
    p32, p64 = m32.predict(X), m64.predict(X)
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, p64, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m32.params_, m64.params_, rtol=1e-4, atol=1e-6)
    assert not np.array_equal(m32.params_.astype(np.float64), m64.params_)


def test_float32_classifier(clf_data):
    X, y = clf_data
    model = fit_quietly(make(RNNClassifier, dtype="float32"), X, y)
    proba = model.predict_proba(X)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-6)


# -- optimizers ---------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    dict(solver="adam", learning_rate=0.01),
    dict(solver="sgd", learning_rate=0.02, momentum=0.9),
    dict(solver="sgd", learning_rate=0.02, momentum=0.9, nesterov=True),
    dict(solver="sgd", learning_rate=0.1, momentum=0.0),
], ids=["adam", "sgd", "sgd-nesterov", "sgd-plain"])
def test_solvers_reduce_loss(kwargs, data):
    X, y = data
    model = fit_quietly(make(max_iter=40, batch_size=8, n_iter_no_change=100, **kwargs), X, y)
    assert model.n_iter_ == 40
    assert model.loss_curve_[-1] < model.loss_curve_[0] / 2


def test_nesterov_differs_from_plain_momentum(data):
    X, y = data
    a = fit_quietly(make(solver="sgd", learning_rate=0.05, max_iter=2), X, y)
    b = fit_quietly(make(solver="sgd", learning_rate=0.05, max_iter=2, nesterov=True), X, y)
    assert not np.allclose(a.params_, b.params_)


@pytest.mark.parametrize("nesterov", [False, True])
def test_tiny_clip_norm_bounds_the_change(nesterov, data):
    X, y = data
    lr, momentum, clip, batch = 0.05, 0.9, 1e-8, 8
    n_batches = -(-N // batch)
    kwargs = dict(solver="sgd", learning_rate=lr, momentum=momentum, nesterov=nesterov,
                  batch_size=batch, max_iter=1)
    network_init = _initial_params(make(**kwargs), X, y)  # same seed: same start
    clipped = fit_quietly(make(clip_norm=clip, **kwargs), X, y)
    free = fit_quietly(make(**kwargs), X, y)
    bound = lr * clip * n_batches / (1 - momentum)
    change = np.linalg.norm(clipped.params_ - network_init)
    assert 0 < change <= bound + 1e-15
    assert np.linalg.norm(free.params_ - network_init) > 1e3 * bound
    huge = fit_quietly(make(clip_norm=1e12, **kwargs), X, y)
    np.testing.assert_array_equal(huge.params_, free.params_)  # clipping only when needed


def _initial_params(model, X, y):
    """The weights ``model`` starts training from (same seed, zero epochs run)."""
    class Stop(Exception):
        pass

    captured = []

    def capture(state, *args, **kwargs):
        captured.append(state["params_"].copy())
        raise Stop

    model._train = capture  # instance attribute: shadows the method
    try:
        model.fit(X, y)
    except Stop:
        pass
    finally:
        del model._train
    return captured[0]


def test_alpha_shrinks_weights(data):
    X, y = data
    kwargs = dict(learning_rate=0.02, max_iter=30, n_iter_no_change=100, batch_size=8)
    free = fit_quietly(make(alpha=0.0, **kwargs), X, y)
    decayed = fit_quietly(make(alpha=0.1, **kwargs), X, y)

    def weight_norm(model):
        w = model.weights_
        return np.sqrt(sum(np.sum(w[k] ** 2) for k in ("W_ih_l0", "W_hh_l0", "W_y")))

    assert weight_norm(decayed) < 0.9 * weight_norm(free)


def test_alpha_is_in_the_loss(data):
    X, y = data
    a = fit_quietly(make(alpha=0.0, max_iter=1, learning_rate=1e-12, shuffle=False), X, y)
    b = fit_quietly(make(alpha=2.0, max_iter=1, learning_rate=1e-12, shuffle=False), X, y)
    w = a.weights_
    penalty = 0.5 * 2.0 * sum(np.sum(w[k] ** 2) for k in ("W_ih_l0", "W_hh_l0", "W_y"))
    assert b.loss_ == pytest.approx(a.loss_ + penalty, rel=1e-8)


# -- stopping -----------------------------------------------------------------


def _first_stop(curve, tol, patience):
    best, count = np.inf, 0
    for epoch, loss in enumerate(curve, start=1):
        count = count + 1 if loss > best - tol else 0
        best = min(best, loss)
        if count >= patience:
            return epoch
    return None


def test_early_stopping_restores_best_weights(data):
    X, y = data
    kwargs = dict(early_stopping=True, validation_fraction=0.25, learning_rate=0.05,
                  batch_size=4, n_iter_no_change=4, tol=0.0, max_iter=200, hidden_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = make(**kwargs).fit(X, y)
    curve = model.validation_loss_curve_
    assert len(curve) == model.n_iter_ == len(model.loss_curve_)
    assert model.n_iter_ < 200
    assert model.best_loss_ == min(curve)
    assert _first_stop(curve, 0.0, 4) == model.n_iter_
    best_epoch = int(np.argmin(curve)) + 1
    assert best_epoch < model.n_iter_  # the final epochs were worse: a real restore
    assert model.t_ == model.n_iter_ * (N - 10)
    # Training the same model only up to the best epoch ends on the weights
    # the early-stopped model restored.
    truncated = fit_quietly(make(**dict(kwargs, max_iter=best_epoch)), X, y)
    np.testing.assert_array_equal(truncated.params_, model.params_)
    assert truncated.validation_loss_curve_ == curve[:best_epoch]
    np.testing.assert_array_equal(truncated.predict(X), model.predict(X))


def test_early_stopping_needs_two_samples(data):
    X, y = data
    with pytest.raises(ValueError, match="early_stopping needs at least 2 samples"):
        make(early_stopping=True).fit(X[:1], y[:1])


def test_no_improvement_stops_before_max_iter(data):
    X, y = data
    kwargs = dict(learning_rate=0.01, tol=1e-3, n_iter_no_change=3, max_iter=300, batch_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning
        model = make(**kwargs).fit(X, y)
    assert model.n_iter_ < 300
    assert _first_stop(model.loss_curve_, 1e-3, 3) == model.n_iter_
    # A longer patience trains at least as long.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        longer = make(**dict(kwargs, n_iter_no_change=6)).fit(X, y)
    assert longer.n_iter_ > model.n_iter_


def test_large_tol_stops_after_patience(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = make(tol=1e6, n_iter_no_change=2, max_iter=50).fit(X, y)
    # The first epoch always improves on the initial infinite best loss, then
    # two epochs without an improvement of 1e6 stop training.
    assert model.n_iter_ == 3


def test_max_iter_warns(data):
    X, y = data
    model = make(max_iter=3, n_iter_no_change=100)
    with pytest.warns(ConvergenceWarning, match=r"RNNRegressor stopped at max_iter=3"):
        model.fit(X, y)
    assert model.n_iter_ == 3
    assert issubclass(ConvergenceWarning, UserWarning)


def test_partial_fit_does_not_warn(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(max_iter=1).partial_fit(X, y)


# -- divergence ---------------------------------------------------------------


DIVERGING = dict(learning_rate=1e6, solver="sgd", momentum=0.0, batch_size=4,
                 max_iter=100, n_iter_no_change=100)


def _huge_targets():
    return np.random.default_rng(4).normal(size=N) * 1e6


def test_divergence_raises_and_keeps_finite_weights(data):
    X, _ = data
    y = _huge_targets()
    model = make(**DIVERGING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(TrainingDivergedError) as info:
            model.fit(X, y)
    message = str(info.value)
    match = re.search(r"training diverged in epoch (\d+)", message)
    assert match, message
    epoch = int(match.group(1))
    assert epoch >= model.n_iter_ + 1
    assert "Lower learning_rate (now 1000000.0)" in message
    assert isinstance(info.value, FloatingPointError)
    assert np.isfinite(model.params_).all()
    assert len(model.loss_curve_) == model.n_iter_
    assert np.isfinite(model.predict(X)).all()
    # The model is at the best completed epoch: the whole state of a fit
    # stopped after that epoch.
    assert model.n_iter_ >= 1
    assert model.loss_curve_[-1] == min(model.loss_curve_)
    before = fit_quietly(make(**dict(DIVERGING, max_iter=model.n_iter_)), X, y)
    np.testing.assert_array_equal(model.params_, before.params_)


def test_divergence_emits_no_numpy_warning(data):
    X, _ = data
    model = make(**DIVERGING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TrainingDivergedError):
            model.fit(X, _huge_targets())


def test_divergence_in_the_first_epoch_leaves_the_model_as_before(data):
    X, _ = data
    y = np.random.default_rng(4).normal(size=N) * 1e12
    model = make(learning_rate=1e300, solver="sgd", momentum=0.0, batch_size=N,
                 max_iter=10, n_iter_no_change=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(TrainingDivergedError, match="epoch 1: the weights"):
            model.fit(X, y)
    # No epoch completed: the first fit leaves the model unfitted...
    assert not hasattr(model, "params_") and not hasattr(model, "n_iter_")
    # ... and a refit leaves the trained model exactly as it was.
    trained = fit_quietly(make(max_iter=3), X, y)
    before = trained._get_state(copy_arrays=True)
    trained.set_params(learning_rate=1e300, solver="sgd", momentum=0.0, batch_size=N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(TrainingDivergedError):
            trained.fit(X, y)
    np.testing.assert_array_equal(trained.params_, before["params_"])
    assert trained.loss_curve_ == before["loss_curve_"]


# -- verbosity ----------------------------------------------------------------


def test_verbose_prints_every_epoch(data, capsys):
    X, y = data
    fit_quietly(make(verbose=True, max_iter=4, n_iter_no_change=100), X, y)
    out = capsys.readouterr().out
    lines = re.findall(r"^Epoch (\d+): loss = \S+", out, flags=re.M)
    assert lines == ["1", "2", "3", "4"]


def test_verbose_int_prints_every_nth_epoch(data, capsys):
    X, y = data
    fit_quietly(make(verbose=3, max_iter=7, n_iter_no_change=100), X, y)
    out = capsys.readouterr().out
    assert re.findall(r"^Epoch (\d+): loss", out, flags=re.M) == ["3", "6"]


def test_verbose_loss_matches_curve(data, capsys):
    X, y = data
    model = fit_quietly(make(verbose=1, max_iter=2, n_iter_no_change=100), X, y)
    values = re.findall(r"^Epoch \d+: loss = (\S+?),? ", capsys.readouterr().out, flags=re.M)
    np.testing.assert_allclose([float(v) for v in values], model.loss_curve_, rtol=1e-5)


def test_not_verbose_is_silent(data, capsys):
    X, y = data
    fit_quietly(make(max_iter=3), X, y)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


# -- serialisation and weights ------------------------------------------------


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_pickle_round_trip(cls, clf_data):
    X, y = clf_data
    y = X.sum(axis=(1, 2)) if cls is RNNRegressor else y
    model = fit_quietly(make(cls, return_sequences=False), X, y)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(X), model.predict(X))
    np.testing.assert_array_equal(clone.params_, model.params_)
    assert clone.get_params() == {k: v for k, v in model.get_params().items()}
    if cls is RNNClassifier:
        np.testing.assert_array_equal(clone.predict_proba(X), model.predict_proba(X))
    # Training goes on identically from the pickled state.
    clone.partial_fit(X, y)
    model.partial_fit(X, y)
    np.testing.assert_array_equal(clone.params_, model.params_)


def test_pickle_unfitted():
    model = pickle.loads(pickle.dumps(RNNRegressor(hidden_size=3)))
    assert model.hidden_size == 3
    assert not hasattr(model, "params_")


@pytest.mark.parametrize("O", [1, 2])
def test_weights_views(O, data):
    X, y = data
    Y = np.stack([y] * O, axis=1) if O > 1 else y
    model = fit_quietly(make(), X, Y)
    w = model.weights_
    assert set(w) == {"W_ih_l0", "W_hh_l0", "b_l0", "W_y", "b_y"}
    assert w["W_ih_l0"].shape == (H, F)
    assert w["W_hh_l0"].shape == (H, H)
    assert w["b_l0"].shape == (H,)
    assert w["W_y"].shape == (O, H)
    assert w["b_y"].shape == (O,)
    assert sum(a.size for a in w.values()) == model.params_.size
    for a in w.values():
        assert np.shares_memory(a, model.params_)
        assert a.dtype == model.params_.dtype
    before = model.predict(X)
    w["b_y"] += 1.5  # identity output: shifts every prediction by 1.5
    np.testing.assert_allclose(model.predict(X), before + 1.5, rtol=1e-12, atol=1e-12)
    model.weights_["W_y"][...] = 0
    np.testing.assert_allclose(model.predict(X), np.broadcast_to(model.weights_["b_y"] if O > 1
                                                                 else model.weights_["b_y"][0],
                                                                 before.shape))
    model.weights_["W_ih_l0"][...] = 0  # changes nothing visible now: W_y is 0
    assert np.all(model.params_[: H * F] == 0)


def test_weights_recurrent_matrix_matters(data):
    X, y = data
    model = fit_quietly(make(), X, y)
    before = model.predict(X)
    model.weights_["W_hh_l0"][...] = 0
    after = model.predict(X)
    assert not np.allclose(before, after)
    # With W_hh = 0 the output depends only on the last step.
    X2 = X.copy()
    X2[:, :-1] = 0
    np.testing.assert_allclose(model.predict(X2), after, rtol=1e-12, atol=1e-14)


def test_weights_initialisation(data):
    X, y = data
    params = _initial_params(make(hidden_size=8), X, y)
    views = {}
    offset = 0
    for name, shape in [("W_ih_l0", (8, F)), ("W_hh_l0", (8, 8)), ("b_l0", (8,)),
                        ("W_y", (1, 8)), ("b_y", (1,))]:
        size = int(np.prod(shape))
        views[name] = params[offset:offset + size].reshape(shape)
        offset += size
    assert offset == params.size
    np.testing.assert_allclose(views["W_hh_l0"] @ views["W_hh_l0"].T, np.eye(8), atol=1e-12)
    assert np.all(views["b_l0"] == 0) and np.all(views["b_y"] == 0)
    assert np.abs(views["W_ih_l0"]).max() <= np.sqrt(6 / (F + 8))


def test_public_api():
    for name in crnn.__all__:
        assert hasattr(crnn, name)
    assert issubclass(TrainingDivergedError, FloatingPointError)
