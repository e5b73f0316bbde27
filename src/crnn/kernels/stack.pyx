# cython: language_level=3
"""A whole recurrent network in compiled code: the stack, the output layer,
the loss and BPTT, over workspaces reused from one batch to the next.

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
per unit (``k = layer * D + direction``) the blocks ``W_ih, W_hh, b`` (and
``b_hn`` for the GRU) at the offsets given to the constructor, then ``W_y``
and ``b_y``. Gradients use the same layout and are accumulated into.

A Stack keeps the last forward pass in its workspace, so one object must
not be used by two threads at once; every other call is independent.

While its kernels run, the calling thread flushes subnormal numbers to zero
(see ``elementwise.h``): a result below 1.2e-38 in float32 (2.2e-308 in
float64) becomes 0. The thread's floating-point state is restored before
each call returns.
"""
import numpy as np

from libc.math cimport exp, log
from libc.string cimport memcpy, memset

from cython cimport floating

from crnn.kernels._elementwise cimport (
    activation_grad, bias_activation, crnn_subnormals_off, crnn_subnormals_restore,
)
from crnn.kernels.abi cimport align_up
from crnn.kernels.activations cimport IDENTITY, SOFTMAX
from crnn.kernels.blas cimport NoTrans, Trans, gemm
from crnn.kernels.elman cimport (
    elman_backward, elman_backward_work_size, elman_forward, elman_forward_work_size,
)
from crnn.kernels.gru cimport (
    gru_backward, gru_backward_work_size, gru_forward, gru_forward_work_size,
)
from crnn.kernels.lstm cimport (
    lstm_backward, lstm_backward_work_size, lstm_forward, lstm_forward_work_size,
)

from crnn.kernels.activations import OUTPUTS

CELLS = {"elman": 0, "lstm": 1, "gru": 2}

cdef enum:
    ELMAN = 0
    LSTM = 1
    GRU = 2


cdef struct Config:
    int cell, activation, g2
    bint cross_entropy, return_sequences
    Py_ssize_t I, H, O, L, D, G, n_states
    Py_ssize_t off_W_y, off_b_y


cdef struct Shape:
    # The batch, and where each block of the workspace starts (in elements).
    Py_ssize_t T, N, B, R
    Py_ssize_t Hs, gates, aux, finals, zeros, inputs, S, Z, dZ, dS
    Py_ssize_t dHs, dstate, bptt, dX, dgates_h, work, total


cdef inline Py_ssize_t take(Py_ssize_t* end, Py_ssize_t size) noexcept nogil:
    """Reserve ``size`` elements at ``end``, starting at a multiple of ALIGN
    (abi.pxd); return the start."""
    cdef Py_ssize_t start = align_up(end[0])
    end[0] = start + size
    return start


cdef Shape plan(const Config* c, Py_ssize_t T, Py_ssize_t N, Py_ssize_t B) noexcept nogil:
    """The workspace of a batch of ``N`` packed rows, ``B`` sequences, ``T`` steps."""
    cdef Shape s
    cdef Py_ssize_t U = c.L * c.D, Hd = c.D * c.H, H = c.H, end = 0
    cdef Py_ssize_t I_max = max(c.I, Hd) if c.L > 1 else c.I   # widest layer input
    cdef bint gated = c.cell != ELMAN
    s.T, s.N, s.B = T, N, B
    s.R = N if c.return_sequences else B
    s.Hs = take(&end, U * N * H)                       # states of every unit
    s.gates = take(&end, U * N * c.G if gated else 0)  # LSTM/GRU gate activations
    s.aux = take(&end, U * N * H if gated else 0)      # LSTM c_t, GRU W_hn h + b_hn
    s.finals = take(&end, c.n_states * U * B * H)      # (n_states, U, B, H)
    s.zeros = take(&end, B * H)                        # the default initial state
    s.inputs = take(&end, (c.L - 1) * N * Hd)          # inputs of layers 1 .. L-1
    s.S = take(&end, s.R * Hd)
    s.Z = take(&end, s.R * c.O)                        # Z, then Y = g2(Z)
    s.dZ = take(&end, s.R * c.O)                       # dE/dZ
    s.dS = take(&end, s.R * Hd)
    s.dHs = take(&end, c.D * N * H)                    # dE/dh_t from above, per direction
    s.dstate = take(&end, c.n_states * B * H)          # dh (and dc) of one unit
    # one unit's BPTT workspace
    s.bptt = take(&end, elman_backward_work_size(N, I_max, H) if c.cell == ELMAN
                  else lstm_backward_work_size(N, I_max, H) if c.cell == LSTM
                  else gru_backward_work_size(N, H))
    s.dX = take(&end, c.D * N * Hd if c.L > 1 else 0)  # dE/d(layer input), per direction
    s.dgates_h = take(&end, N * c.G if c.cell == GRU else 0)
    # one unit's forward workspace
    s.work = take(&end, elman_forward_work_size(H) if c.cell == ELMAN
                  else lstm_forward_work_size(H) if c.cell == LSTM
                  else gru_forward_work_size(B, H))
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


