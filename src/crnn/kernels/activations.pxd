# cython: language_level=3
"""Activation codes of the Elman kernels.

Each activation ``g`` is applied in place to a block of pre-activations, and
its derivative is computed from the activation's *output* ``h = g(a)``, so
that forward only has to keep ``h`` for backward (both passes are in C,
``elementwise.h``):

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
