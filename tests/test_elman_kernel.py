"""Tests of the Elman kernels ``crnn.kernels.elman.forward`` / ``backward``.

The kernels are compared with a hand-computed worked example, with the
independent NumPy reference of ``tests/reference.py`` and with central
finite differences of a scalar loss.

Tolerances (all stated here):

* forward and backward against the reference: ``rtol = atol = 1e-12`` in
  float64, ``rtol = atol = 1e-5`` in float32 (the reference is evaluated in
  float64 on the same float32 inputs);
* worked example: ``1e-12`` absolute against ``math.tanh`` arithmetic;
* finite differences (float64, 4-point central stencil, step ``1e-4``):
  ``max|analytic - numeric| / max|numeric| <= 1e-8`` for every input.
"""
import math

import numpy as np
import pytest

from crnn.kernels import elman

try:  # tests/ on sys.path (rootdir-relative, no __init__.py) ...
    from reference import ACTIVATIONS, elman_backward_ref, elman_forward_ref
except ImportError:  # ... or tests/ imported as a package
    from tests.reference import ACTIVATIONS, elman_backward_ref, elman_forward_ref

#: Tolerances against the reference, per dtype: (rtol, atol).
TOL_FLOAT64 = (1e-12, 1e-12)
TOL_FLOAT32 = (1e-5, 1e-5)
TOL = {np.float64: TOL_FLOAT64, np.float32: TOL_FLOAT32}
#: Absolute tolerance of the worked example.
WORKED_EXAMPLE_ATOL = 1e-12
#: Finite differences: step, and bound on the max-norm relative error.
FD_STEP = 1e-4
FD_RTOL = 1e-8
#: ReLU finite differences need every pre-activation at least this far from 0.
RELU_MARGIN = 1e-3

#: Activation codes of ``crnn.kernels.activations.Activation`` (the cpdef
#: enum of activations.pxd): IDENTITY=0, TANH=1, SIGMOID=2, RELU=3. Written
#: out so that the kernel tests need only the kernels;
#: test_activation_codes_match_the_enum checks them against the enum.
CODES = {"identity": 0, "tanh": 1, "sigmoid": 2, "relu": 3}
assert tuple(CODES) == ACTIVATIONS

DTYPES = [np.float32, np.float64]

#: (T, B, I, H)
SHAPES = [
    (1, 1, 1, 1),
    (1, 3, 2, 4),    # T = 1
    (6, 1, 3, 2),    # B = 1
    (5, 4, 1, 3),    # I = 1
    (4, 3, 5, 1),    # H = 1
    (25, 7, 5, 11),
]


def make_problem(rng, T, B, I, H, dtype=np.float64):
    """Random, well-scaled inputs of the layer (all C-contiguous)."""
    def r(*shape, scale=1.0):
        return np.ascontiguousarray((scale * rng.standard_normal(shape)).astype(dtype))
    return {
        "X": r(T, B, I),
        "W_ih": r(H, I, scale=1 / math.sqrt(I)),
        # Spectral radius about 0.6: no blow-up over 25 steps, even for
        # the identity activation.
        "W_hh": r(H, H, scale=0.6 / math.sqrt(H)),
        "b": np.ascontiguousarray(rng.uniform(0.1, 0.5, H)
                                  * rng.choice([-1.0, 1.0], H)).astype(dtype),
        "h0": r(B, H, scale=0.5),
    }


def run_forward(p, activation):
    T, B, _ = p["X"].shape
    H = p["W_hh"].shape[0]
    # NaN-filled: the kernel must write every entry (its GEMMs use beta = 0).
    H_all = np.full((T + 1, B, H), np.nan, dtype=p["X"].dtype)
    elman.forward(p["X"], p["W_ih"], p["W_hh"], p["b"], p["h0"], H_all,
                  CODES[activation])
    return H_all


def as64(p):
    return {k: v.astype(np.float64) for k, v in p.items()}


def assert_close(actual, expected, dtype, what=""):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected,
                               rtol=rtol, atol=atol, err_msg=what)


