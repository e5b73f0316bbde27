"""Learning tests: the Elman network fits tasks that no linear model solves.

Both tasks multiply inputs that lie several steps apart, so the network
must carry one value in its state and combine it non-linearly with another.
A least-squares linear model on the whole flattened input window explains
none of the variance (stated bound: R^2 < 0.05 on held-out data), while the
RNN must explain almost all of it (stated bound: R^2 > 0.97).
"""
import numpy as np

from crnn import RNNRegressor

LINEAR_R2_MAX = 0.05
RNN_R2_MIN = 0.97


def r2(pred, y):
    return 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)


def linear_r2(X_train, y_train, X_test, y_test):
    """Held-out R^2 of ordinary least squares on the flattened windows."""
    def design(X):
        return np.c_[X.reshape(len(X), -1), np.ones(len(X))]

    coef = np.linalg.lstsq(design(X_train), y_train.reshape(len(X_train), -1), rcond=None)[0]
    return r2(design(X_test) @ coef, y_test.reshape(len(X_test), -1))


def test_first_times_last():
    """Sequence to one: y = x_1 * x_T over T = 8 steps."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(2500, 8))
    y = X[:, 0] * X[:, -1]
    X_train, y_train, X_test, y_test = X[:2000], y[:2000], X[2000:], y[2000:]

    assert linear_r2(X_train, y_train, X_test, y_test) < LINEAR_R2_MAX
    model = RNNRegressor(hidden_size=16, learning_rate=3e-3, max_iter=200, tol=1e-6,
                         n_iter_no_change=20, random_state=0).fit(X_train, y_train)
    assert model.score(X_test, y_test) > RNN_R2_MIN
    assert r2(model.predict(X_test), y_test) > RNN_R2_MIN


def test_delayed_product_per_step():
    """Sequence to sequence: y_t = x_t * x_{t-2} (0 for the first two steps)."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(1500, 10))
    y = np.zeros_like(X)
    y[:, 2:] = X[:, 2:] * X[:, :-2]
    X_train, y_train, X_test, y_test = X[:1200], y[:1200], X[1200:], y[1200:]

    assert linear_r2(X_train, y_train, X_test, y_test) < LINEAR_R2_MAX
    model = RNNRegressor(hidden_size=16, return_sequences=True, learning_rate=1e-2,
                         max_iter=200, tol=1e-6, n_iter_no_change=20,
                         random_state=0).fit(X_train, y_train)
    assert model.predict(X_test).shape == y_test.shape
    assert model.score(X_test, y_test) > RNN_R2_MIN
