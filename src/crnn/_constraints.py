"""Declarative hyper-parameter constraints, checked by one function.

Each estimator states, per hyper-parameter, the list of constraints a value
may satisfy (any one of them will do), in the manner of scikit-learn's
``_parameter_constraints``::

    _parameter_constraints = {
        "hidden_size": [Interval("integer", 1, None)],
        "clip_norm": [None, Interval("real", 0, None, closed="neither")],
        "solver": [Options("adam", "sgd")],
    }

and :func:`validate_params` checks every value against its list. A value
that satisfies none of them raises ``ValueError("<name> must be <what the
constraints describe>; got <value!r>")``. Rules that tie several
hyper-parameters together (say, ``bptt_steps`` with ``bidirectional``) are
not constraints of one value and stay with the estimator.
"""
import math
import numbers
import operator

import numpy as np

__all__ = ["Interval", "Options", "Boolean", "Verbose", "FloatDtype", "RandomState",
           "validate_params"]


class Constraint:
    """A set of admissible values with a description for error messages."""

    def is_satisfied_by(self, value):
        raise NotImplementedError

    def __str__(self):
        raise NotImplementedError


class _NoneConstraint(Constraint):
    def is_satisfied_by(self, value):
        return value is None

    def __str__(self):
        return "None"


def _is_integer(value):
    """Anything ``operator.index`` takes (ints, NumPy integers), but booleans."""
    if isinstance(value, (bool, np.bool_)):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _is_real(value):
    return (isinstance(value, (numbers.Real, np.floating, np.integer))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))


class Interval(Constraint):
    """Integers or finite reals between ``left`` and ``right``.

    Parameters
    ----------
    kind : {"integer", "real"}
    left, right : number or None
        Bounds; None is unbounded (``-inf`` / ``inf``).
    closed : {"left", "right", "both", "neither"}, default="left"
        Which bounds belong to the interval.
    """

    def __init__(self, kind, left, right, *, closed="left"):
        if kind not in ("integer", "real"):
            raise ValueError(f"kind must be 'integer' or 'real'; got {kind!r}")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def is_satisfied_by(self, value):
        if not (_is_integer(value) if self.kind == "integer" else _is_real(value)):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left
                                     and self.closed not in ("left", "both")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right
                                      and self.closed not in ("right", "both")):
                return False
        return True

    def __str__(self):
        if self.kind == "integer" and self.right is None and self.closed in ("left", "both"):
            return f"an integer >= {self.left}"
        lo = "[" if self.closed in ("left", "both") and self.left is not None else "("
        hi = "]" if self.closed in ("right", "both") and self.right is not None else ")"
        left = "-inf" if self.left is None else self.left
        right = "inf" if self.right is None else self.right
        what = "an integer" if self.kind == "integer" else "a finite real number"
        return f"{what} in {lo}{left}, {right}{hi}"


class Options(Constraint):
    """One of a fixed set of values (compared with ``==``)."""

    def __init__(self, *options):
        self.options = options

    def is_satisfied_by(self, value):
        try:
            return any(isinstance(value, type(option)) and value == option
                       for option in self.options)
        except (TypeError, ValueError):  # arrays and other odd values
            return False

    def __str__(self):
        return "one of " + ", ".join(repr(o) for o in self.options)


class Boolean(Constraint):
    """``True`` or ``False`` (Python or NumPy booleans)."""

    def is_satisfied_by(self, value):
        return isinstance(value, (bool, np.bool_))

    def __str__(self):
        return "True or False"


class Verbose(Constraint):
    """A bool, or an int >= 0 (print every that many epochs)."""

    def is_satisfied_by(self, value):
        return isinstance(value, (bool, np.bool_)) or (_is_integer(value) and value >= 0)

    def __str__(self):
        return "a bool or an int >= 0"


class FloatDtype(Constraint):
    """Anything ``numpy.dtype`` reads as float32 or float64."""

    def is_satisfied_by(self, value):
        try:
            return np.dtype(value) in (np.float32, np.float64)
        except TypeError:
            return False

    def __str__(self):
        return "'float32' or 'float64'"


class RandomState(Constraint):
    """None, an int, a ``numpy.random.Generator`` or a ``RandomState``."""

    def is_satisfied_by(self, value):
        return value is None or (_is_integer(value) and value >= 0) or isinstance(
            value, (np.random.Generator, np.random.RandomState))

    def __str__(self):
        return "None, an int >= 0, a numpy Generator or a RandomState"


class Dict(Constraint):
    """A dict (its entries are checked where they are used)."""

    def is_satisfied_by(self, value):
        return isinstance(value, dict)

    def __str__(self):
        return "a dict"


class Callbacks(Constraint):
    """A list or tuple of callbacks: objects with an ``on_epoch_end(model,
    record)`` method, or callables ``f(model, record)``."""

    def is_satisfied_by(self, value):
        return isinstance(value, (list, tuple)) and all(
            callable(getattr(c, "on_epoch_end", c)) for c in value)

    def __str__(self):
        return ("a list of callbacks (objects with on_epoch_end(model, record), or "
                "callables f(model, record))")


def _make(constraint):
    return _NoneConstraint() if constraint is None else constraint


def validate_params(constraints, params):
    """Check every value of ``params`` against its list of constraints.

    Parameters
    ----------
    constraints : dict of str to list
        For each hyper-parameter, the constraints of which a valid value
        satisfies at least one (``None`` in a list admits None).
    params : dict of str to object
        The values, e.g. ``estimator.get_params(deep=False)``.

    Raises
    ------
    ValueError
        For the first value (in the order of ``constraints``) that satisfies
        none of its constraints: ``"<name> must be <...>; got <value!r>"``.
    """
    for name, options in constraints.items():
        value = params[name]
        options = [_make(c) for c in options]
        if not any(c.is_satisfied_by(value) for c in options):
            described = [str(c) for c in options]
            if len(described) > 1:
                described = [", ".join(described[:-1]) + " or " + described[-1]]
            raise ValueError(f"{name} must be {described[0]}; got {value!r}")
