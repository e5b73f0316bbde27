# cython: language_level=3, boundscheck=False, wraparound=False
"""A small extension that runs crnn's kernels through their C-level API.

It stands for another compiled package: it only ``cimport``s the ``.pxd``
files that crnn ships, checks at import that the running crnn has the C ABI
it was built against, allocates every array itself, and calls the kernels
without the GIL.
"""
import numpy as np

from crnn.kernels.abi cimport check_c_abi
from crnn.kernels.activations cimport TANH
from crnn.kernels.blas cimport NoTrans, Trans, gemm
from crnn.kernels.elman cimport elman_step
from crnn.kernels.gru cimport gru_forward, gru_forward_work_size, gru_gates_size
from crnn.kernels.lstm cimport (
    lstm_forward, lstm_forward_work_size, lstm_gates_size, lstm_step, lstm_step_work_size,
)

# Refuse to run against a crnn whose C ABI differs from the one compiled in.
check_c_abi(__name__)


cdef void add_bias(Py_ssize_t N, Py_ssize_t O, double* Y, const double* b) noexcept nogil:
    cdef Py_ssize_t i, o
    for i in range(N):
        for o in range(O):
            Y[i * O + o] += b[o]


def lstm_sequence(const double[:, ::1] X, const Py_ssize_t[::1] batch_sizes,
                  const double[:, ::1] W_ih, const double[:, ::1] W_hh,
                  const double[::1] b, const double[:, ::1] W_y, const double[::1] b_y):
    """Outputs (N, O) of a one-layer LSTM and a linear head on a packed batch."""
    cdef Py_ssize_t N = X.shape[0], I = X.shape[1], H = W_hh.shape[1]
    cdef Py_ssize_t B = batch_sizes[0], T = batch_sizes.shape[0], O = W_y.shape[0]
    cdef double[::1] gates = np.empty(lstm_gates_size(N, H))
    cdef double[:, ::1] Hs = np.empty((N, H)), Cs = np.empty((N, H))
    cdef double[:, ::1] zeros = np.zeros((B, H)), h_n = np.empty((B, H)), c_n = np.empty((B, H))
    cdef double[:, ::1] Y = np.empty((N, O))
    cdef double[::1] work = np.empty(lstm_forward_work_size(I, H))
    with nogil:
        lstm_forward(T, &batch_sizes[0], I, H, &X[0, 0], &W_ih[0, 0], &W_hh[0, 0], &b[0],
                     &zeros[0, 0], &zeros[0, 0], &gates[0], &Hs[0, 0], &Cs[0, 0],
                     &h_n[0, 0], &c_n[0, 0], &work[0], False)
        # Y(N, O) = Hs(N, H) @ W_y^T
        gemm(NoTrans, Trans, N, O, H, 1.0, &Hs[0, 0], H, &W_y[0, 0], H, 0.0, &Y[0, 0], O)
        add_bias(N, O, &Y[0, 0], &b_y[0])
    return np.asarray(Y)


def lstm_stream(const double[:, :, ::1] X, const double[:, ::1] W_ih,
                const double[:, ::1] W_hh, const double[::1] b):
    """Hidden states (T, B, H) of a one-layer LSTM fed one step at a time."""
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], I = X.shape[2], H = W_hh.shape[1]
    cdef double[:, :, ::1] Hs = np.empty((T, B, H))
    cdef double[:, ::1] h = np.zeros((B, H)), c = np.zeros((B, H))
    cdef double[:, ::1] c_next = np.empty((B, H))
    cdef double[::1] work = np.empty(lstm_step_work_size(B, H))
    cdef Py_ssize_t t
    with nogil:
        for t in range(T):
            lstm_step(B, I, H, &X[t, 0, 0], &W_ih[0, 0], &W_hh[0, 0], &b[0],
                      &h[0, 0], &c[0, 0], &Hs[t, 0, 0], &c_next[0, 0], &work[0])
            h[...] = Hs[t]
            c[...] = c_next
    return np.asarray(Hs)


def gru_sequence(const double[:, ::1] X, const Py_ssize_t[::1] batch_sizes,
                 const double[:, ::1] W_ih, const double[:, ::1] W_hh,
                 const double[::1] b, const double[::1] b_hn, bint reverse):
    """Packed states (N, H) and final states (B, H) of a one-layer GRU."""
    cdef Py_ssize_t N = X.shape[0], I = X.shape[1], H = W_hh.shape[1]
    cdef Py_ssize_t B = batch_sizes[0], T = batch_sizes.shape[0]
    cdef double[::1] gates = np.empty(gru_gates_size(N, H))
    cdef double[::1] work = np.empty(gru_forward_work_size(B, I, H))
    cdef double[:, ::1] hn = np.empty((N, H)), Hs = np.empty((N, H))
    cdef double[:, ::1] zeros = np.zeros((B, H)), h_n = np.empty((B, H))
    with nogil:
        gru_forward(T, &batch_sizes[0], I, H, &X[0, 0], &W_ih[0, 0], &W_hh[0, 0], &b[0],
                    &b_hn[0], &zeros[0, 0], &gates[0], &hn[0, 0], &Hs[0, 0], &h_n[0, 0],
                    &work[0], reverse)
    return np.asarray(Hs), np.asarray(h_n)


def elman_stream(const double[:, :, ::1] X, const double[:, ::1] W_ih,
                 const double[:, ::1] W_hh, const double[::1] b):
    """Hidden states (T, B, H) of a tanh Elman layer fed one step at a time."""
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], I = X.shape[2], H = W_hh.shape[1]
    cdef double[:, :, ::1] Hs = np.empty((T, B, H))
    cdef double[:, ::1] h0 = np.zeros((B, H))
    cdef Py_ssize_t t
    with nogil:
        elman_step(B, I, H, &X[0, 0, 0], &W_ih[0, 0], &W_hh[0, 0], &b[0], &h0[0, 0],
                   &Hs[0, 0, 0], TANH)
        for t in range(1, T):
            elman_step(B, I, H, &X[t, 0, 0], &W_ih[0, 0], &W_hh[0, 0], &b[0],
                       &Hs[t - 1, 0, 0], &Hs[t, 0, 0], TANH)
    return np.asarray(Hs)
