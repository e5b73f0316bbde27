"""
Forecasting ten years of sunspots
=================================

Train a small GRU to predict next year's sunspot number from the 22 years
before it, then forecast 10 years ahead *recursively* with
:meth:`~crnn.RNNRegressor.forecast`: each forecast is fed back as the next
input, from the state the network reached, one network step per year.
Beside it, the *direct* model: the same network with 10 outputs, one per
year ahead. Held out: every forecast that starts in 1950-1999. Against
them, the naive forecast (the last year again, for every horizon) and the
seasonal-naive one (the value 11 years before: one solar cycle).
"""
import warnings

import matplotlib.pyplot as plt
import numpy as np

import crnn
from crnn.preprocessing import make_windows

years, spots = crnn.load_sunspots()
split, lookback, horizons = np.searchsorted(years, 1950), 22, 10
scale = spots[:split].std()                     # from the training years only
series = spots / scale

# %%
# Windows of 22 years and the year after them (the recursive model), or the
# 10 years after them (the direct one); each model trains on the windows
# whose targets all precede 1950. With 220 overlapping windows of one
# series, one training run depends on its seed: the forecasts below are
# the mean of five seeds' models.

X, y, index = make_windows(series, lookback, return_index=True)
X_10, Y_10, index_10 = make_windows(series, lookback, horizons, return_index=True)
train, train_10 = index[:, 1] < split, index_10[:, 1] + horizons - 1 < split
held_out = index_10[:, 1] >= split
X_test, Y_test, first = X_10[held_out], Y_10[held_out], index_10[held_out, 1]
settings = dict(cell="gru", max_iter=200, learning_rate=3e-3, alpha=1e-3,
                clip_norm=1.0, n_iter_no_change=10 ** 6)
recursive, direct = [], []
with warnings.catch_warnings():     # all 200 epochs run, by design
    warnings.simplefilter("ignore", crnn.ConvergenceWarning)
    for seed in range(5):
        one_step = crnn.RNNRegressor(8, random_state=seed, **settings)
        one_step.fit(X[train], y[train, 0])
        recursive.append(one_step.forecast(X_test, horizons))
        ten_outputs = crnn.RNNRegressor(8, random_state=seed, **settings)
        ten_outputs.fit(X_10[train_10], Y_10[train_10])
        direct.append(ten_outputs.predict(X_test))

# %%
# Forecast 10 years from every held-out origin, and score each horizon.

forecasts = np.mean(recursive, axis=0)
direct = np.mean(direct, axis=0)
naive = np.repeat(X_test[:, -1, :], horizons, axis=1)
seasonal = np.stack([series[first + h - 11] for h in range(horizons)], axis=1)


def rmse(f):
    return np.sqrt(((f - Y_test) ** 2).mean(axis=0)) * scale


table = {"RNN, recursive": rmse(forecasts), "RNN, direct": rmse(direct),
         "naive": rmse(naive), "seasonal naive (11 y)": rmse(seasonal)}
print(f"{len(Y_test)} forecasts from {years[first[0]]} to {years[first[-1]]}")
print("horizon (years)        " + " ".join(f"{h:5d}" for h in range(1, horizons + 1)))
for name, values in table.items():
    print(f"{name:22s} " + " ".join(f"{v:5.1f}" for v in values))

# %%
# The forecast of 1979-1988 (a solar maximum, then a minimum) made at the
# end of 1978, and the RMSE of every method at every horizon.

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
k = int(np.searchsorted(years[first], 1979))
start = first[k]
span = slice(start - lookback, start + horizons)
left.plot(years[span], spots[span], color="0.3", lw=1.5, label="observed")
left.plot(years[start:start + horizons], forecasts[k] * scale, "o-", color="tab:blue",
          ms=4, label="RNN, recursive")
left.plot(years[start:start + horizons], direct[k] * scale, "d-", color="tab:purple",
          ms=4, label="RNN, direct")
left.plot(years[start:start + horizons], naive[k] * scale, "--", color="tab:orange",
          label="naive")
left.plot(years[start:start + horizons], seasonal[k] * scale, ":", color="tab:green",
          lw=2, label="seasonal naive")
left.axvline(years[start] - 0.5, color="0.7", lw=1)
left.set(xlabel="year", ylabel="sunspot number",
         title=f"{years[start]}-{years[start + horizons - 1]}, forecast in "
               f"{years[start - 1]}")
left.legend(loc="upper left", fontsize=8)
colors = ["tab:blue", "tab:purple", "tab:orange", "tab:green"]
for (name, values), style, color in zip(table.items(), ["o-", "d-", "s--", "^:"], colors):
    right.plot(np.arange(1, horizons + 1), values, style, color=color, label=name)
right.set(xlabel="horizon (years ahead)", ylabel="RMSE (sunspots)", ylim=(0, None),
          title=f"{len(Y_test)} held-out forecasts, 1950-{years[first[-1]] + horizons - 1}")
right.legend(loc="lower right", fontsize=8)
plt.show()
