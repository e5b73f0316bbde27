"""Elman recurrent layer kernels (see ``elman.pxd`` for shapes and layout).

Forward, over the N packed rows:

    A       = X W_ih^T                     one GEMM over all rows, before the loop
    a_t     = A[t] + h_prev W_hh^T         one (B_t, H) x (H, H) GEMM per step
    h_t     = g(a_t + b)                   one fused element-wise pass per step

Backward (BPTT), visiting the steps in the opposite order, with ``dh``
holding dE/dh of each sequence's current state:

    da_t    = (dE/dh_t|above + dh) * g'(a_t)       one fused pass
    dh      = da_t W_hh                            one GEMM per step

and, over blocks of the finished rows during the loop or over all rows after
it (``recurrence.joint_gradient_product``):

    dW_ih += dA^T X,  dW_hh += dA^T H_prev,  db += sum of the rows of dA,  dX = dA W_ih
"""
import numpy as np

from crnn.kernels._elementwise cimport activation_backward, bias_activation
from crnn.kernels.abi cimport align_up
from crnn.kernels.activations cimport TANH
from crnn.kernels.blas cimport NoTrans, Trans, gemm, packed_size
from crnn.kernels.recurrence cimport (
    Pending, Step, joint_gradients_done, joint_step_done, pending_rows, prepare_backward,
    prepare_forward, record_state_gradient, recurrent_gemm, step_in_order, step_product_backward, store_final,
    total_rows,
)
from crnn.kernels.activations import CODES
from crnn.kernels.blas import check_blas_sizes
from crnn.kernels.recurrence import check, check_packed, check_shape


cdef void elman_forward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0,
    floating* Hs, floating* h_n, floating* work, bint reverse, int activation,
) noexcept nogil:
    cdef Py_ssize_t k, off = 0
    cdef Py_ssize_t N = total_rows(T, batch_sizes)
    cdef Step s
    cdef floating* a_t
    cdef bint packed = prepare_forward(batch_sizes[0], H, H, W_hh, work)
    # A(N, H) = X(N, I) @ W_ih^T, built in place of the states
    gemm(NoTrans, Trans, N, H, I, 1, X, I, W_ih, I, 0, Hs, H)
    for k in range(T):
        s = step_in_order(k, T, N, batch_sizes, reverse, False, &off)
        a_t = Hs + s.off * H
        # a_t(B_t, H) += h_prev(B_t, H) @ W_hh^T
        recurrent_gemm(s, H, H, work, packed, h0, Hs, 1, a_t)
        # h_t = g(a_t + b)
        bias_activation(s.B, H, a_t, b, activation)
        store_final(s, H, Hs, h_n)


cdef void elman_step(
    Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* x, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h_prev, floating* h, int activation,
) noexcept nogil:
    # a(B, H) = x(B, I) @ W_ih^T
    gemm(NoTrans, Trans, B, H, I, 1, x, I, W_ih, I, 0, h, H)
    # a(B, H) += h_prev(B, H) @ W_hh^T
    gemm(NoTrans, Trans, B, H, H, 1, h_prev, H, W_hh, H, 1, h, H)
    # h = g(a + b)
    bias_activation(B, H, h, b, activation)


cdef void elman_backward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* Hs,
    floating* dHs, floating* dh, floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db,
    bint reverse, int activation,
) noexcept nogil:
    elman_backward_dh(T, batch_sizes, I, H, X, W_ih, W_hh, h0, Hs, dHs, dh, work, dX,
                      dW_ih, dW_hh, db, reverse, activation, NULL)


cdef void elman_backward_dh(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* Hs,
    floating* dHs, floating* dh, floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db,
    bint reverse, int activation, floating* dHs_total,
) noexcept nogil:
    cdef Py_ssize_t k, off = 0
    cdef Py_ssize_t N = total_rows(T, batch_sizes)
    cdef Step s
    cdef floating* dA = dHs                # da_t overwrites dE/dh_t|above
    cdef floating* da_t
    cdef floating* W = work + elman_backward_W_hh_offset(N, I, H)
    cdef bint packed = prepare_backward(batch_sizes[0], H, H, W_hh, W)
    cdef Pending p = pending_rows(batch_sizes[0], H, I + H)
    for k in range(T):
        s = step_in_order(k, T, N, batch_sizes, reverse, True, &off)
        da_t = dA + s.off * H
        # dE/dh_t in total = dE/dh_t|above + dh (before da_t overwrites it)
        record_state_gradient(s.B, H, da_t, dh, dHs_total, s.off)
        # da_t = (dE/dh_t|above + dh) * g'(a_t), differentiating h_t = g(a_t)
        activation_backward(s.B * H, da_t, dh, Hs + s.off * H, activation)
        # dh[:B_t](B_t, H) = da_t(B_t, H) @ W_hh(H, H), differentiating W_hh h_prev
        step_product_backward(s.B, H, H, da_t, W, packed, 0, dh)
        joint_step_done(&p, s, N, I, H, H, X, h0, Hs, work, dA, batch_sizes[0])
    joint_gradients_done(&p, N, I, H, H, X, W_ih, work, dA, dX, dW_ih, dW_hh, db)


