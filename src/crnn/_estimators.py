"""scikit-learn-style estimators: ``RNNRegressor`` and ``RNNClassifier``."""
import numbers
import sys
import time
import warnings

import numpy as np

from crnn import _validation as v
from crnn._compat import BaseEstimator, ClassifierMixin, RegressorMixin
from crnn._cells import CELLS
from crnn._network import RecurrentNetwork
from crnn._optim import SGD, Adam, clip_by_global_norm
from crnn.kernels.activations import CODES as ACTIVATIONS
from crnn.kernels.stack import OUTPUTS
from crnn.exceptions import ConvergenceWarning, NotFittedError, TrainingDivergedError

# State values (steps x sequences x hidden units) that predict holds at once.
_PREDICT_CHUNK_ELEMENTS = 1 << 22


class _RNNBase(BaseEstimator):
    """Everything the regressor and the classifier share.

    Subclasses provide ``_loss``, ``_output_activation``,
    ``_validate_targets`` (user targets -> model targets), ``_encode_predict``
    and ``score``.
    """

    def __init__(self, hidden_size=32, *, cell="elman", num_layers=1,
                 bidirectional=False, activation="tanh", return_sequences=False,
                 solver="adam", learning_rate=1e-3, momentum=0.9, nesterov=False,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, batch_size=32,
                 max_iter=200, tol=1e-4, n_iter_no_change=10,
                 early_stopping=False, validation_fraction=0.1, shuffle=True,
                 clip_norm=None, alpha=0.0, dropout=0.0, bptt_steps=None,
                 forget_bias=1.0, dtype="float64", random_state=None,
                 verbose=False, warm_start=False):
        self.hidden_size = hidden_size
        self.cell = cell
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.activation = activation
        self.return_sequences = return_sequences
        self.solver = solver
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.clip_norm = clip_norm
        self.alpha = alpha
        self.dropout = dropout
        self.bptt_steps = bptt_steps
        self.forget_bias = forget_bias
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # -- hyper-parameters ---------------------------------------------------

    def _validate_params(self):
        def fail(name, expected):
            raise ValueError(f"{name} must be {expected}; got {getattr(self, name)!r}")

        def integer(name, low):
            value = getattr(self, name)
            if (not isinstance(value, (numbers.Integral, np.integer))
                    or isinstance(value, bool) or value < low):
                fail(name, f"an integer >= {low}")

        def real(name, low, high=np.inf, low_open=False, high_open=True):
            value = getattr(self, name)
            ok = (isinstance(value, (numbers.Real, np.floating))
                  and not isinstance(value, bool) and np.isfinite(value)
                  and (value > low if low_open else value >= low)
                  and (value < high if high_open else value <= high))
            if not ok:
                lo = "(" if low_open else "["
                hi = ")" if high_open else "]"
                fail(name, f"a finite real number in {lo}{low}, {high}{hi}")

        def choice(name, options):
            if getattr(self, name) not in options:
                fail(name, "one of " + ", ".join(repr(o) for o in options))

        integer("hidden_size", 1)
        choice("cell", CELLS)
        integer("num_layers", 1)
        choice("activation", tuple(ACTIVATIONS))
        if self.cell != "elman" and self.activation != "tanh":
            raise ValueError(
                f"activation applies to the Elman cell; the {self.cell} cell uses "
                f"sigmoid gates and tanh as PyTorch does. Got activation="
                f"{self.activation!r} with cell={self.cell!r}"
            )
        real("dropout", 0, 1)
        real("forget_bias", -np.inf)
        if self.bptt_steps is not None:
            integer("bptt_steps", 1)
            if self.bidirectional:
                raise ValueError(
                    "bptt_steps (truncated BPTT) carries states forward in time, "
                    "which a bidirectional model cannot do; set bptt_steps=None or "
                    "bidirectional=False"
                )
        choice("solver", ("adam", "sgd"))
        real("learning_rate", 0, low_open=True)
        real("momentum", 0, 1)
        real("beta_1", 0, 1)
        real("beta_2", 0, 1)
        real("epsilon", 0, low_open=True)
        integer("batch_size", 1)
        integer("max_iter", 1)
        real("tol", 0)
        integer("n_iter_no_change", 1)
        real("validation_fraction", 0, 1, low_open=True)
        real("alpha", 0)
        if self.clip_norm is not None:
            real("clip_norm", 0, low_open=True)
        for name in ("bidirectional", "return_sequences", "nesterov", "early_stopping",
                     "shuffle", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                fail(name, "True or False")
        if not isinstance(self.verbose, (bool, numbers.Integral)) or self.verbose < 0:
            fail("verbose", "a bool or an int >= 0")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            fail("dtype", "'float32' or 'float64'")
        v.check_random_state(self.random_state)
        return dtype

    # -- model construction -------------------------------------------------

    def _make_network(self, n_features, n_outputs, dtype):
        return RecurrentNetwork(
            n_features, self.hidden_size, n_outputs,
            cell=self.cell,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            activation=self.activation,
            output_activation=self._output_activation(),
            loss=self._loss,
            return_sequences=self.return_sequences,
            dropout=self.dropout,
            forget_bias=self.forget_bias,
            dtype=dtype,
        )

    def _is_fitted(self):
        return hasattr(self, "params_")

    def _check_is_fitted(self):
        if not self._is_fitted():
            raise NotFittedError(
                f"this {type(self).__name__} instance is not fitted yet; call "
                f"fit with training data before using it"
            )

    @property
    def weights_(self):
        """Named views into :attr:`params_`, with PyTorch's suffixes: ``W_ih_l0``,
        ``W_hh_l0``, ``b_l0`` (and ``b_hn_l0`` for the GRU), ``..._reverse``
        for the reverse direction, ``W_y`` and ``b_y``. Writing to a view
        changes the model."""
        self._check_is_fitted()
        return self._network().layout.views(self.params_)

    def _network(self):
        return self._make_network(self.n_features_in_, self.n_outputs_, self.params_.dtype)

    def _batch_target(self, batch, target):
        """The targets of a packed batch, packed like the scored states."""
        if self.return_sequences:
            return batch.pack_like(target)
        return batch.per_sequence(target)

    # -- training -----------------------------------------------------------

    def fit(self, X, y, lengths=None):
        """Train on sequences ``X`` and targets ``y`` for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like (n_samples, n_timesteps[, n_features]) or list of arrays
            Input sequences: a 3-D array, a 2-D array (one feature per step),
            or a list of ``(n_timesteps_i[, n_features])`` arrays of any lengths.
        y : array-like or list
            One target per sequence (``return_sequences=False``) or one per
            time step (``return_sequences=True``: padded like ``X``, or a list
            of per-sequence arrays); see the class docstring.
        lengths : array-like of int (n_samples,), optional
            With a padded array ``X``: the length of each sequence.

        Returns
        -------
        self
        """
        dtype = self._validate_params()
        continuing = self.warm_start and self._is_fitted()
        seqs, target = self._prepare_fit(X, y, lengths, dtype, reset=not continuing)
        if continuing:
            self._check_warm_start(dtype)
        else:
            self._initialize(seqs.item_shape[0], dtype)
        self._train(seqs, target, self.max_iter, self.early_stopping, warn=True)
        return self

    def _partial_fit(self, X, y, lengths=None, classes=None):
        dtype = self._validate_params()
        first = not self._is_fitted()
        if not first:
            self._check_warm_start(dtype)
        seqs, target = self._prepare_fit(X, y, lengths, dtype, reset=first,
                                         classes=classes, partial=True)
        if first:
            self._initialize(seqs.item_shape[0], dtype)
        self._train(seqs, target, 1, False, warn=False)
        return self

    def _check_warm_start(self, dtype):
        expected = self._make_network(self.n_features_in_, self.n_outputs_, dtype)
        if dtype != self.params_.dtype or expected.layout.size != self.params_.size:
            raise ValueError(
                f"warm_start continues from the fitted weights, which have "
                f"{self.params_.size} {self.params_.dtype} parameters; the current "
                f"hyper-parameters need {expected.layout.size} {dtype} parameters. "
                f"Keep the architecture and dtype, or set warm_start=False"
            )

    def _initialize(self, n_features, dtype):
        self._rng = v.check_random_state(self.random_state)
        network = self._make_network(n_features, self.n_outputs_, dtype)
        self.n_features_in_ = n_features
        self.params_ = network.init_params(self._rng)
        self._optimizer = None
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self.validation_loss_curve_ = []
        self.loss_ = None

    def _configure_optimizer(self):
        """Apply the current solver settings, keeping the optimizer's state
        (moments, velocity) when the solver is unchanged."""
        size, dtype = self.params_.size, self.params_.dtype
        if self.solver == "adam":
            if not isinstance(self._optimizer, Adam):
                self._optimizer = Adam(size, dtype, self.learning_rate)
            opt = self._optimizer
            opt.beta_1, opt.beta_2, opt.epsilon = self.beta_1, self.beta_2, self.epsilon
        else:
            if not isinstance(self._optimizer, SGD):
                self._optimizer = SGD(size, dtype, self.learning_rate)
            opt = self._optimizer
            opt.momentum, opt.nesterov = self.momentum, self.nesterov
        opt.learning_rate = self.learning_rate

    def _train(self, seqs, target, n_epochs, early_stopping, warn):
        """Mini-batch training.

        Overflow is expected when training diverges and is reported as
        :class:`TrainingDivergedError`, so numpy's floating-point warnings
        are silenced here.
        """
        self._configure_optimizer()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self._train_epochs(seqs, target, n_epochs, early_stopping, warn)

    def _diverged(self, what, value, last_good):
        self.params_[...] = last_good
        return TrainingDivergedError(
            f"training diverged in epoch {self.n_iter_ + 1}: the {what} became "
            f"{value}. The model keeps the weights of the last finite epoch. "
            f"Lower learning_rate (now {self.learning_rate}), set clip_norm (now "
            f"{self.clip_norm}), or scale the inputs and targets."
        )

    def _loss_grad(self, network, params, batch, target, alpha, grad, rng):
        if self.bptt_steps is not None:
            return network.loss_grad_truncated(params, batch, target, self.bptt_steps,
                                               alpha, grad, rng)
        return network.loss_grad(params, batch, target, alpha, grad, rng)

    def _train_epochs(self, seqs, target, n_epochs, early_stopping, warn):
        network = self._network()
        params = self.params_
        alpha = float(self.alpha)
        n = seqs.n
        rng = self._rng
        dropout_rng = rng if self.dropout > 0 else None
        if early_stopping:
            n_val = max(1, int(round(self.validation_fraction * n)))
            if n - n_val < 1:
                raise ValueError(
                    f"early_stopping needs at least 2 samples to hold out a "
                    f"validation set; got {n}"
                )
            perm = rng.permutation(n)
            train_idx, val_idx = np.sort(perm[n_val:]), np.sort(perm[:n_val])
            val_batch = seqs.pack(val_idx)
            val_target = self._batch_target(val_batch, target)
            best_val, best_params = np.inf, params.copy()
        else:
            train_idx = np.arange(n)
        n_train = train_idx.size
        batch_size = min(int(self.batch_size), n_train)
        grad = np.empty_like(params)
        last_good = params.copy()
        no_improvement = 0
        converged = False

        for _ in range(n_epochs):
            started = time.perf_counter()
            order = rng.permutation(train_idx) if self.shuffle else train_idx
            total = 0.0
            for start in range(0, n_train, batch_size):
                batch = seqs.pack(order[start:start + batch_size])
                loss, _ = self._loss_grad(network, params, batch,
                                          self._batch_target(batch, target), alpha,
                                          grad, dropout_rng)
                norm = clip_by_global_norm(grad, self.clip_norm)
                if not np.isfinite(loss):
                    raise self._diverged("loss", loss, last_good)
                if not np.isfinite(norm):
                    raise self._diverged("gradient norm", norm, last_good)
                self._optimizer.step(params, grad)
                total += loss * batch.B
            if not np.isfinite(params).all():
                raise self._diverged("weights", "non-finite", last_good)
            self.n_iter_ += 1
            self.t_ += n_train
            epoch_loss = total / n_train
            self.loss_ = epoch_loss
            self.loss_curve_.append(epoch_loss)
            last_good[...] = params
            message = f"Epoch {self.n_iter_}: loss = {epoch_loss:.6g}"

            if early_stopping:
                val_loss = network.loss(params, val_batch, val_target, alpha)
                self.validation_loss_curve_.append(val_loss)
                message += f", validation loss = {val_loss:.6g}"
                score = val_loss
                if val_loss < best_val:
                    best_val, best_epoch = val_loss, self.n_iter_
                    best_params[...] = params
            else:
                score = epoch_loss
            if self.verbose and (self.n_iter_ % int(self.verbose) == 0):
                elapsed = time.perf_counter() - started
                print(f"{message} ({elapsed:.2f} s)", file=sys.stdout, flush=True)

            if score > self.best_loss_ - self.tol:
                no_improvement += 1
            else:
                no_improvement = 0
            self.best_loss_ = min(self.best_loss_, score)
            if no_improvement >= self.n_iter_no_change:
                converged = True
                if self.verbose:
                    print(f"No improvement of more than tol={self.tol} for "
                          f"{self.n_iter_no_change} epochs; stopping.")
                break

        if early_stopping:
            params[...] = best_params
            if self.verbose:
                print(f"Restored the weights of epoch {best_epoch}, the best on the "
                      f"validation set (loss {best_val:.6g}).")
        if warn and not converged:
            warnings.warn(
                f"{type(self).__name__} stopped at max_iter={self.max_iter} epochs "
                f"while the loss was still improving; raise max_iter to train longer",
                ConvergenceWarning,
            )

    # -- prediction ---------------------------------------------------------

    def _outputs(self, X, lengths=None, initial_state=None, return_state=False):
        """Network outputs for user inputs, in the user's order and form.

        Returns the outputs (``(n, O)`` per sequence; ``(n, T, O)`` or a list
        of ``(L_i, O)`` per step) and the final states (or None).
        """
        self._check_is_fitted()
        seqs = v.check_sequences(X, self.params_.dtype, lengths, self.n_features_in_)
        network = self._network()
        initial = self._check_state(initial_state, seqs.n, network)
        T = int(seqs.lengths.max())
        per_chunk = _PREDICT_CHUNK_ELEMENTS // (T * self.hidden_size * network.D
                                                * network.L * network.cell.n_gates)
        chunk = max(1, per_chunk)
        outputs, finals = [], None
        if return_state:
            finals = [np.empty((network.L * network.D, seqs.n, self.hidden_size),
                               dtype=self.params_.dtype)
                      for _ in range(network.cell.n_states)]
        for start in range(0, seqs.n, chunk):
            idx = np.arange(start, min(start + chunk, seqs.n))
            batch = seqs.pack(idx)
            rows = batch.sources
            # (n_states, L*D, B, H), rows in packed order
            state0 = None if initial is None else np.stack([s[:, rows] for s in initial])
            Y, final = network.output(self.params_, batch, state0)
            if self.return_sequences:
                outputs.append(batch.unpack_steps(Y, seqs.as_list, T))
            else:
                outputs.append(batch.unpack_last(Y))
            if return_state:
                for s, states in enumerate(final):
                    for k, value in enumerate(states):
                        finals[s][k, idx] = batch.unpack_last(value)
        if self.return_sequences and seqs.as_list:
            Y = [y for part in outputs for y in part]
        else:
            Y = np.concatenate(outputs, axis=0)
        state = None
        if return_state:
            state = tuple(finals) if network.cell.n_states == 2 else finals[0]
        return Y, state

    def _check_state(self, state, n, network):
        """User initial states -> list of (L*D, n, H) arrays, one per state kind."""
        if state is None:
            return None
        shape = (network.L * network.D, n, self.hidden_size)
        if network.cell.n_states == 2:
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise ValueError(
                    f"an LSTM's initial_state is a pair (h0, c0), each of shape "
                    f"(num_layers * num_directions, n_samples, hidden_size) = {shape}"
                )
            parts = list(state)
        else:
            parts = [state]
        checked = []
        for name, part in zip(("h0", "c0"), parts):
            arr = v.as_float_array(part, name, self.params_.dtype)
            if arr.shape != shape:
                raise ValueError(
                    f"initial state {name} must have shape (num_layers * "
                    f"num_directions, n_samples, hidden_size) = {shape}; got {arr.shape}"
                )
            v.check_finite(arr, name)
            checked.append(arr)
        return checked

    def check_gradient(self, X, y, lengths=None, *, epsilon=1e-4, random_state=0):
        """Compare the BPTT gradient with finite differences on ``(X, y)``.

        See :func:`crnn.check_gradient`.
        """
        from crnn._gradcheck import check_gradient

        return check_gradient(self, X, y, lengths, epsilon=epsilon,
                              random_state=random_state)

    def __sklearn_is_fitted__(self):
        return self._is_fitted()

    def save(self, path):
        """Save this fitted estimator to ``path`` (one ``.npz`` file, no pickle,
        written atomically); :func:`crnn.load` reads it back. See
        :func:`crnn.save`."""
        from crnn import _io

        _io.save(self, path)


