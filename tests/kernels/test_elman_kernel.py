"""Tests of the Elman kernels ``crnn.kernels.elman.forward`` / ``backward``.

The kernels take packed variable-length batches (``recurrence.pxd``): ``X``
(N, I) with ``batch_sizes`` (T,), sequences sorted longest first, row ``j``
of every step being sequence ``j``; ``reverse=True`` runs each sequence from
its own last step to its first. They are compared with hand-computed worked
examples, with the independent per-sequence NumPy reference of
``tests/reference.py`` (and, for equal lengths, with its original time-major
reference) and with central finite differences of the scalar loss
``sum(R * Hs) + sum(r * h_n)``.

Tolerances (all stated here):

* forward and backward against the reference: ``rtol = atol = 1e-12`` in
  float64, ``rtol = atol = 1e-5`` in float32 (the reference is evaluated in
  float64 on the same float32 inputs);
* worked examples: ``1e-12`` absolute against ``math.tanh`` arithmetic or
  exact hand-computed numbers;
* finite differences (float64, 4-point central stencil, step ``1e-4``):
  ``max|analytic - numeric| / max|numeric| <= 1e-8`` for every input
  (W_ih, W_hh, b, h0, X).
"""
import math

import numpy as np
import pytest

from crnn.kernels import elman

try:  # tests/ on sys.path (rootdir-relative, no __init__.py) ...
    from reference import (ACTIVATIONS, activation_derivative_ref, elman_backward_ref,
                           elman_forward_ref, elman_grads_ref, elman_preactivations_ref,
                           elman_ref, numeric_gradient, pack, unpack)
except ImportError:  # ... or tests/ imported as a package
    from tests.reference import (ACTIVATIONS, activation_derivative_ref,
                                 elman_backward_ref, elman_forward_ref, elman_grads_ref,
                                 elman_preactivations_ref, elman_ref, numeric_gradient,
                                 pack, unpack)

#: Tolerances against the reference, per dtype: (rtol, atol).
# Every test runs with each recurrent product (BLAS, and the packed kernels
# this CPU has): see conftest.py.
pytestmark = pytest.mark.usefixtures("recurrent_product")

TOL_FLOAT64 = (1e-12, 1e-12)
TOL_FLOAT32 = (1e-5, 1e-5)
TOL = {np.float64: TOL_FLOAT64, np.float32: TOL_FLOAT32}
#: Absolute tolerance of the worked examples.
WORKED_EXAMPLE_ATOL = 1e-12
#: Finite differences: step, and bound on the max-norm relative error.
FD_STEP = 1e-4
FD_RTOL = 1e-8
#: ReLU finite differences need every pre-activation at least this far from 0.
RELU_MARGIN = 1e-3

#: Activation codes of ``crnn.kernels.activations.Activation`` (the enum of
#: _activation_codes.pxd): IDENTITY=0, TANH=1, SIGMOID=2, RELU=3. Written
#: out so that the kernel tests need only the kernels;
#: test_activation_codes_match_the_enum checks them against the enum.
CODES = {"identity": 0, "tanh": 1, "sigmoid": 2, "relu": 3}
assert tuple(CODES) == ACTIVATIONS

DTYPES = [np.float32, np.float64]
DIRECTIONS = [False, True]

#: (lengths, I, H): sequence lengths, longest first, input and state sizes.
CASES = [
    ([1], 1, 1),                       # T = B = I = H = 1
    ([1, 1, 1], 2, 4),                 # T = 1
    ([6], 3, 2),                       # B = 1
    ([5, 5, 5, 5], 1, 3),              # I = 1, equal lengths
    ([4, 4, 4], 5, 1),                 # H = 1
    ([25] * 7, 5, 11),                 # long, equal lengths
    ([5, 5, 3, 1], 2, 3),              # ragged, with a length-1 sequence
    ([7, 2, 2], 3, 4),                 # ragged, one long sequence
    ([25, 20, 11, 11, 3, 2, 1], 5, 11),  # long and ragged
]


def case_id(case):
    lengths, I, H = case
    return "L%s-I%d-H%d" % (".".join(map(str, lengths)), I, H)


def make_problem(rng, lengths, I, H, dtype=np.float64):
    """Random, well-scaled inputs of the layer (all C-contiguous), packed."""
    def r(*shape, scale=1.0):
        return np.ascontiguousarray((scale * rng.standard_normal(shape)).astype(dtype))
    seqs = [r(L, I) for L in lengths]
    X, batch_sizes = pack(seqs)
    return {
        "seqs": seqs,
        "lengths": list(lengths),
        "X": X,
        "batch_sizes": batch_sizes,
        "W_ih": r(H, I, scale=1 / math.sqrt(I)),
        # Spectral radius about 0.6: no blow-up over 25 steps, even for
        # the identity activation.
        "W_hh": r(H, H, scale=0.6 / math.sqrt(H)),
        "b": np.ascontiguousarray(rng.uniform(0.1, 0.5, H)
                                  * rng.choice([-1.0, 1.0], H)).astype(dtype),
        # Non-zero initial states, one per sequence.
        "h0": r(len(lengths), H, scale=0.5),
    }


