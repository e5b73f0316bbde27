"""Exceptions and warnings raised by crnn."""

__all__ = ["NotFittedError", "ConvergenceWarning", "TrainingDivergedError", "ModelFileError"]


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``.

    Inherits from both ``ValueError`` and ``AttributeError``, as
    scikit-learn's exception of the same name does, so that code written for
    either catches it.
    """


class ConvergenceWarning(UserWarning):
    """Training stopped at ``max_iter`` before the loss stopped improving."""


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
