"""Tests of the LSTM and GRU kernels (``crnn.kernels.lstm``, ``crnn.kernels.gru``).

Both kernels take packed variable-length batches (``recurrence.pxd``) and run
either direction. They are compared with

* the independent per-sequence NumPy references of ``tests/reference.py``
  (forward states and final states; BPTT gradients of every input for the
  loss ``sum(R * Hs) + sum(r * h_n)`` (``+ sum(rc * c_n)`` for the LSTM),
  and the gate pre-activation gradients the kernels write into ``dgates``);
* central finite differences of that loss, taken directly on the kernels;
* PyTorch (``torch.nn.LSTM``, ``nn.GRU`` and, for the Elman kernel,
  ``nn.RNN`` with tanh and relu), in float64, each sequence run through
  torch on its own with its initial state (reversed sequences: torch is fed
  the flipped sequence).

Tolerances (all stated here):

* forward against the reference: ``rtol = atol = 1e-12`` in float64,
  ``rtol = atol = 1e-5`` in float32 (reference in float64 on the same
  float32 inputs);
* backward against the reference: ``rtol = atol = 1e-12`` (float64);
* finite differences (float64, 4-point central stencil, step ``1e-4``):
  ``max|analytic - numeric| / max|numeric| <= 1e-8`` for every input;
* PyTorch: ``rtol = atol = 1e-10`` for outputs, final states, every
  parameter gradient and the input and initial-state gradients;
* ``dgates`` aliasing ``gates``, dX=None: bit-for-bit equal results.
"""
import math

import numpy as np
import pytest

from crnn.kernels import elman, gru, lstm

try:  # tests/ on sys.path (rootdir-relative, no __init__.py) ...
    from reference import (gru_grads_ref, gru_ref, lstm_grads_ref, lstm_ref,
                           numeric_gradient, pack, unpack)
except ImportError:  # ... or tests/ imported as a package
    from tests.reference import (gru_grads_ref, gru_ref, lstm_grads_ref, lstm_ref,
                                 numeric_gradient, pack, unpack)

# Every test runs with each recurrent product (BLAS, and the packed kernels
# this CPU has): see conftest.py.
pytestmark = pytest.mark.usefixtures("recurrent_product")

TOL_FLOAT64 = (1e-12, 1e-12)
TOL_FLOAT32 = (1e-5, 1e-5)
TOL = {np.float64: TOL_FLOAT64, np.float32: TOL_FLOAT32}
FD_STEP = 1e-4
FD_RTOL = 1e-8
TORCH_TOL = 1e-10

CELLS = ["lstm", "gru"]
DTYPES = [np.float32, np.float64]
DIRECTIONS = [False, True]
DIRECTION_IDS = ["forward", "reverse"]

#: Number of gate blocks per cell.
GATES = {"lstm": 4, "gru": 3}
#: The inputs of each cell's forward pass, in order after (X, batch_sizes).
PARAMS = {"lstm": ("W_ih", "W_hh", "b", "h0", "c0"),
          "gru": ("W_ih", "W_hh", "b", "b_hn", "h0")}
#: Gradients the backward pass accumulates into.
ACCUMULATED = {"lstm": ("dW_ih", "dW_hh", "db"), "gru": ("dW_ih", "dW_hh", "db", "db_hn")}

#: (lengths, I, H): sequence lengths (longest first), input and state sizes.
CASES = [
    ([1], 1, 1),                       # T = B = I = H = 1
    ([1, 1, 1], 2, 4),                 # T = 1
    ([6], 3, 2),                       # B = 1
    ([4, 4, 4], 5, 1),                 # H = 1, equal lengths
    ([5, 5, 3, 1], 2, 3),              # ragged, with a length-1 sequence
    ([7, 2, 2], 3, 4),                 # ragged, one long sequence
    ([20, 13, 13, 6, 2, 1], 4, 7),     # longer and ragged
    # The fused LSTM step (lstm_fused.h) in tiles of 6, 4, 2 and 1 rows (3,
    # 2 and 1 with AVX2) and panels of 16, 8 or 4 units: 13 rows, and
    # H = 17, whole panels and a partial one; H = 32, whole panels only.
    ([9, 8, 8, 8, 6, 5, 5, 4, 3, 3, 2, 1, 1], 5, 17),
    ([3, 3, 3, 3, 3, 3, 3, 3], 2, 32),
]


