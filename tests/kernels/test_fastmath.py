"""Accuracy of the kernels' vectorized activations (``elementwise.h``).

The element-wise passes use their own branch-free exp, sigmoid and tanh so
that the compiler can vectorize them. They must stay within a few units in
the last place of the correctly rounded values: float64 results within
``ULPS_64 = 4`` ulps of NumPy's, float32 within ``ULPS_32 = 4`` ulps of the
float64 reference rounded to float32, except the float32 tanh: one rational
function over the whole range (fastmath.h), within ``ULPS_32_TANH = 5``.
"""
import numpy as np
import pytest

from crnn.kernels.activations import apply

ULPS_64 = 4
ULPS_32 = 4
ULPS_32_TANH = 5


def reference(name, x):
    x = x.astype(np.float64)
    if name == "tanh":
        return np.tanh(x)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def run(name, x, dtype):
    A = np.ascontiguousarray(x.astype(dtype).reshape(1, -1))
    apply(name, A, np.zeros(A.shape[1], dtype=dtype))
    return A[0]


def points():
    rng = np.random.default_rng(0)
    return np.concatenate([
        rng.uniform(-1, 1, 20000),
        rng.uniform(-25, 25, 20000),
        np.linspace(-0.7, 0.7, 2001),            # around the tanh branch switch
        rng.uniform(-1e-6, 1e-6, 1000),
        [0.0, -0.0, 1e-300, -1e-300, 0.625, -0.625, 700, -700, 745, -745, 1e6, -1e6],
    ])


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_float64_within_a_few_ulps(name):
    x = points()
    got, want = run(name, x, np.float64), reference(name, x)
    ulps = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), np.finfo(float).tiny))
    assert np.max(ulps[np.abs(want) > 1e-300]) <= ULPS_64
    assert np.all(np.abs(got) <= 1.0)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_float32_within_a_few_ulps(name):
    x = points().astype(np.float32)
    got, want = run(name, x, np.float32), reference(name, x).astype(np.float32)
    tiny = np.finfo(np.float32).tiny
    ulps = np.abs(got.astype(np.float64) - want) / np.spacing(np.maximum(np.abs(want), tiny))
    assert np.max(ulps[np.abs(want) > 1e-30]) <= (ULPS_32_TANH if name == "tanh" else ULPS_32)
    assert np.all(np.abs(got) <= 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0], dtype=dtype)
    t = run("tanh", x, dtype)
    s = run("sigmoid", x, dtype)
    np.testing.assert_array_equal(t[[0, 1, 3]], [1.0, -1.0, 0.0])
    np.testing.assert_array_equal(s[[0, 3]], [1.0, 0.5])
    # exp's argument is clamped where it saturates: sigmoid(-inf) is the
    # smallest normal number or so, not exactly 0.
    assert 0 <= s[1] <= 4 * np.finfo(dtype).tiny
    assert np.isnan(t[2]) and np.isnan(s[2])


def test_relu_and_identity_add_the_bias():
    A = np.array([[-1.0, 0.5, 2.0]])
    b = np.array([0.5, -1.0, 1.0])
    relu, ident = A.copy(), A.copy()
    apply("relu", relu, b)
    apply("identity", ident, b)
    np.testing.assert_array_equal(relu, [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(ident, [[-0.5, -0.5, 3.0]])
