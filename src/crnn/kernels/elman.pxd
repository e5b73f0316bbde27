# cython: language_level=3
"""Elman (vanilla) recurrent layer: forward pass and backpropagation through time.

One layer, one direction, over a packed batch (see ``recurrence.pxd``): ``T``
steps, ``batch_sizes[t] = B_t`` active sequences at step ``t`` (sorted
longest first, ``B_0 = B``), ``N = sum_t B_t`` packed rows. All arrays are
C-contiguous, row-major, with leading dimension equal to their last extent:

    X       (N, I)   inputs x_t, packed
    W_ih    (H, I)   input weights (W_x in the worked example of docs/maths.md)
    W_hh    (H, H)   recurrent weights (W_s there)
    b       (H,)     bias
    h0      (B, H)   initial states
    Hs      (N, H)   states h_t, packed
    h_n     (B, H)   final state of each sequence: at its last step, or at
                     step 0 when ``reverse``

    h_t = g(W_ih x_t + W_hh h_prev + b)

with ``h_prev`` the state of step t - 1 (t + 1 when ``reverse``) or ``h0``
where the sequence starts, and ``g`` an ``Activation`` code.
"""
from cython cimport floating


cdef enum:
    ELMAN_GATES = 1     # G = H: the pre-activation of h
    ELMAN_STATES = 1    # h


# ``work`` is a workspace of elman_forward_work_size(H) elements (it
# receives W_hh laid out for the per-step products).
cdef void elman_forward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0,
    floating* Hs, floating* h_n, floating* work, bint reverse, int activation,
) noexcept nogil


# BPTT through one forward pass.
#   dHs    (N, H)  in: dE/dh_t from above the layer; out: dE/da_t, the
#                  gradient of the pre-activation a_t = W_ih x_t + W_hh h_prev + b
#   dh     (B, H)  in: dE/dh_n (zeros if the final states are not used);
#                  out: dE/dh0
#   work           workspace of elman_backward_work_size(N, I, H) elements
#   dX     (N, I)  out: dE/dx_t, overwritten; skipped when NULL
#   dW_ih, dW_hh, db   ACCUMULATED into (+=)
cdef void elman_backward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* Hs,
    floating* dHs, floating* dh, floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db,
    bint reverse, int activation,
) noexcept nogil


# elman_backward that also records dE/dh_t in total (from above the layer and
# through the later steps: what perturbing the state h_t changes the loss by)
#   dHs_total (N, H)  out, packed like Hs; elman_backward is this with NULL
cdef void elman_backward_dh(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* Hs,
    floating* dHs, floating* dh, floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db,
    bint reverse, int activation, floating* dHs_total,
) noexcept nogil


# One step for streaming inference, for B sequences at once:
#   h(B, H) = g(x(B, I) W_ih^T + h_prev(B, H) W_hh^T + b)
# ``h`` must not overlap ``h_prev``. No workspace.
cdef void elman_step(
    Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* x, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h_prev, floating* h, int activation,
) noexcept nogil


# Workspace sizes and offsets, in elements. Out of line: an extension that
# cimports them calls the formula of the crnn it runs against.

# ``work`` of elman_forward: packed_size(H, H) (W_hh laid out for the
# per-step products).
cdef Py_ssize_t elman_forward_work_size(Py_ssize_t H) noexcept nogil

# Where W_hh, laid out for the per-step products, starts in the ``work`` of
# elman_backward: after (N + H) * (I + H) elements for the weight gradients,
# rounded up to a multiple of ALIGN (abi.pxd).
cdef Py_ssize_t elman_backward_W_hh_offset(Py_ssize_t N, Py_ssize_t I,
                                           Py_ssize_t H) noexcept nogil

# ``work`` of elman_backward: elman_backward_W_hh_offset(N, I, H)
# + packed_size(H, H).
cdef Py_ssize_t elman_backward_work_size(Py_ssize_t N, Py_ssize_t I,
                                         Py_ssize_t H) noexcept nogil
