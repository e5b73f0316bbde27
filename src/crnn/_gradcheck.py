"""Finite-difference check of the BPTT gradient."""
import operator

import numpy as np

from crnn._validation import check_random_state


class GradientCheck:
    """Result of :func:`check_gradient`.

    Attributes
    ----------
    errors : dict of str to float
        Relative error of each parameter block in the max norm:
        ``max|g_bptt - g_fd| / max(max|g_fd|, max|g_bptt|, 1e-3 * G)``, with
        ``G`` the largest gradient entry over all blocks. The floor keeps a
        block whose gradient is exactly zero (``W_hh`` for one step from a
        zero state) from dividing rounding noise by zero.
    analytic, numeric : dict of str to ndarray
        The BPTT and finite-difference gradients, block by block.
    max_error : float
        The largest of ``errors``.
    """

    def __init__(self, errors, analytic, numeric):
        self.errors = errors
        self.analytic = analytic
        self.numeric = numeric
        self.max_error = max(errors.values())

    def __repr__(self):
        width = max(len(name) for name in self.errors)
        rows = [f"  {name:<{width}}  {err:.2e}" for name, err in self.errors.items()]
        return ("GradientCheck(max relative error {:.2e})\n".format(self.max_error)
                + "\n".join(rows))


def _block_error(a, n, floor):
    scale = max(np.max(np.abs(a)), np.max(np.abs(n)), floor)
    if scale == 0:
        return 0.0
    return float(np.max(np.abs(a - n)) / scale)


def packed_problem(estimator, X, y, lengths, sample_weight, unfitted_params):
    """``(X, y)`` checked as ``fit`` checks them and packed, in float64: the
    estimator's network, its weights (``unfitted_params(network, seqs,
    entries)`` when it is not fitted), the checked sequences, their batch and
    its packed targets and weights."""
    estimator._validate_params()
    fitted = estimator._is_fitted()
    if fitted:
        estimator._check_architecture()
    seqs, target, entries = estimator._check_data(X, y, lengths, np.float64, fitted)
    weights = estimator._row_weights(sample_weight, seqs, target, entries, np.float64)
    network = estimator._make_network(seqs.item_shape[0], entries["n_outputs_"],
                                      np.float64)
    if fitted:
        params = estimator.params_.astype(np.float64)
    else:
        params = unfitted_params(network, seqs, entries)
    batch = seqs.pack()
    target = batch.targets(target, estimator.return_sequences)
    if weights is not None:
        weights = batch.targets(weights, estimator.return_sequences)
    return network, params, seqs, batch, target, weights


def check_gradient(estimator, X, y, lengths=None, *, sample_weight=None, epsilon=1e-4,
                   random_state=0):
    """Compare the analytic BPTT gradient with central finite differences.

    Every parameter ``w`` is perturbed in turn and the derivative of the
    training objective (data loss plus L2 penalty) is estimated with the
    fourth-order central stencil::

        dE/dw ~ (-E(w + 2e) + 8 E(w + e) - 8 E(w - e) + E(w - 2e)) / (12 e)

    whose truncation error is O(e^4); all of it in float64, whatever the
    estimator's ``dtype``.

    Parameters
    ----------
    estimator : RNNRegressor or RNNClassifier
        Fitted: the check runs at its weights. Not fitted: at weights drawn as
        ``fit`` would draw them, with random non-zero biases so that every
        term of the gradient is exercised; the estimator is left unfitted.
    X, y, lengths
        Data, as for ``fit``. Keep it small: the check costs four loss
        evaluations per parameter. Parameters that training never changes
        (the embedding row of ``padding_idx``) get no gradient and are not
        perturbed: their numeric gradient is 0 too. Dropout is not applied; with
        ``bptt_steps`` the check is of the truncated gradient against the
        loss it truncates (each chunk's gradient stops at its first step).
    sample_weight : array-like, optional
        As for ``fit``: the check is of the weighted loss (with a
        classifier's ``class_weight`` too).
    epsilon : float, default=1e-4
        Finite-difference step.
    random_state : int, Generator or None, default=0
        Seeds the weights of an unfitted estimator.

    Returns
    -------
    GradientCheck
        Per-block relative errors (max norm) and both gradients.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNRegressor, check_gradient
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(4, 6, 3)), rng.normal(size=4)
    >>> check_gradient(RNNRegressor(hidden_size=5), X, y).max_error < 1e-6
    True
    """
    network, params, _, batch, target, weights = packed_problem(
        estimator, X, y, lengths, sample_weight,
        lambda network, seqs, entries: network.init_params(
            check_random_state(random_state), random_biases=True))
    alpha = float(estimator.alpha)
    bptt = None if estimator.bptt_steps is None else operator.index(estimator.bptt_steps)

    def loss_grad(w):
        if bptt is not None:
            return network.loss_grad_truncated(w, batch, target, bptt, alpha,
                                               weights=weights)
        return network.loss_grad(w, batch, target, alpha, weights=weights)

    def loss(w):
        if bptt is not None:
            return network.loss_truncated(w, batch, target, bptt, alpha, params,
                                          weights=weights)
        return network.loss(w, batch, target, alpha, weights=weights)

    _, grad = loss_grad(params)
    numeric = np.zeros_like(grad)
    trained = np.ones(params.size, dtype=bool)
    trained[network.frozen()] = False
    w = params.copy()
    for i in np.flatnonzero(trained):
        values = []
        for step in (2, 1, -1, -2):
            w[i] = params[i] + step * epsilon
            values.append(loss(w))
        w[i] = params[i]
        numeric[i] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * epsilon)

    layout = network.layout
    analytic_blocks = layout.views(grad)
    numeric_blocks = layout.views(numeric)
    floor = 1e-3 * max(np.max(np.abs(grad)), np.max(np.abs(numeric)))
    errors = {name: _block_error(analytic_blocks[name], numeric_blocks[name], floor)
              for name in layout.names}
    return GradientCheck(errors, analytic_blocks, numeric_blocks)
