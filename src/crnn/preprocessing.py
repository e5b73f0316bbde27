"""Preparing sequence data: windows of a series, and per-feature scaling.

:func:`make_windows` cuts one or more time series into the ``(X, y)`` pairs
of a forecasting problem; :func:`one_hot` turns integer-coded tokens into
the inputs of a next-token model; :class:`SequenceScaler` standardises (or
min-max scales) each feature over every step of every sequence, for 3-D
arrays, padded arrays with ``lengths`` and ragged lists, and inverts it --
on the inputs in a ``Pipeline``, and on the targets of a forecast.
"""
import numbers
import operator

import numpy as np

from crnn import _validation as v
from crnn._compat import BaseEstimator
from crnn.exceptions import NotFittedError

__all__ = ["make_windows", "SequenceScaler", "one_hot"]


def _series_list(series):
    """``series`` as a list of ``(T_i, F)`` float arrays: several series if
    it is a list or tuple of NumPy arrays, else one."""
    several = isinstance(series, (list, tuple)) and len(series) and all(
        isinstance(s, np.ndarray) for s in series)
    parts = [v.as_float_array(s, "series", np.float64)
             for s in (series if several else [series])]
    univariate = parts[0].ndim == 1
    out = []
    for k, part in enumerate(parts):
        if part.ndim not in (1, 2) or (part.ndim == 1) != univariate:
            raise ValueError(f"every series must be 1-D (T,) or, for all of them, 2-D "
                             f"(T, n_features); series {k} has shape {part.shape}")
        part = part[:, None] if univariate else part
        if out and part.shape[1] != out[0].shape[1]:
            raise ValueError(f"series {k} has {part.shape[1]} features; the first has "
                             f"{out[0].shape[1]}")
        v.check_finite(part, f"series {k}")
        out.append(part)
    return out