# --- worked example ---------------------------------------------------------------

def test_worked_example_of_the_seeds():
    W_ih = np.array([[0.5, 0.2], [0.3, 0.8]])   # the seeds' W_h (input weights)
    W_hh = np.array([[0.1, 0.4], [0.6, 0.7]])   # the seeds' U_h (recurrent)
    b = np.array([0.1, 0.2])
    X = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # x_1 = [1, 0], x_2 = [0, 1]
    h0 = np.zeros((1, 2))
    H_all = np.full((3, 1, 2), np.nan)
    elman.forward(X, W_ih, W_hh, b, h0, H_all, CODES["tanh"])

    # h_1 = tanh(W_ih x_1 + W_hh h_0 + b) = tanh([0.5 + 0.1, 0.3 + 0.2])
    h1 = [math.tanh(0.6), math.tanh(0.5)]
    # h_2 = tanh(W_ih x_2 + W_hh h_1 + b), every product written out.
    h2 = [
        math.tanh(0.2 + (0.1 * h1[0] + 0.4 * h1[1]) + 0.1),
        math.tanh(0.8 + (0.6 * h1[0] + 0.7 * h1[1]) + 0.2),
    ]
    np.testing.assert_array_equal(H_all[0], h0)
    np.testing.assert_allclose(H_all[1, 0], h1, rtol=0, atol=WORKED_EXAMPLE_ATOL)
    np.testing.assert_allclose(H_all[2, 0], h2, rtol=0, atol=WORKED_EXAMPLE_ATOL)

    # h_1 as the seed text states it, to its 3 decimals.
    np.testing.assert_allclose(H_all[1, 0], [0.537, 0.462], rtol=0, atol=1e-3)
    # The seed text's intermediate for h_2 (0.1854, 0.7552 -> h_2 = 0.515,
    # 0.942) has an arithmetic slip. The recurrent term is
    #   W_hh h_1 = [0.1*0.53705 + 0.4*0.46212, 0.6*0.53705 + 0.7*0.46212]
    #            = [0.23855, 0.64571]
    # ([0.2385, 0.6456] when h_1 is first rounded to 4 decimals), so
    #   a_2 = W_ih x_2 + W_hh h_1 + b = [0.2 + 0.23855 + 0.1, 0.8 + 0.64571 + 0.2]
    #       = [0.53855, 1.64571]
    # and h_2 = tanh(a_2) = [0.4919, 0.9283]. Assert the corrected values.
    np.testing.assert_allclose(W_hh @ H_all[1, 0], [0.23855, 0.64571], rtol=0,
                               atol=1e-5)
    np.testing.assert_allclose(H_all[2, 0], [0.4919, 0.9283], rtol=0, atol=1e-4)
    assert abs(H_all[2, 0, 0] - 0.515) > 1e-2 and abs(H_all[2, 0, 1] - 0.942) > 1e-2


# --- forward against the reference ----------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%d-B%d-I%d-H%d" % s)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_reference(dtype, activation, shape):
    rng = np.random.default_rng([*shape, CODES[activation]])
    p = make_problem(rng, *shape, dtype=dtype)
    inputs = {k: v.copy() for k, v in p.items()}
    H_all = run_forward(p, activation)
    assert H_all.dtype == dtype
    expected = elman_forward_ref(**as64(p), activation=activation)
    np.testing.assert_array_equal(H_all[0], p["h0"])
    assert_close(H_all, expected, dtype)
    for k in p:  # inputs are left alone
        np.testing.assert_array_equal(p[k], inputs[k], err_msg=k)


def test_reference_forward_is_not_trivially_equal():
    # Guard against a test that cannot fail: a bias or h0 mistake in the
    # kernel would show up far above the tolerance.
    rng = np.random.default_rng(0)
    p = make_problem(rng, 3, 2, 2, 3)
    H_all = run_forward(p, "tanh")
    q = dict(p, b=np.zeros_like(p["b"]))
    assert np.abs(H_all - elman_forward_ref(**q, activation="tanh")).max() > 1e-3
    q = dict(p, h0=np.zeros_like(p["h0"]))
    assert np.abs(H_all[1:] - elman_forward_ref(**q, activation="tanh")[1:]).max() > 1e-3