# --- the passes ----------------------------------------------------------------

cdef void stack_forward(const Config* c, const Shape* s, const Py_ssize_t* unit_off,
                        const floating* params, const floating* X,
                        const Py_ssize_t* bs, const floating* initial,
                        const floating* masks, floating* ws) noexcept nogil:
    """Every layer and direction, then the scored states S."""
    cdef Py_ssize_t l, d, k, I_l
    cdef Py_ssize_t U = c.L * c.D, H = c.H, N = s.N, B = s.B, Hd = c.D * c.H
    cdef const floating* layer_in = X
    cdef const floating* h0
    cdef const floating* c0
    cdef const Py_ssize_t* off
    cdef floating* inputs
    cdef floating* finals = ws + s.finals
    if initial == NULL:
        memset(ws + s.zeros, 0, B * H * sizeof(floating))
    for l in range(c.L):
        I_l = c.I if l == 0 else Hd
        for d in range(c.D):
            k = l * c.D + d
            off = unit_off + 4 * k
            h0 = initial + k * B * H if initial != NULL else ws + s.zeros
            if c.cell == ELMAN:
                elman_forward(s.T, bs, I_l, H, layer_in, params + off[0], params + off[1],
                              params + off[2], h0, ws + s.Hs + k * N * H,
                              finals + k * B * H, ws + s.work, d == 1, c.activation)
            elif c.cell == LSTM:
                c0 = initial + (U + k) * B * H if initial != NULL else ws + s.zeros
                lstm_forward(s.T, bs, I_l, H, layer_in, params + off[0], params + off[1],
                             params + off[2], h0, c0, ws + s.gates + k * N * c.G,
                             ws + s.Hs + k * N * H, ws + s.aux + k * N * H,
                             finals + k * B * H, finals + (U + k) * B * H,
                             ws + s.work, d == 1)
            else:
                gru_forward(s.T, bs, I_l, H, layer_in, params + off[0], params + off[1],
                            params + off[2], params + off[3], h0,
                            ws + s.gates + k * N * c.G, ws + s.aux + k * N * H,
                            ws + s.Hs + k * N * H, finals + k * B * H, ws + s.work,
                            d == 1)
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
        join(B, H, c.D, finals + (c.L - 1) * c.D * B * H, ws + s.S)


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
                        Py_ssize_t row0, double count, floating* grad,
                        floating* ws) noexcept nogil:
    """The loss of the scored rows ``row0 .. R-1`` of S (summed, divided by
    ``count``). With ``grad``, also dE/dZ, dW_y and db_y (accumulated) and
    dE/dS (rows before ``row0`` get zero)."""
    cdef Py_ssize_t i, j, O = c.O, Hd = c.D * c.H, R = s.R - row0
    cdef const floating* S = ws + s.S + row0 * Hd
    cdef const floating* W_y = params + c.off_W_y
    cdef floating* Z = ws + s.Z + row0 * O
    cdef floating* dZ = ws + s.dZ + row0 * O
    cdef floating* z
    cdef const floating* t
    cdef double lse, r, loss = 0
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
            lse = log_sum_exp(O, z)
            loss += lse - z[k_target[i]]
            if grad != NULL:
                # dE/dZ = (softmax(Z) - onehot(k)) / count
                for j in range(O):
                    dZ[i * O + j] = exp(z[j] - lse) / count
                dZ[i * O + k_target[i]] -= 1 / count
    else:
        output_activation(R, O, Z, params + c.off_b_y, c.g2)      # Z holds Y
        for i in range(R):
            z = Z + i * O
            t = D_target + i * O
            for j in range(O):
                r = z[j] - t[j]
                loss += r * r
                if grad != NULL:
                    # dE/dY = 2 (Y - D) / count
                    dZ[i * O + j] = 2 * r / count
        if grad != NULL:
            # dE/dZ through Y = g2(Z), with g2' written with Y (activations.pxd)
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


