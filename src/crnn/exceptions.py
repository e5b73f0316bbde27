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
    """The training loss or its gradient became NaN or infinite.

    The estimator keeps the last weights for which a whole epoch had a finite
    loss, so nothing that was learned before the divergence is lost.
    """


class ModelFileError(ValueError):
    """A file given to :func:`crnn.load` is not a valid crnn model file.

    The message names the file and what is wrong with it: not a zip archive,
    a damaged or missing member, an unknown or newer format version, an
    unknown hyper-parameter, an array of the wrong dtype or shape, a
    non-finite value, ...
    """
