"""Long-range memory: the adding problem (Hochreiter & Schmidhuber, 1997).

Each sequence has T = 50 steps of two features: a value drawn uniformly
from [0, 1] and a marker that is 1 at exactly two steps -- one in the first
half, one in the second -- and 0 elsewhere. The target, read once at the end
(sequence to one), is the sum of the two marked values. The first marked
value has to be carried for 25 to 49 steps through 48 distractors, which is
where the gradient of a plain (Elman) RNN vanishes, while the gated cells
(LSTM, GRU) keep it.

Predicting the mean, 1, scores MSE = Var(u1 + u2) = 2/12 = 1/6 ~ 0.167.
"""
import contextlib
import warnings

import numpy as np

from crnn import ConvergenceWarning, RNNRegressor

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl is a test dependency
    threadpool_limits = None

T = 50
N_TRAIN, N_TEST = 2000, 1000
SEED = 0
# One budget for every cell.
BUDGET = dict(hidden_size=32, learning_rate=0.02, batch_size=32, max_iter=15,
              n_iter_no_change=15, clip_norm=1.0, random_state=SEED)

GATED_MSE_MAX = 0.01     # LSTM and GRU: solve the task
ELMAN_MSE_MIN = 0.05     # Elman RNN: stays near the mean predictor (1/6)


def adding_problem(n, T, rng):
    """Inputs (n, T, 2) and targets (n,) of the adding problem."""
    X = np.zeros((n, T, 2))
    X[:, :, 0] = rng.uniform(0.0, 1.0, size=(n, T))
    rows = np.arange(n)
    first = rng.integers(0, T // 2, size=n)
    second = rng.integers(T // 2, T, size=n)
    X[rows, first, 1] = 1.0
    X[rows, second, 1] = 1.0
    y = X[rows, first, 0] + X[rows, second, 0]
    return X, y


def held_out_mse(cell, seed=SEED):
    """Train ``cell`` with the shared budget; its MSE on held-out sequences."""
    rng = np.random.default_rng(seed)
    X, y = adding_problem(N_TRAIN + N_TEST, T, rng)
    X_train, y_train = X[:N_TRAIN], y[:N_TRAIN]
    X_test, y_test = X[N_TRAIN:], y[N_TRAIN:]
    params = dict(BUDGET, random_state=seed)
    # One BLAS thread: the result does not depend on the machine's core count
    # (the bounds were measured this way).
    limit = threadpool_limits(1) if threadpool_limits else contextlib.nullcontext()
    with limit, warnings.catch_warnings():
        # n_iter_no_change = max_iter: every cell runs all its epochs (no early
        # stop on a plateau), so fit always ends with a ConvergenceWarning.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = RNNRegressor(cell=cell, **params).fit(X_train, y_train)
    return float(np.mean((model.predict(X_test) - y_test) ** 2))


def test_adding_problem_gated_cells_remember_elman_forgets():
    """LSTM and GRU reach a held-out MSE below 0.01; the Elman RNN, trained
    with the same budget (H = 32, Adam lr = 0.02, batches of 32, 15 epochs of
    2000 sequences, clip_norm = 1, random_state = 0), stays above 0.05.

    Measured held-out MSE (1000 sequences) at this budget, seeds 0 .. 9
    (random_state = data seed), float64, crnn at commit 54354c8:

    ====== ========= ========= =======
    seed   lstm      gru       elman
    ====== ========= ========= =======
    0      0.00056   0.00044   0.185
    1      0.00032   0.00022   0.257
    2      0.00048   0.00045   0.171
    3      0.00032   0.00063   0.236
    4      0.00030   0.00026   0.168
    5      0.00026   0.00011   0.185
    6      0.00064   0.00131   0.169
    7      0.00060   0.00084   0.287
    8      0.00040   0.00046   0.179
    9      0.00029   0.00013   0.169
    ====== ========= ========= =======

    Worst of the ten: LSTM 0.00064 and GRU 0.0013 (8x under the bound),
    Elman 0.168 (3x over it; the mean predictor scores ~0.167). With the
    earlier kernels (scalar libm tanh/exp, before commit 3fedc70) LSTM and
    GRU gave the same numbers to 4 digits and Elman 0.164 .. 0.239.

    Over 20-epoch learning curves (seeds 0 .. 5, 500 held-out sequences) the
    LSTM left the 0.17 plateau between epochs 5 and 9 and the GRU by epoch
    3; no LSTM/GRU curve rose above 0.0035 after epoch 11, and no Elman
    curve went below 0.153 at any epoch.

    The test runs seed 0 in about 8 s on a 2-core machine (25 s, with the
    earlier kernels, while 4-6 other busy processes shared it), so it is not
    marked slow.
    """
    mse = {cell: held_out_mse(cell) for cell in ("lstm", "gru", "elman")}
    rng = np.random.default_rng(SEED)
    _, y = adding_problem(N_TRAIN + N_TEST, T, rng)
    baseline = float(np.var(y[N_TRAIN:]))
    assert 0.13 < baseline < 0.2, baseline  # ~1/6: the task is as described
    assert mse["lstm"] < GATED_MSE_MAX, mse
    assert mse["gru"] < GATED_MSE_MAX, mse
    assert mse["elman"] > ELMAN_MSE_MIN, mse
