"""``fit(..., validation_data=)`` and ``validation_split="last"``.

The validation loss recorded each epoch is the model's loss on those
sequences (1e-12); with early stopping the restored weights are those of
the best of them; holding out the last sequences is exactly training on the
others with them as ``validation_data``.
"""
import numpy as np
import pytest

from crnn import RNNClassifier, RNNRegressor

pytestmark = pytest.mark.filterwarnings("ignore::crnn.exceptions.ConvergenceWarning")


def data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7, 2))
    return X, X[:, -1, 0] * X[:, 0, 1]


def test_the_validation_loss_of_every_epoch_is_recorded():
    X, y = data()
    model = RNNRegressor(5, max_iter=8, random_state=0, alpha=1e-3).fit(
        X[:45], y[:45], validation_data=(X[45:], y[45:]))
    assert model.n_iter_ == 8 and len(model.validation_loss_curve_) == 8
    penalty = 0.5e-3 * sum(float((w ** 2).sum()) for k, w in model.weights_.items()
                           if k.startswith("W"))
    loss = np.mean((model.predict(X[45:]) - y[45:]) ** 2) + penalty
    assert abs(model.validation_loss_curve_[-1] - loss) <= 1e-12 * loss
    # without early stopping: every epoch trained, nothing restored
    alone = RNNRegressor(5, max_iter=8, random_state=0, alpha=1e-3).fit(X[:45], y[:45])
    np.testing.assert_array_equal(model.params_, alone.params_)


def test_early_stopping_on_validation_data_restores_its_best_epoch():
    X, y = data(1)
    model = RNNRegressor(5, max_iter=60, learning_rate=0.02, n_iter_no_change=5,
                         early_stopping=True, random_state=0).fit(
        X[:40], y[:40], validation_data=(X[40:], y[40:]))
    curve = model.validation_loss_curve_
    best = int(np.argmin(curve))
    loss = np.mean((model.predict(X[40:]) - y[40:]) ** 2)
    assert abs(loss - curve[best]) <= 1e-12 * curve[best]
    assert model.n_iter_ == len(curve) < 60


def test_holding_out_the_last_sequences_is_validating_on_them():
    X, y = data(2)
    last = RNNRegressor(5, max_iter=15, early_stopping=True, validation_fraction=0.25,
                        validation_split="last", random_state=0).fit(X, y)
    explicit = RNNRegressor(5, max_iter=15, early_stopping=True, random_state=0).fit(
        X[:45], y[:45], validation_data=(X[45:], y[45:]))
    np.testing.assert_array_equal(last.params_, explicit.params_)
    assert last.validation_loss_curve_ == explicit.validation_loss_curve_
    shuffled = RNNRegressor(5, max_iter=15, early_stopping=True, validation_fraction=0.25,
                            random_state=0).fit(X, y)
    assert not np.array_equal(shuffled.params_, last.params_)


def test_ragged_classifier_validation_and_its_errors():
    rng = np.random.default_rng(3)
    X = [rng.normal(size=(n, 2)) for n in rng.integers(2, 9, size=50)]
    y = np.array(["up" if x[:, 0].sum() > 0 else "down" for x in X])
    model = RNNClassifier(4, max_iter=5, random_state=0).fit(
        X[:40], y[:40], validation_data=(X[40:], y[40:]))
    assert len(model.validation_loss_curve_) == 5
    with pytest.raises(ValueError, match=r"validation_data: y contains labels not among "
                                         r"the classes \['down', 'up'\]: \['flat'\]"):
        RNNClassifier(4, max_iter=1).fit(X[:40], y[:40],
                                         validation_data=(X[40:42], ["up", "flat"]))
    with pytest.raises(ValueError, match="validation_data: X has 3 features"):
        RNNClassifier(4, max_iter=1).fit(X[:40], y[:40], validation_data=(
            [np.ones((3, 3))], ["up"]))
    with pytest.raises(TypeError, match=r"validation_data must be \(X_val, y_val\)"):
        RNNClassifier(4, max_iter=1).fit(X[:40], y[:40], validation_data=X[40:])
    with pytest.raises(ValueError, match="validation_split"):
        RNNRegressor(validation_split="first").fit(np.zeros((4, 3)), np.zeros(4))


