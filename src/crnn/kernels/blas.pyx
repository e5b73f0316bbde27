"""Row-major fused-type BLAS wrappers (see ``blas.pxd`` for the contract).

The ``py_*`` functions at the end expose each wrapper to Python on typed
memoryviews; they exist so that the test suite can check every wrapper
against NumPy, and check their arguments before calling. Their scalars are
Python floats, so the float32 or float64 version is chosen by the arrays.
"""
import numpy as np

from scipy.linalg.cython_blas cimport (
    dgemm, sgemm, dgemv, sgemv, daxpy, saxpy, ddot, sdot,
    dscal, sscal, dnrm2, snrm2, dcopy, scopy,
)


cdef extern from "packed.h" nogil:
    Py_ssize_t crnn_packed_size(Py_ssize_t K, Py_ssize_t N)
    int crnn_packed_isa()
    int crnn_packed_set_isa(int isa)
    void crnn_pack_d(Py_ssize_t K, Py_ssize_t N, const double* W, Py_ssize_t sk,
                     Py_ssize_t sn, double* P)
    void crnn_pack_f(Py_ssize_t K, Py_ssize_t N, const float* W, Py_ssize_t sk,
                     Py_ssize_t sn, float* P)
    void crnn_packed_gemm_d(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double* A,
                            Py_ssize_t lda, const double* P, int beta, double* C,
                            Py_ssize_t ldc)
    void crnn_packed_gemm_f(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A,
                            Py_ssize_t lda, const float* P, int beta, float* C,
                            Py_ssize_t ldc)


cdef extern from "fused.h" nogil:
    Py_ssize_t crnn_lstm_packed_size(Py_ssize_t I, Py_ssize_t H)
    Py_ssize_t crnn_gru_packed_size(Py_ssize_t I, Py_ssize_t H)
    void crnn_lstm_pack_d(Py_ssize_t I, Py_ssize_t H, const double* W_ih,
                          const double* W_hh, const double* b, double* P)
    void crnn_lstm_pack_f(Py_ssize_t I, Py_ssize_t H, const float* W_ih,
                          const float* W_hh, const float* b, float* P)
    void crnn_gru_pack_d(Py_ssize_t I, Py_ssize_t H, const double* W_ih,
                         const double* W_hh, const double* b, const double* b_hn,
                         double* P)
    void crnn_gru_pack_f(Py_ssize_t I, Py_ssize_t H, const float* W_ih,
                         const float* W_hh, const float* b, const float* b_hn, float* P)
    void crnn_lstm_fused_step_d(Py_ssize_t M, Py_ssize_t I, Py_ssize_t H, const double* x,
                                const double* h_prev, const double* c_prev,
                                const double* P, double* h, double* c, double* gates)
    void crnn_lstm_fused_step_f(Py_ssize_t M, Py_ssize_t I, Py_ssize_t H, const float* x,
                                const float* h_prev, const float* c_prev,
                                const float* P, float* h, float* c, float* gates)
    void crnn_gru_fused_step_d(Py_ssize_t M, Py_ssize_t I, Py_ssize_t H, const double* x,
                               const double* h_prev, const double* P, double* h,
                               double* gates, double* hn)
    void crnn_gru_fused_step_f(Py_ssize_t M, Py_ssize_t I, Py_ssize_t H, const float* x,
                               const float* h_prev, const float* P, float* h,
                               float* gates, float* hn)

cdef inline int _ld(int ld) noexcept nogil:
    # BLAS demands a leading dimension >= 1 even for empty matrices.
    return ld if ld > 1 else 1


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int M, int N, int K,
               floating alpha, const floating* A, int lda,
               const floating* B, int ldb,
               floating beta, floating* C, int ldc) noexcept nogil:
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T:
    # call the column-major routine with the operands swapped.
    cdef char ta_ = ta
    cdef char tb_ = tb
    if M <= 0 or N <= 0:
        return
    lda = _ld(lda)
    ldb = _ld(ldb)
    ldc = _ld(ldc)
    if floating is float:
        sgemm(&tb_, &ta_, &N, &M, &K, &alpha, <float*> B, &ldb,
              <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb_, &ta_, &N, &M, &K, &alpha, <double*> B, &ldb,
              <double*> A, &lda, &beta, C, &ldc)


