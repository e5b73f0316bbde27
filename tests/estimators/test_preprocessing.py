"""``crnn.preprocessing``: windows of series, and per-feature scaling.

Windows against indexing by hand (every window and target located by the
returned index); the scaler's statistics against NumPy over the real steps
only, its round trip (to 1e-13 of the largest magnitude: subtracting
the center and adding it back rounds), its forms (3-D, padded
with lengths, 2-D, 1-D, ragged lists) kept, and a scaler in a Pipeline
searched by ``GridSearchCV(n_jobs=2)`` on ragged sequences.
"""
import numpy as np
import pytest

from crnn import NotFittedError, RNNClassifier
from crnn.preprocessing import SequenceScaler, make_windows

pytestmark = pytest.mark.filterwarnings("ignore::crnn.exceptions.ConvergenceWarning")


def test_windows_of_one_series():
    X, y = make_windows(np.arange(10.0), lookback=3, horizon=2)
    assert X.shape == (6, 3, 1) and y.shape == (6, 2)
    np.testing.assert_array_equal(X[:, :, 0], np.arange(6)[:, None] + np.arange(3))
    np.testing.assert_array_equal(y, np.arange(6)[:, None] + 3 + np.arange(2))


@pytest.mark.parametrize("sequence_targets", [False, True])
@pytest.mark.parametrize("stride", [1, 3])
def test_windows_of_several_series_are_located_by_their_index(stride, sequence_targets):
    rng = np.random.default_rng(stride)
    series = [rng.normal(size=(n, 3)) for n in (20, 7, 4, 12)]
    lookback, horizon = 4, 2
    X, y, index = make_windows(series, lookback, horizon, stride=stride, targets=[2, 0],
                               sequence_targets=sequence_targets, return_index=True)
    assert X.shape[1:] == (lookback, 3) and X.shape[0] == y.shape[0] == index.shape[0]
    expected = sum((n - lookback - horizon) // stride + 1
                   for n in (20, 7, 4, 12) if n >= lookback + horizon)
    assert X.shape[0] == expected
    for k, (s, t) in enumerate(index):
        x = series[s]
        start = t - (horizon if sequence_targets else lookback)
        np.testing.assert_array_equal(X[k], x[start:start + lookback])
        want = (x[t:t + lookback] if sequence_targets else x[t:t + horizon])[:, [2, 0]]
        np.testing.assert_array_equal(y[k], want)
        assert start % stride == 0 and start + lookback + horizon <= len(x)


def test_one_target_column_drops_the_target_axis():
    series = np.column_stack([np.arange(12.0), -np.arange(12.0)])
    X, y = make_windows(series, 4, horizon=3, targets=1)
    assert X.shape == (6, 4, 2) and y.shape == (6, 3)
    np.testing.assert_array_equal(y[0], [-4, -5, -6])
    assert make_windows(series, 4, 3)[1].shape == (6, 3, 2)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(lookback=0), ValueError, "lookback must be at least 1"),
    (dict(lookback=2.5), TypeError, "lookback must be an int"),
    (dict(lookback=3, horizon=0), ValueError, "horizon must be at least 1"),
    (dict(lookback=3, stride=-1), ValueError, "stride must be at least 1"),
    (dict(lookback=9), ValueError, "at least lookback \\+ horizon = 10 steps"),
    (dict(lookback=3, targets=5), ValueError, "targets must be feature indices"),
])
def test_bad_windows_are_refused(kwargs, error, words):
    with pytest.raises(error, match=words):
        make_windows(np.arange(9.0), **kwargs)


def test_bad_series_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        make_windows(np.array([1.0, np.nan, 2, 3]), 1)
    with pytest.raises(ValueError, match="every series must be 1-D"):
        make_windows([np.arange(5.0), np.ones((5, 2))], 2)
    with pytest.raises(ValueError, match="series 1 has 3 features"):
        make_windows([np.ones((5, 2)), np.ones((5, 3))], 2)


