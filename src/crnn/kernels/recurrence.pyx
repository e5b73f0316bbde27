"""Argument checks shared by the Python entry points of the cell kernels.

The kernels trust their arguments; these checks run first, in O(T).
"""
import numpy as np


def check(bint ok, str what):
    """Raise ValueError(what) unless ok."""
    if not ok:
        raise ValueError(what)


def check_packed(const Py_ssize_t[::1] batch_sizes, Py_ssize_t N, Py_ssize_t B):
    """Check that ``batch_sizes`` describes ``N`` packed rows of ``B`` sequences.

    ``batch_sizes`` must be non-empty, start at ``B``, never increase and
    stay positive, and sum to ``N``.
    """
    cdef Py_ssize_t t, T = batch_sizes.shape[0], total = 0
    check(T >= 1, "batch_sizes is empty: at least one time step is needed")
    check(batch_sizes[0] == B,
          f"batch_sizes[0] = {batch_sizes[0]} must equal the number of sequences {B}")
    for t in range(T):
        check(batch_sizes[t] >= 1 and (t == 0 or batch_sizes[t] <= batch_sizes[t - 1]),
              "batch_sizes must be positive and non-increasing (sequences sorted "
              "longest first)")
        total += batch_sizes[t]
    check(total == N, f"batch_sizes sums to {total}, but the packed input has {N} rows")


def check_shape(a, tuple shape, str name):
    """Raise ValueError unless ``a.shape == shape``."""
    if a is not None and tuple(a.shape[:len(shape)]) != shape:
        raise ValueError(f"{name} must have shape {shape}; got {tuple(a.shape)}")

