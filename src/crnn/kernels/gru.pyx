"""GRU layer kernels (see ``gru.pxd`` for shapes, layout and equations).

Forward, on a CPU with a packed kernel (AVX2 or AVX-512) unless the packed
mode is "never": per step and block of rows, the fused step (``fused.h``):
both products and the cell in registers, on the weights packed once per
pass. Otherwise (BLAS alone): one GEMM ``X W_ih^T`` for all rows before the
loop; per step one GEMM ``h_prev W_hh^T`` for all three gates into a
workspace and one pass for the gates and the new state.

Backward, per step (in the opposite order), one fused pass

    dh_t  = dE/dh_t|above + dh
    dn    = dh_t * (1 - z),   dz = dh_t * (h_prev - n),   dh = dh_t * z
    dn~   = dn * (1 - n^2)                  (n~: pre-activation of n)
    dr~   = dn~ * (W_hn h_prev + b_hn) * r * (1 - r),     dz~ = dz * z * (1 - z)

then one GEMM ``dh += [dr~, dz~, dn~ * r] W_hh``; one GEMM per weight
gradient over blocks of the finished rows, or over all rows after the loop
(``recurrence.pending_rows``).
"""
import numpy as np

from libc.string cimport memcpy

from crnn.kernels._elementwise cimport gru_rows, gru_rows_backward
from crnn.kernels.abi cimport align_up
from crnn.kernels.blas cimport (
    NoTrans, Trans, gemm, gru_fused_step, gru_pack, gru_packed_size, packed_size,
    use_fused,
)
from crnn.kernels.recurrence cimport (
    Pending, Step, bias_and_input_gradients, gather_prev, loop_done, pending_rows,
    prepare_backward, prepare_forward, prev_row, record_state_gradient, recurrent_gemm,
    split_gradient_products, state_block, step_done, step_in_order, step_product_backward,
    store_final, total_rows,
)
from crnn.kernels.blas import check_blas_sizes
from crnn.kernels.recurrence import check, check_packed, check_shape


cdef void gru_forward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* b_hn, const floating* h0,
    floating* gates, floating* hn, floating* Hs, floating* h_n, floating* work,
    bint reverse,
) noexcept nogil:
    cdef Py_ssize_t k, j0, n, row, off = 0
    cdef int part
    cdef Py_ssize_t G = GRU_GATES * H
    cdef Py_ssize_t N = total_rows(T, batch_sizes)
    cdef Step s
    cdef floating* W_hhT = work + gru_forward_W_hhT_offset(batch_sizes[0], H)
    cdef bint packed
    if use_fused():
        gru_forward_fused(T, batch_sizes, I, H, N, X, W_ih, W_hh, b, b_hn, h0, gates, hn,
                          Hs, h_n, work, reverse, True)
        return
    # Here no packed kernel runs (the fused step runs wherever one could):
    # prepare_forward lays W_hh^T out for BLAS.
    packed = prepare_forward(batch_sizes[0], H, G, W_hh, W_hhT)
    # gates(N, 3H) = X(N, I) @ W_ih^T
    gemm(NoTrans, Trans, N, G, I, 1, X, I, W_ih, I, 0, gates, G)
    for k in range(T):
        s = step_in_order(k, T, N, batch_sizes, reverse, False, &off)
        # work(B_t, 3H) = h_prev(B_t, H) @ W_hh^T
        recurrent_gemm(s, H, G, W_hhT, packed, h0, Hs, 0, work)
        for part in range(2):
            n = state_block(s, part, &j0)
            row = s.off + j0
            gru_rows(n, H, gates + row * G, work + j0 * G, b, b_hn,
                     prev_row(s, j0, H, h0, Hs), hn + row * H, Hs + row * H)
        store_final(s, H, Hs, h_n)