# --- workspace sizes (elman.pxd) ----------------------------------------------

cdef Py_ssize_t elman_forward_work_size(Py_ssize_t H) noexcept nogil:
    return packed_size(H, H)


cdef Py_ssize_t elman_backward_W_hh_offset(Py_ssize_t N, Py_ssize_t I,
                                           Py_ssize_t H) noexcept nogil:
    return align_up((N + H) * (I + H))


cdef Py_ssize_t elman_backward_work_size(Py_ssize_t N, Py_ssize_t I,
                                         Py_ssize_t H) noexcept nogil:
    return elman_backward_W_hh_offset(N, I, H) + packed_size(H, H)


# --- Python entry points: O(T) argument checks, then the nogil kernels --------

def _check_layer(X, batch_sizes, W_ih, W_hh, b, h0, int activation):
    cdef Py_ssize_t N = X.shape[0], I = X.shape[1], H = W_hh.shape[1]
    cdef Py_ssize_t B = h0.shape[0]
    check(N >= 1 and I >= 1 and H >= 1 and B >= 1, "elman: empty dimension")
    check_blas_sizes(rows=N + H, columns=I + H, gates=ELMAN_GATES * H)
    check_packed(batch_sizes, N, B)
    check_shape(W_hh, (H, H), "W_hh")
    check_shape(W_ih, (H, I), "W_ih")
    check_shape(b, (H,), "b")
    check_shape(h0, (B, H), "h0")
    check(activation in CODES.values(),
          f"unknown activation code {activation}: the Elman cell's are {CODES}")
    return N, I, H, B


def forward(const floating[:, ::1] X not None, const Py_ssize_t[::1] batch_sizes not None,
            const floating[:, ::1] W_ih not None, const floating[:, ::1] W_hh not None,
            const floating[::1] b not None, const floating[:, ::1] h0 not None,
            floating[:, ::1] Hs not None, floating[:, ::1] h_n not None, bint reverse=False,
            int activation=TANH):
    """Elman forward pass over a packed batch; fills ``Hs`` and ``h_n``.

    Parameters
    ----------
    X : (N, I) packed inputs; batch_sizes : (T,) intp, non-increasing
    W_ih : (H, I); W_hh : (H, H); b : (H,); h0 : (B, H)
    Hs : (N, H) output states; h_n : (B, H) output final states
    reverse : run each sequence from its last step to its first
    activation : code of ``crnn.kernels.activations.CODES``
    """
    cdef Py_ssize_t N, I, H, B
    N, I, H, B = _check_layer(X, batch_sizes, W_ih, W_hh, b, h0, activation)
    check_shape(Hs, (N, H), "Hs")
    check_shape(h_n, (B, H), "h_n")
    cdef floating[::1] work = np.empty(elman_forward_work_size(H),
                                       dtype=np.asarray(Hs).dtype)
    with nogil:
        elman_forward(batch_sizes.shape[0], &batch_sizes[0], I, H, &X[0, 0],
                      &W_ih[0, 0], &W_hh[0, 0], &b[0], &h0[0, 0], &Hs[0, 0],
                      &h_n[0, 0], &work[0], reverse, activation)


def backward(const floating[:, ::1] X not None, const Py_ssize_t[::1] batch_sizes not None,
             const floating[:, ::1] W_ih not None, const floating[:, ::1] W_hh not None,
             const floating[:, ::1] h0 not None, const floating[:, ::1] Hs not None,
             floating[:, ::1] dHs not None, floating[:, ::1] dh not None,
             floating[:, ::1] dX, floating[:, ::1] dW_ih not None,
             floating[:, ::1] dW_hh not None, floating[::1] db not None, bint reverse=False,
             int activation=TANH):
    """BPTT through :func:`forward`; see ``elman.pxd`` for what each array holds.

    ``dHs`` (N, H) is overwritten with dE/da_t; ``dh`` (B, H) goes in as
    dE/dh_n and comes out as dE/dh0; ``dW_ih``, ``dW_hh`` and ``db`` are
    accumulated into; ``dX`` (N, I) may be None.
    """
    cdef Py_ssize_t N, I, H, B
    N, I, H, B = _check_layer(X, batch_sizes, W_ih, W_hh, None, h0, activation)
    check_shape(Hs, (N, H), "Hs")
    check_shape(dHs, (N, H), "dHs")
    check_shape(dh, (B, H), "dh")
    check_shape(dX, (N, I), "dX")
    check_shape(dW_ih, (H, I), "dW_ih")
    check_shape(dW_hh, (H, H), "dW_hh")
    check_shape(db, (H,), "db")
    cdef floating[::1] work = np.empty(elman_backward_work_size(N, I, H),
                                       dtype=np.asarray(Hs).dtype)
    cdef floating* dX_ptr = &dX[0, 0] if dX is not None else NULL
    with nogil:
        elman_backward(batch_sizes.shape[0], &batch_sizes[0], I, H, &X[0, 0],
                       &W_ih[0, 0], &W_hh[0, 0], &h0[0, 0], &Hs[0, 0], &dHs[0, 0],
                       &dh[0, 0], &work[0], dX_ptr, &dW_ih[0, 0],
                       &dW_hh[0, 0], &db[0], reverse, activation)
