"""LSTM layer kernels (see ``lstm.pxd`` for shapes, layout and equations).

Forward, on a CPU with a packed kernel (AVX2 or AVX-512) unless the packed
mode is "never": per step and block of rows, the fused step (``fused.h``):
both products and the cell in registers, on ``[b; W_ih^T; W_hh^T]`` packed
once per pass. Otherwise (BLAS alone): one GEMM ``X W_ih^T`` for all rows
before the loop; per step one GEMM ``h_prev W_hh^T`` for all four gates at
once and one pass that applies the gate activations and updates ``c`` and
``h``.

Backward, per step (in the opposite order), one fused pass

    dh_t  = dE/dh_t|above + dh                 (dh: from step t+1 through W_hh)
    do    = dh_t * tanh(c_t)
    dc_t  = dc + dh_t * o * (1 - tanh(c_t)^2)  (dc: from step t+1 through f)
    di    = dc_t * g,   dg = dc_t * i,   df = dc_t * c_prev,   dc = dc_t * f

with each gate gradient taken through its activation, then one GEMM
``dh = dgates_t W_hh``; the weight gradients as one GEMM over blocks of the
finished rows, or over all rows after the loop (``recurrence.pending_rows``).
"""
import numpy as np

from libc.string cimport memcpy

from crnn.kernels._elementwise cimport lstm_rows, lstm_rows_backward
from crnn.kernels.abi cimport align_up
from crnn.kernels.blas cimport (
    NoTrans, Trans, gemm, lstm_fused_step, lstm_pack, lstm_packed_size, packed_size,
    use_fused,
)
from crnn.kernels.recurrence cimport (
    Pending, Step, joint_gradients_done, joint_step_done, pending_rows, prepare_backward,
    prepare_forward, prev_row, record_state_gradient, recurrent_gemm, state_block,
    step_in_order, step_product_backward, store_final, total_rows,
)
from crnn.kernels.blas import check_blas_sizes
from crnn.kernels.recurrence import check, check_packed, check_shape


cdef void lstm_forward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0, const floating* c0,
    floating* gates, floating* Hs, floating* Cs, floating* h_n, floating* c_n,
    floating* work, bint reverse,
) noexcept nogil:
    cdef Py_ssize_t k, j0, n, row, off = 0
    cdef int part
    cdef Py_ssize_t G = LSTM_GATES * H
    cdef Py_ssize_t N = total_rows(T, batch_sizes)
    cdef Step s
    cdef bint packed
    if use_fused():
        lstm_forward_fused(T, batch_sizes, I, H, N, X, W_ih, W_hh, b, h0, c0, gates, Hs,
                           Cs, h_n, c_n, work, reverse, True)
        return
    # Here no packed kernel runs (the fused step runs wherever one could):
    # prepare_forward lays W_hh^T out for BLAS.
    packed = prepare_forward(batch_sizes[0], H, G, W_hh, work)
    # gates(N, 4H) = X(N, I) @ W_ih^T
    gemm(NoTrans, Trans, N, G, I, 1, X, I, W_ih, I, 0, gates, G)
    for k in range(T):
        s = step_in_order(k, T, N, batch_sizes, reverse, False, &off)
        # gates_t(B_t, 4H) += h_prev(B_t, H) @ W_hh^T
        recurrent_gemm(s, H, G, work, packed, h0, Hs, 1, gates + s.off * G)
        for part in range(2):
            n = state_block(s, part, &j0)
            row = s.off + j0
            lstm_rows(n, H, gates + row * G, b, prev_row(s, j0, H, c0, Cs), Hs + row * H,
                      Cs + row * H)
        store_final(s, H, Hs, h_n)
        store_final(s, H, Cs, c_n)


cdef void lstm_forward_fused(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H, Py_ssize_t N,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0, const floating* c0,
    floating* gates, floating* Hs, floating* Cs, floating* h_n, floating* c_n,
    floating* work, bint reverse, bint keep_gates,
) noexcept nogil:
    """lstm_forward through the fused step (blas.pxd): both products and the
    cell in one kernel per block of rows, on [b; W_ih^T; W_hh^T] packed once;
    the activated gates into ``gates`` only if ``keep_gates``."""
    cdef Py_ssize_t k, j0, n, row, off = 0
    cdef int part
    cdef Py_ssize_t G = LSTM_GATES * H
    cdef Step s
    lstm_pack(I, H, W_ih, W_hh, b, work)
    for k in range(T):
        s = step_in_order(k, T, N, batch_sizes, reverse, False, &off)
        for part in range(2):
            n = state_block(s, part, &j0)
            row = s.off + j0
            # gates_t, c_t, h_t of the block = the cell on x_t W_ih^T + h_prev W_hh^T + b
            lstm_fused_step(n, I, H, X + row * I, prev_row(s, j0, H, h0, Hs),
                            prev_row(s, j0, H, c0, Cs), work, Hs + row * H, Cs + row * H,
                            gates + row * G if keep_gates else NULL)
        store_final(s, H, Hs, h_n)
        store_final(s, H, Cs, c_n)


