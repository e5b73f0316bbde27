"""The gradient flow of a recurrent network: dE/dS_t at every step, by BPTT."""
import numpy as np

from crnn._gradcheck import packed_problem


class GradientFlow:
    """Result of :func:`gradient_flow`: the gradient of the loss with respect
    to every hidden state.

    Attributes
    ----------
    gradients : ndarray (n_layers, n_directions, n_sequences, T, H)
        ``dE/dS_t`` of each layer, direction (0 forward, 1 reverse),
        sequence and step, float64; NaN past each sequence's end.
    norms : ndarray (n_layers, n_directions, n_sequences, T)
        Their Euclidean norms ``||dE/dS_t||``; NaN past each sequence's end.
    mean : ndarray (n_layers, n_directions, T)
        The norms averaged over the sequences running at each step.
    lengths : ndarray (n_sequences,)
        The length of each sequence.
    loss : float
        ``E``, the data loss the gradients are of.
    """

    def __init__(self, gradients, lengths, loss):
        self.gradients = gradients
        self.lengths = lengths
        self.loss = loss
        self.norms = np.linalg.norm(gradients, axis=-1)
        # every step has at least one running sequence: no empty mean
        running = ~np.isnan(self.norms)
        self.mean = np.where(running, self.norms, 0).sum(axis=2) / running.sum(axis=2)

    def __repr__(self):
        L, D, n, T, H = self.gradients.shape
        first, last = self.mean[..., 0], self.mean[..., -1]
        rows = [f"  layer {l} {('forward', 'reverse')[d]}: mean ||dE/dS_t|| "
                f"{first[l, d]:.2e} at t=0, {last[l, d]:.2e} at t={T - 1}"
                for l in range(L) for d in range(D)]
        return (f"GradientFlow({n} sequences, T={T}, H={H}, loss {self.loss:.4g})\n"
                + "\n".join(rows))


def gradient_flow(estimator, X, y, lengths=None, *, sample_weight=None):
    """The gradient of the loss with respect to every hidden state, by BPTT.

    For each layer, direction, sequence and step, the total derivative

    .. math::

        \\frac{\\partial E}{\\partial S_t}
        = \\frac{\\partial E}{\\partial S_t}\\Big|_\\text{above}
        + \\Bigl(\\frac{\\partial S_{t+1}}{\\partial S_t}\\Bigr)^{\\!\\top}
          \\frac{\\partial E}{\\partial S_{t+1}}

    that backpropagation through time carries from step to step: what the
    loss ``E`` would change by, to first order, if the state ``S_t`` (``h_t``;
    for the LSTM its hidden state, not the cell state) were perturbed and
    the network run on from there. The first term is the path through the
    layer above (or the output, at the scored steps), the second through
    the unit's later steps (earlier ones for the reverse direction). Its
    norm falling geometrically as ``t`` moves away from the scored steps is
    the vanishing gradient; growing, the exploding gradient.

    The compiled backward kernels record it as they run: one forward pass
    and one BPTT pass, in float64, without dropout and without truncation
    (``bptt_steps`` does not apply: this is the gradient it truncates).

    Parameters
    ----------
    estimator : RNNRegressor or RNNClassifier
        Fitted: at its weights. Not fitted: at the weights ``fit`` would
        start from (drawn from its ``random_state``); the estimator is left
        unfitted.
    X, y, lengths
        Data, as for ``fit``.
    sample_weight : array-like, optional
        As for ``fit``: ``E`` is then the weighted loss (with a classifier's
        ``class_weight`` too).

    Returns
    -------
    GradientFlow
        The gradients, their norms and the mean norm per step.

    Notes
    -----
    ``E`` is the data loss ``fit`` minimises on ``(X, y)`` (the L2 penalty
    does not depend on the states): the mean over the scored terms, so
    each sequence's gradients carry a factor ``1 / n_terms``.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNRegressor, gradient_flow
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(8, 50, 2)), rng.normal(size=8)
    >>> flow = gradient_flow(RNNRegressor(hidden_size=16, random_state=0), X, y)
    >>> flow.norms.shape          # (layers, directions, sequences, steps)
    (1, 1, 8, 50)
    >>> bool(flow.mean[0, 0, 0] < flow.mean[0, 0, -1])   # vanishes backwards
    True
    """
    network, params, seqs, batch, target, weights = packed_problem(
        estimator, X, y, lengths, sample_weight,
        lambda network, seqs, entries: estimator._new_state(
            seqs.item_shape[0], entries, np.float64)["params_"])
    loss, dS = network.state_gradients(params, batch, target, weights=weights)
    T = int(seqs.lengths.max())
    gradients = np.stack([batch.unpack_steps(dS[k], False, T, fill=np.nan)
                          for k in range(dS.shape[0])])
    L, D = network.L, network.D
    return GradientFlow(gradients.reshape(L, D, *gradients.shape[1:]),
                        seqs.lengths.copy(), float(loss))
