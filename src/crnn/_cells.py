"""Recurrent cells: parameter blocks, initialisation, and calls into the kernels.

Each cell wraps the compiled forward and BPTT kernels of one layer and one
direction over a packed batch (see ``crnn.kernels.recurrence``). States are
tuples: ``(h,)`` for the Elman and GRU cells, ``(h, c)`` for the LSTM.
"""
import numpy as np

from crnn.kernels import elman, gru, lstm
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

    def forward(self, P, X, batch_sizes, state0, reverse):
        N, B, H = X.shape[0], state0[0].shape[0], P["W_hh"].shape[1]
        Hs = np.empty((N, H), dtype=X.dtype)
        h_n = np.empty((B, H), dtype=X.dtype)
        elman.forward(X, batch_sizes, P["W_ih"], P["W_hh"], P["b"], state0[0], Hs, h_n,
                      reverse, self.g)
        return Hs, (h_n,), (Hs,)

    def backward(self, P, G, X, batch_sizes, state0, cache, dHs, d_state_n, want_dX,
                 reverse):
        (Hs,) = cache
        dh = d_state_n[0].copy()
        dX = np.empty_like(X) if want_dX else None
        # dHs is overwritten with the pre-activation gradients.
        elman.backward(X, batch_sizes, P["W_ih"], P["W_hh"], state0[0], Hs, dHs, dh, dX,
                       G["W_ih"], G["W_hh"], G["b"], reverse, self.g)
        return dX, (dh,)


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

    def forward(self, P, X, batch_sizes, state0, reverse):
        N, B, H = X.shape[0], state0[0].shape[0], P["W_hh"].shape[1]
        gates = np.empty((N, 4 * H), dtype=X.dtype)
        Hs = np.empty((N, H), dtype=X.dtype)
        Cs = np.empty((N, H), dtype=X.dtype)
        h_n = np.empty((B, H), dtype=X.dtype)
        c_n = np.empty((B, H), dtype=X.dtype)
        lstm.forward(X, batch_sizes, P["W_ih"], P["W_hh"], P["b"], state0[0], state0[1],
                     gates, Hs, Cs, h_n, c_n, reverse)
        return Hs, (h_n, c_n), (gates, Hs, Cs)

    def backward(self, P, G, X, batch_sizes, state0, cache, dHs, d_state_n, want_dX,
                 reverse):
        gates, Hs, Cs = cache
        dh, dc = d_state_n[0].copy(), d_state_n[1].copy()
        dX = np.empty_like(X) if want_dX else None
        # The gate gradients overwrite the gate activations, which backward consumes.
        lstm.backward(X, batch_sizes, P["W_ih"], P["W_hh"], state0[0], state0[1], gates,
                      Hs, Cs, dHs, gates, dh, dc, dX, G["W_ih"], G["W_hh"], G["b"],
                      reverse)
        return dX, (dh, dc)


class GRUCell(Cell):
    """PyTorch's GRU: gates (r, z, n), ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``,
    ``h_t = (1 - z) n + z h_{t-1}``; ``b`` holds ``b_ir + b_hr, b_iz + b_hz, b_in``."""

    name = "gru"
    n_gates = 3

    def blocks(self, I, H):
        return super().blocks(I, H) + [("b_hn", (H,))]

    def forward(self, P, X, batch_sizes, state0, reverse):
        N, B, H = X.shape[0], state0[0].shape[0], P["W_hh"].shape[1]
        gates = np.empty((N, 3 * H), dtype=X.dtype)
        hn = np.empty((N, H), dtype=X.dtype)
        Hs = np.empty((N, H), dtype=X.dtype)
        h_n = np.empty((B, H), dtype=X.dtype)
        gru.forward(X, batch_sizes, P["W_ih"], P["W_hh"], P["b"], P["b_hn"], state0[0],
                    gates, hn, Hs, h_n, reverse)
        return Hs, (h_n,), (gates, hn, Hs)

    def backward(self, P, G, X, batch_sizes, state0, cache, dHs, d_state_n, want_dX,
                 reverse):
        gates, hn, Hs = cache
        dh = d_state_n[0].copy()
        dX = np.empty_like(X) if want_dX else None
        gru.backward(X, batch_sizes, P["W_ih"], P["W_hh"], state0[0], gates, hn, Hs, dHs,
                     gates, dh, dX, G["W_ih"], G["W_hh"], G["b"], G["b_hn"], reverse)
        return dX, (dh,)


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
