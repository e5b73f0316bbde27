"""Benchmark crnn's Elman RNN against a hand-written NumPy RNN and PyTorch.

Usage::

    python benchmarks/bench_elman.py [--quick] [--json out.json]
                                     [--threads N] [--dtype float32|float64]

For every case (B, T, I, H) -- batch size, sequence length, input size,
hidden size; one output -- it times, on the same random data:

* ``train``: one training step, forward + backward (loss and the full
  gradient) on one batch. crnn: ``RecurrentNetwork.loss_grad`` into a
  preallocated gradient buffer; NumPy: :func:`np_loss_grad` below; PyTorch:
  ``zero_grad``, forward, MSE loss, ``backward``.
* ``infer``: the forward pass only (crnn ``RecurrentNetwork.output``,
  PyTorch under ``torch.inference_mode()``).
* ``epoch``: the public estimator ``crnn.RNNRegressor(hidden_size=H,
  max_iter=1, batch_size=B, shuffle=False)`` fitted for one epoch on
  ``n = 8 * B`` samples and then predicting them, against the NumPy RNN
  running the same 8 batches with plain SGD and predicting the same samples.
  The estimator uses its default optimizer (Adam); the difference in
  optimizer cost is a few element-wise passes over the parameters.

The contenders run round-robin (crnn, numpy, torch, crnn, numpy, torch, ...)
so that slow drifts of the machine hit them all alike, and the median of the
repeats is reported. BLAS threads are pinned with threadpoolctl.

This is a measurement script: it asserts nothing about speed. It aborts only
if the NumPy reference (or PyTorch, given crnn's weights) disagrees with
crnn's loss or gradient, since then the comparison would be meaningless.
"""
import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np

try:
    import torch
except ImportError:  # the PyTorch column is skipped
    torch = None

import scipy
import scipy.linalg.blas as scipy_blas
from threadpoolctl import threadpool_info, threadpool_limits

import crnn
from crnn._network import RecurrentNetwork

# (B, T, I, H)
CASES = [
    (1, 100, 8, 32),
    (32, 50, 32, 128),
    (32, 100, 8, 32),
    (64, 50, 128, 512),
    (1, 1000, 1, 64),
]
QUICK_CASES = CASES[:2]
O = 1                    # one regression output
EPOCH_BATCHES = 8        # the epoch case trains on n = 8 * B samples
LEARNING_RATE = 1e-3


# ===========================================================================
# A hand-written NumPy Elman RNN, sequence to one, squared error.
#
#   h_0 = 0
#   h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)          t = 1 .. T
#   y   = W_y h_T + b_y
#   E   = mean over the B*O outputs of (y - d)^2
#
# Arrays are time-major: X is (T, B, I); states are rows, so W x becomes
# X @ W.T. Weights are a dict: W_ih (H, I), W_hh (H, H), b (H,), W_y (O, H),
# b_y (O,).
# ===========================================================================

def np_init(rng, I, H, O, dtype):
    """Glorot-uniform W_ih and W_y, a random orthogonal W_hh, zero biases."""
    def glorot(fan_out, fan_in):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype)

    Q, R = np.linalg.qr(rng.standard_normal((H, H)))
    return {
        "W_ih": glorot(H, I),
        "W_hh": (Q * np.sign(np.diag(R))).astype(dtype),
        "b": np.zeros(H, dtype),
        "W_y": glorot(O, H),
        "b_y": np.zeros(O, dtype),
    }


def np_forward(W, X):
    """All hidden states ``Hs`` (T + 1, B, H), ``Hs[0] = 0``, and the output y (B, O)."""
    T, B, I = X.shape
    H = W["W_hh"].shape[0]
    Hs = np.zeros((T + 1, B, H), dtype=X.dtype)
    # The input product for every step at once: one (T*B, I) x (I, H) GEMM.
    A = (X.reshape(T * B, I) @ W["W_ih"].T).reshape(T, B, H)
    A += W["b"]
    W_hh_T = W["W_hh"].T
    for t in range(T):
        np.tanh(A[t] + Hs[t] @ W_hh_T, out=Hs[t + 1])
    y = Hs[T] @ W["W_y"].T + W["b_y"]
    return Hs, y