cdef void stack_backward(const Config* c, const Shape* s, const Py_ssize_t* unit_off,
                         const floating* params, const floating* X,
                         const Py_ssize_t* bs, const floating* initial,
                         const floating* masks, floating* grad,
                         floating* ws) noexcept nogil:
    """BPTT from dE/dS down through every layer; accumulates into ``grad``.

    Consumes the forward pass: LSTM and GRU gate gradients overwrite the
    stored gate activations.
    """
    cdef Py_ssize_t l, d, k, I_l
    cdef Py_ssize_t U = c.L * c.D, H = c.H, N = s.N, B = s.B, Hd = c.D * c.H
    cdef const floating* layer_in
    cdef const floating* h0
    cdef const floating* c0
    cdef const Py_ssize_t* off
    cdef floating* dHs
    cdef floating* dh = ws + s.dstate
    cdef floating* dc = dh + B * H
    cdef floating* dX
    cdef floating* d_above = ws + s.dX      # dE/d(input of layer l + 1), (N, D*H)
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
            off = unit_off + 4 * k
            dHs = ws + s.dHs + d * N * H
            dX = ws + s.dX + d * N * Hd if l > 0 else NULL
            h0 = initial + k * B * H if initial != NULL else ws + s.zeros
            if l + 1 == c.L and not c.return_sequences:
                split(B, H, c.D, d, ws + s.dS, dh)      # dE/dh_n of the scored states
            else:
                memset(dh, 0, B * H * sizeof(floating))
            if c.cell == ELMAN:
                elman_backward(s.T, bs, I_l, H, layer_in, params + off[0], params + off[1],
                               h0, ws + s.Hs + k * N * H, dHs, dh, ws + s.bptt, dX,
                               grad + off[0], grad + off[1], grad + off[2], d == 1,
                               c.activation)
            elif c.cell == LSTM:
                c0 = initial + (U + k) * B * H if initial != NULL else ws + s.zeros
                memset(dc, 0, B * H * sizeof(floating))
                lstm_backward(s.T, bs, I_l, H, layer_in, params + off[0], params + off[1],
                              h0, c0, ws + s.gates + k * N * c.G, ws + s.Hs + k * N * H,
                              ws + s.aux + k * N * H, dHs, ws + s.gates + k * N * c.G,
                              dh, dc, ws + s.bptt, dX, grad + off[0], grad + off[1],
                              grad + off[2], d == 1)
            else:
                gru_backward(s.T, bs, I_l, H, layer_in, params + off[0], params + off[1],
                             h0, ws + s.gates + k * N * c.G, ws + s.aux + k * N * H,
                             ws + s.Hs + k * N * H, dHs, ws + s.gates + k * N * c.G,
                             ws + s.dgates_h, dh, ws + s.bptt, dX, grad + off[0],
                             grad + off[1], grad + off[2], grad + off[3], d == 1)
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


cdef int check_size(Py_ssize_t got, Py_ssize_t expected, str what) except -1:
    if got != expected:
        raise ValueError(f"{what} has {got} elements; expected {expected}")
    return 0


