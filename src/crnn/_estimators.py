"""scikit-learn-style estimators: ``RNNRegressor`` and ``RNNClassifier``."""
import numbers
import operator
import queue
import threading
import weakref

import numpy as np

from crnn import _io
from crnn import _validation as v
from crnn._compat import BaseEstimator, ClassifierMixin, RegressorMixin
from crnn._config import check_memory
from crnn._cells import CELLS
from crnn._flow import gradient_flow
from crnn._gradcheck import check_gradient
from crnn._constraints import (Boolean, Callbacks, Dict, FloatDtype, Interval, Options,
                               RandomState, Verbose, validate_params)
from crnn._network import RecurrentNetwork
from crnn._optim import OPTIMIZERS, check_optimizer_state
from crnn._sequences import Sequences
from crnn._stream import ClassifierStream, Stream
from crnn._threads import effective_n_jobs, map_blocks, one_blas_thread
from crnn._training import TrainingData, copy_state, train
from crnn.kernels.activations import CODES as ACTIVATIONS
from crnn.kernels.stack import OUTPUTS
from crnn.exceptions import NotFittedError

# State values (steps x sequences x hidden units) that predict holds at once.
_PREDICT_CHUNK_ELEMENTS = 1 << 22
# The fewest sequences a block of predict gets unless there are fewer, and
# the most blocks a predict is split into for threads to share.
_PREDICT_BLOCK_SEQUENCES = 64
_PREDICT_MAX_BLOCKS = 8


