"""Benchmark crnn's Elman, LSTM and GRU networks against NumPy and PyTorch.

Usage::

    python benchmarks/bench.py [--quick] [--cells elman,lstm,gru]
                               [--dtype float32|float64|float32,float64]
                               [--threads 1|1,2] [--json out.json] [--budget S]
                               [--no-ragged] [--no-fit] [--no-memory] [--extras]
                               [--no-scaling] [--no-mpi] [--no-stepper]
                               [--no-tokens]

Sections, each interleaving its contenders:

* memory (first, in fresh subprocesses): peak memory of one training step of
  the LSTM (64, 50, 128, 512) in float32, crnn vs PyTorch, by tracemalloc
  (sees NumPy's buffers, not PyTorch's allocator) and by the increase of
  ``ru_maxrss`` across the step (any allocator).
* for each thread count (``--threads 1,2``: threadpoolctl
  ``threadpool_limits(n)`` for crnn's and NumPy's BLAS, ``torch.set_num_threads(n)``):
  the overhead floor (a training step at B = T = I = H = 1), then for every
  cell, dtype and case (B, T, I, H) -- batch size, sequence length, input
  size, hidden size; one output, sequence to one, squared error -- on the
  same random data and the same weights:

  * ``train``: one training step, forward + backward (loss and the full
    gradient) on one packed batch. crnn: ``RecurrentNetwork.loss_grad`` into a
    preallocated gradient buffer; NumPy (Elman only): :func:`np_loss_grad`
    below; PyTorch: ``zero_grad``, ``nn.RNN``/``nn.LSTM``/``nn.GRU`` +
    ``nn.Linear`` forward, MSE loss, ``backward``.
  * ``infer``: the forward pass only (crnn ``RecurrentNetwork.output``,
    PyTorch under ``torch.inference_mode()``, and in float32, when onnx
    and onnxruntime are installed, ONNX Runtime running ``crnn.to_onnx``'s
    graph of the same weights on as many intra-op threads).
  * achieved GFLOP/s and, as the limit, scipy's ?gemm rate at the input
    product's and one recurrent step's shapes in the same run.
  * with ``--extras``, ``epoch``: ``crnn.RNNRegressor(max_iter=1)`` on
    ``8 * B`` samples vs the NumPy RNN (SGD) and PyTorch (Adam), and the
    forward/backward breakdown of crnn's step.

  and the end-to-end ``fit``: ``crnn.RNNRegressor`` (Adam, batch 32, 5
  epochs, no early stop) vs an equivalent PyTorch loop on n = 2048 sequences
  (T = 50, I = 8), H = 32 and 64.

A last section times crnn's training step on one batch of B = 64 sequences
(I = 32, H = 128) whose lengths are (a) all 100, (b) uniform in [1, 100],
(c) one of 100 and the rest 10, to show that the cost follows the number of
real steps (the sum of the lengths), not B * T_max; next to it PyTorch's
step on the same batches as PackedSequences and on the padded batch.

Then one step of one stream (``benchmarks/stepper.py``): crnn's
``stream.step`` and its compiled step, a PyTorch cell loop, and ONNX
Runtime one step per run; and ``generate``'s cost per token against a
PyTorch sampling loop. Then a training step on token ids
(``benchmarks/tokens.py``): crnn's embedding (a row gather, a scatter-add)
against the same network fed one-hot vectors, and PyTorch's
``nn.Embedding`` + ``nn.LSTM``. Then, with no thread limit set anywhere (``benchmarks/scaling.py``), the
scaling section -- crnn's data-parallel training step and ``predict`` with
``n_jobs = k`` against PyTorch with ``torch.set_num_threads(k)``, k = 1 ..
cores, and both libraries out of the box -- and the MPI section: one epoch
of ``crnn.mpi.fit`` on 1 and 2 ranks.

The contenders run round-robin (crnn, numpy, torch, crnn, numpy, torch, ...)
so that slow drifts of the machine hit them all alike, and the median of the
repeats is reported. BLAS threads are pinned with threadpoolctl and
PyTorch's with ``torch.set_num_threads``.

This is a measurement script: it asserts nothing about speed. It aborts only
if the NumPy reference or PyTorch (given the same weights) disagrees with
crnn's loss, gradient or output, since then the comparison would be
meaningless.
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
try:
    import onnx  # noqa: F401  (crnn.to_onnx needs it)
    import onnxruntime
except ImportError:  # the ONNX Runtime column is skipped
    onnxruntime = None

import scipy
import scipy.linalg.blas as scipy_blas
from threadpoolctl import threadpool_info, threadpool_limits

import crnn
from crnn._cells import CELLS, cell_type
import scaling                  # before any thread setting: torch's default count
import stepper
import tokens
from crnn._network import RecurrentNetwork
from crnn.kernels import blas as kernels_blas
from crnn._validation import check_sequences

# (B, T, I, H)
CASES = [
    (1, 100, 8, 32),
    (32, 50, 32, 128),
    (64, 50, 128, 512),
    (32, 100, 8, 32),
    (64, 50, 64, 256),
    (1, 1000, 1, 64),
]
QUICK_CASES = CASES[:2]
SMALL_PRODUCT = 10 ** 6  # crnn.kernels.blas: the packed product's lower bound
O = 1                    # one regression output
EPOCH_BATCHES = 8        # the epoch case trains on n = 8 * B samples
LEARNING_RATE = 1e-3
# The end-to-end fit section: n sequences of length T with I features.
FIT_N, FIT_T, FIT_I, FIT_B, FIT_EPOCHS, FIT_HIDDEN = 2048, 50, 8, 32, 5, (32, 64)
QUICK_FIT_N, QUICK_FIT_EPOCHS, QUICK_FIT_HIDDEN = 512, 2, (32,)
# The memory section: one training step of the large LSTM in float32.
MEMORY_CASE = ("lstm", 64, 50, 128, 512, "float32")
# The ragged-lengths section.
RAGGED_B, RAGGED_T, RAGGED_I, RAGGED_H = 64, 100, 32, 128


def ragged_lengths():
    """The three length profiles of the ragged section, fixed by a seed."""
    B, T = RAGGED_B, RAGGED_T
    rng = np.random.default_rng(7)
    return {
        "(a) all 100": np.full(B, T),
        "(b) U[1,100]": rng.integers(1, T + 1, size=B),
        "(c) 100+63x10": np.r_[T, np.full(B - 1, 10)],
    }


def pack(X, lengths=None):
    """A crnn packed batch of sequences ``X`` ((B, T, I) array or list)."""
    return check_sequences(X, X[0].dtype if isinstance(X, list) else X.dtype,
                           lengths).pack()


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
# PyTorch model: nn.RNN / nn.LSTM / nn.GRU + nn.Linear.
#
# PyTorch has two biases per layer, b_ih and b_hh; crnn has one, b = b_ih +
# b_hh, except in the GRU's candidate gate n = tanh(W_in x + b_in + r (W_hn h
# + b_hn)), where b_hn sits inside the reset gate's product: crnn's GRU has
# b = [b_ir + b_hr, b_iz + b_hz, b_in] and a separate b_hn.
# ===========================================================================

def torch_model(cell, I, H, dtype, seed=0, default_init=False):
    """A PyTorch model of ``cell`` with random weights and random biases
    (PyTorch's default initialisation with ``default_init``)."""
    tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    torch.manual_seed(seed)
    spec = cell_type(cell)
    module = getattr(torch.nn, spec.torch_class.split(".")[-1])     # nn.RNN, nn.LSTM, ...
    rnn = module(I, H, **({"nonlinearity": "tanh"} if spec.has_activation else {}))
    model = torch.nn.ModuleDict({"rnn": rnn, "out": torch.nn.Linear(H, O)}).to(tdtype)
    if not default_init:
        with torch.no_grad():
            for bias in (rnn.bias_ih_l0, rnn.bias_hh_l0):
                bias.uniform_(-0.5, 0.5)
    return model


def torch_forward(model, X):
    """Output (B, O) from the last state; ``X`` (T, B, I) or a PackedSequence."""
    _, h_n = model["rnn"](X)          # h_n: (1, B, H), or (h_n, c_n) for the LSTM
    if isinstance(h_n, tuple):
        h_n = h_n[0]
    return model["out"](h_n[0])


def crnn_params_from_torch(network, model, cell):
    """crnn's flat parameters holding the PyTorch model's weights."""
    params = network.layout.zeros(network.dtype)
    P = network.layout.views(params)
    rnn = model["rnn"]

    def np_of(t):
        return t.detach().cpu().numpy()

    P["W_ih_l0"][...] = np_of(rnn.weight_ih_l0)
    P["W_hh_l0"][...] = np_of(rnn.weight_hh_l0)
    b_ih, b_hh = np_of(rnn.bias_ih_l0), np_of(rnn.bias_hh_l0)
    if cell == "gru":
        H = network.H
        P["b_l0"][:2 * H] = b_ih[:2 * H] + b_hh[:2 * H]
        P["b_l0"][2 * H:] = b_ih[2 * H:]
        P["b_hn_l0"][...] = b_hh[2 * H:]
    else:
        P["b_l0"][...] = b_ih + b_hh
    P["W_y"][...] = np_of(model["out"].weight)
    P["b_y"][...] = np_of(model["out"].bias)
    return params


def torch_grads_as_crnn(network, model, cell):
    """PyTorch's gradients mapped onto crnn's layout.

    Where b_ih and b_hh only enter as a sum (everywhere but the GRU's b_hn),
    PyTorch gives both the same gradient, which is crnn's d/d b. Returns the
    gradient and the largest relative difference between those two copies
    (zero unless PyTorch disagrees with itself).
    """
    grad = network.layout.zeros(np.float64)
    G = network.layout.views(grad)
    rnn = model["rnn"]
    G["W_ih_l0"][...] = rnn.weight_ih_l0.grad.numpy()
    G["W_hh_l0"][...] = rnn.weight_hh_l0.grad.numpy()
    g_ih, g_hh = rnn.bias_ih_l0.grad.numpy(), rnn.bias_hh_l0.grad.numpy()
    G["b_l0"][...] = g_ih
    summed = slice(None)
    if cell == "gru":
        H = network.H
        G["b_hn_l0"][...] = g_hh[2 * H:]
        summed = slice(0, 2 * H)
    G["W_y"][...] = model["out"].weight.grad.numpy()
    G["b_y"][...] = model["out"].bias.grad.numpy()
    return grad, _max_rel(g_hh[summed], g_ih[summed])


def torch_input(X_tm, lengths=None):
    """A time-major (T, B, I) tensor, or a PackedSequence with ``lengths``."""
    Xt = torch.from_numpy(X_tm)
    if lengths is None:
        return Xt
    return torch.nn.utils.rnn.pack_padded_sequence(
        Xt, torch.as_tensor(lengths), enforce_sorted=False)


# ===========================================================================
# Start-up check: the NumPy reference and PyTorch compute what crnn computes.
# ===========================================================================

VERIFY_CASES = [  # (B, T, I, H, ragged)
    (3, 7, 4, 5, False),
    (1, 20, 1, 16, False),
    (8, 12, 6, 9, False),
    (6, 11, 3, 7, True),
]


def _max_rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(b))))


