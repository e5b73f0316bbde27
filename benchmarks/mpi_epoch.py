"""One training epoch over MPI ranks: ``mpiexec -n K python mpi_epoch.py``.

Times ``crnn.mpi.fit`` with ``max_iter=1`` (one epoch) of an LSTM, batch
32, on ``--n`` sequences of T = 50 steps and I = 32 features, H = 128,
float32 -- each rank fits its shard (``crnn.mpi.shard``) with ``--n-jobs``
threads. One warm-up epoch, then ``--repeats`` timed ones (each from a
barrier to the end of the slowest rank's fit). With one rank it also times
the estimator's own ``fit`` on all the data, interleaved. Rank 0 prints
one JSON line: the median and every sample, in seconds.

``bench.py``'s MPI section runs this on 1 and 2 ranks, alternately.
"""
import argparse
import json
import time
import warnings

import numpy as np
from mpi4py import MPI

import crnn
import crnn.mpi

T, I, H, B = 50, 32, 128, 32


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="sequences in all")
    parser.add_argument("--n-jobs", type=int, default=1, help="threads per rank")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(args.n, T, I)).astype(np.float32)
    y = X[:, -10:, :].mean(axis=(1, 2)).astype(np.float32)
    part = crnn.mpi.shard(args.n)

    def model():
        return crnn.RNNRegressor(H, cell="lstm", dtype="float32", batch_size=B, max_iter=1,
                                 random_state=0, n_jobs=args.n_jobs)

    def mpi_epoch():
        comm.Barrier()
        start = time.perf_counter()
        crnn.mpi.fit(model(), X[part], y[part])
        comm.Barrier()
        return time.perf_counter() - start

    def process_epoch():
        start = time.perf_counter()
        model().fit(X, y)
        return time.perf_counter() - start

    contenders = {"mpi": mpi_epoch}
    if comm.Get_size() == 1:
        contenders["process"] = process_epoch
    samples = {name: [] for name in contenders}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crnn.ConvergenceWarning)
        for fn in contenders.values():
            fn()                                                # warm-up
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                samples[name].append(fn())
    if comm.Get_rank() == 0:
        print(json.dumps({"ranks": comm.Get_size(), "n_jobs": args.n_jobs, "n": args.n,
                          "median_s": {k: float(np.median(v)) for k, v in samples.items()},
                          "samples_s": samples}))


if __name__ == "__main__":
    main()