cdef void gru_forward_fused(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H, Py_ssize_t N,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* b_hn, const floating* h0,
    floating* gates, floating* hn, floating* Hs, floating* h_n, floating* work,
    bint reverse, bint keep_gates,
) noexcept nogil:
    """gru_forward through the fused step (blas.pxd): both products and the
    cell in one kernel per block of rows, on the weights packed once; the
    activated gates and hn only if ``keep_gates``."""
    cdef Py_ssize_t k, j0, n, row, off = 0
    cdef int part
    cdef Py_ssize_t G = GRU_GATES * H
    cdef Step s
    gru_pack(I, H, W_ih, W_hh, b, b_hn, work)
    for k in range(T):
        s = step_in_order(k, T, N, batch_sizes, reverse, False, &off)
        for part in range(2):
            n = state_block(s, part, &j0)
            row = s.off + j0
            # gates_t, hn_t, h_t of the block = the cell on x_t W_ih^T, h_prev W_hh^T, b, b_hn
            gru_fused_step(n, I, H, X + row * I, prev_row(s, j0, H, h0, Hs), work,
                           Hs + row * H, gates + row * G if keep_gates else NULL,
                           hn + row * H if keep_gates else NULL)
        store_final(s, H, Hs, h_n)


cdef void gru_forward_infer(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* b_hn, const floating* h0,
    floating* gates, floating* hn, floating* Hs, floating* h_n, floating* work,
    bint reverse,
) noexcept nogil:
    if use_fused():
        gru_forward_fused(T, batch_sizes, I, H, total_rows(T, batch_sizes), X, W_ih, W_hh,
                          b, b_hn, h0, gates, hn, Hs, h_n, work, reverse, False)
        return
    gru_forward(T, batch_sizes, I, H, X, W_ih, W_hh, b, b_hn, h0, gates, hn, Hs, h_n, work,
                reverse)


cdef void gru_step(
    Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
    const floating* x, const floating* W_ih, const floating* W_hh,
    const floating* b, const floating* b_hn, const floating* h_prev,
    floating* h, floating* work,
) noexcept nogil:
    cdef Py_ssize_t G = GRU_GATES * H
    cdef floating* gates = work             # (B, 3H)
    cdef floating* gh = work + B * G         # (B, 3H)
    cdef floating* hn = work + 2 * B * G     # (B, H)
    # gates(B, 3H) = x(B, I) @ W_ih^T
    gemm(NoTrans, Trans, B, G, I, 1, x, I, W_ih, I, 0, gates, G)
    # gh(B, 3H) = h_prev(B, H) @ W_hh^T
    gemm(NoTrans, Trans, B, G, H, 1, h_prev, H, W_hh, H, 0, gh, G)
    gru_rows(B, H, gates, gh, b, b_hn, h_prev, hn, h)


cdef void gru_backward(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* gates, const floating* hn,
    const floating* Hs, const floating* dHs,
    floating* dgates, floating* dgates_h, floating* dh,
    floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, floating* db_hn, bint reverse,
) noexcept nogil:
    gru_backward_dh(T, batch_sizes, I, H, X, W_ih, W_hh, h0, gates, hn, Hs, dHs, dgates,
                    dgates_h, dh, work, dX, dW_ih, dW_hh, db, db_hn, reverse, NULL)