def _verify_numpy(B, T, I, H, rng):
    network = RecurrentNetwork(I, H, O)
    params = network.init_params(np.random.default_rng(0), random_biases=True)
    X_bf = rng.standard_normal((B, T, I))
    d = rng.standard_normal((B, O))
    batch = pack(X_bf)
    target = batch.per_sequence(d)
    loss, grad = network.loss_grad(params, batch, target)
    G_crnn = network.layout.views(grad)
    W = crnn_weights_as_numpy(network, params)
    X_tm = batch.X.reshape(T, B, I)
    np_loss, G_np = np_loss_grad(W, X_tm, target)
    errors = {"loss": abs(loss - np_loss) / max(1.0, abs(loss))}
    for ours, theirs in CRNN_NAMES.items():
        errors[ours] = _max_rel(G_np[ours], G_crnn[theirs])
    Y, _ = network.output(params, batch)
    errors["output"] = _max_rel(np_output(W, X_tm), Y)
    return errors


def _verify_torch(cell, B, T, I, H, ragged, rng):
    model = torch_model(cell, I, H, np.float64, seed=B * 1000 + T)
    network = RecurrentNetwork(I, H, O, cell=cell)
    params = crnn_params_from_torch(network, model, cell)
    lengths = (rng.integers(1, T + 1, size=B) if ragged else np.full(B, T))
    lengths[0] = T
    X_bf = rng.standard_normal((B, T, I))
    for i, L in enumerate(lengths):
        X_bf[i, L:] = 0.0
    d = rng.standard_normal((B, O))
    # crnn: a list of sequences of their own lengths, packed longest first;
    # targets and outputs in packed order.
    batch = pack([X_bf[i, :L] for i, L in enumerate(lengths)])
    loss, grad = network.loss_grad(params, batch, batch.per_sequence(d))
    Y, _ = network.output(params, batch)
    Y = batch.unpack_last(Y)
    # PyTorch: the padded batch with its lengths.
    Xt = torch_input(np.ascontiguousarray(X_bf.swapaxes(0, 1)), lengths if ragged else None)
    t_out = torch_forward(model, Xt)
    t_loss = torch.nn.functional.mse_loss(t_out, torch.from_numpy(d))
    t_loss.backward()
    t_grad, bias_split = torch_grads_as_crnn(network, model, cell)
    errors = {"loss": abs(t_loss.item() - loss) / max(1.0, abs(loss)),
              "torch b_ih vs b_hh": bias_split,
              "output": _max_rel(t_out.detach().numpy(), Y)}
    G_crnn, G_t = network.layout.views(grad), network.layout.views(t_grad)
    for name in network.layout.names:
        errors[name] = _max_rel(G_t[name], G_crnn[name])
    return errors


def verify(cells, tolerance=1e-10):
    """True if every check passes; prints one line per check."""
    rng = np.random.default_rng(0)
    ok = True

    def report(who, B, T, I, H, ragged, errors):
        worst = max(errors, key=errors.get)
        good = errors[worst] <= tolerance
        print(f"  {who:<14} (B={B}, T={T}, I={I}, H={H}{', ragged' if ragged else ''}): "
              f"max rel. error {errors[worst]:.1e} ({worst}) "
              f"{'ok' if good else 'MISMATCH'}")
        return good

    for (B, T, I, H, ragged) in VERIFY_CASES:
        if not ragged:
            ok &= report("numpy vs crnn", B, T, I, H, ragged, _verify_numpy(B, T, I, H, rng))
    if torch is not None:
        for cell in cells:
            for (B, T, I, H, ragged) in VERIFY_CASES:
                errors = _verify_torch(cell, B, T, I, H, ragged, rng)
                ok &= report(f"torch {cell}", B, T, I, H, ragged, errors)
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
    """Seconds per call, after one warm-up call, over at least 10 ms.

    A warm-up call of 50 ms or more is taken as the estimate itself: such a
    function is called once per sample anyway, and a second call would only
    lengthen the run.
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first >= 0.05:
        return first
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= 0.01:
            return elapsed / count


def measure(contenders, timing, pause=0.0):
    """Median seconds per call of each contender, timed round-robin.

    ``contenders`` maps names to zero-argument callables. Every round calls
    each contender ``inner[name]`` times in a row (one sample) in the order
    given, so that all contenders share the machine's drifts. ``pause``
    seconds of sleep (not timed) before each sample let the previous
    contender's spinning worker threads (OpenMP's, BLAS's) go idle.
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
                if pause:
                    time.sleep(pause)
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