def one_hot(codes, n_classes, *, dtype=np.float64):
    """Integer codes as one-hot vectors: ``out[..., j] = (codes[...] == j)``.

    Parameters
    ----------
    codes : array-like of int, any shape, each in ``[0, n_classes)``
    n_classes : int
    dtype : float dtype, default=float64

    Returns
    -------
    ndarray of shape ``codes.shape + (n_classes,)``

    Examples
    --------
    >>> from crnn.preprocessing import one_hot
    >>> one_hot([2, 0], 3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    n_classes = operator.index(n_classes)
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1; got {n_classes}")
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu" and not (codes.dtype.kind == "b" or codes.size == 0):
        raise ValueError(f"codes must be integers; got dtype {codes.dtype}")
    codes = codes.astype(np.intp, copy=False)
    if codes.size and (codes.min() < 0 or codes.max() >= n_classes):
        raise ValueError(f"codes must lie in [0, {n_classes}); got values from "
                         f"{codes.min()} to {codes.max()}")
    out = np.zeros(codes.shape + (n_classes,), dtype)
    np.put_along_axis(out, codes[..., None], 1, axis=-1)
    return out


def make_windows(series, lookback, horizon=1, *, stride=1, targets=None,
                 sequence_targets=False, return_index=False):
    """Windows of a time series (or of several) and the values that follow them.

    For every start ``s = 0, stride, 2 stride, ...`` of each series ``x``
    (``T`` steps) with ``s + lookback + horizon <= T``::

        X[k] = x[s : s + lookback]                              (lookback, F)
        y[k] = x[s + lookback : s + lookback + horizon, targets]  the next values

    so ``X`` is ``(n, lookback, F)`` and ``y`` ``(n, horizon)`` for one
    target feature (``(n, horizon, n_targets)`` for more), a
    sequence-to-one problem with ``n_outputs = horizon`` (a direct
    multi-horizon forecast). With ``sequence_targets``, ``y[k]`` is instead
    the target values ``horizon`` steps after every step of the window,
    ``x[s + horizon : s + lookback + horizon, targets]`` ``(n, lookback[,
    n_targets])``: a sequence-to-sequence problem (``return_sequences``).

    Parameters
    ----------
    series : array-like (T,) or (T, F), or a list of such NumPy arrays
        (several series, of any lengths; no window crosses from one to the
        next)
    lookback : int
        Steps in each window (>= 1).
    horizon : int, default=1
        Steps ahead to predict (>= 1).
    stride : int, default=1
        Steps between the starts of consecutive windows (>= 1).
    targets : int or sequence of int, optional
        The features (columns) the targets are taken from; all of them by
        default. A single int gives ``y`` without a target axis.
    sequence_targets : bool, default=False
    return_index : bool, default=False
        Also return ``index`` ``(n, 2)``: for each window, its series and
        the time (in that series) of its first target value,
        ``s + lookback`` (``s + horizon`` with ``sequence_targets``).

    Returns
    -------
    X : ndarray (n, lookback, F)
    y : ndarray
    index : ndarray (n, 2), with ``return_index``

    Examples
    --------
    >>> import numpy as np
    >>> from crnn.preprocessing import make_windows
    >>> X, y = make_windows(np.arange(10.0), lookback=3, horizon=2)
    >>> X.shape, y.shape
    ((6, 3, 1), (6, 2))
    >>> X[0, :, 0].tolist(), y[0].tolist()
    ([0.0, 1.0, 2.0], [3.0, 4.0])
    """
    parts = _series_list(series)
    lookback = _positive("lookback", lookback)
    horizon = _positive("horizon", horizon)
    stride = _positive("stride", stride)
    F = parts[0].shape[1]
    single = targets is None and F == 1 or isinstance(targets, numbers.Integral)
    columns = np.arange(F) if targets is None else np.atleast_1d(np.asarray(targets))
    if columns.dtype.kind not in "iu" or columns.ndim != 1 or columns.size == 0 or (
            (columns < -F) | (columns >= F)).any():
        raise ValueError(f"targets must be feature indices in [0, {F}); got {targets!r}")
    Xs, ys, index = [], [], []
    for k, x in enumerate(parts):
        n = (x.shape[0] - lookback - horizon) // stride + 1
        if n <= 0:
            continue
        starts = np.arange(n) * stride
        window = starts[:, None] + np.arange(lookback)
        Xs.append(x[window])
        if sequence_targets:
            ys.append(x[window + horizon][..., columns])
            first = starts + horizon
        else:
            ys.append(x[starts[:, None] + lookback + np.arange(horizon)][..., columns])
            first = starts + lookback
        index.append(np.column_stack([np.full(n, k), first]))
    if not Xs:
        raise ValueError(f"no series is long enough for one window: each needs at "
                         f"least lookback + horizon = {lookback + horizon} steps; the "
                         f"longest has {max(x.shape[0] for x in parts)}")
    X, y = np.concatenate(Xs), np.concatenate(ys)
    if single:
        y = y[..., 0]
    if return_index:
        return X, y, np.concatenate(index).astype(np.intp)
    return X, y


def _positive(name, value):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int; got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1; got {value}")
    return value


class SequenceScaler(BaseEstimator):
    """Per-feature scaling over every step of every sequence.

    ``method="standard"``: ``x' = (x - mean) / std`` per feature;
    ``"minmax"``: ``x' = lo + (x - min) (hi - lo) / (max - min)`` with
    ``(lo, hi) = feature_range``. The statistics are taken over all the
    steps of all the sequences (the real steps only, for a padded array
    with ``lengths``); a feature that is constant gets a scale of 1.

    Accepted forms, in :meth:`fit`, :meth:`transform` and
    :meth:`inverse_transform`, each given back in its own form:

    * a 3-D array ``(n, T, F)``; a padded one with ``lengths``, whose
      padding is passed through unchanged;
    * a 2-D array ``(n, T)`` (one feature per step) or a 1-D array ``(n,)``
      (one value per sequence: the targets of a sequence-to-one model);
    * a list of ``(T_i, F)`` or ``(T_i,)`` arrays, of any lengths.

    NaN and infinity are refused (as by the estimators): impute first.

    Parameters
    ----------
    method : {"standard", "minmax"}, default="standard"
    feature_range : (float, float), default=(0, 1)
        ``(lo, hi)`` of ``"minmax"``.

    Attributes
    ----------
    center_ : ndarray (F,)
        The mean (``"standard"``) or ``min - lo * range / (hi - lo)``.
    scale_ : ndarray (F,)
        What ``x - center_`` is divided by.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from crnn.preprocessing import SequenceScaler
    >>> X = [np.array([[1.0], [2.0], [3.0]]), np.array([[5.0]])]
    >>> scaled = SequenceScaler().fit_transform(X)
    >>> [s.ravel().round(3).tolist() for s in scaled]
    [[-1.183, -0.507, 0.169], [1.521]]
    """

    def __init__(self, method="standard", feature_range=(0.0, 1.0)):
        self.method = method
        self.feature_range = feature_range

    def _rows(self, X, lengths, fitted):
        """The values of ``X`` as ``(rows, F)``, and a function putting rows
        of that shape back into ``X``'s form."""
        if isinstance(X, (list, tuple)) and len(X) and lengths is None:
            items = [v.as_float_array(x, "X", np.float64) for x in X]
            flat = all(x.ndim == 1 for x in items)
            items = [x[:, None] if x.ndim == 1 else x for x in items]
            for k, x in enumerate(items):
                if x.ndim != 2 or x.shape[0] == 0:
                    raise ValueError(f"X[{k}] must be a non-empty (T_i,) or (T_i, "
                                     f"n_features) array; got shape {x.shape}")
            self._check_features(items[0].shape[1], fitted)
            rows = np.concatenate(items)
            if any(x.shape[1] != rows.shape[1] for x in items):
                raise ValueError("every sequence must have the same number of features")
            v.check_finite(rows, "X")
            bounds = np.cumsum([0] + [x.shape[0] for x in items])

            def back(R):
                return [R[a:b, 0] if flat else R[a:b] for a, b in zip(bounds[:-1],
                                                                      bounds[1:])]
            return rows, back
        arr = v.as_float_array(X, "X", np.float64)
        if arr.ndim == 1:
            arr3 = arr[:, None, None]
        elif arr.ndim == 2:
            arr3 = arr[:, :, None]
        elif arr.ndim == 3:
            arr3 = arr
        else:
            raise ValueError(f"X must be 1-D (n,), 2-D (n, T), 3-D (n, T, F) or a list "
                             f"of sequences; got an array of shape {arr.shape}")
        if 0 in arr3.shape:
            raise ValueError(f"X is empty: shape {arr.shape}")
        self._check_features(arr3.shape[2], fitted)
        n, T, F = arr3.shape
        mask = np.ones((n, T), dtype=bool)
        if lengths is not None:
            mask = np.arange(T) < v.check_lengths(lengths, n, T)[:, None]
        rows = arr3[mask]
        v.check_finite(rows, "X")

        def back(R):
            out = arr3.copy()
            out[mask] = R
            return out.reshape(arr.shape)
        return rows, back

    def _check_features(self, F, fitted):
        if fitted and F != self.n_features_in_:
            raise ValueError(f"X has {F} features per step, but this SequenceScaler was "
                             f"fitted with {self.n_features_in_}")

    def fit(self, X, y=None, lengths=None):
        """Learn each feature's center and scale from ``X``.

        Returns
        -------
        self
        """
        if self.method not in ("standard", "minmax"):
            raise ValueError(f"method must be 'standard' or 'minmax'; got {self.method!r}")
        rows, _ = self._rows(X, lengths, fitted=False)
        if self.method == "standard":
            center, scale = rows.mean(axis=0), rows.std(axis=0)
        else:
            try:
                lo, hi = (float(b) for b in self.feature_range)
            except (TypeError, ValueError):
                raise ValueError(f"feature_range must be (lo, hi); got "
                                 f"{self.feature_range!r}") from None
            if not lo < hi:
                raise ValueError(f"feature_range must have lo < hi; got "
                                 f"{self.feature_range!r}")
            low, span = rows.min(axis=0), rows.max(axis=0) - rows.min(axis=0)
            span = np.where(span == 0, 1.0, span)
            scale = span / (hi - lo)
            center = low - lo * scale
        self.scale_ = np.where(scale == 0, 1.0, scale)
        self.center_ = center
        self.n_features_in_ = rows.shape[1]
        return self

    def _check_is_fitted(self):
        if not hasattr(self, "scale_"):
            raise NotFittedError("this SequenceScaler instance is not fitted yet; call "
                                 "fit first")

    def transform(self, X, lengths=None):
        """``(X - center_) / scale_`` per feature, in ``X``'s form."""
        self._check_is_fitted()
        rows, back = self._rows(X, lengths, fitted=True)
        return back((rows - self.center_) / self.scale_)

    def inverse_transform(self, X, lengths=None):
        """``X * scale_ + center_`` per feature, in ``X``'s form: the values
        before :meth:`transform` (to rounding)."""
        self._check_is_fitted()
        rows, back = self._rows(X, lengths, fitted=True)
        return back(rows * self.scale_ + self.center_)

    def fit_transform(self, X, y=None, lengths=None):
        """:meth:`fit`, then :meth:`transform` of the same ``X``."""
        return self.fit(X, y, lengths).transform(X, lengths)