cdef void gru_backward_dh(
    Py_ssize_t T, const Py_ssize_t* batch_sizes, Py_ssize_t I, Py_ssize_t H,
    const floating* X, const floating* W_ih, const floating* W_hh,
    const floating* h0, const floating* gates, const floating* hn,
    const floating* Hs, const floating* dHs,
    floating* dgates, floating* dgates_h, floating* dh,
    floating* work, floating* dX,
    floating* dW_ih, floating* dW_hh, floating* db, floating* db_hn, bint reverse,
    floating* dHs_total,
) noexcept nogil:
    cdef Py_ssize_t k, j0, n, m, row, off = 0
    cdef int part
    cdef Py_ssize_t G = GRU_GATES * H
    cdef Py_ssize_t N = total_rows(T, batch_sizes)
    cdef Step s
    cdef floating* H_prev = work                              # (N, H)
    cdef floating* W = work + gru_backward_W_hh_offset(N, H)
    cdef bint packed = prepare_backward(batch_sizes[0], H, G, W_hh, W)
    cdef Pending p = pending_rows(batch_sizes[0], G, max(I, H))
    if dgates != gates:
        # The input-side gate gradients are computed in place over the gates.
        memcpy(dgates, gates, N * G * sizeof(floating))
    for k in range(T):
        s = step_in_order(k, T, N, batch_sizes, reverse, True, &off)
        for part in range(2):
            n = state_block(s, part, &j0)
            row = s.off + j0
            record_state_gradient(n, H, dHs + row * H, dh + j0 * H, dHs_total, row)
            # h_t = (1 - z) n + z h_prev, n = tanh(W_in x + b_in + r hn):
            # [dr~, dz~, dn~] into dgates, [dr~, dz~, dn~ r] into dgates_h,
            # dh = z dh_t (the rest of dE/dh_prev comes through W_hh below)
            gru_rows_backward(n, H, dgates + row * G, dgates_h + row * G, hn + row * H,
                              prev_row(s, j0, H, h0, Hs), dHs + row * H, dh + j0 * H)
        # dh[:B_t](B_t, H) += dgates_h_t(B_t, 3H) @ W_hh(3H, H)
        step_product_backward(s.B, H, G, dgates_h + s.off * G, W, packed, 1, dh)
        gather_prev(s, H, h0, Hs, H_prev, H)
        if step_done(&p, s, batch_sizes[0]):
            split_gradient_products(&p, I, H, G, X, H_prev, dgates, dgates_h, dW_ih, dW_hh)
    loop_done(&p, N)
    split_gradient_products(&p, I, H, G, X, H_prev, dgates, dgates_h, dW_ih, dW_hh)
    bias_and_input_gradients(N, I, G, W_ih, dgates, dX, db)
    # db_hn(H) += column sums of dgates_h[:, 2H:3H]
    for row in range(N):
        for m in range(H):
            db_hn[m] += dgates_h[row * G + 2 * H + m]


# --- sizes (gru.pxd) ----------------------------------------------------------