ARRAYS = ("X", "W_ih", "W_hh", "b", "h0")


def as64(p):
    """The reference's arguments, in float64."""
    return {"seqs": [s.astype(np.float64) for s in p["seqs"]],
            **{k: p[k].astype(np.float64) for k in ("W_ih", "W_hh", "b", "h0")}}


def run_forward(p, activation, reverse=False):
    N = p["X"].shape[0]
    B, H = p["h0"].shape
    dt = p["X"].dtype
    # NaN-filled: the kernel must write every entry.
    Hs = np.full((N, H), np.nan, dtype=dt)
    h_n = np.full((B, H), np.nan, dtype=dt)
    elman.forward(p["X"], p["batch_sizes"], p["W_ih"], p["W_hh"], p["b"], p["h0"],
                  Hs, h_n, reverse=reverse, activation=CODES[activation])
    return Hs, h_n


def assert_close(actual, expected, dtype, what=""):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected,
                               rtol=rtol, atol=atol, err_msg=what)


# --- worked examples --------------------------------------------------------------

def test_worked_example_of_docs_maths():
    W_ih = np.array([[0.5, 0.2], [0.3, 0.8]])   # W_x of docs/maths.md (input weights)
    W_hh = np.array([[0.1, 0.4], [0.6, 0.7]])   # W_s (recurrent)
    b = np.array([0.1, 0.2])
    X = np.array([[1.0, 0.0], [0.0, 1.0]])      # x_1 = [1, 0], x_2 = [0, 1]
    batch_sizes = np.array([1, 1], dtype=np.intp)   # one sequence of 2 steps
    h0 = np.zeros((1, 2))
    Hs = np.full((2, 2), np.nan)
    h_n = np.full((1, 2), np.nan)
    elman.forward(X, batch_sizes, W_ih, W_hh, b, h0, Hs, h_n,
                  activation=CODES["tanh"])

    # h_1 = tanh(W_ih x_1 + W_hh h_0 + b) = tanh([0.5 + 0.1, 0.3 + 0.2])
    h1 = [math.tanh(0.6), math.tanh(0.5)]
    # h_2 = tanh(W_ih x_2 + W_hh h_1 + b), every product written out.
    h2 = [
        math.tanh(0.2 + (0.1 * h1[0] + 0.4 * h1[1]) + 0.1),
        math.tanh(0.8 + (0.6 * h1[0] + 0.7 * h1[1]) + 0.2),
    ]
    np.testing.assert_allclose(Hs[0], h1, rtol=0, atol=WORKED_EXAMPLE_ATOL)
    np.testing.assert_allclose(Hs[1], h2, rtol=0, atol=WORKED_EXAMPLE_ATOL)
    # The final state is h_2, bit for bit.
    np.testing.assert_array_equal(h_n[0], Hs[1])

    # h_1 as the seed text states it, to its 3 decimals.
    np.testing.assert_allclose(Hs[0], [0.537, 0.462], rtol=0, atol=1e-3)
    # The seed text's intermediate for h_2 (0.1854, 0.7552 -> h_2 = 0.515,
    # 0.942) has an arithmetic slip. The recurrent term is
    #   W_hh h_1 = [0.1*0.53705 + 0.4*0.46212, 0.6*0.53705 + 0.7*0.46212]
    #            = [0.23855, 0.64571]
    # ([0.2385, 0.6456] when h_1 is first rounded to 4 decimals), so
    #   a_2 = W_ih x_2 + W_hh h_1 + b = [0.2 + 0.23855 + 0.1, 0.8 + 0.64571 + 0.2]
    #       = [0.53855, 1.64571]
    # and h_2 = tanh(a_2) = [0.4919, 0.9283]. Assert the corrected values.
    np.testing.assert_allclose(W_hh @ Hs[0], [0.23855, 0.64571], rtol=0, atol=1e-5)
    np.testing.assert_allclose(Hs[1], [0.4919, 0.9283], rtol=0, atol=1e-4)
    assert abs(Hs[1, 0] - 0.515) > 1e-2 and abs(Hs[1, 1] - 0.942) > 1e-2

    # The same sequence in reverse: x_2 first, from h_0 = 0, then x_1.
    elman.forward(X, batch_sizes, W_ih, W_hh, b, h0, Hs, h_n, reverse=True,
                  activation=CODES["tanh"])
    # h'_2 = tanh(W_ih x_2 + b) = tanh([0.2 + 0.1, 0.8 + 0.2])
    g2 = [math.tanh(0.3), math.tanh(1.0)]
    # h'_1 = tanh(W_ih x_1 + W_hh h'_2 + b)
    g1 = [
        math.tanh(0.5 + (0.1 * g2[0] + 0.4 * g2[1]) + 0.1),
        math.tanh(0.3 + (0.6 * g2[0] + 0.7 * g2[1]) + 0.2),
    ]
    np.testing.assert_allclose(Hs[1], g2, rtol=0, atol=WORKED_EXAMPLE_ATOL)
    np.testing.assert_allclose(Hs[0], g1, rtol=0, atol=WORKED_EXAMPLE_ATOL)
    np.testing.assert_array_equal(h_n[0], Hs[0])   # after step 0