# --- backward against the reference ---------------------------------------------

def run_backward(p, H_all, dH, activation, prefill=None, with_dX=True):
    """Call the kernel; returns a dict like elman_backward_ref's."""
    T, B, I = p["X"].shape
    H = p["W_hh"].shape[0]
    dt = p["X"].dtype
    prefill = prefill or {}
    dA = dH.copy()
    out = {
        "dh0": np.full((B, H), np.nan, dt),       # overwritten
        "dX": np.full((T, B, I), np.nan, dt) if with_dX else None,  # overwritten
        "dW_ih": prefill.get("dW_ih", np.zeros((H, I), dt)).copy(),   # += into
        "dW_hh": prefill.get("dW_hh", np.zeros((H, H), dt)).copy(),
        "db": prefill.get("db", np.zeros(H, dt)).copy(),
    }
    elman.backward(p["X"], p["W_ih"], p["W_hh"], H_all, dA, out["dh0"],
                   out["dX"], out["dW_ih"], out["dW_hh"], out["db"],
                   CODES[activation])
    out["dA"] = dA
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%d-B%d-I%d-H%d" % s)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_reference(dtype, activation, shape):
    T, B, I, H = shape
    rng = np.random.default_rng([*shape, CODES[activation], 1])
    p = make_problem(rng, *shape, dtype=dtype)
    H_all = run_forward(p, activation)
    dH = rng.standard_normal((T, B, H)).astype(dtype)
    # Known, non-zero initial contents: the weight gradients are accumulated.
    prefill = {"dW_ih": rng.standard_normal((H, I)).astype(dtype),
               "dW_hh": rng.standard_normal((H, H)).astype(dtype),
               "db": rng.standard_normal(H).astype(dtype)}
    H_all_before = H_all.copy()

    got = run_backward(p, H_all, dH, activation, prefill)
    ref = elman_backward_ref(**{k: v for k, v in as64(p).items() if k != "h0"},
                             H_all=H_all.astype(np.float64),
                             dH=dH.astype(np.float64), activation=activation)

    for k in ("dW_ih", "dW_hh", "db"):
        assert got[k].dtype == dtype
        assert_close(got[k], prefill[k].astype(np.float64) + ref[k], dtype, k)
    for k in ("dh0", "dX", "dA"):   # dA: dH is overwritten with dE/da_t
        assert got[k].dtype == dtype
        assert_close(got[k], ref[k], dtype, k)
    np.testing.assert_array_equal(H_all, H_all_before)

    # dX = None: the input gradient is skipped, nothing else changes.
    got_no_dX = run_backward(p, H_all, dH, activation, prefill, with_dX=False)
    for k in ("dW_ih", "dW_hh", "db", "dh0", "dA"):
        np.testing.assert_array_equal(got_no_dX[k], got[k], err_msg=k)


def test_backward_accumulates_twice():
    # Two identical calls into the same buffers give twice the gradient.
    rng = np.random.default_rng(5)
    p = make_problem(rng, 3, 2, 2, 3)
    H_all = run_forward(p, "sigmoid")
    dH = rng.standard_normal((3, 2, 3))
    once = run_backward(p, H_all, dH, "sigmoid")
    twice = run_backward(p, H_all, dH, "sigmoid", prefill=once)
    for k in ("dW_ih", "dW_hh", "db"):
        np.testing.assert_allclose(twice[k], 2 * once[k], rtol=1e-15, atol=0,
                                   err_msg=k)


# --- finite differences -----------------------------------------------------------

def _relu_safe_problem(shape, seed):
    """A problem whose pre-activations all stay RELU_MARGIN away from 0."""
    for attempt in range(200):
        rng = np.random.default_rng([*shape, seed, attempt])
        p = make_problem(rng, *shape)
        H_ref = elman_forward_ref(**p, activation="relu")
        pre = p["X"] @ p["W_ih"].T + H_ref[:-1] @ p["W_hh"].T + p["b"]
        if np.abs(pre).min() >= RELU_MARGIN and (pre > 0).any():
            return rng, p
    raise AssertionError("no ReLU-safe problem found")


