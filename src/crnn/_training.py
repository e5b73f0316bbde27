"""The training loop behind ``fit`` and ``partial_fit``.

One epoch is a pass over the training sequences in mini-batches; each
mini-batch is one compiled forward pass, loss and BPTT, then gradient
clipping and one optimizer step on the flat parameter buffer. Around that
loop, each concern is one named step:

* :func:`validation_split` -- the sequences held out for early stopping;
* :func:`minibatches` -- the batches of one epoch;
* :class:`DivergenceGuard` -- a NaN or infinite loss, gradient or weight
  stops training, back at the weights of the last finite epoch;
* :class:`NoImprovement` -- counts epochs whose score did not improve by
  ``tol``; ``n_iter_no_change`` of them in a row end the fit;
* :class:`EarlyStopping` -- the validation loss of each epoch, and the
  weights of the best one, restored at the end;
* :class:`Reporter` -- the ``verbose`` lines.

:func:`train` composes them. It reads the hyper-parameters of the estimator
it trains and updates its fitted attributes (``params_`` in place,
``n_iter_``, ``t_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
``validation_loss_curve_``, the optimizer's state and the random generator).
"""
import sys
import time
import warnings

import numpy as np

from crnn._optim import clip_by_global_norm
from crnn.exceptions import ConvergenceWarning, TrainingDivergedError

__all__ = ["train", "validation_split", "minibatches", "DivergenceGuard",
           "NoImprovement", "EarlyStopping", "Reporter"]


def validation_split(n, fraction, rng):
    """Sorted indices of the training and the validation sequences.

    ``round(fraction * n)`` sequences (at least one) are held out, drawn by
    one permutation from ``rng``.
    """
    n_val = max(1, int(round(fraction * n)))
    if n - n_val < 1:
        raise ValueError(
            f"early_stopping needs at least 2 samples to hold out a "
            f"validation set; got {n}"
        )
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def minibatches(order, batch_size):
    """Consecutive slices of ``batch_size`` indices of ``order`` (the last
    one may be shorter)."""
    for start in range(0, order.size, batch_size):
        yield order[start:start + batch_size]


def loss_and_gradient(network, params, batch, target, bptt_steps, alpha, grad, rng):
    """Mean loss of a packed batch and its gradient (into ``grad``), by full
    BPTT or, with ``bptt_steps``, truncated BPTT."""
    if bptt_steps is not None:
        return network.loss_grad_truncated(params, batch, target, bptt_steps, alpha,
                                           grad, rng)
    return network.loss_grad(params, batch, target, alpha, grad, rng)


class DivergenceGuard:
    """Stops a fit whose loss, gradient or weights stop being finite.

    It keeps a copy of the weights at the end of the last epoch whose every
    batch was finite (:meth:`commit`); on divergence the weights go back to
    that copy and :class:`~crnn.TrainingDivergedError` is raised.
    """

    def __init__(self, params, learning_rate, clip_norm):
        self.params = params
        self.last_good = params.copy()
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm

    def check(self, what, value, epoch):
        """Raise if ``value`` (the loss or the gradient norm) is not finite."""
        if not np.isfinite(value):
            self.fail(what, value, epoch)

    def check_weights(self, epoch):
        if not np.isfinite(self.params).all():
            self.fail("weights", "non-finite", epoch)

    def commit(self):
        """The current weights are the last finite ones."""
        self.last_good[...] = self.params

    def fail(self, what, value, epoch):
        self.params[...] = self.last_good
        raise TrainingDivergedError(
            f"training diverged in epoch {epoch}: the {what} became "
            f"{value}. The model keeps the weights of the last finite epoch. "
            f"Lower learning_rate (now {self.learning_rate}), set clip_norm (now "
            f"{self.clip_norm}), or scale the inputs and targets."
        )


class NoImprovement:
    """Counts consecutive epochs whose score is not ``tol`` below the best.

    ``update`` returns True once ``patience`` such epochs in a row are seen.
    """

    def __init__(self, best, tol, patience):
        self.best = best
        self.tol = tol
        self.patience = patience
        self.count = 0

    def update(self, score):
        if score > self.best - self.tol:
            self.count += 1
        else:
            self.count = 0
        self.best = min(self.best, score)
        return self.count >= self.patience


class EarlyStopping:
    """The validation loss of every epoch, and the weights of the best one."""

    def __init__(self, network, batch, target, alpha, params):
        self.network = network
        self.batch = batch
        self.target = target
        self.alpha = alpha
        self.best_loss = np.inf
        self.best_epoch = 0
        self.best_params = params.copy()

    def update(self, params, epoch):
        """The validation loss at ``params``, remembered if it is the best."""
        loss = self.network.loss(params, self.batch, self.target, self.alpha)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch
            self.best_params[...] = params
        return loss

    def restore(self, params):
        params[...] = self.best_params


