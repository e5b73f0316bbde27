# cython: language_level=3
"""Packed variable-length batches: the bookkeeping every cell kernel shares.

A batch of ``B`` sequences, sorted longest first, is stored *packed* and
time-major: step ``t`` holds the ``B_t = batch_sizes[t]`` sequences still
running (a non-increasing prefix of the batch), in rows
``offset_t .. offset_t + B_t - 1`` of an ``(N, ·)`` array, where
``offset_t = B_0 + ... + B_{t-1}`` and ``N = B_0 + ... + B_{T-1}``. Row ``j``
of every step belongs to sequence ``j``. Equal lengths are the special case
``B_t = B`` for all ``t``: the packed array is the time-major ``(T, B, ·)``
array, reshaped.

A recurrence runs forward (``reverse = False``: step ``t`` reads the state of
step ``t - 1``) or in reverse (``reverse = True``: step ``t`` reads the state
of step ``t + 1``, each sequence starting from its own last step). Either
way, row ``j`` of step ``t`` reads its previous state from

* row ``j`` of the previous step, for the first ``n_prev`` rows, and
* row ``j`` of the initial state ``S0`` (``(B, H)``) for rows
  ``n_prev .. B_t - 1``, which start at this step,

so the recurrent product of one step is at most two GEMMs and never needs a
mask.
"""
from libc.string cimport memcpy

from cython cimport floating

from crnn.kernels.abi cimport align_up
from crnn.kernels.blas cimport (
    SMALL_PRODUCT, NoTrans, Trans, gemm, pack, packed_gemm, use_packed,
)


cdef struct Step:
    Py_ssize_t t         # time index
    Py_ssize_t B         # active rows, B_t
    Py_ssize_t off       # packed row of (step t, sequence 0)
    Py_ssize_t n_prev    # rows whose previous state is in the previous step
    Py_ssize_t prev_off  # packed row of (previous step, sequence 0)
    Py_ssize_t n_cont    # rows whose state the next step of the recurrence reads


cdef inline Py_ssize_t total_rows(Py_ssize_t T, const Py_ssize_t* batch_sizes) noexcept nogil:
    """N = B_0 + ... + B_{T-1}."""
    cdef Py_ssize_t t, N = 0
    for t in range(T):
        N += batch_sizes[t]
    return N


cdef inline Step make_step(Py_ssize_t t, Py_ssize_t off, Py_ssize_t T,
                           const Py_ssize_t* bs, bint reverse) noexcept nogil:
    """Describe step ``t`` (whose first packed row is ``off``) of a recurrence."""
    cdef Step s
    s.t = t
    s.B = bs[t]
    s.off = off
    if not reverse:
        s.n_prev = bs[t] if t > 0 else 0
        s.prev_off = off - bs[t - 1] if t > 0 else 0
        s.n_cont = bs[t + 1] if t + 1 < T else 0
    else:
        s.n_prev = bs[t + 1] if t + 1 < T else 0
        s.prev_off = off + bs[t]
        s.n_cont = bs[t] if t > 0 else 0
    return s


cdef inline Step step_in_order(Py_ssize_t k, Py_ssize_t T, Py_ssize_t N,
                               const Py_ssize_t* bs, bint reverse,
                               bint backward, Py_ssize_t* off) noexcept nogil:
    """The ``k``-th step to process, k = 0 .. T - 1.

    The forward pass visits t = 0 .. T - 1 (or T - 1 .. 0 when ``reverse``);
    backpropagation visits them in the opposite order. ``off`` carries the
    running packed offset between calls: set it to 0 before k = 0.
    """
    cdef bint ascending = (not reverse) != backward
    cdef Py_ssize_t t = k if ascending else T - 1 - k
    cdef Step s
    if k == 0 and not ascending:
        off[0] = N
    if not ascending:
        off[0] -= bs[t]
    s = make_step(t, off[0], T, bs, reverse)
    if ascending:
        off[0] += bs[t]
    return s


cdef inline const floating* prev_row(Step s, Py_ssize_t j, Py_ssize_t H,
                                     const floating* S0, const floating* Ss) noexcept nogil:
    """The previous state of row ``j`` of step ``s``: a row of ``Ss`` or of ``S0``."""
    if j < s.n_prev:
        return Ss + (s.prev_off + j) * H
    return S0 + j * H


