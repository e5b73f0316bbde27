# cython: language_level=3
"""The activation codes: the one table of crnn's activations.

Re-exported by ``activations.pxd``, the public name (``from
crnn.kernels.activations cimport TANH``); ``_elementwise.pxd`` reads them
from here, so that the Python view in ``activations.pyx`` can run the
element-wise passes without an import cycle.

Each activation ``g`` is applied in place to a block of pre-activations, and
its derivative is computed from the activation's *output* ``h = g(a)``, so
that forward only has to keep ``h`` for backward. The hidden activations
(the Elman cell's) are C passes, ``g`` and ``g'`` each written once in
``elementwise.h``; the softmax is the output layer's only (``stack.pyx``):

==========  ===============================  ==================================
code        g(a)                             g'(a) written with h
==========  ===============================  ==================================
IDENTITY    a                                1
TANH        tanh(a)                          1 - h^2
SIGMOID     1 / (1 + exp(-a))                h (1 - h)
RELU        max(a, 0)                        1 if h > 0 else 0
SOFTMAX     exp(a_j) / sum_k exp(a_k)        dh_j/da_k = h_j (delta_jk - h_k)
==========  ===============================  ==================================
"""


cdef enum Activation:
    IDENTITY = 0
    TANH = 1
    SIGMOID = 2
    RELU = 3
    SOFTMAX = 4       # output layer only
