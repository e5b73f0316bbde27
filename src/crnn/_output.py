"""The output layer ``Y = g2(S W_y^T + b_y)`` and the training losses.

Both losses are means over the scored outputs, so that the learning rate
does not depend on the batch size or the sequence length:

* squared error, with ``N`` scored scalar outputs (scored steps x samples x
  output units)::

      E = (1 / N) * sum (d - Y)^2

* cross-entropy with a softmax output, with ``N`` scored (sample, step)
  pairs and integer class targets ``k``::

      E = -(1 / N) * sum log softmax(Z)[k],     dE/dZ = (softmax(Z) - onehot(k)) / N

  computed from log-sum-exp, so it never overflows.
"""
import numpy as np

OUTPUT_ACTIVATIONS = ("identity", "tanh", "sigmoid", "softmax")
LOSSES = ("squared_error", "cross_entropy")


def softmax(Z):
    """Row-wise softmax of a 2-D array, shifted by the row maximum."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    E /= E.sum(axis=1, keepdims=True)
    return E


def sigmoid(Z):
    """Logistic function that never exponentiates a positive number."""
    E = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1.0 / (1.0 + E), E / (1.0 + E)).astype(Z.dtype, copy=False)


def activate(Z, g2):
    """``Y = g2(Z)`` for a 2-D array of output pre-activations ``Z``."""
    if g2 == "identity":
        return Z
    if g2 == "tanh":
        return np.tanh(Z)
    if g2 == "sigmoid":
        return sigmoid(Z)
    return softmax(Z)


def activation_backward(Y, dY, g2):
    """``dE/dZ`` from ``dE/dY`` and the output ``Y = g2(Z)``.

    For softmax this is the Jacobian-vector product
    ``dZ = Y * (dY - sum(dY * Y, axis=1))``.
    """
    if g2 == "identity":
        return dY
    if g2 == "tanh":
        return dY * (1 - Y * Y)
    if g2 == "sigmoid":
        return dY * Y * (1 - Y)
    return Y * (dY - np.sum(dY * Y, axis=1, keepdims=True))


def squared_error(Z, D, g2, count):
    """Squared error of ``Y = g2(Z)`` against targets ``D``, divided by ``count``.

    ``count`` is the number of scored outputs of the whole batch (``Z.size``
    unless the batch is split into chunks, as truncated BPTT does).

    Returns
    -------
    loss : float
    dZ : ndarray of the shape of ``Z``
        Gradient of the loss with respect to ``Z``.
    """
    Y = activate(Z, g2)
    R = Y - D
    loss = float(np.dot(R.ravel(), R.ravel())) / count
    return loss, activation_backward(Y, (2.0 / count) * R, g2)


def softmax_cross_entropy(Z, k, count):
    """Cross-entropy of ``softmax(Z)`` against integer classes ``k``, summed
    over the rows and divided by ``count`` (the scored rows of the batch).

    Returns
    -------
    loss : float
    dZ : ndarray of the shape of ``Z``
        ``(softmax(Z) - onehot(k)) / count``.
    """
    N = count
    rows = np.arange(Z.shape[0])
    shifted = Z - Z.max(axis=1, keepdims=True)
    log_norm = np.log(np.sum(np.exp(shifted), axis=1))
    loss = float(np.sum(log_norm - shifted[rows, k])) / N
    dZ = np.exp(shifted - log_norm[:, None])
    dZ[rows, k] -= 1
    dZ /= N
    return loss, dZ
