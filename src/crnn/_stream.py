"""Step-by-step inference: a fitted model's streams, their states kept inside."""
import operator

import numpy as np

from crnn import _validation as v

__all__ = ["Stream", "ClassifierStream"]


class Stream:
    """Online inference over ``n_streams`` sequences, one time step at a time.

    Made by ``model.stream(n_streams, initial_state=None)``. Each
    :meth:`step` takes the next input of every stream, ``x_t`` ``(n_streams,
    n_features)``, runs every layer's cell step from the states the stream
    holds, keeps the new states and returns the outputs::

        S^l_t = cell(S^{l-1}_t, S^l_{t-1}),    S^0_t = x_t
        Y_t   = g2(W_y S^L_t + b_y)

    so that ``T`` steps give what ``predict`` gives for the same sequences
    (with ``return_sequences``, its outputs at every step; without, at the
    last), to rounding: the products are the same, summed in another order.
    One compiled call per step, with no per-step allocation but the output.

    A stream runs the weights its model had when the stream was made (a
    later ``fit`` gives the model new weights, not the stream) and serves
    one thread at a time; bidirectional models cannot stream.

    For real-valued input, :meth:`step` is the compiled step itself (bound
    when the stream is made; ``ClassifierStream.step_proba`` likewise): a
    C-contiguous ``x`` of the model's dtype and shape runs with no Python
    frame in between, anything else is converted and checked first.

    For a model with ``vocab_size``, each step takes one token id per
    stream instead: ``x_t`` ``(n_streams,)`` (an int for one stream), and
    :meth:`steps` ``(n_steps, n_streams)`` (``(n_steps,)`` for one stream).

    Attributes
    ----------
    n_streams : int
    n_features_in_ : int
    """

    def __init__(self, model, n_streams, initial_state=None):
        model._check_architecture()
        if model.bidirectional:
            raise ValueError("a bidirectional model cannot stream: its reverse direction "
                             "reads each sequence from its last step")
        n_streams = operator.index(n_streams)
        network = model._network()
        self._network, self._model = network, model
        self.n_streams, self.n_features_in_ = n_streams, model.n_features_in_
        self._vocab = network.V
        self._dtype = model.params_.dtype
        self._squeeze = bool(getattr(model, "_squeeze", False))
        self._stepper = network.stack.stepper(
            model.params_, n_streams, squeeze=self._squeeze and not self._vocab,
            convert=self._step_input)
        if not self._vocab:
            # the compiled step as this stream's method: no Python frame per step
            setattr(self, self._COMPILED_STEP, self._stepper.step)
        self.reset(initial_state)

    #: The method that is the compiled step, for real-valued input.
    _COMPILED_STEP = "step"

    def reset(self, initial_state=None):
        """Start every stream again, from zero states or from
        ``initial_state`` (as ``predict``'s: ``(num_layers, n_streams,
        hidden_size)``, a pair ``(h0, c0)`` for the LSTM)."""
        parts = self._model._check_initial_state(initial_state, self.n_streams,
                                                 self._network)
        self._stepper.set_state(None if parts is None else np.stack(parts))

    @property
    def state(self):
        """The states now, as ``predict(..., return_state=True)`` gives them:
        ``(num_layers, n_streams, hidden_size)``, a pair ``(h, c)`` for the
        LSTM (copies)."""
        states = self._stepper.state
        return (states[0], states[1]) if states.shape[0] == 2 else states[0]

    def _outputs(self, x):
        """The network's outputs for the next inputs ``x``: ``(n_streams, O)``,
        or ``(O,)`` for a 1-D ``x`` of one stream (a token id, for tokens);
        squeezed as :meth:`step` gives them, for real-valued input."""
        if self._vocab:
            return self._token_outputs(x)
        return self._stepper.step(x)

    def _step_input(self, x):
        """``x`` converted to what the compiled step takes (a C-contiguous
        ``(n_streams, n_features)`` array of the model's dtype, or
        ``(n_features,)`` for one stream), or ValueError."""
        x = np.ascontiguousarray(v.as_float_array(x, "x", self._dtype))
        if x.shape != (self.n_streams, self.n_features_in_) and not (
                self.n_streams == 1 and x.shape == (self.n_features_in_,)):
            raise ValueError(
                f"x must have shape (n_streams, n_features) = ({self.n_streams}, "
                f"{self.n_features_in_}) (or (n_features,) for one stream); got {x.shape}")
        return x

    def _token_outputs(self, x):
        """:meth:`_outputs` for token ids: ``(n_streams,)`` ids, or one id."""
        if type(x) is np.ndarray and x.dtype == np.intp and x.shape == (self.n_streams,):
            return self._stepper.step(x)        # (the ids are checked there)
        single = np.ndim(x) == 0 and self.n_streams == 1
        ids = v.check_tokens(np.reshape(x, (1, -1)) if np.ndim(x) < 2 else x, self._vocab,
                             name="x").data.reshape(-1)
        if ids.shape != (self.n_streams,) or np.ndim(x) > 1:
            raise ValueError(f"x must hold one token id per stream, shape ({self.n_streams},)"
                             f" (or an int for one stream); got shape {np.shape(x)}")
        Y = self._stepper.step(ids)
        return Y[0] if single else Y

    def _run(self, X):
        """The outputs ``(T, n_streams, O)`` of ``T`` steps ``X``; and
        whether ``X`` came without the stream axis."""
        if self._vocab:
            single = np.ndim(X) == 1 and self.n_streams == 1
            ids = v.check_tokens(np.reshape(X, (-1, 1)) if single else X, self._vocab,
                                 name="X").data.reshape(np.shape(X)[0], -1)
            if ids.shape[1] != self.n_streams:
                raise ValueError(f"X must be (n_steps, n_streams) = (n_steps, "
                                 f"{self.n_streams}) token ids (or (n_steps,) for one "
                                 f"stream); got shape {np.shape(X)}")
            return self._stepper.run(ids), single
        X = v.as_float_array(X, "X", self._dtype)
        single = X.ndim == 2 and self.n_streams == 1
        if single:
            X = X[:, None, :]
        if X.ndim != 3 or X.shape[1:] != (self.n_streams, self.n_features_in_):
            raise ValueError(
                f"X must have shape (n_steps, n_streams, n_features) = (n_steps, "
                f"{self.n_streams}, {self.n_features_in_}) (or (n_steps, n_features) for "
                f"one stream); got {X.shape}")
        return self._stepper.run(np.ascontiguousarray(X)), single

    def step(self, x):
        """The outputs after the next input of every stream.

        Parameters
        ----------
        x : array-like (n_streams, n_features), or (n_features,) for one stream

        Returns
        -------
        ndarray (n_streams, n_outputs), or (n_streams,) when the model
        predicts 1-D targets; without the stream axis for a 1-D ``x``.
            The step's own outputs: no later step writes them (they are a
            view of a block of outputs that the stream allocates 64 KiB at
            a time).
        """
        Y = self._outputs(x)
        return Y[..., 0] if self._squeeze and self._vocab else Y

    def steps(self, X):
        """:meth:`step` over ``T`` steps at once, in one compiled call.

        Parameters
        ----------
        X : array-like (n_steps, n_streams, n_features), or (n_steps, n_features)
            for one stream

        Returns
        -------
        ndarray (n_steps, n_streams, n_outputs) (or as :meth:`step` per step)
        """
        Y, single = self._run(X)
        if self._squeeze:
            Y = Y[..., 0]
        return Y[:, 0] if single else Y


