"""
Forecasting the sunspot cycle
=============================

Train an Elman RNN to forecast next year's sunspot number from the 20
years before it, on the yearly record 1700-2008 that ships with crnn
(:func:`crnn.load_sunspots`), and compare its forecasts on held-out years
with the naive (persistence) forecast "next year equals this year".

This is what ``python -m crnn`` does, with plots.
"""

# sphinx_gallery_thumbnail_number = 3

import matplotlib.pyplot as plt
import numpy as np

import crnn

years, sunspots = crnn.load_sunspots()
print(f"{years.size} years, {years[0]}-{years[-1]}")

# %%
# Windows of 20 years
# -------------------
# Each input sequence is 20 consecutive yearly values, one feature per step,
# so ``X`` is ``(n_samples, n_timesteps)``; its target is the value of the
# following year (sequence to one). The years from 1950 on are held out,
# and the series is scaled by the standard deviation of the training years
# only, so that nothing of the test period leaks into training.

window, test_from = 20, 1950
X = np.lib.stride_tricks.sliding_window_view(sunspots[:-1], window)
y = sunspots[window:]
target_years = years[window:]
train = target_years < test_from
scale = sunspots[years < test_from].std()
X, y = X / scale, y / scale
print(f"X: {X.shape}")
print(f"training: {train.sum()} windows, targets "
      f"{target_years[train][0]}-{target_years[train][-1]}")
print(f"test:     {(~train).sum()} windows, targets "
      f"{target_years[~train][0]}-{target_years[-1]}")

fig, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
ax.plot(years, sunspots, color="0.25", lw=1)
ax.axvspan(test_from - 0.5, years[-1] + 0.5, color="tab:orange",
           alpha=0.15, label="held out")
ax.set(xlabel="year", ylabel="yearly mean sunspot number",
       xlim=(years[0], years[-1]), title="The shipped record")
ax.legend(loc="upper left")

# %%
# Training with early stopping
# ----------------------------
# ``early_stopping=True`` holds out a random 20 % of the training windows,
# records its loss after every epoch in ``validation_loss_curve_`` (the
# training loss goes to ``loss_curve_``), stops when it has not improved for
# ``n_iter_no_change`` epochs and restores the weights of the best epoch.
# Gradient clipping (``clip_norm``) and a small L2 penalty (``alpha``) keep
# the fit stable.

model = crnn.RNNRegressor(
    hidden_size=32, cell="elman", learning_rate=3e-3, batch_size=16,
    max_iter=300, tol=1e-5, n_iter_no_change=40, early_stopping=True,
    validation_fraction=0.2, clip_norm=1.0, alpha=1e-4, random_state=0,
)
model.fit(X[train], y[train])
best = int(np.argmin(model.validation_loss_curve_)) + 1
print(f"{model.n_iter_} epochs; weights of epoch {best} restored "
      f"(validation loss {min(model.validation_loss_curve_):.4f}); "
      f"{model.params_.size} parameters")

# %%
# The loss curves (mean squared error on the scaled series, plus the L2
# penalty): the training loss keeps falling while the validation loss turns
# up after a few epochs, the model starting to fit the noise of the
# training years; the weights of the best validation epoch are kept.

fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
epochs = np.arange(1, model.n_iter_ + 1)
ax.plot(epochs, model.loss_curve_, label="training (loss_curve_)")
ax.plot(epochs, model.validation_loss_curve_,
        label="validation (validation_loss_curve_)")
ax.axvline(best, color="0.5", ls="--", lw=1, label=f"restored: epoch {best}")
ax.set(xlabel="epoch", ylabel="loss", ylim=(0, None), title="Loss curves")
ax.legend()

# %%
# Forecasts on the held-out years
# -------------------------------
# Each forecast is one year ahead, from the 20 actual values before it. The
# naive forecast repeats the last value of the window.


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


test_years = target_years[~train]
actual = y[~train] * scale
forecast = model.predict(X[~train]) * scale
naive = X[~train][:, -1] * scale
print(f"RMSE {test_from}-{test_years[-1]} (sunspot number):")
print(f"  Elman RNN             {rmse(forecast, actual):6.2f}")
print(f"  naive (last year)     {rmse(naive, actual):6.2f}")
ratio = rmse(forecast, actual) / rmse(naive, actual)
print(f"  RNN / naive           {ratio:6.2f}")

fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
ax.plot(test_years, actual, color="black", lw=2, label="actual")
ax.plot(test_years, forecast, color="tab:blue", marker="o", ms=3,
        label=f"Elman RNN (RMSE {rmse(forecast, actual):.1f})")
ax.plot(test_years, naive, color="tab:orange", ls="--",
        label=f"naive: last year (RMSE {rmse(naive, actual):.1f})")
ax.set(xlabel="year", ylabel="yearly mean sunspot number",
       title=f"One year ahead, {test_from}-{test_years[-1]} (held out)")
ax.legend(loc="upper right")

# %%
# The naive forecast lags the cycle by one year; the network has learned
# its shape, rising and falling in time, though it still misses the height
# of some peaks. Its absolute errors, year by year:

fig, ax = plt.subplots(figsize=(9, 2.8), layout="constrained")
ax.bar(test_years - 0.2, np.abs(forecast - actual), width=0.4,
       color="tab:blue", label="Elman RNN")
ax.bar(test_years + 0.2, np.abs(naive - actual), width=0.4,
       color="tab:orange", label="naive")
ax.set(xlabel="year", ylabel="absolute error", title="Forecast errors")
ax.legend()

# %%
# The gated cells
# ---------------
# The same fit with ``cell="lstm"`` and ``cell="gru"``, everything else
# unchanged.

for cell in ("elman", "lstm", "gru"):
    other = crnn.RNNRegressor(**{**model.get_params(), "cell": cell})
    other.fit(X[train], y[train])
    error = rmse(other.predict(X[~train]) * scale, actual)
    print(f"  {cell:<5} RMSE {error:6.2f}  ({other.n_iter_:3d} epochs, "
          f"{other.params_.size} parameters)")

plt.show()