cdef void lstm_forward_infer(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h0, const floating* c0,
    floating* gates, floating* Hs, floating* Cs, floating* h_n, floating* c_n,
    floating* work, bint reverse,
) noexcept nogil:
    if use_fused():
        lstm_forward_fused(T, batch_sizes, I, H, total_rows(T, batch_sizes), X, W_ih, W_hh,
                           b, h0, c0, gates, Hs, Cs, h_n, c_n, work, reverse, False)
        return
    lstm_forward(T, batch_sizes, I, H, X, W_ih, W_hh, b, h0, c0, gates, Hs, Cs, h_n, c_n,
                 work, reverse)


cdef void lstm_step(
    Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* x, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* h_prev, const floating* c_prev,
    floating* h, floating* c, floating* gates,
) noexcept nogil:
    cdef Py_ssize_t G = LSTM_GATES * H
    # gates(B, 4H) = x(B, I) @ W_ih^T
    gemm(NoTrans, Trans, B, G, I, 1, x, I, W_ih, I, 0, gates, G)
    # gates(B, 4H) += h_prev(B, H) @ W_hh^T
    gemm(NoTrans, Trans, B, G, H, 1, h_prev, H, W_hh, H, 1, gates, G)
    lstm_rows(B, H, gates, b, c_prev, h, c)


cdef void lstm_backward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* c0,
    const floating* gates, const floating* Hs, const floating* Cs,
    const floating* dHs, floating* dgates, floating* dh, floating* dc,
    floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, bint reverse,
) noexcept nogil:
    lstm_backward_dh(T, batch_sizes, I, H, X, W_ih, W_hh, h0, c0, gates, Hs, Cs, dHs,
                     dgates, dh, dc, work, dX, dW_ih, dW_hh, db, reverse, NULL)


cdef void lstm_backward_dh(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* c0,
    const floating* gates, const floating* Hs, const floating* Cs,
    const floating* dHs, floating* dgates, floating* dh, floating* dc,
    floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, bint reverse,
    floating* dHs_total,
) noexcept nogil:
    cdef Py_ssize_t k, j0, n, row, off = 0
    cdef int part
    cdef Py_ssize_t G = LSTM_GATES * H
    cdef Py_ssize_t N = total_rows(T, batch_sizes)
    cdef Step s
    cdef floating* W = work + lstm_backward_W_hh_offset(N, I, H)
    cdef bint packed = prepare_backward(batch_sizes[0], H, G, W_hh, W)
    cdef Pending p = pending_rows(batch_sizes[0], G, I + H)
    if dgates != gates:
        # The gate gradients are computed in place over the activations.
        memcpy(dgates, gates, N * G * sizeof(floating))
    for k in range(T):
        s = step_in_order(k, T, N, batch_sizes, reverse, True, &off)
        for part in range(2):
            n = state_block(s, part, &j0)
            row = s.off + j0
            record_state_gradient(n, H, dHs + row * H, dh + j0 * H, dHs_total, row)
            # dh_t = dE/dh_t|above + dh; dc_t = dc + dh_t o (1 - tanh^2 c_t);
            # di, df, dg, do through the gates' activations; dc = dc_t f
            lstm_rows_backward(n, H, dgates + row * G, Cs + row * H,
                               prev_row(s, j0, H, c0, Cs), dHs + row * H, dh + j0 * H,
                               dc + j0 * H)
        # dh[:B_t](B_t, H) = dgates_t(B_t, 4H) @ W_hh(4H, H)
        step_product_backward(s.B, H, G, dgates + s.off * G, W, packed, 0, dh)
        joint_step_done(&p, s, N, I, H, G, X, h0, Hs, work, dgates, batch_sizes[0])
    joint_gradients_done(&p, N, I, H, G, X, W_ih, work, dgates, dX, dW_ih, dW_hh, db)


# --- sizes (lstm.pxd) ---------------------------------------------------------

