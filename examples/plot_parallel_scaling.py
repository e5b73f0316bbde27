"""
Training and predicting on every core, bit for bit
==================================================

``fit`` splits every mini-batch, and ``predict`` the sequences, into blocks
that depend only on the data, and runs the blocks on ``n_jobs`` threads.
This example times one epoch of ``fit`` and a ``predict`` over 2048
sequences for each thread count this machine offers, and checks that every
thread count gives exactly the same weights and predictions.

The timings are taken while these pages are built, on whatever machine
builds them: read the plot for its shape, and ``docs/parallelism.md`` for
measured figures.
"""
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

from crnn import ConvergenceWarning, RNNRegressor

rng = np.random.default_rng(0)
X = rng.normal(size=(2048, 50, 8)).astype(np.float32)
y = X[:, -5:, 0].sum(axis=1)


def model(n_jobs):
    return RNNRegressor(64, cell="lstm", dtype="float32", batch_size=64, max_iter=1,
                        random_state=0, n_jobs=n_jobs)


def best_of(k, call):
    """The shortest of ``k`` runs of ``call`` (seconds), and its result."""
    best = np.inf
    for _ in range(k):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


# %%
# One epoch of ``fit`` on 1024 sequences (batches of 64: four blocks of 16),
# then ``predict`` on all 2048, for 1 .. all cores (best of 3 and of 5).

threads = list(range(1, len(os.sched_getaffinity(0)) + 1))
fit_s, pred_s, weights, predictions = [], [], [], []
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for n_jobs in threads:
        seconds, fitted = best_of(3, lambda: model(n_jobs).fit(X[:1024], y[:1024]))
        fit_s.append(seconds)
        weights.append(fitted.params_)
        seconds, Y = best_of(5, lambda: fitted.predict(X))
        pred_s.append(seconds)
        predictions.append(Y)

print("weights bit-identical for n_jobs in", threads, ":",
      all(np.array_equal(w, weights[0]) for w in weights))
print("predictions bit-identical:", all(np.array_equal(p, predictions[0]) for p in predictions))
for k, f, p in zip(threads, fit_s, pred_s):
    print(f"n_jobs={k}: fit {f:.2f} s ({fit_s[0] / f:.2f}x), "
          f"predict {1e3 * p:.1f} ms ({pred_s[0] / p:.2f}x)")

# %%
# Speed-up against one thread; the dashed line is perfect scaling.

fig, ax = plt.subplots(figsize=(5.5, 3.5))
width = 0.38
ticks = np.arange(len(threads))
ax.bar(ticks - width / 2, [fit_s[0] / s for s in fit_s], width, color="#4c72b0",
       label="fit, one epoch")
ax.bar(ticks + width / 2, [pred_s[0] / s for s in pred_s], width, color="#dd8452",
       label="predict")
ax.plot(ticks, threads, "k--", lw=1, label="perfect scaling")
ax.set_xticks(ticks, [str(k) for k in threads])
ax.set_xlabel("n_jobs (threads)")
ax.set_ylabel("speed-up over n_jobs=1")
ax.set_title("LSTM H=64, sequences of 50 steps, float32")
ax.legend(loc="upper left", frameon=False)
fig.tight_layout()
plt.show()
