"""Optimizers and gradient clipping over one flat parameter buffer."""
import numpy as np

from crnn.kernels.optim import adam_step


def sum_of_squares(x):
    """``sum(x * x)`` over a 1-D array, without calling NumPy's BLAS.

    NumPy and SciPy each bundle an OpenBLAS with its own thread pool; crnn's
    kernels use SciPy's. A NumPy ``dot`` in every training step would wake the
    second pool, whose spinning threads then compete with the first for the
    cores: with two threads per pool on two cores, that made a float64 LSTM
    fit three times slower. ``einsum`` without ``optimize`` uses NumPy's own
    loops.
    """
    return np.einsum("i,i->", x, x)


def clip_by_global_norm(grad, clip_norm):
    """Rescale ``grad`` in place so that its Euclidean norm is at most ``clip_norm``.

    ``g <- g * clip_norm / ||g||`` when ``||g|| > clip_norm`` (Pascanu et al.,
    2013). All parameter blocks share one norm, so the direction of the step
    is kept.

    Returns
    -------
    norm : float
        The norm before clipping (NaN or inf if the gradient is not finite).
    """
    norm = float(np.sqrt(sum_of_squares(grad)))
    if clip_norm is not None and norm > clip_norm:
        grad *= clip_norm / norm
    return norm


class SGD:
    """Stochastic gradient descent with (optionally Nesterov) momentum.

    ``v <- momentum * v - lr * g``; ``w <- w + v`` (or, with Nesterov,
    ``w <- w + momentum * v - lr * g``).
    """

    def __init__(self, size, dtype, learning_rate, momentum=0.9, nesterov=False):
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = np.zeros(size, dtype=dtype)

    def step(self, params, grad):
        v = self.velocity
        v *= self.momentum
        v -= self.learning_rate * grad
        if self.nesterov:
            params += self.momentum * v - self.learning_rate * grad
        else:
            params += v


class Adam:
    """Adam (Kingma & Ba, 2015) with bias-corrected moment estimates.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``w <- w - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
    """

    def __init__(self, size, dtype, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.t = 0
        self.m = np.zeros(size, dtype=dtype)
        self.v = np.zeros(size, dtype=dtype)

    def step(self, params, grad):
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        step = self.learning_rate * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        adam_step(params, grad, self.m, self.v, step, b1, b2, self.epsilon)
