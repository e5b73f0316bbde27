"""Checks and conversions of user input, run before any kernel.

Every check raises ``TypeError`` or ``ValueError`` with a message that says
what was expected and what was given. Non-contiguous arrays and other
numeric dtypes are converted, not refused. The estimators, the weight
interchange (``crnn.interop``) and persistence all validate arrays here.
"""
import numbers
import warnings

import numpy as np

from crnn._sequences import Sequences

try:  # pragma: no cover - exercised whichever way the environment is
    from sklearn.exceptions import DataConversionWarning
except ImportError:  # pragma: no cover
    DataConversionWarning = UserWarning


class DataTypeError(TypeError, ValueError):
    """Data of a kind crnn cannot take -- complex numbers, a missing ``y`` --
    as a TypeError, and also the ValueError scikit-learn raises for it."""


def real_array(a, name, allow_bool=True):
    """``a`` as a NumPy array of real numbers (any real dtype, not converted;
    booleans count as 0 and 1 unless ``allow_bool`` is False).

    Raises
    ------
    TypeError
        If ``a`` cannot be made into an array, does not hold real numbers
        (complex ones: :class:`DataTypeError`, also a ValueError), or is
        a sparse matrix.
    ValueError
        For ragged nested sequences.
    """
    if hasattr(a, "tocsr") and hasattr(a, "nnz"):          # scipy.sparse
        raise TypeError(f"{name} is a sparse matrix ({type(a).__name__}); sparse input "
                        f"is not supported: sequences are dense arrays (call .toarray())")
    try:
        arr = np.asarray(a)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(
            f"{name} could not be made into an array ({exc}). Sequences of "
            f"different lengths go in a list of (n_timesteps_i, n_features) "
            f"arrays, or in a padded 3-D array with lengths=..."
        ) from None
    except Exception as exc:
        raise TypeError(f"{name} must be an array of real numbers; converting "
                        f"{type(a).__name__} to an array failed ({exc})") from None
    if arr.dtype.kind in ("biuf" if allow_bool else "iuf"):
        return arr
    if arr.dtype.kind == "O":
        try:
            return np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must hold real numbers; got an array of dtype "
                            f"object whose values are not all numbers ({exc})") from None
    if arr.dtype.kind == "c":
        raise DataTypeError(f"{name} must hold real numbers; got an array of dtype "
                            f"{arr.dtype}: Complex data not supported")
    raise TypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}")


def as_float_array(a, name, dtype):
    """``a`` as an array of ``dtype``; TypeError if it is not numeric."""
    return np.asarray(real_array(a, name), dtype=dtype)


def nonfinite_index(arr):
    """The index of the first NaN or infinity of ``arr``, or None."""
    bad = ~np.isfinite(arr)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


def check_finite(arr, name, remedy="remove or impute missing values before fitting"):
    """ValueError naming the first NaN or infinity of ``arr``, if any."""
    where = nonfinite_index(arr)
    if where is not None:
        raise ValueError(
            f"{name} contains NaN or infinity (the first at index {where}: "
            f"{arr[where]}); {remedy}"
        )


def cast_finite(arr, name, dtype, remedy="the weights must be finite"):
    """A C-contiguous copy of ``arr`` in ``dtype``, with a ValueError for NaN,
    infinity or values that overflow ``dtype``."""
    if arr.dtype.kind == "f":
        check_finite(arr, name, remedy)
    with np.errstate(over="ignore"):
        cast = np.array(arr, dtype=dtype, order="C", copy=True)
    where = nonfinite_index(cast)
    if where is not None:
        raise ValueError(f"{name} has a value that overflows {np.dtype(dtype).name} "
                         f"(the first at index {where}: {arr[where]}); the model's "
                         f"dtype is {np.dtype(dtype).name}")
    return cast