_SHARED_PARAMETERS = """
    hidden_size : int, default=32
        Number of hidden units ``H``.
    cell : {"elman", "lstm", "gru"}, default="elman"
        Recurrent cell. ``"elman"``: ``S_t = g1(W_ih x_t + W_hh S_{t-1} + b)``.
        ``"lstm"`` and ``"gru"``: PyTorch's equations and gate orders (i, f, g,
        o) and (r, z, n), so that weights move between crnn and PyTorch
        exactly (see ``docs/maths.md``).
    num_layers : int, default=1
        Stacked recurrent layers, each reading the outputs of the one below.
    bidirectional : bool, default=False
        Add a reverse-direction layer that reads each sequence from its own
        last step to its first; the two directions' outputs are concatenated.
    activation : {"tanh", "relu", "sigmoid", "identity"}, default="tanh"
        Hidden activation ``g1`` of the Elman cell (the LSTM and GRU use
        sigmoid gates and tanh).
    return_sequences : bool, default=False
        False: one target per sequence, scored on the last step (sequence to
        one). True: one target per time step, every step scored (sequence to
        sequence). The shape ``y`` must have follows from this, never the
        other way round.
    solver : {"adam", "sgd"}, default="adam"
        Optimizer over the flat parameter buffer.
    learning_rate : float, default=1e-3
        Step size.
    momentum : float, default=0.9
        Momentum of ``solver="sgd"``.
    nesterov : bool, default=False
        Nesterov momentum for ``solver="sgd"``.
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's moment decay rates and denominator guard.
    batch_size : int, default=32
        Sequences per mini-batch (capped at the number of training samples).
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Training stops when the loss (or, with early stopping, the validation
        loss) has not improved by at least ``tol`` for ``n_iter_no_change``
        consecutive epochs.
    n_iter_no_change : int, default=10
        See ``tol``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, monitor its
        loss, and restore the weights of the best validation epoch at the end.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    clip_norm : float or None, default=None
        If set, rescale the whole gradient whenever its Euclidean norm exceeds
        this value (clipping by global norm, against exploding gradients).
    alpha : float, default=0.0
        L2 penalty: ``(alpha / 2) * sum of squared weights`` (biases excluded)
        is added to the loss.
    dropout : float, default=0.0
        In training, zero each input of layers 2 .. num_layers with this
        probability (and scale the rest by ``1 / (1 - dropout)``); seeded by
        ``random_state``; never applied by ``predict``.
    bptt_steps : int or None, default=None
        Truncated BPTT: run each batch forward in chunks of this many steps,
        carrying the states from chunk to chunk, but backpropagate within each
        chunk only. None backpropagates through whole sequences. Not with
        ``bidirectional``.
    forget_bias : float, default=1.0
        Initial bias of the LSTM's forget gate (1 keeps the cell's memory
        open at the start of training, as Jozefowicz et al. 2015 recommend;
        PyTorch initialises it like the other biases).
    dtype : {"float64", "float32"}, default="float64"
        Precision of the parameters and of every computation.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the initial weights, the shuffling and the validation split.
    verbose : bool or int, default=False
        Print the loss after every epoch (True or 1), or after every
        ``verbose``-th epoch (an int greater than 1).
    warm_start : bool, default=False
        Continue from the current weights (and optimizer state) on ``fit``.
"""

