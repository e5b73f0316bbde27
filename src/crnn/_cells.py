"""Recurrent cells: parameter blocks and initialisation.

The compiled kernels of each cell (``crnn.kernels.elman``, ``lstm``, ``gru``)
run one layer and one direction over a packed batch; ``crnn.kernels.stack``
drives them for a whole network. The LSTM has two states ``(h, c)``, the
Elman and GRU cells one.
"""
import numpy as np

from crnn.kernels.activations import CODES as ACTIVATIONS


def glorot_uniform(rng, shape):
    """``U(-sqrt(6 / (fan_in + fan_out)), +...)`` for a ``(fan_out, fan_in)`` matrix."""
    fan_out, fan_in = shape
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)


def orthogonal(rng, n):
    """A random ``n x n`` orthogonal matrix, Haar-distributed (QR with sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


class Cell:
    """What the network needs of a cell type.

    Attributes
    ----------
    name : str
    n_gates : int
        ``G / H``: 1 (Elman), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n).
    n_states : int
        1, or 2 for the LSTM's (h, c).
    """

    n_gates = 1
    n_states = 1

    def blocks(self, I, H):
        """Names and shapes of one layer-direction's parameters."""
        G = self.n_gates * H
        return [("W_ih", (G, I)), ("W_hh", (G, H)), ("b", (G,))]

    def initialize(self, P, rng):
        """Glorot-uniform input weights and orthogonal recurrent weights, per
        gate block; zero biases."""
        H = P["W_hh"].shape[1]
        for k in range(self.n_gates):
            rows = slice(k * H, (k + 1) * H)
            P["W_ih"][rows] = glorot_uniform(rng, P["W_ih"][rows].shape)
            P["W_hh"][rows] = orthogonal(rng, H)
        for name in P:
            if name.startswith("b"):
                P[name][...] = 0


class ElmanCell(Cell):
    """``h_t = g(W_ih x_t + W_hh h_{t-1} + b)``."""

    name = "elman"

    def __init__(self, activation="tanh"):
        self.g = ACTIVATIONS[activation]


class LSTMCell(Cell):
    """PyTorch's LSTM: gates (i, f, g, o), ``c_t = f c_{t-1} + i g``,
    ``h_t = o tanh(c_t)``; one bias ``b`` (PyTorch's ``b_ih + b_hh``)."""

    name = "lstm"
    n_gates = 4
    n_states = 2

    def __init__(self, forget_bias=1.0):
        self.forget_bias = forget_bias

    def initialize(self, P, rng):
        super().initialize(P, rng)
        H = P["W_hh"].shape[1]
        P["b"][H:2 * H] = self.forget_bias


class GRUCell(Cell):
    """PyTorch's GRU: gates (r, z, n), ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``,
    ``h_t = (1 - z) n + z h_{t-1}``; ``b`` holds ``b_ir + b_hr, b_iz + b_hz, b_in``."""

    name = "gru"
    n_gates = 3

    def blocks(self, I, H):
        return super().blocks(I, H) + [("b_hn", (H,))]


CELLS = ("elman", "lstm", "gru")


def make_cell(name, activation="tanh", forget_bias=1.0):
    """The cell called ``name``; ``activation`` applies to the Elman cell only."""
    if name == "elman":
        return ElmanCell(activation)
    if name == "lstm":
        return LSTMCell(forget_bias)
    if name == "gru":
        return GRUCell()
    raise ValueError(f"cell must be one of {CELLS}; got {name!r}")