def class_labels(y, name="y"):
    """Class labels as an array of one kind: numbers, or unicode strings.

    Strings given in a list or an object array (what pandas gives) become a
    unicode array, so that a fitted classifier's ``classes_`` can be saved.
    Refused: a mix of numbers and strings (TypeError), other objects, byte
    strings included (TypeError), complex numbers (TypeError), NaN or infinity (ValueError),
    and continuous values -- floats that are not whole numbers -- which are
    regression targets, not labels (ValueError).
    """
    a = np.asarray(y)
    if a.dtype.kind == "O" or (a.dtype.kind in "US" and not isinstance(y, np.ndarray)):
        a = _uniform_labels(np.asarray(y, dtype=object), name)
    if a.dtype.kind == "S":
        raise TypeError(f"{name} holds byte strings; decode class labels to str "
                        f"(e.g. numpy.char.decode) first")
    if a.dtype.kind == "c":
        raise TypeError("class labels cannot be complex numbers")
    if a.dtype.kind == "f":
        check_finite(a, name, "class labels must be finite")
        whole = a == np.round(a)
        if not whole.all():
            where = tuple(int(i) for i in np.argwhere(~whole)[0])
            raise ValueError(
                f"{name} holds continuous values (the first at index {where}: "
                f"{a[where]}), not class labels: a classifier needs labels that are "
                f"whole numbers or strings. For real-valued targets use RNNRegressor"
            )
    return a


def _uniform_labels(obj, name):
    """An object array of labels as a numeric or a unicode array."""
    flat = obj.ravel()
    is_str = np.array([isinstance(x, str) for x in flat], dtype=bool)
    if is_str.all():
        return obj.astype(str)
    is_number = np.array([isinstance(x, (numbers.Real, np.bool_)) for x in flat],
                         dtype=bool)
    if is_number.all():
        return np.asarray(flat.tolist()).reshape(obj.shape)
    if (is_str | is_number).all():
        number, string = flat[np.argmax(is_number)], flat[np.argmax(is_str)]
        raise TypeError(
            f"class labels must be of one sortable type (all numbers or all "
            f"strings); {name} mixes numbers and strings, e.g. {number!r} and {string!r}"
        )
    other = flat[np.argmax(~(is_str | is_number))]
    raise TypeError(f"class labels must be numbers or strings; {name} holds "
                    f"{type(other).__name__} {other!r}")


def unique_labels(labels, name="classes"):
    """Sorted distinct labels (checked by :func:`class_labels`)."""
    try:
        return np.unique(class_labels(labels, name))
    except TypeError as exc:
        if "class labels" in str(exc):
            raise
        raise TypeError(
            f"class labels must be of one sortable type (all numbers or all "
            f"strings); sorting them failed with: {exc}"
        ) from None


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
            + (". Reshape your data: one sequence of single values is "
               "X.reshape(1, -1), one of vectors X[None]" if X.ndim < 2 else "")
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


def check_regression_targets(y, n, dtype):
    """One regression target per sequence, as ``(n, O)``.

    Returns
    -------
    y : ndarray (n, O)
    squeeze : bool
        Whether ``y`` had no output axis (predictions will drop it too).
    """
    if y is None:
        raise DataTypeError("y must be an array of targets; got None (the estimator "
                            "requires y to be passed, but the target y is None)")
    y = as_float_array(y, "y", dtype)
    if y.ndim not in (1, 2):
        raise ValueError(
            f"with return_sequences=False, y holds one target per sequence: "
            f"shape (n_samples,) or (n_samples, n_outputs); got shape "
            f"{y.shape}. For one target per time step set return_sequences=True"
        )
    squeeze = y.ndim == 1
    y = y[:, None] if squeeze else y
    _check_count(n, y.shape[0])
    if 0 in y.shape:
        raise ValueError(f"y is empty: shape {y.shape}")
    check_finite(y, "y")
    return np.ascontiguousarray(y), squeeze


def _check_count(n_X, n_y, name="y"):
    if n_X != n_y:
        raise ValueError(
            f"X and {name} have different numbers of samples: X has {n_X}, {name} has {n_y}"
        )