cdef inline Py_ssize_t state_block(Step s, int part, Py_ssize_t* j0) noexcept nogil:
    """The rows of step ``s`` whose previous states lie side by side: part 0
    is rows 0 .. n_prev - 1 (previous states in the previous step), part 1
    rows n_prev .. B_t - 1 (in the initial state). Sets ``j0`` to the first
    row and returns how many there are, so that the element-wise pass of a
    step is two calls, prev_row(s, j0, ...) pointing at its previous states."""
    j0[0] = 0 if part == 0 else s.n_prev
    return s.n_prev if part == 0 else s.B - s.n_prev


cdef inline void transpose(Py_ssize_t rows, Py_ssize_t cols, const floating* A,
                           floating* AT) noexcept nogil:
    """AT(cols, rows) = A(rows, cols)^T, in 32 x 32 tiles, each written row by
    row, so that a tile of both matrices stays in cache while it is copied
    (a plain double loop misses the cache on every element of large ones)."""
    cdef Py_ssize_t i0, j0, i, j
    for i0 in range(0, rows, 32):
        for j0 in range(0, cols, 32):
            for j in range(j0, min(j0 + 32, cols)):
                for i in range(i0, min(i0 + 32, rows)):
                    AT[j * rows + i] = A[i * cols + j]


# Without the packed kernel, per-step products above SMALL_PRODUCT (blas.pxd)
# are split into column chunks that OpenBLAS runs without repacking W_hh;
# chunks start on a cache line (multiples of ALIGN columns, abi.pxd).
cdef enum:
    MIN_CHUNK = 64


