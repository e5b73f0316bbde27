"""Checks and conversions of user input, run before any kernel.

Every check raises ``TypeError`` or ``ValueError`` with a message that says
what was expected and what was given. Non-contiguous arrays and other
numeric dtypes are converted, not refused.
"""
import numbers

import numpy as np


def as_float_array(a, name, dtype):
    """``a`` as an array of ``dtype``; TypeError if it is not numeric."""
    try:
        arr = np.asarray(a)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(
            f"{name} could not be made into an array ({exc}). crnn takes "
            f"sequences of one length in a 3-D array (n_samples, n_timesteps, "
            f"n_features); pad or cut sequences of other lengths."
        ) from None
    if arr.dtype.kind in "biuf":
        return np.asarray(arr, dtype=dtype)
    if arr.dtype.kind == "O":
        try:
            return np.asarray(arr, dtype=dtype)
        except (TypeError, ValueError):
            pass
    raise TypeError(
        f"{name} must hold real numbers; got an array of dtype {arr.dtype}"
        + (" (complex numbers are not supported)" if arr.dtype.kind == "c" else "")
    )


def check_finite(arr, name):
    """ValueError naming the first NaN or infinity of ``arr``, if any."""
    if not np.isfinite(arr).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(
            f"{name} contains NaN or infinity (the first at index {where}: "
            f"{arr[where]}); remove or impute missing values before fitting"
        )


def check_X(X, dtype, n_features=None):
    """Validate sequence inputs and return them as ``(n, T, F)``, C-contiguous.

    A 2-D ``X`` is ``(n_samples, n_timesteps)``: a batch of univariate
    series, one feature per step.
    """
    if X is None:
        raise TypeError("X must be an array of sequences; got None")
    X = as_float_array(X, "X", dtype)
    if X.ndim == 2:
        X = X[:, :, None]
    if X.ndim != 3:
        raise ValueError(
            f"X must be 3-D (n_samples, n_timesteps, n_features) or 2-D "
            f"(n_samples, n_timesteps); got an array of shape {X.shape}"
        )
    if 0 in X.shape:
        raise ValueError(
            f"X is empty: shape {X.shape} (n_samples, n_timesteps, n_features); "
            f"at least one sample, one time step and one feature are needed"
        )
    if n_features is not None and X.shape[2] != n_features:
        raise ValueError(
            f"X has {X.shape[2]} features per time step, but this model was "
            f"fitted with {n_features}"
        )
    check_finite(X, "X")
    return np.ascontiguousarray(X)


def check_sample_count(X, y):
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and y have different numbers of samples: X has {X.shape[0]}, "
            f"y has {y.shape[0]}"
        )


def check_regression_targets(y, X, return_sequences, dtype):
    """Return regression targets as ``(n, O)`` or, for sequences, ``(n, T, O)``.

    Returns
    -------
    y : ndarray
    squeeze : bool
        Whether ``y`` had no output axis (predictions will drop it too).
    """
    if y is None:
        raise TypeError("y must be an array of targets; got None")
    y = as_float_array(y, "y", dtype)
    n, T = X.shape[:2]
    if return_sequences:
        if y.ndim not in (2, 3) or y.shape[1] != T:
            raise ValueError(
                f"with return_sequences=True, y holds one target per time step: "
                f"shape (n_samples, n_timesteps) or (n_samples, n_timesteps, "
                f"n_outputs) = ({n}, {T}[, n_outputs]); got shape {y.shape}"
            )
        squeeze = y.ndim == 2
        y = y[:, :, None] if squeeze else y
    else:
        if y.ndim not in (1, 2):
            raise ValueError(
                f"with return_sequences=False, y holds one target per sequence: "
                f"shape (n_samples,) or (n_samples, n_outputs); got shape "
                f"{y.shape}. For one target per time step set return_sequences=True"
            )
        squeeze = y.ndim == 1
        y = y[:, None] if squeeze else y
    check_sample_count(X, y)
    if 0 in y.shape:
        raise ValueError(f"y is empty: shape {y.shape}")
    check_finite(y, "y")
    return np.ascontiguousarray(y), squeeze


def check_class_labels(y, X, return_sequences):
    """Return class labels as an array ``(n,)`` or, for sequences, ``(n, T)``."""
    if y is None:
        raise TypeError("y must be an array of class labels; got None")
    y = np.asarray(y)
    n, T = X.shape[:2]
    expected = (n, T) if return_sequences else (n,)
    if y.ndim != len(expected):
        what = ("one label per time step, shape (n_samples, n_timesteps)"
                if return_sequences else "one label per sequence, shape (n_samples,)")
        hint = ("" if return_sequences
                else "; for one label per time step set return_sequences=True")
        raise ValueError(f"y must hold {what} = {expected}; got shape {y.shape}{hint}")
    check_sample_count(X, y)
    if y.shape != expected:
        raise ValueError(f"y must have shape {expected} (one label per time step); "
                         f"got shape {y.shape}")
    if y.dtype.kind == "f":
        check_finite(y, "y")
    if y.dtype.kind == "c":
        raise TypeError("class labels cannot be complex numbers")
    return y


def check_random_state(seed):
    """A ``numpy.random.Generator`` from None, an int, a Generator or a RandomState."""
    if seed is None or isinstance(seed, (numbers.Integral, np.integer)):
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(np.iinfo(np.int32).max))
    raise ValueError(
        f"random_state must be None, an int, a numpy Generator or a RandomState; "
        f"got {seed!r}"
    )