def np_output(W, X):
    """The output y (B, O) only, keeping just the current state (inference)."""
    T, B, I = X.shape
    A = (X.reshape(T * B, -1) @ W["W_ih"].T).reshape(T, B, -1)
    A += W["b"]
    W_hh_T = W["W_hh"].T
    h = np.tanh(A[0])
    for t in range(1, T):
        h = np.tanh(A[t] + h @ W_hh_T)
    return h @ W["W_y"].T + W["b_y"]


def np_loss_grad(W, X, d):
    """Mean squared error and its gradient (a dict like ``W``), by BPTT."""
    T, B, I = X.shape
    H = W["W_hh"].shape[0]
    Hs, y = np_forward(W, X)
    R = y - d
    loss = float(np.sum(R * R)) / R.size
    dy = (2.0 / R.size) * R                       # dE/dy (B, O)

    G = {"W_y": dy.T @ Hs[T], "b_y": dy.sum(axis=0)}
    dh = dy @ W["W_y"]                            # dE/dh_T (B, H)
    dA = np.empty((T, B, H), dtype=X.dtype)       # dE/da_t, a_t the pre-activation
    W_hh = W["W_hh"]
    for t in range(T - 1, -1, -1):
        dA[t] = dh * (1.0 - Hs[t + 1] * Hs[t + 1])   # tanh' = 1 - h^2
        dh = dA[t] @ W_hh                             # dE/dh_{t-1}
    # The weight gradients, one GEMM each over all T*B rows.
    dA = dA.reshape(T * B, H)
    G["W_ih"] = dA.T @ X.reshape(T * B, I)
    G["W_hh"] = dA.T @ Hs[:T].reshape(T * B, H)
    G["b"] = dA.sum(axis=0)
    return loss, G


def np_sgd_epoch_predict(X, y, H, B, dtype, seed):
    """What the estimator does, by hand: init, one epoch of plain SGD over
    consecutive batches of B samples, then predict every sample.

    X is sample-major (n, T, I), y is (n,).
    """
    n, T, I = X.shape
    rng = np.random.default_rng(seed)
    W = np_init(rng, I, H, O, dtype)
    X_tm = np.ascontiguousarray(X.swapaxes(0, 1))  # (T, n, I)
    d = y.reshape(n, O)
    for start in range(0, n, B):
        Xb = np.ascontiguousarray(X_tm[:, start:start + B])
        _, G = np_loss_grad(W, Xb, d[start:start + B])
        for name in W:
            W[name] -= LEARNING_RATE * G[name]
    return np_output(W, X_tm)[:, 0]


# Names of the NumPy reference's blocks in crnn's flat parameter layout.
CRNN_NAMES = {"W_ih": "W_ih_l0", "W_hh": "W_hh_l0", "b": "b_l0", "W_y": "W_y", "b_y": "b_y"}


def crnn_weights_as_numpy(network, params):
    P = network.layout.views(params)
    return {ours: P[theirs] for ours, theirs in CRNN_NAMES.items()}


# ===========================================================================
# PyTorch model: nn.RNN + nn.Linear (nn.RNN has two biases, b_ih and b_hh).
# ===========================================================================

def torch_model(I, H, dtype):
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    model = torch.nn.ModuleDict({
        "rnn": torch.nn.RNN(I, H, batch_first=False, nonlinearity="tanh"),
        "out": torch.nn.Linear(H, O),
    }).to(tdtype)
    return model


def torch_forward(model, X):
    _, h_n = model["rnn"](X)          # h_n: (1, B, H), the last state
    return model["out"](h_n[0])


