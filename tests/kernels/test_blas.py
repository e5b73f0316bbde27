"""Tests of the row-major BLAS wrappers of ``crnn.kernels.blas`` against NumPy.

Every ``py_*`` function is checked for float32 and float64, against a
float64 NumPy computation on the same (possibly float32) inputs. The error
allowed on each entry is ``RTOL[dtype]`` times the sum of the magnitudes of
the terms that make up that entry (for instance ``|alpha| |op(A)| |op(B)| +
|beta| |C|`` for GEMM), which is the natural bound for rounding errors of a
sum and does not break down when an entry cancels to (nearly) zero.

The tests select each fused specialisation explicitly
(``py_gemm["float"]``); a separate test checks that a plain call is
dispatched on the dtype of the arrays, the scalars being Python floats.
"""
import numpy as np
import pytest

from crnn.kernels import blas

#: Relative tolerance for float64 results.
RTOL_FLOAT64 = 1e-12
#: Relative tolerance for float32 results.
RTOL_FLOAT32 = 1e-5
RTOL = {np.float32: RTOL_FLOAT32, np.float64: RTOL_FLOAT64}

DTYPES = [np.float32, np.float64]
TRANS = [False, True]

#: (alpha, beta) pairs; all exactly representable in float32.
ALPHA_BETA = [(1.0, 0.0), (0.5, -1.25), (0.0, 2.0), (-2.0, 1.0), (1.5, 0.0)]


def spec(name, dtype):
    """The float or double specialisation of the fused function ``name``."""
    return getattr(blas, name)["float" if dtype == np.float32 else "double"]


def rand(rng, shape, dtype):
    return np.ascontiguousarray(rng.standard_normal(shape).astype(dtype))


