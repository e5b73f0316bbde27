"""A fitted model is matched by its architecture, not by its parameter
count: once a hyper-parameter that defines the network changed, predict,
save, weight export and continued training are refused with a message that
names the parameter; restoring it makes the model usable again."""
import warnings

import numpy as np
import pytest

import crnn
from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor

rng = np.random.default_rng(0)
X = rng.normal(size=(20, 7, 3))
y = X.sum(axis=(1, 2))


def fitted(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return RNNRegressor(**{"max_iter": 2, "random_state": 0, **params}).fit(X, y)


def uses(model, tmp_path):
    """Every way of using a fitted model, by name."""
    return {
        "predict": lambda: model.predict(X),
        "score": lambda: model.score(X, y),
        "weights_": lambda: model.weights_,
        "save": lambda: model.save(tmp_path / "m.npz"),
        "to_torch_state_dict": lambda: crnn.to_torch_state_dict(model),
        "partial_fit": lambda: model.partial_fit(X, y),
        "warm_start fit": lambda: model.set_params(warm_start=True).fit(X, y),
        "check_gradient": lambda: model.check_gradient(X[:2], y[:2]),
    }


def test_same_parameter_count_other_architecture_is_refused(tmp_path):
    # An Elman cell with H=8 and a GRU with H=4 both have 105 parameters here.
    model = fitted(hidden_size=8)
    assert model.params_.size == fitted(hidden_size=4, cell="gru").params_.size
    before = model.params_.copy()
    model.set_params(cell="gru", hidden_size=4)
    for name, use in uses(model, tmp_path).items():
        with pytest.raises(ValueError, match=r"hyper-parameters changed after fitting "
                                             r"\(cell: 'elman' -> 'gru'; hidden_size: "
                                             r"8 -> 4\)"):
            use()
        np.testing.assert_array_equal(model.params_, before)
    assert not (tmp_path / "m.npz").exists()
    model.set_params(cell="elman", hidden_size=8, warm_start=False)
    for use in uses(model, tmp_path).values():   # usable again
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            use()


@pytest.mark.parametrize("name, value", [
    ("activation", "relu"), ("num_layers", 2), ("bidirectional", True),
    ("return_sequences", True), ("dtype", "float32"), ("output_activation", "tanh"),
])
def test_each_architecture_parameter_is_matched(name, value):
    model = fitted()
    model.set_params(**{name: value})
    with pytest.raises(ValueError, match=rf"changed after fitting \({name}: "):
        model.predict(X)


def test_training_settings_may_change_after_fit():
    model = fitted()
    model.set_params(learning_rate=0.1, max_iter=1, batch_size=3, alpha=0.1,
                     dropout=0.5, clip_norm=1.0, forget_bias=0.0, random_state=5,
                     dtype=np.float64)
    before = model.predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.set_params(warm_start=True).fit(X, y)
    assert not np.array_equal(model.predict(X), before)


def test_refit_with_a_new_architecture_is_allowed():
    model = fitted()
    model.set_params(cell="lstm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)                          # warm_start=False: a new model
    assert model.predict(X).shape == (20,)


def test_classifier_too():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = RNNClassifier(4, max_iter=1, random_state=0).fit(X, y > 0)
    clf.set_params(activation="sigmoid")
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(ValueError, match="activation: 'tanh' -> 'sigmoid'"):
            method(X)


# -- hyper-parameters of other numeric types ----------------------------------------


def test_numpy_integer_hyper_parameters():
    """Integer hyper-parameters go through operator.index: NumPy's small
    integer types never overflow in crnn's size arithmetic."""
    Xl = rng.normal(size=(6, 300, 2))
    yl = Xl[:, :, 0].sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = RNNRegressor(np.uint8(2), num_layers=np.uint8(1), bptt_steps=np.uint8(2),
                             batch_size=np.uint8(4), max_iter=np.uint8(2),
                             n_iter_no_change=np.uint8(5), random_state=0).fit(Xl, yl)
        plain = RNNRegressor(2, bptt_steps=2, batch_size=4, max_iter=2,
                             n_iter_no_change=5, random_state=0).fit(Xl, yl)
    np.testing.assert_array_equal(model.predict(Xl), plain.predict(Xl))
    assert model.check_gradient(Xl[:2, :5], yl[:2]).max_error < 1e-6


def test_fraction_hyper_parameters():
    from fractions import Fraction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = RNNRegressor(3, learning_rate=Fraction(1, 100), beta_1=Fraction(9, 10),
                             tol=Fraction(1, 10**4), alpha=Fraction(1, 10),
                             clip_norm=Fraction(1), max_iter=2, random_state=0).fit(X, y)
        plain = RNNRegressor(3, learning_rate=0.01, beta_1=0.9, tol=1e-4, alpha=0.1,
                             clip_norm=1.0, max_iter=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))