cdef class Stack:
    """Compiled forward pass, loss and BPTT of a whole recurrent network.

    Parameters
    ----------
    cell : {"elman", "lstm", "gru"}
    activation : int
        The Elman cell's hidden activation code (``activations.CODES``).
    I, H, O, L, D : int
        Inputs, hidden units, outputs, layers, directions (1 or 2).
    output_activation : {"identity", "tanh", "sigmoid", "softmax"}
    cross_entropy : bool
        Softmax cross-entropy against integer classes; squared error otherwise.
    return_sequences : bool
        Score every step of the last layer, or each sequence's final state.
    unit_offsets : (L*D, 4) intp
        Offsets of each unit's ``W_ih, W_hh, b, b_hn`` in the flat parameter
        buffer (``b_hn``: GRU only).
    off_W_y, off_b_y : int
        Offsets of the output layer's blocks.
    n_params : int
        Size of the flat parameter buffer.
    dtype : numpy.float32 or numpy.float64
    """

    cdef Config c
    cdef Shape s
    cdef Py_ssize_t n_params
    cdef bint is_double, ran, has_finals
    cdef Py_ssize_t[:, ::1] unit_off
    cdef object workspace
    cdef readonly object dtype

    def __init__(self, str cell, int activation, Py_ssize_t I, Py_ssize_t H,
                 Py_ssize_t O, Py_ssize_t L, Py_ssize_t D, str output_activation,
                 bint cross_entropy, bint return_sequences, unit_offsets,
                 Py_ssize_t off_W_y, Py_ssize_t off_b_y, Py_ssize_t n_params, dtype):
        if cell not in CELLS or output_activation not in OUTPUTS:
            raise ValueError(f"unknown cell {cell!r} or output activation "
                             f"{output_activation!r}")
        if min(I, H, O, L) < 1 or D not in (1, 2):
            raise ValueError(f"bad sizes I={I}, H={H}, O={O}, L={L}, D={D}")
        self.c.cell = CELLS[cell]
        self.c.activation = activation
        self.c.g2 = OUTPUTS[output_activation]
        self.c.cross_entropy = cross_entropy
        self.c.return_sequences = return_sequences
        self.c.I, self.c.H, self.c.O, self.c.L, self.c.D = I, H, O, L, D
        self.c.G = (1, 4, 3)[self.c.cell] * H
        self.c.n_states = 2 if self.c.cell == LSTM else 1
        self.c.off_W_y, self.c.off_b_y = off_W_y, off_b_y
        self.unit_off = np.ascontiguousarray(unit_offsets, dtype=np.intp)
        if self.unit_off.shape[0] != L * D or self.unit_off.shape[1] != 4:
            raise ValueError(f"unit_offsets must have shape ({L * D}, 4)")
        self.n_params = n_params
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype}")
        self.is_double = self.dtype == np.float64
        self.workspace = np.empty(0, dtype=self.dtype)
        self.ran = self.has_finals = False

    cdef int prepare(self, Py_ssize_t T, Py_ssize_t N, Py_ssize_t B) except -1:
        """Lay out the workspace for this batch, growing it if needed."""
        self.s = plan(&self.c, T, N, B)
        if self.workspace.shape[0] < self.s.total:
            self.workspace = aligned_empty(self.s.total, self.dtype)
        return 0

    cdef int check_common(self, params, X, batch_sizes, initial, masks) except -1:
        cdef Py_ssize_t T, N, B
        check_size(params.size, self.n_params, "params")
        if params.dtype != self.dtype or X.dtype != self.dtype:
            raise ValueError(f"params and X must be {self.dtype}; got {params.dtype} "
                             f"and {X.dtype}")
        if X.ndim != 2 or X.shape[1] != self.c.I:
            raise ValueError(f"X must be (N, {self.c.I}); got {X.shape}")
        N = X.shape[0]
        T = check_batch(batch_sizes, N)
        B = batch_sizes[0]
        if initial is not None and initial.shape != (self.c.n_states, self.c.L * self.c.D,
                                                     B, self.c.H):
            raise ValueError(f"initial states must be {(self.c.n_states, self.c.L * self.c.D, B, self.c.H)}; got {initial.shape}")
        if masks is not None and masks.shape != (self.c.L - 1, N, self.c.D * self.c.H):
            raise ValueError(f"dropout masks must be {(self.c.L - 1, N, self.c.D * self.c.H)}; got {masks.shape}")
        self.prepare(T, N, B)
        return 0

    cdef int check_target(self, target, Py_ssize_t row0) except -1:
        cdef Py_ssize_t rows = self.s.R - row0
        if not 0 <= row0 <= self.s.R:
            raise ValueError(f"row0 must be in [0, {self.s.R}]; got {row0}")
        if self.c.cross_entropy:
            if target.dtype != np.intp or target.shape != (rows,):
                raise ValueError(f"class targets must be intp of shape ({rows},); got "
                                 f"{target.dtype} {target.shape}")
            if rows and (target.min() < 0 or target.max() >= self.c.O):
                raise ValueError(f"class targets must lie in [0, {self.c.O})")
        elif target.dtype != self.dtype or target.shape != (rows, self.c.O):
            raise ValueError(f"targets must be {self.dtype} of shape ({rows}, {self.c.O});"
                             f" got {target.dtype} {target.shape}")
        return 0

    def forward(self, params, X, batch_sizes, initial=None, masks=None):
        """Run the stack over a packed batch (states kept in the workspace).

        ``X`` (N, I), ``batch_sizes`` (T,) intp, ``initial`` (n_states, L*D, B, H)
        or None for zeros, ``masks`` (L-1, N, D*H) or None.
        """
        self.check_common(params, X, batch_sizes, initial, masks)
        if self.is_double:
            _forward[double](self, params, X, batch_sizes, initial, masks)
        else:
            _forward[float](self, params, X, batch_sizes, initial, masks)
        self.ran = self.has_finals = True

    def loss(self, params, target, Py_ssize_t row0=0, double count=0):
        """Loss of the last forward pass on scored rows ``row0 ..``, divided by
        ``count`` (default: the number of scored terms)."""
        self.check_ran()
        self.check_target(target, row0)
        count = count or self.default_count(row0)
        if self.is_double:
            return _loss[double](self, params, target, row0, count, None)
        return _loss[float](self, params, target, row0, count, None)

    def output(self, params, Y):
        """``Y`` (R, O) = g2(S W_y^T + b_y) of the last forward pass."""
        self.check_ran()
        if Y.shape != (self.s.R, self.c.O) or Y.dtype != self.dtype:
            raise ValueError(f"Y must be {self.dtype} of shape ({self.s.R}, {self.c.O})")
        if self.is_double:
            _output[double](self, params, Y)
        else:
            _output[float](self, params, Y)

    def final_states(self):
        """A copy of the final states, ``(n_states, L*D, B, H)``, of the last
        :meth:`forward` or :meth:`loss_grad`."""
        if not self.has_finals:
            raise RuntimeError("no forward pass to read: call forward first")
        shape = (self.c.n_states, self.c.L * self.c.D, self.s.B, self.c.H)
        size = self.c.n_states * self.c.L * self.c.D * self.s.B * self.c.H
        return self.workspace[self.s.finals:self.s.finals + size].reshape(shape).copy()

    def loss_grad(self, params, X, batch_sizes, target, grad, Py_ssize_t row0=0,
                  double count=0, initial=None, masks=None):
        """Forward, loss and BPTT in one call; the gradient is ADDED to ``grad``.

        The final states stay available (:meth:`final_states`); the rest of the
        forward pass is consumed.
        """
        self.check_common(params, X, batch_sizes, initial, masks)
        self.check_target(target, row0)
        check_size(grad.size, self.n_params, "grad")
        if grad.dtype != self.dtype:
            raise ValueError(f"grad must be {self.dtype}; got {grad.dtype}")
        count = count or self.default_count(row0)
        if self.is_double:
            value = _loss_grad[double](self, params, X, batch_sizes, target, grad, row0,
                                       count, initial, masks)
        else:
            value = _loss_grad[float](self, params, X, batch_sizes, target, grad, row0,
                                      count, initial, masks)
        self.ran, self.has_finals = False, True
        return value

    cdef double default_count(self, Py_ssize_t row0):
        return (self.s.R - row0) * (1 if self.c.cross_entropy else self.c.O)

    cdef int check_ran(self) except -1:
        if not self.ran:
            raise RuntimeError("no forward pass to read: call forward first")
        return 0


