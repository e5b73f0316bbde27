# cython: language_level=3
"""A whole recurrent network in compiled code: the stack, the output layer,
the loss and BPTT, each call one self-contained pass over a packed batch.

:class:`Stack` drives the cell kernels of every layer and direction, then

    Z = S W_y^T + b_y,   Y = g2(Z)                    the output layer
    E = (1 / count) sum (Y - D)^2                     squared error, or
    E = (1 / count) sum (logsumexp(Z) - Z[k])         softmax cross-entropy,
        dE/dZ = (softmax(Z) - onehot(k)) / count      from log-sum-exp: no overflow

Both losses are means (``count`` is the number of scored outputs of the
whole batch, or of scored rows for cross-entropy), so that the learning rate
does not depend on the batch size or the sequence length; truncated BPTT
passes the whole batch's count to each chunk.

and backpropagates, so that one training step on a packed batch is one call
with no Python in between and no allocation once the workspace has grown to
the largest batch seen. ``S`` are the scored states: every step of the last
layer (``return_sequences``) or each sequence's final state, both directions
side by side (``(R, D*H)``, ``R = N`` or ``B``). Between layers, the outputs
of both directions are concatenated into the next layer's input and
multiplied by that layer's dropout mask, if any.

The parameters are one flat buffer laid out as ``crnn._network`` describes:
per unit (``k = layer * D + direction``) the blocks of :data:`BLOCKS` that
its cell reads (:data:`CELLS`), at the offsets given to the constructor,
then ``W_y`` and ``b_y``. Gradients use the same layout and are accumulated
into. Initial and final states are ``(n_states, L*D, B, H)`` arrays
(:meth:`Stack.state_shape`): state ``j`` (0: h, 1: the LSTM's c) of unit
``k`` for each of the ``B`` sequences, in packed order.

Every method is one pass, from the parameters and the batch to its results;
the workspace is scratch that the next pass overwrites, and nothing of one
call is read by another. A Stack serves one pass at a time: a call made
while another thread's pass runs on the same Stack raises RuntimeError
(instead of sharing its workspace). Threads that run passes at once each
need their own Stack: ``crnn._network.RecurrentNetwork`` builds one per
network, and the estimators build a network per call.

While its kernels run, the calling thread flushes subnormal numbers to zero
(see ``elementwise.h``): a result below 1.2e-38 in float32 (2.2e-308 in
float64) becomes 0. The thread's floating-point state is restored before
each call returns.
"""
import threading
from collections import namedtuple

import numpy as np

from libc.limits cimport INT_MAX
from libc.math cimport exp, isfinite, log
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBuffer_Release, PyObject_GetBuffer

from cython cimport floating

from crnn.kernels._elementwise cimport (
    activation_grad, bias_activation, crnn_subnormals_off, crnn_subnormals_restore,
)
from crnn.kernels.abi cimport align_up
from crnn.kernels.activations cimport IDENTITY, SOFTMAX
from crnn.kernels.blas cimport (
    NoTrans, Trans, fused_kernel, gemm, gru_fused_step, gru_pack, gru_packed_size,
    hold_one_thread, lstm_fused_step, lstm_pack, lstm_packed_size, pack, packed_gemm,
    packed_size, release_threads, use_packed,
)
from crnn.kernels.elman cimport (
    ELMAN_GATES, ELMAN_STATES, elman_backward_dh, elman_backward_work_size, elman_forward,
    elman_forward_work_size, elman_step,
)
from crnn.kernels.gru cimport (
    GRU_GATES, GRU_STATES, gru_backward_dh, gru_backward_work_size, gru_forward,
    gru_forward_infer, gru_forward_work_size, gru_gates_size, gru_step, gru_step_work_size,
)
from crnn.kernels.lstm cimport (
    LSTM_GATES, LSTM_STATES, lstm_backward_dh, lstm_backward_work_size, lstm_forward,
    lstm_forward_infer, lstm_forward_work_size, lstm_gates_size, lstm_step, lstm_step_work_size,
)

from crnn._config import check_memory
from crnn.kernels.activations import CODES, OUTPUTS
from crnn.kernels.blas import check_blas_sizes

INTP = np.dtype(np.intp)
cdef type NDARRAY = np.ndarray


cdef enum CellCode:
    ELMAN
    LSTM
    GRU


# The parameter blocks of one unit: the columns of ``unit_offsets``.
cdef enum:
    W_IH
    W_HH
    BIAS
    B_HN        # the GRU's recurrent bias of the candidate
    N_BLOCKS

#: Names of the parameter blocks of a unit, in the order of the columns of
#: ``unit_offsets`` (the enum W_IH .. B_HN above).
BLOCKS = ("W_ih", "W_hh", "b", "b_hn")

#: What the stack knows of a cell: its code, gates per hidden unit
#: (``G = n_gates * H``), states (h, and the LSTM's c) and the blocks of
#: :data:`BLOCKS` its kernels read.
CellKernel = namedtuple("CellKernel", ["code", "n_gates", "n_states", "blocks"])

#: The cells the stack runs, by name, from the cell kernels' own constants
#: (``elman.pxd``, ``lstm.pxd``, ``gru.pxd``).
CELLS = {
    "elman": CellKernel(ELMAN, ELMAN_GATES, ELMAN_STATES, BLOCKS[:B_HN]),
    "lstm": CellKernel(LSTM, LSTM_GATES, LSTM_STATES, BLOCKS[:B_HN]),
    "gru": CellKernel(GRU, GRU_GATES, GRU_STATES, BLOCKS),
}


cdef struct Config:
    int cell, activation, g2
    bint cross_entropy, return_sequences
    Py_ssize_t I, H, O, L, D, G, n_states
    Py_ssize_t off_W_y, off_b_y
    # token input: V ids (0: real-valued input), the embedding W_emb (V, I)
    # at off_E, and the id whose row gets no gradient (-1: none)
    Py_ssize_t V, off_E, padding_idx


cdef struct Unit:
    # What one unit (a layer and direction) of the cell needs, in elements.
    Py_ssize_t gates, aux, dgates_h, forward, backward


cdef struct Shape:
    # The batch, and where each block of the workspace starts (in elements).
    Py_ssize_t T, N, B, R
    Py_ssize_t Hs, gates, aux, finals, zeros, embedded, inputs, S, Z, dZ, dS
    Py_ssize_t dHs, dstate, bptt, dX, dX0, dgates_h, work, total


cdef inline Py_ssize_t take(Py_ssize_t* end, Py_ssize_t size) noexcept nogil:
    """Reserve ``size`` elements at ``end``, starting at a multiple of ALIGN
    (abi.pxd); return the start."""
    cdef Py_ssize_t start = align_up(end[0])
    end[0] = start + size
    return start


cdef inline Py_ssize_t state_at(const Config* c, Py_ssize_t B, int j,
                                Py_ssize_t k) noexcept nogil:
    """Where state ``j`` (0: h, 1: c) of unit ``k`` starts in an
    ``(n_states, L*D, B, H)`` array of states."""
    return (j * c.L * c.D + k) * B * c.H


cdef Unit unit_sizes(const Config* c, Py_ssize_t N, Py_ssize_t B,
                     Py_ssize_t I) noexcept nogil:
    """The workspace of one unit for ``N`` packed rows of ``B`` sequences and
    inputs of width at most ``I``: the one dispatch on the cell for sizes."""
    cdef Unit u
    cdef Py_ssize_t H = c.H
    u.gates = u.aux = u.dgates_h = 0
    if c.cell == ELMAN:
        u.forward = elman_forward_work_size(H)
        u.backward = elman_backward_work_size(N, I, H)
    elif c.cell == LSTM:
        u.gates = lstm_gates_size(N, H)
        u.aux = N * H                                 # c_t
        u.forward = lstm_forward_work_size(I, H)
        u.backward = lstm_backward_work_size(N, I, H)
    else:
        u.gates = gru_gates_size(N, H)
        u.aux = N * H                                 # W_hn h + b_hn
        u.dgates_h = gru_gates_size(N, H)
        u.forward = gru_forward_work_size(B, I, H)
        u.backward = gru_backward_work_size(N, H)
    return u


cdef Shape plan(const Config* c, Py_ssize_t T, Py_ssize_t N, Py_ssize_t B,
               bint batch_first) noexcept nogil:
    """The workspace of a batch of ``N`` packed rows, ``B`` sequences, ``T``
    steps (``batch_first``: given as ``(B, T, I)``, to be made time-major)."""
    cdef Shape s
    cdef Py_ssize_t U = c.L * c.D, Hd = c.D * c.H, H = c.H, end = 0
    cdef Py_ssize_t I_max = max(c.I, Hd) if c.L > 1 else c.I   # widest layer input
    cdef Unit u = unit_sizes(c, N, B, I_max)
    s.T, s.N, s.B = T, N, B
    s.R = N if c.return_sequences else B
    s.Hs = take(&end, U * N * H)                       # states of every unit
    s.gates = take(&end, U * u.gates)                  # LSTM/GRU gate activations
    s.aux = take(&end, U * u.aux)                      # LSTM c_t, GRU W_hn h + b_hn
    s.finals = take(&end, c.n_states * U * B * H)      # (n_states, U, B, H)
    s.zeros = take(&end, B * H)                        # the default initial state
    # layer 0's input, time-major: W_emb[tokens], or a batch-first X transposed
    s.embedded = take(&end, N * c.I if c.V or batch_first else 0)
    s.inputs = take(&end, (c.L - 1) * N * Hd)          # inputs of layers 1 .. L-1
    s.S = take(&end, s.R * Hd)
    s.Z = take(&end, s.R * c.O)                        # Z, then Y = g2(Z)
    s.dZ = take(&end, s.R * c.O)                       # dE/dZ
    s.dS = take(&end, s.R * Hd)
    s.dHs = take(&end, c.D * N * H)                    # dE/dh_t from above, per direction
    s.dstate = take(&end, c.n_states * B * H)          # dh (and dc) of one unit
    s.bptt = take(&end, u.backward)                    # one unit's BPTT workspace
    s.dX = take(&end, c.D * N * Hd if c.L > 1 else 0)  # dE/d(layer input), per direction
    s.dX0 = take(&end, c.D * N * c.I if c.V else 0)    # dE/d(embedded rows), per direction
    s.dgates_h = take(&end, u.dgates_h)
    s.work = take(&end, u.forward)                     # one unit's forward workspace
    s.total = take(&end, 0)
    return s


