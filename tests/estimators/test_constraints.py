"""crnn._constraints: each constraint against values that satisfy it and
values that do not, and the message of validate_params."""
from fractions import Fraction

import numpy as np
import pytest

from crnn._constraints import (Boolean, FloatDtype, Interval, Options, RandomState,
                               Verbose, validate_params)
from crnn import RNNClassifier, RNNRegressor


@pytest.mark.parametrize("constraint, good, bad", [
    (Interval("integer", 1, None), [1, 7, np.int64(3), np.uint8(2)],
     [0, -1, 1.0, True, np.bool_(True), "1", None]),
    (Interval("real", 0, 1), [0, 0.5, np.float32(0.25), Fraction(1, 3), 0.999],
     [1, 1.0, -1e-9, np.nan, np.inf, True, "0.5", None]),
    (Interval("real", 0, 1, closed="neither"), [1e-12, 0.5], [0, 1]),
    (Interval("real", 0, None, closed="neither"), [1e-300, 1e300], [0, -1, np.inf]),
    (Interval("real", None, None), [-1e300, 0, 1e300], [np.nan, -np.inf]),
    (Interval("real", 0, 1, closed="both"), [0, 1], [1.0000001]),
    (Options("adam", "sgd"), ["adam", np.str_("sgd")], ["Adam", "lbfgs", 0, None,
                                                         np.array(["adam"])]),
    (Boolean(), [True, False, np.bool_(True)], [0, 1, "yes", None]),
    (Verbose(), [True, False, 0, 5, np.int32(2)], [-1, 0.5, "yes"]),
    (FloatDtype(), ["float32", "float64", np.float32, np.dtype("f8")],
     ["int32", "float16", np.complex128, "foo"]),
    (RandomState(), [None, 0, 42, np.random.default_rng(0), np.random.RandomState(0)],
     [-5, 1.5, "abc", True]),
])
def test_constraint(constraint, good, bad):
    for value in good:
        assert constraint.is_satisfied_by(value), value
    for value in bad:
        assert not constraint.is_satisfied_by(value), value


@pytest.mark.parametrize("constraint, text", [
    (Interval("integer", 1, None), "an integer >= 1"),
    (Interval("integer", 1, 5, closed="both"), "an integer in [1, 5]"),
    (Interval("real", 0, 1), "a finite real number in [0, 1)"),
    (Interval("real", 0, None, closed="neither"), "a finite real number in (0, inf)"),
    (Interval("real", None, None), "a finite real number in (-inf, inf)"),
    (Options("a", "b"), "one of 'a', 'b'"),
])
def test_description(constraint, text):
    assert str(constraint) == text


def test_validate_params_message():
    constraints = {"a": [Interval("integer", 1, None)],
                   "b": [None, Interval("real", 0, None, closed="neither")]}
    validate_params(constraints, {"a": 3, "b": None})
    validate_params(constraints, {"a": 3, "b": 0.1})
    with pytest.raises(ValueError, match=r"^a must be an integer >= 1; got 0$"):
        validate_params(constraints, {"a": 0, "b": None})
    with pytest.raises(ValueError, match=r"^b must be None or a finite real number in "
                                         r"\(0, inf\); got -1$"):
        validate_params(constraints, {"a": 1, "b": -1})


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_every_hyper_parameter_has_constraints(cls):
    """The table covers exactly the __init__ parameters."""
    assert set(cls._parameter_constraints) == set(cls().get_params())