cdef void gemv(BLAS_Trans ta, int M, int N, floating alpha,
               const floating* A, int lda, const floating* x, int incx,
               floating beta, floating* y, int incy) noexcept nogil:
    # A row-major (M, N) is A^T column-major (N, M): flip the transpose flag.
    cdef char ta_ = b't' if ta == NoTrans else b'n'
    cdef int n_out = M if ta == NoTrans else N
    cdef int n_in = N if ta == NoTrans else M
    cdef int k
    if n_out <= 0:
        return
    if n_in <= 0:
        # Empty product: y = beta * y (BLAS would return without scaling y).
        for k in range(n_out):
            y[k * incy] = 0 if beta == 0 else beta * y[k * incy]
        return
    lda = _ld(lda)
    if floating is float:
        sgemv(&ta_, &N, &M, &alpha, <float*> A, &lda, <float*> x, &incx,
              &beta, y, &incy)
    else:
        dgemv(&ta_, &N, &M, &alpha, <double*> A, &lda, <double*> x, &incx,
              &beta, y, &incy)


cdef void axpy(int n, floating alpha, const floating* x, int incx,
               floating* y, int incy) noexcept nogil:
    if floating is float:
        saxpy(&n, &alpha, <float*> x, &incx, y, &incy)
    else:
        daxpy(&n, &alpha, <double*> x, &incx, y, &incy)


cdef floating dot(int n, const floating* x, int incx,
                  const floating* y, int incy) noexcept nogil:
    if floating is float:
        return sdot(&n, <float*> x, &incx, <float*> y, &incy)
    else:
        return ddot(&n, <double*> x, &incx, <double*> y, &incy)


cdef void scal(int n, floating alpha, floating* x, int incx) noexcept nogil:
    if floating is float:
        sscal(&n, &alpha, x, &incx)
    else:
        dscal(&n, &alpha, x, &incx)


cdef floating nrm2(int n, const floating* x, int incx) noexcept nogil:
    if floating is float:
        return snrm2(&n, <float*> x, &incx)
    else:
        return dnrm2(&n, <double*> x, &incx)


cdef void copy(int n, const floating* x, int incx,
               floating* y, int incy) noexcept nogil:
    if floating is float:
        scopy(&n, <float*> x, &incx, y, &incy)
    else:
        dcopy(&n, <double*> x, &incx, y, &incy)


# --- Sizes ---------------------------------------------------------------------

#: The largest size a BLAS call takes: scipy's BLAS counts in 32-bit ints.
BLAS_INT_MAX = 2**31 - 1


def check_blas_sizes(**sizes):
    """Raise ValueError if a size (rows, columns, a leading dimension) is
    beyond :data:`BLAS_INT_MAX`: scipy's BLAS takes 32-bit sizes, which
    would silently truncate it."""
    for name, n in sizes.items():
        if n > BLAS_INT_MAX:
            raise ValueError(f"{name} = {n} is beyond the largest size scipy's BLAS "
                             f"takes ({BLAS_INT_MAX}, 2^31 - 1); split the batch")


# --- The packed recurrent product -------------------------------------------

ctypedef int (*thread_query)() noexcept nogil
cdef thread_query blas_threads = NULL     # scipy's BLAS's own, found at import
                                          # (see "scipy's BLAS threads" below)
cdef int packed_mode = 0                  # 0 auto, 1 never, 2 always
PACKED_MODES = {"auto": 0, "never": 1, "always": 2}
cdef bint small_kernels = True            # found at import (see below)

#: The OpenBLAS cores whose sgemm and dgemm have small-matrix kernels, which
#: read both operands in place (OpenBLAS's ``*_small_kernel_*`` and "direct
#: sgemm" code is built for these cores only). Every other core, Haswell's
#: that OpenBLAS runs on AVX2 machines (Zen 1 to 3 among them) included,
#: repacks W on every call, however small the product.
SMALL_KERNEL_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def has_small_kernels(corename):
    """Whether an OpenBLAS core (``openblas_get_corename()``; None: another
    BLAS, or one that does not say) has small-matrix kernels. A BLAS that is
    not OpenBLAS is taken to have them."""
    return corename is None or corename.strip().lower() in SMALL_KERNEL_CORES


def _find_blas_corename():
    """The core scipy's OpenBLAS runs on (``"Haswell"``, ``"SkylakeX"``...),
    from the library ``scipy.linalg.cython_blas`` links; None for another
    BLAS."""
    import ctypes

    from scipy.linalg import cython_blas

    try:
        lib = ctypes.CDLL(cython_blas.__file__)
    except OSError:
        return None
    for name in ("scipy_openblas_get_corename", "openblas_get_corename",
                 "scipy_openblas_get_corename64_", "openblas_get_corename64_"):
        function = getattr(lib, name, None)
        if function is not None:
            function.restype = ctypes.c_char_p
            value = function()
            return value.decode("ascii", "replace") if value else None
    return None


