"""
Predicting on every core, bit for bit
=====================================

``predict`` splits the sequences into blocks that depend only on the data
and runs them on ``n_jobs`` threads. This example times ``predict`` over
2048 sequences for each thread count this machine offers, and checks that
every thread count gives exactly the same predictions.

The timings are taken while these pages are built, on whatever machine
builds them: read the plot for its shape, and ``docs/parallelism.md`` for
measured figures.
"""
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from crnn import RNNRegressor

rng = np.random.default_rng(0)
X = rng.normal(size=(2048, 50, 8)).astype(np.float32)
y = X[:, -5:, 0].sum(axis=1)
model = RNNRegressor(64, cell="lstm", dtype="float32", max_iter=20,
                     random_state=0).fit(X[:256], y[:256])

# %%
# Time ``predict`` for 1 .. all cores (best of 5), and keep the predictions.

threads = list(range(1, len(os.sched_getaffinity(0)) + 1))
seconds, predictions = [], []
for n_jobs in threads:
    model.set_params(n_jobs=n_jobs)
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        Y = model.predict(X)
        best = min(best, time.perf_counter() - start)
    seconds.append(best)
    predictions.append(Y)

identical = all(np.array_equal(p, predictions[0]) for p in predictions)
print(f"bit-identical for n_jobs in {threads}: {identical}")
for k, s in zip(threads, seconds):
    print(f"n_jobs={k}: {1e3 * s:.1f} ms ({seconds[0] / s:.2f}x)")

# %%
# Speed-up against one thread; the dashed line is perfect scaling.

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.bar(threads, [seconds[0] / s for s in seconds], color="#4c72b0", width=0.6,
       label="crnn predict, LSTM H=64")
ax.plot(threads, threads, "k--", lw=1, label="perfect scaling")
ax.set_xticks(threads)
ax.set_xlabel("n_jobs (threads)")
ax.set_ylabel("speed-up over n_jobs=1")
ax.set_title("predict over 2048 sequences of 50 steps")
ax.legend(loc="upper left", frameon=False)
fig.tight_layout()
plt.show()