def forms(rng):
    """The same sequences as a 3-D array, padded with lengths, and a list."""
    lengths = np.array([6, 2, 5, 1, 6])
    padded = rng.normal(size=(5, 6, 3)) * [1, 10, 100] + [0, 5, -50]
    for i, n in enumerate(lengths):
        padded[i, n:] = 1e6                      # padding: never read, passed through
    return padded, lengths, [padded[i, :n] for i, n in enumerate(lengths)]


def test_the_statistics_are_over_the_real_steps_only():
    padded, lengths, ragged = forms(np.random.default_rng(0))
    rows = np.concatenate(ragged)
    for X, L in [(padded, lengths), (ragged, None)]:
        scaler = SequenceScaler().fit(X, lengths=L)
        np.testing.assert_allclose(scaler.center_, rows.mean(axis=0), rtol=1e-14)
        np.testing.assert_allclose(scaler.scale_, rows.std(axis=0), rtol=1e-14)
        minmax = SequenceScaler("minmax", (-1, 2)).fit(X, lengths=L)
        scaled = np.concatenate(minmax.transform(ragged))
        np.testing.assert_allclose(scaled.min(axis=0), -1, atol=1e-12)
        np.testing.assert_allclose(scaled.max(axis=0), 2, atol=1e-12)


def test_every_form_round_trips_and_keeps_its_form():
    padded, lengths, ragged = forms(np.random.default_rng(1))
    cases = [(padded, lengths), (padded[:, :, 0], lengths), (ragged, None),
             ([r[:, 1] for r in ragged], None), (padded[:, 0, 2], None),
             (padded[[0, 4]], None)]
    for method in ("standard", "minmax"):
        for X, L in cases:
            scaler = SequenceScaler(method).fit(X, lengths=L)
            Z = scaler.transform(X, lengths=L)
            back = scaler.inverse_transform(Z, lengths=L)
            if isinstance(X, list):
                assert isinstance(Z, list) and len(Z) == len(X)
                for a, b, z in zip(X, back, Z):
                    assert z.shape == a.shape
                    np.testing.assert_allclose(b, a, rtol=0, atol=1e-13 * np.abs(a).max())
                continue
            assert Z.shape == X.shape
            np.testing.assert_allclose(back, X, rtol=0, atol=1e-13 * np.abs(X).max())
            if L is not None:                    # the padding passes through
                mask = np.arange(6) >= L[:, None]
                np.testing.assert_array_equal(Z[mask], X[mask])


def test_a_constant_feature_and_the_errors():
    scaler = SequenceScaler().fit(np.ones((3, 4, 2)))
    np.testing.assert_array_equal(scaler.scale_, [1, 1])
    np.testing.assert_array_equal(scaler.transform(np.ones((1, 2, 2))), 0)
    with pytest.raises(NotFittedError):
        SequenceScaler().transform(np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="fitted with 2"):
        scaler.transform(np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        SequenceScaler().fit([np.array([[1.0], [np.inf]])])
    with pytest.raises(ValueError, match="method must be"):
        SequenceScaler("robust").fit(np.ones((2, 2)))
    with pytest.raises(ValueError, match="lo < hi"):
        SequenceScaler("minmax", (1, 0)).fit(np.ones((2, 2)))


def test_a_scaler_in_a_pipeline_searched_on_ragged_sequences():
    pipeline = pytest.importorskip("sklearn.pipeline")
    model_selection = pytest.importorskip("sklearn.model_selection")
    rng = np.random.default_rng(2)
    X = [rng.normal(size=(n, 2)) * 50 + 300 for n in rng.integers(3, 12, size=60)]
    y = np.array([int(x[:, 0].mean() > 300) for x in X])
    search = model_selection.GridSearchCV(
        pipeline.make_pipeline(SequenceScaler(), RNNClassifier(
            max_iter=100, learning_rate=0.01, random_state=0)),
        {"rnnclassifier__hidden_size": [4, 8]}, cv=3, n_jobs=2)
    search.fit(X, y)
    assert search.best_score_ > 0.8
    serial = model_selection.GridSearchCV(search.estimator, search.param_grid, cv=3).fit(X, y)
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
