"""Python view of the activation codes (``_activation_codes.pxd``)."""
import enum

from cython cimport floating

from crnn.kernels._elementwise cimport activation_grad, bias_activation

#: Every activation name -> its code (the ``Activation`` enum), softmax included.
ALL = {
    "identity": IDENTITY,
    "tanh": TANH,
    "sigmoid": SIGMOID,
    "relu": RELU,
    "softmax": SOFTMAX,
}

#: The codes as a Python enum: ``Activation.TANH``, ...
Activation = enum.IntEnum("Activation", {name.upper(): code for name, code in ALL.items()})

#: The hidden activations of the Elman cell: name -> code.
CODES = {name: ALL[name] for name in ("identity", "tanh", "sigmoid", "relu")}

#: The activations of the output layer: name -> code.
OUTPUTS = {name: ALL[name] for name in ("identity", "tanh", "sigmoid", "softmax")}


def apply(str name, floating[:, ::1] A not None, const floating[::1] b not None):
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


def apply_grad(str name, floating[::1] dA not None, const floating[::1] h not None):
    """dA = dA * g'(a) in place, g' written with the output h = g(a): the
    kernels' own derivative pass (for tests); ``name`` a key of :data:`CODES`."""
    if dA.shape[0] != h.shape[0]:
        raise ValueError(f"h must have {dA.shape[0]} entries; got {h.shape[0]}")
    cdef int g = CODES[name]
    if dA.shape[0]:
        with nogil:
            activation_grad(dA.shape[0], &dA[0], &h[0], g)