def case_id(case):
    lengths, I, H = case
    return "L%s-I%d-H%d" % (".".join(map(str, lengths)), I, H)


def make_problem(cell, rng, lengths, I, H, dtype=np.float64):
    """Random, well-scaled inputs of one layer, packed, all C-contiguous."""
    def r(*shape, scale=1.0):
        return np.ascontiguousarray((scale * rng.standard_normal(shape)).astype(dtype))
    G = GATES[cell] * H
    B = len(lengths)
    seqs = [r(L, I) for L in lengths]
    X, batch_sizes = pack(seqs)
    p = {"seqs": seqs, "lengths": list(lengths), "X": X, "batch_sizes": batch_sizes,
         "W_ih": r(G, I, scale=1 / math.sqrt(I)),
         "W_hh": r(G, H, scale=0.6 / math.sqrt(H)),
         "b": r(G, scale=0.5), "h0": r(B, H, scale=0.5)}
    if cell == "lstm":
        p["c0"] = r(B, H, scale=0.5)
    else:
        p["b_hn"] = r(H, scale=0.5)
    return p


def as64(cell, p):
    """The reference's arguments, in float64."""
    return {"seqs": [s.astype(np.float64) for s in p["seqs"]],
            **{k: p[k].astype(np.float64) for k in PARAMS[cell]}}


def run_forward(cell, p, reverse=False):
    """Call the kernel's forward into NaN-filled outputs (every entry must be written)."""
    N = p["X"].shape[0]
    B, H = p["h0"].shape
    dt = p["X"].dtype

    def nan(*shape):
        return np.full(shape, np.nan, dtype=dt)

    if cell == "lstm":
        out = {"gates": nan(N, 4 * H), "Hs": nan(N, H), "Cs": nan(N, H),
               "h_n": nan(B, H), "c_n": nan(B, H)}
        lstm.forward(p["X"], p["batch_sizes"], p["W_ih"], p["W_hh"], p["b"], p["h0"],
                     p["c0"], out["gates"], out["Hs"], out["Cs"], out["h_n"],
                     out["c_n"], reverse=reverse)
    else:
        out = {"gates": nan(N, 3 * H), "hn": nan(N, H), "Hs": nan(N, H),
               "h_n": nan(B, H)}
        gru.forward(p["X"], p["batch_sizes"], p["W_ih"], p["W_hh"], p["b"], p["b_hn"],
                    p["h0"], out["gates"], out["hn"], out["Hs"], out["h_n"],
                    reverse=reverse)
    return out


def make_loss_weights(cell, rng, p):
    """R (N, H), r (B, H) and, for the LSTM, rc (B, H), in the problem's dtype."""
    N = p["X"].shape[0]
    B, H = p["h0"].shape
    dt = p["X"].dtype
    w = {"R": rng.standard_normal((N, H)).astype(dt),
         "r": rng.standard_normal((B, H)).astype(dt)}
    if cell == "lstm":
        w["rc"] = rng.standard_normal((B, H)).astype(dt)
    return w


def run_backward(cell, p, fwd, w, reverse=False, prefill=None, with_dX=True,
                 alias=False):
    """Call the kernel's backward; returns every gradient it produces.

    ``alias``: pass a copy of ``fwd["gates"]`` as both ``gates`` and
    ``dgates``; otherwise ``dgates`` is a separate NaN-filled buffer.
    """
    N, I = p["X"].shape
    B, H = p["h0"].shape
    G = GATES[cell] * H
    dt = p["X"].dtype
    prefill = prefill or {}
    zeros = {"dW_ih": (G, I), "dW_hh": (G, H), "db": (G,), "db_hn": (H,)}
    out = {k: prefill.get(k, np.zeros(zeros[k], dt)).copy() for k in ACCUMULATED[cell]}
    gates = fwd["gates"].copy() if alias else fwd["gates"]
    out["dgates"] = gates if alias else np.full((N, G), np.nan, dt)
    out["dX"] = np.full((N, I), np.nan, dt) if with_dX else None
    out["dh0"] = w["r"].copy()          # in: dE/dh_n; out: dE/dh0
    if cell == "lstm":
        out["dc0"] = w["rc"].copy()     # in: dE/dc_n; out: dE/dc0
        lstm.backward(p["X"], p["batch_sizes"], p["W_ih"], p["W_hh"], p["h0"], p["c0"],
                      gates, fwd["Hs"], fwd["Cs"], w["R"], out["dgates"], out["dh0"],
                      out["dc0"], out["dX"], out["dW_ih"], out["dW_hh"], out["db"],
                      reverse=reverse)
    else:
        gru.backward(p["X"], p["batch_sizes"], p["W_ih"], p["W_hh"], p["h0"], gates,
                     fwd["hn"], fwd["Hs"], w["R"], out["dgates"], out["dh0"],
                     out["dX"], out["dW_ih"], out["dW_hh"], out["db"], out["db_hn"],
                     reverse=reverse)
    return out


