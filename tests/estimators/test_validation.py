"""Input validation of ``RNNRegressor`` and ``RNNClassifier``.

Bad input must be refused with a clear ``TypeError`` or ``ValueError``
before any kernel runs, with a message that says what was expected and what
was given; harmless variations of good input (memory order, strides, other
numeric dtypes, nested lists) must be converted and give exactly the
predictions of the clean float64 C-contiguous array.
"""
import re
import warnings

import numpy as np
import pytest

import crnn
from crnn import ConvergenceWarning, NotFittedError, RNNClassifier, RNNRegressor

N, T, F = 12, 5, 3


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(N, T, F))


@pytest.fixture
def y():
    return np.random.default_rng(1).normal(size=N)


@pytest.fixture
def labels():
    return np.array([0, 1] * (N // 2))


def quick(cls=RNNRegressor, **kwargs):
    kwargs.setdefault("hidden_size", 4)
    kwargs.setdefault("max_iter", 1)
    kwargs.setdefault("random_state", 0)
    return cls(**kwargs)


def fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


@pytest.fixture
def no_kernel(monkeypatch):
    """Make the compiled network fail loudly: validation must come first."""
    from crnn import _network

    def boom(*args, **kwargs):  # pragma: no cover - only runs on a bug
        raise AssertionError("a kernel ran before the input was validated")

    monkeypatch.setattr(_network, "Stack", boom)
    monkeypatch.setattr(_network.RecurrentNetwork, "init_params", boom)


# -- X ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(N,), (N, T, F, 2)], ids=["1-D", "4-D"])
@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_X_wrong_ndim(cls, shape, labels, no_kernel):
    X = np.ones(shape)
    with pytest.raises(ValueError, match=r"X must be 3-D .*got an array of shape "
                       + re.escape(str(shape))):
        quick(cls).fit(X, labels)


@pytest.mark.parametrize("shape", [(0, T, F), (N, 0, F), (N, T, 0)],
                         ids=["0 samples", "0 steps", "0 features"])
def test_X_empty(shape, no_kernel):
    X = np.empty(shape)
    y = np.zeros(shape[0])
    with pytest.raises(ValueError, match=r"X is empty: shape " + re.escape(str(shape))
                       + r".*at least one sample, one time step and one feature"):
        quick().fit(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_X_not_finite(X, y, bad, no_kernel):
    X[3, 2, 1] = bad
    with pytest.raises(ValueError, match=r"X contains NaN or infinity "
                       r"\(the first at index \(3, 2, 1\)"):
        quick().fit(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_X_not_finite_at_predict(X, y, bad):
    model = fit_quietly(quick(), X, y)
    X = X.copy()
    X[0, 0, 0] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        model.predict(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_y_not_finite_regressor(X, y, bad, no_kernel):
    y[4] = bad
    with pytest.raises(ValueError, match=r"y contains NaN or infinity "
                       r"\(the first at index \(4, 0\)"):
        quick().fit(X, y)


def test_y_not_finite_classifier(X, no_kernel):
    y = np.array([0.0, 1.0] * (N // 2))
    y[5] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN or infinity"):
        quick(RNNClassifier).fit(X, y)


def test_X_strings_is_type_error(y, no_kernel):
    X = np.array([["a"] * T] * N)
    with pytest.raises(TypeError, match=r"X must hold real numbers; got an array of dtype <U1"):
        quick().fit(X, y)


def test_X_object_strings_is_type_error(y, no_kernel):
    X = np.array([["a"] * T] * N, dtype=object)
    with pytest.raises(TypeError, match=r"X must hold real numbers; got an array of dtype object"):
        quick().fit(X, y)


def test_X_complex_is_type_error(X, y, no_kernel):
    with pytest.raises(TypeError, match=r"dtype complex128: Complex data not supported"):
        quick().fit(X + 1j, y)


def test_y_complex_is_type_error(X, y, no_kernel):
    with pytest.raises(TypeError, match=r"y must hold real numbers.*complex"):
        quick().fit(X, y.astype(complex))
    with pytest.raises(TypeError, match=r"class labels cannot be complex"):
        quick(RNNClassifier).fit(X, np.array([1, 1j] * (N // 2)))


def test_y_strings_for_regressor_is_type_error(X, no_kernel):
    with pytest.raises(TypeError, match=r"y must hold real numbers; got an array of dtype <U"):
        quick().fit(X, np.array(["a", "b"] * (N // 2)))


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_X_none(cls, labels, no_kernel):
    with pytest.raises(TypeError, match=r"X must be an array of sequences; got None"):
        quick(cls).fit(None, labels)


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_y_none(cls, X, no_kernel):
    with pytest.raises(TypeError, match=r"y must be an array of .*; got None"):
        quick(cls).fit(X, None)


@pytest.mark.parametrize("X_ragged", [
    [[1.0, 2.0, 3.0], [1.0, 2.0]],
    [[[1.0], [2.0], [3.0]], [[1.0], [2.0]]],
], ids=["2-D", "3-D"])
def test_ragged_sequences_are_accepted(X_ragged):
    model = fit_quietly(quick(), X_ragged, [1.0, 2.0])
    assert model.predict(X_ragged).shape == (2,)


def test_ragged_sequences_with_different_feature_counts(no_kernel):
    X = [np.zeros((3, 2)), np.zeros((2, 3))]
    with pytest.raises(ValueError, match=r"different numbers of features: \[2, 3\]"):
        quick().fit(X, [1.0, 2.0])


# -- y shapes -----------------------------------------------------------------


@pytest.mark.parametrize("return_sequences", [False, True])
def test_sample_count_mismatch_regressor(X, return_sequences, no_kernel):
    y = np.zeros((N - 1, T)) if return_sequences else np.zeros(N - 1)
    with pytest.raises(ValueError, match=rf"different numbers of samples: X has {N}, "
                       rf"y has {N - 1}"):
        quick(return_sequences=return_sequences).fit(X, y)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_sample_count_mismatch_classifier(X, return_sequences, no_kernel):
    y = np.array([0, 1] * N)[: N + 1]
    if return_sequences:
        y = np.repeat(y[:, None], T, axis=1)
    with pytest.raises(ValueError, match=rf"different numbers of samples: X has {N}, "
                       rf"y has {N + 1}"):
        quick(RNNClassifier, return_sequences=return_sequences).fit(X, y)


@pytest.mark.parametrize("y_shape", [(N, T, 1, 1), ()], ids=["4-D", "scalar"])
def test_regressor_y_wrong_ndim_sequence_to_one(X, y_shape, no_kernel):
    with pytest.raises(ValueError, match=r"with return_sequences=False, y holds one "
                       r"target per sequence.*got shape " + re.escape(str(y_shape))):
        quick().fit(X, np.zeros(y_shape))


def test_regressor_y_3d_sequence_to_one_suggests_return_sequences(X, no_kernel):
    with pytest.raises(ValueError, match=r"got shape \(12, 5, 1\)\. For one target per "
                       r"time step set return_sequences=True"):
        quick().fit(X, np.zeros((N, T, 1)))


def test_regressor_y_1d_sequence_to_sequence(X, y, no_kernel):
    with pytest.raises(ValueError, match=r"with return_sequences=True, y holds one target "
                       r"per time step.*\(12, 5\[, n_outputs\]\); got shape \(12,\)"):
        quick(return_sequences=True).fit(X, y)


@pytest.mark.parametrize("y_shape", [(N, T + 1), (N, T - 1, 2)])
def test_regressor_y_wrong_number_of_steps(X, y_shape, no_kernel):
    with pytest.raises(ValueError, match=r"one target per time step.*got shape "
                       + re.escape(str(y_shape))):
        quick(return_sequences=True).fit(X, np.zeros(y_shape))


def test_classifier_y_2d_sequence_to_one(X, no_kernel):
    y = np.zeros((N, T), dtype=int)
    y[::2] = 1
    with pytest.raises(ValueError, match=r"y must hold one label per sequence, shape "
                       r"\(n_samples,\) = \(12,\); got shape \(12, 5\); for one label "
                       r"per time step set return_sequences=True"):
        quick(RNNClassifier).fit(X, y)


def test_classifier_y_1d_sequence_to_sequence(X, labels, no_kernel):
    with pytest.raises(ValueError, match=r"y must hold one label per time step, shape "
                       r"\(n_samples, n_timesteps\) = \(12, 5\); got shape \(12,\)"):
        quick(RNNClassifier, return_sequences=True).fit(X, labels)


def test_classifier_y_wrong_number_of_steps(X, no_kernel):
    y = np.zeros((N, T + 2), dtype=int)
    y[::2] = 1
    with pytest.raises(ValueError, match=r"y must hold one label per time step.*\(12, 5\); got shape \(12, 7\)"):
        quick(RNNClassifier, return_sequences=True).fit(X, y)


# -- at predict time ----------------------------------------------------------


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_wrong_feature_count_at_predict(cls, X, labels):
    model = fit_quietly(quick(cls), X, labels)
    with pytest.raises(ValueError, match=r"X has 2 features per time step, but this "
                       r"model was fitted with 3"):
        model.predict(X[:, :, :2])
    with pytest.raises(ValueError, match=r"X has 1 features per time step, but this "
                       r"model was fitted with 3"):
        model.predict(X[:, :, 0])  # 2-D X means one feature per step


def test_wrong_feature_count_at_partial_fit(X, y):
    model = quick().partial_fit(X, y)
    with pytest.raises(ValueError, match=r"X has 4 features per time step, but this "
                       r"model was fitted with 3"):
        model.partial_fit(np.zeros((N, T, 4)), y)


def test_wrong_output_count_at_partial_fit(X, y):
    model = quick().partial_fit(X, y)
    with pytest.raises(ValueError, match=r"y has 2 outputs, but this model was fitted with 1"):
        model.partial_fit(X, np.zeros((N, 2)))


# -- not fitted ---------------------------------------------------------------


def _not_fitted_calls():
    X = np.zeros((3, 4, 2))
    return [
        pytest.param(RNNRegressor, lambda m: m.predict(X), id="regressor-predict"),
        pytest.param(RNNRegressor, lambda m: m.score(X, np.zeros(3)), id="regressor-score"),
        pytest.param(RNNRegressor, lambda m: m.weights_, id="regressor-weights_"),
        pytest.param(RNNClassifier, lambda m: m.predict_proba(X), id="classifier-predict_proba"),
        pytest.param(RNNClassifier, lambda m: m.weights_, id="classifier-weights_"),
        pytest.param(
            RNNClassifier, lambda m: m.predict(X), id="classifier-predict"),
        pytest.param(
            RNNClassifier, lambda m: m.score(X, np.zeros(3)), id="classifier-score"),
    ]


@pytest.mark.parametrize("cls, call", _not_fitted_calls())
def test_not_fitted(cls, call):
    with pytest.raises(NotFittedError, match=rf"this {cls.__name__} instance is not "
                       r"fitted yet; call fit") as info:
        call(cls())
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AttributeError)


def test_not_fitted_error_hierarchy():
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(NotFittedError, AttributeError)
    assert crnn.NotFittedError is crnn.exceptions.NotFittedError
    assert not hasattr(RNNRegressor(), "weights_")  # AttributeError -> False


# -- classifier labels --------------------------------------------------------


def test_classifier_one_class(X, no_kernel):
    with pytest.raises(ValueError, match=r"a classifier needs at least 2 classes; got 1 class \(\['a'\]\)"):
        quick(RNNClassifier).fit(X, np.array(["a"] * N))


def test_classifier_partial_fit_needs_classes(X, labels, no_kernel):
    with pytest.raises(ValueError, match=r"classes must be given on the first call to partial_fit"):
        quick(RNNClassifier).partial_fit(X, labels)


def test_classifier_partial_fit_one_class(X, labels, no_kernel):
    with pytest.raises(ValueError, match=r"at least 2 classes; got 1"):
        quick(RNNClassifier).partial_fit(X, np.zeros(N, dtype=int), classes=[0])


def test_classifier_partial_fit_unseen_label_first_call(X, no_kernel):
    y = np.array([0, 1, 2] * (N // 3))
    with pytest.raises(ValueError, match=r"y contains labels not among the classes "
                       r"\[0, 1\]: \[2\]"):
        quick(RNNClassifier).partial_fit(X, y, classes=[0, 1])


def test_classifier_partial_fit_unseen_label_later(X, labels):
    model = quick(RNNClassifier).partial_fit(X, labels, classes=[0, 1])
    before = model.params_.copy()
    y = labels.copy()
    y[0] = 7
    with pytest.raises(ValueError, match=r"not among the classes \[0, 1\]: \[7\]"):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(model.params_, before)
    assert model.n_iter_ == 1


def test_classifier_unseen_label_string(X):
    y = np.array(["cat", "dog"] * (N // 2))
    model = quick(RNNClassifier).partial_fit(X, y, classes=["cat", "dog"])
    y[3] = "emu"
    with pytest.raises(ValueError, match=r"not among the classes \['cat', 'dog'\]: \['emu'\]"):
        model.partial_fit(X, y)


# -- hyper-parameters ---------------------------------------------------------

INVALID = [
    ("hidden_size", 0), ("hidden_size", 1.5), ("hidden_size", True),
    ("cell", "lstm_typo"), ("activation", "foo"), ("solver", "lbfgs"),
    ("learning_rate", 0), ("learning_rate", -1), ("learning_rate", np.nan),
    ("momentum", 1.0), ("beta_1", 1.0), ("batch_size", 0), ("max_iter", 0),
    ("tol", -1), ("n_iter_no_change", 0), ("validation_fraction", 0),
    ("validation_fraction", 1), ("clip_norm", 0), ("clip_norm", -1), ("alpha", -1),
    ("dtype", "int32"), ("dtype", "float16"), ("random_state", "abc"),
    ("early_stopping", "yes"),
]


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
@pytest.mark.parametrize("name, value", INVALID, ids=[f"{n}={v!r}" for n, v in INVALID])
def test_invalid_hyper_parameter(cls, name, value, X, labels, no_kernel):
    model = cls(**{name: value})
    assert getattr(model, name) is value  # __init__ stores, fit validates
    with pytest.raises(ValueError, match=rf"^{name} must be .*; got {re.escape(repr(value))}$"):
        model.fit(X, labels)


def test_invalid_output_activation(X, y, no_kernel):
    with pytest.raises(ValueError, match=r"output_activation must be one of .*'identity'"
                       r".*got 'relu'"):
        RNNRegressor(output_activation="relu").fit(X, y)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_invalid_hyper_parameter_partial_fit_too(method, X, y, no_kernel):
    with pytest.raises(ValueError, match=r"^learning_rate must be"):
        getattr(RNNRegressor(learning_rate=-1), method)(X, y)


def test_invalid_hyper_parameter_keeps_fitted_model(X, y):
    model = fit_quietly(quick(), X, y)
    before = model.params_.copy()
    model.set_params(hidden_size=0)
    with pytest.raises(ValueError, match="hidden_size"):
        model.fit(X, y)
    np.testing.assert_array_equal(model.params_, before)


@pytest.mark.parametrize("name, value", [
    ("momentum", 0.0), ("beta_1", 0.0), ("validation_fraction", 0.5), ("clip_norm", 1e-8),
    ("hidden_size", np.int64(2)), ("dtype", np.float32), ("random_state", np.random.default_rng(3)),
    ("random_state", np.random.RandomState(3)), ("verbose", 0), ("alpha", 0),
])
def test_valid_edge_hyper_parameters(name, value, X, y):
    model = fit_quietly(quick(**{name: value}), X, y)
    assert np.isfinite(model.predict(X)).all()


# -- conversions that must be accepted ----------------------------------------


@pytest.fixture
def exact_X():
    """Inputs representable exactly in float32, bool and int conversions aside."""
    return np.random.default_rng(5).integers(-8, 9, size=(N, 2 * T, F)) / 8.0


def _conversions(X):
    Xi = np.rint(X * 8).astype(np.int64)
    Xb = X > 0
    return {
        "fortran": (np.asfortranarray(X), X),
        "strided": (np.concatenate([X, X], axis=2)[:, ::2, ::2], np.ascontiguousarray(
            np.concatenate([X, X], axis=2)[:, ::2, ::2])),
        "slice-steps": (X[:, ::2], np.ascontiguousarray(X[:, ::2])),
        "int": (Xi, Xi.astype(np.float64)),
        "int32": (Xi.astype(np.int32), Xi.astype(np.float64)),
        "float32": (X.astype(np.float32), X),
        "lists": (X.tolist(), X),
        "bool": (Xb, Xb.astype(np.float64)),
        "reversed-view": (X[::-1], np.ascontiguousarray(X[::-1])),
    }


CONVERSIONS = ["fortran", "strided", "slice-steps", "int", "int32", "float32", "lists",
               "bool", "reversed-view"]


@pytest.mark.parametrize("kind", CONVERSIONS)
def test_accepted_conversions_predict(kind, exact_X):
    given, clean = _conversions(exact_X)[kind]
    assert clean.dtype == np.float64 and clean.flags.c_contiguous
    n_features = clean.shape[2]
    rng = np.random.default_rng(0)
    model = fit_quietly(quick(hidden_size=5),
                        rng.normal(size=(N, T, n_features)), rng.normal(size=N))
    np.testing.assert_array_equal(model.predict(given), model.predict(clean))


@pytest.mark.parametrize("kind", CONVERSIONS)
@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_accepted_conversions_fit(cls, kind, exact_X):
    given, clean = _conversions(exact_X)[kind]
    y = np.array([0, 1, 1] * (N // 3))
    a = fit_quietly(quick(cls, max_iter=2, batch_size=5), given, y)
    b = fit_quietly(quick(cls, max_iter=2, batch_size=5), clean, y)
    assert a.params_.dtype == np.float64
    np.testing.assert_array_equal(a.params_, b.params_)
    np.testing.assert_array_equal(a.predict(clean), b.predict(given))


def test_2d_X_is_univariate(exact_X, y):
    X2 = exact_X[:, :, 0]
    a = fit_quietly(quick(), X2, y)
    b = fit_quietly(quick(), X2[:, :, None], y)
    assert a.n_features_in_ == 1
    np.testing.assert_array_equal(a.params_, b.params_)
    np.testing.assert_array_equal(a.predict(X2), b.predict(X2[:, :, None]))


def test_y_conversions_accepted(X, y):
    a = fit_quietly(quick(), X, y)
    b = fit_quietly(quick(), X, y.astype(np.float32).tolist())
    c = fit_quietly(quick(), X, y.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(b.params_, c.params_)
    assert a.predict(X).shape == b.predict(X).shape == (N,)


def test_input_not_modified(X, y):
    X_before, y_before = X.copy(), y.copy()
    Xf = np.asfortranarray(X)
    model = fit_quietly(quick(), Xf, y)
    model.predict(Xf)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(Xf, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_partial_fit_with_other_classes_is_refused():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 3, 2)), np.array([0, 1, 0, 1, 0, 1])
    model = RNNClassifier(3).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"classes=\[0, 1, 2\] differs from the classes "
                                         r"of the first partial_fit call, \[0, 1\]"):
        model.partial_fit(X, y, classes=[0, 1, 2])
    model.partial_fit(X, y, classes=[1, 0])  # the same classes in another order


def test_unsortable_mixed_labels_get_a_clear_error():
    X = np.random.default_rng(0).normal(size=(4, 3, 2))
    y = np.array([1, "a", 1, "a"], dtype=object)
    with pytest.raises(TypeError, match="class labels must be of one sortable type"):
        RNNClassifier(3, max_iter=1).fit(X, y)


# -- class labels: one kind, discrete ------------------------------------------


@pytest.mark.parametrize("y, error, pattern", [
    ([1, "a"] * 6, TypeError, r"mixes numbers and strings, e.g. 1 and 'a'"),
    (np.array([1, "a"] * 6, dtype=object), TypeError, "mixes numbers and strings"),
    (np.linspace(0, 1, 12), ValueError, r"continuous values \(the first at index "
                                        r"\(1,\): 0.0909"),
    ([0.5, 1.0] * 6, ValueError, "continuous values.*use RNNRegressor"),
    ([None, "a"] * 6, TypeError, "numbers or strings; y holds NoneType None"),
    ([(1, 2), (3, 4)] * 6, ValueError, "one label per sequence"),
])
def test_bad_class_labels(y, error, pattern, no_kernel):
    X = np.random.default_rng(0).normal(size=(12, 3, 2))
    with pytest.raises(error, match=pattern):
        RNNClassifier(3, max_iter=1).fit(X, y)


@pytest.mark.parametrize("y, classes", [
    (np.array(["b", "a"] * 6, dtype=object), ["a", "b"]),
    ([np.str_("x"), "y"] * 6, ["x", "y"]),
    ([1.0, 2.0] * 6, [1.0, 2.0]),
    ([True, False] * 6, [False, True]),
])
def test_good_class_labels(y, classes):
    X = np.random.default_rng(0).normal(size=(12, 3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = RNNClassifier(3, max_iter=1).fit(X, y)
    assert clf.classes_.tolist() == classes
    assert clf.classes_.dtype.kind != "O"


def test_per_step_labels_are_checked_too(no_kernel):
    X = np.random.default_rng(0).normal(size=(4, 3, 2))
    with pytest.raises(ValueError, match="continuous values"):
        RNNClassifier(3, return_sequences=True, max_iter=1).fit(
            X, np.random.default_rng(1).normal(size=(4, 3)))
    with pytest.raises(TypeError, match="mixes numbers and strings"):
        RNNClassifier(3, return_sequences=True, max_iter=1).fit(
            [x for x in X], [[1, "a", 1]] * 4)
