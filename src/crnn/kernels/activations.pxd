# cython: language_level=3
"""Activation codes of the Elman kernels, and the derivative pass of BPTT.

Each activation ``g`` is applied in place to a block of pre-activations (in
C, ``elementwise.h``), and its derivative is computed from the activation's
*output* ``h = g(a)``, so that forward only has to keep ``h`` for backward:

==========  ===============================  ======================
code        g(a)                             g'(a) written with h
==========  ===============================  ======================
IDENTITY    a                                1
TANH        tanh(a)                          1 - h^2
SIGMOID     1 / (1 + exp(-a))                h (1 - h)
RELU        max(a, 0)                        1 if h > 0 else 0
==========  ===============================  ======================
"""
from cython cimport floating


cpdef enum Activation:
    IDENTITY = 0
    TANH = 1
    SIGMOID = 2
    RELU = 3


cdef inline void mul_derivative(Py_ssize_t n, floating* dA,
                                const floating* dh_a, const floating* dh_b,
                                const floating* h, int g) noexcept nogil:
    """dA[k] = (dh_a[k] + dh_b[k]) * g'(a[k]), with g' taken from h = g(a)."""
    cdef Py_ssize_t k
    if g == TANH:
        for k in range(n):
            dA[k] = (dh_a[k] + dh_b[k]) * (1 - h[k] * h[k])
    elif g == SIGMOID:
        for k in range(n):
            dA[k] = (dh_a[k] + dh_b[k]) * (h[k] * (1 - h[k]))
    elif g == RELU:
        for k in range(n):
            dA[k] = dh_a[k] + dh_b[k] if h[k] > 0 else 0
    else:
        for k in range(n):
            dA[k] = dh_a[k] + dh_b[k]
