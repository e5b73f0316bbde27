"""The stepper section of ``bench.py``: one time step of one stream.

For each cell and H in (32, 128), I = 8, one output, float32, one thread,
the same weights everywhere, timed interleaved (microseconds per step):

* ``crnn stream.step``: ``model.stream().step(x_t)`` -- the public call;
* ``crnn compiled step``: ``stream.steps`` over 1000 steps in one call,
  divided by 1000 -- the compiled step alone, without a Python call per step;
* ``torch cell loop``: ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell`` and
  an ``nn.Linear`` head, one step per call, under ``torch.inference_mode``
  (entered once, around the whole measurement, as a serving loop would);
* ``ORT step``: ONNX Runtime running ``crnn.to_onnx(model, states=True)``
  on one step, the states fed back in.

Before timing, 20 steps of each are checked against crnn's stream (1e-4).
"""
import contextlib
import warnings

import numpy as np

try:
    import torch
except ImportError:
    torch = None
try:
    import onnx  # noqa: F401
    import onnxruntime
except ImportError:
    onnxruntime = None

import crnn

CELLS_H = [(cell, H) for cell in ("elman", "lstm", "gru") for H in (32, 128)]
I, CHUNK = 8, 1000


def _model(cell, H):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 20, I)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crnn.ConvergenceWarning)
        return crnn.RNNRegressor(H, cell=cell, dtype="float32", max_iter=1,
                                 random_state=0).fit(X, X[:, -1, 0]), X[0]


def _torch_step(model, cell, H):
    """A step function of a PyTorch cell with the model's weights."""
    state = crnn.to_torch_state_dict(model)
    module = {"elman": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell,
              "gru": torch.nn.GRUCell}[cell](I, H)
    head = torch.nn.Linear(H, 1)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(module, name).copy_(torch.from_numpy(np.asarray(state[name + "_l0"])))
        head.weight.copy_(torch.from_numpy(np.asarray(state["head.weight"])))
        head.bias.copy_(torch.from_numpy(np.asarray(state["head.bias"])))
    h = [torch.zeros(1, H), torch.zeros(1, H)] if cell == "lstm" else [torch.zeros(1, H)]

    def step(x):
        if cell == "lstm":
            h[:] = module(x, (h[0], h[1]))
        else:
            h[0] = module(x, h[0])
        return head(h[0])
    return step


def _ort_step(model, cell, H):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = onnxruntime.InferenceSession(
        crnn.to_onnx(model, lengths=False, states=True).SerializeToString(), options,
        providers=["CPUExecutionProvider"])
    names = ["initial_h", "initial_c"] if cell == "lstm" else ["initial_h"]
    feeds = {name: np.zeros((1, 1, H), np.float32) for name in names}

    def step(x):
        feeds["X"] = x
        y, *finals = session.run(None, feeds)
        for name, value in zip(names, finals):
            feeds[name] = value
        return y
    return step


def _measure(bench, contenders, timing):
    """``bench.measure`` under ``torch.inference_mode`` (entered once, as a
    serving loop would) when PyTorch is installed."""
    with torch.inference_mode() if torch is not None else contextlib.nullcontext():
        return bench.measure(contenders, timing)


def run_stepper(bench, timing):
    """Microseconds per step of every contender, per cell and H."""
    results = []
    for cell, H in CELLS_H:
        model, X = _model(cell, H)
        stream, chunk_stream = model.stream(), model.stream()
        chunk = np.ascontiguousarray(np.resize(X, (CHUNK, I)))
        x = np.ascontiguousarray(X[0])
        expected = [float(y) for y in model.stream().steps(X[:20])]
        contenders = {"crnn stream.step": lambda: stream.step(x),
                      "crnn compiled step": lambda: chunk_stream.steps(chunk)}
        checks = {}
        if torch is not None:
            torch_step, x_t = _torch_step(model, cell, H), torch.from_numpy(X[:1].copy())
            check_step = _torch_step(model, cell, H)
            with torch.inference_mode():
                checks["torch"] = [float(check_step(torch.from_numpy(X[t:t + 1].copy())))
                                   for t in range(20)]
            contenders["torch cell loop"] = lambda: torch_step(x_t)
        if onnxruntime is not None:
            ort_step, x_o = _ort_step(model, cell, H), X[:1, None, :].copy()
            check_step = _ort_step(model, cell, H)
            checks["ort"] = [float(check_step(X[t:t + 1, None, :].copy()).ravel()[0])
                             for t in range(20)]
            contenders["ORT step"] = lambda: ort_step(x_o)
        for name, values in checks.items():
            error = np.abs(np.array(values) - expected).max()
            if error > 1e-4:
                raise SystemExit(f"ABORT: the {name} step differs from crnn's stream by "
                                 f"{error:.2e} ({cell}, H={H})")
        raw = _measure(bench, contenders, timing)
        raw["crnn compiled step"] = {k: (v / CHUNK if k.endswith("_s") else v)
                                     for k, v in raw["crnn compiled step"].items()
                                     if k != "samples_s"}
        results.append({"cell": cell, "H": H, "I": I, "raw": raw})
        print(f"  stepper {cell} H={H}: done", flush=True)
    return results


