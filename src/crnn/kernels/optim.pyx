# cython: language_level=3
"""Compiled parameter updates of crnn's optimizers (see ``crnn._optim``)."""
from cython cimport floating

from crnn.kernels._elementwise cimport adam


def adam_step(floating[::1] params not None, const floating[::1] grad not None,
              floating[::1] m not None, floating[::1] v not None, double step,
              double beta_1, double beta_2, double epsilon):
    """One Adam update of ``params``, ``m`` and ``v``, in place, in one pass::

        m <- beta_1 m + (1 - beta_1) g
        v <- beta_2 v + (1 - beta_2) g^2
        w <- w - step m / (sqrt(v) + epsilon)

    ``step`` is the learning rate with both bias corrections folded in,
    ``lr sqrt(1 - beta_2^t) / (1 - beta_1^t)``. All four arrays have one
    length and one dtype; the scalars are rounded to that dtype.
    """
    cdef Py_ssize_t n = params.shape[0]
    if grad.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError(
            f"adam_step needs arrays of one length; got params {n}, grad "
            f"{grad.shape[0]}, m {m.shape[0]}, v {v.shape[0]}"
        )
    if n:
        with nogil:
            adam(n, &params[0], &grad[0], &m[0], &v[0], step, beta_1, beta_2, epsilon)
