"""A recurrent layer plus an output layer and a loss, over one flat buffer."""
import numpy as np

from crnn import _output
from crnn._params import ParamLayout
from crnn.kernels import elman
from crnn.kernels.activations import CODES as ACTIVATIONS

CELLS = ("elman",)


class RecurrentNetwork:
    """An Elman recurrent layer under an output layer, with a loss.

    The model, for inputs ``x_1 .. x_T`` and ``S_0 = h0``::

        S_t = g1(W_ih x_t + W_hh S_{t-1} + b)      (the seeds' W_x, W_s)
        Y_t = g2(W_y S_t + b_y)

    is scored on every step (``return_sequences=True``) or on the last step
    only. All parameters live in one flat buffer laid out by
    :attr:`layout`; every method takes that buffer explicitly, so one network
    object serves any number of parameter vectors (training, the gradient
    check, early-stopping snapshots).

    Arrays are time-major: inputs ``X`` are ``(T, B, I)``.

    Parameters
    ----------
    n_inputs, hidden_size, n_outputs : int
        ``I``, ``H`` and ``O``.
    activation : {"tanh", "relu", "sigmoid", "identity"}
        The hidden activation ``g1``.
    output_activation : {"identity", "tanh", "sigmoid", "softmax"}
        The output activation ``g2``.
    loss : {"squared_error", "cross_entropy"}
        ``"cross_entropy"`` requires ``output_activation="softmax"`` and takes
        integer class targets.
    return_sequences : bool
        Score every step (True) or only the last (False).
    dtype : numpy dtype
        float32 or float64, for the parameters and every computation.
    """

    def __init__(self, n_inputs, hidden_size, n_outputs, *, activation="tanh",
                 output_activation="identity", loss="squared_error",
                 return_sequences=False, dtype=np.float64):
        if loss == "cross_entropy" and output_activation != "softmax":
            raise ValueError("the cross_entropy loss needs a softmax output")
        self.I, self.H, self.O = int(n_inputs), int(hidden_size), int(n_outputs)
        self.activation = activation
        self.g1 = ACTIVATIONS[activation]
        self.g2 = output_activation
        self.loss_name = loss
        self.return_sequences = bool(return_sequences)
        self.dtype = np.dtype(dtype)
        I, H, O = self.I, self.H, self.O
        self.layout = ParamLayout([
            ("W_ih_l0", (H, I)),
            ("W_hh_l0", (H, H)),
            ("b_l0", (H,)),
            ("W_y", (O, H)),
            ("b_y", (O,)),
        ])
        # Blocks the L2 penalty applies to: weights, not biases.
        self.weight_names = ("W_ih_l0", "W_hh_l0", "W_y")

    # -- parameters ---------------------------------------------------------

    def init_params(self, rng, random_biases=False):
        """A new flat parameter buffer.

        ``W_ih`` and ``W_y`` are drawn from Glorot's uniform distribution
        ``U(-sqrt(6 / (fan_in + fan_out)), +...)``, ``W_hh`` is a random
        orthogonal matrix, biases are zero (or, with ``random_biases``,
        uniform in [-0.5, 0.5], which the gradient check uses to exercise
        every term).
        """
        params = self.layout.zeros(self.dtype)
        P = self.layout.views(params)
        for name in ("W_ih_l0", "W_y"):
            fan_out, fan_in = P[name].shape
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            P[name][...] = rng.uniform(-bound, bound, size=P[name].shape)
        P["W_hh_l0"][...] = orthogonal(rng, self.H)
        if random_biases:
            for name in ("b_l0", "b_y"):
                P[name][...] = rng.uniform(-0.5, 0.5, size=P[name].shape)
        return params

    def penalty(self, params, alpha):
        """``(alpha / 2) * sum of squared weights`` (biases excluded)."""
        if alpha == 0:
            return 0.0
        P = self.layout.views(params)
        return 0.5 * alpha * sum(float(np.vdot(P[n], P[n])) for n in self.weight_names)

    # -- forward ------------------------------------------------------------

    def _recurrent_forward(self, P, X, h0):
        T, B, _ = X.shape
        H_all = np.empty((T + 1, B, self.H), dtype=self.dtype)
        if h0 is None:
            h0 = np.zeros((B, self.H), dtype=self.dtype)
        elman.forward(X, P["W_ih_l0"], P["W_hh_l0"], P["b_l0"], h0, H_all, self.g1)
        return H_all

    def _scored_states(self, H_all):
        # S: the states the output layer reads, as rows of a 2-D array.
        if self.return_sequences:
            return H_all[1:].reshape(-1, self.H)
        return H_all[-1]

    def output(self, params, X, h0=None):
        """The network's outputs ``Y`` for time-major inputs ``X`` (T, B, I).

        Returns ``(T, B, O)`` when scoring every step, else ``(B, O)``.
        """
        P = self.layout.views(params)
        H_all = self._recurrent_forward(P, X, h0)
        S = self._scored_states(H_all)
        Y = _output.activate(S @ P["W_y"].T + P["b_y"], self.g2)
        T, B, _ = X.shape
        return Y.reshape(T, B, self.O) if self.return_sequences else Y

    # -- loss and gradient --------------------------------------------------

    def _data_loss(self, Z, target):
        if self.loss_name == "cross_entropy":
            return _output.softmax_cross_entropy(Z, target.reshape(-1))
        return _output.squared_error(Z, target.reshape(Z.shape), self.g2)

    def loss(self, params, X, target, alpha=0.0):
        """The training objective: mean data loss plus the L2 penalty.

        ``target`` is ``(T, B, O)`` / ``(B, O)`` floats for squared error and
        ``(T, B)`` / ``(B,)`` integer classes for cross-entropy.
        """
        P = self.layout.views(params)
        S = self._scored_states(self._recurrent_forward(P, X, None))
        value, _ = self._data_loss(S @ P["W_y"].T + P["b_y"], target)
        return value + self.penalty(params, alpha)

    def loss_grad(self, params, X, target, alpha=0.0, grad=None):
        """Loss and its gradient with respect to every parameter, by BPTT.

        Parameters
        ----------
        params : ndarray (P,)
            Flat parameter buffer.
        X : ndarray (T, B, I)
            Time-major inputs, C-contiguous, of the network's dtype.
        target : ndarray
            As for :meth:`loss`.
        alpha : float
            L2 penalty strength.
        grad : ndarray (P,), optional
            Buffer to write the gradient into (it is overwritten).

        Returns
        -------
        loss : float
        grad : ndarray (P,)
            Same layout as ``params``.
        """
        P = self.layout.views(params)
        if grad is None:
            grad = self.layout.zeros(self.dtype)
        else:
            grad.fill(0)
        G = self.layout.views(grad)
        T, B, _ = X.shape

        H_all = self._recurrent_forward(P, X, None)
        S = self._scored_states(H_all)
        value, dZ = self._data_loss(S @ P["W_y"].T + P["b_y"], target)
        dZ = dZ.astype(self.dtype, copy=False)

        # Output layer Z = S W_y^T + b_y: dW_y = dZ^T S, db_y = sum dZ, dS = dZ W_y.
        np.dot(dZ.T, S, out=G["W_y"])
        np.sum(dZ, axis=0, out=G["b_y"])
        dH = np.zeros((T, B, self.H), dtype=self.dtype)
        if self.return_sequences:
            np.dot(dZ, P["W_y"], out=dH.reshape(-1, self.H))
        else:
            np.dot(dZ, P["W_y"], out=dH[-1])

        dh0 = np.empty((B, self.H), dtype=self.dtype)
        elman.backward(X, P["W_ih_l0"], P["W_hh_l0"], H_all, dH, dh0, None,
                       G["W_ih_l0"], G["W_hh_l0"], G["b_l0"], self.g1)

        if alpha:
            for name in self.weight_names:
                G[name] += alpha * P[name]
        return value + self.penalty(params, alpha), grad


def orthogonal(rng, n):
    """A random ``n x n`` orthogonal matrix, Haar-distributed (QR with sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))