def check_class_labels(y, n):
    """One class label per sequence, as an array ``(n,)``."""
    if y is None:
        raise DataTypeError("y must be an array of class labels; got None (the "
                            "estimator requires y to be passed, but the target y is None)")
    y = class_labels(y, "y")
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(f"A column-vector y was passed when a 1d array was expected: one "
                      f"label per sequence is (n_samples,); y {y.shape} is read as "
                      f"y.ravel()", DataConversionWarning, stacklevel=4)
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(
            f"y must hold one label per sequence, shape (n_samples,) = ({n},); got "
            f"shape {y.shape}; for one label per time step set return_sequences=True"
        )
    _check_count(n, y.shape[0])
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


def _as_sequence_list(X):
    """``X`` as a list of per-sequence arrays if it is a ragged collection."""
    if isinstance(X, (list, tuple)) and len(X) and all(
            hasattr(x, "__len__") and not isinstance(x, (str, bytes)) for x in X):
        lengths = {len(x) for x in X}
        first = np.asarray(X[0]) if lengths else None
        if len(lengths) > 1 or (first is not None and first.dtype == object):
            return list(X)
    return None


def check_sequences(X, dtype, lengths=None, n_features=None, name="X"):
    """Validate input sequences and return them as a :class:`Sequences`.

    Accepted forms:

    * a 3-D array ``(n_samples, n_timesteps, n_features)``, or 2-D
      ``(n_samples, n_timesteps)`` for one feature per step;
    * the same with ``lengths`` (n_samples,): sequence ``i`` is
      ``X[i, :lengths[i]]`` and the rest is padding, never read;
    * a list of arrays ``(n_timesteps_i, n_features)`` or ``(n_timesteps_i,)``,
      of any lengths.
    """
    ragged = _as_sequence_list(X) if lengths is None else None
    if ragged is not None:
        return _check_sequence_list(ragged, dtype, n_features, name)
    seqs = check_X(X, dtype, n_features)
    n, T = seqs.shape[:2]
    if lengths is None:
        every = np.empty(n, dtype=np.intp)
        every.fill(T)
        return Sequences(seqs, every, True, as_list=isinstance(X, (list, tuple)))
    lengths = check_lengths(lengths, n, T)
    if (lengths == T).all():
        return Sequences(seqs, lengths, True)
    rows = np.concatenate([seqs[i, :L] for i, L in enumerate(lengths)])
    return Sequences(np.ascontiguousarray(rows), lengths, False)


def check_tokens(X, vocab_size, lengths=None, name="X"):
    """Validate token-id sequences and return them as a :class:`Sequences`
    of ``intp`` ids, one per step (items of shape ``(1,)``).

    Accepted forms, the token ids being whole numbers in ``[0, vocab_size)``:

    * a 2-D array ``(n_samples, n_timesteps)``;
    * the same with ``lengths``: sequence ``i`` is ``X[i, :lengths[i]]`` and
      the rest is padding, never read (nor checked);
    * a list of 1-D arrays ``(n_timesteps_i,)`` of any lengths.
    """
    if X is None:
        raise TypeError(f"{name} must hold sequences of token ids; got None")
    ragged = _as_sequence_list(X) if lengths is None else None
    if ragged is not None:
        arrays = [_token_array(x, f"{name}[{i}]", 1) for i, x in enumerate(ragged)]
        for i, a in enumerate(arrays):
            if a.size == 0:
                raise ValueError(f"{name}[{i}] is empty: every sequence needs at least "
                                 f"one step")
        seqs = Sequences(np.concatenate(arrays)[:, None], [a.size for a in arrays], False,
                         as_list=True)
    else:
        arr = _token_array(X, name, 2)
        if 0 in arr.shape:
            raise ValueError(f"{name} is empty: shape {arr.shape} (n_samples, "
                             f"n_timesteps); at least one sample and one step are needed")
        n, T = arr.shape
        lengths = None if lengths is None else check_lengths(lengths, n, T)
        if lengths is None or (lengths == T).all():
            every = np.full(n, T, dtype=np.intp)
            seqs = Sequences(arr[:, :, None], every, True,
                             as_list=isinstance(X, (list, tuple)))
        else:
            rows = np.concatenate([arr[i, :L] for i, L in enumerate(lengths)])
            seqs = Sequences(rows[:, None], lengths, False)
    ids = seqs.data.reshape(-1)
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        first = ids[np.argmax(bad)]
        raise ValueError(f"{name} holds the token id {first}, outside the vocabulary "
                         f"[0, {vocab_size}) (vocab_size={vocab_size})")
    return seqs