def ref_forward(cell, p, reverse):
    a = as64(cell, p)
    if cell == "lstm":
        hs, cs, h_n, c_n = lstm_ref(**a, reverse=reverse)
        return {"Hs": hs, "Cs": cs, "h_n": h_n, "c_n": c_n}
    hs, h_n = gru_ref(**a, reverse=reverse)
    return {"Hs": hs, "h_n": h_n}


def ref_grads(cell, p, w, reverse):
    a = as64(cell, p)
    Rs = unpack(w["R"].astype(np.float64), p["batch_sizes"], p["lengths"])
    r = w["r"].astype(np.float64)
    if cell == "lstm":
        return lstm_grads_ref(**a, Rs=Rs, r=r, rc=w["rc"].astype(np.float64),
                              reverse=reverse)
    return gru_grads_ref(**a, Rs=Rs, r=r, reverse=reverse)


def assert_close(actual, expected, tol, what=""):
    rtol, atol = tol
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected,
                               rtol=rtol, atol=atol, err_msg=what)


def assert_packed_close(P, expected_seqs, p, tol, what):
    """Compare a packed kernel array with a list of per-sequence arrays."""
    got = unpack(P, p["batch_sizes"], p["lengths"])
    assert len(got) == len(expected_seqs)
    for j, (g, e) in enumerate(zip(got, expected_seqs)):
        assert_close(g, e, tol, f"{what} of sequence {j}")


def seed_of(*parts):
    """A deterministic seed sequence from strings and ints."""
    out = []
    for x in parts:
        if isinstance(x, str):
            out.extend(x.encode())
        elif isinstance(x, (list, tuple)):
            out.extend([len(x), *x])
        else:
            out.append(int(x))
    return out


# --- the reference's packing helpers ---------------------------------------------

def test_pack_and_unpack():
    seqs = [np.arange(5.0)[:, None] * 10 + j for j in range(3)]
    seqs = [seqs[0], seqs[1][:3], seqs[2][:1]]           # lengths 5, 3, 1
    X, bs = pack(seqs)
    assert bs.dtype == np.intp
    np.testing.assert_array_equal(bs, [3, 2, 2, 1, 1])
    # step 0: sequences 0, 1, 2; steps 1-2: sequences 0, 1; steps 3-4: sequence 0
    np.testing.assert_array_equal(X[:, 0], [0, 1, 2, 10, 11, 20, 21, 30, 40])
    for a, b in zip(unpack(X, bs, [5, 3, 1]), seqs):
        np.testing.assert_array_equal(a, b)
    # Equal lengths: the packed array is the time-major array, reshaped.
    eq = [np.random.default_rng(j).standard_normal((4, 2)) for j in range(3)]
    X, bs = pack(eq)
    np.testing.assert_array_equal(X, np.stack(eq, axis=1).reshape(12, 2))
    np.testing.assert_array_equal(bs, [3, 3, 3, 3])
    with pytest.raises(ValueError, match="longest first"):
        pack([np.zeros((1, 2)), np.zeros((2, 2))])
    with pytest.raises(ValueError, match="do not match"):
        unpack(np.zeros((4, 1)), [2, 2], [3, 1])


# --- forward against the reference ----------------------------------------------

