# cython: language_level=3
"""LSTM layer (PyTorch's equations and gate order): forward pass and BPTT.

One layer, one direction, over a packed batch (see ``recurrence.pxd``):
``T`` steps, ``B_t = batch_sizes[t]`` active sequences, ``N = sum_t B_t``
packed rows. Gates are stored side by side in the order (i, f, g, o), so
``G = 4H`` columns:

    X       (N, I)    inputs, packed
    W_ih    (4H, I)   input weights [W_ii; W_if; W_ig; W_io]
    W_hh    (4H, H)   recurrent weights [W_hi; W_hf; W_hg; W_ho]
    b       (4H,)     bias (PyTorch's b_ih + b_hh: the sum is all that matters)
    h0, c0  (B, H)    initial hidden and cell states
    gates   (N, 4H)   activated gates (i, f, g, o) of every row, kept for backward
    Hs, Cs  (N, H)    hidden and cell states h_t, c_t, packed
    h_n, c_n (B, H)   final states of each sequence (at its last step, or at
                      step 0 when ``reverse``)

    i = sigmoid(W_ii x + W_hi h_prev + b_i)     f = sigmoid(W_if x + W_hf h_prev + b_f)
    g = tanh(W_ig x + W_hg h_prev + b_g)        o = sigmoid(W_io x + W_ho h_prev + b_o)
    c_t = f * c_prev + i * g                    h_t = o * tanh(c_t)

All arrays are C-contiguous with leading dimension equal to their last extent.
The caller allocates everything; the sizes, in elements, are below.
"""
from cython cimport floating


cdef enum:
    LSTM_GATES = 4      # G = 4H: i, f, g, o
    LSTM_STATES = 2     # h, c


# ``work`` is a workspace of lstm_forward_work_size(I, H) elements (it
# receives the weights laid out for the per-step products).
cdef void lstm_forward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0, const floating* c0,
    floating* gates, floating* Hs, floating* Cs, floating* h_n, floating* c_n,
    floating* work, bint reverse,
) noexcept nogil


# lstm_forward when no backward pass follows (inference): the same Hs, Cs,
# h_n, c_n; ``gates`` is scratch (N, 4H), left holding nothing useful, which
# the fused step (blas.pxd) does not even touch.
cdef void lstm_forward_infer(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0, const floating* c0,
    floating* gates, floating* Hs, floating* Cs, floating* h_n, floating* c_n,
    floating* work, bint reverse,
) noexcept nogil


# BPTT through one forward pass.
#   dHs     (N, H)   dE/dh_t from above the layer (read only)
#   dgates  (N, 4H)  out: dE/d(gate pre-activations); may be ``gates`` itself
#                    (the activations are consumed step by step)
#   dh, dc  (B, H)   in: dE/dh_n, dE/dc_n; out: dE/dh0, dE/dc0
#   work             workspace of lstm_backward_work_size(N, I, H) elements
#   dX      (N, I)   out, overwritten; skipped when NULL
#   dW_ih, dW_hh, db ACCUMULATED into (+=)
cdef void lstm_backward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* c0,
    const floating* gates, const floating* Hs, const floating* Cs,
    const floating* dHs, floating* dgates, floating* dh, floating* dc,
    floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, bint reverse,
) noexcept nogil


# lstm_backward that also records dE/dh_t in total (from above the layer and
# through the later steps: what perturbing the state h_t changes the loss by)
#   dHs_total (N, H)  out, packed like Hs; lstm_backward is this with NULL
cdef void lstm_backward_dh(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* c0,
    const floating* gates, const floating* Hs, const floating* Cs,
    const floating* dHs, floating* dgates, floating* dh, floating* dc,
    floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, bint reverse,
    floating* dHs_total,
) noexcept nogil


# One step for streaming inference, for B sequences at once: (h, c) from
# (h_prev, c_prev) and x (B, I). ``gates`` is a workspace of
# lstm_step_work_size(B, H) elements; h and c must not overlap h_prev, c_prev.
cdef void lstm_step(
    Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* x, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h_prev, const floating* c_prev,
    floating* h, floating* c, floating* gates,
) noexcept nogil


# Sizes and offsets, in elements. Out of line: an extension that cimports
# them calls the formula of the crnn it runs against.

# ``gates`` of lstm_forward / lstm_backward: N * 4H.
cdef Py_ssize_t lstm_gates_size(Py_ssize_t N, Py_ssize_t H) noexcept nogil

# The ``gates`` workspace of lstm_step: B * 4H.
cdef Py_ssize_t lstm_step_work_size(Py_ssize_t B, Py_ssize_t H) noexcept nogil

# ``work`` of lstm_forward: the weights laid out for the per-step products,
# W_hh alone (packed_size(H, 4H)) or, for the fused step, [b; W_ih^T; W_hh^T]
# (lstm_packed_size(I, H), blas.pxd): the larger of the two.
cdef Py_ssize_t lstm_forward_work_size(Py_ssize_t I, Py_ssize_t H) noexcept nogil

# Where W_hh, laid out for the per-step products, starts in the ``work`` of
# lstm_backward: after (N + 4H) * (I + H) elements for the weight
# gradients, rounded up to a multiple of ALIGN (abi.pxd).
cdef Py_ssize_t lstm_backward_W_hh_offset(Py_ssize_t N, Py_ssize_t I,
                                          Py_ssize_t H) noexcept nogil

# ``work`` of lstm_backward: lstm_backward_W_hh_offset(N, I, H)
# + packed_size(4H, H).
cdef Py_ssize_t lstm_backward_work_size(Py_ssize_t N, Py_ssize_t I,
                                        Py_ssize_t H) noexcept nogil