def forward_flops(cell, B, T, I, H, steps=None):
    """``steps``: real sequence-steps (B * T for equal lengths)."""
    G = cell_type(cell).n_gates * H
    steps = B * T if steps is None else steps
    return 2 * steps * I * G + 2 * steps * H * G + 2 * B * H * O


def train_flops(cell, B, T, I, H, steps=None):
    # Backward: dh recurrence + dW_hh + dW_ih + output layer ~ twice forward.
    return 3 * forward_flops(cell, B, T, I, H, steps)


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


PEAK_N = 2048


def gemm_peak(dtype, timing):
    """The machine's matrix-product peak as the libraries reach it: GFLOP/s
    of one ``PEAK_N``-cubed product through scipy's ?gemm (crnn's BLAS) and
    through ``torch.mm`` (MKL), on the current thread setting."""
    rate, _ = gemm_reference(PEAK_N, PEAK_N, PEAK_N, dtype, timing)
    out = {"n": PEAK_N, "scipy_gflops": rate}
    if torch is not None:
        rng = np.random.default_rng(3)
        a = torch.from_numpy(rng.standard_normal((PEAK_N, PEAK_N)).astype(dtype))
        b, c = a.clone(), torch.empty_like(a)
        r = measure({"mm": lambda: torch.mm(a, b, out=c)}, timing)
        out["torch_gflops"] = 2.0 * PEAK_N ** 3 / r["mm"]["median_s"] / 1e9
    return out


def _gemm_variants(M, K, N, dtype, rng):
    """Every way scipy's ?gemm can compute one product P(M, N) = A(M, K) B(K, N):
    either operand stored as is or transposed, the result as P or as P^T.
    Returns zero-argument callables (Fortran-ordered operands, preallocated
    output: no copies, no allocation)."""
    gemm = scipy_blas.sgemm if dtype == np.float32 else scipy_blas.dgemm
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    variants = []
    for out_t in (False, True):
        # P^T(N, M) = B^T(N, K) A^T(K, M)
        left, right, shape = (b.T, a.T, (N, M)) if out_t else (a, b, (M, N))
        c = np.zeros(shape, dtype=dtype, order="F")
        for ta in (0, 1):
            for tb in (0, 1):
                lhs = np.asfortranarray(left.T if ta else left)
                rhs = np.asfortranarray(right.T if tb else right)
                variants.append(lambda lhs=lhs, rhs=rhs, c=c, ta=ta, tb=tb: gemm(
                    1.0, lhs, rhs, beta=0.0, c=c, overwrite_c=1, trans_a=ta, trans_b=tb))
    return variants


def step_gemms(cell, B, T, I, H):
    """The matrix products of one training step of one layer, as
    ``(count, (M, K, N))``: the input product, one recurrent product per step
    forward and one per step backward, and the two weight gradients."""
    G = cell_type(cell).n_gates * H
    N = B * T
    return [(1, (N, I, G)), (T, (B, H, G)), (T, (B, G, H)), (1, (G, N, I)), (1, (G, N, H))]


def gemm_floor(cell, B, T, I, H, dtype, timing):
    """The time the matrix products of one training step take alone, each at
    its fastest orientation through scipy.linalg.blas (minus the Python cost
    of one wrapper call, measured on a 1 x 1 x 1 product): a lower bound for
    any implementation of the step on this BLAS."""
    rng = np.random.default_rng(4)
    short = Timing(True, timing.budget / 4)
    empty = _gemm_variants(1, 1, 1, dtype, rng)[0]
    call_s = measure({"empty": empty}, short)["empty"]["median_s"]
    total, shapes = 0.0, []
    for count, (M, K, N) in step_gemms(cell, B, T, I, H):
        fns = dict(enumerate(_gemm_variants(M, K, N, dtype, rng)))
        best = min(e["median_s"] for e in measure(fns, short).values())
        best = max(best - call_s, 0.0)
        shapes.append({"count": count, "M": M, "K": K, "N": N, "best_s": best,
                       "gflops": 2.0 * M * K * N / best / 1e9 if best else None})
        total += count * best
    return {"floor_s": total, "wrapper_call_s": call_s, "products": shapes}


# ===========================================================================
# One case.
# ===========================================================================

def make_problem(cell, B, T, I, H, dtype, with_torch, rng):
    """crnn network, parameters, packed batch, targets; the same weights in
    NumPy (Elman) and PyTorch form."""
    network = RecurrentNetwork(I, H, O, cell=cell, dtype=dtype)
    model = None
    if with_torch:
        model = torch_model(cell, I, H, dtype)
        params = crnn_params_from_torch(network, model, cell)
    else:
        params = network.init_params(np.random.default_rng(0), random_biases=True)
    X_bf = rng.uniform(-1, 1, size=(B, T, I)).astype(dtype)
    d = rng.standard_normal((B, O)).astype(dtype)
    batch = pack(X_bf)
    target = batch.per_sequence(d)
    return network, params, model, X_bf, d, batch, target


def torch_epoch_predict(cell, X, y, H, B, dtype, seed):
    """PyTorch doing what the estimator does: init, one epoch of Adam over
    consecutive batches of B samples, then predict every sample."""
    n, T, I = X.shape
    model = torch_model(cell, I, H, dtype, seed)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    Xt = torch.from_numpy(np.ascontiguousarray(X.swapaxes(0, 1)))  # (T, n, I)
    yt = torch.from_numpy(y.reshape(n, O))
    for start in range(0, n, B):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(torch_forward(model, Xt[:, start:start + B]),
                                            yt[start:start + B])
        loss.backward()
        opt.step()
    with torch.inference_mode():
        return torch_forward(model, Xt)[:, 0].numpy()


def ort_infer(cell, network, params, X_bf, threads):
    """ONNX Runtime running crnn's own export (``crnn.to_onnx``) of the same
    weights, on ``threads`` intra-op threads: a zero-argument callable, or
    None without onnx and onnxruntime, or in float64 (ONNX Runtime's CPU
    recurrent operators run float32 only). Aborts if its output is not
    crnn's to 1e-4."""
    if onnxruntime is None or params.dtype != np.float32:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crnn.ConvergenceWarning)
        model = crnn.RNNRegressor(network.H, cell=cell, dtype="float32", max_iter=1,
                                  random_state=0).fit(X_bf[:1], np.zeros(1))
    model.params_ = params.copy()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(
        crnn.to_onnx(model, lengths=False).SerializeToString(), options,
        providers=["CPUExecutionProvider"])
    feeds = {"X": np.ascontiguousarray(X_bf)}
    expected = network.output(params, pack(X_bf))[0].ravel()
    got = session.run(None, feeds)[0].ravel()
    if np.abs(got - expected).max() > 1e-4:
        raise SystemExit(f"ABORT: ONNX Runtime's output differs from crnn's by "
                         f"{np.abs(got - expected).max():.2e}")
    return lambda: session.run(None, feeds)