def aligned_empty(Py_ssize_t n, dtype):
    """An uninitialised 1-d array of ``n`` elements whose data starts on a
    64-byte boundary (a cache line, an AVX-512 register)."""
    cdef Py_ssize_t item = np.dtype(dtype).itemsize, skip
    buf = np.empty(n + 64 // item, dtype=dtype)
    skip = (-buf.ctypes.data) % 64 // item
    return buf[skip:skip + n]


# --- column blocks -----------------------------------------------------------

cdef void join(Py_ssize_t rows, Py_ssize_t H, Py_ssize_t D, const floating* blocks,
               floating* out) noexcept nogil:
    """out(rows, D*H)[:, d*H:(d+1)*H] = blocks[d] (rows, H), for d < D."""
    cdef Py_ssize_t i, d
    for d in range(D):
        for i in range(rows):
            memcpy(out + (i * D + d) * H, blocks + (d * rows + i) * H, H * sizeof(floating))


cdef void split(Py_ssize_t rows, Py_ssize_t H, Py_ssize_t D, Py_ssize_t d,
                const floating* A, floating* out) noexcept nogil:
    """out(rows, H) = A(rows, D*H)[:, d*H:(d+1)*H]."""
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(out + i * H, A + (i * D + d) * H, H * sizeof(floating))


cdef void multiply(Py_ssize_t n, floating* A, const floating* M) noexcept nogil:
    """A *= M, element-wise over n elements."""
    cdef Py_ssize_t i
    for i in range(n):
        A[i] *= M[i]


# --- the embedding -------------------------------------------------------------

cdef void gather_rows(Py_ssize_t n, Py_ssize_t I, const floating* W_emb,
                      const Py_ssize_t* tokens, floating* X) noexcept nogil:
    """X(n, I)[r] = W_emb(V, I)[tokens[r]]: the input product with a one-hot
    vector, as a row copy."""
    cdef Py_ssize_t r
    for r in range(n):
        memcpy(X + r * I, W_emb + tokens[r] * I, I * sizeof(floating))


cdef void scatter_add_rows(Py_ssize_t n, Py_ssize_t I, const floating* dX,
                           const Py_ssize_t* tokens, Py_ssize_t padding_idx,
                           floating* dW_emb) noexcept nogil:
    """dW_emb(V, I)[tokens[r]] += dX(n, I)[r] for every row whose token is not
    ``padding_idx``: the gradient of :func:`gather_rows`, rows of one token
    summed in row order."""
    cdef Py_ssize_t r, i
    cdef floating* row
    for r in range(n):
        if tokens[r] == padding_idx:
            continue
        row = dW_emb + tokens[r] * I
        for i in range(I):
            row[i] += dX[r * I + i]


# --- the passes ----------------------------------------------------------------

cdef void unit_forward(const Config* c, const Shape* s, const Py_ssize_t* bs,
                       Py_ssize_t k, Py_ssize_t I_l, const floating* layer_in,
                       const floating* params, const Py_ssize_t* off,
                       const floating* initial, floating* finals,
                       floating* ws, bint training) noexcept nogil:
    """The forward pass of unit ``k`` (direction ``k % D``) over its layer's
    input: the one dispatch on the cell of the forward call. ``training``: a
    backward pass follows (the LSTM and the GRU keep their gates only then)."""
    cdef Py_ssize_t H = c.H, N = s.N, B = s.B
    cdef bint reverse = k % c.D == 1
    cdef const floating* h0 = ws + s.zeros
    cdef const floating* c0 = ws + s.zeros
    if initial != NULL:
        h0 = initial + state_at(c, B, 0, k)
        if c.n_states == 2:
            c0 = initial + state_at(c, B, 1, k)
    if c.cell == ELMAN:
        elman_forward(s.T, bs, I_l, H, layer_in, params + off[W_IH], params + off[W_HH],
                      params + off[BIAS], h0, ws + s.Hs + k * N * H,
                      finals + state_at(c, B, 0, k), ws + s.work, reverse, c.activation)
    elif c.cell == LSTM and training:
        lstm_forward(s.T, bs, I_l, H, layer_in, params + off[W_IH], params + off[W_HH],
                     params + off[BIAS], h0, c0, ws + s.gates + k * N * c.G,
                     ws + s.Hs + k * N * H, ws + s.aux + k * N * H,
                     finals + state_at(c, B, 0, k), finals + state_at(c, B, 1, k),
                     ws + s.work, reverse)
    elif c.cell == LSTM:
        lstm_forward_infer(s.T, bs, I_l, H, layer_in, params + off[W_IH],
                           params + off[W_HH], params + off[BIAS], h0, c0,
                           ws + s.gates + k * N * c.G, ws + s.Hs + k * N * H,
                           ws + s.aux + k * N * H, finals + state_at(c, B, 0, k),
                           finals + state_at(c, B, 1, k), ws + s.work, reverse)
    elif training:
        gru_forward(s.T, bs, I_l, H, layer_in, params + off[W_IH], params + off[W_HH],
                    params + off[BIAS], params + off[B_HN], h0,
                    ws + s.gates + k * N * c.G, ws + s.aux + k * N * H,
                    ws + s.Hs + k * N * H, finals + state_at(c, B, 0, k), ws + s.work,
                    reverse)
    else:
        gru_forward_infer(s.T, bs, I_l, H, layer_in, params + off[W_IH],
                          params + off[W_HH], params + off[BIAS], params + off[B_HN], h0,
                          ws + s.gates + k * N * c.G, ws + s.aux + k * N * H,
                          ws + s.Hs + k * N * H, finals + state_at(c, B, 0, k),
                          ws + s.work, reverse)


cdef void stack_forward(const Config* c, const Shape* s, const Py_ssize_t* unit_off,
                        const floating* params, const floating* X,
                        const Py_ssize_t* bs, const floating* initial,
                        const floating* masks, floating* finals,
                        floating* ws, bint training) noexcept nogil:
    """Every layer and direction, then the scored states S; the final states
    into ``finals`` (n_states, L*D, B, H). ``training``: a backward pass
    follows."""
    cdef Py_ssize_t l, d, k, I_l
    cdef Py_ssize_t H = c.H, N = s.N, B = s.B, Hd = c.D * c.H
    cdef const floating* layer_in = X
    cdef floating* inputs
    if initial == NULL:
        memset(ws + s.zeros, 0, B * H * sizeof(floating))
    for l in range(c.L):
        I_l = c.I if l == 0 else Hd
        for d in range(c.D):
            k = l * c.D + d
            unit_forward(c, s, bs, k, I_l, layer_in, params, unit_off + N_BLOCKS * k,
                         initial, finals, ws, training)
        if l + 1 < c.L:
            # The next layer reads [h_fwd ; h_rev] (N, D*H), times its dropout mask.
            inputs = ws + s.inputs + l * N * Hd
            join(N, H, c.D, ws + s.Hs + l * c.D * N * H, inputs)
            if masks != NULL:
                multiply(N * Hd, inputs, masks + l * N * Hd)
            layer_in = inputs
    if c.return_sequences:
        join(N, H, c.D, ws + s.Hs + (c.L - 1) * c.D * N * H, ws + s.S)
    else:
        # the h of the last layer's units, side by side
        join(B, H, c.D, finals + state_at(c, B, 0, (c.L - 1) * c.D), ws + s.S)


cdef void output_activation(Py_ssize_t R, Py_ssize_t O, floating* Z, const floating* b_y,
                            int g2) noexcept nogil:
    """Z(R, O) = g2(Z + b_y), in place."""
    cdef Py_ssize_t i, j
    cdef floating* z
    cdef double lse
    if g2 != SOFTMAX:
        bias_activation(R, O, Z, b_y, g2)
        return
    bias_activation(R, O, Z, b_y, IDENTITY)
    for i in range(R):
        z = Z + i * O
        lse = log_sum_exp(O, z)
        for j in range(O):
            z[j] = exp(z[j] - lse)


cdef void output_layer(const Config* c, Py_ssize_t R, const floating* S,
                       const floating* params, floating* Y) noexcept nogil:
    """The outputs ``Y`` ``(R, O) = g2(S W_y^T + b_y)`` of scored states ``S``
    ``(R, D*H)``."""
    cdef Py_ssize_t Hd = c.D * c.H
    # Y(R, O) = S(R, D*H) @ W_y^T, then g2(Y + b_y)
    gemm(NoTrans, Trans, R, c.O, Hd, 1, S, Hd, params + c.off_W_y, Hd, 0, Y, c.O)
    output_activation(R, c.O, Y, params + c.off_b_y, c.g2)


cdef bint all_finite(Py_ssize_t n, const floating* a) noexcept nogil:
    """Whether no element of ``a`` ``(n,)`` is NaN or infinite."""
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(a[i]):
            return False
    return True


cdef void swap_batch_time(Py_ssize_t B, Py_ssize_t T, Py_ssize_t I, const floating* X,
                          floating* X_tm) noexcept nogil:
    """X_tm(T, B, I)[t, b] = X(B, T, I)[b, t]: batch-first sequences made
    time-major, which for sequences of one length is their packed batch."""
    cdef Py_ssize_t b, t
    for t in range(T):
        for b in range(B):
            memcpy(X_tm + (t * B + b) * I, X + (b * T + t) * I, I * sizeof(floating))


cdef double log_sum_exp(Py_ssize_t O, const floating* z) noexcept nogil:
    """log(sum_j exp(z[j])), shifted by the maximum so that it never overflows."""
    cdef Py_ssize_t j
    cdef double m = z[0], total = 0
    for j in range(1, O):
        m = max(m, <double>z[j])
    for j in range(O):
        total += exp(z[j] - m)
    return m + log(total)


cdef void softmax_grad(Py_ssize_t R, Py_ssize_t O, floating* dZ,
                       const floating* Y) noexcept nogil:
    """dZ = Y (dY - sum_j dY_j Y_j), row by row, in place over dY (R, O):
    BPTT through the softmax Y = softmax(Z)."""
    cdef Py_ssize_t i, j
    cdef double dot
    for i in range(R):
        dot = 0
        for j in range(O):
            dot += dZ[i * O + j] * Y[i * O + j]
        for j in range(O):
            dZ[i * O + j] = Y[i * O + j] * (dZ[i * O + j] - dot)


cdef double output_loss(const Config* c, const Shape* s, const floating* params,
                        const floating* D_target, const Py_ssize_t* k_target,
                        const floating* weights, Py_ssize_t row0, double count,
                        floating* grad, floating* ws) noexcept nogil:
    """The loss of the scored rows ``row0 .. R-1`` of S (each row's term
    times its weight, if ``weights``; summed, divided by ``count``). With
    ``grad``, also dE/dZ, dW_y and db_y (accumulated) and dE/dS (rows before
    ``row0`` get zero)."""
    cdef Py_ssize_t i, j, O = c.O, Hd = c.D * c.H, R = s.R - row0
    cdef const floating* S = ws + s.S + row0 * Hd
    cdef const floating* W_y = params + c.off_W_y
    cdef floating* Z = ws + s.Z + row0 * O
    cdef floating* dZ = ws + s.dZ + row0 * O
    cdef floating* z
    cdef const floating* t
    cdef double lse, r, w = 1, loss = 0
    if R <= 0:
        if grad != NULL:
            memset(ws + s.dS, 0, s.R * Hd * sizeof(floating))
        return 0.0
    # Z(R, O) = S(R, D*H) @ W_y^T
    gemm(NoTrans, Trans, R, O, Hd, 1, S, Hd, W_y, Hd, 0, Z, O)
    if c.cross_entropy:
        bias_activation(R, O, Z, params + c.off_b_y, IDENTITY)
        for i in range(R):
            z = Z + i * O
            if weights != NULL:
                w = weights[i]
            lse = log_sum_exp(O, z)
            loss += w * (lse - z[k_target[i]])
            if grad != NULL:
                # dE/dZ = w (softmax(Z) - onehot(k)) / count
                for j in range(O):
                    dZ[i * O + j] = w * exp(z[j] - lse) / count
                dZ[i * O + k_target[i]] -= w / count
    else:
        output_activation(R, O, Z, params + c.off_b_y, c.g2)      # Z holds Y
        for i in range(R):
            z = Z + i * O
            t = D_target + i * O
            if weights != NULL:
                w = weights[i]
            for j in range(O):
                r = z[j] - t[j]
                loss += w * r * r
                if grad != NULL:
                    # dE/dY = 2 w (Y - D) / count
                    dZ[i * O + j] = 2 * w * r / count
        if grad != NULL:
            # dE/dZ through Y = g2(Z), with g2' written with Y (_activation_codes.pxd)
            if c.g2 == SOFTMAX:
                softmax_grad(R, O, dZ, Z)
            else:
                activation_grad(R * O, dZ, Z, c.g2)
    if grad != NULL:
        # dW_y(O, D*H) += dZ(R, O)^T @ S(R, D*H)
        gemm(Trans, NoTrans, O, Hd, R, 1, dZ, O, S, Hd, 1, grad + c.off_W_y, Hd)
        for i in range(R):
            for j in range(O):
                grad[c.off_b_y + j] += dZ[i * O + j]
        memset(ws + s.dS, 0, row0 * Hd * sizeof(floating))
        # dS(R, D*H) = dZ(R, O) @ W_y(O, D*H)
        gemm(NoTrans, NoTrans, R, Hd, O, 1, dZ, O, W_y, Hd, 0, ws + s.dS + row0 * Hd, Hd)
    return loss / count


cdef void unit_backward(const Config* c, const Shape* s, const Py_ssize_t* bs,
                        Py_ssize_t k, Py_ssize_t I_l, const floating* layer_in,
                        const floating* params, const Py_ssize_t* off,
                        const floating* initial, floating* dHs, floating* dX,
                        floating* grad, floating* ws, floating* dHs_total) noexcept nogil:
    """BPTT through unit ``k`` from dE/dh_t ``dHs`` and dE/dh_n in
    ``ws + s.dstate`` (dE/dc_n zero): the one dispatch on the cell of the
    backward call. With ``dHs_total`` (N, H), each row's dE/dh_t in total
    into it."""
    cdef Py_ssize_t H = c.H, N = s.N, B = s.B
    cdef bint reverse = k % c.D == 1
    cdef floating* dh = ws + s.dstate
    cdef floating* dc = dh + B * H
    cdef const floating* h0 = ws + s.zeros
    cdef const floating* c0 = ws + s.zeros
    if initial != NULL:
        h0 = initial + state_at(c, B, 0, k)
        if c.n_states == 2:
            c0 = initial + state_at(c, B, 1, k)
    if c.cell == ELMAN:
        elman_backward_dh(s.T, bs, I_l, H, layer_in, params + off[W_IH],
                          params + off[W_HH], h0, ws + s.Hs + k * N * H, dHs, dh,
                          ws + s.bptt, dX, grad + off[W_IH], grad + off[W_HH],
                          grad + off[BIAS], reverse, c.activation, dHs_total)
    elif c.cell == LSTM:
        memset(dc, 0, B * H * sizeof(floating))
        lstm_backward_dh(s.T, bs, I_l, H, layer_in, params + off[W_IH],
                         params + off[W_HH], h0, c0, ws + s.gates + k * N * c.G,
                         ws + s.Hs + k * N * H, ws + s.aux + k * N * H, dHs,
                         ws + s.gates + k * N * c.G, dh, dc, ws + s.bptt, dX,
                         grad + off[W_IH], grad + off[W_HH], grad + off[BIAS], reverse,
                         dHs_total)
    else:
        gru_backward_dh(s.T, bs, I_l, H, layer_in, params + off[W_IH],
                        params + off[W_HH], h0, ws + s.gates + k * N * c.G,
                        ws + s.aux + k * N * H, ws + s.Hs + k * N * H, dHs,
                        ws + s.gates + k * N * c.G, ws + s.dgates_h, dh, ws + s.bptt, dX,
                        grad + off[W_IH], grad + off[W_HH], grad + off[BIAS],
                        grad + off[B_HN], reverse, dHs_total)


cdef void stack_backward(const Config* c, const Shape* s, const Py_ssize_t* unit_off,
                         const floating* params, const floating* X,
                         const Py_ssize_t* tokens, const Py_ssize_t* bs,
                         const floating* initial, const floating* masks, floating* grad,
                         floating* ws, floating* state_grads) noexcept nogil:
    """BPTT from dE/dS down through every layer; accumulates into ``grad``.
    With ``tokens`` (``X`` their embedded rows), down into the embedding too.
    With ``state_grads`` (L*D, N, H), every unit's dE/dh_t in total into it.

    Consumes the forward pass: LSTM and GRU gate gradients overwrite the
    stored gate activations.
    """
    cdef Py_ssize_t l, d, k, I_l
    cdef Py_ssize_t H = c.H, N = s.N, B = s.B, Hd = c.D * c.H
    cdef const floating* layer_in
    cdef floating* dHs
    cdef floating* dh = ws + s.dstate
    cdef floating* d_above = ws + s.dX      # dE/d(input of layer l + 1), (N, D*H)
    cdef floating* dX
    for l in range(c.L - 1, -1, -1):
        I_l = c.I if l == 0 else Hd
        layer_in = X if l == 0 else ws + s.inputs + (l - 1) * N * Hd
        # dE/dh_t from above, for both directions, before dX is overwritten.
        for d in range(c.D):
            dHs = ws + s.dHs + d * N * H
            if l + 1 < c.L:
                split(N, H, c.D, d, d_above, dHs)
            elif c.return_sequences:
                split(N, H, c.D, d, ws + s.dS, dHs)
            else:
                memset(dHs, 0, N * H * sizeof(floating))
        for d in range(c.D):
            k = l * c.D + d
            if l + 1 == c.L and not c.return_sequences:
                split(B, H, c.D, d, ws + s.dS, dh)      # dE/dh_n of the scored states
            else:
                memset(dh, 0, B * H * sizeof(floating))
            dX = NULL                           # layer 0's input needs none
            if l > 0:
                dX = ws + s.dX + d * N * Hd
            elif tokens != NULL:
                dX = ws + s.dX0 + d * N * I_l
            unit_backward(c, s, bs, k, I_l, layer_in, params, unit_off + N_BLOCKS * k,
                          initial, ws + s.dHs + d * N * H, dX, grad, ws,
                          state_grads + k * N * H if state_grads != NULL else NULL)
        if l == 0 and tokens != NULL:
            if c.D == 2:
                multiply_add(N * I_l, ws + s.dX0, ws + s.dX0 + N * I_l)
            scatter_add_rows(N, I_l, ws + s.dX0, tokens, c.padding_idx, grad + c.off_E)
        if l > 0:
            # Both directions read the same input: their dX add up; then the mask.
            if c.D == 2:
                multiply_add(N * Hd, d_above, ws + s.dX + N * Hd)
            if masks != NULL:
                multiply(N * Hd, d_above, masks + (l - 1) * N * Hd)


cdef void multiply_add(Py_ssize_t n, floating* A, const floating* B) noexcept nogil:
    """A += B over n elements."""
    cdef Py_ssize_t i
    for i in range(n):
        A[i] += B[i]


# --- the Python class ------------------------------------------------------------

cdef Py_ssize_t check_batch(const Py_ssize_t[::1] batch_sizes, Py_ssize_t N) except -1:
    """T, after checking that batch_sizes describes N packed rows, longest first."""
    cdef Py_ssize_t t, T = batch_sizes.shape[0], total = 0
    if T < 1:
        raise ValueError("batch_sizes is empty: at least one time step is needed")
    for t in range(T):
        if batch_sizes[t] < 1 or (t > 0 and batch_sizes[t] > batch_sizes[t - 1]):
            raise ValueError("batch_sizes must be positive and non-increasing "
                             "(sequences sorted longest first)")
        total += batch_sizes[t]
    if total != N:
        raise ValueError(f"batch_sizes sums to {total}, but the packed input has {N} rows")
    return T


cdef bint same_shape(tuple wanted, tuple shape) except -1:
    """Whether ``shape`` is ``wanted``, where None in ``wanted`` is any length."""
    cdef Py_ssize_t i
    if len(shape) != len(wanted):
        return False
    for i in range(len(wanted)):
        if wanted[i] is not None and wanted[i] != shape[i]:
            return False
    return True


cdef object buffer(obj, str what, tuple shape, dtype, bint writable):
    """The buffer of ``obj`` (a :class:`memoryview`), checked to be C-contiguous,
    of ``dtype``, of ``shape`` (None: any length) and writable if asked, or
    ValueError. The checks read the buffer the kernels will use, not the
    object's attributes, and the typed views are taken from this memoryview,
    so they see exactly the buffer checked here. An exact ndarray is
    returned as it is: its attributes are its buffer's."""
    if type(obj) is NDARRAY and obj.dtype is dtype and same_shape(shape, obj.shape):
        flags = obj.flags
        if flags.c_contiguous and (flags.writeable or not writable):
            return obj
    try:
        view = memoryview(obj)
    except TypeError:
        raise ValueError(f"{what} must be a {np.dtype(dtype)} array; got "
                         f"{type(obj).__name__}") from None
    try:
        got = np.dtype(view.format)
    except TypeError:
        got = None
    if got != dtype or view.itemsize != dtype.itemsize or view.ndim != len(shape) \
            or not view.c_contiguous:
        name = repr(view.format) if got is None else got.name
        order = "" if view.c_contiguous else ", not C-contiguous"
        raise ValueError(f"{what} must be a C-contiguous {len(shape)}-d {np.dtype(dtype)} "
                         f"array; got a {view.ndim}-d {name} array{order}")
    if not same_shape(shape, view.shape):
        wanted = ", ".join("any" if n is None else str(n) for n in shape)
        raise ValueError(f"{what} must have shape ({wanted}{',' * (len(shape) == 1)}); "
                         f"got {view.shape}")
    if writable and view.readonly:
        raise ValueError(f"{what} must be writable; got a read-only buffer")
    return view


cdef object optional_buffer(obj, str what, tuple shape, dtype, bint writable):
    return None if obj is None else buffer(obj, what, shape, dtype, writable)


cdef object check_tokens(obj, shape, Py_ssize_t V):
    """The buffer of token ids ``obj`` (intp, of ``shape``, or ``(any,)`` for
    None), each checked to lie in ``[0, V)``."""
    cdef Py_ssize_t i
    cdef const Py_ssize_t[::1] k
    view = buffer(obj, "token ids", (None,) if shape is None else shape, INTP, False)
    k = np.asarray(view).reshape(-1)
    for i in range(k.shape[0]):
        if not 0 <= k[i] < V:
            raise ValueError(f"token ids must lie in [0, {V}) (the vocabulary); got "
                             f"{k[i]} at position {i}")
    return view


cdef list block_extents(const Config* c, const Py_ssize_t[:, ::1] unit_off,
                        tuple used):
    """(start, size, name) of every block the network reads."""
    cdef Py_ssize_t k, I_l, Hd = c.D * c.H
    extents = []
    for k in range(c.L * c.D):
        I_l = c.I if k < c.D else Hd
        sizes = {"W_ih": c.G * I_l, "W_hh": c.G * c.H, "b": c.G, "b_hn": c.H}
        for j, name in enumerate(BLOCKS):
            if name in used:
                extents.append((unit_off[k, j], sizes[name], f"unit {k}'s {name}"))
    extents.append((c.off_W_y, c.O * Hd, "W_y"))
    extents.append((c.off_b_y, c.O, "b_y"))
    if c.V:
        extents.append((c.off_E, c.V * c.I, "W_emb"))
    return extents


cdef int check_layout(list extents, Py_ssize_t n_params) except -1:
    """ValueError unless every block lies inside the buffer of ``n_params``
    elements and no two blocks overlap."""
    end, previous = 0, None
    for start, size, name in sorted(extents):
        if start < 0 or start + size > n_params:
            raise ValueError(f"{name} ({size} elements at offset {start}) does not lie "
                             f"inside the {n_params} parameters")
        if start < end:
            raise ValueError(f"{name} (at offset {start}) overlaps {previous}")
        end, previous = start + size, name
    return 0


cdef class Stack:
    """Compiled forward pass, loss and BPTT of a whole recurrent network.

    Parameters
    ----------
    cell : {"elman", "lstm", "gru"}
        A key of :data:`CELLS`.
    activation : int
        The Elman cell's hidden activation code (``activations.CODES``).
    I, H, O, L, D : int
        Inputs, hidden units, outputs, layers, directions (1 or 2).
    output_activation : {"identity", "tanh", "sigmoid", "softmax"}
    cross_entropy : bool
        Softmax cross-entropy against integer classes; squared error otherwise.
    return_sequences : bool
        Score every step of the last layer, or each sequence's final state.
    unit_offsets : (L*D, len(BLOCKS)) intp
        Offsets of each unit's blocks in the flat parameter buffer, in the
        order of :data:`BLOCKS` (a block the cell does not read: any value).
    off_W_y, off_b_y : int
        Offsets of the output layer's blocks.
    n_params : int
        Size of the flat parameter buffer. Every block the network reads
        (``W_ih`` ``(G, I_l)``, ``W_hh`` ``(G, H)``, ``b`` ``(G,)``, the GRU's
        ``b_hn`` ``(H,)``, ``W_y`` ``(O, D*H)``, ``b_y`` ``(O,)``, ``W_emb``
        ``(V, I)``) must lie inside it, and no two may overlap: ValueError
        otherwise.
    dtype : numpy.float32 or numpy.float64
    vocab_size : int, default=0
        ``V`` > 0: the input is token ids ``(N,)`` intp in ``[0, V)``, and
        layer 0 reads their rows of the embedding ``W_emb`` ``(V, I)``
        (``x_t = W_emb[token_t]``, a one-hot input product done as a row
        copy; its gradient a scatter-add of ``dE/dx_t`` into those rows).
        0: the input is real vectors ``X`` ``(N, I)``.
    off_E : int, default=0
        Offset of ``W_emb`` in the parameter buffer.
    padding_idx : int, default=-1
        A token id in ``[0, V)`` whose row of ``W_emb`` gets no gradient
        (PyTorch's ``nn.Embedding(padding_idx=)``); -1 for none.

    Notes
    -----
    Every method is a whole pass over one packed batch (``X`` (N, I), or
    token ids (N,) intp, ``batch_sizes`` (T,) intp, non-increasing) and returns its results;
    ``initial`` states are ``(n_states, L*D, B, H)`` (:meth:`state_shape`) or
    None for zeros. With ``finals`` (the same shape), the pass also writes
    the final states there. ``masks`` are the dropout masks ``(L-1, N, D*H)``
    of layers 1 .. L-1, or None. A call made while another thread's pass
    runs on this Stack raises RuntimeError.

    Every array is checked, through its buffer, before a kernel runs: its
    dtype, shape, C-contiguity and (for what the pass writes) writability.
    Sizes that scipy's 32-bit BLAS cannot take (beyond 2^31 - 1) are refused,
    and the workspace a batch needs is checked against crnn's memory limit
    (``crnn.set_config(memory_limit=...)``) before it is allocated; when
    that allocation fails, the Stack is as it was.
    """

    cdef Config c
    cdef Py_ssize_t n_params
    cdef bint is_double
    cdef Py_ssize_t[:, ::1] unit_off
    cdef object workspace
    cdef object busy
    cdef readonly object dtype
    cdef Py_ssize_t[::1] uniform_bs     # output_dense's batch sizes, all uniform_B
    cdef Py_ssize_t uniform_B

    def __init__(self, str cell not None, int activation, Py_ssize_t I, Py_ssize_t H,
                 Py_ssize_t O, Py_ssize_t L, Py_ssize_t D, str output_activation not None,
                 bint cross_entropy, bint return_sequences, unit_offsets,
                 Py_ssize_t off_W_y, Py_ssize_t off_b_y, Py_ssize_t n_params, dtype,
                 Py_ssize_t vocab_size=0, Py_ssize_t off_E=0, Py_ssize_t padding_idx=-1):
        if cell not in CELLS or output_activation not in OUTPUTS:
            raise ValueError(f"unknown cell {cell!r} or output activation "
                             f"{output_activation!r}")
        if min(I, H, O, L) < 1 or D not in (1, 2):
            raise ValueError(f"bad sizes I={I}, H={H}, O={O}, L={L}, D={D}")
        if activation not in CODES.values():
            raise ValueError(f"unknown hidden activation code {activation}")
        if vocab_size < 0 or not (-1 <= padding_idx < vocab_size) or (
                padding_idx != -1 and vocab_size == 0):
            raise ValueError(f"bad vocab_size={vocab_size} or padding_idx={padding_idx}: "
                             f"padding_idx must be -1 or a token id in [0, vocab_size)")
        kernel = CELLS[cell]
        check_blas_sizes(inputs=max(I, D * H) + H, gates=kernel.n_gates * H, outputs=O)
        self.c.cell = kernel.code
        self.c.G = kernel.n_gates * H
        self.c.n_states = kernel.n_states
        self.c.activation = activation
        self.c.g2 = OUTPUTS[output_activation]
        self.c.cross_entropy = cross_entropy
        self.c.return_sequences = return_sequences
        self.c.I, self.c.H, self.c.O, self.c.L, self.c.D = I, H, O, L, D
        self.c.off_W_y, self.c.off_b_y = off_W_y, off_b_y
        self.c.V, self.c.off_E, self.c.padding_idx = vocab_size, off_E, padding_idx
        # a copy: a caller's array changed later cannot move the blocks
        offsets = np.array(unit_offsets, dtype=np.intp, copy=True, order="C")
        if offsets.shape != (L * D, N_BLOCKS):
            raise ValueError(f"unit_offsets must have shape ({L * D}, {N_BLOCKS}); got "
                             f"{offsets.shape}")
        self.unit_off = offsets
        check_layout(block_extents(&self.c, self.unit_off, kernel.blocks), n_params)
        self.n_params = n_params
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype}")
        self.is_double = self.dtype == np.float64
        self.workspace = np.empty(0, dtype=self.dtype)
        self.busy = threading.Lock()
        self.uniform_bs = np.zeros(1, dtype=np.intp)
        self.uniform_B = 0

    def state_shape(self, Py_ssize_t B):
        """``(n_states, L*D, B, H)``: the initial and final states of ``B``
        sequences (state 0 is h, state 1 the LSTM's c)."""
        return (self.c.n_states, self.c.L * self.c.D, B, self.c.H)

    @property
    def vocab_size(self):
        """``V``: the input is token ids in ``[0, V)``; 0 for real vectors."""
        return self.c.V

    @property
    def workspace_nbytes(self):
        """Bytes of workspace held now (the largest batch seen so far)."""
        return self.workspace.nbytes

    def workspace_size(self, Py_ssize_t T, Py_ssize_t N, Py_ssize_t B):
        """Elements of workspace a pass over ``N`` packed rows of ``B``
        sequences and ``T`` steps needs."""
        return plan(&self.c, T, N, B, False).total

    def stepper(self, params, Py_ssize_t B, *, bint squeeze=False, convert=None):
        """A :class:`Stepper` of this network for ``B`` streams, running
        ``params`` (checked now; the Stepper keeps it), from zero states
        (``squeeze`` and ``convert``: see :class:`Stepper`)."""
        return Stepper(self, params, B, squeeze=squeeze, convert=convert)

    # -- the passes -------------------------------------------------------

    def forward(self, params, X, batch_sizes, initial=None, masks=None, finals=None):
        """The recurrent stack over a packed batch; returns the final states
        ``(n_states, L*D, B, H)`` (in ``finals`` if given)."""
        return self.run(params, X, batch_sizes, initial, masks, finals, True, None, None,
                        0, 0, None, None, None)[1]

    def output(self, params, X, batch_sizes, Y, initial=None, finals=None):
        """``Y`` (R, O) = g2(S W_y^T + b_y) of a packed batch, ``R = N`` per
        step or ``B`` per sequence; returns the final states (in ``finals``
        if given)."""
        if Y is None:
            raise ValueError("Y, the array for the outputs, is required")
        return self.run(params, X, batch_sizes, initial, None, finals, True, Y, None, 0, 0,
                        None, None, None)[1]

    def loss(self, params, X, batch_sizes, target, Py_ssize_t row0=0, double count=0,
             initial=None, finals=None, weights=None):
        """Loss of a packed batch on its scored rows ``row0 ..`` (``target``
        and ``weights`` as for :meth:`loss_grad`), divided by ``count``
        (default: the number of scored terms, or their total weight); the
        final states into ``finals`` if given."""
        return self.run(params, X, batch_sizes, initial, None, finals, False, None, target,
                        row0, count, None, weights, None)[0]

    def loss_grad(self, params, X, batch_sizes, target, grad, Py_ssize_t row0=0,
                  double count=0, initial=None, masks=None, finals=None, weights=None,
                  state_grads=None):
        """Forward, loss and BPTT of a packed batch in one pass; returns the
        loss, and ADDS its gradient to ``grad``.

        ``target``: the scored rows ``row0 ..`` of the ``R`` rows, floats
        ``(R - row0, O)`` for squared error or intp classes ``(R - row0,)``
        for cross-entropy. ``weights`` (optional, ``(R - row0,)``, finite and
        >= 0) multiply each scored row's term. The final states into
        ``finals`` if given. ``state_grads`` (optional, ``(L*D, N, H)``)
        receives every unit's dE/dh_t in total, packed like the states: from
        above the unit and through its later steps.
        """
        if grad is None:
            raise ValueError("grad, the array the gradient is added to, is required")
        return self.run(params, X, batch_sizes, initial, masks, finals, False, None, target,
                        row0, count, grad, weights, state_grads)[0]

    # -- checks -----------------------------------------------------------

    cdef tuple run(self, params, X, batch_sizes, initial, masks, finals,
                   bint new_finals, Y, target, Py_ssize_t row0, double count, grad,
                   weights, state_grads):
        """Check every argument through its buffer, lay out (and grow) the
        workspace, and run the pass: ``(loss, finals)``."""
        cdef Py_ssize_t T, N, B, Hd = self.c.D * self.c.H
        cdef Shape s
        cdef const Py_ssize_t[::1] bs
        self.begin()
        try:
            dtype = self.dtype
            params = buffer(params, "params", (self.n_params,), dtype, False)
            tokens = None
            if self.c.V:
                tokens = check_tokens(X, None, self.c.V)
                X = None
                N = tokens.shape[0]
            else:
                X = buffer(X, "X", (None, self.c.I), dtype, False)
                N = X.shape[0]
            batch_sizes = buffer(batch_sizes, "batch_sizes", (None,), INTP, False)
            if N > INT_MAX:
                check_blas_sizes(rows=N)
            bs = batch_sizes
            T = check_batch(bs, N)
            B = bs[0]
            initial = optional_buffer(initial, "initial states", self.state_shape(B), dtype,
                                      False)
            if self.c.L == 1:
                masks = None
            masks = optional_buffer(masks, "dropout masks", (self.c.L - 1, N, Hd), dtype,
                                    False)
            if finals is None and new_finals:
                finals = np.empty(self.state_shape(B), dtype)
            result = finals
            finals = optional_buffer(finals, "finals", self.state_shape(B), dtype, True)
            s = self.shape(T, N, B, False)
            Y = optional_buffer(Y, "Y", (s.R, self.c.O), dtype, True)
            target = self.check_target(&s, target, row0)
            grad = optional_buffer(grad, "grad", (self.n_params,), dtype, True)
            state_grads = optional_buffer(state_grads, "state gradients",
                                          (self.c.L * self.c.D, N, self.c.H), dtype, True)
            if target is None:
                weights = None
            weights = self.check_weights(&s, weights, row0)
            if target is not None:
                terms = (1 if self.c.cross_entropy else self.c.O)
                if count == 0 and weights is not None:
                    count = terms * float(np.sum(np.asarray(weights)))
                    if count == 0 and s.R > row0:
                        raise ValueError("the weights of the scored rows sum to zero: "
                                         "give count, or weights that do not")
                count = count or (s.R - row0) * terms
            self.grow(s.total)
            if self.is_double:
                value = _run[double](self, &s, params, X, tokens, batch_sizes, initial,
                                     masks, finals, Y, target, weights, row0, count, grad,
                                     state_grads)
            else:
                value = _run[float](self, &s, params, X, tokens, batch_sizes, initial,
                                    masks, finals, Y, target, weights, row0, count, grad,
                                    state_grads)
            return value, result
        finally:
            self.end()

    def output_dense(self, params, X, Py_ssize_t max_B, Py_ssize_t max_gates):
        """The outputs ``Y`` ``(B, O)`` of ``B`` whole sequences of one length
        given batch-first, ``X`` ``(B, T, I)``: :meth:`output` without the
        packing (the sequences' time-major rows are the packed batch) and
        without the final states, for the common case of ``predict``.

        None, and nothing run, unless the network takes real vectors and
        scores each sequence's last step, and ``X`` is an ndarray (exactly)
        of the Stack's dtype, C-contiguous, ``(B, T, I)`` with ``T > 0`` and
        ``0 < B <= max_B``, every value finite, and with at most
        ``max_gates`` gate activations in the pass (``B T L D G``) unless
        ``B`` is 1. ``params`` is checked as :meth:`output` checks it.
        """
        if self.c.V or self.c.return_sequences or type(X) is not NDARRAY:
            return None
        if self.is_double:
            return _output_dense(self, params, X, max_B, max_gates, <double> 0)
        return _output_dense(self, params, X, max_B, max_gates, <float> 0)

    cdef int begin(self) except -1:
        """Begin a pass: RuntimeError while another thread's pass runs on this
        Stack; scipy's BLAS held at one thread until :meth:`end`."""
        if not self.busy.acquire(False):
            raise RuntimeError(
                "this Stack is running a pass in another thread: a Stack's workspace "
                "serves one pass at a time; give each thread its own network "
                "(RecurrentNetwork) and so its own Stack")
        hold_one_thread()
        return 0

    cdef void end(self) noexcept:
        """End a pass begun by :meth:`begin`."""
        release_threads()
        self.busy.release()

    cdef Shape shape(self, Py_ssize_t T, Py_ssize_t N, Py_ssize_t B,
                     bint batch_first) except *:
        """:func:`plan` of a batch, after checking that its workspace can
        exist at all (MemoryError otherwise)."""
        if self.workspace_bound(N, B) * self.dtype.itemsize >= 4.6e18:    # 2^62
            # beyond any memory: plan's products of sizes could overflow
            raise MemoryError(f"the workspace of a batch of {N} rows is beyond any "
                              f"machine's memory for this network")
        return plan(&self.c, T, N, B, batch_first)

    cdef int grow(self, Py_ssize_t total) except -1:
        """The workspace grown to at least ``total`` elements (checked against
        crnn's memory limit first; a failed allocation keeps the old one)."""
        if self.workspace.shape[0] < total:
            check_memory(total * self.dtype.itemsize, "the workspace of this batch")
            self.workspace = aligned_empty(total, self.dtype)
        return 0

    cdef const Py_ssize_t* uniform_batch_sizes(self, Py_ssize_t T, Py_ssize_t B) except NULL:
        """``T`` batch sizes of ``B`` each: those of ``B`` sequences of ``T``
        steps (kept between calls, remade when ``B`` or a longer ``T`` comes)."""
        if self.uniform_B != B or self.uniform_bs.shape[0] < T:
            self.uniform_bs = np.full(max(T, 16), B, dtype=np.intp)
            self.uniform_B = B
        return &self.uniform_bs[0]

    cdef double workspace_bound(self, Py_ssize_t N, Py_ssize_t B) noexcept:
        """A generous upper bound of :meth:`workspace_size`, in floating
        point (which cannot overflow): each of the workspace's blocks is at
        most ``(rows + H + 64) * width`` elements, and there are fewer than
        ``(L*D + 8) * (D + 2)`` of them."""
        cdef double L = self.c.L, D = self.c.D, H = self.c.H
        cdef double width = (self.c.G + max(self.c.I, self.c.D * self.c.H) + D * H
                             + self.c.O + H + 64)
        return (L * D + 8) * (D + 2) * (<double> N + B + H + 64) * width

    cdef object check_weights(self, const Shape* s, weights, Py_ssize_t row0):
        """The buffer of the scored rows' ``weights`` (None stays None),
        checked: ``(R - row0,)`` of the Stack's dtype, finite and >= 0."""
        if weights is None:
            return None
        weights = buffer(weights, "weights", (s.R - row0,), self.dtype, False)
        values = np.asarray(weights)
        if not (np.isfinite(values).all() and (values >= 0).all()):
            raise ValueError("weights must be finite and >= 0")
        return weights

    cdef object check_target(self, const Shape* s, target, Py_ssize_t row0):
        """The buffer of ``target`` (None stays None), checked."""
        cdef Py_ssize_t i, rows = s.R - row0
        cdef const Py_ssize_t[::1] k
        if target is None:
            return None
        if not 0 <= row0 <= s.R:
            raise ValueError(f"row0 must be in [0, {s.R}]; got {row0}")
        if not self.c.cross_entropy:
            return buffer(target, "targets", (rows, self.c.O), self.dtype, False)
        target = buffer(target, "class targets", (rows,), INTP, False)
        k = target
        for i in range(rows):
            if not 0 <= k[i] < self.c.O:
                raise ValueError(f"class targets must lie in [0, {self.c.O}); got "
                                 f"{k[i]} at row {i}")
        return target