@pytest.mark.parametrize("reverse", DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_reference(cell, dtype, case, reverse):
    rng = np.random.default_rng(seed_of(cell, case[0], *case[1:], reverse))
    p = make_problem(cell, rng, *case, dtype=dtype)
    inputs = {k: p[k].copy() for k in ("X", "batch_sizes") + PARAMS[cell]}
    fwd = run_forward(cell, p, reverse)
    ref = ref_forward(cell, p, reverse)
    tol = TOL[dtype]
    for k, v in fwd.items():
        assert v.dtype == dtype, k
        assert np.isfinite(v).all(), k   # every entry written
    assert_packed_close(fwd["Hs"], ref["Hs"], p, tol, "Hs")
    assert_close(fwd["h_n"], ref["h_n"], tol, "h_n")
    if cell == "lstm":
        assert_packed_close(fwd["Cs"], ref["Cs"], p, tol, "Cs")
        assert_close(fwd["c_n"], ref["c_n"], tol, "c_n")
    for k, v in inputs.items():   # inputs are left alone
        np.testing.assert_array_equal(p[k], v, err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
def test_reference_forward_is_not_trivially_equal(cell):
    # Guard against a test that cannot fail: a mistake in a bias, an initial
    # state, the direction or the gate order shows far above the tolerance.
    rng = np.random.default_rng(seed_of(cell, 3))
    p = make_problem(cell, rng, [5, 5, 3, 1], 2, 3)
    fwd = run_forward(cell, p)
    got = unpack(fwd["Hs"], p["batch_sizes"], p["lengths"])

    def distance(reverse=False, **changes):
        ref = ref_forward(cell, dict(p, **changes), reverse)
        return max(max(np.abs(g - e).max() for g, e in zip(got, ref["Hs"])),
                   np.abs(fwd["h_n"] - ref["h_n"]).max())

    assert distance() <= 1e-12
    H = p["h0"].shape[1]
    assert distance(b=np.zeros_like(p["b"])) > 1e-3
    assert distance(h0=np.zeros_like(p["h0"])) > 1e-3
    assert distance(h0=p["h0"][::-1].copy()) > 1e-3
    assert distance(reverse=True) > 1e-3
    # Swapping two gate blocks of the weights changes the result.
    perm = np.r_[H:2 * H, 0:H, 2 * H:GATES[cell] * H]
    assert distance(W_ih=p["W_ih"][perm].copy(), W_hh=p["W_hh"][perm].copy()) > 1e-3
    if cell == "lstm":
        assert distance(c0=np.zeros_like(p["c0"])) > 1e-3
    else:
        assert distance(b_hn=np.zeros_like(p["b_hn"])) > 1e-3


# --- backward against the reference ---------------------------------------------

@pytest.mark.parametrize("reverse", DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("cell", CELLS)
def test_backward_matches_reference(cell, case, reverse):
    lengths, I, H = case
    rng = np.random.default_rng(seed_of(cell, lengths, I, H, reverse, 1))
    p = make_problem(cell, rng, *case)
    fwd = run_forward(cell, p, reverse)
    w = make_loss_weights(cell, rng, p)
    G = GATES[cell] * H
    # Known, non-zero initial contents: the parameter gradients are accumulated.
    prefill = {"dW_ih": rng.standard_normal((G, I)), "dW_hh": rng.standard_normal((G, H)),
               "db": rng.standard_normal(G), "db_hn": rng.standard_normal(H)}
    fwd_before = {k: v.copy() for k, v in fwd.items()}
    w_before = {k: v.copy() for k, v in w.items()}
    inputs = {k: p[k].copy() for k in ("X", "batch_sizes") + PARAMS[cell]}

    got = run_backward(cell, p, fwd, w, reverse, prefill)
    ref = ref_grads(cell, p, w, reverse)

    for k in ACCUMULATED[cell]:
        assert_close(got[k], prefill[k] + ref[k], TOL_FLOAT64, k)
    for k in ("dh0", "dc0") if cell == "lstm" else ("dh0",):
        assert_close(got[k], ref[k], TOL_FLOAT64, k)
    assert_packed_close(got["dX"], ref["dX"], p, TOL_FLOAT64, "dX")
    assert_packed_close(got["dgates"], ref["dgates"], p, TOL_FLOAT64, "dgates")
    # Read-only arguments are left alone: dHs, the forward's arrays, the inputs.
    for k, v in fwd_before.items():
        np.testing.assert_array_equal(fwd[k], v, err_msg=k)
    np.testing.assert_array_equal(w["R"], w_before["R"], err_msg="dHs")
    for k, v in inputs.items():
        np.testing.assert_array_equal(p[k], v, err_msg=k)

    # dX = None: the input gradient is skipped, nothing else changes.
    no_dX = run_backward(cell, p, fwd, w, reverse, prefill, with_dX=False)
    for k in got:
        if k != "dX":
            np.testing.assert_array_equal(no_dX[k], got[k], err_msg=k)


#: 34 ragged sequences, I = 6, H = 40: the weight gradients are formed during
#: BPTT over blocks of at most 10^6 // (G (I + H)) rows (135 for the LSTM,
#: 10^6 // (G max(I, H)) = 208 for the GRU), out of N = 215 packed rows.
BLOCK_CASE = ([12] * 6 + [11, 10, 9, 9, 8, 8, 8, 7, 7, 6, 6, 6, 6, 5, 5, 5, 4, 4, 4, 3,
              3, 2, 2, 1, 1, 1, 1, 1], 6, 40)


@pytest.mark.parametrize("reverse", DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("cell", CELLS)
def test_backward_in_weight_gradient_blocks(cell, reverse):
    lengths, I, H = BLOCK_CASE
    rows_per_block = 10 ** 6 // (GATES[cell] * H * (I + H if cell == "lstm" else max(I, H)))
    assert len(lengths) <= rows_per_block < sum(lengths)
    test_backward_matches_reference(cell, BLOCK_CASE, reverse)


@pytest.mark.parametrize("reverse", DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("case", [([1], 1, 1), ([5, 5, 3, 1], 2, 3),
                                  ([20, 13, 13, 6, 2, 1], 4, 7)], ids=case_id)
@pytest.mark.parametrize("cell", CELLS)
def test_dgates_may_alias_gates(cell, case, reverse):
    rng = np.random.default_rng(seed_of(cell, case[0], reverse, 2))
    p = make_problem(cell, rng, *case)
    fwd = run_forward(cell, p, reverse)
    w = make_loss_weights(cell, rng, p)
    separate = run_backward(cell, p, fwd, w, reverse)
    aliased = run_backward(cell, p, fwd, w, reverse, alias=True)
    assert set(aliased) == set(separate)
    for k in separate:
        np.testing.assert_array_equal(aliased[k], separate[k], err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_accumulates_twice(cell):
    # Two identical calls into the same buffers give twice the gradient.
    rng = np.random.default_rng(seed_of(cell, 5))
    p = make_problem(cell, rng, [4, 3, 1], 2, 3)
    fwd = run_forward(cell, p)
    w = make_loss_weights(cell, rng, p)
    once = run_backward(cell, p, fwd, w)
    twice = run_backward(cell, p, fwd, w, prefill=once)
    for k in ACCUMULATED[cell]:
        np.testing.assert_allclose(twice[k], 2 * once[k], rtol=1e-15, atol=0,
                                   err_msg=k)
    for k in set(once) - set(ACCUMULATED[cell]):   # overwritten, not accumulated
        np.testing.assert_array_equal(twice[k], once[k], err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_backward_matches_reference(cell):
    # Single precision runs the same code path; the float64 reference on the
    # same float32 inputs agrees to the float32 tolerance.
    rng = np.random.default_rng(seed_of(cell, 32))
    p = make_problem(cell, rng, [6, 4, 4, 1], 3, 5, dtype=np.float32)
    for reverse in DIRECTIONS:
        fwd = run_forward(cell, p, reverse)
        w = make_loss_weights(cell, rng, p)
        got = run_backward(cell, p, fwd, w, reverse)
        ref = ref_grads(cell, p, w, reverse)
        for k in ACCUMULATED[cell] + (("dh0", "dc0") if cell == "lstm" else ("dh0",)):
            assert got[k].dtype == np.float32
            assert_close(got[k], ref[k], TOL_FLOAT32, k)
        assert_packed_close(got["dX"], ref["dX"], p, TOL_FLOAT32, "dX")


# --- finite differences on the kernels ---------------------------------------------

FD_CASES = [([1], 1, 1), ([1, 1], 2, 2), ([4], 2, 2), ([4, 2, 1], 2, 3)]


@pytest.mark.parametrize("reverse", DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("case", FD_CASES, ids=case_id)
@pytest.mark.parametrize("cell", CELLS)
def test_gradient_finite_differences(cell, case, reverse):
    rng = np.random.default_rng(seed_of(cell, case[0], *case[1:], reverse, 9))
    p = make_problem(cell, rng, *case)
    w = make_loss_weights(cell, rng, p)

    def loss():
        out = run_forward(cell, p, reverse)
        value = np.sum(w["R"] * out["Hs"]) + np.sum(w["r"] * out["h_n"])
        if cell == "lstm":
            value += np.sum(w["rc"] * out["c_n"])
        return float(value)

    got = run_backward(cell, p, run_forward(cell, p, reverse), w, reverse)
    analytic = {"W_ih": got["dW_ih"], "W_hh": got["dW_hh"], "b": got["db"],
                "h0": got["dh0"], "X": got["dX"]}
    if cell == "lstm":
        analytic["c0"] = got["dc0"]
    else:
        analytic["b_hn"] = got["db_hn"]
    assert set(analytic) == set(PARAMS[cell]) | {"X"}
    for name, g in analytic.items():
        numeric = numeric_gradient(loss, p[name], FD_STEP)
        scale = np.abs(numeric).max()
        assert scale > 0, name
        err = np.abs(g - numeric).max() / scale
        assert err <= FD_RTOL, f"{name}: relative error {err:.3e}"


# --- PyTorch oracle ------------------------------------------------------------------

TORCH_KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
TORCH_CASES = [([5, 3, 3, 1], 3, 4), ([1], 2, 3), ([4, 4], 1, 1), ([6, 2], 2, 5)]
ELMAN_CODES = {"rnn_tanh": 1, "rnn_relu": 3}


def _torch_module(torch, kind, I, H, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "lstm":
            return torch.nn.LSTM(I, H, dtype=torch.float64)
        if kind == "gru":
            return torch.nn.GRU(I, H, dtype=torch.float64)
        return torch.nn.RNN(I, H, nonlinearity=kind[4:], dtype=torch.float64)


def _kernel_run(kind, W, seqs, h0, c0, w, reverse):
    """Forward + backward of the kernel for ``kind``; per-sequence results."""
    X, bs = pack(seqs)
    lengths = [len(s) for s in seqs]
    N, I = X.shape
    B, H = h0.shape
    out = {}
    if kind in ("lstm", "gru"):
        p = dict(W, X=X, batch_sizes=bs, h0=h0)
        if kind == "lstm":
            p["c0"] = c0
        fwd = run_forward(kind, p, reverse)
        grads = run_backward(kind, p, fwd, w, reverse)
        out.update(fwd)
        out.update(grads)
    else:
        Hs, h_n = np.empty((N, H)), np.empty((B, H))
        code = ELMAN_CODES[kind]
        elman.forward(X, bs, W["W_ih"], W["W_hh"], W["b"], h0, Hs, h_n,
                      reverse=reverse, activation=code)
        dA, dh, dX = w["R"].copy(), w["r"].copy(), np.empty((N, I))
        dW_ih, dW_hh, db = np.zeros((H, I)), np.zeros((H, H)), np.zeros(H)
        elman.backward(X, bs, W["W_ih"], W["W_hh"], h0, Hs, dA, dh, dX, dW_ih, dW_hh,
                       db, reverse=reverse, activation=code)
        out.update(Hs=Hs, h_n=h_n, dh0=dh, dX=dX, dW_ih=dW_ih, dW_hh=dW_hh, db=db)
    for k in ("Hs", "Cs", "dX"):
        if k in out:
            out[k] = unpack(out[k], bs, lengths)
    return out


@pytest.mark.parametrize("reverse", DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_matches_pytorch(kind, case, reverse):
    torch = pytest.importorskip("torch")
    lengths, I, H = case
    B = len(lengths)
    seed = seed_of(kind, lengths, I, H, reverse)
    rng = np.random.default_rng(seed)
    mod = _torch_module(torch, kind, I, H, sum(seed))

    # The kernel's parameters, copied from torch's.
    def np_(t):
        return np.ascontiguousarray(t.detach().numpy(), dtype=np.float64)
    b_ih, b_hh = np_(mod.bias_ih_l0), np_(mod.bias_hh_l0)
    W = {"W_ih": np_(mod.weight_ih_l0), "W_hh": np_(mod.weight_hh_l0)}
    if kind == "gru":
        W["b"] = np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
        W["b_hn"] = b_hh[2 * H:].copy()
    else:
        W["b"] = b_ih + b_hh

    seqs = [rng.standard_normal((L, I)) for L in lengths]
    h0 = 0.5 * rng.standard_normal((B, H))
    c0 = 0.5 * rng.standard_normal((B, H)) if kind == "lstm" else None
    N = sum(lengths)
    w = {"R": rng.standard_normal((N, H)), "r": rng.standard_normal((B, H))}
    if kind == "lstm":
        w["rc"] = rng.standard_normal((B, H))
    Rs = unpack(w["R"], pack(seqs)[1], lengths)

    got = _kernel_run(kind, W, seqs, h0, c0, w, reverse)

    # Torch: every sequence on its own, batch of one, with its initial state.
    xs = [torch.tensor(s, requires_grad=True) for s in seqs]
    h0_t = torch.tensor(h0, requires_grad=True)
    c0_t = torch.tensor(c0, requires_grad=True) if kind == "lstm" else None
    loss = torch.zeros((), dtype=torch.float64)
    outs, h_ns, c_ns = [], [], []
    for j, x in enumerate(xs):
        inp = torch.flip(x, [0]) if reverse else x
        hj = h0_t[j].reshape(1, 1, H)
        if kind == "lstm":
            y, (hn, cn) = mod(inp.unsqueeze(1), (hj, c0_t[j].reshape(1, 1, H)))
            c_ns.append(cn[0, 0])
            loss = loss + (torch.tensor(w["rc"][j]) * cn[0, 0]).sum()
        else:
            y, hn = mod(inp.unsqueeze(1), hj)
        y = y[:, 0]
        if reverse:
            y = torch.flip(y, [0])
        outs.append(y)
        h_ns.append(hn[0, 0])
        loss = loss + (torch.tensor(Rs[j]) * y).sum() + (torch.tensor(w["r"][j])
                                                          * hn[0, 0]).sum()
    loss.backward()

    tol = (TORCH_TOL, TORCH_TOL)
    for j in range(B):
        assert_close(got["Hs"][j], np_(outs[j]), tol, f"output of sequence {j}")
        assert_close(got["dX"][j], np_(xs[j].grad), tol, f"dX of sequence {j}")
    assert_close(got["h_n"], np.stack([np_(h) for h in h_ns]), tol, "h_n")
    assert_close(got["dh0"], np_(h0_t.grad), tol, "dh0")
    if kind == "lstm":
        assert_close(got["c_n"], np.stack([np_(c) for c in c_ns]), tol, "c_n")
        assert_close(got["dc0"], np_(c0_t.grad), tol, "dc0")
    assert_close(got["dW_ih"], np_(mod.weight_ih_l0.grad), tol, "weight_ih")
    assert_close(got["dW_hh"], np_(mod.weight_hh_l0.grad), tol, "weight_hh")
    g_ih, g_hh = np_(mod.bias_ih_l0.grad), np_(mod.bias_hh_l0.grad)
    assert_close(got["db"], g_ih, tol, "bias_ih")
    if kind == "gru":
        assert_close(got["db"][:2 * H], g_hh[:2 * H], tol, "bias_hh[:2H]")
        assert_close(got["db_hn"], g_hh[2 * H:], tol, "bias_hh[2H:]")
    else:
        assert_close(got["db"], g_hh, tol, "bias_hh")


# --- argument checking -----------------------------------------------------------------

LENGTHS0, I0, H0 = [3, 2], 4, 3       # batch_sizes [2, 2, 1]
N0, B0 = sum(LENGTHS0), len(LENGTHS0)


def _args(cell, dtype=np.float64):
    """Every array argument of forward and backward, valid, keyed by name."""
    rng = np.random.default_rng(seed_of(cell, 7))
    p = make_problem(cell, rng, LENGTHS0, I0, H0, dtype=dtype)
    a = {k: p[k] for k in ("X", "batch_sizes") + PARAMS[cell]}
    a.update(run_forward(cell, p))
    G = GATES[cell] * H0
    a.update(dHs=np.zeros((N0, H0), dtype), dgates=np.zeros((N0, G), dtype),
             dh=np.zeros((B0, H0), dtype), dX=np.zeros((N0, I0), dtype),
             dW_ih=np.zeros((G, I0), dtype), dW_hh=np.zeros((G, H0), dtype),
             db=np.zeros(G, dtype))
    if cell == "lstm":
        a["dc"] = np.zeros((B0, H0), dtype)
    else:
        a["db_hn"] = np.zeros(H0, dtype)
    return a


FORWARD_ARGS = {"lstm": ("X", "batch_sizes", "W_ih", "W_hh", "b", "h0", "c0", "gates",
                         "Hs", "Cs", "h_n", "c_n"),
                "gru": ("X", "batch_sizes", "W_ih", "W_hh", "b", "b_hn", "h0", "gates",
                        "hn", "Hs", "h_n")}
BACKWARD_ARGS = {"lstm": ("X", "batch_sizes", "W_ih", "W_hh", "h0", "c0", "gates", "Hs",
                          "Cs", "dHs", "dgates", "dh", "dc", "dX", "dW_ih", "dW_hh",
                          "db"),
                 "gru": ("X", "batch_sizes", "W_ih", "W_hh", "h0", "gates", "hn", "Hs",
                         "dHs", "dgates", "dh", "dX", "dW_ih", "dW_hh", "db", "db_hn")}
KERNELS = {"lstm": lstm, "gru": gru}


def _call(cell, which, a):
    names = FORWARD_ARGS[cell] if which == "forward" else BACKWARD_ARGS[cell]
    getattr(KERNELS[cell], which)(*(a[k] for k in names))


def _grow_last(arr):
    """The array with its last dimension one larger (zeros)."""
    return np.zeros(arr.shape[:-1] + (arr.shape[-1] + 1,), arr.dtype)


def _bad_shape_params():
    for cell in CELLS:
        for which, names in (("forward", FORWARD_ARGS[cell]),
                             ("backward", BACKWARD_ARGS[cell])):
            for name in names:
                if name != "batch_sizes":
                    yield pytest.param(cell, which, name, id=f"{cell}-{which}-{name}")


@pytest.mark.parametrize("cell, which, name", list(_bad_shape_params()))
def test_rejects_bad_shapes(cell, which, name):
    a = _args(cell)
    a[name] = _grow_last(a[name])
    before = {k: v.copy() for k, v in a.items()}
    # X or W_hh one column wider changes I or H: the mismatch may be reported
    # on the array that no longer fits (W_ih).
    with pytest.raises(ValueError, match="must have shape"):
        _call(cell, which, a)
    for k, v in before.items():   # nothing was written
        np.testing.assert_array_equal(a[k], v, err_msg=k)


@pytest.mark.parametrize("which", ["forward", "backward"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("change, match", [
    ({"batch_sizes": np.array([2, 1, 2], np.intp)}, "non-increasing"),
    ({"batch_sizes": np.array([2, 0, 2, 1], np.intp)}, "positive"),
    ({"batch_sizes": np.array([2, 2, 2], np.intp)}, "sums to 6"),
    ({"batch_sizes": np.array([3, 1, 1], np.intp)}, "number of sequences"),
    ({"batch_sizes": np.array([], np.intp)}, "empty"),
    ({"X": np.zeros((N0 + 1, I0))}, "sums to 5"),
    ({"h0": np.zeros((B0 + 1, H0))}, "number of sequences"),
], ids=["increasing", "zero", "wrong-sum", "first-not-B", "empty", "X-rows",
        "h0-rows"])
def test_rejects_bad_batch(change, match, cell, which):
    a = dict(_args(cell), **change)
    before = {k: v.copy() for k, v in a.items()}
    with pytest.raises(ValueError, match=match):
        _call(cell, which, a)
    for k, v in before.items():
        np.testing.assert_array_equal(a[k], v, err_msg=k)


@pytest.mark.parametrize("which", ["forward", "backward"])
@pytest.mark.parametrize("cell", CELLS)
def test_mixed_and_unsupported_dtypes(cell, which):
    names = FORWARD_ARGS[cell] if which == "forward" else BACKWARD_ARGS[cell]
    for name in names:
        if name == "batch_sizes":
            continue
        a = _args(cell, np.float32)
        a[name] = a[name].astype(np.float64)
        with pytest.raises(ValueError, match="Buffer dtype mismatch"):
            _call(cell, which, a)
    a = {k: (v if k == "batch_sizes" else v.astype(np.int64)) for k, v in _args(cell).items()}
    with pytest.raises(TypeError, match="No matching signature"):
        _call(cell, which, a)
