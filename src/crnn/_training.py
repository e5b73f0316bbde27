"""The training loop behind ``fit`` and ``partial_fit``.

One epoch is a pass over the training sequences in mini-batches; each
mini-batch is one compiled forward pass, loss and BPTT, then gradient
clipping and one optimizer step on the flat parameter buffer. Around that
loop, each concern is one named step:

* :func:`validation_split` -- the sequences held out for early stopping;
* :func:`minibatches` -- the batches of one epoch;
* :class:`DivergenceGuard` -- a NaN or infinite loss, gradient or weight
  stops training;
* :class:`NoImprovement` -- counts epochs whose score did not improve by
  ``tol``; ``n_iter_no_change`` of them in a row end the fit;
* :class:`EarlyStopping` -- the validation loss of each epoch, and the
  weights of the best one, restored at the end;
* :class:`LearningRate` -- the rate of every epoch (``lr_schedule``);
* :class:`Reporter` -- the ``verbose`` lines;
* the ``callbacks``, called with the model and the epoch's record of
  ``history_`` after every epoch.

A fit is a transaction. :func:`train` trains a working copy of the fitted
state (weights, optimizer state, random generator, counters and curves
together) and commits it to the estimator only when the call ends:

* normally: the state after the last epoch (with early stopping, with the
  weights of the best validation epoch);
* by ``KeyboardInterrupt``: the same, at the last completed epoch;
* by :class:`~crnn.TrainingDivergedError`: the state at the end of the best
  completed epoch of the call (lowest training loss, or validation loss with
  early stopping), once a pass over the training sequences has confirmed
  that its loss and gradient are finite;

and in every other case, or when no epoch of the call completed (or none
predicts finite values), nothing: the estimator stays exactly as it was
before the call -- unfitted, if it was. With ``callbacks``, the estimator
holds each completed epoch's state while they run (so that they can
predict, score or save it), and a fit that then fails -- a callback that
raises included -- leaves it there: at its last completed epoch.
"""
import contextlib
import copy
import math
import operator
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from crnn._optim import clip_by_global_norm, sum_of_squares
from crnn._threads import effective_n_jobs, map_blocks
from crnn.exceptions import ConvergenceWarning, TrainingDivergedError

__all__ = ["train", "TrainingData", "validation_split", "minibatches", "DivergenceGuard",
           "NoImprovement", "EarlyStopping", "LearningRate", "Reporter", "HISTORY_KEYS"]

#: The entries of each epoch's record in ``history_``.
HISTORY_KEYS = ("epoch", "loss", "validation_loss", "learning_rate", "grad_norm",
                "grad_norm_max", "clipped", "time")


def validation_split(n, fraction, rng, last=False):
    """Sorted indices of the training and the validation sequences.

    ``round(fraction * n)`` sequences (at least one) are held out: drawn by
    one permutation from ``rng``, or, with ``last``, the last ones (``rng``
    is then not used).
    """
    n_val = max(1, int(round(fraction * n)))
    if n - n_val < 1:
        raise ValueError(
            f"early_stopping needs at least 2 samples to hold out a "
            f"validation set; got {n}"
        )
    if last:
        return np.arange(n - n_val), np.arange(n - n_val, n)
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def minibatches(order, batch_size):
    """Consecutive slices of ``batch_size`` indices of ``order`` (the last
    one may be shorter)."""
    for start in range(0, order.size, batch_size):
        yield order[start:start + batch_size]


#: A mini-batch is split into blocks of this many sequences (at least), at
#: most TRAINING_MAX_BLOCKS of them, that run forward and BPTT at the same
#: time on crnn's threads. The split depends on the batch size only, never
#: on the thread count, so the weights are the same for every ``n_jobs``.
TRAINING_BLOCK_SEQUENCES = 16
TRAINING_MAX_BLOCKS = 8


