"""crnn on Dask: a scikit-learn search on a ``dask.distributed`` cluster,
and batch ``predict`` over a dask array.

The cluster is a ``LocalCluster`` of two worker processes on loopback,
started and stopped by this module. A search on it fits the same
candidates as the serial search, in other processes, so its scores are
equal to the last bit, and it picks the same parameters.
"""
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
joblib = pytest.importorskip("joblib")
model_selection = pytest.importorskip("sklearn.model_selection")

from crnn import RNNClassifier, RNNRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::crnn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=50) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def data(seed=0, n=160):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12, 2))
    return X, X[:, -3:, 0].sum(axis=1)


def search(**kw):
    grid = {"hidden_size": [3, 6], "learning_rate": [3e-3, 1e-2]}
    return model_selection.GridSearchCV(
        RNNRegressor(max_iter=6, random_state=0), grid, cv=3, **kw)


def test_grid_search_on_the_cluster_equals_the_serial_search(client):
    X, y = data()
    serial = search().fit(X, y)
    with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as tasks:
        on_dask = search(n_jobs=-1).fit(X, y)
    assert len(tasks.data) >= 12              # 4 candidates x 3 folds, on the workers
    assert on_dask.best_params_ == serial.best_params_
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        np.testing.assert_array_equal(on_dask.cv_results_[key], serial.cv_results_[key])
    np.testing.assert_array_equal(on_dask.best_estimator_.params_,
                                  serial.best_estimator_.params_)


def test_cross_val_score_of_a_classifier_on_the_cluster(client):
    X, y = data(1)
    labels = (y > 0).astype(int)
    model = RNNClassifier(4, cell="gru", max_iter=5, random_state=0)
    serial = model_selection.cross_val_score(model, X, labels, cv=3)
    with joblib.parallel_backend("dask"):
        on_dask = model_selection.cross_val_score(model, X, labels, cv=3, n_jobs=-1)
    np.testing.assert_array_equal(on_dask, serial)


def test_predict_over_a_dask_array(client):
    X, y = data(2, n=300)
    model = RNNRegressor(5, cell="lstm", max_iter=4, random_state=0).fit(X, y)
    chunks = 100
    Xd = da.from_array(X, chunks=(chunks, -1, -1))
    Yd = Xd.map_blocks(model.predict, drop_axis=[1, 2], dtype=model.params_.dtype)
    Y = Yd.compute()
    # each chunk is one predict call on a worker: equal to that call here,
    # and to the whole predict up to the rounding of another batch size
    expected = np.concatenate([model.predict(X[i:i + chunks])
                               for i in range(0, len(X), chunks)])
    np.testing.assert_array_equal(Y, expected)
    np.testing.assert_allclose(Y, model.predict(X), rtol=1e-13, atol=1e-13)
