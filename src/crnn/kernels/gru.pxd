# cython: language_level=3
"""GRU layer (PyTorch's equations and gate order): forward pass and BPTT.

One layer, one direction, over a packed batch (see ``recurrence.pxd``):
``T`` steps, ``B_t = batch_sizes[t]`` active sequences, ``N = sum_t B_t``
packed rows. Gates are stored side by side in the order (r, z, n), so
``G = 3H`` columns:

    X       (N, I)    inputs, packed
    W_ih    (3H, I)   input weights [W_ir; W_iz; W_in]
    W_hh    (3H, H)   recurrent weights [W_hr; W_hz; W_hn]
    b       (3H,)     bias: b_ir + b_hr, b_iz + b_hz, b_in (PyTorch's names)
    b_hn    (H,)      the recurrent bias of the candidate, inside the reset
    h0      (B, H)    initial states
    gates   (N, 3H)   activated gates (r, z, n) of every row, kept for backward
    hn      (N, H)    W_hn h_prev + b_hn of every row, kept for backward
    Hs      (N, H)    states h_t, packed
    h_n     (B, H)    final state of each sequence
    work    workspace of gru_forward_work_size(B, I, H) elements: the
            recurrent product of one step (B, 3H), then, from
            gru_forward_W_hhT_offset(B, H), W_hh laid out for the per-step
            products; or, for the fused step (blas.pxd), all the weights
            laid out for it

    r = sigmoid(W_ir x + W_hr h_prev + b_r)     z = sigmoid(W_iz x + W_hz h_prev + b_z)
    n = tanh(W_in x + b_in + r * (W_hn h_prev + b_hn))
    h_t = (1 - z) * n + z * h_prev

so weights of ``torch.nn.GRU`` and of Keras' GRU with ``reset_after=True``
carry over exactly. All arrays are C-contiguous with leading dimension equal
to their last extent. The caller allocates everything; the sizes, in
elements, are below.
"""
from cython cimport floating


cdef enum:
    GRU_GATES = 3       # G = 3H: r, z, n
    GRU_STATES = 1      # h


cdef void gru_forward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* b_hn, const floating* h0,
    floating* gates, floating* hn, floating* Hs, floating* h_n, floating* work,
    bint reverse,
) noexcept nogil


# gru_forward when no backward pass follows (inference): the same Hs and h_n;
# ``gates`` and ``hn`` are scratch, left holding nothing useful, which the
# fused step (blas.pxd) does not even touch.
cdef void gru_forward_infer(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* b_hn, const floating* h0,
    floating* gates, floating* hn, floating* Hs, floating* h_n, floating* work,
    bint reverse,
) noexcept nogil


# BPTT through one forward pass.
#   dHs      (N, H)   dE/dh_t from above the layer (read only)
#   dgates   (N, 3H)  out: dE/d(input-side pre-activations of r, z, n); may be
#                     ``gates`` itself
#   dgates_h (N, 3H)  out: dE/d(recurrent-side pre-activations) (the n part
#                     is the input-side one times r)
#   dh       (B, H)   in: dE/dh_n; out: dE/dh0
#   work              workspace of gru_backward_work_size(N, H) elements
#   dX       (N, I)   out, overwritten; skipped when NULL
#   dW_ih, dW_hh, db, db_hn  ACCUMULATED into (+=)
cdef void gru_backward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* gates, const floating* hn,
    const floating* Hs, const floating* dHs,
    floating* dgates, floating* dgates_h, floating* dh,
    floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, floating* db_hn, bint reverse,
) noexcept nogil


# gru_backward that also records dE/dh_t in total (from above the layer and
# through the later steps: what perturbing the state h_t changes the loss by)
#   dHs_total (N, H)  out, packed like Hs; gru_backward is this with NULL
cdef void gru_backward_dh(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* gates, const floating* hn,
    const floating* Hs, const floating* dHs,
    floating* dgates, floating* dgates_h, floating* dh,
    floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, floating* db_hn, bint reverse,
    floating* dHs_total,
) noexcept nogil


# One step for streaming inference, for B sequences at once: h (B, H) from
# h_prev and x (B, I). ``work`` is a workspace of gru_step_work_size(B, H)
# elements; h must not overlap h_prev.
cdef void gru_step(
    Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* x, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* b_hn, const floating* h_prev,
    floating* h, floating* work,
) noexcept nogil


# Sizes and offsets, in elements. Out of line: an extension that cimports
# them calls the formula of the crnn it runs against.

# ``gates`` (and ``dgates_h`` in backward): N * 3H.
cdef Py_ssize_t gru_gates_size(Py_ssize_t N, Py_ssize_t H) noexcept nogil

# Where W_hh^T starts in the ``work`` of gru_forward: after the (B, 3H) step
# product, rounded up to a multiple of ALIGN (abi.pxd), so that it starts on
# a 64-byte boundary when ``work`` does.
cdef Py_ssize_t gru_forward_W_hhT_offset(Py_ssize_t B, Py_ssize_t H) noexcept nogil

# ``work`` of gru_forward: the larger of gru_forward_W_hhT_offset(B, H) +
# packed_size(H, 3H) and, for the fused step, gru_packed_size(I, H) (blas.pxd).
cdef Py_ssize_t gru_forward_work_size(Py_ssize_t B, Py_ssize_t I,
                                      Py_ssize_t H) noexcept nogil

# Where W_hh, laid out for the per-step products, starts in the ``work`` of
# gru_backward: after the previous states H_prev (N, H), rounded up to a
# multiple of ALIGN.
cdef Py_ssize_t gru_backward_W_hh_offset(Py_ssize_t N, Py_ssize_t H) noexcept nogil

# ``work`` of gru_backward: gru_backward_W_hh_offset(N, H) + packed_size(3H, H).
cdef Py_ssize_t gru_backward_work_size(Py_ssize_t N, Py_ssize_t H) noexcept nogil

# ``work`` of gru_step: B * 7H (the input and recurrent products, (B, 3H)
# each, and W_hn h_prev + b_hn, (B, H)).
cdef Py_ssize_t gru_step_work_size(Py_ssize_t B, Py_ssize_t H) noexcept nogil
