"""
Checking the gradient
=====================

:func:`crnn.check_gradient` compares the gradient that backpropagation
through time computes for every parameter with a finite-difference estimate
of the same derivative. This example runs it on each cell type, stacked,
bidirectional and on sequences of different lengths, and then shows how
the agreement depends on the finite-difference step.
"""

import matplotlib.pyplot as plt
import numpy as np

import crnn

rng = np.random.default_rng(0)
# 6 sequences of 2 to 9 steps, 2 features each: a ragged batch.
X = [rng.normal(size=(n, 2)) for n in (9, 7, 7, 4, 3, 2)]
y = rng.normal(size=len(X))

# %%
# Every parameter block, every cell
# ---------------------------------
# Unfitted estimators are checked at random weights drawn as ``fit`` draws
# them, with random non-zero biases. Each block gets the relative error
# ``max|g_bptt - g_fd| / max|g|`` (see :class:`crnn.GradientCheck`).

checks = {}
for cell in ("elman", "lstm", "gru"):
    model = crnn.RNNRegressor(hidden_size=3, cell=cell, num_layers=2,
                              bidirectional=True)
    check = checks[cell] = crnn.check_gradient(model, X, y)
    n_params = sum(g.size for g in check.analytic.values())
    print(f"{cell:<5} {n_params:4d} parameters, "
          f"max relative error {check.max_error:.1e}")

blocks = list(checks["gru"].errors)      # the GRU has a block more: b_hn
fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
width = 0.27
for k, (cell, check) in enumerate(checks.items()):
    positions = [i + (k - 1) * width for i, name in enumerate(blocks)
                 if name in check.errors]
    errors = [check.errors[name] for name in blocks if name in check.errors]
    ax.bar(positions, errors, width, label=cell)
ax.axhline(1e-6, color="tab:red", ls="--", lw=1,
           label="test suite's bound, 1e-6")
ax.set_xticks(range(len(blocks)), blocks, rotation=45, ha="right")
ax.set(yscale="log", ylim=(1e-14, 1e-4), ylabel="relative error (max norm)",
       title="BPTT against finite differences: 2 bidirectional layers, "
       "ragged batch")
ax.legend(ncols=4, loc="upper left")

# %%
# Every block agrees to between 1e-13 and 1e-9, at least three orders of
# magnitude below the bound that crnn's tests enforce for every cell,
# activation, loss and shape. What is left is the error of the
# finite-difference estimate itself, as the next plot shows.
#
# The finite-difference step
# --------------------------
# The estimate uses the fourth-order central stencil, whose truncation error
# falls like ``epsilon**4``, while rounding error in the four loss values
# grows like ``1e-16 / epsilon``: on the log-log plot, slopes of 4 on the
# right and -1 on the left. The agreement is best in between, near the
# default step ``epsilon=1e-4``.

model = crnn.RNNRegressor(hidden_size=4, cell="lstm")
steps = np.logspace(-7, -0.5, 14)
errors = [crnn.check_gradient(model, X, y, epsilon=e).max_error for e in steps]
for e, err in zip(steps[::3], errors[::3]):
    print(f"epsilon {e:.0e}: max relative error {err:.1e}")

fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
ax.loglog(steps, errors, "o-", label="max relative error")
ax.axvline(1e-4, color="0.5", ls=":", lw=1, label="default epsilon = 1e-4")
ax.set(xlabel="finite-difference step epsilon", ylabel="relative error",
       title="Rounding (small steps) against truncation (large steps)")
ax.legend()
plt.show()