_SHARED_ATTRIBUTES = """
    params_ : ndarray of shape (n_parameters,)
        All weights and biases in one flat buffer.
    weights_ : dict of str to ndarray
        Named views into ``params_`` (``W_ih_l0``, ``W_hh_l0``, ``b_l0``,
        ``b_hn_l0`` for the GRU, ``..._reverse``, ``W_y``, ``b_y``).
    n_features_in_ : int
        Features per time step seen in ``fit``.
    n_outputs_ : int
        Output units ``O``.
    n_iter_ : int
        Epochs run (cumulative over ``warm_start`` and ``partial_fit``).
    t_ : int
        Training samples processed.
    loss_ : float
        Mean training loss of the last epoch.
    loss_curve_ : list of float
        Mean training loss of every epoch.
    best_loss_ : float
        Lowest loss (validation loss with early stopping) seen.
    validation_loss_curve_ : list of float
        Validation loss of every epoch when ``early_stopping``.
"""

_SHARED_NOTES = """
    The Elman model, for each sequence ``x_1 .. x_T`` and ``S_0 = 0``::

        S_t = g1(W_ih x_t + W_hh S_{t-1} + b)
        Y_t = g2(W_y S_t + b_y)

    With LSTM or GRU cells, stacked layers or both directions, ``S_t`` is the
    last layer's state (both directions concatenated), and a sequence-to-one
    model reads each direction's final state: the forward state at the
    sequence's own last step and the reverse state after its first step.
    Sequences may have different lengths (a list of arrays, or a padded
    array with ``lengths``); batches are packed, so padding costs nothing.

    It is trained by backpropagation through time (BPTT) with gradients
    computed by compiled kernels: the input product ``W_ih x_t`` for all
    steps is one matrix product before the time loop, each step costs one
    small matrix product plus one fused element-wise pass, and the weight
    gradients are one matrix product each after the loop.
"""


