"""Property-based tests (hypothesis): for any input, crnn gives a clean error
or the correct result.

* valid networks and data (cells, activations, layers, directions, sizes,
  ragged lengths, both output modes): ``predict`` equals an independent
  NumPy forward pass built from ``tests/reference.py``, to 1e-10 in
  float64 and 1e-4 in float32;
* arbitrary inputs (shapes with zeros, NaN and infinities, wrong feature
  counts, ragged lists, bad ``lengths``): ``predict`` returns finite values
  of the right shape, or raises ``ValueError``/``TypeError``;
* arbitrary hyper-parameter values of any type: ``fit`` trains, or raises
  ``ValueError``/``TypeError`` (or ``TrainingDivergedError`` for a diverging
  fit), never anything else;
* arbitrary class labels (numbers, strings, floats, None, mixes): ``fit``
  and ``predict`` give labels from ``classes_``, or a clean error.

The example counts are fixed (``max_examples``) and the search is
derandomized, so that CI runs the same cases every time;
``pytest --hypothesis-show-statistics`` prints them.
"""
import warnings
from fractions import Fraction

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import reference as ref  # noqa: E402
from crnn import (ConvergenceWarning, RNNClassifier, RNNRegressor,  # noqa: E402
                  TrainingDivergedError)

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
CLEAN = (ValueError, TypeError)


def quietly(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return call(*args, **kwargs)


# -- an independent forward pass ------------------------------------------------------


def reference_outputs(model, seqs):
    """Outputs of ``model`` for a list of (T_j, I) sequences, by the NumPy
    references layer by layer: per sequence ``(O,)`` or per step ``(T_j, O)``."""
    W = {k: w.astype(np.float64) for k, w in model.weights_.items()}
    D = 2 if model.bidirectional else 1
    H = model.hidden_size
    inputs = [np.asarray(x, dtype=np.float64) for x in seqs]
    zeros = np.zeros((len(seqs), H))
    for layer in range(model.num_layers):
        outs, finals = [], []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            args = (inputs, W["W_ih" + sfx], W["W_hh" + sfx], W["b" + sfx])
            if model.cell == "elman":
                hs, h_n = ref.elman_ref(*args, zeros, model.activation, reverse=d == 1)
            elif model.cell == "lstm":
                hs, _, h_n, _ = ref.lstm_ref(*args, zeros, zeros, reverse=d == 1)
            else:
                hs, h_n = ref.gru_ref(*args, W["b_hn" + sfx], zeros, reverse=d == 1)
            outs.append(hs)
            finals.append(h_n)
        inputs = [np.concatenate([outs[d][j] for d in range(D)], axis=1)
                  for j in range(len(seqs))]
    g2 = getattr(model, "output_activation", "softmax")

    def head(S):
        Z = S @ W["W_y"].T + W["b_y"]
        if g2 == "softmax":
            E = np.exp(Z - Z.max(axis=-1, keepdims=True))
            return E / E.sum(axis=-1, keepdims=True)
        return ref.activation_ref(Z, g2)

    if model.return_sequences:
        return [head(x) for x in inputs]
    return head(np.concatenate(finals, axis=1))


@st.composite
def networks(draw):
    cell = draw(st.sampled_from(["elman", "lstm", "gru"]))
    params = dict(
        hidden_size=draw(st.integers(1, 6)), cell=cell,
        num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
        activation=draw(st.sampled_from(["tanh", "relu", "sigmoid", "identity"]))
        if cell == "elman" else "tanh",
        return_sequences=draw(st.booleans()),
        dtype=draw(st.sampled_from(["float64", "float32"])))
    classifier = draw(st.booleans())
    if not classifier:
        params["output_activation"] = draw(st.sampled_from(
            ["identity", "tanh", "sigmoid", "softmax"]))
    n = draw(st.integers(1, 5))
    I = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, 7), min_size=n, max_size=n))
    ragged = draw(st.booleans()) or len(set(lengths)) > 1
    seed = draw(st.integers(0, 2 ** 16))
    return classifier, params, I, lengths, ragged, seed


