"""Compiled kernels of crnn.

The ``.pxd`` files of this package are its C-level API: another Cython
extension can ``cimport`` them (``from crnn.kernels.elman cimport
elman_forward``) and run the kernels without the GIL. Each ``.pxd`` states
the shapes, layouts and leading dimensions its functions expect.

Modules
-------
blas
    Row-major fused float32/float64 wrappers over ``scipy.linalg.cython_blas``.
activations
    Element-wise activations and their derivatives (``.pxd`` only).
elman
    Elman RNN forward pass and backpropagation through time.
"""