class RNNRegressor(RegressorMixin, _RNNBase):
    __doc__ = f"""Recurrent network (Elman, LSTM or GRU) for regression on sequences.

    Trained on the mean squared error over the scored outputs.

    Parameters
    ----------{_SHARED_PARAMETERS}    output_activation : {{"identity", "tanh", "sigmoid", "softmax"}}, default="identity"
        Output activation ``g2``.

    Attributes
    ----------{_SHARED_ATTRIBUTES}
    Notes
    -----{_SHARED_NOTES}
    Shapes of ``y``: with ``return_sequences=False``, ``(n_samples,)`` or
    ``(n_samples, n_outputs)``; with ``return_sequences=True``,
    ``(n_samples, n_timesteps)`` or ``(n_samples, n_timesteps, n_outputs)``.
    ``predict`` returns the same shape as ``y`` had.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(200, 10))       # 200 series of 10 steps
    >>> y = X.sum(axis=1)                             # the running total at the end
    >>> model = RNNRegressor(hidden_size=16, max_iter=300, learning_rate=1e-2,
    ...                      random_state=0).fit(X, y)
    >>> model.score(X, y) > 0.95
    True
    """

    _loss = "squared_error"

    def __init__(self, hidden_size=32, *, cell="elman", num_layers=1,
                 bidirectional=False, activation="tanh", output_activation="identity",
                 return_sequences=False, solver="adam", learning_rate=1e-3,
                 momentum=0.9, nesterov=False, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, batch_size=32, max_iter=200, tol=1e-4,
                 n_iter_no_change=10, early_stopping=False,
                 validation_fraction=0.1, shuffle=True, clip_norm=None, alpha=0.0,
                 dropout=0.0, bptt_steps=None, forget_bias=1.0, dtype="float64",
                 random_state=None, verbose=False, warm_start=False):
        super().__init__(
            hidden_size, cell=cell, num_layers=num_layers,
            bidirectional=bidirectional, activation=activation,
            return_sequences=return_sequences, solver=solver,
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, batch_size=batch_size,
            max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction, shuffle=shuffle,
            clip_norm=clip_norm, alpha=alpha, dropout=dropout,
            bptt_steps=bptt_steps, forget_bias=forget_bias, dtype=dtype,
            random_state=random_state, verbose=verbose, warm_start=warm_start,
        )
        self.output_activation = output_activation

    def _output_activation(self):
        if self.output_activation not in OUTPUTS:
            raise ValueError(
                f"output_activation must be one of {tuple(OUTPUTS)}; got "
                f"{self.output_activation!r}"
            )
        return self.output_activation

    def _validate_params(self):
        self._output_activation()
        return super()._validate_params()

    def _targets(self, y, seqs, dtype):
        if self.return_sequences:
            return v.check_step_targets(y, seqs, "values", dtype)
        return v.check_regression_targets(y, seqs.n, dtype)

    def _prepare_fit(self, X, y, lengths, dtype, reset, classes=None, partial=False):
        seqs = v.check_sequences(X, dtype, lengths, None if reset else self.n_features_in_)
        target, squeeze = self._targets(y, seqs, dtype)
        n_outputs = target.item_shape[-1] if self.return_sequences else target.shape[-1]
        if reset:
            self.n_outputs_ = n_outputs
            self._squeeze = squeeze
        elif n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} outputs, but this model was fitted "
                f"with {self.n_outputs_}"
            )
        return seqs, target

    def _gradcheck_data(self, X, y, lengths, fitted):
        seqs = v.check_sequences(X, np.float64, lengths,
                                 self.n_features_in_ if fitted else None)
        target, _ = self._targets(y, seqs, np.float64)
        n_outputs = target.item_shape[-1] if self.return_sequences else target.shape[-1]
        if fitted and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs; the model has {self.n_outputs_}")
        return seqs, target, n_outputs

    def partial_fit(self, X, y, lengths=None):
        """Train for one epoch on ``(X, y)``, from the current weights.

        Returns
        -------
        self
        """
        return self._partial_fit(X, y, lengths)

    def predict(self, X, lengths=None, *, initial_state=None, return_state=False):
        """Predict targets for sequences ``X``.

        Parameters
        ----------
        X, lengths
            As for :meth:`fit`.
        initial_state : array or (h0, c0), optional
            Initial states, ``(num_layers * num_directions, n_samples,
            hidden_size)`` (a pair for the LSTM); zeros by default.
        return_state : bool, default=False
            Also return the final states, in the same form. Feeding a long
            sequence in chunks, each with the previous chunk's final state,
            gives exactly the outputs of one pass over the whole sequence
            (for a unidirectional model).

        Returns
        -------
        y : ndarray or list of ndarray
            ``(n_samples[, n_timesteps][, n_outputs])``: the shape of the
            ``y`` given to ``fit``; a list of per-sequence arrays for list input
            with ``return_sequences``.
        state : ndarray or tuple
            Only with ``return_state``.
        """
        Y, state = self._outputs(X, lengths, initial_state, return_state)
        if self._squeeze:
            Y = [y[..., 0] for y in Y] if isinstance(Y, list) else Y[..., 0]
        return (Y, state) if return_state else Y

    def score(self, X, y, lengths=None):
        """Coefficient of determination R^2 of the predictions.

        Every scored step of every sequence is one observation; with several
        outputs the R^2 of each output is averaged uniformly.
        """
        Y, _ = self._outputs(X, lengths)
        seqs = v.check_sequences(X, np.float64, lengths, self.n_features_in_)
        target, _ = self._targets(y, seqs, np.float64)
        pred = _scored_rows(Y, seqs) if self.return_sequences else Y
        target = target.data.reshape(-1, pred.shape[-1]) if self.return_sequences else target
        if self.return_sequences and seqs.uniform:
            target = target.reshape(-1, pred.shape[-1])
        ss_res = np.sum((target - pred) ** 2, axis=0)
        ss_tot = np.sum((target - target.mean(axis=0)) ** 2, axis=0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res > 0, 0.0, 1.0))
        return float(np.mean(r2))