def torch_load_crnn(model, network, params):
    """Copy crnn's weights into the PyTorch model (b_hh = 0)."""
    P = network.layout.views(params)
    with torch.no_grad():
        model["rnn"].weight_ih_l0.copy_(torch.from_numpy(P["W_ih_l0"]))
        model["rnn"].weight_hh_l0.copy_(torch.from_numpy(P["W_hh_l0"]))
        model["rnn"].bias_ih_l0.copy_(torch.from_numpy(P["b_l0"]))
        model["rnn"].bias_hh_l0.zero_()
        model["out"].weight.copy_(torch.from_numpy(P["W_y"]))
        model["out"].bias.copy_(torch.from_numpy(P["b_y"]))


# ===========================================================================
# Start-up check: the NumPy reference computes what crnn computes.
# ===========================================================================

def verify(tolerance=1e-10):
    rng = np.random.default_rng(0)
    ok = True
    for (B, T, I, H) in [(3, 7, 4, 5), (1, 20, 1, 16), (8, 12, 6, 9)]:
        network = RecurrentNetwork(I, H, O)
        params = network.init_params(np.random.default_rng(0), random_biases=True)
        X = rng.standard_normal((T, B, I))
        d = rng.standard_normal((B, O))
        loss, grad = network.loss_grad(params, X, d)
        G_crnn = network.layout.views(grad)
        W = crnn_weights_as_numpy(network, params)
        np_loss, G_np = np_loss_grad(W, X, d)
        errors = {"loss": abs(loss - np_loss) / max(1.0, abs(loss))}
        for ours, theirs in CRNN_NAMES.items():
            scale = max(1.0, float(np.max(np.abs(G_crnn[theirs]))))
            errors[ours] = float(np.max(np.abs(G_np[ours] - G_crnn[theirs]))) / scale
        out_err = float(np.max(np.abs(np_output(W, X) - network.output(params, X))))
        errors["output"] = out_err
        worst = max(errors, key=errors.get)
        case_ok = errors[worst] <= tolerance
        ok &= case_ok
        print(f"  numpy vs crnn  (B={B}, T={T}, I={I}, H={H}): max rel. error "
              f"{errors[worst]:.1e} ({worst}) {'ok' if case_ok else 'MISMATCH'}")

        if torch is not None:
            model = torch_model(I, H, np.float64)
            torch_load_crnn(model, network, params)
            Xt, dt = torch.from_numpy(X), torch.from_numpy(d)
            t_loss = torch.nn.functional.mse_loss(torch_forward(model, Xt), dt)
            t_loss.backward()
            t_grads = {
                "W_ih": model["rnn"].weight_ih_l0.grad, "W_hh": model["rnn"].weight_hh_l0.grad,
                "b": model["rnn"].bias_ih_l0.grad, "W_y": model["out"].weight.grad,
                "b_y": model["out"].bias.grad,
            }
            t_err = abs(t_loss.detach().item() - loss) / max(1.0, abs(loss))
            for ours, theirs in CRNN_NAMES.items():
                scale = max(1.0, float(np.max(np.abs(G_crnn[theirs]))))
                t_err = max(t_err, float(np.max(np.abs(
                    t_grads[ours].numpy() - G_crnn[theirs]))) / scale)
            torch_ok = t_err <= tolerance
            ok &= torch_ok
            print(f"  torch vs crnn  (B={B}, T={T}, I={I}, H={H}): max rel. error "
                  f"{t_err:.1e} {'ok' if torch_ok else 'MISMATCH'}")
    return ok


# ===========================================================================
# Timing.
# ===========================================================================

class Timing:
    """Budget of the adaptive, round-robin timer."""

    def __init__(self, quick, budget=None):
        # ~budget seconds per contender and case, in >= min_rounds rounds;
        # fast functions are looped so that one sample lasts ~budget/target_rounds.
        self.budget = budget if budget is not None else (0.05 if quick else 0.2)
        self.min_rounds = 3 if quick else 5
        self.target_rounds = 5 if quick else 11
        self.max_rounds = 1000


def _estimate(fn):
    """Seconds per call, after one warm-up call, over at least 10 ms."""
    fn()
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= 0.01:
            return elapsed / count


