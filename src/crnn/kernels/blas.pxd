# cython: language_level=3
"""Row-major BLAS for crnn: fused float32/float64 wrappers over scipy's BLAS.

Every matrix is row-major (C order). ``lda``, ``ldb`` and ``ldc`` are the
row strides, in elements, of the matrices as stored: an ``M x K`` row-major
matrix has leading dimension ``K`` (or more, for a sub-matrix). The wrappers
swap operands so that scipy's column-major routines compute row-major
results; no copies are made.

This is the only module of crnn that calls ``scipy.linalg.cython_blas``.
All functions run without the GIL and trust their arguments: every size,
leading dimension and increment is an ``int`` and must be below 2^31
(scipy's BLAS is 32-bit; ``check_blas_sizes`` in ``blas.pyx`` checks this
for the Python entry points).
"""
from cython cimport floating


cpdef enum BLAS_Trans:
    NoTrans = 110  # ord('n'): use the matrix as stored
    Trans = 116    # ord('t'): use its transpose


# C(M, N) = alpha * op(A)(M, K) @ op(B)(K, N) + beta * C
# A is stored (M, K) if ta == NoTrans else (K, M); likewise B.
cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int M, int N, int K,
               floating alpha, const floating* A, int lda,
               const floating* B, int ldb,
               floating beta, floating* C, int ldc) noexcept nogil

# y = alpha * op(A) @ x + beta * y, with A stored (M, N), op(A) = A or A^T.
cdef void gemv(BLAS_Trans ta, int M, int N, floating alpha,
               const floating* A, int lda, const floating* x, int incx,
               floating beta, floating* y, int incy) noexcept nogil

# y += alpha * x
cdef void axpy(int n, floating alpha, const floating* x, int incx,
               floating* y, int incy) noexcept nogil

# x . y
cdef floating dot(int n, const floating* x, int incx,
                  const floating* y, int incy) noexcept nogil

# x *= alpha
cdef void scal(int n, floating alpha, floating* x, int incx) noexcept nogil

# ||x||_2
cdef floating nrm2(int n, const floating* x, int incx) noexcept nogil

# y = x
cdef void copy(int n, const floating* x, int incx,
               floating* y, int incy) noexcept nogil


# --- The per-step recurrent product, with its weight packed once -------------
#
# A recurrence multiplies one weight matrix W (K, N) by a new A (M, K) at
# every step. BLAS repacks W on each call; crnn can instead lay W out once
# per pass in column panels (``pack``) and run every step's product on that
# layout (``packed_gemm``, an AVX-512 or AVX2 kernel; see packed.h).
# ``use_packed`` says whether to: the CPU has a kernel, scipy's BLAS runs on
# one thread (with more, its threaded GEMM is faster on an idle machine;
# crnn's own passes hold it at one thread, see the end of this file), the product is too
# large for OpenBLAS's small-matrix kernels, which read W in place, or the
# BLAS has none (OpenBLAS has them on its AVX-512 cores only:
# ``blas.SMALL_KERNEL_CORES``; on the others it repacks W on every call), and, in
# float64, W takes at most PACKED_DOUBLE_BYTES (beyond that, BLAS is the
# faster of the two in float64). The measurements behind these bounds, taken
# inside the training step (benchmarks/packed_ab.py): docs/performance.md,
# "The packed per-step product".

# OpenBLAS's AVX-512 cores run (M, K) x (K, N) products of at most
# SMALL_PRODUCT multiply-adds with small-matrix kernels that read both
# operands in place, as fast as the packed kernel; above that it repacks them
# on every call.
cdef enum:
    SMALL_PRODUCT = 1000000
    PACKED_DOUBLE_BYTES = 4194304     # 4 MiB

# Elements of W (K, N) packed, for either type: N padded to 32 columns.
cdef Py_ssize_t packed_size(Py_ssize_t K, Py_ssize_t N) noexcept nogil

# Whether an (M, K) x (K, N) product repeated over a pass should run packed;
# ``itemsize``: 4 for float32, 8 for float64.
cdef bint use_packed(Py_ssize_t M, Py_ssize_t K, Py_ssize_t N,
                     Py_ssize_t itemsize) noexcept nogil