def test_worked_example_ragged_batch():
    # I = H = 1, identity activation: h_t = 2 x_t + 0.5 h_prev + 1.
    # Sequence A = [1, 2, 3] from h0 = 0, sequence B = [10] from h0 = 4.
    # Packed time-major: step 0 holds [A_0, B_0], steps 1 and 2 only A.
    W_ih, W_hh, b = np.array([[2.0]]), np.array([[0.5]]), np.array([1.0])
    h0 = np.array([[0.0], [4.0]])
    X = np.array([[1.0], [10.0], [2.0], [3.0]])
    batch_sizes = np.array([2, 1, 1], dtype=np.intp)
    Hs = np.full((4, 1), np.nan)
    h_n = np.full((2, 1), np.nan)
    elman.forward(X, batch_sizes, W_ih, W_hh, b, h0, Hs, h_n,
                  activation=CODES["identity"])
    # A: 2*1 + 0 + 1 = 3;  2*2 + 0.5*3 + 1 = 6.5;  2*3 + 0.5*6.5 + 1 = 10.25
    # B: 2*10 + 0.5*4 + 1 = 23
    np.testing.assert_allclose(Hs[:, 0], [3, 23, 6.5, 10.25], rtol=0,
                               atol=WORKED_EXAMPLE_ATOL)
    np.testing.assert_allclose(h_n[:, 0], [10.25, 23], rtol=0, atol=WORKED_EXAMPLE_ATOL)

    # Backward for E = sum(Hs) (R = 1, no final-state term): da_t = dE/dh_t.
    # A: da_2 = 1, da_1 = 1 + 0.5*1 = 1.5, da_0 = 1 + 0.5*1.5 = 1.75,
    #    dE/dh0_A = 0.5*1.75 = 0.875;  B: da_0 = 1, dE/dh0_B = 0.5.
    dHs, dh = np.ones((4, 1)), np.zeros((2, 1))
    dX = np.full((4, 1), np.nan)
    dW_ih, dW_hh, db = np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1)
    elman.backward(X, batch_sizes, W_ih, W_hh, h0, Hs, dHs, dh, dX, dW_ih, dW_hh,
                   db, activation=CODES["identity"])
    atol = WORKED_EXAMPLE_ATOL
    np.testing.assert_allclose(dHs[:, 0], [1.75, 1, 1.5, 1], rtol=0, atol=atol)
    np.testing.assert_allclose(dh[:, 0], [0.875, 0.5], rtol=0, atol=atol)
    # dW_ih = sum da x = 1.75*1 + 1.5*2 + 1*3 + 1*10 = 17.75
    np.testing.assert_allclose(dW_ih, [[17.75]], rtol=0, atol=atol)
    # dW_hh = sum da h_prev = 1.75*0 + 1.5*3 + 1*6.5 + 1*4 = 15
    np.testing.assert_allclose(dW_hh, [[15.0]], rtol=0, atol=atol)
    np.testing.assert_allclose(db, [5.25], rtol=0, atol=atol)
    np.testing.assert_allclose(dX[:, 0], [3.5, 2, 3, 2], rtol=0, atol=atol)

    # Reverse: A runs 3, 2, 1 from h0 = 0: 2*3 + 1 = 7;  2*2 + 0.5*7 + 1 = 8.5;
    # 2*1 + 0.5*8.5 + 1 = 7.25. B is unchanged (one step).
    elman.forward(X, batch_sizes, W_ih, W_hh, b, h0, Hs, h_n, reverse=True,
                  activation=CODES["identity"])
    np.testing.assert_allclose(Hs[:, 0], [7.25, 23, 8.5, 7], rtol=0, atol=atol)
    np.testing.assert_allclose(h_n[:, 0], [7.25, 23], rtol=0, atol=atol)


# --- forward against the reference ----------------------------------------------

