"""crnn out of the box against crnn pinned to one thread, idle and loaded.

For each case (fits and predicts over many sequences, float32) the script
times, interleaved round by round:

* ``default``: nothing is said about threads (users never pin): scipy's
  BLAS at its default, crnn's ``n_jobs=None``;
* ``pinned``: ``threadpoolctl.threadpool_limits(1)`` around the call and
  ``n_jobs=1``, the way crnn was measured before;
* ``n_jobs=k``: BLAS at its default, crnn on ``k`` threads, for
  ``k = 1 .. cores``.

With ``--busy N`` the same rounds run while ``N`` other processes spin a
Python busy loop, as on a machine that is not idle. Ratios are
``pinned time / time``: above 1 is faster than pinned.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/threads.py [--busy 1]
"""
import argparse
import json
import multiprocessing
import os
import platform
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from crnn import ConvergenceWarning, RNNRegressor
from crnn._threads import available_cpus

CASES = [
    # (name, what, cell, H, n sequences)
    ("fit LSTM H=64", "fit", "lstm", 64, 1024),
    ("fit LSTM H=256", "fit", "lstm", 256, 1024),
    ("predict Elman H=64", "predict", "elman", 64, 4096),
    ("predict LSTM H=64", "predict", "lstm", 64, 4096),
    ("predict GRU H=128", "predict", "gru", 128, 4096),
]
T, I = 50, 8


def spin(stop):
    while not stop.is_set():
        pass


def model_for(cell, H, n_jobs):
    return RNNRegressor(H, cell=cell, dtype="float32", max_iter=3, batch_size=32,
                        random_state=0, n_jobs=n_jobs)


def timed(what, model, X, y):
    start = time.perf_counter()
    if what == "fit":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
    else:
        model.predict(X)
    return time.perf_counter() - start


def run(rounds, busy):
    rng = np.random.default_rng(0)
    cores = available_cpus()
    configs = ["default", "pinned"] + [f"n_jobs={k}" for k in range(1, cores + 1)]
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(busy)]
    for p in spinners:
        p.start()
    results = {}
    try:
        for name, what, cell, H, n in CASES:
            X = rng.normal(size=(n, T, I)).astype(np.float32)
            y = X[:, -5:, 0].sum(1)
            fitted = None
            if what == "predict":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    fitted = model_for(cell, H, 1).fit(X[:64], y[:64])
            times = {c: [] for c in configs}
            for _ in range(rounds):
                for config in configs:
                    n_jobs = None if config == "default" else (
                        1 if config == "pinned" else int(config.split("=")[1]))
                    model = fitted.set_params(n_jobs=n_jobs) if fitted else model_for(
                        cell, H, n_jobs)
                    if config == "pinned":
                        with threadpool_limits(1):
                            times[config].append(timed(what, model, X, y))
                    else:
                        times[config].append(timed(what, model, X, y))
            best = {c: float(np.median(v)) for c, v in times.items()}
            results[name] = best
            ratios = "  ".join(f"{c} {best['pinned'] / t:.2f}x" for c, t in best.items()
                               if c != "pinned")
            print(f"{name:<22} pinned {best['pinned']:.3f} s   {ratios}", flush=True)
    finally:
        stop.set()
        for p in spinners:
            p.join()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy", type=int, default=0,
                        help="other processes spinning a busy loop meanwhile")
    parser.add_argument("--json", help="write the medians here")
    args = parser.parse_args()
    blas = [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{available_cpus()} available; BLAS pools {blas}; busy processes: {args.busy}; "
          f"median of {args.rounds} interleaved rounds; float32, T={T}, I={I}")
    results = run(args.rounds, args.busy)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"busy": args.busy, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
