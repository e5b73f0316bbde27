"""The scaling and MPI sections of ``bench.py``.

Scaling: crnn with ``n_jobs = k`` against PyTorch with
``torch.set_num_threads(k)``, for ``k = 1 ..`` the cores this process may
use, and "out of the box": crnn's ``n_jobs=None`` and PyTorch's own default
thread count (read when this module is imported, before ``bench.py`` sets
any), with no BLAS limit anywhere. Timed interleaved, every contender in
every round, with a pause before each sample so that PyTorch's spinning
OpenMP workers do not take the cores from the contender after them:

* the training step of one mini-batch, forward and BPTT, float32 LSTM
  (B, T, I, H) = (32, 50, 32, 128), (64, 50, 64, 256), (64, 50, 128, 512):
  crnn's data-parallel step (the batch in blocks of 16 sequences, as
  ``fit`` runs it, on ``k`` threads); PyTorch's ``nn.LSTM`` + ``nn.Linear``
  forward, MSE and ``backward`` on the whole batch;
* ``predict`` over many sequences: ``RNNRegressor.predict`` on (n, T, I) =
  (4096, 50, 32) with H = 128 and (512, 50, 128) with H = 512, against
  PyTorch's forward over the whole batch under ``inference_mode``.

MPI: one epoch of ``benchmarks/mpi_epoch.py`` (LSTM (32, 50, 32, 128),
float32, 4096 sequences) under ``mpiexec -n 1`` and ``-n 2`` (one thread
per rank), alternately, and one rank with ``n_jobs=2`` beside them.
"""
import copy
import json
import os
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

try:
    import torch
except ImportError:
    torch = None

import crnn
from crnn._threads import available_cpus, effective_n_jobs
from crnn._training import BlockGradients, TrainingData
from crnn._validation import check_sequences

#: PyTorch's thread count before anyone sets it: its out-of-the-box value.
TORCH_DEFAULT_THREADS = torch.get_num_threads() if torch is not None else None

STEP_CASES = [(32, 50, 32, 128), (64, 50, 64, 256), (64, 50, 128, 512)]
PREDICT_CASES = [(4096, 50, 32, 128), (512, 50, 128, 512)]
QUICK_STEP_CASES, QUICK_PREDICT_CASES = STEP_CASES[:1], [(1024, 50, 32, 128)]
CELL, DTYPE = "lstm", np.float32
MPI_EPOCH = Path(__file__).with_name("mpi_epoch.py")
#: Seconds of sleep before each sample: PyTorch's OpenMP workers spin after
#: its calls, and would take the cores from the contender timed next.
PAUSE = 0.01


def _torch_threads(k, call):
    """``call`` on ``k`` PyTorch threads."""
    def run():
        if torch.get_num_threads() != k:
            torch.set_num_threads(k)
        return call()
    return run


def _configs():
    """``(name, crnn threads, torch threads)``: k = 1 .. cores, then the defaults."""
    cores = available_cpus()
    configs = [(f"k={k}", k, k) for k in range(1, cores + 1)]
    return configs + [("default", effective_n_jobs(None), TORCH_DEFAULT_THREADS)]


def _step_contenders(bench, B, T, I, H, executors):
    rng = np.random.default_rng(7)
    network, params, model, X, d, _, _ = bench.make_problem(
        CELL, B, T, I, H, DTYPE, torch is not None, rng)
    seqs = check_sequences(X, DTYPE)
    data, idx, grad = TrainingData(seqs, d, False), np.arange(B), np.empty_like(params)
    contenders = {}
    if torch is not None:
        Xt = torch.from_numpy(np.ascontiguousarray(X.swapaxes(0, 1)))
        dt = torch.from_numpy(d)

        def torch_step():
            model.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(bench.torch_forward(model, Xt), dt).backward()
    for name, k, k_torch in _configs():
        blocks = BlockGradients(network, lambda: copy.copy(network), params, k,
                                executors.get(k))
        contenders[f"crnn {name}"] = (lambda blocks=blocks: data.loss_and_gradient(
            blocks, params, idx, None, 0.0, grad, None))
        if torch is not None:
            contenders[f"torch {name}"] = _torch_threads(k_torch, torch_step)
    return contenders


def _predict_contenders(bench, n, T, I, H):
    rng = np.random.default_rng(8)
    X = rng.uniform(-1, 1, size=(n, T, I)).astype(DTYPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crnn.ConvergenceWarning)
        fitted = crnn.RNNRegressor(H, cell=CELL, dtype="float32", max_iter=1,
                                   random_state=0).fit(X[:64], X[:64, -1, 0])
    contenders = {}
    if torch is not None:
        model = bench.torch_model(CELL, I, H, DTYPE)
        Xt = torch.from_numpy(np.ascontiguousarray(X.swapaxes(0, 1)))

        def torch_predict():
            with torch.inference_mode():
                return bench.torch_forward(model, Xt)
    for name, k, k_torch in _configs():
        model_k = copy.deepcopy(fitted).set_params(n_jobs=None if name == "default" else k)
        contenders[f"crnn {name}"] = (lambda m=model_k: m.predict(X))
        if torch is not None:
            contenders[f"torch {name}"] = _torch_threads(k_torch, torch_predict)
    return contenders


