# cython: language_level=3
"""Row-major BLAS for crnn: fused float32/float64 wrappers over scipy's BLAS.

Every matrix is row-major (C order). ``lda``, ``ldb`` and ``ldc`` are the
row strides, in elements, of the matrices as stored: an ``M x K`` row-major
matrix has leading dimension ``K`` (or more, for a sub-matrix). The wrappers
swap operands so that scipy's column-major routines compute row-major
results; no copies are made.

This is the only module of crnn that calls ``scipy.linalg.cython_blas``.
All functions run without the GIL and trust their arguments.
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