def measure(contenders, timing):
    """Median seconds per call of each contender, timed round-robin.

    ``contenders`` maps names to zero-argument callables. Every round calls
    each contender ``inner[name]`` times in a row (one sample) in the order
    given, so that all contenders share the machine's drifts.
    """
    estimate = {name: _estimate(fn) for name, fn in contenders.items()}
    sample_seconds = timing.budget / timing.target_rounds
    inner = {name: max(1, int(sample_seconds / est)) for name, est in estimate.items()}
    rounds = max(math.ceil(timing.budget / (inner[name] * estimate[name]))
                 for name in contenders)
    rounds = min(max(rounds, timing.min_rounds), timing.max_rounds)

    samples = {name: [] for name in contenders}
    gc_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in contenders.items():
                k = inner[name]
                start = time.perf_counter()
                for _ in range(k):
                    fn()
                samples[name].append((time.perf_counter() - start) / k)
    finally:
        if gc_enabled:
            gc.enable()

    result = {}
    for name, s in samples.items():
        s = np.asarray(s)
        q1, median, q3 = np.percentile(s, [25, 50, 75])
        result[name] = {
            "median_s": float(median), "min_s": float(s.min()),
            "q1_s": float(q1), "q3_s": float(q3),
            "rounds": rounds, "calls_per_sample": inner[name],
            "samples_s": [float(x) for x in s],
        }
    return result


# ===========================================================================
# Floating-point operation counts (2 per multiply-add, matmuls only).
# ===========================================================================

def forward_flops(B, T, I, H):
    return 2 * T * B * I * H + 2 * T * B * H * H + 2 * B * H * O


def train_flops(B, T, I, H):
    # Backward: dh recurrence + dW_hh + dW_ih + output layer ~ twice forward.
    return 3 * forward_flops(B, T, I, H)


def gemm_reference(M, K, N, dtype, timing):
    """GFLOP/s of scipy.linalg.blas ?gemm for C(M, N) = A(M, K) B(K, N)."""
    gemm = scipy_blas.sgemm if dtype == np.float32 else scipy_blas.dgemm
    rng = np.random.default_rng(3)
    a = np.asfortranarray(rng.standard_normal((M, K)), dtype=dtype)
    b = np.asfortranarray(rng.standard_normal((K, N)), dtype=dtype)
    c = np.zeros((M, N), dtype=dtype, order="F")
    # Fortran-ordered operands and overwrite_c: no copies, no allocation.
    r = measure({"gemm": lambda: gemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)}, timing)
    return 2.0 * M * K * N / r["gemm"]["median_s"] / 1e9, r["gemm"]


# ===========================================================================
# One case.
# ===========================================================================