# --- the typed body of every pass (float32 and float64) ----------------------------

cdef bint state_view(const floating[:, :, :, ::1] a, Py_ssize_t n_states, Py_ssize_t U,
                     Py_ssize_t B, Py_ssize_t H) noexcept:
    """Whether ``a`` is None or ``(n_states, U, B, H)``."""
    return a is None or (a.shape[0] == n_states and a.shape[1] == U and a.shape[2] == B
                         and a.shape[3] == H)


cdef double _run(Stack self, const Shape* s, const floating[::1] params,
                 const floating[:, ::1] X, const Py_ssize_t[::1] tokens,
                 const Py_ssize_t[::1] batch_sizes,
                 const floating[:, :, :, ::1] initial, const floating[:, :, ::1] masks,
                 floating[:, :, :, ::1] finals, floating[:, ::1] Y, target,
                 const floating[::1] weights, Py_ssize_t row0, double count,
                 floating[::1] grad, floating[:, :, ::1] state_grads) except? -1:
    """Forward; then the output ``Y``, or the loss of ``target`` (and, with
    ``grad``, BPTT), all in one block without the GIL. The input is ``X``, or
    ``tokens`` (X None) embedded first; with ``state_grads`` too, every
    unit's dE/dh_t into it. Every buffer has been checked by :meth:`Stack.run`."""
    cdef floating[::1] ws = self.workspace
    cdef const floating* init_ptr = &initial[0, 0, 0, 0] if initial is not None else NULL
    cdef const floating* mask_ptr = &masks[0, 0, 0] if masks is not None else NULL
    cdef floating* fin_ptr = &finals[0, 0, 0, 0] if finals is not None else &ws[s.finals]
    cdef floating* Y_ptr = &Y[0, 0] if Y is not None else NULL
    cdef floating* grad_ptr = &grad[0] if grad is not None else NULL
    cdef floating* dS_ptr = NULL
    cdef const floating[:, ::1] D
    cdef const Py_ssize_t[::1] k
    cdef const floating* D_ptr = NULL
    cdef const Py_ssize_t* k_ptr = NULL
    cdef const floating* w_ptr = NULL
    cdef bint scored = target is not None
    cdef Py_ssize_t Hd = self.c.D * self.c.H
    cdef double value = 0
    cdef unsigned long fp_state
    cdef Py_ssize_t L_D = self.c.L * self.c.D, n_st = self.c.n_states
    cdef const floating* X_ptr
    cdef const Py_ssize_t* tok_ptr = NULL
    # The views are the buffers checked by Stack.run; their sizes once more,
    # in case another thread reshaped an array in between.
    if (params.shape[0] != self.n_params
            or (tokens is None and (X.shape[0] != s.N or X.shape[1] != self.c.I))
            or (tokens is not None and tokens.shape[0] != s.N)
            or batch_sizes.shape[0] != s.T
            or (grad is not None and grad.shape[0] != self.n_params)
            or (Y is not None and (Y.shape[0] != s.R or Y.shape[1] != self.c.O))
            or (masks is not None and (masks.shape[0] != self.c.L - 1
                                       or masks.shape[1] != s.N or masks.shape[2] != Hd))
            or not state_view(initial, n_st, L_D, s.B, self.c.H)
            or not state_view(finals, n_st, L_D, s.B, self.c.H)
            or (state_grads is not None and (state_grads.shape[0] != L_D
                                             or state_grads.shape[1] != s.N
                                             or state_grads.shape[2] != self.c.H))):
        raise ValueError("an array of this pass changed shape while it was checked")
    if scored and s.R > row0:
        if self.c.cross_entropy:
            k = target
            if k.shape[0] != s.R - row0:
                raise ValueError("the class targets changed shape while they were checked")
            k_ptr = &k[0]
        else:
            D = target
            if D.shape[0] != s.R - row0 or D.shape[1] != self.c.O:
                raise ValueError("the targets changed shape while they were checked")
            D_ptr = &D[0, 0]
    if weights is not None and weights.shape[0] > 0:
        if weights.shape[0] != s.R - row0:
            raise ValueError("the weights changed shape while they were checked")
        w_ptr = &weights[0]
    if state_grads is not None and grad is not None:
        dS_ptr = &state_grads[0, 0, 0]
    if tokens is not None:
        tok_ptr, X_ptr = &tokens[0], &ws[s.embedded]
    else:
        X_ptr = &X[0, 0]
    with nogil:
        fp_state = crnn_subnormals_off()
        if tok_ptr != NULL:
            # X(N, I) = W_emb[tokens]
            gather_rows(s.N, self.c.I, &params[self.c.off_E], tok_ptr, &ws[s.embedded])
        stack_forward(&self.c, s, &self.unit_off[0, 0], &params[0], X_ptr,
                      &batch_sizes[0], init_ptr, mask_ptr, fin_ptr, &ws[0],
                      grad_ptr != NULL)
        if Y_ptr != NULL:
            output_layer(&self.c, s.R, &ws[s.S], &params[0], Y_ptr)
        if scored:
            value = output_loss(&self.c, s, &params[0], D_ptr, k_ptr, w_ptr, row0, count,
                                grad_ptr, &ws[0])
        if grad_ptr != NULL:
            stack_backward(&self.c, s, &self.unit_off[0, 0], &params[0], X_ptr, tok_ptr,
                           &batch_sizes[0], init_ptr, mask_ptr, grad_ptr, &ws[0], dS_ptr)
        crnn_subnormals_restore(fp_state)
    return value


