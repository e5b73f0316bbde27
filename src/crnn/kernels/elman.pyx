"""Elman recurrent layer kernels (see ``elman.pxd`` for shapes and layout).

Forward, for a batch of B sequences of length T:

    A       = X W_ih^T                 one GEMM over all T*B rows, before the loop
    a_t     = A[t] + h_{t-1} W_hh^T    one (B, H) x (H, H) GEMM per step
    h_t     = g(a_t + b)               one fused element-wise pass per step

Backward (BPTT), from t = T down to 1, with dh_next = dE/dh_t flowing back
from step t + 1 (zero after the last step):

    da_t      = (dE/dh_t|above + dh_next) * g'(a_t)    one fused pass
    dh_next   = da_t W_hh                               one GEMM per step

and after the loop, over all steps at once:

    dW_ih += dA^T X,  dW_hh += dA^T H_prev,  db += sum_t da_t,  dX = dA W_ih
"""
from libc.string cimport memcpy, memset

from crnn.kernels.activations cimport bias_activation, mul_derivative
from crnn.kernels.blas cimport NoTrans, Trans, gemm


cdef void elman_forward(
    Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0,
    floating* H_all, int activation,
) noexcept nogil:
    cdef Py_ssize_t t
    cdef Py_ssize_t BH = B * H
    cdef floating* A = H_all + BH        # a_t is built in place of h_t
    cdef floating* h_t
    memcpy(H_all, h0, BH * sizeof(floating))
    # A(T*B, H) = X(T*B, I) @ W_ih^T
    gemm(NoTrans, Trans, T * B, H, I, 1, X, I, W_ih, I, 0, A, H)
    for t in range(T):
        h_t = A + t * BH
        # a_t(B, H) += h_{t-1}(B, H) @ W_hh^T
        gemm(NoTrans, Trans, B, H, H, 1, H_all + t * BH, H, W_hh, H, 1, h_t, H)
        # h_t = g(a_t + b)
        bias_activation(B, H, h_t, b, activation)


cdef void elman_backward(
    Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* H_all, floating* dH, floating* dh0, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, int activation,
) noexcept nogil:
    cdef Py_ssize_t t, i, j
    cdef Py_ssize_t BH = B * H
    cdef floating* dA = dH               # da_t overwrites dE/dh_t
    cdef floating* da_t
    cdef floating* dh_next = dh0         # dE/dh_t from step t + 1; ends as dE/dh_0
    memset(dh_next, 0, BH * sizeof(floating))
    for t in range(T - 1, -1, -1):
        da_t = dA + t * BH
        # da_t = (dE/dh_t + dh_next) * g'(a_t), differentiating h_t = g(a_t)
        mul_derivative(BH, da_t, da_t, dh_next, H_all + (t + 1) * BH, activation)
        # dh_next(B, H) = da_t(B, H) @ W_hh(H, H), differentiating W_hh h_{t-1}
        gemm(NoTrans, NoTrans, B, H, H, 1, da_t, H, W_hh, H, 0, dh_next, H)
    # dW_ih(H, I) += dA(T*B, H)^T @ X(T*B, I)
    gemm(Trans, NoTrans, H, I, T * B, 1, dA, H, X, I, 1, dW_ih, I)
    # dW_hh(H, H) += dA(T*B, H)^T @ H_prev(T*B, H), H_prev = H_all[0:T]
    gemm(Trans, NoTrans, H, H, T * B, 1, dA, H, H_all, H, 1, dW_hh, H)
    # db(H) += sum over the T*B rows of dA
    for i in range(T * B):
        da_t = dA + i * H
        for j in range(H):
            db[j] += da_t[j]
    if dX != NULL:
        # dX(T*B, I) = dA(T*B, H) @ W_ih(H, I)
        gemm(NoTrans, NoTrans, T * B, I, H, 1, dA, H, W_ih, I, 0, dX, I)


# --- Python entry points: O(1) shape checks, then the nogil kernels ----------

def _check(bint ok, str what):
    if not ok:
        raise ValueError(f"elman kernel: {what}")