def run_case(B, T, I, H, dtype, timing, with_torch):
    rng = np.random.default_rng(1234)
    network = RecurrentNetwork(I, H, O, dtype=dtype)
    params = network.init_params(np.random.default_rng(0), random_biases=True)
    grad = np.empty_like(params)
    X = rng.uniform(-1, 1, size=(T, B, I)).astype(dtype)
    d = rng.standard_normal((B, O)).astype(dtype)
    W = {k: v.copy() for k, v in crnn_weights_as_numpy(network, params).items()}

    train = {
        "crnn": lambda: network.loss_grad(params, X, d, 0.0, grad),
        "numpy": lambda: np_loss_grad(W, X, d),
    }
    infer = {
        "crnn": lambda: network.output(params, X),
        "numpy": lambda: np_output(W, X),
    }
    if with_torch:
        model = torch_model(I, H, dtype)
        Xt, dt = torch.from_numpy(X), torch.from_numpy(d)
        mse = torch.nn.functional.mse_loss

        def torch_train():
            model.zero_grad(set_to_none=True)
            mse(torch_forward(model, Xt), dt).backward()

        def torch_infer():
            with torch.inference_mode():
                return torch_forward(model, Xt)

        train["torch"] = torch_train
        infer["torch"] = torch_infer

    result = {"B": B, "T": T, "I": I, "H": H, "O": O, "dtype": np.dtype(dtype).name}
    result["train"] = measure(train, timing)
    result["infer"] = measure(infer, timing)

    # (c) one epoch + predict through the public estimator vs the NumPy RNN.
    n = EPOCH_BATCHES * B
    Xs = rng.uniform(-1, 1, size=(n, T, I)).astype(dtype)
    ys = rng.standard_normal(n).astype(dtype)

    def crnn_epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", crnn.ConvergenceWarning)
            model = crnn.RNNRegressor(hidden_size=H, max_iter=1, batch_size=B,
                                      shuffle=False, dtype=np.dtype(dtype).name,
                                      random_state=0)
            model.fit(Xs, ys)
        return model.predict(Xs)

    result["epoch"] = measure({
        "crnn": crnn_epoch,
        "numpy": lambda: np_sgd_epoch_predict(Xs, ys, H, B, dtype, 0),
    }, timing)
    result["epoch"]["n_samples"] = n

    # Where crnn's training step goes, through RecurrentNetwork only (the
    # kernels' own signatures are internal): output() is the forward pass,
    # loss_grad - output the backward pass plus the loss, and the same
    # network with g = identity on the same parameters shows the cost of the
    # element-wise tanh. Timed round-robin together, so the differences are
    # not skewed by drift between separate measurements.
    linear = RecurrentNetwork(I, H, O, activation="identity", dtype=dtype)
    parts = measure({
        "loss_grad": lambda: network.loss_grad(params, X, d, 0.0, grad),
        "output": lambda: network.output(params, X),
        "loss_grad_identity": lambda: linear.loss_grad(params, X, d, 0.0, grad),
        "output_identity": lambda: linear.output(params, X),
    }, timing)
    med = {name: parts[name]["median_s"] for name in parts}
    result["crnn_breakdown"] = {
        "loss_grad_s": med["loss_grad"],
        "forward_s": med["output"],
        "backward_and_loss_s": med["loss_grad"] - med["output"],
        "forward_identity_s": med["output_identity"],
        "loss_grad_identity_s": med["loss_grad_identity"],
        "tanh_forward_s": med["output"] - med["output_identity"],
        "raw": parts,
    }
    total = result["train"]["crnn"]["median_s"]

    result["flops"] = {"forward": forward_flops(B, T, I, H), "train": train_flops(B, T, I, H)}
    result["crnn_train_gflops"] = result["flops"]["train"] / total / 1e9
    result["crnn_infer_gflops"] = (result["flops"]["forward"]
                                   / result["infer"]["crnn"]["median_s"] / 1e9)
    rate_in, raw_in = gemm_reference(T * B, I, H, dtype, timing)
    rate_rec, raw_rec = gemm_reference(B, H, H, dtype, timing)
    result["gemm_reference"] = {
        "input_TBxI_IxH_gflops": rate_in, "recurrent_BxH_HxH_gflops": rate_rec,
        "raw_input": raw_in, "raw_recurrent": raw_rec,
    }
    return result


# ===========================================================================
# Report.
# ===========================================================================

def _ms(entry, name):
    return f"{entry[name]['median_s'] * 1e3:10.3f}" if name in entry else f"{'-':>10}"


def _ratio(entry, name):
    if name not in entry:
        return f"{'-':>8}"
    return f"{entry[name]['median_s'] / entry['crnn']['median_s']:8.2f}"