# --- typed bodies of the methods (float32 and float64) ----------------------------

cdef const floating* optional(const floating[::1] a) noexcept:
    return &a[0] if a is not None else NULL


cdef void _forward(Stack self, const floating[::1] params, const floating[:, ::1] X,
                   const Py_ssize_t[::1] batch_sizes, initial, masks) except *:
    cdef const floating[::1] init = initial.reshape(-1) if initial is not None else None
    cdef const floating[::1] mask = masks.reshape(-1) if masks is not None else None
    run_forward(self, &params[0], &X[0, 0], &batch_sizes[0], optional(init),
                optional(mask))


cdef void run_forward(Stack self, const floating* params, const floating* X,
                      const Py_ssize_t* batch_sizes, const floating* initial,
                      const floating* masks) except *:
    cdef floating[::1] ws = self.workspace
    cdef unsigned long fp_state
    with nogil:
        fp_state = crnn_subnormals_off()
        stack_forward(&self.c, &self.s, &self.unit_off[0, 0], params, X, batch_sizes,
                      initial, masks, &ws[0])
        crnn_subnormals_restore(fp_state)


cdef double _loss(Stack self, const floating[::1] params, target, Py_ssize_t row0,
                  double count, floating[::1] grad) except? -1:
    cdef floating[::1] ws = self.workspace
    cdef const floating[:, ::1] D
    cdef const Py_ssize_t[::1] k
    cdef const floating* D_ptr = NULL
    cdef const Py_ssize_t* k_ptr = NULL
    cdef floating* grad_ptr = &grad[0] if grad is not None else NULL
    cdef double value
    cdef unsigned long fp_state
    if self.s.R > row0:
        if self.c.cross_entropy:
            k = target
            k_ptr = &k[0]
        else:
            D = target
            D_ptr = &D[0, 0]
    with nogil:
        fp_state = crnn_subnormals_off()
        value = output_loss(&self.c, &self.s, &params[0], D_ptr, k_ptr, row0, count,
                            grad_ptr, &ws[0])
        crnn_subnormals_restore(fp_state)
    return value


