"""crnn's step with its packed per-step product against the BLAS path.

Usage::

    python benchmarks/packed_ab.py [--cells elman,lstm,gru] [--dtype float32,float64]
                                   [--threads 1] [--kernel avx512|avx2] [--small]

For each cell, dtype and medium or large case (B, T, I, H) of ``bench.py``'s
grid (with ``--small``: its small cases and two more of under 10^6
multiply-adds a step), times one training step
(``RecurrentNetwork.loss_grad``) and one forward pass (``output``) twice,
round-robin on the same network and batch: with every recurrent product on
BLAS (``crnn.kernels.blas.set_packed_mode("never")``) and with every one on
the packed kernel (``"always"``), under ``threadpoolctl.threadpool_limits``.
Prints the medians and ``blas/packed`` (> 1: the packed kernel is faster).
This is the measurement behind the default mode's choice (one BLAS thread,
products above 10^6 multiply-adds unless the BLAS has no small-matrix
kernels, in float64 a W_hh of at most 4 MiB); run it on a new CPU to see
whether that choice holds there. Asserts nothing.
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from crnn._network import RecurrentNetwork
from crnn._validation import check_sequences
from crnn.kernels import blas

CASES = [(32, 50, 32, 128), (64, 50, 128, 512), (64, 50, 64, 256)]
SMALL_CASES = [(1, 100, 8, 32), (32, 100, 8, 32), (1, 1000, 1, 64), (32, 50, 32, 64),
               (16, 50, 16, 128)]
GATES = {"elman": 1, "lstm": 4, "gru": 3}
ROUNDS = 15
SAMPLE_S = 0.02


def time_modes(f, modes):
    """Median seconds per call of ``f`` under each packed mode, round-robin."""
    t0 = time.perf_counter()
    f()
    calls = max(1, int(SAMPLE_S / (time.perf_counter() - t0)))
    samples = {mode: [] for mode in modes}
    for _ in range(ROUNDS):
        for mode in modes:
            blas.set_packed_mode(mode)
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            samples[mode].append((time.perf_counter() - t0) / calls)
    blas.set_packed_mode("auto")
    return {mode: float(np.median(s)) for mode, s in samples.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default="elman,lstm,gru")
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kernel", choices=["avx512", "avx2"],
                        help="use at most this kernel (default: the CPU's best)")
    parser.add_argument("--small", action="store_true",
                        help="the small cases (per-step products under 10^6 multiply-adds)")
    args = parser.parse_args()
    if args.kernel:
        blas.set_packed_isa({"avx2": 1, "avx512": 2}[args.kernel])
    kernel = {0: None, 1: "AVX2", 2: "AVX-512"}[blas.packed_isa()]
    if kernel is None:
        raise SystemExit("this CPU has no packed kernel")
    print(f"packed kernel: {kernel}; BLAS threads: {args.threads} (threadpoolctl); "
          f"BLAS core: {blas.BLAS_CORENAME} (small-matrix kernels: "
          f"{'yes' if blas.blas_small_kernels() else 'no'})")
    print(f"{'cell':5s} {'(B,T,I,H)':18s} {'dtype':8s} {'what':6s} {'blas ms':>10s} "
          f"{'packed ms':>10s} {'blas/packed':>11s}")
    with threadpool_limits(args.threads):
        for dtype in args.dtype.split(","):
            for cell in args.cells.split(","):
                for B, T, I, H in SMALL_CASES if args.small else CASES:
                    rng = np.random.default_rng(0)
                    net = RecurrentNetwork(I, H, 1, cell=cell, dtype=np.dtype(dtype))
                    params = net.init_params(rng, random_biases=True)
                    X = rng.uniform(-1, 1, (B, T, I)).astype(dtype)
                    batch = check_sequences(X, np.dtype(dtype), None).pack()
                    target = rng.standard_normal((B, 1)).astype(dtype)
                    grad = np.empty_like(params)
                    steps = {"train": lambda: net.loss_grad(params, batch, target, 0.0, grad),
                             "infer": lambda: net.output(params, batch)}
                    for what, f in steps.items():
                        t = time_modes(f, ("never", "always"))
                        print(f"{cell:5s} {str((B, T, I, H)):18s} {dtype:8s} {what:6s} "
                              f"{t['never'] * 1e3:10.3f} {t['always'] * 1e3:10.3f} "
                              f"{t['never'] / t['always']:11.2f}", flush=True)


if __name__ == "__main__":
    main()