def test_validation_data_sample_weights_weight_the_validation_loss():
    X, y = data(2)
    w = np.random.default_rng(3).uniform(0.1, 3.0, size=15)
    model = RNNRegressor(5, max_iter=3, random_state=0, alpha=1e-3).fit(
        X[:45], y[:45], validation_data=(X[45:], y[45:], None, w))
    penalty = 0.5e-3 * sum(float((b ** 2).sum()) for k, b in model.weights_.items()
                           if k.startswith("W"))
    weighted = np.sum(w * (model.predict(X[45:]) - y[45:]) ** 2) / w.sum() + penalty
    assert abs(model.validation_loss_curve_[-1] - weighted) <= 1e-12 * weighted
    # the training is that of no validation weights; only the curve changes
    plain = RNNRegressor(5, max_iter=3, random_state=0, alpha=1e-3).fit(
        X[:45], y[:45], validation_data=(X[45:], y[45:]))
    np.testing.assert_array_equal(model.params_, plain.params_)
    assert model.validation_loss_curve_[-1] != plain.validation_loss_curve_[-1]
    with pytest.raises(ValueError, match="validation_data: X and sample_weight have"):
        RNNRegressor(5, max_iter=1).fit(X[:45], y[:45],
                                        validation_data=(X[45:], y[45:], None, w[:3]))
    with pytest.raises(TypeError, match="sample_weight_val"):
        RNNRegressor(5, max_iter=1).fit(X[:45], y[:45], validation_data=(X,) * 5)


def test_the_held_out_share_keeps_its_sample_weights():
    X, y = data(4, n=40)
    w = np.random.default_rng(5).uniform(0.1, 3.0, size=40)
    model = RNNRegressor(5, max_iter=1, random_state=0, early_stopping=True,
                         validation_split="last", validation_fraction=0.25).fit(
        X, y, sample_weight=w)
    held = slice(30, 40)
    weighted = (np.sum(w[held] * (model.predict(X[held]) - y[held]) ** 2)
                / w[held].sum())
    assert abs(model.validation_loss_curve_[0] - weighted) <= 1e-12 * weighted
    # the same as training on the others with the held-out ones as weighted validation_data
    other = RNNRegressor(5, max_iter=1, random_state=0, early_stopping=True).fit(
        X[:30], y[:30], sample_weight=w[:30],
        validation_data=(X[held], y[held], None, w[held]))
    assert other.validation_loss_curve_ == model.validation_loss_curve_
    zero = w.copy()
    zero[held] = 0
    with pytest.raises(ValueError, match="validation sequences sum to zero"):
        RNNRegressor(5, max_iter=1, early_stopping=True, validation_split="last",
                     validation_fraction=0.25).fit(X, y, sample_weight=zero)


def test_class_weights_weight_the_validation_loss_of_a_classifier():
    X, y = data(6)
    labels = (y > np.quantile(y, 0.8)).astype(int)          # 20 % positives
    kwargs = dict(hidden_size=4, max_iter=2, random_state=0)
    balanced = RNNClassifier(class_weight="balanced", **kwargs).fit(
        X[:45], labels[:45], validation_data=(X[45:], labels[45:]))
    P = balanced.predict_proba(X[45:])
    rows = labels[45:]
    per_class = rows.size / (2 * np.bincount(rows, minlength=2))
    w = per_class[rows]
    expected = -np.sum(w * np.log(P[np.arange(rows.size), rows])) / w.sum()
    assert abs(balanced.validation_loss_curve_[-1] - expected) <= 1e-12 * expected