def assert_within(actual, expected, scale, dtype):
    """|actual - expected| <= RTOL[dtype] * scale, entry by entry."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    assert np.all(np.isfinite(actual)), actual
    err = np.abs(actual - expected)
    bound = RTOL[dtype] * np.asarray(scale, dtype=np.float64)
    bad = err > bound
    assert not bad.any(), (
        f"{bad.sum()} entries out of tolerance; max error {err.max()}, "
        f"bound there {bound[np.unravel_index(np.argmax(err - bound), err.shape)]}"
    )


def stored(op_matrix, transposed):
    """C-contiguous storage whose op() is ``op_matrix``."""
    return np.ascontiguousarray(op_matrix.T if transposed else op_matrix)


# --- gemm ---------------------------------------------------------------------

GEMM_SHAPES = [  # (M, N, K)
    (3, 4, 5),
    (7, 6, 9),
    (1, 5, 3),   # 1 x N result
    (5, 1, 3),   # N x 1 result
    (4, 3, 1),   # rank-one update
    (1, 1, 1),
    (1, 1, 8),   # a dot product
    (0, 4, 3),   # zero rows
    (3, 0, 4),   # zero columns
    (0, 0, 0),
    (3, 4, 0),   # zero inner dimension: C = beta * C
    (1, 6, 0),
]


@pytest.mark.parametrize("alpha, beta", ALPHA_BETA)
@pytest.mark.parametrize("M, N, K", GEMM_SHAPES)
@pytest.mark.parametrize("trans_b", TRANS)
@pytest.mark.parametrize("trans_a", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm(dtype, trans_a, trans_b, M, N, K, alpha, beta):
    rng = np.random.default_rng([M, N, K, trans_a, trans_b])
    opA = rand(rng, (M, K), dtype)
    opB = rand(rng, (K, N), dtype)
    A, B = stored(opA, trans_a), stored(opB, trans_b)
    C0 = rand(rng, (M, N), dtype)
    C = C0.copy()
    A_before, B_before = A.copy(), B.copy()

    spec("py_gemm", dtype)(trans_a, trans_b, alpha, A, B, beta, C)

    a64, b64, c64 = (m.astype(np.float64) for m in (opA, opB, C0))
    expected = alpha * (a64 @ b64) + beta * c64
    scale = abs(alpha) * (np.abs(a64) @ np.abs(b64)) + abs(beta) * np.abs(c64)
    assert_within(C, expected, scale, dtype)
    if K == 0 and M and N:
        # Nothing to multiply: C must be exactly beta * C.
        np.testing.assert_array_equal(C, (beta * C0).astype(dtype))
    np.testing.assert_array_equal(A, A_before)
    np.testing.assert_array_equal(B, B_before)


@pytest.mark.parametrize("M, N, K", [(3, 4, 5), (1, 1, 1), (5, 1, 2), (3, 4, 0)])
@pytest.mark.parametrize("trans_b", TRANS)
@pytest.mark.parametrize("trans_a", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_does_not_read_C(dtype, trans_a, trans_b, M, N, K):
    # The BLAS standard says C need not be set on input when beta == 0; the
    # OpenBLAS that scipy ships honours this (NaN in C does not propagate),
    # and the Elman kernels rely on it (they GEMM into uninitialised memory).
    rng = np.random.default_rng([M, N, K, 7])
    opA = rand(rng, (M, K), dtype)
    opB = rand(rng, (K, N), dtype)
    C = np.full((M, N), np.nan, dtype=dtype)
    spec("py_gemm", dtype)(trans_a, trans_b, 1.5,
                           stored(opA, trans_a), stored(opB, trans_b), 0.0, C)
    a64, b64 = opA.astype(np.float64), opB.astype(np.float64)
    assert_within(C, 1.5 * (a64 @ b64), 1.5 * (np.abs(a64) @ np.abs(b64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_with_finite_garbage(dtype):
    rng = np.random.default_rng(3)
    A, B = rand(rng, (4, 3), dtype), rand(rng, (3, 5), dtype)
    C = np.full((4, 5), 1e30, dtype=dtype)
    spec("py_gemm", dtype)(False, False, 1.0, A, B, 0.0, C)
    a64, b64 = A.astype(np.float64), B.astype(np.float64)
    assert_within(C, a64 @ b64, np.abs(a64) @ np.abs(b64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_accepts_read_only_inputs(dtype):
    rng = np.random.default_rng(4)
    A, B = rand(rng, (2, 3), dtype), rand(rng, (3, 2), dtype)
    A.flags.writeable = False
    B.flags.writeable = False
    C = np.zeros((2, 2), dtype=dtype)
    spec("py_gemm", dtype)(False, False, 1.0, A, B, 0.0, C)
    a64, b64 = A.astype(np.float64), B.astype(np.float64)
    assert_within(C, a64 @ b64, np.abs(a64) @ np.abs(b64), dtype)


@pytest.mark.parametrize(
    "trans_a, trans_b, a_shape, b_shape, c_shape, match",
    [
        (False, False, (3, 4), (4, 5), (2, 5), "op\\(A\\) must have as many rows"),
        (True, False, (3, 4), (3, 5), (3, 5), "op\\(A\\) must have as many rows"),
        (False, False, (3, 4), (3, 5), (3, 5), "op\\(B\\) must have as many rows"),
        (False, True, (3, 4), (5, 3), (3, 5), "op\\(B\\) must have as many rows"),
        (False, False, (3, 4), (4, 6), (3, 5), "op\\(B\\) must have as many columns"),
        (False, True, (3, 4), (4, 4), (3, 5), "op\\(B\\) must have as many columns"),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_shape_mismatch(dtype, trans_a, trans_b, a_shape, b_shape,
                             c_shape, match):
    A, B = np.ones(a_shape, dtype), np.ones(b_shape, dtype)
    C = np.zeros(c_shape, dtype)
    with pytest.raises(ValueError, match=match):
        spec("py_gemm", dtype)(trans_a, trans_b, 1.0, A, B, 0.0, C)
    np.testing.assert_array_equal(C, 0)


# --- gemv ---------------------------------------------------------------------

GEMV_SHAPES = [(3, 4), (6, 6), (1, 5), (5, 1), (1, 1), (0, 4), (4, 0), (0, 0)]


def _gemv_case(rng, dtype, trans_a, M, N):
    A = rand(rng, (M, N), dtype)
    opA = A.T if trans_a else A
    x = rand(rng, (opA.shape[1],), dtype)
    y = rand(rng, (opA.shape[0],), dtype)
    return A, opA.astype(np.float64), x, y


def _inner_dimension_is_zero(trans_a, M, N):
    # op(A) has columns (the length of x) but y is not empty.
    return (N == 0 and M > 0) if not trans_a else (M == 0 and N > 0)


@pytest.mark.parametrize("alpha, beta", ALPHA_BETA)
@pytest.mark.parametrize(
    "trans_a, M, N",
    # Zero inner dimension with a non-empty y: see test_gemv_zero_inner_dimension.
    [(t, M, N) for t in TRANS for M, N in GEMV_SHAPES
     if not _inner_dimension_is_zero(t, M, N)],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemv(dtype, trans_a, M, N, alpha, beta):
    rng = np.random.default_rng([M, N, trans_a])
    A, opA, x, y0 = _gemv_case(rng, dtype, trans_a, M, N)
    y = y0.copy()
    spec("py_gemv", dtype)(trans_a, alpha, A, x, beta, y)
    x64, y64 = x.astype(np.float64), y0.astype(np.float64)
    expected = alpha * (opA @ x64) + beta * y64
    scale = abs(alpha) * (np.abs(opA) @ np.abs(x64)) + abs(beta) * np.abs(y64)
    assert_within(y, expected, scale, dtype)


@pytest.mark.parametrize("beta", [0.5, 0.0])
@pytest.mark.parametrize("trans_a", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemv_zero_inner_dimension(dtype, trans_a, beta):
    M, N = (0, 3) if trans_a else (3, 0)
    A = np.zeros((M, N), dtype)
    x = np.zeros(0, dtype)
    y = np.full(3, 2.0, dtype)
    spec("py_gemv", dtype)(trans_a, 1.0, A, x, beta, y)
    np.testing.assert_array_equal(y, np.full(3, 2.0 * beta, dtype))


@pytest.mark.parametrize("M, N", [(3, 4), (1, 1), (4, 1)])
@pytest.mark.parametrize("trans_a", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemv_beta_zero_does_not_read_y(dtype, trans_a, M, N):
    rng = np.random.default_rng([M, N, trans_a, 11])
    A, opA, x, y = _gemv_case(rng, dtype, trans_a, M, N)
    y[:] = np.nan
    spec("py_gemv", dtype)(trans_a, -0.5, A, x, 0.0, y)
    x64 = x.astype(np.float64)
    assert_within(y, -0.5 * (opA @ x64), 0.5 * (np.abs(opA) @ np.abs(x64)), dtype)


@pytest.mark.parametrize(
    "trans_a, x_len, y_len",
    [(False, 3, 3), (False, 4, 4), (False, 5, 3), (True, 4, 4), (True, 3, 3),
     (True, 3, 5)],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemv_shape_mismatch(dtype, trans_a, x_len, y_len):
    A = np.ones((3, 4), dtype)   # op(A) is 3x4, or 4x3 when transposed
    with pytest.raises(ValueError, match="x and y do not match"):
        spec("py_gemv", dtype)(trans_a, 1.0, A, np.ones(x_len, dtype), 0.0,
                               np.ones(y_len, dtype))


# --- level 1 --------------------------------------------------------------------

LENGTHS = [0, 1, 5, 33]


@pytest.mark.parametrize("alpha", [0.0, 1.0, -2.5])
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_axpy(dtype, n, alpha):
    rng = np.random.default_rng([n, 1])
    x, y0 = rand(rng, n, dtype), rand(rng, n, dtype)
    y = y0.copy()
    spec("py_axpy", dtype)(alpha, x, y)
    x64, y64 = x.astype(np.float64), y0.astype(np.float64)
    assert_within(y, y64 + alpha * x64, abs(alpha) * np.abs(x64) + np.abs(y64),
                  dtype)


@pytest.mark.parametrize("n", [0, 1, 5, 100])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dot(dtype, n):
    rng = np.random.default_rng([n, 2])
    x, y = rand(rng, n, dtype), rand(rng, n, dtype)
    d = spec("py_dot", dtype)(x, y)
    assert isinstance(d, float)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    assert_within(d, x64 @ y64, np.abs(x64) @ np.abs(y64), dtype)
    if n == 0:
        assert d == 0.0


@pytest.mark.parametrize("alpha", [0.0, 1.0, -1.5, 3.0])
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_scal(dtype, n, alpha):
    # Only finite x: whether 0 * NaN gives 0 or NaN differs between BLAS
    # versions (the OpenBLAS used here propagates NaN in ?scal).
    rng = np.random.default_rng([n, 3])
    x0 = rand(rng, n, dtype)
    x = x0.copy()
    spec("py_scal", dtype)(alpha, x)
    # Multiplication by these alphas is exact in binary floating point.
    np.testing.assert_array_equal(x, (alpha * x0.astype(np.float64)).astype(dtype))


@pytest.mark.parametrize("n", [0, 1, 5, 100])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nrm2(dtype, n):
    rng = np.random.default_rng([n, 4])
    x = rand(rng, n, dtype)
    r = spec("py_nrm2", dtype)(x)
    assert isinstance(r, float)
    expected = np.sqrt(np.sum(x.astype(np.float64) ** 2))
    assert abs(r - expected) <= RTOL[dtype] * expected
    if n == 0:
        assert r == 0.0


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e30), (np.float64, 1e200),
                                        (np.float32, 1e-30), (np.float64, 1e-200)])
def test_nrm2_no_overflow_or_underflow(dtype, big):
    # x_i^2 overflows (or underflows) the dtype, the norm itself does not.
    x = np.array([3 * big, 4 * big], dtype=dtype)
    r = spec("py_nrm2", dtype)(x)
    expected = 5 * float(dtype(big))
    assert abs(r - expected) <= RTOL[dtype] * expected


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_copy(dtype, n):
    rng = np.random.default_rng([n, 5])
    x = rand(rng, n, dtype)
    y = np.full(n, np.nan, dtype)
    spec("py_copy", dtype)(x, y)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("name", ["py_axpy", "py_dot", "py_copy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_level1_length_mismatch(dtype, name):
    x, y = np.ones(3, dtype), np.ones(4, dtype)
    args = (x, y) if name != "py_axpy" else (1.0, x, y)
    with pytest.raises(ValueError, match="same length"):
        spec(name, dtype)(*args)
    np.testing.assert_array_equal(y, 1)


# --- dispatch ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["py_dot", "py_copy"])
def test_mixed_dtypes_are_rejected(name):
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        getattr(blas, name)(np.ones(2), np.ones(2, np.float32))


@pytest.mark.parametrize("name", ["py_dot", "py_nrm2"])
def test_plain_call_dispatches_on_array_dtype(name):
    # Functions whose first fused argument is an array dispatch on its dtype.
    x = np.array([3.0, 4.0], np.float32)
    args = (x, x) if name == "py_dot" else (x,)
    assert getattr(blas, name)(*args) == (25.0 if name == "py_dot" else 5.0)


@pytest.mark.parametrize("name", ["py_gemm", "py_gemv", "py_axpy", "py_scal"])
def test_plain_call_with_float32_arrays(name):
    f = np.float32
    args = {
        "py_gemm": (False, False, 1.0, np.ones((2, 2), f), np.ones((2, 2), f),
                    0.0, np.ones((2, 2), f)),
        "py_gemv": (False, 1.0, np.ones((2, 2), f), np.ones(2, f), 0.0,
                    np.ones(2, f)),
        "py_axpy": (1.0, np.ones(2, f), np.ones(2, f)),
        "py_scal": (2.0, np.ones(2, f)),
    }[name]
    getattr(blas, name)(*args)
    out = args[-1]
    expected = {"py_gemm": 2.0, "py_gemv": 2.0, "py_axpy": 2.0, "py_scal": 2.0}[name]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.full(out.shape, expected, np.float32))


# --- the packed per-step product ------------------------------------------------

#: (M, N, K): row counts around the tile heights (3 and 8 rows), column counts
#: around the panel widths (16 doubles, 32 floats), depths around the
#: 128-row blocks of a panel.
PACKED_SHAPES = [(1, 1, 1), (2, 5, 3), (3, 16, 7), (4, 31, 128), (5, 32, 129),
                 (7, 33, 64), (8, 64, 300), (9, 100, 17), (17, 48, 256), (64, 96, 130)]


def packed_kernels():
    """The packed kernels this CPU has (2 AVX-512, 1 AVX2)."""
    best = blas.packed_isa()
    return [isa for isa in (1, 2) if isa <= best]


@pytest.fixture(params=[1, 2], ids=["avx2", "avx512"])
def packed_kernel(request):
    if request.param not in packed_kernels():
        pytest.skip("this CPU has no such kernel")
    assert blas.set_packed_isa(request.param) == request.param
    yield request.param
    blas.set_packed_isa(-1)


@pytest.mark.parametrize("transposed", TRANS, ids=["W", "W^T"])
@pytest.mark.parametrize("beta", [0, 1])
@pytest.mark.parametrize("M, N, K", PACKED_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_gemm(packed_kernel, dtype, M, N, K, beta, transposed):
    """C = A W + beta C through pack + packed_gemm, with A and C row slices of
    wider arrays (lda > K, ldc > N); the padding columns stay untouched."""
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    A_wide = rand(rng, (M, K + 3), dtype)
    W = rand(rng, (K, N), dtype)
    C_wide = rand(rng, (M, N + 5), dtype)
    before = C_wide.copy()
    A, C = A_wide[:, :K], C_wide[:, :N]
    spec("py_packed_gemm", dtype)(A, stored(W, transposed), beta, C, transposed)
    A64, W64, C64 = (x.astype(np.float64) for x in (A, W, before[:, :N]))
    assert_within(C, A64 @ W64 + beta * C64, np.abs(A64) @ np.abs(W64) + beta * np.abs(C64),
                  dtype)
    assert np.array_equal(C_wide[:, N:], before[:, N:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_gemm_beta_zero_does_not_read_C(packed_kernel, dtype):
    rng = np.random.default_rng(3)
    A, W = rand(rng, (9, 40), dtype), rand(rng, (40, 70), dtype)
    C = np.full((9, 70), np.nan, dtype=dtype)
    spec("py_packed_gemm", dtype)(A, W, 0, C)
    assert np.all(np.isfinite(C))


def test_packed_mode_and_kernel_controls():
    """set_packed_mode / set_packed_isa validate their arguments, return the
    previous mode and the kernel in use, and only ever narrow the kernel."""
    best = blas.packed_isa()
    assert best in (0, 1, 2)
    assert blas.set_packed_mode("never") == "auto"
    assert blas.set_packed_mode("always") == "never"
    assert blas.set_packed_mode("auto") == "always"
    with pytest.raises(ValueError, match="mode must be one of"):
        blas.set_packed_mode("sometimes")
    with pytest.raises(ValueError, match="isa must be"):
        blas.set_packed_isa(3)
    assert blas.set_packed_isa(0) == 0
    assert blas.set_packed_isa(2) == best          # never wider than the CPU
    assert blas.set_packed_isa(-1) == best


def test_blas_thread_count_follows_threadpoolctl():
    """The thread query registered on import reports scipy's BLAS threads,
    which is what decides between BLAS and the packed kernel."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if blas.blas_thread_count() is None:
        pytest.skip("scipy's BLAS reports no thread count")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert blas.blas_thread_count() == 1