def print_tables(results):
    print()
    print("Median time per call (ms); ratios other/crnn: > 1 means crnn is faster.")
    header = (f"{'case (B,T,I,H)':<20} {'dtype':<8} {'what':<6} {'crnn':>10} {'numpy':>10} "
              f"{'torch':>10} {'np/crnn':>8} {'tc/crnn':>8} {'crnn GF/s':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        case = f"({r['B']},{r['T']},{r['I']},{r['H']})"
        for what in ("train", "infer", "epoch"):
            e = r[what]
            gf = {"train": f"{r['crnn_train_gflops']:9.2f}",
                  "infer": f"{r['crnn_infer_gflops']:9.2f}"}.get(what, f"{'':>9}")
            print(f"{case:<20} {r['dtype']:<8} {what:<6} {_ms(e, 'crnn')} {_ms(e, 'numpy')} "
                  f"{_ms(e, 'torch')} {_ratio(e, 'numpy')} {_ratio(e, 'torch')} {gf}")
    print()
    print("GEMM reference (scipy.linalg.blas ?gemm, same run) and where crnn's "
          "training step goes.")
    header = (f"{'case (B,T,I,H)':<20} {'dtype':<8} {'gemm TBxI.IxH':>13} "
              f"{'gemm BxH.HxH':>12} {'crnn train':>10} {'loss_grad':>9} {'forward':>9} "
              f"{'bwd+loss':>9} {'fwd g=id':>9} {'train g=id':>10}")
    print(header)
    print(f"{'':<29} {'GF/s':>13} {'GF/s':>12} {'GF/s':>10} {'ms':>9} {'ms':>9} "
          f"{'ms':>9} {'ms':>9} {'ms':>10}")
    print("-" * len(header))
    for r in results:
        case = f"({r['B']},{r['T']},{r['I']},{r['H']})"
        g, b = r["gemm_reference"], r["crnn_breakdown"]
        print(f"{case:<20} {r['dtype']:<8} {g['input_TBxI_IxH_gflops']:13.2f} "
              f"{g['recurrent_BxH_HxH_gflops']:12.2f} {r['crnn_train_gflops']:10.2f} "
              f"{b['loss_grad_s'] * 1e3:9.3f} {b['forward_s'] * 1e3:9.3f} "
              f"{b['backward_and_loss_s'] * 1e3:9.3f} {b['forward_identity_s'] * 1e3:9.3f} "
              f"{b['loss_grad_identity_s'] * 1e3:10.3f}")
    print()
    print("train: forward + backward (loss and full gradient) on one batch; infer: "
          "forward only;\nepoch: RNNRegressor(max_iter=1).fit + predict on 8*B samples "
          "vs the NumPy RNN with plain SGD.\nGF/s counts 2 flops per multiply-add of every "
          "matmul; a training step = 3x forward.\nsecond table, timed round-robin together: "
          "loss_grad; forward = output();\nbwd+loss = loss_grad - forward; g=id = the "
          "same network and parameters with an identity\nhidden activation instead of "
          "tanh (what the step costs without the element-wise tanh).")


def source_state():
    """The git commit of the crnn that was imported, and whether its checkout
    has uncommitted source changes: what was measured."""
    root = os.path.dirname(os.path.abspath(crnn.__file__))
    state = {"crnn_file": crnn.__file__, "commit": None, "uncommitted_source_changes": None}

    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True,
                              text=True, timeout=10)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode == 0:
            state["commit"] = head.stdout.strip()
            top = git("rev-parse", "--show-toplevel").stdout.strip()
            dirty = git("status", "--porcelain", "--", os.path.join(top, "src"),
                        os.path.join(top, "setup.py"), os.path.join(top, "pyproject.toml"))
            state["uncommitted_source_changes"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return state


def per_call_floor(dtype, timing):
    """A training step at B = T = I = H = 1: the fixed cost of one call."""
    network = RecurrentNetwork(1, 1, O, dtype=dtype)
    params = network.init_params(np.random.default_rng(0), random_biases=True)
    grad = np.empty_like(params)
    X = np.ones((1, 1, 1), dtype)
    d = np.ones((1, O), dtype)
    W = {k: v.copy() for k, v in crnn_weights_as_numpy(network, params).items()}
    contenders = {
        "crnn": lambda: network.loss_grad(params, X, d, 0.0, grad),
        "numpy": lambda: np_loss_grad(W, X, d),
    }
    if torch is not None:
        model = torch_model(1, 1, dtype)
        Xt, dt = torch.from_numpy(X), torch.from_numpy(d)

        def torch_train():
            model.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(torch_forward(model, Xt), dt).backward()

        contenders["torch"] = torch_train
    return measure(contenders, timing)


def library_report(threads):
    libs = []
    for info in threadpool_info():
        entry = {k: info.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                          "architecture", "threading_layer",
                                          "num_threads", "filepath")}
        libs.append(entry)
    print(f"Threads: {threads} (threadpoolctl.threadpool_limits"
          f"{', torch.set_num_threads' if torch is not None else ''})")
    print("Libraries reported by threadpoolctl:")
    for e in libs:
        where = os.path.basename(os.path.dirname(e["filepath"] or ""))
        print(f"  {e['user_api']:<7} {e['internal_api']:<9} version={e['version']} "
              f"arch={e['architecture']} threads={e['num_threads']}  "
              f"[{where}/{os.path.basename(e['filepath'] or '')}]")
    print("  (crnn's kernels call scipy.linalg.cython_blas, i.e. scipy's BLAS; the "
          "NumPy reference uses numpy's.)")
    torch_info = None
    if torch is not None:
        blas = "?"
        for part in torch.__config__.show().replace(",", "\n").splitlines():
            if "BLAS_INFO=" in part:
                blas = part.split("=", 1)[1].strip()
        torch_info = {"version": torch.__version__, "num_threads": torch.get_num_threads(),
                      "blas": blas}
        print(f"  torch {torch.__version__}: BLAS={blas}, "
              f"num_threads={torch.get_num_threads()}")
    return libs, torch_info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="only the first two cases, shorter timing budget")
    parser.add_argument("--json", metavar="PATH", help="write every measurement here")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (1)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per contender and case (0.2; --quick 0.05)")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype).type

    limiter = threadpool_limits(limits=args.threads)  # noqa: F841 (kept alive)
    if torch is not None:
        torch.set_num_threads(args.threads)

    state = source_state()
    print(f"crnn imported from {state['crnn_file']}: commit {state['commit'] or 'unknown'}"
          f"{' + uncommitted source changes' if state['uncommitted_source_changes'] else ''}")
    print(f"crnn {crnn.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"Python {platform.python_version()}, {platform.processor() or platform.machine()}")
    libs, torch_info = library_report(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load is not None:
        print(f"Load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"on {os.cpu_count()} CPUs")
    if torch is None:
        print("PyTorch is not importable: its column is skipped.")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            print(f"  note: {var}={os.environ[var]} is set")

    print("Checking the NumPy reference against crnn (float64, tolerance 1e-10):")
    if not verify():
        print("ABORT: the NumPy reference does not compute crnn's loss and gradient.",
              file=sys.stderr)
        return 1

    timing = Timing(args.quick, args.budget)
    floor = per_call_floor(dtype, timing)
    print("Fixed cost of one training-step call (B = T = I = H = 1): "
          + ", ".join(f"{name} {floor[name]['median_s'] * 1e6:.1f} us" for name in floor))
    cases = QUICK_CASES if args.quick else CASES
    results = []
    started = time.perf_counter()
    for (B, T, I, H) in cases:
        t0 = time.perf_counter()
        results.append(run_case(B, T, I, H, dtype, timing, torch is not None))
        print(f"  case (B={B}, T={T}, I={I}, H={H}) {args.dtype}: done in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    print_tables(results)
    print(f"\nTotal benchmark time {time.perf_counter() - started:.1f} s.")

    if args.json:
        out = {
            "argv": sys.argv, "threads": args.threads, "dtype": args.dtype,
            "quick": args.quick,
            "timing": {"budget_s": timing.budget, "min_rounds": timing.min_rounds,
                       "target_rounds": timing.target_rounds},
            "versions": {"crnn": crnn.__version__, "numpy": np.__version__,
                         "scipy": scipy.__version__, "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                        "loadavg_before": load,
                        "loadavg_after": os.getloadavg() if load is not None else None},
            "threadpool_info": libs, "torch": torch_info, "source": state,
            "per_call_floor": floor,
            "estimator_solver": "adam (RNNRegressor default)", "numpy_solver": "plain SGD",
            "learning_rate": LEARNING_RATE,
            "cases": results,
        }
        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