#: The OpenBLAS core scipy's BLAS runs on, or None for another BLAS.
BLAS_CORENAME = _find_blas_corename()
small_kernels = has_small_kernels(BLAS_CORENAME)


def blas_small_kernels():
    """Whether scipy's BLAS runs small products in place (:func:`has_small_kernels`
    of :data:`BLAS_CORENAME`): if not, ``use_packed`` takes the packed
    kernel for per-step products of any size."""
    return small_kernels


cdef bint use_packed(Py_ssize_t M, Py_ssize_t K, Py_ssize_t N,
                     Py_ssize_t itemsize) noexcept nogil:
    if packed_mode == 1 or crnn_packed_isa() == 0:
        return False
    if packed_mode == 2:
        return True
    if itemsize == 8 and K * N * 8 > PACKED_DOUBLE_BYTES:
        return False
    return ((M * K * N > SMALL_PRODUCT or not small_kernels)
            and blas_threads != NULL and blas_threads() == 1)


cdef Py_ssize_t packed_size(Py_ssize_t K, Py_ssize_t N) noexcept nogil:
    return crnn_packed_size(K, N)


cdef void pack(Py_ssize_t K, Py_ssize_t N, const floating* W, Py_ssize_t sk,
               Py_ssize_t sn, floating* P) noexcept nogil:
    if floating is float:
        crnn_pack_f(K, N, W, sk, sn, P)
    else:
        crnn_pack_d(K, N, W, sk, sn, P)


cdef void packed_gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating* A,
                      Py_ssize_t lda, const floating* P, bint beta, floating* C,
                      Py_ssize_t ldc) noexcept nogil:
    if floating is float:
        crnn_packed_gemm_f(M, N, K, A, lda, P, beta, C, ldc)
    else:
        crnn_packed_gemm_d(M, N, K, A, lda, P, beta, C, ldc)



# --- The fused forward steps ---------------------------------------------------

cdef Py_ssize_t lstm_packed_size(Py_ssize_t I, Py_ssize_t H) noexcept nogil:
    return crnn_lstm_packed_size(I, H)


cdef Py_ssize_t gru_packed_size(Py_ssize_t I, Py_ssize_t H) noexcept nogil:
    return crnn_gru_packed_size(I, H)


cdef bint use_fused() noexcept nogil:
    return fused_kernel() != 0


cdef int fused_kernel() noexcept nogil:
    return 0 if packed_mode == 1 else crnn_packed_isa()


cdef void lstm_pack(Py_ssize_t I, Py_ssize_t H, const floating* W_ih,
                    const floating* W_hh, const floating* b, floating* P) noexcept nogil:
    if floating is float:
        crnn_lstm_pack_f(I, H, W_ih, W_hh, b, P)
    else:
        crnn_lstm_pack_d(I, H, W_ih, W_hh, b, P)


cdef void gru_pack(Py_ssize_t I, Py_ssize_t H, const floating* W_ih,
                   const floating* W_hh, const floating* b, const floating* b_hn,
                   floating* P) noexcept nogil:
    if floating is float:
        crnn_gru_pack_f(I, H, W_ih, W_hh, b, b_hn, P)
    else:
        crnn_gru_pack_d(I, H, W_ih, W_hh, b, b_hn, P)


cdef void lstm_fused_step(Py_ssize_t M, Py_ssize_t I, Py_ssize_t H, const floating* x,
                          const floating* h_prev, const floating* c_prev,
                          const floating* P, floating* h, floating* c,
                          floating* gates) noexcept nogil:
    if floating is float:
        crnn_lstm_fused_step_f(M, I, H, x, h_prev, c_prev, P, h, c, gates)
    else:
        crnn_lstm_fused_step_d(M, I, H, x, h_prev, c_prev, P, h, c, gates)


cdef void gru_fused_step(Py_ssize_t M, Py_ssize_t I, Py_ssize_t H, const floating* x,
                         const floating* h_prev, const floating* P, floating* h,
                         floating* gates, floating* hn) noexcept nogil:
    if floating is float:
        crnn_gru_fused_step_f(M, I, H, x, h_prev, P, h, gates, hn)
    else:
        crnn_gru_fused_step_d(M, I, H, x, h_prev, P, h, gates, hn)

# --- scipy's BLAS threads ------------------------------------------------------

ctypedef void (*thread_setter)(int) noexcept nogil
cdef thread_setter blas_set_threads = NULL    # found at import, with blas_threads
cdef int holders = 0          # crnn calls now holding scipy's BLAS at one thread
cdef int threads_before = 0   # its thread count when the first of them began

