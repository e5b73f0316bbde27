# cython: language_level=3
"""Elman (vanilla) recurrent layer: forward pass and backpropagation through time.

One layer, one direction, a batch of ``B`` sequences of equal length ``T``,
time-major and row-major throughout:

    X       (T, B, I)      inputs, X[t] = x_t
    W_ih    (H, I)         input weights (the seeds' W_x)
    W_hh    (H, H)         recurrent weights (the seeds' W_s)
    b       (H,)           bias
    H_all   (T + 1, B, H)  states: H_all[0] = h_0, H_all[t + 1] = h_{t+1}

Forward computes, for t = 1..T,

    h_t = g(W_ih x_t + W_hh h_{t-1} + b)

with ``g`` one of the codes of ``crnn.kernels.activations.Activation``.
All arrays are C-contiguous with the shapes above (leading dimensions equal
to the last extent); the caller allocates every output and workspace.
"""
from cython cimport floating


cdef void elman_forward(
    Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0,
    floating* H_all, int activation,
) noexcept nogil


# BPTT. On entry dH (T, B, H) holds dE/dh_t coming from above the layer (the
# output layer, or the next layer); on return it holds dE/da_t, the gradient
# of the pre-activations a_t = W_ih x_t + W_hh h_{t-1} + b. dh0 (B, H)
# receives dE/dh_0. dW_ih, dW_hh and db are ACCUMULATED into (+=); dX
# (T, B, I) is overwritten with dE/dx_t, or skipped when dX is NULL.
cdef void elman_backward(
    Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* H_all, floating* dH, floating* dh0, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, int activation,
) noexcept nogil