def _predict_blocks(n, T, network):
    """The blocks of sequences ``predict`` runs, as index arrays: at most
    ``_PREDICT_CHUNK_ELEMENTS`` gate activations each, and split further
    into up to ``_PREDICT_MAX_BLOCKS`` blocks of at least
    ``_PREDICT_BLOCK_SEQUENCES`` for threads to share. They depend on the
    data and the network only, never on the number of threads."""
    per_block = _PREDICT_CHUNK_ELEMENTS // (T * network.H * network.D * network.L
                                            * network.cell.n_gates)
    size = max(1, min(per_block, max(_PREDICT_BLOCK_SEQUENCES, -(-n // _PREDICT_MAX_BLOCKS))))
    if size >= n:
        return [np.arange(n)]
    return [np.arange(start, min(start + size, n)) for start in range(0, n, size)]


#: A network whose workspace grew beyond this many bytes in a predict goes
#: back to no pool: a fitted model keeps only the small workspaces that
#: make small calls cheap, not the memory of the largest call it served.
_POOLED_WORKSPACE_BYTES = 1 << 22


class _NetworkPool:
    """Idle networks of one fitted architecture, for ``predict`` calls and
    their threads to borrow: a network holds its passes' workspace, so it
    serves one pass at a time, and building one (and growing its workspace)
    costs more than a small pass itself. Thread-safe: the idle networks are
    a ``queue.SimpleQueue``."""

    def __init__(self, key, make):
        self.key, self.make = key, make
        self.idle = queue.SimpleQueue()

    def get(self):
        """An idle network, or a new one; give it back with :meth:`put`."""
        try:
            return self.idle.get_nowait()
        except queue.Empty:
            return self.make()

    def put(self, network):
        if network.stack.workspace_nbytes <= _POOLED_WORKSPACE_BYTES:
            self.idle.put(network)




#: Each fitted estimator's pool, kept beside it (not in it: an estimator
#: still pickles and deep-copies as before, and a copy gets its own pool).
_POOLS = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()
#: Each fitted estimator's architecture hyper-parameters as last found
#: unchanged, with the fitted architecture they matched (beside it too: a
#: predict changes nothing of the estimator itself).
_ARCHITECTURE_CHECKED = weakref.WeakKeyDictionary()


class _RNNBase(BaseEstimator):
    """Everything the regressor and the classifier share: hyper-parameters
    and their constraints, the fitted state, training and prediction.

    A subclass sets ``_loss`` (the network's loss) and ``_TARGET_STATE``
    (its own fitted entries besides ``_FITTED_ATTRIBUTES``: ``classes_``, or
    the regressor's ``_squeeze``), and provides ``_output_activation()``,
    ``_check_targets(y, seqs, dtype)`` (validated targets, and the entries
    they define), ``_target_entries`` (those entries, checked against a
    fitted model's), ``_encode_targets`` (the classifier's label codes),
    ``predict`` and ``score``.

    The fitted state has one owner: :meth:`_get_state` and :meth:`_set_state`
    read and install all of it at once; persistence (``crnn.save`` /
    ``crnn.load``) and weight interchange (``crnn.interop``) go through them.
    Training is ``crnn._training.train``.
    """

    _parameter_constraints = {
        "hidden_size": [Interval("integer", 1, None)],
        "cell": [Options(*CELLS)],
        "num_layers": [Interval("integer", 1, None)],
        "bidirectional": [Boolean()],
        "activation": [Options(*ACTIVATIONS)],
        "return_sequences": [Boolean()],
        "solver": [Options(*OPTIMIZERS)],
        "learning_rate": [Interval("real", 0, None, closed="neither")],
        "lr_schedule": [Options("constant", "adaptive", "step", "exponential", "cosine")],
        "lr_decay": [None, Interval("real", 0, 1, closed="right")],
        "lr_step": [None, Interval("integer", 1, None)],
        "warmup_epochs": [Interval("integer", 0, None)],
        "callbacks": [None, Callbacks()],
        "momentum": [Interval("real", 0, 1)],
        "nesterov": [Boolean()],
        "beta_1": [Interval("real", 0, 1)],
        "beta_2": [Interval("real", 0, 1)],
        "epsilon": [Interval("real", 0, None, closed="neither")],
        "batch_size": [Interval("integer", 1, None)],
        "max_iter": [Interval("integer", 1, None)],
        "tol": [Interval("real", 0, None)],
        "n_iter_no_change": [Interval("integer", 1, None)],
        "early_stopping": [Boolean()],
        "validation_fraction": [Interval("real", 0, 1, closed="neither")],
        "validation_split": [Options("random", "last")],
        "shuffle": [Boolean()],
        "clip_norm": [None, Interval("real", 0, None, closed="neither")],
        "alpha": [Interval("real", 0, None)],
        "dropout": [Interval("real", 0, 1)],
        "bptt_steps": [None, Interval("integer", 1, None)],
        "forget_bias": [Interval("real", None, None)],
        "vocab_size": [None, Interval("integer", 1, None)],
        "embedding_dim": [None, Interval("integer", 1, None)],
        "padding_idx": [None, Interval("integer", 0, None)],
        "dtype": [FloatDtype()],
        "random_state": [RandomState()],
        "verbose": [Verbose()],
        "warm_start": [Boolean()],
        "n_jobs": [None, Interval("integer", None, -1), Interval("integer", 1, None)],
    }

    #: Fitted attributes every estimator has; with ``params_``, the
    #: optimizer state, the random generator and the subclass's
    #: ``_TARGET_STATE`` they are the whole fitted state.
    _FITTED_ATTRIBUTES = ("n_features_in_", "n_outputs_", "n_iter_", "t_", "loss_",
                          "best_loss_", "loss_curve_", "validation_loss_curve_",
                          "history_", "learning_rate_")
    _TARGET_STATE = ()
    # scikit-learn's metadata routing (sklearn.set_config(enable_metadata_routing=
    # True)): ``lengths`` is requested by default wherever a method takes it, so
    # that cross_val_score(..., params={"lengths": L}) and GridSearchCV.fit(...,
    # lengths=L) give each fold's lengths to fit, predict and score alike.
    __metadata_request__fit = {"lengths": True}
    __metadata_request__partial_fit = {"lengths": True}
    __metadata_request__predict = {"lengths": True}
    __metadata_request__score = {"lengths": True}
    #: The hyper-parameters that define the fitted network. A fitted model
    #: records them; when one has changed since, it refuses to predict, save,
    #: export its weights or continue training (naming the parameter).
    _ARCHITECTURE = ("cell", "hidden_size", "num_layers", "bidirectional", "activation",
                     "return_sequences", "vocab_size", "embedding_dim", "padding_idx",
                     "dtype")
    #: ``model -> (value of each _ARCHITECTURE name)``, for _check_architecture
    _architecture_values = operator.attrgetter(*_ARCHITECTURE)

    def __init__(self, hidden_size=32, *, cell="elman", num_layers=1,
                 bidirectional=False, activation="tanh", return_sequences=False,
                 solver="adam", learning_rate=1e-3, lr_schedule="constant", lr_decay=None,
                 lr_step=None, warmup_epochs=0, momentum=0.9, nesterov=False,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, batch_size=32,
                 max_iter=200, tol=1e-4, n_iter_no_change=10,
                 early_stopping=False, validation_fraction=0.1, validation_split="random",
                 shuffle=True, clip_norm=None, alpha=0.0, dropout=0.0, bptt_steps=None,
                 forget_bias=1.0, vocab_size=None, embedding_dim=None, padding_idx=None,
                 dtype="float64", random_state=None, verbose=False, warm_start=False,
                 n_jobs=None, callbacks=None):
        self.hidden_size = hidden_size
        self.cell = cell
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.activation = activation
        self.return_sequences = return_sequences
        self.solver = solver
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.lr_step = lr_step
        self.warmup_epochs = warmup_epochs
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
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.clip_norm = clip_norm
        self.alpha = alpha
        self.dropout = dropout
        self.bptt_steps = bptt_steps
        self.forget_bias = forget_bias
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.n_jobs = n_jobs
        self.callbacks = callbacks

    # -- hyper-parameters ---------------------------------------------------

    def _validate_params(self):
        """Check every hyper-parameter; return the dtype they ask for."""
        validate_params(self._parameter_constraints,
                        {name: getattr(self, name) for name in self._parameter_constraints})
        if self.cell != "elman" and self.activation != "tanh":
            raise ValueError(
                f"activation applies to the Elman cell; the {self.cell} cell uses "
                f"sigmoid gates and tanh as PyTorch does. Got activation="
                f"{self.activation!r} with cell={self.cell!r}"
            )
        if (self.vocab_size is None) != (self.embedding_dim is None):
            raise ValueError(
                f"token input needs both vocab_size (the number of token ids) and "
                f"embedding_dim (the width of each token's embedding); got "
                f"vocab_size={self.vocab_size!r}, embedding_dim={self.embedding_dim!r}"
            )
        if self.padding_idx is not None and (
                self.vocab_size is None or self.padding_idx >= self.vocab_size):
            raise ValueError(
                f"padding_idx must be a token id in [0, vocab_size); got "
                f"padding_idx={self.padding_idx!r} with vocab_size={self.vocab_size!r}"
            )
        if self.bptt_steps is not None and self.bidirectional:
            raise ValueError(
                "bptt_steps (truncated BPTT) carries states forward in time, "
                "which a bidirectional model cannot do; set bptt_steps=None or "
                "bidirectional=False"
            )
        return np.dtype(self.dtype)

    # -- model construction -------------------------------------------------

    def _make_network(self, n_features, n_outputs, dtype):
        tokens = self.vocab_size is not None
        return RecurrentNetwork(
            operator.index(self.embedding_dim) if tokens else n_features,
            operator.index(self.hidden_size), n_outputs,
            cell=self.cell,
            num_layers=operator.index(self.num_layers),
            bidirectional=self.bidirectional,
            activation=self.activation,
            output_activation=self._output_activation(),
            loss=self._loss,
            return_sequences=self.return_sequences,
            dropout=self.dropout,
            forget_bias=self.forget_bias,
            dtype=dtype,
            vocab_size=self.vocab_size,
            padding_idx=self.padding_idx,
        )

    def _sequences(self, X, dtype, lengths, n_features):
        """Validated input sequences: real vectors of ``n_features`` (any if
        None), or, for a model with ``vocab_size``, token ids."""
        if self.vocab_size is not None:
            return v.check_tokens(X, operator.index(self.vocab_size), lengths)
        return v.check_sequences(X, dtype, lengths, n_features)

    def _network(self):
        """The network of the fitted weights. A new one per call: a network
        holds the workspace of its compiled passes, so callers (threads
        calling predict at once) never share one."""
        return self._make_network(self.n_features_in_, self.n_outputs_, self.params_.dtype)

    def _network_pool(self):
        """The pool of networks of the fitted state (a new pool once another
        state is installed: ``_set_state`` installs a new architecture record
        with the weights, so that record's identity is the key)."""
        key = self._fitted_architecture
        pool = _POOLS.get(self)
        if pool is None or pool.key is not key:
            with _POOLS_LOCK:
                pool = _POOLS.get(self)
                if pool is None or pool.key is not key:
                    pool = _POOLS[self] = _NetworkPool(key, self._network)
        return pool

    @property
    def weights_(self):
        """Named views into :attr:`params_`, with PyTorch's suffixes: ``W_ih_l0``,
        ``W_hh_l0``, ``b_l0`` (and ``b_hn_l0`` for the GRU), ``..._reverse``
        for the reverse direction, ``W_y`` and ``b_y``. Writing to a view
        changes the model."""
        self._check_architecture()
        return self._network().layout.views(self.params_)

    # -- the fitted state ---------------------------------------------------

    def _is_fitted(self):
        return hasattr(self, "params_")

    def _check_is_fitted(self):
        if not self._is_fitted():
            raise NotFittedError(
                f"this {type(self).__name__} instance is not fitted yet; call "
                f"fit with training data before using it"
            )

    def __sklearn_is_fitted__(self):
        return self._is_fitted()

    if hasattr(BaseEstimator, "__sklearn_tags__"):      # scikit-learn >= 1.6
        def __sklearn_tags__(self):
            """scikit-learn's tags: sequences come as 3-D arrays ``(n_samples,
            n_timesteps, n_features)``, 2-D arrays ``(n_samples, n_timesteps)``
            (one feature per step) or lists of arrays; NaN is refused; ``y``
            is required, with several outputs (or one label per step) allowed."""
            tags = super().__sklearn_tags__()
            tags.input_tags.two_d_array = True
            tags.input_tags.three_d_array = True
            tags.input_tags.allow_nan = False
            tags.target_tags.required = True
            tags.target_tags.multi_output = self._multi_output_tag()
            return tags

    def _multi_output_tag(self):
        return bool(self.return_sequences)

    def _architecture(self):
        """The current values of the :attr:`_ARCHITECTURE` hyper-parameters."""
        architecture = {name: getattr(self, name) for name in self._ARCHITECTURE}
        try:
            architecture["dtype"] = np.dtype(architecture["dtype"]).name
        except TypeError:
            pass
        return architecture

    def _architecture_changes(self, recorded):
        """``"name: fitted -> now"`` for every architecture hyper-parameter
        that differs from ``recorded``."""
        now = self._architecture()
        return [f"{name}: {recorded[name]!r} -> {now[name]!r}" for name in now
                if not _same(recorded.get(name), now[name])]

    def _check_architecture(self):
        """ValueError if an architecture hyper-parameter changed since fit.

        The values last found unchanged are remembered (with the fitted
        architecture they were checked against, in ``_ARCHITECTURE_CHECKED``),
        so that a call on an unchanged model compares them only.
        """
        self._check_is_fitted()
        values = self._architecture_values(self)
        checked = _ARCHITECTURE_CHECKED.get(self)
        if checked is not None and checked[0] is self._fitted_architecture:
            try:
                if checked[1] == values:
                    return
            except (TypeError, ValueError):       # values that do not compare
                pass
        changes = self._architecture_changes(self._fitted_architecture)
        if changes:
            raise ValueError(
                f"the hyper-parameters changed after fitting ({'; '.join(changes)}): "
                f"this {type(self).__name__}'s weights are those of the fitted "
                f"network. Restore them with set_params, or fit again with "
                f"warm_start=False"
            )
        _ARCHITECTURE_CHECKED[self] = (self._fitted_architecture, values)

    def _get_state(self, copy_arrays=False, check_architecture=True):
        """The whole fitted state, as a dict.

        Keys: the :attr:`_FITTED_ATTRIBUTES`, the subclass's
        :attr:`_TARGET_STATE` (``classes_``, or the regressor's ``squeeze``),
        ``params_``, ``optimizer`` (None, or the optimizer's state: ``kind``
        and its arrays, see ``crnn._optim``), ``rng`` (the training
        ``numpy.random.Generator``) and ``architecture`` (the
        :attr:`_ARCHITECTURE` hyper-parameters it was fitted with, which must
        still hold unless ``check_architecture`` is False). The arrays and the
        generator are the model's own unless ``copy_arrays``, which gives an
        independent copy.
        """
        if check_architecture:
            self._check_architecture()
        self._check_is_fitted()
        names = self._FITTED_ATTRIBUTES + self._TARGET_STATE + ("params_",)
        state = {name: getattr(self, name) for name in names}
        state["architecture"] = dict(self._fitted_architecture)
        state["optimizer"] = self._optimizer
        state["rng"] = self._rng
        state["loss_curve_"] = list(state["loss_curve_"])
        state["validation_loss_curve_"] = list(state["validation_loss_curve_"])
        state["history_"] = [dict(record) for record in state["history_"]]
        return copy_state(state) if copy_arrays else state

    def _set_state(self, state):
        """Install a whole fitted state (as :meth:`_get_state` gives it).

        It is checked against the current hyper-parameters first -- the
        parameter buffer's size and dtype against the network they define,
        the optimizer's arrays against the parameters -- and then installed
        at once: a state that fails a check leaves the estimator as it was.
        """
        self._check_state(state)
        self._optimizer = state["optimizer"]
        for name in self._FITTED_ATTRIBUTES + self._TARGET_STATE + ("params_",):
            setattr(self, name, state[name])
        self._rng = state["rng"]
        self._fitted_architecture = dict(state["architecture"])

    def _check_state(self, state):
        """ValueError unless ``state`` is a whole fitted state that fits the
        current hyper-parameters."""
        expected = set(self._FITTED_ATTRIBUTES + self._TARGET_STATE) | {
            "params_", "optimizer", "rng", "architecture"}
        if set(state) != expected:
            raise ValueError(f"a fitted state has the entries {sorted(expected)}; got "
                             f"{sorted(state)}")
        changes = self._architecture_changes(state["architecture"])
        if changes:
            raise ValueError(f"the state was fitted with other hyper-parameters "
                             f"({'; '.join(changes)}); set them first")
        params = state["params_"]
        if not (isinstance(params, np.ndarray) and params.ndim == 1
                and params.dtype in (np.float32, np.float64)):
            raise ValueError(f"params_ must be a 1-D float32 or float64 array; got "
                             f"{getattr(params, 'dtype', type(params).__name__)}")
        n_params = self._make_network(state["n_features_in_"], state["n_outputs_"],
                                      params.dtype).layout.size
        if params.size != n_params:
            raise ValueError(
                f"the fitted weights have {params.size} parameters, but the "
                f"hyper-parameters define {n_params}; were hyper-parameters "
                f"changed after fit? Restore them or fit again"
            )
        check_optimizer_state(state["optimizer"], params.size, params.dtype)
        if not isinstance(state["rng"], np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator; got {state['rng']!r}")

    def _new_state(self, n_features, entries, dtype, params=None):
        """The state of an estimator that has not trained yet: weights drawn
        as ``random_state`` says (or ``params``), a new random generator, no
        optimizer state, no epochs. ``entries`` hold ``n_outputs_`` and the
        subclass's ``_TARGET_STATE``."""
        rng = v.check_random_state(self.random_state)
        network = self._make_network(n_features, entries["n_outputs_"], dtype)
        # Drawn even when params are given, so that the generator's stream
        # (shuffling, dropout) does not depend on where the weights came from.
        # On one BLAS thread: a QR on more would leave BLAS's workers
        # spinning beside the training that follows.
        with one_blas_thread():
            drawn = network.init_params(rng)
        params = drawn if params is None else params
        return dict(entries, n_features_in_=n_features, params_=params, optimizer=None,
                    rng=rng, n_iter_=0, t_=0, loss_=None, best_loss_=np.inf,
                    loss_curve_=[], validation_loss_curve_=[], history_=[],
                    learning_rate_=float(self.learning_rate),
                    architecture=self._architecture())

    # -- training -----------------------------------------------------------

    def fit(self, X, y, lengths=None, validation_data=None, sample_weight=None):
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
        validation_data : (X_val, y_val[, lengths_val[, sample_weight_val]]), optional
            Sequences to validate on after every epoch, in any form ``X`` and
            ``y`` take: their loss goes to ``validation_loss_curve_``. With
            ``early_stopping``, they are the validation set (instead of a
            held-out share of ``X``): training stops on their loss and the
            weights of their best epoch are restored. Their loss is weighted
            as the training loss is: by ``sample_weight_val`` if given (and,
            for a classifier, ``class_weight``, ``"balanced"`` over their
            labels).
        sample_weight : array-like, optional
            A weight >= 0 per sequence ``(n_samples,)`` or, with
            ``return_sequences``, per time step (padded like ``y``, or a list):
            the loss is the weighted mean ``sum_r w_r e_r / sum_r w_r`` over
            the scored rows (each sequence's last step, or every step), so an
            integer weight counts a sequence that many times. The held-out
            share of early stopping keeps its weights: its loss is weighted
            the same way.

        Returns
        -------
        self

        Notes
        -----
        A fit is a transaction: it trains a copy of the model and commits
        the weights, optimizer state, random generator, counters and curves
        together when it ends. If it fails, the model is exactly as it was
        before the call (unfitted, if it was), with two exceptions that keep
        the work done: after ``KeyboardInterrupt`` the model is at its last
        completed epoch (with early stopping, with the best validation
        epoch's weights); after :class:`~crnn.TrainingDivergedError` it is at
        the best completed epoch of the call, checked to predict finite
        values on the training data. If no epoch completed, both leave the
        model as it was.
        """
        return self._fit(X, y, lengths, validation_data=validation_data,
                         sample_weight=sample_weight)

    def _fit(self, X, y, lengths=None, classes=None, validation_data=None,
             sample_weight=None):
        dtype = self._validate_params()
        continuing = self.warm_start and self._is_fitted()
        seqs, target, entries = self._check_data(X, y, lengths, dtype, continuing,
                                                 classes=classes)
        weights = self._row_weights(sample_weight, seqs, target, entries, dtype)
        validation = self._validation_data(validation_data, entries, seqs.item_shape[0],
                                           dtype)
        self._check_training_memory(seqs.item_shape[0], entries["n_outputs_"], dtype)
        if continuing:
            self._check_warm_start(dtype)
            state = self._get_state(copy_arrays=True)
        else:
            state = self._new_state(seqs.item_shape[0], entries, dtype)
        self._train(state, seqs, target, self.max_iter, self.early_stopping, warn=True,
                    validation=validation, weights=weights)
        return self

    def _validation_data(self, validation_data, entries, n_features, dtype):
        """``fit``'s ``validation_data`` as a TrainingData with the targets of
        the training data's form (None stays None)."""
        if validation_data is None:
            return None
        if not (isinstance(validation_data, (tuple, list))
                and len(validation_data) in (2, 3, 4)):
            raise TypeError(f"validation_data must be (X_val, y_val), (X_val, y_val, "
                            f"lengths_val) or (X_val, y_val, lengths_val, "
                            f"sample_weight_val); got {type(validation_data).__name__}")
        X, y, lengths, sample_weight = (*validation_data, None, None)[:4]
        try:
            seqs = self._sequences(X, dtype, lengths, n_features)
            found, target = self._check_targets(y, seqs, dtype)
            self._check_validation_targets(found, entries)
            target = self._encode_targets(target, entries)
            weights = self._row_weights(sample_weight, seqs, target, entries, dtype)
        except ValueError as exc:
            raise ValueError(f"validation_data: {exc}") from None
        return TrainingData(seqs, target, self.return_sequences, weights)

    def _check_validation_targets(self, found, entries):
        """ValueError unless validation targets fit the training targets."""
        if found["n_outputs_"] != entries["n_outputs_"]:
            raise ValueError(f"y has {found['n_outputs_']} outputs, but the training "
                             f"targets have {entries['n_outputs_']}")

    def _partial_fit(self, X, y, lengths=None, classes=None, sample_weight=None):
        dtype = self._validate_params()
        first = not self._is_fitted()
        if not first:
            self._check_warm_start(dtype)
        seqs, target, entries = self._check_data(X, y, lengths, dtype, not first,
                                                 classes=classes, first_partial=first)
        weights = self._row_weights(sample_weight, seqs, target, entries, dtype)
        self._check_training_memory(seqs.item_shape[0], entries["n_outputs_"], dtype)
        if first:
            state = self._new_state(seqs.item_shape[0], entries, dtype)
        else:
            state = self._get_state(copy_arrays=True)
        self._train(state, seqs, target, 1, False, warn=False, weights=weights)
        return self

    def _check_training_memory(self, n_features, n_outputs, dtype):
        """MemoryError, before anything is allocated, if training this model
        needs more than crnn's memory limit (``crnn.set_config``): the
        model's weights and optimizer state, the working copy a fit trains,
        the last and the best completed epoch's copies, and the gradient."""
        n_params = self._make_network(n_features, n_outputs, dtype).layout.size
        per_copy = 1 + (2 if self.solver == "adam" else 1)       # weights + optimizer
        check_memory(n_params * np.dtype(dtype).itemsize * (4 * per_copy + 1),
                     f"training this {type(self).__name__} ({n_params} {np.dtype(dtype)} "
                     f"parameters)")

    def _check_data(self, X, y, lengths, dtype, fitted, classes=None,
                    first_partial=False):
        """Validated sequences and model targets, and the fitted-state entries
        the targets define (``n_outputs_`` and the ``_TARGET_STATE``): those
        of the fitted model when ``fitted``, which the data must match."""
        seqs = self._sequences(X, dtype, lengths, self.n_features_in_ if fitted else None)
        found, target = self._check_targets(y, seqs, dtype)
        entries = self._target_entries(found, fitted, classes, first_partial)
        return seqs, self._encode_targets(target, entries), entries

    def _encode_targets(self, target, entries):
        return target

    def _check_warm_start(self, dtype):
        """Continuing needs the architecture (dtype included) the model was fitted with."""
        self._check_architecture()

    def _training_optimizer(self, state):
        """The optimizer that trains ``state``: the current ``solver`` and its
        settings, continuing from the state's moments (or velocity) when the
        solver is the one that made them, new otherwise."""
        params, saved = state["params_"], state["optimizer"]
        kind = OPTIMIZERS[self.solver]
        opt = kind(params.size, params.dtype, float(self.learning_rate))
        if saved is not None and saved["kind"] == self.solver:
            opt.set_state(saved)
        if self.solver == "adam":
            opt.beta_1, opt.beta_2 = float(self.beta_1), float(self.beta_2)
            opt.epsilon = float(self.epsilon)
        else:
            opt.momentum, opt.nesterov = float(self.momentum), bool(self.nesterov)
        return opt

    def _row_weights(self, sample_weight, seqs, target, entries, dtype):
        """The loss weights of the scored rows: ``sample_weight`` (checked),
        times the classifier's class weights; None when both are absent."""
        return v.check_sample_weight(sample_weight, seqs, self.return_sequences, dtype)

    def _train(self, state, seqs, target, n_epochs, early_stopping, warn, validation=None,
               weights=None):
        """Train from ``state`` and commit the result (``crnn._training``)."""
        self._check_state(state)
        network = self._make_network(state["n_features_in_"], state["n_outputs_"],
                                     state["params_"].dtype)
        with one_blas_thread():
            train(self, network, state,
                  TrainingData(seqs, target, self.return_sequences, weights),
                  n_epochs, early_stopping, warn, validation)

    # -- prediction ---------------------------------------------------------

    def _outputs(self, X, lengths=None, initial_state=None, return_state=False):
        """Network outputs for user inputs, in the user's order and form.

        Returns the outputs (``(n, O)`` per sequence; ``(n, T, O)`` or a list
        of ``(L_i, O)`` per step) and the final states (or None).
        """
        self._check_architecture()
        if lengths is None and initial_state is None and not return_state:
            Y = self._outputs_of_few(X)
            if Y is not None:
                return Y, None
        seqs = self._sequences(X, self.params_.dtype, lengths, self.n_features_in_)
        pool = self._network_pool()         # a network per thread, reused across calls
        network = pool.get()
        pool.put(network)                   # (only its sizes are read here)
        initial = self._check_initial_state(initial_state, seqs.n, network)
        T = int(seqs.lengths.max())
        parts = _predict_blocks(seqs.n, T, network)

        def run_block(idx):
            net = pool.get()
            try:
                batch = seqs.pack(idx)
                # (n_states, L*D, B, H), rows in packed order
                state0 = (None if initial is None
                          else np.stack([s[:, batch.sources] for s in initial]))
                return (idx, batch, *net.output(self.params_, batch, state0))
            finally:
                pool.put(net)

        if len(parts) == 1:                 # (the compiled pass holds BLAS at one thread)
            blocks = [run_block(parts[0])]
        else:
            blocks = map_blocks(run_block, parts, effective_n_jobs(self.n_jobs))
        outputs, finals = [], None
        if return_state:
            finals = [np.empty((network.L * network.D, seqs.n, network.H),
                               dtype=self.params_.dtype)
                      for _ in range(network.cell.n_states)]
        for idx, batch, Y, final in blocks:
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
            Y = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)
        state = None
        if return_state:
            state = tuple(finals) if network.cell.n_states == 2 else finals[0]
        return Y, state

    def _outputs_of_few(self, X):
        """The outputs of a few sequences of one length, one per sequence,
        without the general path's bookkeeping: for a C-contiguous
        ``(n, T, n_features)`` array of the model's dtype, finite, with ``n``
        at most one block of ``predict``, in one compiled call
        (``Stack.output_dense``, which checks all that); None for anything
        else (which the general path validates, packs and reports). Packing
        sequences of one length is a transpose to time-major, and their
        outputs come out in their order."""
        if type(X) is not np.ndarray or self.return_sequences:
            return None
        pool = self._network_pool()
        network = pool.get()
        try:
            return network.stack.output_dense(self.params_, X, _PREDICT_BLOCK_SEQUENCES,
                                              _PREDICT_CHUNK_ELEMENTS)
        finally:
            pool.put(network)

    def stream(self, n_streams=1, *, initial_state=None):
        """Step-by-step inference for ``n_streams`` sequences at once, the
        recurrent states kept inside (:class:`~crnn.Stream`).

        Parameters
        ----------
        n_streams : int, default=1
        initial_state : optional
            As for :meth:`predict` (zeros by default).

        Returns
        -------
        Stream (a :class:`~crnn.ClassifierStream` for a classifier)

        Examples
        --------
        >>> import numpy as np
        >>> from crnn import RNNRegressor
        >>> X = np.random.default_rng(0).normal(size=(20, 10, 2))
        >>> model = RNNRegressor(4, return_sequences=True, max_iter=2,
        ...                      random_state=0).fit(X, X[..., 0].cumsum(axis=1))
        >>> stream = model.stream()
        >>> steps = np.array([stream.step(x_t) for x_t in X[0]])
        >>> bool(np.allclose(steps, model.predict(X[:1])[0]))
        True
        """
        return self._STREAM(self, n_streams, initial_state)

    def _check_initial_state(self, state, n, network):
        """User initial states -> list of (L*D, n, H) arrays, one per state kind."""
        if state is None:
            return None
        shape = (network.L * network.D, n, network.H)
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

    def check_gradient(self, X, y, lengths=None, *, sample_weight=None, epsilon=1e-4,
                       random_state=0):
        """Compare the BPTT gradient with finite differences on ``(X, y)``.

        See :func:`crnn.check_gradient`.
        """
        return check_gradient(self, X, y, lengths, sample_weight=sample_weight,
                              epsilon=epsilon, random_state=random_state)

    def gradient_flow(self, X, y, lengths=None, *, sample_weight=None):
        """``dE/dS_t`` of every layer, direction, sequence and step, by BPTT.

        See :func:`crnn.gradient_flow`.
        """
        return gradient_flow(self, X, y, lengths, sample_weight=sample_weight)

    def save(self, path):
        """Save this fitted estimator to ``path`` (one ``.npz`` file, no pickle,
        written atomically); :func:`crnn.load` reads it back. See
        :func:`crnn.save`."""
        _io.save(self, path)


_SHARED_PARAMETERS = """
    hidden_size : int, default=32
        Number of hidden units ``H``.
    cell : {"elman", "lstm", "gru"}, default="elman"
        Recurrent cell. ``"elman"``: ``S_t = g1(W_ih x_t + W_hh S_{t-1} + b)``.
        ``"lstm"`` and ``"gru"``: PyTorch's equations and gate orders (i, f, g,
        o) and (r, z, n), so that weights move between crnn and PyTorch
        exactly (see the maths page of the user guide, ``docs/maths.md``).
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
        Step size (of the first epoch after any warm-up; see ``lr_schedule``).
    lr_schedule : {"constant", "adaptive", "step", "exponential", "cosine"}, default="constant"
        The learning rate of epoch ``e`` (counted over every fit of the
        model): ``"step"`` multiplies it by ``lr_decay`` every ``lr_step``
        epochs, ``"exponential"`` every epoch, ``"cosine"`` anneals it to
        ``lr_decay * learning_rate`` over ``lr_step`` epochs (default
        ``max_iter``), ``"adaptive"`` multiplies it by ``lr_decay`` whenever
        ``n_iter_no_change`` epochs did not improve by ``tol`` (instead of
        stopping; it stops below 1e-6), as scikit-learn's MLP does. The
        rate of each epoch is in ``history_``.
    lr_decay : float in (0, 1] or None, default=None
        The schedule's factor: None for 0.2 (adaptive), 0.5 (step), 0.95
        (exponential), 0 (cosine's floor).
    lr_step : int or None, default=None
        Epochs between steps (``"step"``, default 10), or the cosine's period
        (default ``max_iter``).
    warmup_epochs : int, default=0
        Scale the rate of the first ``warmup_epochs`` epochs by
        ``e / (warmup_epochs + 1)``.
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
    validation_split : {"random", "last"}, default="random"
        Which sequences are held out: a random draw, or the last
        ``validation_fraction`` of them in the order given -- for windows of
        a time series in time order, the most recent ones, so that the
        validation never sees the past through the future. Not used with
        ``fit``'s ``validation_data``.
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
    vocab_size : int or None, default=None
        Token input: ``X`` holds integer token ids in ``[0, vocab_size)``,
        one per step (``(n_samples, n_timesteps)``, padded with ``lengths``,
        or a list of 1-D arrays), and the first layer reads each token's row
        of a trained embedding ``W_emb`` ``(vocab_size, embedding_dim)``:
        ``x_t = W_emb[k_t]``, PyTorch's ``nn.Embedding``. The same as a
        one-hot input, at the cost of a row copy instead of a matrix
        product. Needs ``embedding_dim``.
    embedding_dim : int or None, default=None
        Width of each token's embedding (the first layer's input size).
    padding_idx : int or None, default=None
        A token id whose embedding row starts at zero and is never trained
        (no gradient, no penalty): a padding token inside sequences.
        Steps past a sequence's ``lengths`` are never read at all.
    dtype : {"float64", "float32"}, default="float64"
        Precision of the parameters and of every computation.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the initial weights, the shuffling and the validation split.
    verbose : bool or int, default=False
        Print the loss after every epoch (True or 1), or after every
        ``verbose``-th epoch (an int greater than 1); and, inside an epoch
        that runs for more than 2 s, its progress with an estimate of the
        time left: a tqdm bar when tqdm is installed, else a line every 2 s.
    warm_start : bool, default=False
        Continue from the current weights (and optimizer state) on ``fit``.
    callbacks : list or None, default=None
        Called after every epoch with ``(model, record)`` -- an object's
        ``on_epoch_end``, or the callable itself -- while the model holds
        that epoch's fitted state; one that returns True ends the fit (see
        :mod:`crnn.callbacks`, e.g. ``Checkpoint``). If one raises, the
        model stays at that epoch. Not stored by ``save``.
    n_jobs : int or None, default=None
        Threads for ``fit``, ``partial_fit``, ``predict``, ``predict_proba``
        and ``score``, which run blocks of sequences at the same time (a
        mini-batch: blocks of at least 16 sequences): None, the cores this
        process may use (its CPU affinity and cgroup quota, and no more
        than the BLAS thread count set with ``threadpoolctl``, in a joblib
        worker or by ``OPENBLAS_NUM_THREADS``); -1 all cores, -2 all but
        one. The blocks do not depend on ``n_jobs``: the fitted weights and
        the predictions are bit-identical for any value. crnn's matrix
        products run on one BLAS thread whatever the process's BLAS setting
        (restored afterwards).
"""

_SHARED_ATTRIBUTES = """
    params_ : ndarray of shape (n_parameters,)
        All weights and biases in one flat buffer.
    weights_ : dict of str to ndarray
        Named views into ``params_`` (``W_emb`` for token input, ``W_ih_l0``,
        ``W_hh_l0``, ``b_l0``, ``b_hn_l0`` for the GRU, ``..._reverse``,
        ``W_y``, ``b_y``).
    n_features_in_ : int
        Features per time step seen in ``fit`` (1 for token ids).
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
    history_ : list of dict
        One record per epoch: ``epoch``, ``loss``, ``validation_loss`` (or
        None), ``learning_rate``, ``grad_norm`` and ``grad_norm_max`` (the
        mean and largest gradient norm before clipping over its batches),
        ``clipped`` (the share of batches ``clip_norm`` rescaled) and
        ``time`` (seconds).
    learning_rate_ : float
        The learning rate now: the last epoch's, or the adaptive schedule's
        next.
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


def _same(a, b):
    """``a == b`` as a plain bool (False where the comparison fails)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


@_io.register_estimator
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
                 lr_schedule="constant", lr_decay=None, lr_step=None, warmup_epochs=0,
                 momentum=0.9, nesterov=False, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, batch_size=32, max_iter=200, tol=1e-4,
                 n_iter_no_change=10, early_stopping=False,
                 validation_fraction=0.1, validation_split="random", shuffle=True,
                 clip_norm=None, alpha=0.0,
                 dropout=0.0, bptt_steps=None, forget_bias=1.0, vocab_size=None,
                 embedding_dim=None, padding_idx=None, dtype="float64",
                 random_state=None, verbose=False, warm_start=False, n_jobs=None,
                 callbacks=None):
        super().__init__(
            hidden_size, cell=cell, num_layers=num_layers,
            bidirectional=bidirectional, activation=activation,
            return_sequences=return_sequences, solver=solver,
            learning_rate=learning_rate, lr_schedule=lr_schedule, lr_decay=lr_decay,
            lr_step=lr_step, warmup_epochs=warmup_epochs, momentum=momentum,
            nesterov=nesterov,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, batch_size=batch_size,
            max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction, validation_split=validation_split,
            shuffle=shuffle,
            clip_norm=clip_norm, alpha=alpha, dropout=dropout,
            bptt_steps=bptt_steps, forget_bias=forget_bias, vocab_size=vocab_size,
            embedding_dim=embedding_dim, padding_idx=padding_idx, dtype=dtype,
            random_state=random_state, verbose=verbose, warm_start=warm_start,
            n_jobs=n_jobs, callbacks=callbacks,
        )
        self.output_activation = output_activation

    _parameter_constraints = {**_RNNBase._parameter_constraints,
                              "output_activation": [Options(*OUTPUTS)]}
    _ARCHITECTURE = _RNNBase._ARCHITECTURE + ("output_activation",)
    _architecture_values = operator.attrgetter(*_ARCHITECTURE)
    # Whether y had no output axis, so that predictions drop it too.
    _TARGET_STATE = ("_squeeze",)
    _STREAM = Stream

    def _multi_output_tag(self):
        return True         # y (n_samples, n_outputs)

    def _output_activation(self):
        return self.output_activation

    def _check_targets(self, y, seqs, dtype):
        if self.return_sequences:
            target, squeeze = v.check_step_targets(y, seqs, "values", dtype)
            n_outputs = target.item_shape[-1]
        else:
            target, squeeze = v.check_regression_targets(y, seqs.n, dtype)
            n_outputs = target.shape[-1]
        return {"n_outputs_": n_outputs, "_squeeze": squeeze}, target

    def _target_entries(self, found, fitted, classes=None, first_partial=False):
        if not fitted:
            return found
        if found["n_outputs_"] != self.n_outputs_:
            raise ValueError(
                f"y has {found['n_outputs_']} outputs, but this model was fitted "
                f"with {self.n_outputs_}"
            )
        return {"n_outputs_": self.n_outputs_, "_squeeze": self._squeeze}

    def partial_fit(self, X, y, lengths=None, sample_weight=None):
        """Train for one epoch on ``(X, y)``, from the current weights
        (``sample_weight`` as for :meth:`fit`).

        Returns
        -------
        self
        """
        return self._partial_fit(X, y, lengths, sample_weight=sample_weight)

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

    def forecast(self, history, steps, *, covariates=None):
        """Forecast ``steps`` steps past each history, recursively.

        The network runs over the history; its output at the last step is
        the forecast of the next step's targets. That forecast (with the
        next step's known covariates, if any) is the input of the next
        step, from the states the history left, and so on::

            y_{T+1} = f(x_1 .. x_T),   x_{T+k} = [y_{T+k}, u_{T+k}],
            y_{T+k+1} = f(x_{T+k} | the state after x_{T+k-1})

        so each step costs one step of the network (the state is carried,
        the history is not run again). The model's outputs must be the
        first ``n_outputs`` of its input features: the series itself, or
        its targets followed by covariates. A model trained on windows
        (:func:`crnn.preprocessing.make_windows`) to predict the next step
        forecasts this way; one trained with ``horizon = n_outputs`` steps
        at once (the direct forecast) is used through :meth:`predict`.

        Parameters
        ----------
        history : array-like (T,), (T, n_features) or (n, T, n_features)
            One history, or ``n`` of the same length.
        steps : int
        covariates : array-like (steps, n_features - n_outputs), or with a
            leading ``n``, optional
            The known future values of the features that are not forecast;
            required when the model has more input features than outputs.

        Returns
        -------
        ndarray ``(steps, n_outputs)`` for one history (``(steps,)`` when the
        model predicts 1-D targets), ``(n, steps, n_outputs)`` for several.

        Examples
        --------
        >>> import numpy as np
        >>> from crnn import RNNRegressor
        >>> from crnn.preprocessing import make_windows
        >>> series = np.sin(np.arange(300) / 8)
        >>> X, y = make_windows(series, lookback=24)
        >>> model = RNNRegressor(16, max_iter=20, random_state=0).fit(X, y)
        >>> model.forecast(series[-24:], steps=10).shape
        (10, 1)
        """
        self._check_architecture()
        steps = operator.index(steps)
        if steps < 1:
            raise ValueError(f"steps must be at least 1; got {steps}")
        F, O = self.n_features_in_, self.n_outputs_
        if self.vocab_size is not None:
            raise ValueError("forecast feeds real outputs back as inputs; this model reads "
                             "token ids (vocab_size): continue token sequences with an "
                             "RNNClassifier's generate")
        if O > F:
            raise ValueError(f"forecast feeds the outputs back as inputs: this model has "
                             f"{O} outputs and {F} input features")
        H = v.as_float_array(history, "history", self.params_.dtype)
        single = H.ndim < 3
        if H.ndim == 1 and F == 1:
            H = H[:, None]
        if H.ndim == 2:
            H = H[None]
        if H.ndim != 3 or H.shape[2] != F or H.shape[1] == 0:
            raise ValueError(f"history must be (T, {F}) or (n, T, {F}) with T >= 1 (or "
                             f"(T,) for one feature); got shape {np.shape(history)}")
        n = H.shape[0]
        U = None
        if F > O:
            if covariates is None:
                raise ValueError(f"this model reads {F - O} covariates besides its {O} "
                                 f"outputs: give their future values, covariates=")
            U = v.as_float_array(covariates, "covariates", self.params_.dtype)
            U = U[None] if U.ndim == 2 else U
            if U.shape != (n, steps, F - O):
                raise ValueError(f"covariates must have shape ({steps}, {F - O}) per "
                                 f"history; got {np.shape(covariates)}")
            v.check_finite(U, "covariates")
        elif covariates is not None:
            raise ValueError("this model forecasts every input feature: it takes no "
                             "covariates")
        stream = self.stream(n)
        y = stream._run(np.ascontiguousarray(np.swapaxes(H, 0, 1)))[0][-1]   # (n, O)
        out = np.empty((n, steps, O), self.params_.dtype)
        x = np.empty((n, F), self.params_.dtype)
        for k in range(steps):
            out[:, k] = y
            if k + 1 < steps:
                x[:, :O] = y
                if U is not None:
                    x[:, O:] = U[:, k]
                y = stream._outputs(x).reshape(n, O)      # (squeezed, if 1-D targets)
        if self._squeeze:
            out = out[..., 0]
        return out[0] if single else out

    def score(self, X, y, lengths=None, sample_weight=None):
        """Coefficient of determination R^2 of the predictions.

        Every scored step of every sequence is one observation (weighted by
        ``sample_weight``, as for :meth:`fit`); with several outputs the R^2
        of each output is averaged uniformly.
        """
        Y, _ = self._outputs(X, lengths)
        seqs = self._sequences(X, np.float64, lengths, self.n_features_in_)
        _, target = self._check_targets(y, seqs, np.float64)
        pred = _scored_rows(Y, seqs) if self.return_sequences else Y
        target = target.data.reshape(-1, pred.shape[-1]) if self.return_sequences else target
        w = _score_weights(sample_weight, seqs, self.return_sequences, len(target))
        ss_res = np.sum(w * (target - pred) ** 2, axis=0)
        ss_tot = np.sum(w * (target - np.average(target, axis=0, weights=w[:, 0])) ** 2,
                        axis=0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res > 0, 0.0, 1.0))
        return float(np.mean(r2))


def _score_weights(sample_weight, seqs, per_step, n_rows):
    """The weights of the scored rows as a column ``(n_rows, 1)`` (ones
    without ``sample_weight``)."""
    weights = v.check_sample_weight(sample_weight, seqs, per_step, np.float64)
    if weights is None:
        return np.ones((n_rows, 1))
    return (weights.data if per_step else weights).reshape(-1, 1)


def _scored_rows(Y, seqs):
    """Per-step outputs (padded array or list) as rows, sequence after sequence,
    in the order of ``Sequences.data`` (padding dropped)."""
    if isinstance(Y, list):
        return np.concatenate(Y)
    if seqs.uniform:
        return Y.reshape((-1,) + Y.shape[2:])
    return np.concatenate([Y[i, :L] for i, L in enumerate(seqs.lengths)])


@_io.register_estimator
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
    __metadata_request__predict_proba = {"lengths": True}

    def __init__(self, hidden_size=32, *, cell="elman", num_layers=1, bidirectional=False,
                 activation="tanh", return_sequences=False, solver="adam",
                 learning_rate=1e-3, lr_schedule="constant", lr_decay=None, lr_step=None,
                 warmup_epochs=0, momentum=0.9, nesterov=False, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, batch_size=32, max_iter=200, tol=1e-4, n_iter_no_change=10,
                 early_stopping=False, validation_fraction=0.1, validation_split="random",
                 shuffle=True, clip_norm=None, alpha=0.0, dropout=0.0, bptt_steps=None,
                 forget_bias=1.0, vocab_size=None, embedding_dim=None, padding_idx=None,
                 dtype="float64", random_state=None, verbose=False, warm_start=False,
                 n_jobs=None, callbacks=None, class_weight=None):
        super().__init__(
            hidden_size, cell=cell, num_layers=num_layers, bidirectional=bidirectional, activation=activation,
            return_sequences=return_sequences, solver=solver,
            learning_rate=learning_rate, lr_schedule=lr_schedule, lr_decay=lr_decay,
            lr_step=lr_step, warmup_epochs=warmup_epochs, momentum=momentum,
            nesterov=nesterov, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            batch_size=batch_size, max_iter=max_iter, tol=tol,
            n_iter_no_change=n_iter_no_change, early_stopping=early_stopping,
            validation_fraction=validation_fraction, validation_split=validation_split,
            shuffle=shuffle, clip_norm=clip_norm, alpha=alpha, dropout=dropout,
            bptt_steps=bptt_steps, forget_bias=forget_bias, vocab_size=vocab_size,
            embedding_dim=embedding_dim, padding_idx=padding_idx, dtype=dtype,
            random_state=random_state, verbose=verbose, warm_start=warm_start,
            n_jobs=n_jobs, callbacks=callbacks,
        )
        self.class_weight = class_weight

    _parameter_constraints = {**_RNNBase._parameter_constraints,
                              "class_weight": [None, Options("balanced"), Dict()]}

    def _row_weights(self, sample_weight, seqs, target, entries, dtype):
        """``sample_weight`` times the weight of each scored row's class:
        ``class_weight[label]`` (1 for a label it does not name), or, for
        ``"balanced"``, ``n_rows / (n_classes * n_rows_of_that_class)`` over
        this call's scored rows (scikit-learn's rule)."""
        weights = super()._row_weights(sample_weight, seqs, target, entries, dtype)
        if self.class_weight is None:
            return weights
        classes = entries["classes_"]
        codes = target.data.reshape(-1) if self.return_sequences else target
        if isinstance(self.class_weight, str):
            counts = np.bincount(codes, minlength=classes.size)
            per_class = codes.size / (classes.size * np.maximum(counts, 1))
        else:
            per_class = np.ones(classes.size)
            for label, w in self.class_weight.items():
                where = np.flatnonzero(classes == label)
                if where.size == 0:
                    raise ValueError(f"class_weight names the label {label!r}, which is "
                                     f"not a class of y ({classes.tolist()})")
                if not (isinstance(w, numbers.Real) and np.isfinite(w) and w >= 0):
                    raise ValueError(f"class_weight[{label!r}] must be a finite number "
                                     f">= 0; got {w!r}")
                per_class[where[0]] = w
        rows = per_class[codes].astype(dtype)
        if weights is not None:
            rows *= weights.data if self.return_sequences else weights
        if not rows.sum() > 0:
            raise ValueError("the class weights of y's labels sum to zero: there would "
                             "be nothing to train on")
        return Sequences(rows, seqs.lengths, False) if self.return_sequences else rows
    _TARGET_STATE = ("classes_",)
    _STREAM = ClassifierStream

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

    def _check_targets(self, y, seqs, dtype):
        labels = self._labels(y, seqs)
        return (labels.data if self.return_sequences else labels), labels

    def _target_entries(self, found, fitted, classes=None, first_partial=False):
        if fitted:
            if classes is not None and not np.array_equal(v.unique_labels(classes),
                                                          self.classes_):
                raise ValueError(
                    f"classes={np.asarray(classes).tolist()} differs from the classes "
                    f"of the first partial_fit call, {self.classes_.tolist()}"
                )
            return {"n_outputs_": self.n_outputs_, "classes_": self.classes_}
        if first_partial and classes is None:
            raise ValueError("classes must be given on the first call to partial_fit")
        labels = v.unique_labels(found if classes is None else classes)
        if labels.size < 2:
            raise ValueError(
                f"a classifier needs at least 2 classes; got {labels.size} class "
                f"({labels.tolist()})"
            )
        return {"n_outputs_": labels.size, "classes_": labels}

    def _encode_targets(self, labels, entries):
        classes = entries["classes_"]
        if self.return_sequences:
            return Sequences(self._encode(labels.data, classes), labels.lengths,
                             labels.uniform)
        return self._encode(labels, classes)

    def fit(self, X, y, lengths=None, validation_data=None, classes=None,
            sample_weight=None):
        """Train on sequences ``X`` and labels ``y`` for up to ``max_iter`` epochs.

        As :meth:`RNNRegressor.fit` (``validation_data`` included), and:

        Parameters
        ----------
        classes : array-like, optional
            Every class label, also those ``y`` lacks: the columns of
            :meth:`predict_proba` are then these classes (sorted, as
            :attr:`classes_`) whatever the training labels hold, so a
            vocabulary stays fixed. Every label of ``y`` must be among them.
            By default, the labels found in ``y``.

        Returns
        -------
        self
        """
        return self._fit(X, y, lengths, classes=classes, validation_data=validation_data,
                         sample_weight=sample_weight)

    def _check_validation_targets(self, found, entries):
        """Validation labels are checked when encoded with the classes."""

    def partial_fit(self, X, y, lengths=None, classes=None, sample_weight=None):
        """Train for one epoch on ``(X, y)``, from the current weights.

        Parameters
        ----------
        classes : array-like, optional
            Every class label; required on the first call.
        sample_weight : array-like, optional
            As for :meth:`fit`.

        Returns
        -------
        self
        """
        return self._partial_fit(X, y, lengths, classes=classes,
                                 sample_weight=sample_weight)

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

    def generate(self, prompt, n_steps, *, temperature=1.0, top_k=None,
                 random_state=None):
        """Continue ``prompt`` by ``n_steps`` tokens, each drawn from the
        model's next-token probabilities.

        For a next-token model: a sequence-to-sequence classifier
        (``return_sequences=True``) whose input at each step is the one-hot
        vector of a class (:func:`crnn.preprocessing.one_hot` of its index in
        :attr:`classes_`, so ``n_features_in_ == len(classes_)``) and whose
        label is the class of the next step. The network runs over the
        prompt, then, one step at a time on its :meth:`stream` (the
        recurrent state carried, the prompt not run again)::

            p_t = softmax(z_t / temperature)  over the top_k largest z_t
            c_t ~ p_t,    x_{t+1} = one_hot(c_t)

        where ``z_t = log P(c | c_1 .. c_{t-1})``. Each draw takes one
        uniform number per prompt from ``random_state``'s generator (inverse
        transform sampling), so a fixed ``random_state`` gives the same
        tokens every time.

        Parameters
        ----------
        prompt : str, or array-like (T,) of labels, or (n, T) for n prompts
            The first tokens (at least one), labels of :attr:`classes_`;
            a ``str`` is read as its characters. ``n`` prompts of the same
            length are continued at once, as ``n`` streams.
        n_steps : int
            Tokens to generate (>= 1).
        temperature : float, default=1.0
            Below 1 sharpens the distribution, above 1 flattens it; 0 takes
            the most probable token every step (greedy, no draw).
        top_k : int, optional
            Draw among the ``top_k`` most probable tokens only.
        random_state : None, int or numpy Generator, optional

        Returns
        -------
        The ``n_steps`` generated tokens after the prompt: a ``str`` for a
        ``str`` prompt, else an ndarray ``(n_steps,)`` of labels
        (``(n, n_steps)`` for ``n`` prompts).

        Examples
        --------
        >>> import numpy as np
        >>> from crnn import RNNClassifier
        >>> from crnn.preprocessing import one_hot
        >>> text = "abcd" * 50
        >>> chars, codes = np.unique(list(text), return_inverse=True)
        >>> X, y = one_hot(codes[:-1], 4)[None], chars[codes[1:]][None]
        >>> model = RNNClassifier(16, return_sequences=True, max_iter=200,
        ...                       learning_rate=1e-2, random_state=0).fit(X, y)
        >>> model.generate("ab", 6, temperature=0)
        'cdabcd'
        """
        self._check_architecture()
        n_steps = operator.index(n_steps)
        if n_steps < 1:
            raise ValueError(f"n_steps must be at least 1; got {n_steps}")
        if not Interval("real", 0, None).is_satisfied_by(temperature):
            raise ValueError(f"temperature must be a finite number >= 0; got "
                             f"{temperature!r}")
        V = self.classes_.size
        if top_k is not None:
            top_k = operator.index(top_k)
            if not 1 <= top_k <= V:
                raise ValueError(f"top_k must be between 1 and the number of classes, "
                                 f"{V}; got {top_k}")
        tokens_in = self.vocab_size is not None
        if not self.return_sequences or (self.vocab_size if tokens_in
                                         else self.n_features_in_) != V:
            raise ValueError(
                f"generate needs a next-token model: return_sequences=True and, per "
                f"step, the one-hot of the previous token (one input feature per "
                f"class) or its id (vocab_size = the number of classes); this model "
                f"has return_sequences={self.return_sequences}, "
                + (f"vocab_size={self.vocab_size}" if tokens_in
                   else f"{self.n_features_in_} features") + f" and {V} classes")
        text = isinstance(prompt, str)
        tokens = np.array(list(prompt)) if text else np.asarray(prompt)
        single = tokens.ndim == 1
        tokens = tokens[None] if single else tokens
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise ValueError(f"prompt must be (T,) or (n, T) labels with T >= 1; got "
                             f"shape {np.shape(prompt)}")
        codes = self._encode(tokens.ravel(), self.classes_).reshape(tokens.shape)
        rng = v.check_random_state(random_state)
        stream = self.stream(tokens.shape[0])
        # the input of a token: its id, or its one-hot vector (a row of eye)
        eye = None if tokens_in else np.eye(V, dtype=self.params_.dtype)

        def encode(ids):
            return ids if eye is None else eye[ids]

        P = stream._run(np.ascontiguousarray(encode(codes.T)))[0][-1]
        out = np.empty((n_steps, tokens.shape[0]), np.intp)
        for k in range(n_steps):
            out[k] = _draw(P, temperature, top_k, rng)
            if k + 1 < n_steps:
                P = stream._outputs(encode(out[k]))
        labels = self.classes_[out.T]
        if text:
            return "".join(labels[0])
        return labels[0] if single else labels

    def score(self, X, y, lengths=None, sample_weight=None):
        """Accuracy over every scored label (every step with
        return_sequences), weighted by ``sample_weight`` (as for :meth:`fit`)."""
        pred = self.predict(X, lengths)
        seqs = self._sequences(X, np.float64, lengths, self.n_features_in_)
        labels = self._labels(y, seqs)
        if self.return_sequences:
            pred, labels = _scored_rows(pred, seqs), labels.data.reshape(-1)
        w = _score_weights(sample_weight, seqs, self.return_sequences, len(labels))
        return float(np.average(pred == labels, weights=w[:, 0]))


def _draw(P, temperature, top_k, rng):
    """One class index per row of probabilities ``P`` (n, V): the argmax for
    ``temperature == 0``, else a draw from ``softmax(log P / temperature)``
    over each row's ``top_k`` largest, by one uniform number per row."""
    if temperature == 0:
        return np.argmax(P, axis=1)
    with np.errstate(divide="ignore"):
        z = np.log(P.astype(np.float64)) / temperature
    if top_k is not None and top_k < P.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k, None]
        z = np.where(z >= kth, z, -np.inf)
    w = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(w, axis=1)
    u = rng.random(P.shape[0]) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), P.shape[1] - 1)