cdef inline Py_ssize_t gate_chunk(Py_ssize_t B, Py_ssize_t H, Py_ssize_t G) noexcept nogil:
    """Columns of W_hh per call for a (B, H) x (H, G) per-step product: all G
    when the product is small, else the widest equal split, rounded up to a
    multiple of ALIGN columns, that keeps each call small, unless that
    is narrower than MIN_CHUNK."""
    cdef Py_ssize_t n, width
    if B * H * G <= SMALL_PRODUCT:
        return G
    n = (B * H * G + SMALL_PRODUCT - 1) // SMALL_PRODUCT
    while True:
        width = align_up((G + n - 1) // n)
        if width < MIN_CHUNK:
            return G
        if B * H * width <= SMALL_PRODUCT:
            return width
        n += 1


cdef inline bint prepare_forward(Py_ssize_t B, Py_ssize_t H, Py_ssize_t G,
                                 const floating* W_hh, floating* W_work) noexcept nogil:
    """Lay W_hh (G, H) out in ``W_work`` for the forward products
    h_prev(B_t, H) @ W_hh^T of a pass with B_t <= B: packed (returns True;
    ``W_work`` holds packed_size(H, G) elements), or transposed to W_hh^T
    (H, G) for BLAS: its small per-step products are faster with both
    operands untransposed than with W_hh^T taken on the fly, so the
    transpose is paid once per pass (figures: docs/performance.md)."""
    if use_packed(B, H, G, sizeof(floating)):
        # W_work = W_hh^T (H, G), packed: W_hh^T(k, n) = W_hh[n * H + k]
        pack(H, G, W_hh, 1, H, W_work)
        return True
    transpose(G, H, W_hh, W_work)
    return False


cdef inline bint prepare_backward(Py_ssize_t B, Py_ssize_t H, Py_ssize_t G,
                                  const floating* W_hh, floating* W_work) noexcept nogil:
    """Lay W_hh (G, H) out in ``W_work`` for the backward products
    dG_t(B_t, G) @ W_hh: packed (returns True; packed_size(G, H) elements),
    or copied as it is into the workspace, which starts on a cache line, where
    OpenBLAS's small-matrix kernels run fastest (docs/performance.md,
    "Alignment")."""
    if use_packed(B, G, H, sizeof(floating)):
        pack(G, H, W_hh, H, 1, W_work)
        return True
    memcpy(W_work, W_hh, G * H * sizeof(floating))
    return False


cdef inline void step_product(Py_ssize_t B, Py_ssize_t H, Py_ssize_t G,
                              const floating* S, const floating* W_hhT, bint packed,
                              floating beta, floating* out) noexcept nogil:
    """out(B, G) = S(B, H) @ W_hh^T(H, G) + beta * out, beta 0 or 1; ``W_hhT``
    as prepare_forward left it: packed, or else in column chunks (gate_chunk)."""
    cdef Py_ssize_t g0 = 0, width
    if packed:
        packed_gemm(B, G, H, S, H, W_hhT, beta != 0, out, G)
        return
    width = gate_chunk(B, H, G)
    while g0 < G:
        # out[:, g0:g0+w](B, w) = S(B, H) @ W_hhT[:, g0:g0+w](H, w) + beta * out[:, g0:g0+w]
        gemm(NoTrans, NoTrans, B, min(width, G - g0), H, 1, S, H, W_hhT + g0, G, beta,
             out + g0, G)
        g0 += width


cdef inline void step_product_backward(Py_ssize_t B, Py_ssize_t H, Py_ssize_t G,
                                       const floating* dG, const floating* W_hh,
                                       bint packed, floating beta,
                                       floating* dh) noexcept nogil:
    """dh(B, H) = dG(B, G) @ W_hh(G, H) + beta * dh, beta 0 or 1; ``W_hh`` as
    prepare_backward left it: packed, or else summed over row chunks."""
    cdef Py_ssize_t g0 = 0, width
    if packed:
        packed_gemm(B, H, G, dG, G, W_hh, beta != 0, dh, H)
        return
    width = gate_chunk(B, H, G)
    while g0 < G:
        # dh(B, H) = dG[:, g0:g0+w](B, w) @ W_hh[g0:g0+w](w, H) + (beta or 1) * dh
        gemm(NoTrans, NoTrans, B, H, min(width, G - g0), 1, dG + g0, G, W_hh + g0 * H, H,
             beta if g0 == 0 else 1, dh, H)
        g0 += width


cdef inline void recurrent_gemm(Step s, Py_ssize_t H, Py_ssize_t G,
                                const floating* W_hhT, bint packed, const floating* S0,
                                const floating* Ss, floating beta,
                                floating* out) noexcept nogil:
    """out(B_t, G) = S_prev(B_t, H) @ W_hh^T(H, G) + beta * out, with ``W_hhT``
    and ``packed`` from prepare_forward."""
    if s.n_prev > 0:
        # out[:n_prev] = Ss[previous step](n_prev, H) @ W_hh^T + beta * out[:n_prev]
        step_product(s.n_prev, H, G, Ss + s.prev_off * H, W_hhT, packed, beta, out)
    if s.B > s.n_prev:
        # out[n_prev:B_t] = S0[n_prev:B_t](., H) @ W_hh^T + beta * out[n_prev:B_t]
        step_product(s.B - s.n_prev, H, G, S0 + s.n_prev * H, W_hhT, packed, beta,
                     out + s.n_prev * G)


cdef inline void gather_prev(Step s, Py_ssize_t H, const floating* S0,
                             const floating* Ss, floating* S_prev, Py_ssize_t ld) noexcept nogil:
    """Row ``off_t + j`` of ``S_prev`` (rows ``ld`` apart) = the previous state
    of row ``j`` of step ``s``, for j < B_t."""
    cdef Py_ssize_t j
    for j in range(s.B):
        memcpy(S_prev + (s.off + j) * ld, prev_row(s, j, H, S0, Ss), H * sizeof(floating))


cdef inline void store_final(Step s, Py_ssize_t H, const floating* Ss,
                             floating* S_n) noexcept nogil:
    """Copy the rows of step ``s`` whose recurrence ends here into ``S_n`` (B, H)."""
    memcpy(S_n + s.n_cont * H, Ss + (s.off + s.n_cont) * H,
           (s.B - s.n_cont) * H * sizeof(floating))


cdef inline void record_state_gradient(Py_ssize_t n, Py_ssize_t H, const floating* dHs,
                                       const floating* dh, floating* dHs_total,
                                       Py_ssize_t row) noexcept nogil:
    """Rows ``row ..`` of dHs_total (n, H) = dHs + dh: dE/dh_t in total, from
    above the layer and through the later steps. Nothing when dHs_total is
    NULL (the plain backward pass)."""
    cdef Py_ssize_t i
    if dHs_total == NULL:
        return
    dHs_total += row * H
    for i in range(n * H):
        dHs_total[i] = dHs[i] + dh[i]


cdef inline void add_column_sums(Py_ssize_t N, Py_ssize_t G, const floating* A,
                                 floating* out) noexcept nogil:
    """out(G) += the sums over the N rows of A(N, G)."""
    cdef Py_ssize_t i, j
    cdef const floating* a
    for i in range(N):
        a = A + i * G
        for j in range(G):
            out[j] += a[j]


cdef inline void bias_and_input_gradients(
    Py_ssize_t N, Py_ssize_t I, Py_ssize_t G, const floating* W_ih,
    const floating* dG, floating* dX, floating* db,
) noexcept nogil:
    """db(G) += the column sums of dG(N, G); dX(N, I) = dG @ W_ih, unless NULL."""
    add_column_sums(N, G, dG, db)
    if dX != NULL:
        # dX(N, I) = dG(N, G) @ W_ih(G, I)
        gemm(NoTrans, NoTrans, N, I, G, 1, dG, G, W_ih, I, 0, dX, I)


# --- the weight gradients, over the rows BPTT has finished ---------------------
#
# The weight gradients are products over all packed rows, dW += dG^T S, with
# S the inputs or the previous states. Through OpenBLAS one product over all
# N rows repacks both operands; when G * K is small, products over blocks of
# at most SMALL_PRODUCT / (G K) rows run on its small-matrix kernels instead,
# reading rows that BPTT has just written and that are still in cache (below
# about 32 rows a product the per-call cost wins). So BPTT multiplies the
# rows of the steps it has visited in blocks of at least MIN_GRADIENT_ROWS
# rows when such blocks exist, and all N rows after its loop otherwise
# (figures: docs/performance.md, "Weight gradients"). Either way each entry
# is the same sum, in another order.

cdef enum:
    MIN_GRADIENT_ROWS = 32


cdef struct Pending:
    Py_ssize_t R        # rows per weight-gradient product; 0: one after the loop
    Py_ssize_t lo, hi   # the packed rows whose product is pending
    bint written        # a product has already written the scratch (joint)


cdef inline Pending pending_rows(Py_ssize_t B, Py_ssize_t G, Py_ssize_t K) noexcept nogil:
    """No rows pending yet, for a pass of at most B rows a step whose products
    are (G, rows) x (rows, K)."""
    cdef Pending p
    p.R = SMALL_PRODUCT // (G * K)
    if p.R < MIN_GRADIENT_ROWS or p.R < B:
        p.R = 0
    p.lo = p.hi = 0
    p.written = False
    return p


cdef inline bint step_done(Pending* p, Step s, Py_ssize_t B) noexcept nogil:
    """Add the rows of step ``s`` (BPTT has finished them) to the pending
    block, which stays contiguous as BPTT walks the packed rows down or up;
    True when it is time to multiply it, before another step of up to B
    rows would make it longer than R."""
    if p.R == 0:
        return False
    if p.hi == p.lo:
        p.lo, p.hi = s.off, s.off + s.B
    else:
        p.lo, p.hi = min(p.lo, s.off), max(p.hi, s.off + s.B)
    return p.hi - p.lo + B > p.R


cdef inline void loop_done(Pending* p, Py_ssize_t N) noexcept nogil:
    """After the loop: the rows still pending, or all N rows if the products
    wait for the end."""
    if p.R == 0:
        p.lo, p.hi = 0, N


cdef inline void split_gradient_products(
    Pending* p, Py_ssize_t I, Py_ssize_t H, Py_ssize_t G, const floating* X,
    const floating* H_prev, const floating* dG, const floating* dG_h,
    floating* dW_ih, floating* dW_hh,
) noexcept nogil:
    """The weight gradients of the pending rows when they come from different
    matrices (the GRU): ``dG`` (N, G) the gradients of the input-side
    pre-activations, ``dG_h`` those of the recurrent side, ``H_prev`` (N, H)
    the previous state of every row. Empties the block."""
    cdef Py_ssize_t n = p.hi - p.lo
    if n > 0:
        # dW_ih(G, I) += dG[lo:hi](n, G)^T @ X[lo:hi](n, I)
        gemm(Trans, NoTrans, G, I, n, 1, dG + p.lo * G, G, X + p.lo * I, I, 1, dW_ih, I)
        # dW_hh(G, H) += dG_h[lo:hi](n, G)^T @ H_prev[lo:hi](n, H)
        gemm(Trans, NoTrans, G, H, n, 1, dG_h + p.lo * G, G, H_prev + p.lo * H, H, 1,
             dW_hh, H)
    p.lo = p.hi


cdef inline void joint_gradient_product(
    Pending* p, Py_ssize_t N, Py_ssize_t I, Py_ssize_t H, Py_ssize_t G,
    const floating* X, floating* work, const floating* dG,
) noexcept nogil:
    """The weight gradients of the pending rows when one matrix ``dG`` (N, G)
    is the gradient of both products (Elman, LSTM): one GEMM for both
    weights, into the scratch [dW_ih | dW_hh] (G, I + H) of ``work``, so that
    OpenBLAS packs dG once instead of once per weight (figures:
    docs/performance.md, "Weight gradients"). ``work`` holds
    (N + G) * (I + H) elements; its first N rows of I + H come in with the
    previous state of every finished row in columns I .. I + H (gather_prev
    with ld = I + H). Empties the block."""
    cdef Py_ssize_t i, K = I + H, n = p.hi - p.lo
    cdef floating* XH = work            # [X | H_prev] (N, I + H)
    cdef floating* dW = work + N * K    # [dW_ih | dW_hh] (G, I + H)
    if n <= 0:
        return
    for i in range(p.lo, p.hi):
        memcpy(XH + i * K, X + i * I, I * sizeof(floating))
    # [dW_ih | dW_hh](G, I + H) (+)= dG[lo:hi](n, G)^T @ [X | H_prev][lo:hi](n, I + H)
    gemm(Trans, NoTrans, G, K, n, 1, dG + p.lo * G, G, XH + p.lo * K, K,
         1 if p.written else 0, dW, K)
    p.written = True
    p.lo = p.hi


cdef inline void joint_step_done(
    Pending* p, Step s, Py_ssize_t N, Py_ssize_t I, Py_ssize_t H, Py_ssize_t G,
    const floating* X, const floating* S0, const floating* Ss, floating* work,
    const floating* dG, Py_ssize_t B,
) noexcept nogil:
    """BPTT has finished step ``s`` (Elman, LSTM): its previous states into
    the [X | H_prev] rows of ``work``, and the weight-gradient product of the
    finished rows when their block is due."""
    # work[off_t:off_t+B_t, I:I+H] = h_prev
    gather_prev(s, H, S0, Ss, work + I, I + H)
    if step_done(p, s, B):
        joint_gradient_product(p, N, I, H, G, X, work, dG)


cdef inline void joint_gradients_done(
    Pending* p, Py_ssize_t N, Py_ssize_t I, Py_ssize_t H, Py_ssize_t G,
    const floating* X, const floating* W_ih, floating* work, const floating* dG,
    floating* dX, floating* dW_ih, floating* dW_hh, floating* db,
) noexcept nogil:
    """After the loop (Elman, LSTM): the product of the rows still pending,
    then dW_ih, dW_hh += the scratch [dW_ih | dW_hh], db and dX."""
    cdef Py_ssize_t g, i, K = I + H
    cdef const floating* dW = work + N * K
    loop_done(p, N)
    joint_gradient_product(p, N, I, H, G, X, work, dG)
    bias_and_input_gradients(N, I, G, W_ih, dG, dX, db)
    for g in range(G):
        for i in range(I):
            dW_ih[g * I + i] += dW[g * K + i]
        for i in range(H):
            dW_hh[g * H + i] += dW[g * K + I + i]
