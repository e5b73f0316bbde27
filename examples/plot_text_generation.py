"""
Generating text, character by character
=======================================

Train an LSTM on 99 KB of Shakespeare's *Coriolanus* (shipped with crnn,
:func:`~crnn.load_coriolanus`) to predict each next character, then continue
a prompt with :meth:`~crnn.RNNClassifier.generate` at several temperatures.
The temperature divides the log-probabilities before each draw: low values
pick the likeliest characters (fluent, repetitive), high values flatten the
distribution (inventive, then garbled).

The model reads character ids through a trained embedding
(``vocab_size``, ``embedding_dim``): each step's input is the character's
row of ``W_emb``, learnt with the rest of the network.
"""
import warnings

import matplotlib.pyplot as plt
import numpy as np

import crnn

text = crnn.load_coriolanus()
chars, codes = np.unique(list(text), return_inverse=True)
V, L = chars.size, 64

# %%
# Cut the text into sequences of 64 characters; the input at each step is
# the id of a character (its index in ``chars``), the label the character
# after it. ``classes=chars`` keeps every character a column of the
# probabilities, in the order of the ids.

n = (codes.size - 1) // L
X = codes[:n * L].reshape(n, L)
y = chars[codes[1:n * L + 1].reshape(n, L)]

model = crnn.RNNClassifier(128, cell="lstm", return_sequences=True, dtype="float32",
                           vocab_size=V, embedding_dim=32, max_iter=15,
                           learning_rate=1e-2, batch_size=32, random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", crnn.ConvergenceWarning)
    model.fit(X, y, classes=chars)

# %%
# Continue the same prompt at four temperatures (the same seed each time).

prompt = "MENENIUS:\n"
for temperature in (0.2, 0.6, 1.0, 1.5):
    sample = model.generate(prompt, 160, temperature=temperature, random_state=0)
    print(f"--- temperature {temperature}\n{prompt}{sample}\n")

# %%
# What the temperature does to one distribution: the probabilities of the
# character after ``"CORIOLANUS:\nI"``, softened or sharpened, for the 12
# likeliest characters. Left, the training loss per epoch against the
# entropy of the character frequencies (what a model that ignores context
# reaches).

context = "CORIOLANUS:\nI"
p = model.predict_proba(np.searchsorted(chars, list(context))[None])[0, -1].astype(float)
top = np.argsort(p)[::-1][:12]
freq = np.bincount(codes, minlength=V) / codes.size
unigram = -np.sum(freq * np.log(freq))

fig, (ax_loss, ax_p) = plt.subplots(1, 2, figsize=(10, 4), width_ratios=[1, 1.6])
ax_loss.plot(np.arange(1, len(model.loss_curve_) + 1), model.loss_curve_, "o-",
             label="training loss")
ax_loss.axhline(unigram, color="grey", ls="--", label="character frequencies")
ax_loss.set(xlabel="epoch", ylabel="cross-entropy (nats per character)",
            title="Training")
ax_loss.legend()
width = 0.27
for k, temperature in enumerate((0.5, 1.0, 1.5)):
    q = p ** (1 / temperature)
    q /= q.sum()
    ax_p.bar(np.arange(12) + (k - 1) * width, q[top], width,
             label=f"temperature {temperature}")
names = {" ": "space", "\n": "newline"}
ax_p.set_xticks(np.arange(12), [names.get(str(c), str(c)) for c in chars[top]])
ax_p.set(ylabel="probability", title=f"Next character after {context!r}")
ax_p.legend()
fig.tight_layout()
plt.show()