# (get, set) function names of each BLAS build scipy may link.
_THREAD_FUNCTIONS = (
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
)


def _find_blas_thread_functions():
    """The addresses of scipy's BLAS functions that report and set its
    thread count (OpenBLAS or MKL), looked up in the library
    ``scipy.linalg.cython_blas`` links; 0 for what there is not."""
    import ctypes

    from scipy.linalg import cython_blas

    try:
        lib = ctypes.CDLL(cython_blas.__file__)
    except OSError:
        return 0, 0
    for get_name, set_name in _THREAD_FUNCTIONS:
        get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
        if get is not None:
            address = lambda f: (ctypes.cast(f, ctypes.c_void_p).value or 0) if f else 0
            return address(get), address(set_)
    return 0, 0


# Found once, here: no Python code can point the kernels at another function.
_get, _set = _find_blas_thread_functions()
blas_threads = <thread_query> <size_t> _get
blas_set_threads = <thread_setter> <size_t> _set
del _get, _set


cdef void hold_one_thread() noexcept:
    """Hold scipy's BLAS at one thread until the matching
    :func:`release_threads`. Called with the GIL held, which orders the
    calls of every thread: the first holder saves the thread count and sets
    it to one, the last one restores it."""
    global holders, threads_before
    if holders == 0 and blas_threads != NULL and blas_set_threads != NULL:
        threads_before = blas_threads()
        if threads_before > 1:
            blas_set_threads(1)
    holders += 1


cdef void release_threads() noexcept:
    """End one :func:`hold_one_thread`."""
    global holders, threads_before
    holders -= 1
    if holders == 0 and threads_before > 1:
        blas_set_threads(threads_before)
        threads_before = 0


def hold_blas_threads():
    """Hold scipy's BLAS at one thread (see ``hold_one_thread``); pair with
    :func:`release_blas_threads`. ``crnn._threads.one_blas_thread`` is the
    context manager built on these."""
    hold_one_thread()


def release_blas_threads():
    """End one :func:`hold_blas_threads`; the last restores the thread count."""
    if holders < 1:
        raise RuntimeError("release_blas_threads without hold_blas_threads")
    release_threads()


def blas_threads_held():
    """How many crnn calls hold scipy's BLAS at one thread now, and the
    thread count that the last of them will restore (0 if none was saved)."""
    return holders, threads_before


def blas_thread_count():
    """The thread count scipy's BLAS reports now, or None if it has no query
    (while crnn holds it at one thread: 1)."""
    return None if blas_threads == NULL else blas_threads()


def set_packed_mode(str mode not None):
    """Choose when the kernels use the packed product: ``"auto"`` (the
    default: see ``use_packed`` in ``blas.pxd``), ``"never"`` (always BLAS)
    or ``"always"`` (whenever the CPU has a kernel, at any size and thread
    count; for tests). Returns the previous mode."""
    global packed_mode
    if mode not in PACKED_MODES:
        raise ValueError(f"mode must be one of {sorted(PACKED_MODES)}; got {mode!r}")
    previous = [name for name, code in PACKED_MODES.items() if code == packed_mode][0]
    packed_mode = PACKED_MODES[mode]
    return previous


def packed_isa():
    """The packed kernel in use: 2 AVX-512, 1 AVX2 with FMA, 0 none (BLAS)."""
    return crnn_packed_isa()


def set_packed_isa(isa):
    """Use at most kernel ``isa`` (2, 1 or 0; -1: the CPU's best), for tests
    of the narrower kernels on a wider CPU. Returns the kernel now in use."""
    if isa not in (-1, 0, 1, 2) or isinstance(isa, bool):
        raise ValueError(f"isa must be -1, 0, 1 or 2; got {isa!r}")
    return crnn_packed_set_isa(isa)


# --- Python access, for tests ----------------------------------------------

cdef inline BLAS_Trans _trans(bint transpose):
    return Trans if transpose else NoTrans


def py_gemm(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A not None,
            const floating[:, ::1] B not None, double beta, floating[:, ::1] C not None):
    """C = alpha * op(A) @ op(B) + beta * C, in place, on C-ordered arrays."""
    cdef Py_ssize_t M = C.shape[0], N = C.shape[1]
    cdef Py_ssize_t K = A.shape[0] if trans_a else A.shape[1]
    if (A.shape[1] if trans_a else A.shape[0]) != M:
        raise ValueError("op(A) must have as many rows as C")
    if (B.shape[1] if trans_b else B.shape[0]) != K:
        raise ValueError("op(B) must have as many rows as op(A) has columns")
    if (B.shape[0] if trans_b else B.shape[1]) != N:
        raise ValueError("op(B) must have as many columns as C")
    check_blas_sizes(M=M, N=N, K=K, lda=A.shape[1], ldb=B.shape[1])
    gemm(_trans(trans_a), _trans(trans_b), M, N, K, <floating> alpha,
         &A[0, 0] if A.size else NULL, A.shape[1],
         &B[0, 0] if B.size else NULL, B.shape[1],
         <floating> beta, &C[0, 0] if C.size else NULL, C.shape[1])


