"""The optimizers and gradient clipping, against the equations they state."""
import numpy as np
import pytest

from crnn._optim import SGD, Adam, clip_by_global_norm
from crnn.kernels.optim import adam_step


def adam_reference(w, grads, lr, b1, b2, eps):
    """Adam by its equations, in float64, one NumPy line per equation."""
    w = w.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return w, m, v


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
@pytest.mark.parametrize("n", [1, 7, 64, 1001])
def test_adam_follows_its_equations(dtype, rtol, n):
    rng = np.random.default_rng(n)
    w0 = rng.standard_normal(n).astype(dtype)
    grads = [(rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3)).astype(dtype)
             for _ in range(6)]
    opt = Adam(n, dtype, learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    w = w0.copy()
    for g in grads:
        opt.step(w, g)
    w_ref, m_ref, v_ref = adam_reference(w0, grads, 0.01, 0.8, 0.99, 1e-6)
    assert w.dtype == opt.m.dtype == opt.v.dtype == dtype and opt.t == 6
    # m sums terms of both signs: its error is relative to its scale.
    np.testing.assert_allclose(opt.m, m_ref, rtol=rtol, atol=rtol * np.abs(m_ref).max())
    np.testing.assert_allclose(opt.v, v_ref, rtol=rtol, atol=0)
    # The weights are stored in dtype: each step rounds them to its spacing.
    spacing = 6 * np.finfo(dtype).eps * np.abs(w_ref).max()
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=spacing)


def test_adam_step_rejects_mismatched_lengths():
    a, b = np.zeros(4), np.zeros(5)
    with pytest.raises(ValueError, match="params 4, grad 5"):
        adam_step(a, b, a.copy(), a.copy(), 0.1, 0.9, 0.999, 1e-8)


def test_adam_step_rejects_mixed_dtypes():
    a = np.zeros(4)
    with pytest.raises((TypeError, ValueError)):
        adam_step(a, a.astype(np.float32), a.copy(), a.copy(), 0.1, 0.9, 0.999, 1e-8)


def test_sgd_momentum_and_nesterov():
    """Two steps with one gradient g, lr 0.1, momentum 0.9: v1 = -0.1 g and
    v2 = -0.19 g; plain momentum adds v1 + v2 = -0.29 g, Nesterov adds
    (0.9 v1 - 0.1 g) + (0.9 v2 - 0.1 g) = -0.461 g."""
    g = np.array([1.0, -2.0])
    for nesterov, factor in ((False, -0.29), (True, -0.461)):
        opt = SGD(2, np.float64, 0.1, momentum=0.9, nesterov=nesterov)
        w = np.zeros(2)
        opt.step(w, g)
        opt.step(w, g)
        np.testing.assert_allclose(opt.velocity, -0.19 * g, rtol=1e-15)
        np.testing.assert_allclose(w, factor * g, rtol=1e-15)


def test_clip_by_global_norm():
    g = np.array([3.0, 4.0])
    assert clip_by_global_norm(g, None) == 5.0 and g.tolist() == [3.0, 4.0]
    assert clip_by_global_norm(g, 10.0) == 5.0 and g.tolist() == [3.0, 4.0]
    assert clip_by_global_norm(g, 1.0) == 5.0
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-15)
    assert np.isnan(clip_by_global_norm(np.array([np.nan, 1.0]), 1.0))