def run_case(cell, B, T, I, H, dtype, timing, with_torch, extras=False, threads=1):
    rng = np.random.default_rng(1234)
    network, params, model, X_bf, d, batch, target = make_problem(
        cell, B, T, I, H, dtype, with_torch, rng)
    grad = np.empty_like(params)
    X_tm = batch.X.reshape(T, B, I)
    train = {"crnn": lambda: network.loss_grad(params, batch, target, 0.0, grad)}
    infer = {"crnn": lambda: network.output(params, batch)}
    if cell == "elman":
        W = {k: v.copy() for k, v in crnn_weights_as_numpy(network, params).items()}
        train["numpy"] = lambda: np_loss_grad(W, X_tm, target)
        infer["numpy"] = lambda: np_output(W, X_tm)
    if with_torch:
        Xt, dt = torch.from_numpy(X_tm), torch.from_numpy(target)
        mse = torch.nn.functional.mse_loss

        def torch_train():
            model.zero_grad(set_to_none=True)
            mse(torch_forward(model, Xt), dt).backward()

        def torch_infer():
            with torch.inference_mode():
                return torch_forward(model, Xt)

        train["torch"] = torch_train
        infer["torch"] = torch_infer
    ort = ort_infer(cell, network, params, X_bf, threads)
    if ort is not None:
        infer["ort"] = ort

    result = {"cell": cell, "B": B, "T": T, "I": I, "H": H, "O": O,
              "dtype": np.dtype(dtype).name}
    result["train"] = measure(train, timing)
    result["infer"] = measure(infer, timing)
    result["flops"] = {"forward": forward_flops(cell, B, T, I, H),
                       "train": train_flops(cell, B, T, I, H)}
    for what in ("train", "infer"):
        flops = result["flops"]["forward" if what == "infer" else "train"]
        result[f"{what}_gflops"] = {name: flops / e["median_s"] / 1e9
                                    for name, e in result[what].items()}
    G = cell_type(cell).n_gates * H
    rate_in, raw_in = gemm_reference(T * B, I, G, dtype, timing)
    rate_rec, raw_rec = gemm_reference(B, H, G, dtype, timing)
    result["gemm_reference"] = {
        "input_TBxI_IxG_gflops": rate_in, "recurrent_BxH_HxG_gflops": rate_rec,
        "raw_input": raw_in, "raw_recurrent": raw_rec,
    }
    result["gemm_floor"] = gemm_floor(cell, B, T, I, H, dtype, timing)
    if not extras:
        return result

    # One epoch + predict through the public estimator vs the NumPy RNN and
    # PyTorch's Adam loop.
    n = EPOCH_BATCHES * B
    Xs = rng.uniform(-1, 1, size=(n, T, I)).astype(dtype)
    ys = rng.standard_normal(n).astype(dtype)

    def crnn_epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", crnn.ConvergenceWarning)
            est = crnn.RNNRegressor(cell=cell, hidden_size=H, max_iter=1, batch_size=B,
                                    shuffle=False, learning_rate=LEARNING_RATE,
                                    dtype=np.dtype(dtype).name, random_state=0)
            est.fit(Xs, ys)
        return est.predict(Xs)

    epoch = {"crnn": crnn_epoch}
    if cell == "elman":
        epoch["numpy"] = lambda: np_sgd_epoch_predict(Xs, ys, H, B, dtype, 0)
    if with_torch:
        epoch["torch"] = lambda: torch_epoch_predict(cell, Xs, ys, H, B, dtype, 0)
    result["epoch"] = measure(epoch, timing)
    result["epoch"]["n_samples"] = n

    # Where crnn's training step goes, through RecurrentNetwork only (the
    # kernels' own signatures are internal): output() is the forward pass,
    # loss_grad - output the backward pass plus the loss; for the Elman cell,
    # the same network with g = identity on the same parameters shows the
    # cost of the element-wise tanh. Timed round-robin together, so the
    # differences are not skewed by drift between separate measurements.
    parts_fns = {
        "loss_grad": lambda: network.loss_grad(params, batch, target, 0.0, grad),
        "output": lambda: network.output(params, batch),
    }
    if cell == "elman":
        linear = RecurrentNetwork(I, H, O, activation="identity", dtype=dtype)
        parts_fns["loss_grad_identity"] = lambda: linear.loss_grad(params, batch, target,
                                                                   0.0, grad)
        parts_fns["output_identity"] = lambda: linear.output(params, batch)
    parts = measure(parts_fns, timing)
    med = {name: parts[name]["median_s"] for name in parts}
    result["crnn_breakdown"] = {
        "loss_grad_s": med["loss_grad"],
        "forward_s": med["output"],
        "backward_and_loss_s": med["loss_grad"] - med["output"],
        "forward_identity_s": med.get("output_identity"),
        "loss_grad_identity_s": med.get("loss_grad_identity"),
        "raw": parts,
    }
    return result


# ===========================================================================
# End-to-end fit: the public estimator against a PyTorch training loop.
# ===========================================================================

def fit_data(n, T, I, dtype, seed=5):
    """A fixed regression problem: n sequences (n, T, I), one target each."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, T, I)).astype(dtype)
    y = (X[:, -10:, :].mean(axis=(1, 2)) + 0.1 * rng.standard_normal(n)).astype(dtype)
    return X, y


def crnn_fit(cell, H, X, y, epochs, B, dtype):
    """RNNRegressor trained for exactly ``epochs`` epochs (tol = 0 and a huge
    n_iter_no_change: no early stop), Adam, consecutive batches of B."""
    est = crnn.RNNRegressor(hidden_size=H, cell=cell, solver="adam",
                            learning_rate=LEARNING_RATE, batch_size=B, max_iter=epochs,
                            shuffle=False, tol=0.0, n_iter_no_change=10 ** 9,
                            dtype=np.dtype(dtype).name, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crnn.ConvergenceWarning)
        est.fit(X, y)
    assert est.n_iter_ == epochs, est.n_iter_
    return est


def torch_fit(cell, H, X, y, epochs, B, dtype):
    """The same model in PyTorch (nn.RNN/LSTM/GRU + Linear on the last state),
    torch.optim.Adam with the same learning rate, the same consecutive
    batches, the same number of epochs, MSE; the epoch loss is accumulated
    like the estimator's (one .item() per batch)."""
    n, T, I = X.shape
    model = torch_model(cell, I, H, dtype, seed=0, default_init=True)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    Xt = torch.from_numpy(np.ascontiguousarray(X.swapaxes(0, 1)))  # (T, n, I)
    yt = torch.from_numpy(np.ascontiguousarray(y).reshape(n, O))
    mse = torch.nn.functional.mse_loss
    for _ in range(epochs):
        total = 0.0
        for start in range(0, n, B):
            opt.zero_grad(set_to_none=True)
            loss = mse(torch_forward(model, Xt[:, start:start + B]), yt[start:start + B])
            loss.backward()
            opt.step()
            total += loss.item() * min(B, n - start)
    return model, total / n


def run_fit(cell, H, dtype, quick, timing, with_torch):
    """Seconds of ``fit`` for crnn and PyTorch, interleaved (>= 3 rounds)."""
    n = QUICK_FIT_N if quick else FIT_N
    epochs = QUICK_FIT_EPOCHS if quick else FIT_EPOCHS
    X, y = fit_data(n, FIT_T, FIT_I, dtype)
    contenders = {"crnn": lambda: crnn_fit(cell, H, X, y, epochs, FIT_B, dtype)}
    if with_torch:
        contenders["torch"] = lambda: torch_fit(cell, H, X, y, epochs, FIT_B, dtype)
    fit_timing = Timing(True, budget=0.0)     # every fit is long: minimum rounds (3)
    raw = measure(contenders, fit_timing)
    # Final training losses, to show both loops did comparable work.
    est = crnn_fit(cell, H, X, y, epochs, FIT_B, dtype)
    losses = {"crnn": float(est.loss_)}
    if with_torch:
        losses["torch"] = float(torch_fit(cell, H, X, y, epochs, FIT_B, dtype)[1])
    return {"cell": cell, "H": H, "dtype": np.dtype(dtype).name, "n": n, "T": FIT_T,
            "I": FIT_I, "batch_size": FIT_B, "epochs": epochs,
            "steps": epochs * math.ceil(n / FIT_B), "final_train_loss": losses,
            "raw": raw}


# ===========================================================================
# Peak memory of one training step (each measurement in a fresh process).
# ===========================================================================