def run_scaling(bench, timing, quick):
    """Every case's timings, ``{"what", "case", "configs", "raw"}``.

    Each contender gets four times ``timing``'s budget: thread counts are
    compared here, and one sample must hold several calls for the first
    call's wake-up of idle worker threads not to dominate it.
    """
    timing = copy.copy(timing)
    timing.budget *= 4
    results = []
    threads = sorted({k for _, k, _ in _configs()})
    executors = {k: ThreadPoolExecutor(k, thread_name_prefix="crnn") for k in threads
                 if k > 1}
    try:
        for B, T, I, H in (QUICK_STEP_CASES if quick else STEP_CASES):
            raw = bench.measure(_step_contenders(bench, B, T, I, H, executors), timing,
                                pause=PAUSE)
            results.append({"what": "train step", "case": [B, T, I, H],
                            "configs": _configs(), "raw": raw})
            print(f"  scaling: train step {CELL} (B={B}, T={T}, I={I}, H={H}) done",
                  flush=True)
        for n, T, I, H in (QUICK_PREDICT_CASES if quick else PREDICT_CASES):
            raw = bench.measure(_predict_contenders(bench, n, T, I, H), timing, pause=PAUSE)
            results.append({"what": "predict", "case": [n, T, I, H],
                            "configs": _configs(), "raw": raw})
            print(f"  scaling: predict {CELL} (n={n}, T={T}, I={I}, H={H}) done",
                  flush=True)
    finally:
        for executor in executors.values():
            executor.shutdown()
    return results


def print_scaling(results):
    if not results:
        return
    print(f"\n## Scaling: crnn n_jobs=k vs torch.set_num_threads(k), {CELL} float32 "
          f"(median ms; torch/crnn > 1: crnn faster; 'x k=1': crnn's speed-up)\n")
    print("| work | case | threads | crnn ms | torch ms | torch/crnn | crnn x k=1 |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        raw = r["raw"]
        base = raw["crnn k=1"]["median_s"]
        for name, k, k_torch in r["configs"]:
            crnn_s = raw[f"crnn {name}"]["median_s"]
            torch_s = raw.get(f"torch {name}", {}).get("median_s")
            label = (f"default (crnn {k}, torch {k_torch})" if name == "default"
                     else name.replace("k=", ""))
            print(f"| {r['what']} | {tuple(r['case'])} | {label} | {crnn_s * 1e3:.2f} | "
                  + (f"{torch_s * 1e3:.2f} | {torch_s / crnn_s:.2f}" if torch_s else "- | -")
                  + f" | {base / crnn_s:.2f} |")


def _mpiexec():
    return shutil.which("mpiexec", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def run_mpi(quick, rounds=3):
    """One epoch on 1 and 2 ranks (and 1 rank, n_jobs=2), alternately; None
    without mpi4py or mpiexec."""
    mpiexec = _mpiexec()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpiexec = None
    if mpiexec is None:
        print("MPI section skipped: no mpi4py or no mpiexec (pip install 'crnn[mpi]')")
        return None
    n = 1024 if quick else 4096
    runs = [(1, 1), (2, 1), (1, 2)]
    samples = {f"{ranks} rank(s), n_jobs={n_jobs}": [] for ranks, n_jobs in runs}
    process = []
    for _ in range(1 if quick else rounds):
        for ranks, n_jobs in runs:
            out = subprocess.run(
                [mpiexec, "-n", str(ranks), sys.executable, str(MPI_EPOCH), "--n", str(n),
                 "--n-jobs", str(n_jobs), "--repeats", "3"],
                capture_output=True, text=True, check=True, timeout=1800)
            line = json.loads(out.stdout.strip().splitlines()[-1])
            samples[f"{ranks} rank(s), n_jobs={n_jobs}"] += line["samples_s"]["mpi"]
            if ranks == 1 and n_jobs == 1:
                process += line["samples_s"]["process"]
    result = {"n": n, "case": [32, 50, 32, 128], "samples_s": samples,
              "process_fit_samples_s": process}
    print(f"  MPI: one epoch over {n} sequences, done", flush=True)
    return result


def print_mpi(result):
    if not result:
        return
    print(f"\n## MPI: one epoch, {CELL} (B, T, I, H) = (32, 50, 32, 128) float32, "
          f"{result['n']} sequences (median of every sample)\n")
    base = float(np.median(result["samples_s"]["1 rank(s), n_jobs=1"]))
    print("| run | epoch s | speed-up vs 1 rank |")
    print("|---|---|---|")
    print(f"| the estimator's fit, 1 process | {np.median(result['process_fit_samples_s']):.3f} "
          f"| {base / np.median(result['process_fit_samples_s']):.2f} |")
    for name, s in result["samples_s"].items():
        print(f"| crnn.mpi.fit, {name} | {np.median(s):.3f} | {base / np.median(s):.2f} |")
