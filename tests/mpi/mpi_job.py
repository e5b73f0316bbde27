"""The program every rank runs: ``mpiexec -n 2 python mpi_job.py OUT``.

For every case of ``mpi_cases``, each rank fits the model on its shard with
``crnn.mpi``; rank 0 also fits it alone (``MPI.COMM_SELF``) on all the data.
Then the failing fits: each rank's exception. Rank 0 writes everything to
``OUT.npz`` (the weights) and ``OUT.json`` (the rest), for ``test_mpi.py``.
"""
import json
import sys
import warnings

import numpy as np
from mpi4py import MPI

import crnn.mpi
import mpi_cases as cases

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
arrays, report = {}, {"size": comm.Get_size(), "cases": {}, "errors": {}}


def on(comm):
    return (lambda model, X, y, lengths: crnn.mpi.fit(model, X, y, lengths, comm=comm),
            lambda model, X, y, lengths, classes: crnn.mpi.partial_fit(
                model, X, y, lengths, classes=classes, comm=comm))


def record(key, model):
    """The model's state on rank 0, and whether every rank has the same."""
    everyone = comm.gather(model.params_, root=0)
    if rank == 0:
        arrays[key] = model.params_
        report["cases"][key] = {
            "same_on_every_rank": all(p.dtype == model.params_.dtype
                                      and np.array_equal(p, model.params_) for p in everyone),
            "loss_curve": model.loss_curve_, "n_iter": model.n_iter_, "t": model.t_,
            "validation_loss_curve": model.validation_loss_curve_,
            "classes": getattr(model, "classes_", np.array([])).tolist(),
        }


warnings.simplefilter("ignore")
threads = comm.gather(crnn.mpi._Job(comm).threads_per_rank(), root=0)
report["threads_per_rank"] = threads
report["shards"] = comm.gather([[s.start, s.stop] for s in map(crnn.mpi.shard, (0, 1, 5, 72))],
                               root=0)
part = crnn.mpi.shard(cases.N)
for name in cases.CASES:
    X, y, lengths = cases.data(name)
    shard = [cases.take(a, part) for a in (X, y, lengths)]
    record(name, cases.run(name, *on(comm), *shard))
    for n_jobs in (1, 2):
        if name in cases.THREADED:
            record(f"{name}/n_jobs={n_jobs}", cases.run(name, *on(comm), *shard,
                                                        n_jobs=n_jobs,
                                                        **cases.THREADED[name]))
    if rank == 0:
        alone = cases.run(name, *on(MPI.COMM_SELF), X, y, lengths)
        arrays[f"{name}/alone"] = alone.params_
comm.Barrier()


def failing(name, make, X, y, lengths=None):
    """Fit and record each rank's exception (or None); the model after it."""
    model = make()
    try:
        crnn.mpi.fit(model, X, y, lengths)
        outcome = None
    except Exception as exc:
        outcome = [type(exc).__name__, str(exc)]
    outcomes = comm.gather(outcome, root=0)
    fitted = comm.gather(model.params_ if model._is_fitted() else None, root=0)
    if rank == 0:
        report["errors"][name] = {
            "outcomes": outcomes,
            "fitted": [f is not None for f in fitted],
            "same_on_every_rank": all(f is None or np.array_equal(f, fitted[0])
                                      for f in fitted)}


X, y, _ = cases.data("elman-f64-ragged")
X, y = cases.take(X, part), cases.take(y, part)
other = rank == comm.Get_size() - 1
failing("hyper-parameters", lambda: cases.make("elman-f64-ragged",
                                               hidden_size=6 if other else 5), X, y)
bad = [x.copy() for x in X]
if other:
    bad[3][0, 1] = np.nan
failing("nan", lambda: cases.make("elman-f64-ragged"), bad, y)
failing("features", lambda: cases.make("elman-f64-ragged"),
        [np.hstack([x, x[:, :1]]) for x in X] if other else X, y)
failing("empty", lambda: cases.make("elman-f64-ragged"), [] if other else X,
        [] if other else y)
failing("diverged", lambda: cases.make("elman-f64-ragged", learning_rate=1e12,
                                       solver="sgd", max_iter=5), X, y * 1e6)
failing("recovered", lambda: cases.make("elman-f64-ragged"), X, y)

if rank == 0:
    np.savez(sys.argv[1] + ".npz", **arrays)
    with open(sys.argv[1] + ".json", "w") as f:
        json.dump(report, f)
