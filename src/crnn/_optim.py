"""Optimizers and gradient clipping over one flat parameter buffer."""
import numpy as np

from crnn.kernels.optim import adam_step


def sum_of_squares(x):
    """``sum(x * x)`` over a 1-D array, without calling NumPy's BLAS.

    NumPy and SciPy each bundle an OpenBLAS with its own thread pool; crnn's
    kernels use SciPy's. A NumPy ``dot`` in every training step would wake the
    second pool, whose spinning threads then compete with the first for the
    cores. The rule: no NumPy BLAS call inside the training loop (the
    measurement is in ``docs/performance.md``). ``einsum`` without
    ``optimize`` uses NumPy's own loops.
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

    def state(self):
        """The optimizer's state: ``{"kind": "sgd", "velocity": ndarray}``."""
        return {"kind": "sgd", "velocity": self.velocity}

    def set_state(self, state):
        self.velocity[...] = state["velocity"]

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

    def state(self):
        """The optimizer's state: ``{"kind": "adam", "t": int, "m": ndarray, "v": ndarray}``."""
        return {"kind": "adam", "t": self.t, "m": self.m, "v": self.v}

    def set_state(self, state):
        self.t = int(state["t"])
        self.m[...] = state["m"]
        self.v[...] = state["v"]

    def step(self, params, grad):
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        step = self.learning_rate * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        adam_step(params, grad, self.m, self.v, step, b1, b2, self.epsilon)


#: Optimizer kind -> class; ``solver`` names a kind.
OPTIMIZERS = {"adam": Adam, "sgd": SGD}

#: The arrays of each optimizer kind's state (same size and dtype as the parameters).
STATE_ARRAYS = {"adam": ("m", "v"), "sgd": ("velocity",)}


def check_optimizer_state(state, size, dtype):
    """ValueError unless ``state`` is None or a complete state of a known
    optimizer whose arrays match the parameters' ``size`` and ``dtype``."""
    if state is None:
        return
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in STATE_ARRAYS:
        raise ValueError(f"unknown optimizer state {state!r}")
    expected = {"kind", *STATE_ARRAYS[kind]} | ({"t"} if kind == "adam" else set())
    if set(state) != expected:
        raise ValueError(f"the {kind} optimizer state has the entries {sorted(state)}; "
                         f"expected {sorted(expected)}")
    for name in STATE_ARRAYS[kind]:
        a = state[name]
        if not isinstance(a, np.ndarray) or a.shape != (size,) or a.dtype != dtype:
            raise ValueError(f"the {kind} optimizer's {name!r} must be a {np.dtype(dtype)} "
                             f"array of shape ({size},) like the parameters; got "
                             f"{getattr(a, 'dtype', type(a).__name__)} "
                             f"{getattr(a, 'shape', '')}")
