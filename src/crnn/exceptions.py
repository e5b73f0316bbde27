"""Exceptions and warnings raised by crnn.

When scikit-learn is installed, :class:`NotFittedError` and
:class:`ConvergenceWarning` derive from scikit-learn's classes of the same
names, so that ``except sklearn.exceptions.NotFittedError``, scikit-learn's
own checks and ``warnings.filterwarnings("ignore",
category=sklearn.exceptions.ConvergenceWarning)`` (in joblib workers too)
treat crnn's like scikit-learn's. Without it they derive from the same
built-in classes scikit-learn's do.
"""

__all__ = ["NotFittedError", "ConvergenceWarning", "TrainingDivergedError", "ModelFileError"]

try:  # pragma: no cover - exercised whichever way the environment is
    from sklearn import exceptions as _sklearn_exceptions

    _NOT_FITTED_BASES = (_sklearn_exceptions.NotFittedError,)
    _CONVERGENCE_BASE = _sklearn_exceptions.ConvergenceWarning
except ImportError:  # pragma: no cover
    _NOT_FITTED_BASES, _CONVERGENCE_BASE = (ValueError, AttributeError), UserWarning


class NotFittedError(*_NOT_FITTED_BASES):
    """An estimator was used before ``fit``.

    A ``ValueError`` and an ``AttributeError``, as scikit-learn's exception
    of the same name is (and, with scikit-learn installed, a subclass of
    it), so that code written for either catches it.
    """


class ConvergenceWarning(_CONVERGENCE_BASE):
    """Training stopped at ``max_iter`` before the loss stopped improving.

    A ``UserWarning`` (with scikit-learn installed, a subclass of
    ``sklearn.exceptions.ConvergenceWarning``).
    """


class TrainingDivergedError(FloatingPointError):
    """The training loss, its gradient or the weights became NaN or infinite.

    The estimator is left at the best epoch that the failed call completed,
    if its loss and gradient on the training data are finite, and otherwise
    exactly as it was before the call (see the Notes of ``fit``).
    """


class ModelFileError(ValueError):
    """A file given to :func:`crnn.load` is not a valid crnn model file.

    The message names the file and what is wrong with it: not a zip archive,
    a damaged or missing member, an unknown or newer format version, an
    unknown hyper-parameter, an array of the wrong dtype or shape, a
    non-finite value, ...
    """
