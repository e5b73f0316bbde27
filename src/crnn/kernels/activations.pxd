# cython: language_level=3
"""Element-wise activations shared by the recurrent kernels.

Each activation ``g`` is applied in place to a block of pre-activations, and
its derivative is computed from the activation's *output* ``h = g(a)``, so
that forward only has to keep ``h`` for backward:

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
from libc.math cimport exp, tanh


cpdef enum Activation:
    IDENTITY = 0
    TANH = 1
    SIGMOID = 2
    RELU = 3


cdef inline floating sigmoid(floating a) noexcept nogil:
    # Never exponentiates a positive number: no overflow for large |a|.
    cdef floating e
    if a >= 0:
        return 1 / (1 + exp(-a))
    e = exp(a)
    return e / (1 + e)


cdef inline void bias_activation(Py_ssize_t B, Py_ssize_t H, floating* A,
                                 const floating* b, int g) noexcept nogil:
    """A[i, j] = g(A[i, j] + b[j]) for the (B, H) row-major block A."""
    cdef Py_ssize_t i, j
    cdef floating* a
    for i in range(B):
        a = A + i * H
        if g == TANH:
            for j in range(H):
                a[j] = tanh(a[j] + b[j])
        elif g == SIGMOID:
            for j in range(H):
                a[j] = sigmoid(a[j] + b[j])
        elif g == RELU:
            for j in range(H):
                a[j] = a[j] + b[j] if a[j] + b[j] > 0 else 0
        else:
            for j in range(H):
                a[j] = a[j] + b[j]


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