cdef void _output(Stack self, const floating[::1] params, floating[:, ::1] Y) except *:
    cdef const floating[::1] ws = self.workspace
    cdef Py_ssize_t Hd = self.c.D * self.c.H
    cdef unsigned long fp_state
    with nogil:
        fp_state = crnn_subnormals_off()
        # Y(R, O) = S(R, D*H) @ W_y^T, then g2(Y + b_y)
        gemm(NoTrans, Trans, self.s.R, self.c.O, Hd, 1, &ws[self.s.S], Hd,
             &params[self.c.off_W_y], Hd, 0, &Y[0, 0], self.c.O)
        output_activation(self.s.R, self.c.O, &Y[0, 0], &params[self.c.off_b_y], self.c.g2)
        crnn_subnormals_restore(fp_state)


cdef double _loss_grad(Stack self, const floating[::1] params, const floating[:, ::1] X,
                       const Py_ssize_t[::1] batch_sizes, target, floating[::1] grad,
                       Py_ssize_t row0, double count, initial, masks) except? -1:
    cdef const floating[::1] init = initial.reshape(-1) if initial is not None else None
    cdef const floating[::1] mask = masks.reshape(-1) if masks is not None else None
    cdef floating[::1] ws = self.workspace
    cdef const floating* init_ptr = optional(init)
    cdef const floating* mask_ptr = optional(mask)
    run_forward(self, &params[0], &X[0, 0], &batch_sizes[0], init_ptr, mask_ptr)
    value = _loss(self, params, target, row0, count, grad)
    cdef unsigned long fp_state
    with nogil:
        fp_state = crnn_subnormals_off()
        stack_backward(&self.c, &self.s, &self.unit_off[0, 0], &params[0], &X[0, 0],
                       &batch_sizes[0], init_ptr, mask_ptr, &grad[0], &ws[0])
        crnn_subnormals_restore(fp_state)
    return value
