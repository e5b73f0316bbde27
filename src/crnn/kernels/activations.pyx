"""Python view of the activation codes declared in ``activations.pxd``."""
from cython cimport floating

from crnn.kernels._elementwise cimport bias_activation

#: Activation name -> code understood by the kernels.
CODES = {
    "identity": IDENTITY,
    "tanh": TANH,
    "sigmoid": SIGMOID,
    "relu": RELU,
}


def apply(str name, floating[:, ::1] A, const floating[::1] b):
    """A = g(A + b) in place, with the kernels' own element-wise pass.

    For tests and for checking the accuracy of the vectorized activations;
    ``name`` is a key of :data:`CODES`.
    """
    if A.shape[1] != b.shape[0]:
        raise ValueError(f"b must have {A.shape[1]} entries; got {b.shape[0]}")
    cdef int g = CODES[name]
    if A.shape[0] and A.shape[1]:
        with nogil:
            bias_activation(A.shape[0], A.shape[1], &A[0, 0], &b[0], g)
