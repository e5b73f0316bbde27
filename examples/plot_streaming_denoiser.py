"""
Ragged sequences and streaming: a denoiser
==========================================

A GRU learns to remove noise from sine waves, one output per time step
(``return_sequences=True``), trained on sequences of different lengths
given as a plain list. The trained model then filters a long signal that
arrives in chunks, carrying its state from one chunk to the next
(``initial_state`` / ``return_state``).
"""

# sphinx_gallery_thumbnail_number = 2

import matplotlib.pyplot as plt
import numpy as np

import crnn


def noisy_sines(n, rng):
    """n sine waves of 30 to 89 steps, random frequency and phase, and the
    same waves with Gaussian noise (standard deviation 0.4)."""
    inputs, targets = [], []
    for length in rng.integers(30, 90, size=n):
        t = np.arange(length)
        frequency, phase = rng.uniform(0.05, 0.2), rng.uniform(0, 2 * np.pi)
        clean = np.sin(2 * np.pi * frequency * t + phase)
        noisy = clean + rng.normal(scale=0.4, size=length)
        inputs.append(noisy[:, None])        # (n_timesteps_i, 1 feature)
        targets.append(clean)                # (n_timesteps_i,): one per step
    return inputs, targets


X_train, y_train = noisy_sines(400, np.random.default_rng(0))
X_test, y_test = noisy_sines(100, np.random.default_rng(1))
lengths = [len(x) for x in X_train]
print(f"{len(X_train)} training sequences of {min(lengths)} to "
      f"{max(lengths)} steps")

# %%
# Training on ragged sequences
# ----------------------------
# The lists go to ``fit`` as they are. crnn sorts each mini-batch by length
# and packs it, so every step computes only the sequences still running:
# no padding, no mask.

model = crnn.RNNRegressor(hidden_size=16, cell="gru", return_sequences=True,
                          learning_rate=1e-2, max_iter=300, random_state=0)
model.fit(X_train, y_train)
denoised = model.predict(X_test)             # a list, like X_test


def mse(outputs, targets):
    return float(np.mean(np.concatenate([(o - t) ** 2
                                         for o, t in zip(outputs, targets)])))


print(f"{model.n_iter_} epochs")
print(f"R^2 on held-out sequences: {model.score(X_test, y_test):.3f}")
noise = mse([x[:, 0] for x in X_test], y_test)
print(f"mean squared error, noisy input: {noise:.4f}")
print(f"mean squared error, GRU output:  {mse(denoised, y_test):.4f}")

fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharey=True,
                         layout="constrained")
for ax, i in zip(axes, np.argsort([len(x) for x in X_test])[[0, 50, -1]]):
    steps = np.arange(len(X_test[i]))
    ax.plot(steps, X_test[i][:, 0], ".", color="0.6", label="noisy input")
    ax.plot(steps, y_test[i], color="black", lw=1.5, label="clean signal")
    ax.plot(steps, denoised[i], color="tab:blue", lw=1.5, label="GRU output")
    ax.set_title(f"a held-out sequence of {len(steps)} steps", fontsize=10)
axes[0].legend(ncols=3, loc="lower left", fontsize=9)
axes[-1].set_xlabel("time step")

# %%
# The output needs a few steps at the start of each sequence to settle: the
# state starts at zero and the network cannot yet tell the wave's phase.
#
# Streaming
# ---------
# A long signal arrives 50 steps at a time. ``predict(...,
# return_state=True)`` also returns the state after the chunk, and
# ``initial_state=`` starts the next chunk from it: the outputs are those of
# one pass over the whole signal. Restarting every chunk from the zero state
# instead makes the network settle again at every chunk boundary.

t = np.arange(400)
clean = np.sin(2 * np.pi * 0.05 * t)
noisy = clean + np.random.default_rng(2).normal(scale=0.4, size=t.size)
signal = noisy[None, :, None]                # 1 sequence, 400 steps, 1 feature

one_pass = model.predict(signal)[0]
state, carried, restarted = None, [], []
for start in range(0, t.size, 50):
    chunk = signal[:, start:start + 50]
    out, state = model.predict(chunk, initial_state=state, return_state=True)
    carried.append(out[0])
    restarted.append(model.predict(chunk)[0])
carried, restarted = np.concatenate(carried), np.concatenate(restarted)
print(f"state carried:   max |chunked - one pass| = "
      f"{np.abs(carried - one_pass).max():.1e}")
print(f"state restarted: max |chunked - one pass| = "
      f"{np.abs(restarted - one_pass).max():.2f}")

shown = t < 200
fig, (top, bottom) = plt.subplots(
    2, 1, figsize=(9, 5), sharex=True, height_ratios=(2, 1),
    layout="constrained")
top.plot(t[shown], clean[shown], color="black", lw=1.5, label="clean signal")
top.plot(t[shown], carried[shown], color="tab:blue", lw=1.5,
         label="state carried (= one pass)")
top.plot(t[shown], restarted[shown], color="tab:red", lw=1.2, ls="--",
         label="state restarted")
top.set_title("A stream in chunks of 50 steps (the first 200 steps)")
top.legend(ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.02),
           fontsize=9, frameon=False)
bottom.plot(t[shown], np.abs(carried - one_pass)[shown], color="tab:blue")
bottom.plot(t[shown], np.abs(restarted - one_pass)[shown], color="tab:red",
            ls="--")
bottom.set(xlabel="time step", ylabel="|chunked - one pass|")
for ax in (top, bottom):
    for boundary in range(50, 200, 50):
        ax.axvline(boundary, color="0.6", lw=1, ls=":")
plt.show()

# %%
# With the state carried, the chunked outputs equal those of one pass, to
# the last bit. Restarted from the zero state, every chunk begins far off
# the one-pass output and takes some 20 steps to rejoin it.