class Reporter:
    """What ``verbose`` prints: every ``verbose``-th epoch, and why a fit ends."""

    def __init__(self, verbose):
        self.every = int(verbose)

    def epoch(self, n_iter, loss, val_loss, elapsed):
        if self.every and n_iter % self.every == 0:
            message = f"Epoch {n_iter}: loss = {loss:.6g}"
            if val_loss is not None:
                message += f", validation loss = {val_loss:.6g}"
            print(f"{message} ({elapsed:.2f} s)", file=sys.stdout, flush=True)

    def converged(self, tol, patience):
        if self.every:
            print(f"No improvement of more than tol={tol} for {patience} epochs; "
                  f"stopping.")

    def restored(self, epoch, loss):
        if self.every:
            print(f"Restored the weights of epoch {epoch}, the best on the "
                  f"validation set (loss {loss:.6g}).")


def train(model, network, seqs, target, n_epochs, early_stopping, warn):
    """Train ``model`` for up to ``n_epochs`` epochs on ``(seqs, target)``.

    Parameters
    ----------
    model : RNNRegressor or RNNClassifier
        Fitted (its ``params_``, optimizer and random generator are set);
        its hyper-parameters say how to train.
    network : RecurrentNetwork
        The network of ``model.params_``.
    seqs : Sequences
    target : ndarray or Sequences
        The model's targets, one per sequence or per step.
    n_epochs : int
    early_stopping : bool
        Hold out ``validation_fraction`` of the sequences and restore the
        weights of the best validation epoch at the end.
    warn : bool
        Warn with :class:`~crnn.ConvergenceWarning` if the loss was still
        improving after ``n_epochs``.

    Overflow is expected when training diverges and is reported as
    :class:`~crnn.TrainingDivergedError`, so NumPy's floating-point warnings
    are silenced here.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _train(model, network, seqs, target, n_epochs, early_stopping, warn)


def _train(model, network, seqs, target, n_epochs, early_stopping, warn):
    params, optimizer, rng = model.params_, model._optimizer, model._rng
    alpha = float(model.alpha)
    dropout_rng = rng if model.dropout > 0 else None
    if early_stopping:
        train_idx, val_idx = validation_split(seqs.n, model.validation_fraction, rng)
        val_batch = seqs.pack(val_idx)
        stopper = EarlyStopping(network, val_batch, val_batch.targets(
            target, model.return_sequences), alpha, params)
    else:
        train_idx = np.arange(seqs.n)
    n_train = train_idx.size
    batch_size = min(int(model.batch_size), n_train)
    grad = np.empty_like(params)
    guard = DivergenceGuard(params, model.learning_rate, model.clip_norm)
    no_improvement = NoImprovement(model.best_loss_, model.tol, model.n_iter_no_change)
    reporter = Reporter(model.verbose)
    converged = False

    for _ in range(n_epochs):
        started = time.perf_counter()
        epoch = model.n_iter_ + 1
        order = rng.permutation(train_idx) if model.shuffle else train_idx
        total = 0.0
        for idx in minibatches(order, batch_size):
            batch = seqs.pack(idx)
            loss, _ = loss_and_gradient(network, params, batch,
                                        batch.targets(target, model.return_sequences),
                                        model.bptt_steps, alpha, grad, dropout_rng)
            norm = clip_by_global_norm(grad, model.clip_norm)
            guard.check("loss", loss, epoch)
            guard.check("gradient norm", norm, epoch)
            optimizer.step(params, grad)
            total += loss * batch.B
        guard.check_weights(epoch)
        guard.commit()
        epoch_loss = total / n_train
        model.n_iter_ = epoch
        model.t_ += n_train
        model.loss_ = epoch_loss
        model.loss_curve_.append(epoch_loss)
        val_loss = None
        if early_stopping:
            val_loss = stopper.update(params, epoch)
            model.validation_loss_curve_.append(val_loss)
        reporter.epoch(epoch, epoch_loss, val_loss, time.perf_counter() - started)
        converged = no_improvement.update(epoch_loss if val_loss is None else val_loss)
        model.best_loss_ = no_improvement.best
        if converged:
            reporter.converged(model.tol, model.n_iter_no_change)
            break

    if early_stopping:
        stopper.restore(params)
        reporter.restored(stopper.best_epoch, stopper.best_loss)
    if warn and not converged:
        warnings.warn(
            f"{type(model).__name__} stopped at max_iter={model.max_iter} epochs "
            f"while the loss was still improving; raise max_iter to train longer",
            ConvergenceWarning,
        )