def _token_array(x, name, ndim):
    """``x`` as a C-contiguous ``intp`` array of ``ndim`` dimensions."""
    arr = real_array(x, name, allow_bool=False)
    if arr.dtype.kind == "f":
        check_finite(arr, name, "token ids must be whole numbers")
        if not (arr == np.round(arr)).all():
            raise TypeError(f"{name} must hold whole token ids; got fractional values "
                            f"of dtype {arr.dtype}")
    if arr.ndim != ndim:
        shape = "(n_samples, n_timesteps)" if ndim == 2 else "(n_timesteps,)"
        raise ValueError(f"{name} must be {ndim}-D {shape} token ids (a model with "
                         f"vocab_size reads one id per step); got shape {arr.shape}")
    with np.errstate(invalid="ignore"):
        ids = np.ascontiguousarray(arr, dtype=np.intp)
    if arr.dtype.kind in "uf" and (ids != arr).any():
        raise ValueError(f"{name} holds a token id too large for an index")
    return ids


def check_lengths(lengths, n, T):
    """``lengths`` as an int array of ``n`` values in ``[1, T]``."""
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu" and not (
            arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise TypeError(f"lengths must be whole numbers; got an array of dtype {arr.dtype}")
    arr = arr.astype(np.intp)
    if arr.shape != (n,):
        raise ValueError(f"lengths must have one entry per sequence, shape ({n},); "
                         f"got shape {arr.shape}")
    bad = (arr < 1) | (arr > T)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"lengths must lie in [1, {T}] (the padded length); "
                         f"lengths[{i}] = {arr[i]}")
    return arr


