# cython: language_level=3
"""Activation codes, the ``int activation`` arguments of the kernels:
``IDENTITY``, ``TANH``, ``SIGMOID``, ``RELU`` (the Elman cell's hidden
activations) and ``SOFTMAX`` (the output layer's). The table, with each
function and its derivative, is ``_activation_codes.pxd``; this file is its
public name (and ``activations.Activation`` its Python enum).
"""
from crnn.kernels._activation_codes cimport IDENTITY, RELU, SIGMOID, SOFTMAX, TANH