def _numeric_gradient(loss, arr):
    """4-point central differences of loss() w.r.t. every entry of arr."""
    g = np.empty_like(arr)
    flat, gflat = arr.reshape(-1), g.reshape(-1)
    h = FD_STEP
    for k in range(flat.size):
        v = flat[k]
        f = []
        for s in (2, 1, -1, -2):
            flat[k] = v + s * h
            f.append(loss())
        flat[k] = v
        gflat[k] = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * h)
    return g


FD_SHAPES = [(1, 1, 1, 1), (1, 3, 2, 3), (4, 1, 2, 3), (3, 2, 3, 4)]


@pytest.mark.parametrize("shape", FD_SHAPES, ids=lambda s: "T%d-B%d-I%d-H%d" % s)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_finite_differences(activation, shape):
    T, B, I, H = shape
    if activation == "relu":
        rng, p = _relu_safe_problem(shape, 9)
    else:
        rng = np.random.default_rng([*shape, CODES[activation], 9])
        p = make_problem(rng, *shape)
    R = rng.standard_normal((T, B, H))
    r0 = rng.standard_normal((B, H))
    base_H_all = run_forward(p, activation)

    def loss():
        H_all = run_forward(p, activation)
        if activation == "relu":
            # No perturbation may move a unit across the kink.
            np.testing.assert_array_equal(H_all[1:] > 0, base_H_all[1:] > 0)
        return float(np.sum(R * H_all[1:]) + np.sum(r0 * H_all[0]))

    got = run_backward(p, base_H_all, R, activation)
    analytic = {
        "W_ih": got["dW_ih"], "W_hh": got["dW_hh"], "b": got["db"],
        "h0": got["dh0"] + r0,   # dh0 is the part through the recurrence
        "X": got["dX"],
    }
    for name in ("W_ih", "W_hh", "b", "h0", "X"):
        numeric = _numeric_gradient(loss, p[name])
        scale = np.abs(numeric).max()
        assert scale > 0, name
        err = np.abs(analytic[name] - numeric).max() / scale
        assert err <= FD_RTOL, f"{name}: relative error {err:.3e}"


# --- argument checking ------------------------------------------------------------

T0, B0, I0, H0 = 3, 2, 4, 5


def _forward_args(dtype=np.float64, **changes):
    p = make_problem(np.random.default_rng(1), T0, B0, I0, H0, dtype=dtype)
    args = dict(p, H_all=np.zeros((T0 + 1, B0, H0), dtype), activation=1)
    args.update(changes)
    return args


def _call_forward(a):
    elman.forward(a["X"], a["W_ih"], a["W_hh"], a["b"], a["h0"], a["H_all"],
                  a["activation"])


@pytest.mark.parametrize("change, match", [
    ({"W_ih": np.zeros((H0, I0 + 1))}, "W_ih must be"),
    ({"W_ih": np.zeros((H0 + 1, I0))}, "W_ih must be"),
    ({"W_hh": np.zeros((H0, H0 + 1))}, "W_hh must be"),
    ({"b": np.zeros(H0 + 1)}, "b \\(H,\\)"),
    ({"h0": np.zeros((B0 + 1, H0))}, "h0 must be"),
    ({"h0": np.zeros((B0, H0 - 1))}, "h0 must be"),
    ({"H_all": np.zeros((T0, B0, H0))}, "H_all must be"),
    ({"H_all": np.zeros((T0 + 2, B0, H0))}, "H_all must be"),
    ({"H_all": np.zeros((T0 + 1, B0 + 1, H0))}, "H_all must be"),
    ({"X": np.zeros((0, B0, I0))}, "empty dimension"),
    ({"activation": 4}, "unknown activation"),
    ({"activation": -1}, "unknown activation"),
])
def test_forward_rejects_bad_shapes(change, match):
    a = _forward_args(**change)
    with pytest.raises(ValueError, match=match):
        _call_forward(a)


