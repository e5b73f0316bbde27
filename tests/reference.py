"""Plain-NumPy reference implementation of the Elman recurrent layer.

This module is written from the equations, independently of the Cython
kernels in ``crnn.kernels.elman``, so that the test suite can compare the
two. It favours obviousness over speed: one explicit Python loop over time
steps, one small matrix product per step, and (in the backward pass) the
weight gradients accumulated step by step inside the loop, whereas the
kernel computes them as single GEMMs over all steps after the loop. The
derivative of the activation is taken at the pre-activation ``a_t``, which
the reference recomputes from ``H_all`` and ``b``; the kernel instead
writes it in terms of the output ``h_t = g(a_t)``.

Shapes (time-major, one layer, one direction, a batch of ``B`` sequences):

==========  ==============  ==============================================
name        shape           meaning
==========  ==============  ==============================================
X           (T, B, I)       inputs, ``X[t - 1] = x_t`` for t = 1..T
W_ih        (H, I)          input-to-hidden weights
W_hh        (H, H)          hidden-to-hidden (recurrent) weights
b           (H,)            bias
h0          (B, H)          initial state
H_all       (T + 1, B, H)   states, ``H_all[0] = h_0``, ``H_all[t] = h_t``
dH          (T, B, H)       ``dE/dh_t`` arriving from above the layer
==========  ==============  ==============================================

All arithmetic is done in the dtype of the inputs (NumPy's promotion
rules); pass float64 arrays to obtain a float64 reference.
"""
import numpy as np

__all__ = ["ACTIVATIONS", "activation_ref", "activation_derivative_ref",
           "elman_forward_ref", "elman_backward_ref"]

#: Activation names understood by the reference, in the order of the codes
#: of ``crnn.kernels.activations.Activation`` (IDENTITY=0, TANH=1,
#: SIGMOID=2, RELU=3).
ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu")


def activation_ref(a, activation):
    r"""Apply the activation ``g`` element-wise.

    Parameters
    ----------
    a : ndarray
        Pre-activations.
    activation : {"identity", "tanh", "sigmoid", "relu"}
        Name of ``g``:

        * identity: :math:`g(a) = a`
        * tanh: :math:`g(a) = \tanh a`
        * sigmoid: :math:`g(a) = 1 / (1 + e^{-a})`
        * relu: :math:`g(a) = \max(a, 0)`

    Returns
    -------
    ndarray
        :math:`g(a)`, same shape and dtype as ``a``.
    """
    a = np.asarray(a)
    if activation == "identity":
        return a.copy()
    if activation == "tanh":
        return np.tanh(a)
    if activation == "sigmoid":
        # 1 / (1 + exp(-a)) evaluated without overflow for large |a|.
        e = np.exp(-np.abs(a))
        return np.where(a >= 0, 1 / (1 + e), e / (1 + e))
    if activation == "relu":
        return np.where(a > 0, a, np.zeros_like(a))
    raise ValueError(f"unknown activation {activation!r}")


def activation_derivative_ref(a, activation):
    r"""Derivative :math:`g'(a)` of the activation, evaluated at ``a``.

    Parameters
    ----------
    a : ndarray
        Pre-activations (not the activation's output).
    activation : {"identity", "tanh", "sigmoid", "relu"}
        Name of ``g``:

        * identity: :math:`g'(a) = 1`
        * tanh: :math:`g'(a) = 1 - \tanh^2 a`
        * sigmoid: :math:`g'(a) = \sigma(a)\,(1 - \sigma(a))`
        * relu: :math:`g'(a) = 1` if :math:`a > 0` else :math:`0`
          (the derivative at exactly 0 is taken to be 0)

    Returns
    -------
    ndarray
        :math:`g'(a)`, same shape and dtype as ``a``.
    """
    a = np.asarray(a)
    if activation == "identity":
        return np.ones_like(a)
    if activation == "tanh":
        return 1 - np.tanh(a) ** 2
    if activation == "sigmoid":
        s = activation_ref(a, "sigmoid")
        return s * (1 - s)
    if activation == "relu":
        return (a > 0).astype(a.dtype)
    raise ValueError(f"unknown activation {activation!r}")