@settings(max_examples=250, **SETTINGS)
@given(networks())
def test_predict_matches_the_reference(case):
    classifier, params, I, lengths, ragged, seed = case
    rng = np.random.default_rng(seed)
    seqs = [rng.normal(size=(L, I)) for L in lengths]
    X = seqs if ragged else np.stack(seqs)
    if classifier:
        y = [np.arange(L) % 2 for L in lengths] if params["return_sequences"] else \
            np.arange(len(seqs)) % 2
        model = RNNClassifier(**params, max_iter=1, random_state=0)
        model.partial_fit(X, y, classes=[0, 1])
    else:
        y = [x[:, :1] for x in seqs] if params["return_sequences"] else rng.normal(
            size=(len(seqs), 1))
        y = y if ragged or not params["return_sequences"] else np.stack(y)
        model = RNNRegressor(**params, max_iter=1, random_state=0)
        model.partial_fit(X, y)
    for block in model.weights_.values():
        block[...] = rng.uniform(-0.8, 0.8, size=block.shape)
    got = model.predict_proba(X) if classifier else model.predict(X)
    expected = reference_outputs(model, seqs)
    tol = 1e-10 if params["dtype"] == "float64" else 1e-4
    if params["return_sequences"]:
        for j, e in enumerate(expected):
            g = np.asarray(got[j])[:lengths[j]]
            np.testing.assert_allclose(g.reshape(e.shape), e, rtol=tol, atol=tol)
    else:
        np.testing.assert_allclose(np.asarray(got).reshape(expected.shape), expected,
                                   rtol=tol, atol=tol)


# -- arbitrary inputs -------------------------------------------------------------------


def _fitted_regressor():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 4, 2)), rng.normal(size=6)
    return quietly(RNNRegressor(3, cell="gru", max_iter=1, random_state=0).fit, X, y)


FITTED = _fitted_regressor()
ODD_VALUES = st.sampled_from([0.0, 1.0, -2.5, np.nan, np.inf, -np.inf, 1e308, 5e-324])


@st.composite
def inputs(draw):
    kind = draw(st.sampled_from(["array", "list", "padded", "object"]))
    if kind == "list":
        n = draw(st.integers(0, 4))
        F = draw(st.integers(0, 3))
        items = []
        for _ in range(n):
            L = draw(st.integers(0, 4))
            Fi = draw(st.sampled_from([F, F + 1])) if draw(st.booleans()) else F
            items.append(np.full((L, Fi), draw(ODD_VALUES)))
        return items, None
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=4)))
    X = np.full(shape, draw(ODD_VALUES))
    if kind == "object":
        return X.astype(object).tolist() if X.ndim else X, None
    if kind == "padded" and X.ndim == 3:
        lengths = draw(st.lists(st.integers(-1, 6), min_size=X.shape[0],
                                max_size=X.shape[0] + 1))
        return X, lengths
    return X, None


@settings(max_examples=400, **SETTINGS)
@given(inputs())
def test_any_input_gives_a_clean_error_or_finite_outputs(case):
    X, lengths = case
    try:
        Y = FITTED.predict(X, lengths)
    except CLEAN:
        return
    Y = np.asarray(Y)
    assert np.isfinite(Y).all()
    assert Y.shape == (len(X),)


# -- arbitrary hyper-parameters -----------------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True),
    st.sampled_from(["tanh", "lstm", "gru", "adam", "sgd", "float32", "", "relu",
                     "softmax", np.float32, np.uint8(2), np.int64(-1), np.float64(0.5),
                     Fraction(1, 3), [1], (2,), {"a": 1}, np.array([1, 2]), object()]))
NAMES = sorted(RNNRegressor().get_params())


@settings(max_examples=300, **SETTINGS)
@given(st.dictionaries(st.sampled_from(NAMES), ANY_VALUE, max_size=3))
def test_any_hyper_parameters_give_a_clean_error_or_a_model(params):
    params = {k: v for k, v in params.items() if k != "max_iter"}
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(8, 5, 2)), rng.normal(size=8)
    if params.get("return_sequences") is True:
        y = rng.normal(size=(8, 5))
    model = RNNRegressor(**{"hidden_size": 3, **params}, max_iter=2)
    try:
        quietly(model.fit, X, y)
    except CLEAN + (TrainingDivergedError,):
        return
    out = model.predict(X)
    assert np.isfinite(out).all()


# -- arbitrary class labels --------------------------------------------------------------

LABEL = st.one_of(st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from(["a", "b", "", "ä", True, False, None, np.int8(1),
                                   np.float32(2.0), b"x", 1 + 2j, (1,)]))


@settings(max_examples=300, **SETTINGS)
@given(st.lists(LABEL, min_size=6, max_size=6), st.booleans())
def test_any_labels_give_a_clean_error_or_labels_from_the_classes(labels, as_object):
    X = np.random.default_rng(2).normal(size=(6, 3, 2))
    y = np.array(labels, dtype=object) if as_object else labels
    clf = RNNClassifier(3, max_iter=1, random_state=0)
    try:
        quietly(clf.fit, X, y)
    except CLEAN:
        return
    assert clf.classes_.dtype.kind in "biufU"
    predicted = clf.predict(X)
    assert set(predicted.tolist()) <= set(clf.classes_.tolist())