def _check_sequence_list(items, dtype, n_features, name):
    arrays = []
    for i, x in enumerate(items):
        a = as_float_array(x, f"{name}[{i}]", dtype)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ValueError(f"{name}[{i}] must be 2-D (n_timesteps, n_features) or 1-D "
                             f"(n_timesteps,); got shape {a.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"{name}[{i}] is empty: every sequence needs at least one step")
        arrays.append(a)
    widths = {a.shape[1] for a in arrays}
    if len(widths) > 1:
        raise ValueError(f"the sequences of {name} have different numbers of features: "
                         f"{sorted(widths)}")
    F = widths.pop()
    if F == 0:
        raise ValueError(f"the sequences of {name} have no features")
    if n_features is not None and F != n_features:
        raise ValueError(f"{name} has {F} features per time step, but this model was "
                         f"fitted with {n_features}")
    data = np.concatenate(arrays)
    check_finite(data, name)
    return Sequences(np.ascontiguousarray(data), [a.shape[0] for a in arrays], False,
                     as_list=True)


def check_step_targets(y, seqs, what, dtype=None, name="y"):
    """Per-step targets for the sequences ``seqs``, as a :class:`Sequences`.

    ``what`` is ``"values"`` (regression; float ``dtype``, items ``(O,)``) or
    ``"labels"`` (classification; items are scalars of any type). ``y`` is a
    list with one array per sequence, or an array ``(n, T[, O])`` padded like
    the inputs. ``name`` is what the messages call ``y``.

    Returns
    -------
    targets : Sequences
    squeeze : bool
        Whether the values had no output axis.
    """
    if y is None:
        raise DataTypeError("y must hold targets; got None (the estimator requires y to "
                            "be passed, but the target y is None)")
    n, lengths = seqs.n, seqs.lengths
    item_ndim = 1 if what == "values" else 0
    ragged = _as_sequence_list(y)
    if ragged is not None or (isinstance(y, (list, tuple)) and not seqs.uniform):
        items = list(y)
        if len(items) != n:
            raise ValueError(f"X and {name} have different numbers of sequences: X has "
                             f"{n}, {name} has {len(items)}")
        arrays = [_step_target_array(v, what, dtype, f"{name}[{i}]")
                  for i, v in enumerate(items)]
        for i, (a, L) in enumerate(zip(arrays, lengths)):
            if a.shape[0] != L:
                raise ValueError(f"{name}[{i}] has {a.shape[0]} time steps, but X[{i}] has "
                                 f"{L}: with return_sequences=True there is one value per step")
        squeeze = what == "values" and all(a.ndim == 1 for a in arrays)
        if what == "values":
            arrays = [a[:, None] if a.ndim == 1 else a for a in arrays]
            widths = {a.shape[1] for a in arrays}
            if len(widths) > 1:
                raise ValueError(f"the targets have different numbers of outputs: {sorted(widths)}")
        data = np.concatenate(arrays)
        if what == "values":
            check_finite(data, name)
        return Sequences(data, lengths, False), squeeze
    arr = _step_target_array(y, what, dtype, name)
    T = int(lengths.max())
    if arr.ndim >= 1:
        _check_count(n, arr.shape[0], name)
    if what == "values":
        item = "target" if name == "y" else "value"
        expected = (f"with return_sequences=True, {name} holds one {item} per time step: "
                    f"shape (n_samples, n_timesteps) or (n_samples, n_timesteps, "
                    f"n_outputs) = ({n}, {T}[, n_outputs])")
    else:
        expected = (f"y must hold one label per time step, shape (n_samples, "
                    f"n_timesteps) = ({n}, {T})")
    if arr.ndim not in (2, 2 + item_ndim) or arr.shape[1] < T or (
            seqs.uniform and arr.shape[1] != T):
        raise ValueError(f"{expected}; got shape {arr.shape}")
    squeeze = what == "values" and arr.ndim == 2
    if squeeze:
        arr = arr[:, :, None]
    if seqs.uniform:
        if what == "values":
            check_finite(arr, name)
        return Sequences(np.ascontiguousarray(arr), lengths, True), squeeze
    rows = np.concatenate([arr[i, :L] for i, L in enumerate(lengths)])
    if what == "values":
        check_finite(rows, name)
    return Sequences(np.ascontiguousarray(rows), lengths, False), squeeze


def check_sample_weight(sample_weight, seqs, per_step, dtype):
    """Loss weights, finite and >= 0, not all 0: one per sequence,
    ``(n_samples,)``, or (``per_step``, for sequence-to-sequence models) one
    per time step -- padded ``(n_samples, n_timesteps)`` like ``y``, or a
    list of ``(n_timesteps_i,)`` arrays.

    Returns None for None; per sequence, an ``(n,)`` array; per step, a
    :class:`Sequences` of every step's weight (a sequence's weight repeated
    over its steps, when one per sequence is given).
    """
    if sample_weight is None:
        return None
    n = seqs.n
    per_sequence = None
    if _as_sequence_list(sample_weight) is None and not (
            isinstance(sample_weight, (list, tuple)) and len(sample_weight)
            and np.ndim(sample_weight[0]) >= 1):
        per_sequence = as_float_array(sample_weight, "sample_weight", dtype)
    if per_sequence is not None and per_sequence.ndim == 1:
        _check_count(n, per_sequence.shape[0], "sample_weight")
        weights = np.repeat(per_sequence, seqs.lengths) if per_step else per_sequence
    elif per_step:
        steps, _ = check_step_targets(
            sample_weight if per_sequence is None else per_sequence, seqs, "values", dtype,
            "sample_weight")
        weights = steps.data.reshape(-1)
    else:
        raise ValueError(f"sample_weight holds one weight per sequence, shape "
                         f"(n_samples,) = ({n},); got shape {np.shape(sample_weight)}")
    check_finite(weights, "sample_weight", "weights must be finite")
    if (weights < 0).any():
        raise ValueError("sample_weight must be >= 0; got a negative weight")
    if not weights.sum() > 0:
        raise ValueError("sample_weight sums to zero: with every weight zero there "
                         "would be nothing to train on")
    weights = np.ascontiguousarray(weights, dtype=dtype)
    return Sequences(weights, seqs.lengths, False) if per_step else weights


def _step_target_array(v, what, dtype, name):
    if what == "values":
        return as_float_array(v, name, dtype)
    return class_labels(v, name)