# P = W packed, where W(k, n) = W[k * sk + n * sn]: (sk, sn) = (N, 1) for a
# row-major (K, N) matrix, (1, K) for the transpose of a row-major (N, K) one.
cdef void pack(Py_ssize_t K, Py_ssize_t N, const floating* W, Py_ssize_t sk,
               Py_ssize_t sn, floating* P) noexcept nogil

# C(M, N) = A(M, K) @ W(K, N) + beta * C, beta 0 or 1, with P = pack(W).
cdef void packed_gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating* A,
                      Py_ssize_t lda, const floating* P, bint beta, floating* C,
                      Py_ssize_t ldc) noexcept nogil



# --- The fused forward steps of the LSTM and the GRU (fused.h) -------------------
#
# One kernel per step and block of rows for the LSTM and GRU forward passes:
# the input and recurrent products of the gates of VL units in registers,
# and the cell's equations applied to them there, so that no gate
# pre-activation reaches memory. ``use_fused`` says whether to: the CPU has a
# packed kernel and the packed mode is not "never" (the measurements:
# docs/performance.md, "The fused forward step").

# Elements of the weights packed for the fused steps.
cdef Py_ssize_t lstm_packed_size(Py_ssize_t I, Py_ssize_t H) noexcept nogil
cdef Py_ssize_t gru_packed_size(Py_ssize_t I, Py_ssize_t H) noexcept nogil

cdef bint use_fused() noexcept nogil

# The kernel the fused steps run now (CRNN_ISA_*, packed.h), 0 when they do
# not run: weights packed under one kernel serve that kernel only.
cdef int fused_kernel() noexcept nogil

# P = [b; W_ih^T; W_hh^T] packed, from W_ih (4H, I), W_hh (4H, H), b (4H).
cdef void lstm_pack(Py_ssize_t I, Py_ssize_t H, const floating* W_ih,
                    const floating* W_hh, const floating* b, floating* P) noexcept nogil

# P = the GRU's [b, b_hn; W_ih^T; W_hh^T] packed, from W_ih (3H, I), W_hh
# (3H, H), b (3H), b_hn (H).
cdef void gru_pack(Py_ssize_t I, Py_ssize_t H, const floating* W_ih,
                   const floating* W_hh, const floating* b, const floating* b_hn,
                   floating* P) noexcept nogil

# One LSTM step of M rows: x (M, I), h_prev, c_prev (M, H) in; h, c (M, H) and
# the activated gates (M, 4H; none when NULL) out; h, c apart from h_prev,
# c_prev.
cdef void lstm_fused_step(Py_ssize_t M, Py_ssize_t I, Py_ssize_t H, const floating* x,
                          const floating* h_prev, const floating* c_prev,
                          const floating* P, floating* h, floating* c,
                          floating* gates) noexcept nogil

# One GRU step of M rows: x (M, I), h_prev (M, H) in; h (M, H), the activated
# gates (M, 3H) and hn = W_hn h_prev + b_hn (M, H) out (the last two: none
# when NULL, both); h apart from h_prev.
cdef void gru_fused_step(Py_ssize_t M, Py_ssize_t I, Py_ssize_t H, const floating* x,
                         const floating* h_prev, const floating* P, floating* h,
                         floating* gates, floating* hn) noexcept nogil

# --- scipy's BLAS threads ------------------------------------------------------
#
# crnn's passes run their products on one BLAS thread (its per-step products
# are too small to gain from more, and BLAS's spinning workers lose their core
# to any other busy process); crnn parallelises over blocks of sequences
# itself (``crnn._threads``). ``hold_one_thread`` holds scipy's BLAS at one
# thread until the matching ``release_threads``; nested and concurrent holds
# are counted, the first saves the thread count and the last restores it.
# Both need the GIL (it orders them), so they are for crnn's own passes, not
# for nogil code.
cdef void hold_one_thread() noexcept
cdef void release_threads() noexcept
