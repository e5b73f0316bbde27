"""``model.stream()``: step-by-step inference against ``predict``.

``T`` steps of a stream run the cells' one-step kernels where ``predict``
runs their whole-sequence kernels; the tolerance is 1e-12 (float64) and
1e-5 (float32) for rounding in another order (on these sizes the two agree
to the last bit).
"""
import numpy as np
import pytest

from crnn import ClassifierStream, NotFittedError, RNNClassifier, RNNRegressor, Stream

pytestmark = pytest.mark.filterwarnings("ignore::crnn.exceptions.ConvergenceWarning")

TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
N, T, I = 4, 9, 3


def data(rng, dtype):
    return rng.normal(size=(N, T, I)).astype(dtype)


def fitted(cls, X, **params):
    params = dict(dict(hidden_size=5, max_iter=2, random_state=0,
                       dtype=X.dtype.name), **params)
    steps = params.get("return_sequences", False)
    if cls is RNNClassifier:
        y = (X[..., 0] > 0).astype(int) * 2 if steps else (X[:, :, 0].sum(1) > 0) * 2
    else:
        y = X[..., :2].cumsum(axis=1) if steps else X[:, -1, :2]
    return cls(**params).fit(X, y)


def close(a, b, dtype):
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_steps_give_predict_at_every_step(cell, num_layers, dtype):
    rng = np.random.default_rng([num_layers, dtype == np.float32])
    X = data(rng, dtype)
    model = fitted(RNNRegressor, X, cell=cell, num_layers=num_layers, return_sequences=True)
    stream = model.stream(N)
    assert isinstance(stream, Stream) and stream.n_streams == N
    got = np.stack([stream.step(X[:, t]) for t in range(T)], axis=1)
    expected, finals = model.predict(X, return_state=True)
    close(got, expected, dtype)
    got_states = stream.state if cell == "lstm" else (stream.state,)
    expected_states = finals if cell == "lstm" else (finals,)
    assert len(got_states) == len(expected_states)
    for a, b in zip(got_states, expected_states):
        assert a.shape == b.shape == (num_layers, N, 5)
        close(a, b, dtype)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_a_sequence_to_one_model_gives_predict_after_the_last_step(cell):
    rng = np.random.default_rng(1)
    X = data(rng, np.float64)
    model = fitted(RNNRegressor, X, cell=cell, num_layers=2)
    stream = model.stream(N)
    for t in range(T):
        last = stream.step(X[:, t])
    close(last, model.predict(X), np.float64)
    # and one stream at a time, 1-D inputs: one output per step, no stream axis
    one = model.stream()
    for t in range(T):
        y = one.step(X[2, t])
    assert y.shape == (2,)
    close(y, model.predict(X[2:3])[0], np.float64)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_initial_states_and_steps_in_one_call(cell):
    rng = np.random.default_rng(2)
    X = data(rng, np.float32)
    model = fitted(RNNRegressor, X, cell=cell, return_sequences=True)
    h0 = rng.normal(size=(1, N, 5)).astype(np.float32)
    state = (h0, rng.normal(size=h0.shape).astype(np.float32)) if cell == "lstm" else h0
    stream = model.stream(N, initial_state=state)
    got = stream.steps(np.swapaxes(X, 0, 1))                  # (T, N, O)
    close(np.swapaxes(got, 0, 1), model.predict(X, initial_state=state), np.float32)
    stream.reset(state)
    again = np.stack([stream.step(X[:, t]) for t in range(T)])
    np.testing.assert_array_equal(again, got)
    stream.reset()
    close(np.swapaxes(stream.steps(np.swapaxes(X, 0, 1)), 0, 1), model.predict(X),
          np.float32)


def test_a_classifier_streams_probabilities_and_labels():
    rng = np.random.default_rng(3)
    X = data(rng, np.float64)
    model = fitted(RNNClassifier, X, cell="gru", return_sequences=True)
    stream = model.stream(N)
    assert isinstance(stream, ClassifierStream)
    assert stream.classes_.tolist() == model.classes_.tolist()
    proba = np.stack([stream.step_proba(X[:, t]) for t in range(T)], axis=1)
    close(proba, model.predict_proba(X), np.float64)
    stream.reset()
    labels = np.stack([stream.step(X[:, t]) for t in range(T)], axis=1)
    np.testing.assert_array_equal(labels, model.predict(X))
    stream.reset()
    np.testing.assert_array_equal(stream.steps(np.swapaxes(X, 0, 1)).T, model.predict(X))


def test_a_stream_keeps_the_weights_it_was_made_with():
    rng = np.random.default_rng(4)
    X = data(rng, np.float64)
    model = fitted(RNNRegressor, X, cell="lstm")
    stream = model.stream(N)
    before = model.predict(X)
    model.set_params(random_state=1).fit(X, X[:, -1, :2])
    for t in range(T):
        y = stream.step(X[:, t])
    close(y, before, np.float64)


def test_what_cannot_stream_is_refused():
    rng = np.random.default_rng(5)
    X = data(rng, np.float64)
    with pytest.raises(NotFittedError):
        RNNRegressor().stream()
    with pytest.raises(ValueError, match="bidirectional"):
        fitted(RNNRegressor, X, bidirectional=True).stream()
    model = fitted(RNNRegressor, X, cell="gru")
    with pytest.raises(ValueError, match="at least 1"):
        model.stream(0)
    with pytest.raises(TypeError):
        model.stream(1.5)
    stream = model.stream(2)
    with pytest.raises(ValueError, match=r"x must have shape \(n_streams, n_features\)"):
        stream.step(X[0, 0])                                 # one stream's input for two
    with pytest.raises(ValueError, match="initial state h0 must have shape"):
        model.stream(2, initial_state=np.zeros((1, 3, 5)))
    first = stream.step(X[:2, 0])
    state = stream.state
    bad = X[:2, 1].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        stream.step(bad)
    np.testing.assert_array_equal(stream.state, state)      # unchanged
    with pytest.raises(ValueError, match="NaN"):
        stream.steps(np.stack([X[:2, 1], bad]))
    np.testing.assert_array_equal(stream.state, state)
    assert np.isfinite(first).all()
    model.set_params(hidden_size=7)
    with pytest.raises(ValueError, match="hidden_size"):
        model.stream()
