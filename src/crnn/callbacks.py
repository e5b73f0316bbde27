"""Callbacks for ``fit``: called after every epoch, able to stop training.

An estimator's ``callbacks`` hyper-parameter is a list of them. After each
epoch, the estimator holds that epoch's fitted state (its weights,
optimizer state, random generator and ``history_``) and each callback is
called with the estimator and the epoch's record of ``history_``; a callback
that returns True ends the fit after that epoch. A plain function
``f(model, record)`` works as well as an object with ``on_epoch_end``.

If a callback raises, the fit stops and the estimator stays at the last
completed epoch (the one the callback was called for).
"""
import math
import os

from crnn._io import save

__all__ = ["Checkpoint", "StopAt"]


class Checkpoint:
    """Save the model after every epoch, or after every epoch that improves
    on the best so far, with :func:`crnn.save` (atomically: a crash while
    saving leaves the previous checkpoint in place).

    The file holds the whole fitted state -- weights, optimizer state,
    random generator, counters and history -- so a fit resumed from it
    (``crnn.load(path)``, then ``set_params(warm_start=True, max_iter=<the
    epochs left>)`` and ``fit`` on the same data) takes the same steps, bit
    for bit, as the fit that was never stopped, as long as every epoch's
    learning rate is a function of the epoch (any ``lr_schedule`` but
    ``"adaptive"``; for ``"cosine"``, its period set with ``lr_step``
    rather than taken from ``max_iter``, which the resumed fit changes) and
    early stopping, if on, does not draw its validation set
    (``validation_split="last"`` or ``validation_data``).

    Parameters
    ----------
    path : str or path-like
        Where to save; ``"{epoch}"`` in it is replaced by the epoch's number
        (one file per epoch).
    monitor : {"loss", "validation_loss"}, default="loss"
        The record entry that decides whether an epoch is the best.
    save_best_only : bool, default=True
        Save only an epoch whose ``monitor`` is lower than every earlier
        epoch's of this fit; False saves every epoch.

    Attributes
    ----------
    best_ : float
        The lowest ``monitor`` seen.
    saved_ : list of str
        The paths written, in order.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from crnn import RNNRegressor, load
    >>> from crnn.callbacks import Checkpoint
    >>> X = np.random.default_rng(0).normal(size=(32, 8, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "best.npz")
    >>> model = RNNRegressor(8, max_iter=5, random_state=0,
    ...                      callbacks=[Checkpoint(path)]).fit(X, X[:, -1, 0])
    >>> load(path).n_iter_ <= 5
    True
    """

    def __init__(self, path, monitor="loss", save_best_only=True):
        if monitor not in ("loss", "validation_loss"):
            raise ValueError(f"monitor must be 'loss' or 'validation_loss'; got {monitor!r}")
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.best_ = math.inf
        self.saved_ = []

    def on_epoch_end(self, model, record):
        value = record[self.monitor]
        if value is None:
            raise ValueError("Checkpoint(monitor='validation_loss') needs a validation "
                             "loss: set early_stopping=True or pass validation_data")
        if self.save_best_only and not value < self.best_:
            return False
        self.best_ = min(self.best_, value)
        path = self.path.replace("{epoch}", str(record["epoch"]))
        save(model, path)
        self.saved_.append(path)
        return False


class StopAt:
    """Stop the fit once a record entry reaches a threshold.

    Parameters
    ----------
    monitor : str, default="loss"
        An entry of the epoch records (``history_``).
    below : float
        Stop after the first epoch whose ``monitor`` is at most this.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNRegressor
    >>> from crnn.callbacks import StopAt
    >>> X = np.random.default_rng(0).normal(size=(32, 8, 2))
    >>> model = RNNRegressor(8, max_iter=500, learning_rate=1e-2, random_state=0,
    ...                      callbacks=[StopAt(below=0.5)]).fit(X, X[:, -1, 0])
    >>> model.loss_ <= 0.5 and model.n_iter_ < 500
    True
    """

    def __init__(self, monitor="loss", *, below):
        self.monitor = monitor
        self.below = float(below)

    def on_epoch_end(self, model, record):
        value = record[self.monitor]
        return value is not None and value <= self.below