def elman_forward_ref(X, W_ih, W_hh, b, h0, activation):
    r"""Forward pass of the Elman layer, one time step at a time.

    For :math:`t = 1, \dots, T` and every sequence of the batch,

    .. math::

        a_t = W_{ih} x_t + W_{hh} h_{t-1} + b, \qquad h_t = g(a_t),

    starting from the given :math:`h_0`. With the batch stored row by row
    this is ``a_t = x_t @ W_ih.T + h_{t-1} @ W_hh.T + b``.

    Parameters
    ----------
    X : ndarray, shape (T, B, I)
        Inputs, time-major: ``X[t - 1]`` holds :math:`x_t` for the B
        sequences.
    W_ih : ndarray, shape (H, I)
        Input weights :math:`W_{ih}`.
    W_hh : ndarray, shape (H, H)
        Recurrent weights :math:`W_{hh}`.
    b : ndarray, shape (H,)
        Bias :math:`b`.
    h0 : ndarray, shape (B, H)
        Initial state :math:`h_0`.
    activation : {"identity", "tanh", "sigmoid", "relu"}
        The activation :math:`g`.

    Returns
    -------
    H_all : ndarray, shape (T + 1, B, H)
        ``H_all[0] = h0`` and ``H_all[t]`` :math:`= h_t`.
    """
    X = np.asarray(X)
    T, B, _ = X.shape
    H = W_hh.shape[0]
    dtype = np.result_type(X, W_ih, W_hh, b, h0)
    H_all = np.empty((T + 1, B, H), dtype=dtype)
    H_all[0] = h0
    for t in range(1, T + 1):
        x_t = X[t - 1]                       # (B, I)
        h_prev = H_all[t - 1]                # (B, H)
        a_t = x_t @ W_ih.T + h_prev @ W_hh.T + b
        H_all[t] = activation_ref(a_t, activation)
    return H_all


def elman_backward_ref(X, W_ih, W_hh, b, H_all, dH, activation):
    r"""Backpropagation through time for the Elman layer, step by step.

    Let :math:`E` be a loss whose gradient with respect to each state, as
    seen from above the layer, is :math:`\bar h_t = \partial E /
    \partial h_t|_{\text{above}}` (``dH[t - 1]``). Going backwards from
    :math:`t = T` to :math:`1`, with :math:`\delta_{T+1} = 0`,

    .. math::

        \frac{\partial E}{\partial h_t} &= \bar h_t + W_{hh}^\top
            \delta_{t+1}, \\
        \delta_t = \frac{\partial E}{\partial a_t} &=
            \frac{\partial E}{\partial h_t} \odot g'(a_t),
            \qquad a_t = W_{ih} x_t + W_{hh} h_{t-1} + b, \\
        \frac{\partial E}{\partial x_t} &= W_{ih}^\top \delta_t,

    and the parameter gradients are accumulated inside the loop,

    .. math::

        \frac{\partial E}{\partial W_{ih}} \mathrel{+}= \delta_t x_t^\top,
        \quad
        \frac{\partial E}{\partial W_{hh}} \mathrel{+}=
            \delta_t h_{t-1}^\top,
        \quad
        \frac{\partial E}{\partial b} \mathrel{+}= \delta_t,

    each summed over the batch. Finally :math:`\partial E / \partial h_0
    = W_{hh}^\top \delta_1` (the gradient through the recurrence only).

    Parameters
    ----------
    X : ndarray, shape (T, B, I)
        Inputs of the forward pass.
    W_ih : ndarray, shape (H, I)
        Input weights.
    W_hh : ndarray, shape (H, H)
        Recurrent weights.
    b : ndarray, shape (H,)
        Bias, used to recompute the pre-activations :math:`a_t`.
    H_all : ndarray, shape (T + 1, B, H)
        States from the forward pass, ``H_all[0] = h0``.
    dH : ndarray, shape (T, B, H)
        :math:`\bar h_t` for t = 1..T (``dH[t - 1]``). Not modified.
    activation : {"identity", "tanh", "sigmoid", "relu"}
        The activation :math:`g`.

    Returns
    -------
    dict of ndarray
        ``dW_ih`` (H, I), ``dW_hh`` (H, H), ``db`` (H,), ``dh0`` (B, H),
        ``dX`` (T, B, I) and ``dA`` (T, B, H) with ``dA[t - 1]``
        :math:`= \delta_t`.
    """
    X = np.asarray(X)
    T, B, I = X.shape
    H = W_hh.shape[0]
    dtype = np.result_type(X, W_ih, W_hh, b, H_all, dH)
    dW_ih = np.zeros((H, I), dtype=dtype)
    dW_hh = np.zeros((H, H), dtype=dtype)
    db = np.zeros(H, dtype=dtype)
    dX = np.zeros((T, B, I), dtype=dtype)
    dA = np.zeros((T, B, H), dtype=dtype)
    dh_from_next = np.zeros((B, H), dtype=dtype)   # W_hh^T delta_{t+1}
    for t in range(T, 0, -1):
        x_t = X[t - 1]
        h_prev = H_all[t - 1]
        a_t = x_t @ W_ih.T + h_prev @ W_hh.T + b
        dh_t = dH[t - 1] + dh_from_next
        delta = dh_t * activation_derivative_ref(a_t, activation)   # (B, H)
        dA[t - 1] = delta
        # Per-step accumulation, one sequence of the batch at a time.
        for s in range(B):
            dW_ih += np.outer(delta[s], x_t[s])
            dW_hh += np.outer(delta[s], h_prev[s])
            db += delta[s]
        dX[t - 1] = delta @ W_ih
        dh_from_next = delta @ W_hh
    return {"dW_ih": dW_ih, "dW_hh": dW_hh, "db": db, "dh0": dh_from_next,
            "dX": dX, "dA": dA}