def py_gemv(bint trans_a, double alpha, const floating[:, ::1] A not None,
            const floating[::1] x not None, double beta, floating[::1] y not None):
    """y = alpha * op(A) @ x + beta * y, in place."""
    cdef Py_ssize_t M = A.shape[0], N = A.shape[1]
    if x.shape[0] != (M if trans_a else N) or y.shape[0] != (N if trans_a else M):
        raise ValueError("x and y do not match the shape of op(A)")
    check_blas_sizes(M=M, N=N)
    gemv(_trans(trans_a), M, N, <floating> alpha, &A[0, 0] if A.size else NULL, N,
         &x[0] if x.size else NULL, 1, <floating> beta, &y[0] if y.size else NULL, 1)


def py_axpy(double alpha, const floating[::1] x not None, floating[::1] y not None):
    """y += alpha * x, in place."""
    if x.shape[0] != y.shape[0]:
        raise ValueError("x and y must have the same length")
    check_blas_sizes(n=x.shape[0])
    if x.shape[0]:
        axpy(x.shape[0], <floating> alpha, &x[0], 1, &y[0], 1)


def py_dot(const floating[::1] x not None, const floating[::1] y not None):
    """Return x . y."""
    if x.shape[0] != y.shape[0]:
        raise ValueError("x and y must have the same length")
    check_blas_sizes(n=x.shape[0])
    return dot(x.shape[0], &x[0], 1, &y[0], 1) if x.shape[0] else 0.0


def py_scal(double alpha, floating[::1] x not None):
    """x *= alpha, in place."""
    check_blas_sizes(n=x.shape[0])
    if x.shape[0]:
        scal(x.shape[0], <floating> alpha, &x[0], 1)


def py_nrm2(const floating[::1] x not None):
    """Return the Euclidean norm of x."""
    check_blas_sizes(n=x.shape[0])
    return nrm2(x.shape[0], &x[0], 1) if x.shape[0] else 0.0


def py_copy(const floating[::1] x not None, floating[::1] y not None):
    """y[:] = x."""
    if x.shape[0] != y.shape[0]:
        raise ValueError("x and y must have the same length")
    check_blas_sizes(n=x.shape[0])
    if x.shape[0]:
        copy(x.shape[0], &x[0], 1, &y[0], 1)


def py_packed_gemm(const floating[:, :] A not None, const floating[:, ::1] W not None,
                   bint beta, floating[:, :] C not None, bint transposed=False):
    """C = A @ W + beta * C through pack and packed_gemm (or C = A @ W^T with
    ``transposed``: W is then (N, K)), in place. A and C may be row slices of
    wider arrays (contiguous rows). Needs a packed kernel (packed_isa() > 0)."""
    cdef Py_ssize_t M = A.shape[0], K = A.shape[1], N = C.shape[1]
    if crnn_packed_isa() == 0:
        raise RuntimeError("this CPU has no packed kernel")
    if C.shape[0] != M or (W.shape[0], W.shape[1]) != ((N, K) if transposed else (K, N)):
        raise ValueError("A, W and C do not match")
    if A.strides[1] != sizeof(floating) or C.strides[1] != sizeof(floating):
        raise ValueError("the rows of A and C must be contiguous")
    if M == 0 or N == 0 or K == 0:
        raise ValueError("empty product")
    cdef floating[::1] P = np.empty(packed_size(K, N), dtype=np.asarray(C).dtype)
    if transposed:
        pack(K, N, &W[0, 0], 1, K, &P[0])
    else:
        pack(K, N, &W[0, 0], N, 1, &P[0])
    packed_gemm(M, N, K, &A[0, 0], A.strides[0] // sizeof(floating), &P[0], beta,
                &C[0, 0], C.strides[0] // sizeof(floating))


def py_use_packed(Py_ssize_t M, Py_ssize_t K, Py_ssize_t N, dtype=np.float32):
    """use_packed(M, K, N, itemsize): whether a pass of (M, K) x (K, N)
    products of ``dtype`` runs packed."""
    return use_packed(M, K, N, np.dtype(dtype).itemsize)
