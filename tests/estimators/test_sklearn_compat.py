"""Interoperability with scikit-learn (clone, Pipeline, model selection) and
the stand-in ``BaseEstimator`` that crnn uses when scikit-learn is absent."""
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone, is_classifier, is_regressor  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

N, T, F = 40, 5, 2


@pytest.fixture(scope="module")
def reg_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(N, T, F))
    return X, np.tanh(X.sum(axis=(1, 2)) / 2)


@pytest.fixture(scope="module")
def clf_data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, T, F))
    y = np.where(X[:, :, 0].sum(axis=1) > 0, "pos", "neg")
    return X, y


def test_crnn_uses_sklearn_base():
    import crnn._compat

    assert crnn._compat.HAVE_SKLEARN
    assert issubclass(RNNRegressor, sklearn.base.BaseEstimator)
    assert issubclass(RNNRegressor, sklearn.base.RegressorMixin)
    assert issubclass(RNNClassifier, sklearn.base.ClassifierMixin)


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_clone_unfitted_equal_params(cls, reg_data):
    X, y = reg_data
    y = y > 0 if cls is RNNClassifier else y
    model = cls(hidden_size=4, learning_rate=0.02, max_iter=2, random_state=3, solver="sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    copy = clone(model)
    assert type(copy) is cls
    assert copy is not model
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "params_")
    assert not hasattr(copy, "n_iter_")
    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(copy)
    check_is_fitted(model)
    # The clone trains to the same weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        copy.fit(X, y)
    np.testing.assert_array_equal(copy.params_, model.params_)


def test_estimator_types():
    assert is_regressor(RNNRegressor())
    assert not is_classifier(RNNRegressor())
    assert is_classifier(RNNClassifier())
    assert not is_regressor(RNNClassifier())


def test_repr_shows_changed_params():
    text = repr(RNNRegressor(hidden_size=3, solver="sgd"))
    assert text.startswith("RNNRegressor(")
    assert "hidden_size=3" in text and "solver='sgd'" in text


def test_pipeline_with_function_transformer(reg_data):
    X, y = reg_data
    scale = FunctionTransformer(lambda Z: np.asarray(Z) * 0.5, validate=False)
    kwargs = dict(hidden_size=4, learning_rate=0.02, max_iter=3, random_state=0)
    pipe = Pipeline([("scale", scale), ("rnn", RNNRegressor(**kwargs))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
        direct = RNNRegressor(**kwargs).fit(X * 0.5, y)
    pred = pipe.predict(X)
    assert pred.shape == (N,)
    np.testing.assert_array_equal(pred, direct.predict(X * 0.5))
    assert pipe.score(X, y) == pytest.approx(direct.score(X * 0.5, y))
    assert pipe.get_params()["rnn__hidden_size"] == 4
    pipe.set_params(rnn__hidden_size=6)
    assert pipe.named_steps["rnn"].hidden_size == 6


def test_grid_search(reg_data):
    X, y = reg_data
    search = GridSearchCV(
        RNNRegressor(learning_rate=0.02, max_iter=3, random_state=0),
        {"hidden_size": [4, 8]}, cv=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert search.best_params_["hidden_size"] in (4, 8)
    assert list(search.cv_results_["param_hidden_size"]) == [4, 8]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_
    assert best.hidden_size == search.best_params_["hidden_size"]
    assert best.weights_["W_hh_l0"].shape == (best.hidden_size,) * 2
    assert search.predict(X).shape == (N,)


def test_cross_val_score_classifier(clf_data):
    X, y = clf_data
    model = RNNClassifier(hidden_size=4, learning_rate=0.05, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, X, y, cv=2)
    assert scores.shape == (2,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.mean() > 0.6  # the sign of a sum is learnable
    assert not hasattr(model, "params_")  # cross_val_score fits clones


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_set_params_invalid_name(cls):
    model = cls()
    with pytest.raises(ValueError, match="hidden_sise"):
        model.set_params(hidden_sise=4)
    assert model.hidden_size == 32


# -- without scikit-learn -----------------------------------------------------

FALLBACK_SCRIPT = textwrap.dedent("""
    import json, pickle, sys
    import importlib.abc


    class BlockSklearn(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "sklearn" or name.startswith("sklearn."):
                raise ImportError(f"No module named {name!r} (blocked by the test)")
            return None


    sys.meta_path.insert(0, BlockSklearn())

    import numpy as np
    import crnn
    import crnn._compat
    from crnn import RNNClassifier, RNNRegressor

    expected = json.loads(sys.argv[1])
    assert crnn._compat.HAVE_SKLEARN is False
    assert not any(m == "sklearn" or m.startswith("sklearn.") for m in sys.modules)
    assert RNNRegressor.__mro__[-2].__module__ == "crnn._compat"

    for cls in (RNNRegressor, RNNClassifier):
        model = cls(hidden_size=3, solver="sgd", random_state=0)
        params = model.get_params()
        assert sorted(params) == expected[cls.__name__], sorted(params)
        assert params["hidden_size"] == 3 and params["solver"] == "sgd"
        assert model.get_params(deep=False) == params

        # set_params
        assert model.set_params(hidden_size=4, max_iter=2) is model
        assert model.hidden_size == 4 and model.get_params()["max_iter"] == 2
        try:
            model.set_params(hidden_sise=5)
        except ValueError as exc:
            assert "hidden_sise" in str(exc), exc
        else:
            raise AssertionError("set_params accepted an invalid name")
        assert not hasattr(model, "hidden_sise")

        # repr
        text = repr(model)
        assert text.startswith(cls.__name__ + "("), text
        assert "hidden_size=4" in text and "solver='sgd'" in text, text

        # a clone without sklearn.base.clone
        twin = cls(**model.get_params())
        assert twin.get_params() == model.get_params()

    # fit / predict
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4, 2))
    import warnings
    warnings.simplefilter("ignore", crnn.ConvergenceWarning)
    reg = RNNRegressor(hidden_size=3, max_iter=2, random_state=0).fit(X, X.sum(axis=(1, 2)))
    assert reg.predict(X).shape == (20,)
    assert np.isfinite(reg.predict(X)).all()
    assert isinstance(reg.score(X, X.sum(axis=(1, 2))), float)
    assert reg._estimator_type == "regressor"
    clf = RNNClassifier(hidden_size=3, max_iter=2, random_state=0).fit(X, X[:, 0, 0] > 0)
    assert clf.predict(X).shape == (20,)
    assert clf.predict_proba(X).shape == (20, 2)
    assert 0 <= clf.score(X, X[:, 0, 0] > 0) <= 1
    assert clf._estimator_type == "classifier"
    again = pickle.loads(pickle.dumps(reg))
    assert np.array_equal(again.predict(X), reg.predict(X))
    print("fallback ok")
""")


def test_fallback_base_estimator_without_sklearn():
    expected = {cls.__name__: sorted(cls().get_params()) for cls in (RNNRegressor, RNNClassifier)}
    result = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT, json.dumps(expected)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("fallback ok"), result.stdout