@pytest.mark.parametrize("reverse", DIRECTIONS, ids=["forward", "reverse"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_reference(dtype, activation, case, reverse):
    rng = np.random.default_rng([len(case[0]), *case[0], *case[1:], CODES[activation]])
    p = make_problem(rng, *case, dtype=dtype)
    inputs = {k: p[k].copy() for k in ARRAYS}
    bs_before = p["batch_sizes"].copy()
    Hs, h_n = run_forward(p, activation, reverse)
    assert Hs.dtype == dtype and h_n.dtype == dtype
    hs_ref, h_n_ref = elman_ref(**as64(p), activation=activation, reverse=reverse)
    for j, (got, ref) in enumerate(zip(unpack(Hs, p["batch_sizes"], p["lengths"]),
                                       hs_ref)):
        assert_close(got, ref, dtype, f"Hs of sequence {j}")
    assert_close(h_n, h_n_ref, dtype, "h_n")
    for k in ARRAYS:  # inputs are left alone
        np.testing.assert_array_equal(p[k], inputs[k], err_msg=k)
    np.testing.assert_array_equal(p["batch_sizes"], bs_before)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_equal_lengths_match_time_major_reference(activation):
    # With B_t = B for every t the packed array is the time-major (T, B, .)
    # array reshaped; the original time-major reference applies unchanged.
    T, B, I, H = 6, 3, 2, 4
    rng = np.random.default_rng([6, 3, 2, 4, CODES[activation]])
    p = make_problem(rng, [T] * B, I, H)
    X_tm = np.stack(p["seqs"], axis=1)                   # (T, B, I)
    np.testing.assert_array_equal(p["X"], X_tm.reshape(T * B, I))
    Hs, h_n = run_forward(p, activation)
    H_all = elman_forward_ref(X_tm, p["W_ih"], p["W_hh"], p["b"], p["h0"], activation)
    assert_close(Hs.reshape(T, B, H), H_all[1:], np.float64, "Hs")
    assert_close(h_n, H_all[-1], np.float64, "h_n")

    dH = rng.standard_normal((T, B, H))
    dHs, dh = dH.reshape(T * B, H).copy(), np.zeros((B, H))
    dX = np.empty((T * B, I))
    dW = [np.zeros((H, I)), np.zeros((H, H)), np.zeros(H)]
    elman.backward(p["X"], p["batch_sizes"], p["W_ih"], p["W_hh"], p["h0"], Hs, dHs,
                   dh, dX, *dW, activation=CODES[activation])
    ref = elman_backward_ref(X_tm, p["W_ih"], p["W_hh"], p["b"], H_all, dH, activation)
    for name, got in (("dW_ih", dW[0]), ("dW_hh", dW[1]), ("db", dW[2]), ("dh0", dh),
                      ("dX", dX.reshape(T, B, I)), ("dA", dHs.reshape(T, B, H))):
        assert_close(got, ref[name], np.float64, name)


def test_reference_forward_is_not_trivially_equal():
    # Guard against a test that cannot fail: a bias, h0, direction or
    # packing mistake in the kernel would show up far above the tolerance.
    rng = np.random.default_rng(0)
    p = make_problem(rng, [5, 5, 3, 1], 2, 3)
    Hs, h_n = run_forward(p, "tanh")
    got = unpack(Hs, p["batch_sizes"], p["lengths"])
    a = as64(p)

    def distance(**changes):
        hs_ref, h_n_ref = elman_ref(**dict(a, **changes), activation="tanh")
        return max(max(np.abs(g - r).max() for g, r in zip(got, hs_ref)),
                   np.abs(h_n - h_n_ref).max())

    assert distance() <= 1e-12
    assert distance(b=np.zeros_like(a["b"])) > 1e-3
    assert distance(h0=np.zeros_like(a["h0"])) > 1e-3
    assert distance(h0=a["h0"][::-1].copy()) > 1e-3        # h0 row j -> sequence j
    assert distance(reverse=True) > 1e-3
    # h_n is the state at each sequence's own last step, not the last packed rows.
    assert np.abs(h_n[1:] - Hs[-1]).max() > 1e-3
    # Reverse: each sequence starts at its own last step, not at step T - 1.
    Hs_rev, h_n_rev = run_forward(p, "tanh", reverse=True)
    shifted = [np.zeros((5, 2)) for _ in range(4)]
    for j, s in enumerate(a["seqs"]):
        shifted[j][:len(s)] = s    # zero-padded to the longest: wrong for ragged
    hs_pad, _ = elman_ref(shifted, a["W_ih"], a["W_hh"], a["b"], a["h0"], "tanh",
                          reverse=True)
    assert np.abs(unpack(Hs_rev, p["batch_sizes"], p["lengths"])[3][0]
                  - hs_pad[3][0]).max() > 1e-3


# --- backward against the reference ---------------------------------------------

def make_loss_weights(rng, p, dtype=np.float64):
    """R (packed, (N, H)) and r ((B, H)): the loss sum(R * Hs) + sum(r * h_n)."""
    B, H = p["h0"].shape
    R = rng.standard_normal((p["X"].shape[0], H)).astype(dtype)
    r = rng.standard_normal((B, H)).astype(dtype)
    return R, r


def run_backward(p, Hs, R, r, activation, reverse=False, prefill=None, with_dX=True):
    """Call the kernel; returns a dict like elman_grads_ref's (packed dX, dA)."""
    N, I = p["X"].shape
    B, H = p["h0"].shape
    dt = p["X"].dtype
    prefill = prefill or {}
    dA = R.copy()         # in: dE/dh_t; out: dE/da_t
    dh = r.copy()         # in: dE/dh_n; out: dE/dh0
    out = {
        "dX": np.full((N, I), np.nan, dt) if with_dX else None,  # overwritten
        "dW_ih": prefill.get("dW_ih", np.zeros((H, I), dt)).copy(),   # += into
        "dW_hh": prefill.get("dW_hh", np.zeros((H, H), dt)).copy(),
        "db": prefill.get("db", np.zeros(H, dt)).copy(),
    }
    elman.backward(p["X"], p["batch_sizes"], p["W_ih"], p["W_hh"], p["h0"], Hs, dA, dh,
                   out["dX"], out["dW_ih"], out["dW_hh"], out["db"], reverse=reverse,
                   activation=CODES[activation])
    out["dA"] = dA
    out["dh0"] = dh
    return out


@pytest.mark.parametrize("reverse", DIRECTIONS, ids=["forward", "reverse"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_reference(dtype, activation, case, reverse):
    lengths, I, H = case
    rng = np.random.default_rng([len(lengths), *lengths, I, H, CODES[activation], 1])
    p = make_problem(rng, *case, dtype=dtype)
    Hs, _ = run_forward(p, activation, reverse)
    R, r = make_loss_weights(rng, p, dtype)
    # Known, non-zero initial contents: the weight gradients are accumulated.
    prefill = {"dW_ih": rng.standard_normal((H, I)).astype(dtype),
               "dW_hh": rng.standard_normal((H, H)).astype(dtype),
               "db": rng.standard_normal(H).astype(dtype)}
    Hs_before = Hs.copy()
    inputs = {k: p[k].copy() for k in ARRAYS}

    got = run_backward(p, Hs, R, r, activation, reverse, prefill)
    bs, L = p["batch_sizes"], p["lengths"]
    ref = elman_grads_ref(**as64(p), Rs=unpack(R.astype(np.float64), bs, L),
                          r=r.astype(np.float64), activation=activation,
                          reverse=reverse)

    for k in ("dW_ih", "dW_hh", "db"):
        assert got[k].dtype == dtype
        assert_close(got[k], prefill[k].astype(np.float64) + ref[k], dtype, k)
    assert got["dh0"].dtype == dtype
    assert_close(got["dh0"], ref["dh0"], dtype, "dh0")
    for k in ("dX", "dA"):   # dA: dHs is overwritten with dE/da_t
        assert got[k].dtype == dtype
        for j, (g, e) in enumerate(zip(unpack(got[k], bs, L), ref[k])):
            assert_close(g, e, dtype, f"{k} of sequence {j}")
    np.testing.assert_array_equal(Hs, Hs_before)
    for k in ARRAYS:
        np.testing.assert_array_equal(p[k], inputs[k], err_msg=k)

    # dX = None: the input gradient is skipped, nothing else changes.
    got_no_dX = run_backward(p, Hs, R, r, activation, reverse, prefill, with_dX=False)
    for k in ("dW_ih", "dW_hh", "db", "dh0", "dA"):
        np.testing.assert_array_equal(got_no_dX[k], got[k], err_msg=k)


#: 40 ragged sequences, I = 6, H = 40: the weight gradients are formed during
#: BPTT over blocks of at most 10^6 // (H (I + H)) = 543 rows, out of N = 806
#: packed rows (float64: the float32 tolerance of the small cases does not
#: cover sums over 806 rows).
BLOCK_CASE = ([30] * 20 + [25, 22, 20, 20, 18, 16, 15, 12, 10, 9, 8, 7, 6, 5, 4, 3, 2,
              2, 1, 1], 6, 40)


@pytest.mark.parametrize("reverse", DIRECTIONS, ids=["forward", "reverse"])
def test_backward_in_weight_gradient_blocks(reverse):
    lengths, I, H = BLOCK_CASE
    rows_per_block = 10 ** 6 // (H * (I + H))
    assert len(lengths) <= rows_per_block < sum(lengths)
    test_backward_matches_reference(np.float64, "tanh", BLOCK_CASE, reverse)


def test_backward_accumulates_twice():
    # Two identical calls into the same buffers give twice the gradient.
    rng = np.random.default_rng(5)
    p = make_problem(rng, [3, 2, 2], 2, 3)
    Hs, _ = run_forward(p, "sigmoid")
    R, r = make_loss_weights(rng, p)
    once = run_backward(p, Hs, R, r, "sigmoid")
    twice = run_backward(p, Hs, R, r, "sigmoid", prefill=once)
    for k in ("dW_ih", "dW_hh", "db"):
        np.testing.assert_allclose(twice[k], 2 * once[k], rtol=1e-15, atol=0,
                                   err_msg=k)
    for k in ("dX", "dA", "dh0"):   # overwritten, not accumulated
        np.testing.assert_array_equal(twice[k], once[k], err_msg=k)


def test_backward_final_state_gradient_reaches_only_its_sequence():
    # dE/dh_n of sequence j alone: every other sequence gets zero gradients.
    rng = np.random.default_rng(6)
    p = make_problem(rng, [5, 3, 1], 2, 3)
    for reverse in DIRECTIONS:
        Hs, _ = run_forward(p, "tanh", reverse)
        for j in range(3):
            r = np.zeros((3, 3))
            r[j] = rng.standard_normal(3)
            got = run_backward(p, Hs, np.zeros_like(Hs), r, "tanh", reverse)
            dX = unpack(got["dX"], p["batch_sizes"], p["lengths"])
            for k in range(3):
                nonzero = np.abs(dX[k]).max() > 0 and np.abs(got["dh0"][k]).max() > 0
                assert nonzero == (k == j), (reverse, j, k)


# --- finite differences -----------------------------------------------------------

def _relu_safe_problem(case, seed, reverse):
    """A problem whose pre-activations all stay RELU_MARGIN away from 0."""
    for attempt in range(200):
        rng = np.random.default_rng([len(case[0]), *case[0], *case[1:], seed, attempt])
        p = make_problem(rng, *case)
        pre = np.concatenate(elman_preactivations_ref(**as64(p), activation="relu",
                                                      reverse=reverse))
        if np.abs(pre).min() >= RELU_MARGIN and (pre > 0).any():
            return rng, p
    raise AssertionError("no ReLU-safe problem found")


FD_CASES = [([1], 1, 1), ([1, 1, 1], 2, 3), ([4], 2, 3), ([3, 3], 3, 2),
            ([4, 2, 1], 2, 3)]


@pytest.mark.parametrize("reverse", DIRECTIONS, ids=["forward", "reverse"])
@pytest.mark.parametrize("case", FD_CASES, ids=case_id)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_finite_differences(activation, case, reverse):
    if activation == "relu":
        rng, p = _relu_safe_problem(case, 9, reverse)
    else:
        rng = np.random.default_rng([len(case[0]), *case[0], *case[1:],
                                     CODES[activation], 9])
        p = make_problem(rng, *case)
    R, r = make_loss_weights(rng, p)
    base_Hs, _ = run_forward(p, activation, reverse)

    def loss():
        Hs, h_n = run_forward(p, activation, reverse)
        if activation == "relu":
            # No perturbation may move a unit across the kink.
            np.testing.assert_array_equal(Hs > 0, base_Hs > 0)
        return float(np.sum(R * Hs) + np.sum(r * h_n))

    got = run_backward(p, base_Hs, R, r, activation, reverse)
    analytic = {"W_ih": got["dW_ih"], "W_hh": got["dW_hh"], "b": got["db"],
                "h0": got["dh0"], "X": got["dX"]}
    for name in ("W_ih", "W_hh", "b", "h0", "X"):
        numeric = numeric_gradient(loss, p[name], FD_STEP)
        scale = np.abs(numeric).max()
        assert scale > 0, name
        err = np.abs(analytic[name] - numeric).max() / scale
        assert err <= FD_RTOL, f"{name}: relative error {err:.3e}"


# --- argument checking ------------------------------------------------------------

LENGTHS0, I0, H0 = [3, 2], 4, 5      # batch_sizes [2, 2, 1]
N0, B0 = sum(LENGTHS0), len(LENGTHS0)


def _forward_args(dtype=np.float64, **changes):
    p = make_problem(np.random.default_rng(1), LENGTHS0, I0, H0, dtype=dtype)
    args = {k: p[k] for k in ("X", "batch_sizes", "W_ih", "W_hh", "b", "h0")}
    args.update(Hs=np.zeros((N0, H0), dtype), h_n=np.zeros((B0, H0), dtype),
                activation=1)
    args.update(changes)
    return args


def _call_forward(a):
    elman.forward(a["X"], a["batch_sizes"], a["W_ih"], a["W_hh"], a["b"], a["h0"],
                  a["Hs"], a["h_n"], activation=a["activation"])


def _intp(*values):
    return np.array(values, dtype=np.intp)


#: batch_sizes that do not describe N0 = 5 packed rows of B0 = 2 sequences.
BAD_BATCH_SIZES = [
    pytest.param(_intp(2, 1, 2), "non-increasing", id="increasing"),
    pytest.param(_intp(2, 0, 2, 1), "positive", id="zero"),
    pytest.param(_intp(2, 2, 1, 0), "positive", id="trailing-zero"),
    pytest.param(_intp(2, 2, 2, -1), "positive", id="negative"),
    pytest.param(_intp(2, 2, 2), "sums to 6", id="sum-too-large"),
    pytest.param(_intp(2, 2), "sums to 4", id="sum-too-small"),
    pytest.param(_intp(1, 1, 1, 1, 1), "must equal the number of sequences",
                 id="first-below-B"),
    pytest.param(_intp(3, 1, 1), "must equal the number of sequences",
                 id="first-above-B"),
    pytest.param(_intp(), "empty", id="empty"),
    pytest.param(np.array([2, 2, 1], np.int32), "Buffer dtype mismatch", id="int32"),
]


@pytest.mark.parametrize("change, match", [
    ({"W_ih": np.zeros((H0, I0 + 1))}, "W_ih must have shape"),
    ({"W_ih": np.zeros((H0 + 1, I0))}, "W_ih must have shape"),
    ({"W_hh": np.zeros((H0 + 1, H0))}, "W_hh must have shape"),
    # H is read from W_hh.shape[1]: the mismatch is reported on W_ih.
    ({"W_hh": np.zeros((H0, H0 + 1))}, "(W_ih|W_hh) must have shape"),
    ({"b": np.zeros(H0 + 1)}, "b must have shape"),
    ({"h0": np.zeros((B0, H0 - 1))}, "h0 must have shape"),
    ({"h0": np.zeros((B0 + 1, H0))}, "number of sequences"),
    ({"Hs": np.zeros((N0 + 1, H0))}, "Hs must have shape"),
    ({"Hs": np.zeros((N0, H0 + 1))}, "Hs must have shape"),
    ({"h_n": np.zeros((B0 + 1, H0))}, "h_n must have shape"),
    ({"h_n": np.zeros((B0, H0 - 1))}, "h_n must have shape"),
    ({"X": np.zeros((N0 + 1, I0))}, "sums to 5"),
    ({"X": np.zeros((0, I0))}, "empty dimension"),
    ({"h0": np.zeros((0, H0))}, "empty dimension"),
    ({"activation": 4}, "unknown activation"),
    ({"activation": -1}, "unknown activation"),
])
def test_forward_rejects_bad_shapes(change, match):
    a = _forward_args(**change)
    before = {k: v.copy() for k, v in a.items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match=match):
        _call_forward(a)
    for k, v in before.items():   # nothing was written
        np.testing.assert_array_equal(a[k], v, err_msg=k)


@pytest.mark.parametrize("batch_sizes, match", BAD_BATCH_SIZES)
def test_forward_rejects_bad_batch_sizes(batch_sizes, match):
    a = _forward_args(batch_sizes=batch_sizes)
    a["Hs"][:] = 7.0
    a["h_n"][:] = 7.0
    with pytest.raises(ValueError, match=match):
        _call_forward(a)
    assert (a["Hs"] == 7.0).all() and (a["h_n"] == 7.0).all()


def _backward_args(dtype=np.float64, **changes):
    a = _forward_args(dtype)
    args = {
        "X": a["X"], "batch_sizes": a["batch_sizes"], "W_ih": a["W_ih"],
        "W_hh": a["W_hh"], "h0": a["h0"],
        "Hs": np.zeros((N0, H0), dtype), "dHs": np.zeros((N0, H0), dtype),
        "dh": np.zeros((B0, H0), dtype), "dX": np.zeros((N0, I0), dtype),
        "dW_ih": np.zeros((H0, I0), dtype), "dW_hh": np.zeros((H0, H0), dtype),
        "db": np.zeros(H0, dtype), "activation": 1,
    }
    args.update(changes)
    return args


def _call_backward(a):
    elman.backward(a["X"], a["batch_sizes"], a["W_ih"], a["W_hh"], a["h0"], a["Hs"],
                   a["dHs"], a["dh"], a["dX"], a["dW_ih"], a["dW_hh"], a["db"],
                   activation=a["activation"])


@pytest.mark.parametrize("change, match", [
    ({"W_ih": np.zeros((H0, I0 - 1))}, "W_ih must have shape"),
    ({"W_hh": np.zeros((H0 - 1, H0))}, "W_hh must have shape"),
    ({"h0": np.zeros((B0, H0 + 1))}, "h0 must have shape"),
    ({"h0": np.zeros((B0 - 1, H0))}, "number of sequences"),
    ({"Hs": np.zeros((N0 - 1, H0))}, "Hs must have shape"),
    ({"Hs": np.zeros((N0, H0 + 1))}, "Hs must have shape"),
    ({"dHs": np.zeros((N0 + 1, H0))}, "dHs must have shape"),
    ({"dHs": np.zeros((N0, H0 - 1))}, "dHs must have shape"),
    ({"dh": np.zeros((B0 + 1, H0))}, "dh must have shape"),
    ({"dh": np.zeros((B0, H0 - 1))}, "dh must have shape"),
    ({"dX": np.zeros((N0, I0 + 1))}, "dX must have shape"),
    ({"dX": np.zeros((N0 - 1, I0))}, "dX must have shape"),
    ({"dW_ih": np.zeros((H0, I0 + 1))}, "dW_ih must have shape"),
    ({"dW_hh": np.zeros((H0 + 1, H0))}, "dW_hh must have shape"),
    ({"db": np.zeros(H0 - 1)}, "db must have shape"),
    ({"X": np.zeros((N0 - 1, I0))}, "sums to 5"),
    ({"X": np.zeros((N0, 0))}, "empty dimension"),
    ({"activation": 4}, "unknown activation"),
])
def test_backward_rejects_bad_shapes(change, match):
    a = _backward_args(**change)
    before = {k: v.copy() for k, v in a.items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match=match):
        _call_backward(a)
    for k, v in before.items():   # nothing was written
        np.testing.assert_array_equal(a[k], v, err_msg=k)


@pytest.mark.parametrize("batch_sizes, match", BAD_BATCH_SIZES)
def test_backward_rejects_bad_batch_sizes(batch_sizes, match):
    a = _backward_args(batch_sizes=batch_sizes)
    for k in ("dHs", "dh", "dX", "dW_ih", "dW_hh", "db"):
        a[k][...] = 7.0
    with pytest.raises(ValueError, match=match):
        _call_backward(a)
    for k in ("dHs", "dh", "dX", "dW_ih", "dW_hh", "db"):   # nothing was written
        assert (a[k] == 7.0).all(), k


# Mixed float32/float64: the fused signature is picked from the first array
# (X) and the other buffers then fail Cython's buffer dtype check, which
# raises ValueError (not TypeError). A dtype that matches no specialisation
# at all raises TypeError.

@pytest.mark.parametrize("name", ["X", "W_ih", "W_hh", "b", "h0", "Hs", "h_n"])
def test_forward_mixed_dtypes(name):
    a = _forward_args()
    a[name] = a[name].astype(np.float32)
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        _call_forward(a)


@pytest.mark.parametrize("name", ["X", "W_ih", "W_hh", "h0", "Hs", "dHs", "dh", "dX",
                                  "dW_ih", "dW_hh", "db"])
def test_backward_mixed_dtypes(name):
    a = _backward_args(np.float32)
    a[name] = a[name].astype(np.float64)
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        _call_backward(a)


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128])
def test_unsupported_dtype(dtype):
    def cast(args):
        return {k: (v.astype(dtype) if isinstance(v, np.ndarray) and k != "batch_sizes"
                    else v) for k, v in args.items()}
    with pytest.raises(TypeError, match="No matching signature"):
        _call_forward(cast(_forward_args()))
    with pytest.raises(TypeError, match="No matching signature"):
        _call_backward(cast(_backward_args()))


def test_activation_codes_match_the_enum():
    activations = pytest.importorskip("crnn.kernels.activations")
    Activation = activations.Activation
    assert {n: int(getattr(Activation, n.upper())) for n in CODES} == CODES


def test_one_activation_table_softmax_included():
    """The Python tables are the enum of _activation_codes.pxd: every name
    once, the hidden ones for the Elman cell, the output ones (with the
    softmax) for the output layer."""
    activations = pytest.importorskip("crnn.kernels.activations")
    from crnn.kernels.stack import OUTPUTS

    enum = {name.lower(): int(code) for name, code in activations.Activation.__members__.items()}
    assert activations.ALL == enum
    assert set(enum) == {"identity", "tanh", "sigmoid", "relu", "softmax"}
    assert len(set(enum.values())) == len(enum)
    assert activations.CODES == {n: enum[n] for n in ("identity", "tanh", "sigmoid", "relu")}
    assert activations.CODES == CODES
    assert OUTPUTS == activations.OUTPUTS == {
        n: enum[n] for n in ("identity", "tanh", "sigmoid", "softmax")}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_derivative_pass_is_the_backward_pass(activation, dtype):
    """The output layer's derivative pass (dA *= g'(a)) is the hidden layers'
    BPTT pass (dA = (dA + dh) g'(a)) with dh = 0, and g' is the reference's."""
    from crnn.kernels.activations import apply_grad

    rng = np.random.default_rng(CODES[activation])
    a = rng.normal(size=(3, 7)).astype(dtype)
    a[np.abs(a) < RELU_MARGIN] = 1
    h = a.copy()
    activations = pytest.importorskip("crnn.kernels.activations")
    activations.apply(activation, h, np.zeros(7, dtype=dtype))
    dY = rng.normal(size=a.shape).astype(dtype)
    got = dY.ravel().copy()
    apply_grad(activation, got, h.ravel())
    expected = dY * activation_derivative_ref(a.astype(np.float64), activation)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-13, 1e-15)
    np.testing.assert_allclose(got.reshape(a.shape), expected, rtol=rtol, atol=atol)
    with pytest.raises(ValueError, match="h must have 21 entries"):
        apply_grad(activation, got, h.ravel()[:3].copy())