def _maxrss_bytes():
    import resource
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _vm_hwm_bytes():
    """VmHWM of /proc/self/status: the peak RSS of this process's own address
    space (Linux only; unlike ru_maxrss, not inherited from the parent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_child(who, method):
    """Runs in a fresh interpreter: sets up MEMORY_CASE, then one training
    step, and prints one JSON line. ``method``: ``rss`` (ru_maxrss before and
    after the step) or ``tracemalloc`` (tracemalloc's peak during the step,
    tracing started after the set-up)."""
    import tracemalloc
    cell, B, T, I, H, dname = MEMORY_CASE
    dtype = np.dtype(dname).type
    threadpool_limits(limits=1)
    if torch is not None:
        torch.set_num_threads(1)
    rng = np.random.default_rng(1234)
    network, params, model, X_bf, d, batch, target = make_problem(
        cell, B, T, I, H, dtype, torch is not None, rng)
    if who == "crnn":
        grad = np.empty_like(params)
        step = lambda: network.loss_grad(params, batch, target, 0.0, grad)  # noqa: E731
        model = None
    else:
        Xt = torch.from_numpy(batch.X.reshape(T, B, I).copy())
        dt = torch.from_numpy(target.copy())

        def step():
            model.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(torch_forward(model, Xt), dt).backward()
    gc.collect()
    out = {"who": who, "method": method}
    if method == "rss":
        before, hwm_before = _maxrss_bytes(), _vm_hwm_bytes()
        step()
        out["maxrss_before_bytes"] = before
        out["maxrss_after_bytes"] = _maxrss_bytes()
        out["increase_bytes"] = out["maxrss_after_bytes"] - before
        hwm_after = _vm_hwm_bytes()
        if hwm_before is not None:
            out["vmhwm_before_bytes"], out["vmhwm_after_bytes"] = hwm_before, hwm_after
            out["vmhwm_increase_bytes"] = hwm_after - hwm_before
    else:
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        step()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["peak_above_start_bytes"] = peak - base
        out["retained_bytes"] = current - base
    out["params_bytes"] = int(params.nbytes)
    out["input_bytes"] = int(X_bf.nbytes)
    print("MEMORY " + json.dumps(out))


def run_memory(with_torch):
    """Both methods for crnn and PyTorch, each in its own fresh subprocess."""
    results = []
    whos = ["crnn"] + (["torch"] if with_torch else [])
    for who in whos:
        for method in ("rss", "tracemalloc"):
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--memory-child",
                 f"{who}:{method}"], capture_output=True, text=True, timeout=600)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")]
            if proc.returncode != 0 or not line:
                results.append({"who": who, "method": method,
                                "error": proc.stderr.strip()[-2000:]})
                continue
            results.append(json.loads(line[-1][len("MEMORY "):]))
    cell, B, T, I, H, dname = MEMORY_CASE
    return {"case": {"cell": cell, "B": B, "T": T, "I": I, "H": H, "dtype": dname},
            "measurements": results}


def run_ragged(cell, dtype, timing, with_torch):
    """crnn's training step on one batch of B = 64 sequences with the three
    length profiles; for comparison PyTorch on the same batches as
    PackedSequences, and PyTorch on the padded (T_max, B, I) batch (the
    output read at each sequence's last step), which costs B * T_max steps
    whatever the lengths. All timed round-robin together."""
    B, T, I, H = RAGGED_B, RAGGED_T, RAGGED_I, RAGGED_H
    rng = np.random.default_rng(99)
    network = RecurrentNetwork(I, H, O, cell=cell, dtype=dtype)
    model = torch_model(cell, I, H, dtype) if with_torch else None
    params = (crnn_params_from_torch(network, model, cell) if with_torch
              else network.init_params(np.random.default_rng(0), random_biases=True))
    grad = np.empty_like(params)
    X_bf = rng.uniform(-1, 1, size=(B, T, I)).astype(dtype)
    d = rng.standard_normal((B, O)).astype(dtype)
    X_tm = np.ascontiguousarray(X_bf.swapaxes(0, 1))
    profiles = ragged_lengths()
    contenders, info = {}, {}
    for label, lengths in profiles.items():
        batch = pack(X_bf, lengths)
        target = batch.per_sequence(d)
        info[label] = {"lengths": lengths.tolist(), "real_steps": int(lengths.sum())}
        contenders[f"crnn {label}"] = (
            lambda b=batch, t=target: network.loss_grad(params, b, t, 0.0, grad))
    if with_torch:
        dt = torch.from_numpy(d)
        mse = torch.nn.functional.mse_loss
        for label, lengths in profiles.items():
            packed = torch_input(X_tm, lengths)

            def torch_packed(packed=packed):
                model.zero_grad(set_to_none=True)
                mse(torch_forward(model, packed), dt).backward()

            contenders[f"torch {label}"] = torch_packed
        # Padded: the same cost for every profile of T_max = 100; timed on (b).
        Xt = torch.from_numpy(X_tm)
        last = torch.as_tensor(profiles["(b) U[1,100]"] - 1)
        rows = torch.arange(B)

        def torch_padded():
            model.zero_grad(set_to_none=True)
            out, _ = model["rnn"](Xt)                     # (T_max, B, H)
            mse(model["out"](out[last, rows]), dt).backward()

        contenders["torch padded"] = torch_padded
    raw = measure(contenders, timing)
    result = {"cell": cell, "dtype": np.dtype(dtype).name, "B": B, "T_max": T, "I": I,
              "H": H, "profiles": info, "raw": raw}
    if "torch padded" in raw:
        result["torch_padded_s"] = raw["torch padded"]["median_s"]
    for who in ("crnn", "torch"):
        if f"{who} (a) all 100" not in raw:
            continue
        base = raw[f"{who} (a) all 100"]["median_s"]
        for label in profiles:
            m = raw[f"{who} {label}"]["median_s"]
            steps = info[label]["real_steps"]
            info[label][who] = {
                "median_s": m, "per_real_step_us": m / steps * 1e6, "relative_to_a": m / base,
                "gflops": train_flops(cell, B, T, I, H, steps) / m / 1e9,
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


def _case(r):
    return f"{r['cell']:<5} ({r['B']},{r['T']},{r['I']},{r['H']})"


def print_tables(results):
    print()
    print("Median time per call (ms); ratios other/crnn: > 1 means crnn is faster.")
    header = (f"{'cell  case (B,T,I,H)':<24} {'dtype':<8} {'thr':>3} {'what':<6} "
              f"{'crnn':>10} {'numpy':>10} {'torch':>10} {'ort':>10} {'np/crnn':>8} "
              f"{'tc/crnn':>8} {'ort/crnn':>8} {'crnn GF/s':>9} {'tc GF/s':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        for what in ("train", "infer", "epoch"):
            if what not in r:
                continue
            e = r[what]
            gf = r.get(f"{what}_gflops", {})
            crnn_gf = f"{gf['crnn']:9.2f}" if "crnn" in gf else f"{'':>9}"
            torch_gf = f"{gf['torch']:8.2f}" if "torch" in gf else f"{'':>8}"
            print(f"{_case(r):<24} {r['dtype']:<8} {r.get('threads', 1):>3} {what:<6} "
                  f"{_ms(e, 'crnn')} {_ms(e, 'numpy')} {_ms(e, 'torch')} {_ms(e, 'ort')} "
                  f"{_ratio(e, 'numpy')} {_ratio(e, 'torch')} {_ratio(e, 'ort')} "
                  f"{crnn_gf} {torch_gf}")
    print()
    print("Achieved GFLOP/s against the GEMM limit (scipy.linalg.blas ?gemm in the same "
          "run, G = gates * H):\n'in' = the input product (TB x I)(I x G), 'rec' = one "
          "recurrent step (B x H)(H x G); %rec = crnn train GF/s / rec GEMM GF/s.")
    print_header(f"{'cell  case (B,T,I,H)':<24} {'dtype':<8} {'thr':>3} {'gemm in':>8} "
                 f"{'gemm rec':>8} {'crnn trn':>8} {'tc trn':>8} {'crnn inf':>8} "
                 f"{'tc inf':>8} {'%rec':>6}")
    for r in results:
        g, tg, ig = r["gemm_reference"], r["train_gflops"], r["infer_gflops"]

        def gf(d, k):
            return f"{d[k]:8.2f}" if k in d else f"{'-':>8}"

        print(f"{_case(r):<24} {r['dtype']:<8} {r.get('threads', 1):>3} "
              f"{g['input_TBxI_IxG_gflops']:8.2f} {g['recurrent_BxH_HxG_gflops']:8.2f} "
              f"{gf(tg, 'crnn')} {gf(tg, 'torch')} {gf(ig, 'crnn')} {gf(ig, 'torch')} "
              f"{100 * tg['crnn'] / g['recurrent_BxH_HxG_gflops']:5.0f}%")
    print_gemm_floor(results)
    with_parts = [r for r in results if "crnn_breakdown" in r]
    if with_parts:
        print()
        print("Where crnn's training step goes (--extras; ms): loss_grad, forward = "
              "output(), bwd+loss = the difference;\ng=id (Elman only): identity hidden "
              "activation instead of tanh.")
        header = (f"{'cell  case (B,T,I,H)':<24} {'dtype':<8} {'thr':>3} {'loss_grad':>9} "
                  f"{'forward':>9} {'bwd+loss':>9} {'fwd g=id':>9} {'train g=id':>10}")
        print(header)
        print("-" * len(header))
        for r in with_parts:
            b = r["crnn_breakdown"]

            def ms(x, width):
                return f"{x * 1e3:{width}.3f}" if x is not None else f"{'-':>{width}}"

            print(f"{_case(r):<24} {r['dtype']:<8} {r.get('threads', 1):>3} "
                  f"{ms(b['loss_grad_s'], 9)} {ms(b['forward_s'], 9)} "
                  f"{ms(b['backward_and_loss_s'], 9)} {ms(b['forward_identity_s'], 9)} "
                  f"{ms(b['loss_grad_identity_s'], 10)}")
    print()
    print("train: forward + backward (loss and full gradient) on one batch; infer: "
          "forward only\n(crnn output(), torch under inference_mode()). GF/s counts 2 "
          "flops per multiply-add of\nevery matmul; a training step = 3x forward."
          + ("\nepoch (--extras): RNNRegressor(max_iter=1).fit + predict on 8*B samples."
             if with_parts else ""))


def print_gemm_floor(results):
    print()
    print("GEMM floor: the matrix products of one training step alone (input product, "
          "T recurrent products\nforward and T backward, the two weight gradients), each "
          "in its fastest orientation through\nscipy's ?gemm, same run. floor/crnn: the "
          "share of crnn's step those products need; tc/floor:\nthe largest ratio to "
          "PyTorch any implementation on this BLAS could reach.")
    print_header(f"{'cell  case (B,T,I,H)':<24} {'dtype':<8} {'thr':>3} {'floor ms':>9} "
                 f"{'crnn ms':>9} {'tc ms':>9} {'floor/crnn':>10} {'tc/crnn':>8} "
                 f"{'tc/floor':>8}")
    for r in results:
        floor = r["gemm_floor"]["floor_s"]
        c = r["train"]["crnn"]["median_s"]
        t = r["train"].get("torch", {}).get("median_s")
        tc = f"{t * 1e3:9.3f}" if t else f"{'-':>9}"
        print(f"{_case(r):<24} {r['dtype']:<8} {r.get('threads', 1):>3} "
              f"{floor * 1e3:9.3f} {c * 1e3:9.3f} {tc} {floor / c:10.2f} "
              + (f"{t / c:8.2f} {t / floor:8.2f}" if t else f"{'-':>8} {'-':>8}"))


def print_header(header):
    print(header)
    print("-" * len(header))


def print_floors(floors):
    print()
    print("Overhead floor: one training step at B = T = I = H = 1 (median, us); "
          "tc/crnn > 1 means crnn is faster.")
    header = f"{'cell':<6} {'dtype':<8} {'thr':>3} {'crnn us':>9} {'numpy us':>9} {'torch us':>9} {'tc/crnn':>8}"
    print(header)
    print("-" * len(header))
    for f in floors:
        r = f["raw"]

        def us(k):
            return f"{r[k]['median_s'] * 1e6:9.1f}" if k in r else f"{'-':>9}"

        ratio = (f"{r['torch']['median_s'] / r['crnn']['median_s']:8.2f}" if "torch" in r
                 else f"{'-':>8}")
        print(f"{f['cell']:<6} {f['dtype']:<8} {f['threads']:>3} {us('crnn')} "
              f"{us('numpy')} {us('torch')} {ratio}")


def print_fit(fits):
    if not fits:
        return
    f0 = fits[0]
    print()
    print(f"End-to-end fit: n = {f0['n']} sequences, T = {f0['T']}, I = {f0['I']}, "
          f"batch {f0['batch_size']}, {f0['epochs']} epochs ({f0['steps']} Adam steps), "
          f"shuffle off;\ncrnn.RNNRegressor.fit vs a PyTorch loop (same model, Adam, lr, "
          f"batches, epochs, MSE). Median s of >= 3 interleaved rounds.")
    header = (f"{'cell':<6} {'H':>3} {'dtype':<8} {'thr':>3} {'crnn s':>8} {'torch s':>8} "
              f"{'tc/crnn':>8} {'crnn loss':>10} {'torch loss':>10}")
    print(header)
    print("-" * len(header))
    for f in fits:
        r, L = f["raw"], f["final_train_loss"]
        c = r["crnn"]["median_s"]
        t = r["torch"]["median_s"] if "torch" in r else None
        print(f"{f['cell']:<6} {f['H']:>3} {f['dtype']:<8} {f['threads']:>3} {c:8.3f} "
              + (f"{t:8.3f} {t / c:8.2f}" if t is not None else f"{'-':>8} {'-':>8}")
              + f" {L['crnn']:10.4g} " + (f"{L['torch']:10.4g}" if "torch" in L else ""))


def print_memory(memory):
    if not memory:
        return
    c = memory["case"]
    print()
    print(f"Peak memory of one training step, {c['cell']} (B={c['B']}, T={c['T']}, "
          f"I={c['I']}, H={c['H']}) {c['dtype']}, each in a fresh process (MiB):")
    print("  rss: increase of ru_maxrss (the process's peak resident set) across the "
          "first step: new memory\n       the step touched beyond everything the set-up "
          "had already touched (any allocator, incl. one-time\n       lazy initialisation);"
          " 0 if the step fits in memory freed earlier.\n       On Linux a child's "
          "ru_maxrss starts at its parent's RSS at fork, so this section\n       runs "
          "first, while the parent is small; VmHWM (/proc/self/status) is the same "
          "peak\n       for the child's own address space only, shown as a cross-check.")
    print("  tracemalloc: peak of Python-traced allocations during the step above the "
          "start; sees NumPy's\n       buffers (crnn's workspace), not PyTorch's own "
          "allocator (so ~0 for torch: not a real measure).")
    mib = 1024.0 * 1024.0
    for m in memory["measurements"]:
        if "error" in m:
            print(f"  {m['who']:<6} {m['method']:<12} failed: {m['error'][-300:]}")
        elif m["method"] == "rss":
            print(f"  {m['who']:<6} rss          +{m['increase_bytes'] / mib:8.1f} MiB "
                  f"(ru_maxrss {m['maxrss_before_bytes'] / mib:.1f} -> "
                  f"{m['maxrss_after_bytes'] / mib:.1f} MiB)"
                  + (f"; VmHWM +{m['vmhwm_increase_bytes'] / mib:.1f} MiB "
                     f"({m['vmhwm_before_bytes'] / mib:.1f} -> "
                     f"{m['vmhwm_after_bytes'] / mib:.1f})"
                     if "vmhwm_increase_bytes" in m else ""))
        else:
            print(f"  {m['who']:<6} tracemalloc   {m['peak_above_start_bytes'] / mib:8.1f} "
                  f"MiB peak, {m['retained_bytes'] / mib:.1f} MiB retained after the step")
    m0 = next((m for m in memory["measurements"] if "params_bytes" in m), None)
    if m0:
        print(f"  (for scale: parameters {m0['params_bytes'] / mib:.1f} MiB, input batch "
              f"{m0['input_bytes'] / mib:.1f} MiB)")


def print_ragged(ragged):
    if not ragged:
        return
    r0 = ragged[0]
    print()
    print(f"Ragged lengths: one training step (loss_grad) on B = {r0['B']} sequences, "
          f"T_max = {r0['T_max']}, I = {r0['I']}, H = {r0['H']}.")
    print("real steps = sum of the lengths; 'steps/(a)' is the share of real steps, "
          "'time/(a)' the share of time;\nus/step = time / real steps. torch: the same "
          "batches as PackedSequences; 'padded': PyTorch on the\npadded batch "
          "(B * T_max steps, the same for every profile), 'pad/crnn' its time over "
          "crnn's.")
    header = (f"{'cell':<6} {'dtype':<8} {'lengths':<14} {'real steps':>10} "
              f"{'steps/(a)':>9} {'crnn ms':>9} {'us/step':>8} {'time/(a)':>8} "
              f"{'GF/s':>6} {'torch ms':>9} {'time/(a)':>8} {'tc/crnn':>8} "
              f"{'padded ms':>9} {'pad/crnn':>8}")
    print(header)
    print("-" * len(header))
    for r in ragged:
        full = r["profiles"]["(a) all 100"]["real_steps"]
        for label, p in r["profiles"].items():
            c = p["crnn"]
            line = (f"{r['cell']:<6} {r['dtype']:<8} {label:<14} {p['real_steps']:>10d} "
                    f"{p['real_steps'] / full:9.3f} {c['median_s'] * 1e3:9.3f} "
                    f"{c['per_real_step_us']:8.2f} {c['relative_to_a']:8.3f} "
                    f"{c['gflops']:6.2f}")
            if "torch" in p:
                t = p["torch"]
                line += (f" {t['median_s'] * 1e3:9.3f} {t['relative_to_a']:8.3f} "
                         f"{t['median_s'] / c['median_s']:8.2f}")
            if "torch_padded_s" in r:
                line += (f" {r['torch_padded_s'] * 1e3:9.3f} "
                         f"{r['torch_padded_s'] / c['median_s']:8.2f}")
            print(line)


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


def per_call_floor(cell, dtype, timing):
    """A training step at B = T = I = H = 1: the fixed cost of one call."""
    rng = np.random.default_rng(0)
    network, params, model, X_bf, d, batch, target = make_problem(
        cell, 1, 1, 1, 1, dtype, torch is not None, rng)
    grad = np.empty_like(params)
    X_tm = batch.X.reshape(1, 1, 1)
    contenders = {"crnn": lambda: network.loss_grad(params, batch, target, 0.0, grad)}
    if cell == "elman":
        W = {k: v.copy() for k, v in crnn_weights_as_numpy(network, params).items()}
        contenders["numpy"] = lambda: np_loss_grad(W, X_tm, target)
    if torch is not None:
        Xt, dt = torch.from_numpy(X_tm), torch.from_numpy(target)

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
    isa = {0: "none", 1: "AVX2", 2: "AVX-512"}[kernels_blas.packed_isa()]
    print(f"  crnn's packed per-step product: {isa} kernel; used for products above "
          f"{SMALL_PRODUCT:.0e} multiply-adds (in float64, with W_hh of at most 4 MiB) "
          f"while scipy's BLAS reports 1 thread (now {kernels_blas.blas_thread_count()})")
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


def _parse_list(text, allowed, what):
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"{what} must be a comma-separated subset of {','.join(allowed)}; got {text!r}")
    return list(dict.fromkeys(items))


def _parse_threads(text):
    try:
        items = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        items = []
    if not items or min(items) < 1:
        raise argparse.ArgumentTypeError(f"--threads must be like 1 or 1,2; got {text!r}")
    return list(dict.fromkeys(items))


OVERHEAD_CASE = (1, 100, 8, 32)            # (B, T, I, H)


def predict_overhead(cell, dtype, timing):
    """``RNNRegressor.predict`` against its compiled forward pass alone
    (``Stack.output`` on preallocated, already packed buffers) at
    :data:`OVERHEAD_CASE`: what validation, packing and Python cost a call."""
    B, T, I, H = OVERHEAD_CASE
    rng = np.random.default_rng(0)
    X_fit = rng.normal(size=(8, T, I)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crnn.ConvergenceWarning)
        model = crnn.RNNRegressor(H, cell=cell, dtype=np.dtype(dtype).name, max_iter=1,
                                  random_state=0).fit(X_fit, X_fit[:, -1, 0])
    X = np.ascontiguousarray(X_fit[:B])
    stack, params = model._network().stack, model.params_
    X_tm = np.ascontiguousarray(X.swapaxes(0, 1)).reshape(T * B, I)
    batch_sizes = np.full(T, B, dtype=np.intp)
    Y = np.empty((B, 1), dtype)
    model.predict(X)                                 # the network pool, warmed
    raw = measure({"predict": lambda: model.predict(X),
                   "kernel": lambda: stack.output(params, X_tm, batch_sizes, Y)}, timing)
    return {"cell": cell, "dtype": np.dtype(dtype).name, "case": list(OVERHEAD_CASE),
            "raw": raw,
            "overhead_s": raw["predict"]["median_s"] - raw["kernel"]["median_s"]}


def print_predict_overhead(rows):
    if not rows:
        return
    B, T, I, H = OVERHEAD_CASE
    print(f"\npredict overhead at (B,T,I,H) = ({B},{T},{I},{H}): model.predict against "
          f"its compiled forward pass alone (median, us)")
    header = f"{'cell':<6} {'dtype':<8} {'thr':>3} {'predict':>9} {'kernel':>9} {'overhead':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        raw = r["raw"]
        print(f"{r['cell']:<6} {r['dtype']:<8} {r['threads']:>3} "
              f"{raw['predict']['median_s'] * 1e6:9.1f} {raw['kernel']['median_s'] * 1e6:9.1f} "
              f"{r['overhead_s'] * 1e6:9.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="first two cases, shorter budget, small fit (< 2 min)")
    parser.add_argument("--cells", default=",".join(CELLS),
                        type=lambda s: _parse_list(s, CELLS, "--cells"),
                        help="comma-separated cells to time (default: elman,lstm,gru)")
    parser.add_argument("--dtype", default="float64",
                        type=lambda s: _parse_list(s, ("float32", "float64"), "--dtype"),
                        help="float32, float64 or float32,float64 (default float64)")
    parser.add_argument("--json", metavar="PATH", help="write every measurement here")
    parser.add_argument("--threads", type=_parse_threads, default=[1],
                        help="thread counts, e.g. 1 or 1,2 (default 1)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per contender and case (0.2; --quick 0.05)")
    parser.add_argument("--no-ragged", action="store_true",
                        help="skip the ragged-lengths section")
    parser.add_argument("--no-fit", action="store_true",
                        help="skip the end-to-end fit section")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory section")
    parser.add_argument("--extras", action="store_true",
                        help="per case also the one-epoch estimator run and crnn's "
                             "forward/backward breakdown")
    parser.add_argument("--no-scaling", action="store_true",
                        help="skip the scaling section (n_jobs=k vs torch threads)")
    parser.add_argument("--no-mpi", action="store_true",
                        help="skip the MPI section (one epoch on 1 and 2 ranks)")
    parser.add_argument("--no-stepper", action="store_true",
                        help="skip the stepper section (one step of one stream)")
    parser.add_argument("--no-tokens", action="store_true",
                        help="skip the token section (embedding vs one-hot training step)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child.split(":"))
        return 0
    dtypes = [np.dtype(name).type for name in args.dtype]

    state = source_state()
    print(f"crnn imported from {state['crnn_file']}: commit {state['commit'] or 'unknown'}"
          f"{' + uncommitted source changes' if state['uncommitted_source_changes'] else ''}")
    print(f"crnn {crnn.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"Python {platform.python_version()}, {platform.processor() or platform.machine()}")
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((ln.split(":", 1)[1].strip() for ln in f
                              if ln.startswith("model name")), None)
    except OSError:
        pass
    print(f"CPU: {cpu_model or platform.processor() or '?'}, {os.cpu_count()} logical CPUs")
    with threadpool_limits(limits=args.threads[0]):
        if torch is not None:
            torch.set_num_threads(args.threads[0])
        libs, torch_info = library_report(args.threads[0])
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

    memory = None
    if not args.no_memory:
        # First, while this process is small: a child's ru_maxrss starts at
        # the parent's RSS at fork (Linux).
        t0 = time.perf_counter()
        memory = run_memory(torch is not None)
        print(f"Memory section: done in {time.perf_counter() - t0:.1f} s", flush=True)

    print("Checking the NumPy reference (Elman) and PyTorch against crnn "
          "(float64, tolerance 1e-10):")
    with threadpool_limits(limits=1):
        if not verify(args.cells):
            print("ABORT: the NumPy reference or PyTorch does not compute crnn's loss, "
                  "gradient and output.", file=sys.stderr)
            return 1

    timing = Timing(args.quick, args.budget)
    cases = QUICK_CASES if args.quick else CASES
    peaks = []
    with threadpool_limits(limits=1):
        if torch is not None:
            torch.set_num_threads(1)
        for dtype in dtypes:
            peak = gemm_peak(dtype, Timing(True, timing.budget))
            peak.update(dtype=np.dtype(dtype).name, threads=1)
            peaks.append(peak)
            print(f"GEMM peak, {peak['dtype']} {PEAK_N}^3, 1 thread: scipy "
                  f"{peak['scipy_gflops']:.1f} GFLOP/s"
                  + (f", torch.mm {peak['torch_gflops']:.1f}" if "torch_gflops" in peak
                     else ""), flush=True)
    floors, results, ragged, fits, overheads = [], [], [], [], []
    started = time.perf_counter()
    for threads in args.threads:
        # threadpoolctl limits every BLAS/OpenMP pool it finds (scipy's BLAS
        # for crnn, numpy's for the NumPy reference); torch its own.
        with threadpool_limits(limits=threads):
            if torch is not None:
                torch.set_num_threads(threads)
            print(f"=== threads = {threads} ===", flush=True)
            for dtype in dtypes:
                dname = np.dtype(dtype).name
                for cell in args.cells:
                    floor = per_call_floor(cell, dtype, timing)
                    floors.append({"cell": cell, "dtype": dname, "threads": threads,
                                   "raw": floor})
                    print(f"Overhead floor, {cell} {dname} (B = T = I = H = 1): "
                          + ", ".join(f"{name} {floor[name]['median_s'] * 1e6:.1f} us"
                                      for name in floor), flush=True)
                    overhead = predict_overhead(cell, dtype, timing)
                    overhead["threads"] = threads
                    overheads.append(overhead)
                    for (B, T, I, H) in cases:
                        t0 = time.perf_counter()
                        r = run_case(cell, B, T, I, H, dtype, timing, torch is not None,
                                     extras=args.extras, threads=threads)
                        r["threads"] = threads
                        results.append(r)
                        print(f"  {cell} (B={B}, T={T}, I={I}, H={H}) {dname}: "
                              f"tc/crnn train "
                              f"{r['train'].get('torch', r['train']['crnn'])['median_s'] / r['train']['crnn']['median_s']:.2f}"
                              f" infer "
                              f"{r['infer'].get('torch', r['infer']['crnn'])['median_s'] / r['infer']['crnn']['median_s']:.2f}"
                              f" ({time.perf_counter() - t0:.1f} s)", flush=True)
            if not args.no_fit:
                for dtype in dtypes:
                    for cell in args.cells:
                        for H in (QUICK_FIT_HIDDEN if args.quick else FIT_HIDDEN):
                            t0 = time.perf_counter()
                            f = run_fit(cell, H, dtype, args.quick, timing,
                                        torch is not None)
                            f["threads"] = threads
                            fits.append(f)
                            print(f"  fit {cell} H={H} {f['dtype']}: crnn "
                                  f"{f['raw']['crnn']['median_s']:.2f} s"
                                  + (f", torch {f['raw']['torch']['median_s']:.2f} s"
                                     if "torch" in f["raw"] else "")
                                  + f" ({time.perf_counter() - t0:.1f} s)", flush=True)
            if threads == args.threads[0] and not args.no_ragged:
                for dtype in dtypes:
                    for cell in args.cells:
                        t0 = time.perf_counter()
                        rg = run_ragged(cell, dtype, timing, torch is not None)
                        rg["threads"] = threads
                        ragged.append(rg)
                        print(f"  {cell} ragged lengths {np.dtype(dtype).name}: done in "
                              f"{time.perf_counter() - t0:.1f} s", flush=True)
    scaled = mpi = steps = generated = token_steps = None
    with threadpool_limits(limits=1):
        if torch is not None:
            torch.set_num_threads(1)
        if not args.no_stepper:
            steps = stepper.run_stepper(sys.modules[__name__], timing)
            generated = stepper.run_generate(sys.modules[__name__], timing)
        if not args.no_tokens:
            token_steps = tokens.run_tokens(sys.modules[__name__], timing)
    if not args.no_scaling:
        # outside every threadpool_limits: the "default" rows are out of the box
        scaled = scaling.run_scaling(sys.modules[__name__], timing, args.quick)
    if not args.no_mpi:
        mpi = scaling.run_mpi(args.quick)
    print_tables(results)
    print_floors(floors)
    print_predict_overhead(overheads)
    print_fit(fits)
    print_memory(memory)
    print_ragged(ragged)
    stepper.print_stepper(steps)
    stepper.print_generate(generated)
    tokens.print_tokens(token_steps)
    scaling.print_scaling(scaled)
    scaling.print_mpi(mpi)
    print(f"\nTotal benchmark time {time.perf_counter() - started:.1f} s.")

    if args.json:
        out = {
            "argv": sys.argv, "threads": args.threads, "dtypes": args.dtype,
            "cells": args.cells, "quick": args.quick,
            "timing": {"budget_s": timing.budget, "min_rounds": timing.min_rounds,
                       "target_rounds": timing.target_rounds},
            "versions": {"crnn": crnn.__version__, "numpy": np.__version__,
                         "scipy": scipy.__version__, "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "cpu_model": cpu_model,
                        "cpu_count": os.cpu_count(), "loadavg_before": load,
                        "loadavg_after": os.getloadavg() if load is not None else None},
            "threadpool_info": libs, "torch": torch_info, "source": state,
            "packed_kernel": {0: None, 1: "avx2", 2: "avx512"}[kernels_blas.packed_isa()],
            "per_call_floor": floors, "predict_overhead": overheads, "gemm_peak": peaks,
            "estimator_solver": "adam", "numpy_solver": "plain SGD (--extras epoch)",
            "torch_solver": "torch.optim.Adam", "learning_rate": LEARNING_RATE,
            "cases": results, "fit": fits, "memory": memory, "ragged": ragged,
            "scaling": scaled, "mpi": mpi, "stepper": steps, "generate": generated, "tokens": token_steps,
            "torch_default_threads": scaling.TORCH_DEFAULT_THREADS,
        }
        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