def _backward_args(dtype=np.float64, **changes):
    a = _forward_args(dtype)
    args = {
        "X": a["X"], "W_ih": a["W_ih"], "W_hh": a["W_hh"],
        "H_all": np.zeros((T0 + 1, B0, H0), dtype),
        "dH": np.zeros((T0, B0, H0), dtype), "dh0": np.zeros((B0, H0), dtype),
        "dX": np.zeros((T0, B0, I0), dtype), "dW_ih": np.zeros((H0, I0), dtype),
        "dW_hh": np.zeros((H0, H0), dtype), "db": np.zeros(H0, dtype),
        "activation": 1,
    }
    args.update(changes)
    return args


def _call_backward(a):
    elman.backward(a["X"], a["W_ih"], a["W_hh"], a["H_all"], a["dH"], a["dh0"],
                   a["dX"], a["dW_ih"], a["dW_hh"], a["db"], a["activation"])


@pytest.mark.parametrize("change, match", [
    ({"W_ih": np.zeros((H0, I0 - 1))}, "W_ih must be"),
    ({"W_hh": np.zeros((H0, H0 - 1))}, "W_hh must be"),
    ({"H_all": np.zeros((T0, B0, H0))}, "H_all must be"),
    ({"H_all": np.zeros((T0 + 1, B0, H0 + 1))}, "H_all must be"),
    ({"dH": np.zeros((T0 + 1, B0, H0))}, "dH must be"),
    ({"dH": np.zeros((T0, B0, H0 - 1))}, "dH must be"),
    ({"dh0": np.zeros((B0 + 1, H0))}, "dh0 must be"),
    ({"dX": np.zeros((T0, B0, I0 + 1))}, "dX must be"),
    ({"dX": np.zeros((T0 - 1, B0, I0))}, "dX must be"),
    ({"dW_ih": np.zeros((H0, I0 + 1))}, "dW_ih must be"),
    ({"dW_hh": np.zeros((H0 + 1, H0))}, "dW_hh must be"),
    ({"db": np.zeros(H0 - 1)}, "db must be"),
    ({"X": np.zeros((T0, 0, I0))}, "empty dimension"),
    ({"activation": 4}, "unknown activation"),
])
def test_backward_rejects_bad_shapes(change, match):
    a = _backward_args(**change)
    before = {k: v.copy() for k, v in a.items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match=match):
        _call_backward(a)
    for k, v in before.items():   # nothing was written
        np.testing.assert_array_equal(a[k], v, err_msg=k)


# Mixed float32/float64: the fused signature is picked from the first array
# (X) and the other buffers then fail Cython's buffer dtype check, which
# raises ValueError (not TypeError). A dtype that matches no specialisation
# at all raises TypeError.

@pytest.mark.parametrize("name", ["X", "W_ih", "W_hh", "b", "h0", "H_all"])
def test_forward_mixed_dtypes(name):
    a = _forward_args()
    a[name] = a[name].astype(np.float32)
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        _call_forward(a)


@pytest.mark.parametrize("name", ["X", "W_hh", "H_all", "dH", "dh0", "dX",
                                  "dW_ih", "dW_hh", "db"])
def test_backward_mixed_dtypes(name):
    a = _backward_args(np.float32)
    a[name] = a[name].astype(np.float64)
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        _call_backward(a)


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128])
def test_unsupported_dtype(dtype):
    a = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v)
         for k, v in _forward_args().items()}
    with pytest.raises(TypeError, match="No matching signature"):
        _call_forward(a)
    a = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v)
         for k, v in _backward_args().items()}
    with pytest.raises(TypeError, match="No matching signature"):
        _call_backward(a)


def test_activation_codes_match_the_enum():
    activations = pytest.importorskip("crnn.kernels.activations")
    Activation = activations.Activation
    assert {n: int(getattr(Activation, n.upper())) for n in CODES} == CODES