def test_only_openblas_avx512_cores_are_taken_to_have_small_matrix_kernels():
    for name in ("SkylakeX", "COOPERLAKE", "sapphirerapids "):
        assert blas.has_small_kernels(name)
    for name in ("Haswell", "Zen", "Sandybridge", "Prescott", "neoversen1", ""):
        assert not blas.has_small_kernels(name)
    assert blas.has_small_kernels(None)                  # not OpenBLAS: unmeasured
    assert blas.blas_small_kernels() == blas.has_small_kernels(blas.BLAS_CORENAME)


def test_the_blas_core_is_the_one_threadpoolctl_reports():
    """crnn reads the core of the OpenBLAS that scipy's cython_blas links,
    which threadpoolctl reports as that library's ``architecture``."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS for threadpoolctl)
    infos = [i for i in pytest.importorskip("threadpoolctl").threadpool_info()
             if i["internal_api"] == "openblas" and "scipy.libs" in i["filepath"]]
    if not infos or blas.BLAS_CORENAME is None:
        pytest.skip("scipy's BLAS is not a bundled OpenBLAS")
    assert blas.BLAS_CORENAME.lower() == infos[0]["architecture"].lower()


def test_use_packed_decides_by_size_threads_and_type():
    """In the default mode the packed kernel runs the products above
    SMALL_PRODUCT (10^6 multiply-adds), and the smaller ones too when
    scipy's BLAS has no small-matrix kernels (it would repack W on every
    call), when scipy's BLAS has one thread, in float64 only if W takes at
    most 4 MiB, and none when BLAS has more threads; "never" and "always"
    override them all."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if blas.packed_isa() == 0 or blas.blas_thread_count() is None:
        pytest.skip("no packed kernel or no BLAS thread count here")
    large, small = (64, 512, 2048), (32, 32, 128)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert blas.py_use_packed(*large)
        for dtype in (np.float32, np.float64):
            for shape in (small, (1, 8, 8)):
                assert blas.py_use_packed(*shape, dtype) == (not blas.blas_small_kernels())
        assert not blas.py_use_packed(*large, np.float64)         # W: 8 MiB
        assert blas.py_use_packed(64, 256, 1024, np.float64)      # W: 2 MiB
        assert blas.set_packed_mode("never") == "auto"
        assert not blas.py_use_packed(*large)
        blas.set_packed_mode("always")
        assert blas.py_use_packed(*small) and blas.py_use_packed(*small, np.float64)
        blas.set_packed_mode("auto")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        if blas.blas_thread_count() > 1:
            assert not blas.py_use_packed(*large)