def training_blocks(idx):
    """The blocks of the mini-batch ``idx``: consecutive runs of its
    sequences, as even as possible."""
    n_blocks = min(TRAINING_MAX_BLOCKS, max(1, idx.size // TRAINING_BLOCK_SEQUENCES))
    return np.array_split(idx, n_blocks)


class BlockGradients:
    """Loss and gradient of a mini-batch as the sum of its blocks'.

    Each block (:func:`training_blocks`) runs on its own network (and so its
    own workspace) into its own gradient buffer, on up to ``n_threads``
    threads; the dropout masks are drawn first, block by block, in order;
    the buffers are added in block order. So the result is the same for any
    number of threads. The data loss of every block is divided by the whole
    batch's count, so that the blocks add up to the batch's mean loss.
    """

    def __init__(self, network, make_network, params, n_threads, executor):
        self.network, self.make_network = network, make_network
        self.n_threads, self.executor = n_threads, executor
        self.networks, self.grads = [network], [np.empty_like(params)]

    def __call__(self, params, seqs, idx, target, return_sequences, alpha, grad, rng,
                 weights=None):
        network = self.network
        blocks = training_blocks(idx)
        # what every block needs from the others, first, in block order: the
        # batch's count of scored terms (their total weight, with weights)
        # and the dropout masks (packed rows N)
        rows = [int(seqs.lengths[block].sum()) for block in blocks]
        count = sum(network._count(N, block.size, _block_weights(weights, seqs, block))
                    for N, block in zip(rows, blocks))
        masks = [network._masks(rng, N) for N in rows]
        loss = self.data_loss(params, seqs, blocks, target, return_sequences, grad, count,
                              lambda k, batch: masks[k], weights)
        network._penalty_grad(params, grad, alpha)
        return loss + network.penalty(params, alpha)

    def data_loss(self, params, seqs, blocks, target, return_sequences, grad, count,
                  masks, weights=None):
        """The data loss at ``params`` of the sequences ``blocks`` (a list of
        index arrays) divided by ``count``, and its gradient into ``grad``:
        the blocks' sums in block order. ``masks(k, batch)`` gives block
        ``k``'s dropout masks (or None) once it is packed as ``batch``;
        ``weights`` (per sequence, or per step) weight the rows' terms."""
        while len(self.networks) < len(blocks):
            self.networks.append(self.make_network())
            self.grads.append(np.empty_like(params))

        def run(k):
            # packing, the targets and the pass, in the block's own thread
            batch = seqs.pack(blocks[k])
            return self.networks[k].loss_grad(
                params, batch, batch.targets(target, return_sequences), 0.0,
                self.grads[k], count=count, masks=masks(k, batch),
                weights=None if weights is None else batch.targets(weights,
                                                                   return_sequences))[0]

        losses = map_blocks(run, range(len(blocks)), self.n_threads, self.executor)
        grad[...] = self.grads[0]
        for g in self.grads[1:len(blocks)]:
            grad += g
        return float(sum(losses))


def _block_weights(weights, seqs, block):
    """The weights of the rows of the sequences ``block``: per sequence
    (an array), or every step of them (a Sequences); None stays None."""
    if weights is None:
        return None
    if isinstance(weights, np.ndarray):
        return weights[block]
    return np.concatenate([weights.data[weights.starts[i]:weights.starts[i] + L]
                           for i, L in zip(block, seqs.lengths[block])])


class TrainingData:
    """The training sequences and targets of one process, as a fit asks of
    them: how many there are, the loss and gradient of a mini-batch, the
    weight of a mini-batch, and the validation loss of held-out sequences.
    (``crnn.mpi`` answers the same questions for sequences spread over the
    ranks of a job.) ``weights``: the loss weights, one per sequence (an
    array) or per step (a Sequences), or None."""

    def __init__(self, seqs, target, return_sequences, weights=None):
        self.seqs, self.target = seqs, target
        self.return_sequences = return_sequences
        self.weights = weights

    @property
    def n(self):
        return self.seqs.n

    def batch_weight(self, idx):
        """What the mini-batch ``idx``'s mean loss counts for in the epoch's
        mean: its number of sequences, or the total weight of its rows."""
        if self.weights is None:
            return idx.size
        return float(np.sum(_block_weights(self.weights, self.seqs, idx)))

    def loss_and_gradient(self, blocks, params, idx, bptt_steps, alpha, grad, rng):
        """Mean loss at ``params`` of the mini-batch ``idx`` and its gradient
        (into ``grad``): by full BPTT over its blocks (``blocks``, a
        :class:`BlockGradients`) or, with ``bptt_steps``, by truncated BPTT
        over the whole batch."""
        seqs, target, weights = self.seqs, self.target, self.weights
        if bptt_steps is None:
            return blocks(params, seqs, idx, target, self.return_sequences, alpha, grad,
                          rng, weights)
        batch = seqs.pack(idx)
        return blocks.network.loss_grad_truncated(
            params, batch, batch.targets(target, self.return_sequences), bptt_steps,
            alpha, grad, rng, weights=None if weights is None else
            batch.targets(weights, self.return_sequences))[0]

    def validation_loss(self, network, idx, alpha):
        """A function of the parameters: the objective on the sequences
        ``idx``, weighted by their loss weights as training weights them."""
        batch = self.seqs.pack(idx)
        target = batch.targets(self.target, self.return_sequences)
        weights = None
        if self.weights is not None:
            weights = batch.targets(self.weights, self.return_sequences)
            if not np.sum(weights) > 0:
                raise ValueError(
                    "the sample weights of the validation sequences sum to zero, so "
                    "their loss is undefined: give them weight, or choose another "
                    "validation set (validation_data, validation_fraction)")
        return lambda params: network.loss(params, batch, target, alpha, weights=weights)


class DivergenceGuard:
    """Stops a fit whose loss, gradient or weights stop being finite, with a
    :class:`~crnn.TrainingDivergedError` that says what to change."""

    def __init__(self, params, learning_rate, clip_norm):
        self.params = params
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm

    def check(self, what, value, epoch):
        """Raise if ``value`` (the loss or the gradient norm) is not finite."""
        if not np.isfinite(value):
            self.fail(what, value, epoch)

    def check_weights(self, epoch):
        if not np.isfinite(self.params).all():
            self.fail("weights", "non-finite", epoch)

    def fail(self, what, value, epoch):
        raise TrainingDivergedError(
            f"training diverged in epoch {epoch}: the {what} became {value}. Lower "
            f"learning_rate (now {self.learning_rate}), set clip_norm (now "
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

    def __init__(self, loss, params):
        self.loss = loss
        self.best_loss = np.inf
        self.best_epoch = 0
        self.best_params = params.copy()

    def update(self, params, epoch):
        """The validation loss at ``params``, remembered if it is the best."""
        loss = self.loss(params)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch
            self.best_params[...] = params
        return loss

    def restore(self, params):
        params[...] = self.best_params


class LearningRate:
    """The learning rate of epoch ``e`` (counted over every fit of the
    model, from 1), from ``learning_rate`` ``r0`` and ``lr_schedule``::

        "constant"      r0
        "step"          r0 * lr_decay ** ((e - 1) // lr_step)     (default 0.5, 10)
        "exponential"   r0 * lr_decay ** (e - 1)                  (default 0.95)
        "cosine"        r0 * (d + (1 - d) * (1 + cos(pi * min(e - 1, P) / P)) / 2),
                        d = lr_decay (default 0), P = lr_step (default max_iter)
        "adaptive"      the current rate, times lr_decay (default 0.2, scikit-
                        learn MLP's division by 5) whenever ``n_iter_no_change``
                        epochs in a row did not improve the score by ``tol``;
                        training stops once it would fall below 1e-6

    times ``e / (warmup_epochs + 1)`` during the first ``warmup_epochs``.
    Every schedule but ``"adaptive"`` is a function of ``e`` alone, so a fit
    resumed from a saved epoch takes the same rates as one never stopped.
    """

    DECAY = {"adaptive": 0.2, "step": 0.5, "exponential": 0.95, "cosine": 0.0}
    #: The smallest rate the adaptive schedule goes on with (scikit-learn's).
    SMALLEST = 1e-6

    def __init__(self, model, current):
        self.kind = model.lr_schedule
        self.base = float(model.learning_rate)
        self.decay = (self.DECAY.get(self.kind, 1.0) if model.lr_decay is None
                      else float(model.lr_decay))
        period = model.lr_step
        if period is None:
            period = 10 if self.kind == "step" else model.max_iter
        self.period = operator.index(period)
        self.warmup = operator.index(model.warmup_epochs)
        self.current = float(current)       # the adaptive schedule's rate

    def at(self, epoch):
        """The rate of ``epoch``."""
        kind, r0, d = self.kind, self.base, self.decay
        if kind == "adaptive":
            rate = self.current
        elif kind == "step":
            rate = r0 * d ** ((epoch - 1) // self.period)
        elif kind == "exponential":
            rate = r0 * d ** (epoch - 1)
        elif kind == "cosine":
            phase = min(epoch - 1, self.period) / self.period
            rate = r0 * (d + (1 - d) * (1 + math.cos(math.pi * phase)) / 2)
        else:
            rate = r0
        if epoch <= self.warmup:
            rate *= epoch / (self.warmup + 1)
        return rate

    def plateau(self):
        """``n_iter_no_change`` epochs without improvement: True if training
        goes on (the adaptive rate reduced), False if it stops."""
        if self.kind != "adaptive" or self.current * self.decay < self.SMALLEST:
            return False
        self.current *= self.decay
        return True


def call_callbacks(callbacks, model, record):
    """Call every callback with ``(model, record)`` (an object's
    ``on_epoch_end``, or the callable itself); True if one asks to stop."""
    stop = False
    for callback in callbacks:
        hook = getattr(callback, "on_epoch_end", callback)
        stop = bool(hook(model, dict(record))) or stop
    return stop


class Reporter:
    """What ``verbose`` prints: every ``verbose``-th epoch, and why a fit
    ends; and, inside an epoch that runs for more than ``PROGRESS_S``
    seconds, its progress with an estimate of the time left: a ``tqdm`` bar
    when tqdm is installed, else a line every ``PROGRESS_S`` seconds (from
    the mean time of the epoch's batches so far)."""

    PROGRESS_S = 2.0

    def __init__(self, verbose):
        self.every = int(verbose)
        self.shown = 0.0
        self.bar = None
        self.tqdm = _tqdm() if self.every else None

    def batch(self, n_iter, done, n_batches, elapsed):
        """After ``done`` of the epoch's ``n_batches`` batches, ``elapsed``
        seconds into it."""
        if not self.every:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if done == n_batches:
                self.close()
            return
        if done == 1:
            self.shown = 0.0
        if done == n_batches or elapsed - self.shown < self.PROGRESS_S:
            return
        if self.tqdm is not None:
            self.bar = self.tqdm(total=n_batches, initial=done, desc=f"Epoch {n_iter}",
                                 unit="batch", leave=False, file=sys.stdout)
            return
        self.shown = elapsed
        left = elapsed / done * (n_batches - done)
        print(f"Epoch {n_iter}: {done}/{n_batches} batches, {elapsed:.1f} s, "
              f"about {left:.1f} s left", file=sys.stdout, flush=True)

    def close(self):
        """Close the epoch's progress bar, if one is open."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

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


def _tqdm():
    """tqdm's progress bar class when tqdm is installed, else None."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def copy_state(state):
    """An independent copy of a fitted state (as ``_get_state`` gives it):
    arrays, curves, the optimizer's arrays and the random generator copied,
    everything else (numbers, the architecture's values) shared."""
    out = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            value = value.copy()
        elif isinstance(value, list):
            value = list(value)
        elif isinstance(value, dict):
            value = {k: v.copy() if isinstance(v, np.ndarray) else v
                     for k, v in value.items()}
        elif isinstance(value, np.random.Generator):
            value = copy.deepcopy(value)
        out[key] = value
    return out


def train(model, network, state, data, n_epochs, early_stopping, warn, validation=None):
    """Train a working copy of a fitted state and commit it to ``model``.

    Parameters
    ----------
    model : RNNRegressor or RNNClassifier
        Its hyper-parameters say how to train; it receives the trained state
        through ``_set_state`` when the call ends (see the module
        documentation for what is committed when training fails).
    network : RecurrentNetwork
        The network of the state's weights.
    state : dict
        The state to start from, as ``model._get_state(copy_arrays=True)``
        or ``model._new_state`` give it; trained in place.
    data : TrainingData
        The training sequences and the model's targets (one per sequence or
        per step).
    n_epochs : int
    early_stopping : bool
        Hold out ``validation_fraction`` of the sequences and keep the
        weights of the best validation epoch.
    warn : bool
        Warn with :class:`~crnn.ConvergenceWarning` if the loss was still
        improving after ``n_epochs``.
    validation : TrainingData, optional
        Sequences to validate on every epoch (``fit``'s ``validation_data``);
        with ``early_stopping``, the validation set instead of a share of
        ``data``.

    Overflow is expected when training diverges and is reported as
    :class:`~crnn.TrainingDivergedError`, so NumPy's floating-point warnings
    are silenced here.
    """
    n_threads = effective_n_jobs(model.n_jobs)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), (
            ThreadPoolExecutor(n_threads, thread_name_prefix="crnn") if n_threads > 1
            else contextlib.nullcontext()) as executor:
        run = _Run(model, network, state, data, early_stopping, validation,
                   BlockGradients(network, lambda: copy.copy(network), state["params_"],
                                  n_threads, executor))
        try:
            converged = run.epochs(n_epochs)
        except KeyboardInterrupt:
            if run.last is not None:
                model._set_state(run.finished(run.last))
            raise
        except TrainingDivergedError:
            kept = run.best_finite()
            if kept is not None:
                model._set_state(kept)
            raise
        # (any other exception: with callbacks, the model holds the last
        # completed epoch, installed before they ran; without, its old state)
        model._set_state(run.finished(run.snapshot()))
    if warn and not converged:
        warnings.warn(
            f"{type(model).__name__} stopped at max_iter={model.max_iter} epochs "
            f"while the loss was still improving; raise max_iter to train longer",
            ConvergenceWarning,
        )


class _Run:
    """One call's training: the working state, its epochs and its commits."""

    def __init__(self, model, network, state, data, early_stopping, validation, blocks):
        self.model, self.network, self.state = model, network, state
        self.blocks, self.data = blocks, data
        self.params = state["params_"]
        self.optimizer = model._training_optimizer(state)
        self.rng = state["rng"]
        self.alpha = float(model.alpha)
        # the validation loss of every epoch (stopper); early stopping
        # stops on it and restores its best epoch
        self.stopper, self.early_stopping = None, bool(early_stopping)
        train_idx = np.arange(data.n)
        if validation is not None:
            self.stopper = EarlyStopping(validation.validation_loss(
                network, np.arange(validation.n), self.alpha), self.params)
        elif early_stopping:
            train_idx, val_idx = validation_split(
                data.n, model.validation_fraction, self.rng,
                last=getattr(model, "validation_split", "random") == "last")
            self.stopper = EarlyStopping(
                data.validation_loss(network, val_idx, self.alpha), self.params)
        self.train_idx = train_idx
        self.schedule = LearningRate(model, state["learning_rate_"])
        self.callbacks = list(model.callbacks or ())
        # Committed states: the last completed epoch and the best one.
        self.last = self.best = None
        self.best_score = np.inf

    def snapshot(self):
        """An independent copy of the working state."""
        return copy_state(dict(self.state, optimizer=self.optimizer.state()))

    def finished(self, state):
        """``state`` as a fit leaves it: with early stopping, the weights of
        the best validation epoch."""
        if self.early_stopping and self.stopper is not None and self.stopper.best_epoch:
            state["params_"] = self.stopper.best_params.copy()
        return state

    def best_finite(self):
        """The best committed epoch, if its loss and gradient are finite on
        every mini-batch of the training sequences (in order, with the
        training batch size), the gradient's squared norm with 2^20 to spare
        before it overflows (another draw of the batches moves it); else None.
        So the state kept predicts finite values and can train on."""
        if self.best is None:
            return None
        params = self.best["params_"]
        limit = np.finfo(params.dtype).max / 2.0 ** 20
        grad = np.empty_like(params)
        for idx in minibatches(self.train_idx, min(operator.index(self.model.batch_size),
                                                   self.train_idx.size)):
            loss = self.data.loss_and_gradient(self.blocks, params, idx, None, self.alpha,
                                               grad, None)
            if not (np.isfinite(loss) and sum_of_squares(grad) < limit):
                return None
        return self.best

    def epochs(self, n_epochs):
        """Train for up to ``n_epochs``; True if the fit converged."""
        reporter = Reporter(self.model.verbose)
        try:
            return self._epochs(n_epochs, reporter)
        finally:
            reporter.close()

    def _epochs(self, n_epochs, reporter):
        model, state, params, rng = self.model, self.state, self.params, self.rng
        dropout_rng = rng if model.dropout > 0 else None
        n_train = self.train_idx.size
        batch_size = min(operator.index(model.batch_size), n_train)
        bptt_steps = None if model.bptt_steps is None else operator.index(model.bptt_steps)
        grad = np.empty_like(params)
        guard = DivergenceGuard(params, model.learning_rate, model.clip_norm)
        no_improvement = NoImprovement(state["best_loss_"], model.tol,
                                       model.n_iter_no_change)
        clip_norm = model.clip_norm
        for _ in range(n_epochs):
            started = time.perf_counter()
            epoch = state["n_iter_"] + 1
            rate = self.optimizer.learning_rate = self.schedule.at(epoch)
            order = rng.permutation(self.train_idx) if model.shuffle else self.train_idx
            total, weight, norms = 0.0, 0.0, []
            n_batches = -(-n_train // batch_size)
            for idx in minibatches(order, batch_size):
                loss = self.data.loss_and_gradient(self.blocks, params, idx, bptt_steps,
                                                   self.alpha, grad, dropout_rng)
                norm = clip_by_global_norm(grad, clip_norm)
                guard.check("loss", loss, epoch)
                guard.check("gradient norm", norm, epoch)
                self.optimizer.step(params, grad)
                batch_weight = self.data.batch_weight(idx)
                total += loss * batch_weight
                weight += batch_weight
                norms.append(norm)
                reporter.batch(epoch, len(norms), n_batches, time.perf_counter() - started)
            guard.check_weights(epoch)
            epoch_loss = total / weight
            state["n_iter_"] = epoch
            state["t_"] += n_train
            state["loss_"] = epoch_loss
            state["loss_curve_"].append(epoch_loss)
            val_loss = None
            if self.stopper is not None:
                val_loss = self.stopper.update(params, epoch)
                state["validation_loss_curve_"].append(val_loss)
            elapsed = time.perf_counter() - started
            reporter.epoch(epoch, epoch_loss, val_loss, elapsed)
            score = val_loss if val_loss is not None and self.early_stopping else epoch_loss
            converged = no_improvement.update(score)
            if converged and self.schedule.plateau():
                no_improvement.count, converged = 0, False
            state["best_loss_"] = no_improvement.best
            state["learning_rate_"] = (self.schedule.current
                                       if self.schedule.kind == "adaptive" else rate)
            record = {"epoch": epoch, "loss": epoch_loss, "validation_loss": val_loss,
                      "learning_rate": rate, "grad_norm": float(np.mean(norms)),
                      "grad_norm_max": float(np.max(norms)),
                      "clipped": (0.0 if clip_norm is None else
                                  float(np.mean(np.array(norms) > clip_norm))),
                      "time": elapsed}
            state["history_"].append(record)
            self.commit(score)
            if self.callbacks:
                # the model holds this epoch while its callbacks run
                model._set_state(copy_state(self.last))
                if call_callbacks(self.callbacks, model, record):
                    converged = True
                    break
            if converged:
                reporter.converged(model.tol, model.n_iter_no_change)
                break
        else:
            converged = False
        if self.early_stopping and self.stopper is not None:
            reporter.restored(self.stopper.best_epoch, self.stopper.best_loss)
        return converged

    def commit(self, score):
        """The working state at the end of an epoch becomes the last (and,
        if its score is the lowest yet, the best) committed state."""
        self.last = self.snapshot()
        if score < self.best_score:
            self.best, self.best_score = self.last, score
