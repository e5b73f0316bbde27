"""The token section of ``bench.py``: a training step on token ids.

An LSTM (H = 128) reads B = 32 sequences of T = 50 token ids from a
vocabulary of V, sequence to one, one output, squared error, float32, one
thread, the same weights everywhere, timed interleaved (ms per training
step: forward, loss and the whole gradient):

* ``crnn embedding``: ``vocab_size=V, embedding_dim=E``: the first layer
  reads ``W_emb[k_t]`` (a row copy), and BPTT scatter-adds into those rows;
* ``crnn one-hot``: the same network fed one-hot vectors, the embedding
  folded into the input weights (``W_ih' = W_ih W_emb^T``, ``(4H, V)``): the
  same outputs, an input product ``(T*B, V) (V, 4H)`` instead;
* ``torch embedding``: ``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear``,
  ``zero_grad``, forward, MSE loss, ``backward``.

Before timing, the three losses are checked against each other (1e-4).
"""
import numpy as np

try:
    import torch
except ImportError:
    torch = None

from crnn._network import RecurrentNetwork
from crnn._validation import check_sequences, check_tokens
from crnn.preprocessing import one_hot

CASES = [(61, 32), (1000, 64), (5000, 64)]          # (V, E)
B, T, H = 32, 50, 128


def _problem(V, E):
    """The two crnn networks with equal outputs, their batches and parameters."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, V, size=(B, T))
    target = rng.normal(size=(B, 1)).astype(np.float32)
    net_e = RecurrentNetwork(E, H, 1, cell="lstm", dtype=np.float32, vocab_size=V)
    params_e = net_e.init_params(rng, random_biases=True)
    net_o = RecurrentNetwork(V, H, 1, cell="lstm", dtype=np.float32)
    params_o = net_o.layout.zeros(np.float32)
    P_e, P_o = net_e.views(params_e)[0], net_o.views(params_o)[0]
    for name in P_o:
        P_o[name][...] = (P_e[name] if name != "W_ih_l0"
                          else P_e["W_ih_l0"] @ P_e["W_emb"].T)
    batch_e = check_tokens(tokens, V).pack()
    batch_o = check_sequences(one_hot(tokens, V, dtype=np.float32), np.float32).pack()
    return tokens, target, (net_e, params_e, batch_e), (net_o, params_o, batch_o)


def _torch_step(P, tokens, target, V, E):
    """A PyTorch training step of nn.Embedding + nn.LSTM + nn.Linear with the
    weights ``P`` (crnn's named views); returns the step function."""
    emb, lstm, head = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, batch_first=True), \
        torch.nn.Linear(H, 1)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(P["W_emb"]))
        lstm.weight_ih_l0.copy_(torch.from_numpy(P["W_ih_l0"]))
        lstm.weight_hh_l0.copy_(torch.from_numpy(P["W_hh_l0"]))
        lstm.bias_ih_l0.copy_(torch.from_numpy(P["b_l0"]))
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(P["W_y"]))
        head.bias.copy_(torch.from_numpy(P["b_y"]))
    modules = (emb, lstm, head)
    x, d = torch.from_numpy(tokens), torch.from_numpy(target)

    def step():
        for m in modules:
            m.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(head(lstm(emb(x))[1][0][-1]), d)
        loss.backward()
        return float(loss.detach())
    return step


def run_tokens(bench, timing):
    """Milliseconds per training step of every contender, per (V, E)."""
    results = []
    for V, E in CASES:
        tokens, target, (net_e, params_e, batch_e), (net_o, params_o, batch_o) = \
            _problem(V, E)
        grad_e, grad_o = np.empty_like(params_e), np.empty_like(params_o)
        contenders = {
            "crnn embedding": lambda: net_e.loss_grad(params_e, batch_e, target,
                                                      grad=grad_e)[0],
            "crnn one-hot": lambda: net_o.loss_grad(params_o, batch_o, target,
                                                    grad=grad_o)[0]}
        if torch is not None:
            contenders["torch embedding"] = _torch_step(net_e.views(params_e)[0], tokens,
                                                        target, V, E)
        losses = {name: float(fn()) for name, fn in contenders.items()}
        spread = max(losses.values()) - min(losses.values())
        if spread > 1e-4 * max(1.0, abs(losses["crnn embedding"])):
            raise SystemExit(f"ABORT: the token contenders' losses differ: {losses}")
        raw = bench.measure(contenders, timing)
        results.append({"V": V, "E": E, "B": B, "T": T, "H": H, "raw": raw})
        print(f"  tokens V={V} E={E}: done", flush=True)
    return results


def print_tokens(results):
    if not results:
        return
    print(f"\n## A training step on token ids, LSTM H = {H}, B = {B}, T = {T}, "
          f"float32, 1 thread (median ms per step)\n")
    names = ["crnn embedding", "crnn one-hot", "torch embedding"]
    print("| V | E | " + " | ".join(names) + " | one-hot / embedding | torch / embedding |")
    print("|---|---|" + "---|" * (len(names) + 2))
    for r in results:
        ms = {n: r["raw"][n]["median_s"] * 1e3 for n in names if n in r["raw"]}
        emb = ms["crnn embedding"]
        cells = [f"{ms[n]:.2f}" if n in ms else "-" for n in names]
        ratios = [f"{ms[n] / emb:.2f}" if n in ms else "-"
                  for n in ("crnn one-hot", "torch embedding")]
        print(f"| {r['V']} | {r['E']} | " + " | ".join(cells + ratios) + " |")