cdef Py_ssize_t gru_gates_size(Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    return N * GRU_GATES * H


cdef Py_ssize_t gru_forward_W_hhT_offset(Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    return align_up(B * GRU_GATES * H)


cdef Py_ssize_t gru_forward_work_size(Py_ssize_t B, Py_ssize_t I,
                                      Py_ssize_t H) noexcept nogil:
    return max(gru_forward_W_hhT_offset(B, H) + packed_size(H, GRU_GATES * H),
               gru_packed_size(I, H))


cdef Py_ssize_t gru_backward_W_hh_offset(Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    return align_up(N * H)


cdef Py_ssize_t gru_backward_work_size(Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    return gru_backward_W_hh_offset(N, H) + packed_size(GRU_GATES * H, H)


cdef Py_ssize_t gru_step_work_size(Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    return B * (2 * GRU_GATES + 1) * H


# --- Python entry points: O(T) argument checks, then the nogil kernels --------

def _check_layer(X, batch_sizes, W_ih, W_hh, h0):
    cdef Py_ssize_t N = X.shape[0], I = X.shape[1], H = W_hh.shape[1]
    cdef Py_ssize_t B = h0.shape[0], G = GRU_GATES * H
    check(N >= 1 and I >= 1 and H >= 1 and B >= 1, "gru: empty dimension")
    check_blas_sizes(rows=N + H, columns=I + H, gates=GRU_GATES * H)
    check_packed(batch_sizes, N, B)
    check_shape(W_hh, (G, H), "W_hh")
    check_shape(W_ih, (G, I), "W_ih")
    check_shape(h0, (B, H), "h0")
    return N, I, H, B


def forward(const floating[:, ::1] X not None, const Py_ssize_t[::1] batch_sizes not None,
            const floating[:, ::1] W_ih not None, const floating[:, ::1] W_hh not None,
            const floating[::1] b not None, const floating[::1] b_hn not None,
            const floating[:, ::1] h0 not None, floating[:, ::1] gates not None,
            floating[:, ::1] hn not None, floating[:, ::1] Hs not None,
            floating[:, ::1] h_n not None, bint reverse=False):
    """GRU forward pass over a packed batch; fills gates, hn, Hs and h_n."""
    cdef Py_ssize_t N, I, H, B
    N, I, H, B = _check_layer(X, batch_sizes, W_ih, W_hh, h0)
    cdef Py_ssize_t G = GRU_GATES * H
    for a, shape, name in ((b, (G,), "b"), (b_hn, (H,), "b_hn"),
                           (gates, (N, G), "gates"), (hn, (N, H), "hn"),
                           (Hs, (N, H), "Hs"), (h_n, (B, H), "h_n")):
        check_shape(a, shape, name)
    cdef floating[::1] work = np.empty(gru_forward_work_size(B, I, H), dtype=np.asarray(Hs).dtype)
    with nogil:
        gru_forward(batch_sizes.shape[0], &batch_sizes[0], I, H, &X[0, 0],
                    &W_ih[0, 0], &W_hh[0, 0], &b[0], &b_hn[0], &h0[0, 0],
                    &gates[0, 0], &hn[0, 0], &Hs[0, 0], &h_n[0, 0], &work[0],
                    reverse)


def backward(const floating[:, ::1] X not None, const Py_ssize_t[::1] batch_sizes not None,
             const floating[:, ::1] W_ih not None, const floating[:, ::1] W_hh not None,
             const floating[:, ::1] h0 not None, const floating[:, ::1] gates not None,
             const floating[:, ::1] hn not None, const floating[:, ::1] Hs not None,
             const floating[:, ::1] dHs not None, floating[:, ::1] dgates not None,
             floating[:, ::1] dh not None, floating[:, ::1] dX,
             floating[:, ::1] dW_ih not None, floating[:, ::1] dW_hh not None,
             floating[::1] db not None, floating[::1] db_hn not None, bint reverse=False):
    """BPTT through :func:`forward`; see ``gru.pxd`` for what each array holds."""
    cdef Py_ssize_t N, I, H, B
    N, I, H, B = _check_layer(X, batch_sizes, W_ih, W_hh, h0)
    cdef Py_ssize_t G = GRU_GATES * H
    for a, shape, name in ((gates, (N, G), "gates"), (hn, (N, H), "hn"),
                           (Hs, (N, H), "Hs"), (dHs, (N, H), "dHs"),
                           (dgates, (N, G), "dgates"), (dh, (B, H), "dh"),
                           (dX, (N, I), "dX"), (dW_ih, (G, I), "dW_ih"),
                           (dW_hh, (G, H), "dW_hh"), (db, (G,), "db"),
                           (db_hn, (H,), "db_hn")):
        check_shape(a, shape, name)
    dtype = np.asarray(Hs).dtype
    cdef floating[:, ::1] dgates_h = np.empty((N, G), dtype=dtype)
    cdef floating[::1] work = np.empty(gru_backward_work_size(N, H), dtype=dtype)
    cdef floating* dX_ptr = &dX[0, 0] if dX is not None else NULL
    with nogil:
        gru_backward(batch_sizes.shape[0], &batch_sizes[0], I, H, &X[0, 0],
                     &W_ih[0, 0], &W_hh[0, 0], &h0[0, 0], &gates[0, 0], &hn[0, 0],
                     &Hs[0, 0], &dHs[0, 0], &dgates[0, 0], &dgates_h[0, 0], &dh[0, 0],
                     &work[0], dX_ptr, &dW_ih[0, 0], &dW_hh[0, 0], &db[0],
                     &db_hn[0], reverse)