def forward(const floating[:, :, ::1] X, const floating[:, ::1] W_ih,
            const floating[:, ::1] W_hh, const floating[::1] b,
            const floating[:, ::1] h0, floating[:, :, ::1] H_all,
            int activation):
    """Run the Elman forward pass; fills ``H_all`` (T + 1, B, H) in place.

    ``H_all[0]`` is a copy of ``h0`` and ``H_all[t]`` is the state after
    step ``t``. All arrays must be C-contiguous and of one dtype.
    """
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], I = X.shape[2]
    cdef Py_ssize_t H = W_hh.shape[0]
    _check(T >= 1 and B >= 1 and I >= 1 and H >= 1, "empty dimension")
    _check(W_ih.shape[0] == H and W_ih.shape[1] == I, "W_ih must be (H, I)")
    _check(W_hh.shape[1] == H and b.shape[0] == H, "W_hh must be (H, H), b (H,)")
    _check(h0.shape[0] == B and h0.shape[1] == H, "h0 must be (B, H)")
    _check(H_all.shape[0] == T + 1 and H_all.shape[1] == B
           and H_all.shape[2] == H, "H_all must be (T + 1, B, H)")
    _check(0 <= activation <= 3, "unknown activation code")
    with nogil:
        elman_forward(T, B, I, H, &X[0, 0, 0], &W_ih[0, 0], &W_hh[0, 0],
                      &b[0], &h0[0, 0], &H_all[0, 0, 0], activation)


def backward(const floating[:, :, ::1] X, const floating[:, ::1] W_ih,
             const floating[:, ::1] W_hh, const floating[:, :, ::1] H_all,
             floating[:, :, ::1] dH, floating[:, ::1] dh0,
             floating[:, :, ::1] dX, floating[:, ::1] dW_ih,
             floating[:, ::1] dW_hh, floating[::1] db, int activation):
    """Backpropagate through time; see ``elman.pxd`` for what each array holds.

    ``dH`` is overwritten with the pre-activation gradients; ``dW_ih``,
    ``dW_hh`` and ``db`` are accumulated into; ``dX`` may be None when the
    input gradient is not needed.
    """
    cdef Py_ssize_t T = X.shape[0], B = X.shape[1], I = X.shape[2]
    cdef Py_ssize_t H = W_hh.shape[0]
    cdef floating* dX_ptr = NULL
    _check(T >= 1 and B >= 1 and I >= 1 and H >= 1, "empty dimension")
    _check(W_ih.shape[0] == H and W_ih.shape[1] == I, "W_ih must be (H, I)")
    _check(W_hh.shape[1] == H, "W_hh must be (H, H)")
    _check(H_all.shape[0] == T + 1 and H_all.shape[1] == B
           and H_all.shape[2] == H, "H_all must be (T + 1, B, H)")
    _check(dH.shape[0] == T and dH.shape[1] == B and dH.shape[2] == H,
           "dH must be (T, B, H)")
    _check(dh0.shape[0] == B and dh0.shape[1] == H, "dh0 must be (B, H)")
    _check(dW_ih.shape[0] == H and dW_ih.shape[1] == I, "dW_ih must be (H, I)")
    _check(dW_hh.shape[0] == H and dW_hh.shape[1] == H, "dW_hh must be (H, H)")
    _check(db.shape[0] == H, "db must be (H,)")
    _check(0 <= activation <= 3, "unknown activation code")
    if dX is not None:
        _check(dX.shape[0] == T and dX.shape[1] == B and dX.shape[2] == I,
               "dX must be (T, B, I)")
        dX_ptr = &dX[0, 0, 0]
    with nogil:
        elman_backward(T, B, I, H, &X[0, 0, 0], &W_ih[0, 0], &W_hh[0, 0],
                       &H_all[0, 0, 0], &dH[0, 0, 0], &dh0[0, 0], dX_ptr,
                       &dW_ih[0, 0], &dW_hh[0, 0], &db[0], activation)