def print_stepper(results):
    if not results:
        return
    print("\n## One step of one stream, float32, 1 thread (median us per step; I = 8)\n")
    names = ["crnn stream.step", "crnn compiled step", "torch cell loop", "ORT step"]
    print("| cell | H | " + " | ".join(names) + " | step / compiled | torch / step "
          "| ORT / step |")
    print("|---|---|" + "---|" * (len(names) + 3))
    for r in results:
        us = {n: r["raw"][n]["median_s"] * 1e6 for n in names if n in r["raw"]}
        step = us["crnn stream.step"]
        cells = [f"{us[n]:.2f}" if n in us else "-" for n in names]
        ratios = [f"{step / us['crnn compiled step']:.2f}"]
        ratios += [f"{us[n] / step:.1f}" if n in us else "-"
                   for n in ("torch cell loop", "ORT step")]
        print(f"| {r['cell']} | {r['H']} | " + " | ".join(cells + ratios) + " |")


GEN_H, GEN_TOKENS = (32, 128), 100


def _char_model(H):
    """An LSTM next-character model over the shipped text's 61 characters
    (one epoch on 64 sequences: the cost per token does not depend on the
    weights)."""
    from crnn.preprocessing import one_hot
    text = crnn.load_coriolanus()
    chars, codes = np.unique(list(text), return_inverse=True)
    X = one_hot(codes[:64 * 32].reshape(64, 32), chars.size, dtype=np.float32)
    y = chars[codes[1:64 * 32 + 1].reshape(64, 32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crnn.ConvergenceWarning)
        return crnn.RNNClassifier(H, cell="lstm", return_sequences=True, dtype="float32",
                                  max_iter=1, random_state=0).fit(X, y, classes=chars)


def _torch_sampler(model, H):
    """A PyTorch sampling loop on the same weights: LSTMCell, Linear head,
    softmax of the logits over the temperature, torch.multinomial."""
    V = model.classes_.size
    state = crnn.to_torch_state_dict(model)
    cell, head = torch.nn.LSTMCell(V, H), torch.nn.Linear(H, V)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(torch.from_numpy(np.asarray(state[name + "_l0"])))
        head.weight.copy_(torch.from_numpy(np.asarray(state["head.weight"])))
        head.bias.copy_(torch.from_numpy(np.asarray(state["head.bias"])))
    eye = torch.eye(V)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        first = torch.softmax(head(cell(eye[:1])[0])[0], dim=0).numpy()
    error = np.abs(first - model.predict_proba(np.eye(V, dtype=np.float32)[None, :1])[0, -1]).max()
    if error > 1e-4:
        raise SystemExit(f"ABORT: the torch sampler's probabilities differ from crnn's by "
                         f"{error:.2e} (H={H})")

    def sample(n_tokens, temperature=0.8):
        h = (torch.zeros(1, H), torch.zeros(1, H))
        token, out = 0, []
        for _ in range(n_tokens):
            h = cell(eye[token:token + 1], h)
            p = torch.softmax(head(h[0])[0] / temperature, dim=0)
            token = int(torch.multinomial(p, 1, generator=generator))
            out.append(token)
        return out
    return sample


def run_generate(bench, timing):
    """Microseconds per generated token: ``model.generate`` against a
    PyTorch sampling loop, LSTM, 61 characters, H = 32 and 128."""
    results = []
    for H in GEN_H:
        model = _char_model(H)
        prompt = model.classes_[:1]
        contenders = {"crnn generate": lambda: model.generate(
            prompt, GEN_TOKENS, temperature=0.8, random_state=0)}
        if torch is not None:
            sampler = _torch_sampler(model, H)
            contenders["torch sampling loop"] = lambda: sampler(GEN_TOKENS)
        raw = _measure(bench, contenders, timing)
        results.append({"H": H, "V": int(model.classes_.size), "raw": raw})
        print(f"  generate H={H}: done", flush=True)
    return results


def print_generate(results):
    if not results:
        return
    print(f"\n## Generating text, LSTM, float32, 1 thread (median us per token over "
          f"{GEN_TOKENS} tokens, temperature 0.8)\n")
    print("| H | vocabulary | crnn generate | torch sampling loop | torch / crnn |")
    print("|---|---|---|---|---|")
    for r in results:
        us = {n: r["raw"][n]["median_s"] * 1e6 / GEN_TOKENS for n in r["raw"]}
        crnn_us, torch_us = us["crnn generate"], us.get("torch sampling loop")
        ratio = f"{torch_us / crnn_us:.1f}" if torch_us else "-"
        torch_cell = f"{torch_us:.1f}" if torch_us else "-"
        print(f"| {r['H']} | {r['V']} | {crnn_us:.1f} | {torch_cell} | {ratio} |")