class ClassifierStream(Stream):
    """A :class:`Stream` of an ``RNNClassifier``: :meth:`step` gives labels,
    :meth:`step_proba` the class probabilities.

    Attributes
    ----------
    classes_ : ndarray
    """

    _COMPILED_STEP = "step_proba"

    def __init__(self, model, n_streams, initial_state=None):
        super().__init__(model, n_streams, initial_state)
        self.classes_ = model.classes_

    def step_proba(self, x):
        """Class probabilities after the next input of every stream:
        ``(n_streams, n_classes)``, columns in the order of ``classes_``
        (``(n_classes,)`` for a 1-D ``x``)."""
        return self._outputs(x)

    def step(self, x):
        """The most probable label of every stream after its next input:
        ``(n_streams,)`` (one label for a 1-D ``x``)."""
        return self.classes_[np.argmax(self._outputs(x), axis=-1)]

    def steps_proba(self, X):
        """:meth:`step_proba` over ``T`` steps at once: ``(n_steps, n_streams,
        n_classes)`` (``(n_steps, n_classes)`` for one stream's 2-D ``X``)."""
        P, single = self._run(X)
        return P[:, 0] if single else P

    def steps(self, X):
        """:meth:`step` over ``T`` steps at once: ``(n_steps, n_streams)``."""
        P, single = self._run(X)
        labels = self.classes_[np.argmax(P, axis=-1)]
        return labels[:, 0] if single else labels