cdef Py_ssize_t lstm_gates_size(Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    return N * LSTM_GATES * H


cdef Py_ssize_t lstm_step_work_size(Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    return B * LSTM_GATES * H


cdef Py_ssize_t lstm_forward_work_size(Py_ssize_t I, Py_ssize_t H) noexcept nogil:
    return max(packed_size(H, LSTM_GATES * H), lstm_packed_size(I, H))


cdef Py_ssize_t lstm_backward_W_hh_offset(Py_ssize_t N, Py_ssize_t I,
                                          Py_ssize_t H) noexcept nogil:
    return align_up((N + LSTM_GATES * H) * (I + H))


cdef Py_ssize_t lstm_backward_work_size(Py_ssize_t N, Py_ssize_t I,
                                        Py_ssize_t H) noexcept nogil:
    return lstm_backward_W_hh_offset(N, I, H) + packed_size(LSTM_GATES * H, H)


# --- Python entry points: O(T) argument checks, then the nogil kernels --------

def _check_layer(X, batch_sizes, W_ih, W_hh, h0, c0):
    cdef Py_ssize_t N = X.shape[0], I = X.shape[1], H = W_hh.shape[1]
    cdef Py_ssize_t B = h0.shape[0], G = LSTM_GATES * H
    check(N >= 1 and I >= 1 and H >= 1 and B >= 1, "lstm: empty dimension")
    check_blas_sizes(rows=N + H, columns=I + H, gates=LSTM_GATES * H)
    check_packed(batch_sizes, N, B)
    check_shape(W_hh, (G, H), "W_hh")
    check_shape(W_ih, (G, I), "W_ih")
    check_shape(h0, (B, H), "h0")
    check_shape(c0, (B, H), "c0")
    return N, I, H, B


def forward(const floating[:, ::1] X not None, const Py_ssize_t[::1] batch_sizes not None,
            const floating[:, ::1] W_ih not None, const floating[:, ::1] W_hh not None,
            const floating[::1] b not None, const floating[:, ::1] h0 not None,
            const floating[:, ::1] c0 not None, floating[:, ::1] gates not None,
            floating[:, ::1] Hs not None, floating[:, ::1] Cs not None,
            floating[:, ::1] h_n not None, floating[:, ::1] c_n not None, bint reverse=False):
    """LSTM forward pass over a packed batch; fills gates, Hs, Cs, h_n, c_n."""
    cdef Py_ssize_t N, I, H, B
    N, I, H, B = _check_layer(X, batch_sizes, W_ih, W_hh, h0, c0)
    cdef Py_ssize_t G = LSTM_GATES * H
    check_shape(b, (G,), "b")
    check_shape(gates, (N, G), "gates")
    check_shape(Hs, (N, H), "Hs")
    check_shape(Cs, (N, H), "Cs")
    check_shape(h_n, (B, H), "h_n")
    check_shape(c_n, (B, H), "c_n")
    cdef floating[::1] work = np.empty(lstm_forward_work_size(I, H), dtype=np.asarray(Hs).dtype)
    with nogil:
        lstm_forward(batch_sizes.shape[0], &batch_sizes[0], I, H, &X[0, 0],
                     &W_ih[0, 0], &W_hh[0, 0], &b[0], &h0[0, 0], &c0[0, 0],
                     &gates[0, 0], &Hs[0, 0], &Cs[0, 0], &h_n[0, 0], &c_n[0, 0],
                     &work[0], reverse)


def backward(const floating[:, ::1] X not None, const Py_ssize_t[::1] batch_sizes not None,
             const floating[:, ::1] W_ih not None, const floating[:, ::1] W_hh not None,
             const floating[:, ::1] h0 not None, const floating[:, ::1] c0 not None,
             const floating[:, ::1] gates not None, const floating[:, ::1] Hs not None,
             const floating[:, ::1] Cs not None, const floating[:, ::1] dHs not None,
             floating[:, ::1] dgates not None, floating[:, ::1] dh not None,
             floating[:, ::1] dc not None, floating[:, ::1] dX,
             floating[:, ::1] dW_ih not None, floating[:, ::1] dW_hh not None,
             floating[::1] db not None, bint reverse=False):
    """BPTT through :func:`forward`; see ``lstm.pxd`` for what each array holds."""
    cdef Py_ssize_t N, I, H, B
    N, I, H, B = _check_layer(X, batch_sizes, W_ih, W_hh, h0, c0)
    cdef Py_ssize_t G = LSTM_GATES * H
    for a, shape, name in ((gates, (N, G), "gates"), (Hs, (N, H), "Hs"),
                           (Cs, (N, H), "Cs"), (dHs, (N, H), "dHs"),
                           (dgates, (N, G), "dgates"), (dh, (B, H), "dh"),
                           (dc, (B, H), "dc"), (dX, (N, I), "dX"),
                           (dW_ih, (G, I), "dW_ih"), (dW_hh, (G, H), "dW_hh"),
                           (db, (G,), "db")):
        check_shape(a, shape, name)
    cdef floating[::1] work = np.empty(lstm_backward_work_size(N, I, H),
                                       dtype=np.asarray(Hs).dtype)
    cdef floating* dX_ptr = &dX[0, 0] if dX is not None else NULL
    with nogil:
        lstm_backward(batch_sizes.shape[0], &batch_sizes[0], I, H, &X[0, 0],
                      &W_ih[0, 0], &W_hh[0, 0], &h0[0, 0], &c0[0, 0], &gates[0, 0],
                      &Hs[0, 0], &Cs[0, 0], &dHs[0, 0], &dgates[0, 0], &dh[0, 0],
                      &dc[0, 0], &work[0], dX_ptr, &dW_ih[0, 0], &dW_hh[0, 0],
                      &db[0], reverse)