cdef object _output_dense(Stack self, params, X, Py_ssize_t max_B, Py_ssize_t max_gates,
                          floating kind):
    """The body of :meth:`Stack.output_dense` (``kind`` only selects the type)."""
    cdef const floating[:, :, ::1] x
    cdef const floating[::1] p
    cdef floating[:, ::1] y
    cdef floating[::1] ws
    cdef const Py_ssize_t* bs
    cdef const floating* X_ptr
    cdef Py_ssize_t B, T, N, I = self.c.I
    cdef Shape s
    cdef bint finite
    cdef unsigned long fp_state
    try:
        x = X
    except (ValueError, TypeError, BufferError):    # another dtype, shape or order
        return None
    B, T = x.shape[0], x.shape[1]
    if (x.shape[2] != I or T < 1 or not 0 < B <= max_B
            or (B > 1 and B * T > max_gates // (self.c.L * self.c.D * self.c.G))):
        return None
    with nogil:
        finite = all_finite(B * T * I, &x[0, 0, 0])
    if not finite:
        return None
    self.begin()
    try:
        p = buffer(params, "params", (self.n_params,), self.dtype, False)
        N = B * T
        if N > INT_MAX:
            check_blas_sizes(rows=N)
        s = self.shape(T, N, B, B > 1)
        self.grow(s.total)
        ws = self.workspace
        bs = self.uniform_batch_sizes(T, B)
        Y = np.empty((B, self.c.O), self.dtype)
        y = Y
        if p.shape[0] != self.n_params or x.shape[0] != B or x.shape[1] != T:
            raise ValueError("an array of this pass changed shape while it was checked")
        with nogil:
            fp_state = crnn_subnormals_off()
            X_ptr = &x[0, 0, 0]
            if B > 1:
                swap_batch_time(B, T, I, X_ptr, &ws[s.embedded])
                X_ptr = &ws[s.embedded]
            stack_forward(&self.c, &s, &self.unit_off[0, 0], &p[0], X_ptr, bs, NULL, NULL,
                          &ws[s.finals], &ws[0], False)
            output_layer(&self.c, s.R, &ws[s.S], &p[0], &y[0, 0])
            crnn_subnormals_restore(fp_state)
        return Y
    finally:
        self.end()


# --- streaming: one step at a time ------------------------------------------------

cdef enum:
    # The most bytes of one block of a Stepper's outputs (one step's, if more).
    OUTPUT_BLOCK_BYTES = 65536
    # Steps of more multiply-adds than this (a few microseconds) run without
    # the GIL; releasing and taking it back (about 0.2 us) would cost a
    # shorter step more than another thread gains meanwhile.
    GIL_FREE_MADDS = 65536


cdef char* data_pointer(array, bint is_double) except NULL:
    """The address of the first element of a C-contiguous float64 (or
    float32) array, valid while the array lives."""
    cdef const double[::1] d
    cdef const float[::1] f
    if is_double:
        d = array
        return <char*> &d[0]
    f = array
    return <char*> &f[0]


cdef class Stepper:
    """One step at a time of a one-directional network over ``B`` streams,
    its states kept inside: for each step ``x`` ``(B, I)``, every layer's
    cell step, then the outputs ``Y = g2(h_L W_y^T + b_y)`` ``(B, O)``.

    With token input (``vocab_size``), each step takes ``B`` token ids
    ``(B,)`` intp instead, embedded as the Stack embeds them.

    Made by :meth:`Stack.stepper`; it runs the parameter buffer it was given
    (checked then, and kept). With ``squeeze`` (one output, ``O = 1``), the
    outputs of a step lose their last axis: ``(B,)`` (``()`` for one
    stream's 1-D ``x``). ``convert``, if given, is called on an ``x`` that
    :meth:`step` does not take as it is (another type, dtype, order or
    shape) and returns the array to step with instead, or raises. The
    states are two buffers of ``(n_states, L, B, H)`` that take turns: a
    step reads one and writes the other. A Stepper serves one thread at a
    time (RuntimeError otherwise), like a Stack.

    The LSTM and GRU layers step through the fused step (blas.pxd) on their
    weights packed once, when the Stepper is made, and so do the Elman
    layers' products when ``use_packed`` takes the packed kernel for them
    (on a BLAS without small-matrix kernels, at any size): so it runs the
    weights the buffer held then. Were the packed kernel to change
    afterwards (``blas.set_packed_isa``, ``set_packed_mode``), the steps fall
    back to the cells' plain step on the buffer.
    """

    cdef Config c
    cdef Py_ssize_t[:, ::1] unit_off
    cdef readonly Py_ssize_t B
    cdef bint is_double
    cdef object params, states, work
    cdef char* params_ptr
    cdef char* states_ptr
    cdef char* work_ptr
    cdef int current
    cdef bint running
    cdef readonly object dtype
    cdef object packed           # every layer's weights laid out for the fused step
    cdef char* packed_ptr
    cdef int packed_kernel       # the packed kernel they are laid out for; 0: none
    cdef bint squeeze
    cdef object convert
    cdef Py_ssize_t itemsize
    cdef bint held               # this call holds scipy's BLAS at one thread
    cdef Py_ssize_t step_madds   # multiply-adds of one step
    # The outputs of :meth:`step` are views of consecutive rows of a block
    # of a few steps' outputs, made one block at a time (one array per
    # block, not per step); ``block_single``: the block of 1-D x's steps.
    cdef object block
    cdef char* block_ptr
    cdef Py_ssize_t block_used, block_steps
    cdef bint block_single

    def __cinit__(self, Stack stack, params, Py_ssize_t B, *, bint squeeze=False,
                  convert=None):
        if stack.c.D != 1:
            raise ValueError("a bidirectional network cannot run step by step: its "
                             "reverse direction starts from each sequence's last step")
        if B < 1:
            raise ValueError(f"the number of streams must be at least 1; got {B}")
        check_blas_sizes(rows=B)
        if squeeze and stack.c.O != 1:
            raise ValueError(f"only a network of one output can squeeze it; this one has "
                             f"{stack.c.O}")
        if convert is not None and not callable(convert):
            raise TypeError(f"convert must be callable; got {type(convert).__name__}")
        self.squeeze, self.convert = squeeze, convert
        self.block, self.block_used, self.block_steps = None, 0, 0
        self.c = stack.c
        self.unit_off = stack.unit_off
        self.B, self.dtype, self.is_double = B, stack.dtype, stack.is_double
        self.itemsize = self.dtype.itemsize
        self.step_madds = B * (self.c.G * (self.c.I + self.c.H) + self.c.O * self.c.H
                               + (self.c.L - 1) * self.c.G * 2 * self.c.H)
        self.params = np.asarray(buffer(params, "params", (stack.n_params,), stack.dtype,
                                        False))
        cdef Py_ssize_t state_size = self.c.n_states * self.c.L * B * self.c.H
        # the cells' step workspace, then the embedded rows of a step (B, I)
        cdef Py_ssize_t step_work = max(lstm_step_work_size(B, self.c.H),
                                        gru_step_work_size(B, self.c.H))
        step_work = align_up(step_work) + (B * self.c.I if self.c.V else 0)
        check_memory((2 * state_size + step_work) * self.dtype.itemsize,
                     "the states of these streams")
        self.states = aligned_empty(2 * state_size, self.dtype)
        self.states[:] = 0
        self.work = aligned_empty(step_work, self.dtype)
        self.params_ptr = data_pointer(self.params, self.is_double)
        self.states_ptr = data_pointer(self.states, self.is_double)
        self.work_ptr = data_pointer(self.work, self.is_double)
        self.packed_kernel = fused_kernel()
        if self.c.cell == ELMAN:
            hold_one_thread()           # (as every step runs: the BLAS at one thread)
            if not use_packed(B, self.c.H, self.c.H, self.dtype.itemsize):
                self.packed_kernel = 0
            release_threads()
        if self.packed_kernel:
            self.packed = aligned_empty(stepper_packed_size(&self.c), self.dtype)
            self.packed_ptr = data_pointer(self.packed, self.is_double)
            if self.is_double:
                pack_layers(self, <double> 0)
            else:
                pack_layers(self, <float> 0)
        self.current = 0
        # Set while a step runs (the GIL orders the test and the set): a
        # call from another thread meanwhile raises RuntimeError.
        self.running = False

    @property
    def state(self):
        """The current states, ``(n_states, L, B, H)`` (a copy)."""
        n = self.c.n_states * self.c.L * self.B * self.c.H
        return self.states[self.current * n:(self.current + 1) * n].reshape(
            self.c.n_states, self.c.L, self.B, self.c.H).copy()

    def set_state(self, state):
        """Start the next step from ``state`` ``(n_states, L, B, H)`` (None: zeros)."""
        n = self.c.n_states * self.c.L * self.B * self.c.H
        shape = (self.c.n_states, self.c.L, self.B, self.c.H)
        self.enter()
        try:
            target = self.states[self.current * n:(self.current + 1) * n]
            if state is None:
                target[:] = 0
            else:
                value = np.asarray(buffer(state, "state", shape, self.dtype, False))
                if not np.isfinite(value).all():
                    raise ValueError("the state contains NaN or infinity")
                target[:] = value.reshape(-1)
        finally:
            self.leave()

    cdef int enter(self) except -1:
        """Begin a call: RuntimeError while another thread's call runs (the
        GIL orders this test and set); scipy's BLAS held at one thread if
        the steps call it (not when every product runs packed)."""
        if self.running:
            raise RuntimeError(
                "this Stepper is running a step in another thread: a stream's states "
                "serve one thread at a time")
        self.running = True
        self.held = not packed_now(self)
        if self.held:
            hold_one_thread()
        return 0

    cdef void leave(self) noexcept:
        """End a call begun by :meth:`enter`."""
        if self.held:
            release_threads()
        self.running = False

    def step(self, x):
        """One step: ``x`` ``(B, I)`` (or ``(I,)`` when ``B`` is 1) in; the
        outputs ``(B, O)`` (``(O,)``) out, a new array (a view of the Stepper's
        block of outputs, which no later step writes); the states move on.
        ``x`` must be a C-contiguous array of the Stepper's dtype, and finite
        (ValueError otherwise, and the states stay as they were), unless
        ``convert`` makes it one. With token input: ``x`` the ``B`` token ids
        ``(B,)`` intp, the outputs ``(B, O)``."""
        cdef Py_buffer view
        cdef int single
        cdef char* out
        if self.c.V:
            return self.run_steps(x, None, (self.B,), (self.B, self.c.O), 1, "token ids")
        single = self.input_view(x, &view)
        if single < 0 and self.convert is not None:
            x = self.convert(x)
            single = self.input_view(x, &view)
        if single < 0:
            shape = (self.B, self.c.I)
            if self.B == 1 and getattr(x, "ndim", 0) == 1:
                shape = (self.c.I,)
            buffer(x, "x", shape, self.dtype, False)       # raises what is wrong
            raise ValueError(f"x must be a C-contiguous ({self.B}, {self.c.I}) "
                             f"{self.dtype} array")               # pragma: no cover
        try:
            self.enter()
            try:
                Y = self.next_output(single, &out)
                if self.is_double:
                    _steps(self, <const double*> view.buf, <double*> out, 1)
                else:
                    _steps(self, <const float*> view.buf, <float*> out, 1)
                return Y
            finally:
                self.leave()
        finally:
            PyBuffer_Release(&view)

    cdef int input_view(self, x, Py_buffer* view) except -2:
        """The buffer of an exact ndarray ``x`` into ``view`` if :meth:`step`
        takes it as it is (C-contiguous, of the dtype, ``(B, I)``, or ``(I,)``
        when B is 1): 1 for a 1-D ``x``, 0 for a 2-D one (release ``view``
        then); -1 for anything else, ``view`` untouched. (An exact ndarray's
        ``dtype`` is its buffer's, so the buffer is asked for no format.)"""
        cdef bint ok
        if type(x) is not NDARRAY or x.dtype is not self.dtype:
            return -1
        try:
            PyObject_GetBuffer(x, view, PyBUF_C_CONTIGUOUS)
        except (ValueError, TypeError, BufferError):     # not C-contiguous
            return -1
        ok = (view.itemsize == self.itemsize
              and ((view.ndim == 2 and view.shape[0] == self.B
                    and view.shape[1] == self.c.I)
                   or (view.ndim == 1 and self.B == 1 and view.shape[0] == self.c.I)))
        if not ok:
            PyBuffer_Release(view)
            return -1
        return view.ndim == 1

    cdef object next_output(self, bint single, char** out):
        """The output array of the next step (a view of the block of
        outputs, a new block when this one is used up) and, in ``out``, the
        address of its elements."""
        cdef Py_ssize_t step_bytes = self.B * self.c.O * self.itemsize
        if (self.block is None or self.block_used == self.block_steps
                or self.block_single != single):
            # blocks of up to OUTPUT_BLOCK_BYTES, at least one step
            self.block_steps = max(1, OUTPUT_BLOCK_BYTES // step_bytes)
            shape = (self.B, self.c.O)
            if single:
                shape = (self.c.O,)
            if self.squeeze:
                shape = shape[:-1]
            block = np.empty((self.block_steps,) + shape, self.dtype)
            self.block_ptr = data_pointer(block.reshape(-1), self.is_double)
            self.block, self.block_used, self.block_single = block, 0, single
        out[0] = self.block_ptr + self.block_used * step_bytes
        Y = self.block[self.block_used, ...] if self.block.ndim == 1 else \
            self.block[self.block_used]
        self.block_used += 1
        return Y

    def run(self, X, Y=None):
        """``T`` steps in one call: ``X`` ``(T, B, I)`` in, the outputs of
        every step ``(T, B, O)`` into ``Y`` (a new array if None), returned.
        The same as ``T`` calls of :meth:`step`, without Python in between.
        With token input, ``X`` is ``(T, B)`` intp token ids."""
        cdef Py_ssize_t T
        if self.c.V:
            T = np.shape(X)[0] if np.ndim(X) == 2 else -1
            return self.run_steps(X, Y, (T, self.B), (T, self.B, self.c.O), T, "token ids")
        if type(X) is not NDARRAY or X.ndim != 3:
            X = buffer(X, "X", (None, self.B, self.c.I), self.dtype, False)
        T = X.shape[0]
        return self.run_steps(X, Y, (T, self.B, self.c.I), (T, self.B, self.c.O), T, "X")

    cdef object run_steps(self, x, Y, tuple x_shape, tuple y_shape, Py_ssize_t T,
                          str what):
        """Check ``x`` and ``Y`` (of ``x_shape``, ``y_shape``) and run ``T``
        steps; ``Y``."""
        cdef const Py_ssize_t[::1] tokens
        self.enter()
        try:
            if self.c.V:
                if T < 0:
                    raise ValueError(f"{what} must have shape (n_steps, {self.B}); got "
                                     f"{np.shape(x)}")
                x = check_tokens(x, x_shape, self.c.V)
            else:
                x = buffer(x, what, x_shape, self.dtype, False)
            if Y is None:
                Y = np.empty(y_shape, self.dtype)
            out = buffer(Y, "Y", y_shape, self.dtype, True)
            # flat views of the checked buffers (C-contiguous: no copies)
            xs, ys = np.asarray(x).reshape(-1), np.asarray(out).reshape(-1)
            if self.c.V:
                if xs.shape[0] != T * self.B or ys.shape[0] != T * self.B * self.c.O:
                    raise ValueError("an array of this step changed shape while it was "
                                     "checked")
                tokens = xs
                if self.is_double:
                    _token_steps(self, &tokens[0], <double*> data_pointer(ys, True), T)
                else:
                    _token_steps(self, &tokens[0], <float*> data_pointer(ys, False), T)
                return Y
            if xs.shape[0] != T * self.B * self.c.I or ys.shape[0] != T * self.B * self.c.O:
                raise ValueError("an array of this step changed shape while it was checked")
            if self.is_double:
                _steps(self, <const double*> data_pointer(xs, True),
                       <double*> data_pointer(ys, True), T)
            else:
                _steps(self, <const float*> data_pointer(xs, False),
                       <float*> data_pointer(ys, False), T)
            return Y
        finally:
            self.leave()


cdef int _steps(Stepper self, const floating* x, floating* Y, Py_ssize_t T) except -1:
    """``T`` steps from ``x`` ``(T, B, I)`` into ``Y`` ``(T, B, O)``, checked
    buffers; every input must be finite (else ValueError, before any step)."""
    if not all_finite(T * self.B * self.c.I, x):
        raise ValueError("x contains NaN or infinity; the stream's states are unchanged")
    if T * self.step_madds > GIL_FREE_MADDS:
        with nogil:
            steps_of(self, x, Y, T)
    else:
        steps_of(self, x, Y, T)
    return 0


cdef void steps_of(Stepper self, const floating* x, floating* Y, Py_ssize_t T) noexcept nogil:
    """``T`` steps of :func:`step_once`, subnormals flushed to zero."""
    cdef Py_ssize_t t, BI = self.B * self.c.I, BO = self.B * self.c.O
    cdef unsigned long fp_state = crnn_subnormals_off()
    for t in range(T):
        step_once(self, x + t * BI, Y + t * BO)
    crnn_subnormals_restore(fp_state)


cdef int _token_steps(Stepper self, const Py_ssize_t* tokens, floating* Y,
                      Py_ssize_t T) except -1:
    """``T`` steps from the checked token ids ``(T, B)`` into ``Y`` ``(T, B, O)``:
    each step's ids embedded, then :func:`step_once`."""
    cdef Py_ssize_t t, B = self.B, I = self.c.I, BO = self.B * self.c.O
    cdef const floating* W_emb = <const floating*> self.params_ptr + self.c.off_E
    cdef floating* x = (<floating*> self.work_ptr
                        + align_up(max(lstm_step_work_size(B, self.c.H),
                                       gru_step_work_size(B, self.c.H))))
    cdef unsigned long fp_state
    with nogil:
        fp_state = crnn_subnormals_off()
        for t in range(T):
            # x(B, I) = W_emb[tokens_t]
            gather_rows(B, I, W_emb, tokens + t * B, x)
            step_once(self, x, Y + t * BO)
        crnn_subnormals_restore(fp_state)
    return 0


cdef Py_ssize_t layer_packed_size(const Config* c, Py_ssize_t l) noexcept nogil:
    """Elements of layer ``l``'s weights laid out for the fused step (the
    Elman cell's: W_ih^T, then W_hh^T, each packed), rounded up to a multiple
    of ALIGN (abi.pxd): the layers' blocks follow one another in
    Stepper.packed."""
    cdef Py_ssize_t I_l = c.I if l == 0 else c.H
    if c.cell == ELMAN:
        return elman_packed_offset(I_l, c.H) + align_up(packed_size(c.H, c.H))
    if c.cell == LSTM:
        return align_up(lstm_packed_size(I_l, c.H))
    return align_up(gru_packed_size(I_l, c.H))


cdef inline Py_ssize_t elman_packed_offset(Py_ssize_t I_l, Py_ssize_t H) noexcept nogil:
    """Where an Elman layer's packed W_hh^T starts, after its packed W_ih^T."""
    return align_up(packed_size(I_l, H))


cdef Py_ssize_t stepper_packed_size(const Config* c) noexcept nogil:
    """Elements of Stepper.packed: every layer's block, then W_y^T packed."""
    cdef Py_ssize_t l, total = 0
    for l in range(c.L):
        total += layer_packed_size(c, l)
    return total + packed_size(c.H, c.O)


cdef void pack_layers(Stepper self, floating kind) noexcept nogil:
    """Every layer's weights into Stepper.packed, for the fused step (or the
    Elman cell's packed products), then the output layer's."""
    cdef const floating* params = <const floating*> self.params_ptr
    cdef floating* P = <floating*> self.packed_ptr
    cdef const Py_ssize_t* off
    cdef Py_ssize_t l, I_l = self.c.I
    for l in range(self.c.L):
        off = &self.unit_off[l, 0]
        if self.c.cell == ELMAN:
            # W_ih^T (I_l, H) and W_hh^T (H, H): W^T(k, n) = W[n * K + k]
            pack(I_l, self.c.H, params + off[W_IH], 1, I_l, P)
            pack(self.c.H, self.c.H, params + off[W_HH], 1, self.c.H,
                 P + elman_packed_offset(I_l, self.c.H))
        elif self.c.cell == LSTM:
            lstm_pack(I_l, self.c.H, params + off[W_IH], params + off[W_HH],
                      params + off[BIAS], P)
        else:
            gru_pack(I_l, self.c.H, params + off[W_IH], params + off[W_HH],
                     params + off[BIAS], params + off[B_HN], P)
        P += layer_packed_size(&self.c, l)
        I_l = self.c.H
    # W_y^T (H, O): W_y^T(k, n) = W_y[n * H + k]
    pack(self.c.H, self.c.O, params + self.c.off_W_y, 1, self.c.H, P)


cdef inline bint packed_now(Stepper self) noexcept nogil:
    """Whether the steps run on the packed weights: the packed kernel they
    were laid out for is the one in use (else the plain cell steps run)."""
    return self.packed_kernel != 0 and fused_kernel() == self.packed_kernel


cdef void step_once(Stepper self, const floating* x, floating* Y) noexcept nogil:
    """One step of every layer from ``x`` ``(B, I)``, the outputs into ``Y``
    ``(B, O)``; the state buffers change turns."""
    cdef Py_ssize_t B = self.B, H = self.c.H, L = self.c.L, l, I_l = self.c.I
    cdef Py_ssize_t n = self.c.n_states * L * B * H, BH = B * H
    cdef const floating* params = <const floating*> self.params_ptr
    cdef const floating* P = <const floating*> self.packed_ptr
    cdef floating* old = <floating*> self.states_ptr + self.current * n
    cdef floating* new = <floating*> self.states_ptr + (1 - self.current) * n
    cdef floating* work = <floating*> self.work_ptr
    cdef const Py_ssize_t* off
    cdef const floating* x_l = x
    cdef bint packed = packed_now(self)
    for l in range(L):
        off = &self.unit_off[l, 0]
        # state j of layer l: block j * L + l of B*H
        if self.c.cell == ELMAN and packed:
            # a(B, H) = x_l(B, I_l) @ W_ih^T + h_prev(B, H) @ W_hh^T, packed; h = g(a + b)
            packed_gemm(B, H, I_l, x_l, I_l, P, False, new + l * BH, H)
            packed_gemm(B, H, H, old + l * BH, H, P + elman_packed_offset(I_l, H), True,
                        new + l * BH, H)
            bias_activation(B, H, new + l * BH, params + off[BIAS], self.c.activation)
        elif self.c.cell == ELMAN:
            elman_step(B, I_l, H, x_l, params + off[W_IH], params + off[W_HH],
                       params + off[BIAS], old + l * BH, new + l * BH, self.c.activation)
        elif self.c.cell == LSTM and packed:
            lstm_fused_step(B, I_l, H, x_l, old + l * BH, old + (L + l) * BH, P,
                            new + l * BH, new + (L + l) * BH, NULL)
        elif self.c.cell == LSTM:
            lstm_step(B, I_l, H, x_l, params + off[W_IH], params + off[W_HH],
                      params + off[BIAS], old + l * BH, old + (L + l) * BH,
                      new + l * BH, new + (L + l) * BH, work)
        elif packed:
            gru_fused_step(B, I_l, H, x_l, old + l * BH, P, new + l * BH, NULL, NULL)
        else:
            gru_step(B, I_l, H, x_l, params + off[W_IH], params + off[W_HH],
                     params + off[BIAS], params + off[B_HN], old + l * BH,
                     new + l * BH, work)
        if packed:
            P += layer_packed_size(&self.c, l)
        x_l, I_l = new + l * BH, H
    if packed:
        # Y(B, O) = h_L(B, H) @ W_y^T, packed, then g2(Y + b_y)
        packed_gemm(B, self.c.O, H, x_l, H, P, False, Y, self.c.O)
        output_activation(B, self.c.O, Y, params + self.c.off_b_y, self.c.g2)
    else:
        output_layer(&self.c, B, x_l, params, Y)
    self.current = 1 - self.current