def _scored_rows(Y, seqs):
    """Per-step outputs (padded array or list) as rows, sequence after sequence,
    in the order of ``Sequences.data`` (padding dropped)."""
    if isinstance(Y, list):
        return np.concatenate(Y)
    if seqs.uniform:
        return Y.reshape((-1,) + Y.shape[2:])
    return np.concatenate([Y[i, :L] for i, L in enumerate(seqs.lengths)])


def _unique_labels(labels):
    """Sorted distinct labels, or a TypeError saying why they cannot be sorted."""
    try:
        return np.unique(np.asarray(labels))
    except TypeError as exc:
        raise TypeError(
            f"class labels must be of one sortable type (all numbers or all "
            f"strings); sorting them failed with: {exc}"
        ) from None


class RNNClassifier(ClassifierMixin, _RNNBase):
    __doc__ = f"""Recurrent network (Elman, LSTM or GRU) for classification of sequences.

    A softmax output over the classes, trained on the mean cross-entropy.

    Parameters
    ----------{_SHARED_PARAMETERS}
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.{_SHARED_ATTRIBUTES}
    Notes
    -----{_SHARED_NOTES}
    Shapes of ``y``: with ``return_sequences=False``, one label per sequence,
    ``(n_samples,)``; with ``return_sequences=True``, one label per time step,
    ``(n_samples, n_timesteps)``. Labels may be of any type ``numpy.unique``
    can sort (ints, strings, ...); there must be at least two classes.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 8))
    >>> y = np.where(X.sum(axis=1) > 0, "up", "down")
    >>> clf = RNNClassifier(hidden_size=8, max_iter=100, learning_rate=1e-2,
    ...                     random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _loss = "cross_entropy"

    def _output_activation(self):
        return "softmax"

    def _encode(self, y, classes):
        codes = np.searchsorted(classes, y)
        codes = np.minimum(codes, classes.size - 1)
        unknown = classes[codes] != y
        if unknown.any():
            raise ValueError(
                f"y contains labels not among the classes {classes.tolist()}: "
                f"{np.unique(y[unknown]).tolist()}"
            )
        return codes.astype(np.intp)

    def _labels(self, y, seqs):
        """Validated labels: an array (n,), or a Sequences of per-step labels."""
        if self.return_sequences:
            return v.check_step_targets(y, seqs, "labels")[0]
        return v.check_class_labels(y, seqs.n)

    def _encode_targets(self, labels, classes):
        if self.return_sequences:
            from crnn._sequences import Sequences

            return Sequences(self._encode(labels.data, classes), labels.lengths,
                             labels.uniform)
        return self._encode(labels, classes)

    def _prepare_fit(self, X, y, lengths, dtype, reset, classes=None, partial=False):
        seqs = v.check_sequences(X, dtype, lengths, None if reset else self.n_features_in_)
        labels = self._labels(y, seqs)
        if not reset and classes is not None and not np.array_equal(
                _unique_labels(classes), self.classes_):
            raise ValueError(
                f"classes={np.asarray(classes).tolist()} differs from the classes "
                f"of the first partial_fit call, {self.classes_.tolist()}"
            )
        if reset:
            if partial and classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            found = _unique_labels(
                (labels.data if self.return_sequences else labels)
                if classes is None else classes)
            if found.size < 2:
                raise ValueError(
                    f"a classifier needs at least 2 classes; got {found.size} "
                    f"({found.tolist()})"
                )
            self.classes_ = found
            self.n_outputs_ = found.size
        return seqs, self._encode_targets(labels, self.classes_)

    def _gradcheck_data(self, X, y, lengths, fitted):
        seqs = v.check_sequences(X, np.float64, lengths,
                                 self.n_features_in_ if fitted else None)
        labels = self._labels(y, seqs)
        classes = self.classes_ if fitted else _unique_labels(
            labels.data if self.return_sequences else labels)
        if classes.size < 2:
            raise ValueError("the gradient check of a classifier needs 2 classes in y")
        return seqs, self._encode_targets(labels, classes), classes.size

    def partial_fit(self, X, y, lengths=None, classes=None):
        """Train for one epoch on ``(X, y)``, from the current weights.

        Parameters
        ----------
        classes : array-like, optional
            Every class label; required on the first call.

        Returns
        -------
        self
        """
        return self._partial_fit(X, y, lengths, classes=classes)

    def predict_proba(self, X, lengths=None, *, initial_state=None, return_state=False):
        """Class probabilities, ``(n_samples[, n_timesteps], n_classes)`` (a list
        of per-sequence arrays for list input with ``return_sequences``).

        Columns follow :attr:`classes_`. ``initial_state`` and
        ``return_state`` are as for :meth:`predict`.
        """
        P, state = self._outputs(X, lengths, initial_state, return_state)
        return (P, state) if return_state else P

    def predict(self, X, lengths=None, *, initial_state=None, return_state=False):
        """Most probable class label, ``(n_samples[, n_timesteps])`` (a list for
        list input with ``return_sequences``)."""
        P, state = self._outputs(X, lengths, initial_state, return_state)
        if isinstance(P, list):
            labels = [self.classes_[np.argmax(p, axis=-1)] for p in P]
        else:
            labels = self.classes_[np.argmax(P, axis=-1)]
        return (labels, state) if return_state else labels

    def score(self, X, y, lengths=None):
        """Accuracy over every scored label (every step with return_sequences)."""
        pred = self.predict(X, lengths)
        seqs = v.check_sequences(X, np.float64, lengths, self.n_features_in_)
        labels = self._labels(y, seqs)
        if self.return_sequences:
            return float(np.mean(_scored_rows(pred, seqs) == labels.data.reshape(-1)))
        return float(np.mean(pred == labels))
