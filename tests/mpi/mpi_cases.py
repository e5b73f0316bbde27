"""The models and data of the MPI tests, shared by the ranks' program
(``mpi_job.py``) and the tests that check what it wrote (``test_mpi.py``).

Every case is a fit: an estimator, its hyper-parameters, and data that
:func:`data` makes the same in every process from its seed. The ranks fit
it on their shards (``crnn.mpi.shard``), the tests fit it in one process on
the whole data and compare.
"""
import numpy as np

from crnn import RNNClassifier, RNNRegressor

N = 72                                   # sequences in all

BASE = dict(hidden_size=5, batch_size=24, max_iter=3, random_state=0,
            learning_rate=0.02, n_iter_no_change=100)

#: name -> (estimator, hyper-parameters, data form, calls)
#: data form: "ragged" (a list), "padded" (an array and lengths), "uniform";
#: calls: "fit", "warm" (fit, then fit again with warm_start), "partial"
#: (partial_fit twice)
CASES = {
    "elman-f64-ragged": (RNNRegressor, dict(cell="elman"), "ragged", "fit"),
    "lstm-f64-stacked-dropout": (RNNRegressor, dict(cell="lstm", num_layers=2,
                                                    dropout=0.3), "padded", "fit"),
    "gru-f64-truncated-steps": (
        RNNRegressor, dict(cell="gru", bptt_steps=3, num_layers=2, dropout=0.2,
                           return_sequences=True), "ragged", "fit"),
    "elman-f64-bidirectional": (RNNRegressor, dict(cell="elman", bidirectional=True,
                                                   return_sequences=True), "padded", "fit"),
    "lstm-f32-early-stopping": (RNNRegressor, dict(cell="lstm", dtype="float32",
                                                   early_stopping=True), "padded", "fit"),
    "gru-f32-uniform-adam": (RNNRegressor, dict(cell="gru", dtype="float32", max_iter=4),
                             "uniform", "fit"),
    "elman-f64-classifier": (RNNClassifier, dict(cell="elman", alpha=1e-3), "ragged",
                             "fit"),
    "lstm-f32-step-classifier": (RNNClassifier, dict(cell="lstm", dtype="float32",
                                                     return_sequences=True), "ragged",
                                 "fit"),
    "gru-f64-warm-start-sgd": (RNNRegressor, dict(cell="gru", solver="sgd",
                                                  momentum=0.9, warm_start=True),
                               "padded", "warm"),
    "lstm-f64-partial-classifier": (RNNClassifier, dict(cell="lstm"), "uniform",
                                    "partial"),
}

#: Cases fitted once more with two threads per rank, to be bit for bit the
#: one-thread fit (batches of 64: four blocks, two per rank)
THREADED = {"lstm-f64-stacked-dropout": dict(batch_size=64),
            "elman-f64-classifier": dict(batch_size=64)}


def make(name, **changes):
    cls, params, _, _ = CASES[name]
    return cls(**{**BASE, **params, **changes})


def data(name):
    """``(X, y, lengths)`` of a case, for all ``N`` sequences; ``X`` and
    ``y`` are lists for ragged data (so ``[shard]`` slices them)."""
    cls, params, form, _ = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    lengths = (np.full(N, 9) if form == "uniform" else rng.integers(1, 10, size=N))
    X = np.zeros((N, 9, 3))
    for i, n in enumerate(lengths):
        X[i, :n] = rng.normal(size=(n, 3))
    if params.get("return_sequences"):
        values = np.cumsum(X[..., :1], axis=1) * 0.5
        if cls is RNNClassifier:
            values = np.digitize(values[..., 0], [-0.5, 0.5])
        y = [values[i, :n] for i, n in enumerate(lengths)]
    else:
        values = X.sum(axis=(1, 2)) * 0.2
        y = values if cls is RNNRegressor else np.digitize(values, [-0.3, 0.3])
    if cls is RNNClassifier and not params.get("return_sequences"):
        # a label the second half (rank 1's shard) never holds
        y = np.where(np.arange(N) < N // 2, y, np.minimum(y, 1))
        y = np.array(["low", "mid", "high"])[y]
    if form == "ragged":
        return [X[i, :n] for i, n in enumerate(lengths)], y, None
    return X, y, (lengths if form == "padded" else None)


def take(values, part):
    """``values[part]`` of an array or a list (None stays None)."""
    if values is None or isinstance(values, np.ndarray):
        return None if values is None else values[part]
    return values[part]


def classes(name):
    """The classes ``partial_fit`` is given (classifier cases)."""
    y = data(name)[1]
    return np.unique(np.concatenate(y) if isinstance(y, list) else y)


def run(name, fit, partial_fit, X, y, lengths, **changes):
    """Fit case ``name`` by its calls, with ``fit(model, X, y, lengths)`` and
    ``partial_fit(model, X, y, lengths, classes)``; the fitted model."""
    model = make(name, **changes)
    calls = CASES[name][3]
    if calls == "partial":
        for _ in range(2):
            partial_fit(model, X, y, lengths, classes(name))
        return model
    fit(model, X, y, lengths)
    if calls == "warm":
        model.set_params(max_iter=2)
        fit(model, X, y, lengths)
    return model
