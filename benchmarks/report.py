"""Markdown tables from the JSON that ``bench.py --json`` writes.

Usage::

    python benchmarks/report.py benchmarks/results/full.json > tables.md

Prints, for the thread counts and dtypes of the run: the summary of the
training step (PyTorch time / crnn time per case and cell), the inference
summary against PyTorch and ONNX Runtime with the GFLOP/s a 1.2x lead would
take next to the machine's GEMM peak, the GEMM floor table of the cases
where it bounds the step, the full grid (train and infer, with the NumPy,
PyTorch and ONNX Runtime ratios and GFLOP/s), the overhead floor and
``predict``'s overhead, the end-to-end fit, peak memory, the ragged-lengths
table, and the stepper, generation and token sections. These are the tables
of ``docs/performance.md``; the prose around them is written by hand.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stepper  # noqa: E402  (the stepper, generation and token tables)
import tokens  # noqa: E402

CELLS = ("elman", "lstm", "gru")
FLOOR_CASES = ((32, 50, 32, 128), (64, 50, 64, 256), (64, 50, 128, 512))


def median(entry):
    return None if entry is None else entry["median_s"]


def ratio(num, den):
    return None if num is None or den is None else num / den


def fmt(x, digits=2):
    if x is None:
        return "-"
    return f"{x:.{digits}f}"


def ratio_text(x):
    """Ratios of 10 and more with no decimals, two decimals below."""
    if x is None:
        return "-"
    return f"{x:.0f}" if x >= 10 else f"{x:.2f}"


def case_key(c):
    return (c["B"], c["T"], c["I"], c["H"])


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if h.endswith(("ms", "/crnn", "GF/s", "us", "s")) or
                            "/" in h else "---" for h in header) + "|"]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def summary(data, threads):
    """torch/crnn train ratios: float32 (float64 in brackets)."""
    cases = [c for c in data["cases"] if c["threads"] == threads]
    order = list(dict.fromkeys(case_key(c) for c in cases))
    by = {(case_key(c), c["cell"], c["dtype"]): c for c in cases}
    rows = []
    for key in order:
        row = [f"({', '.join(map(str, key))})"]
        for cell in CELLS:
            parts = []
            for dtype in ("float32", "float64"):
                c = by.get((key, cell, dtype))
                r = c and ratio(median(c["train"].get("torch")), median(c["train"]["crnn"]))
                parts.append(ratio_text(r))
            row.append(f"{parts[0]} ({parts[1]})" if len(parts) > 1 else parts[0])
        rows.append(row)
    return table(["(B, T, I, H)", "Elman", "LSTM", "GRU"], rows)


def grid(data, threads):
    rows = []
    for c in data["cases"]:
        if c["threads"] != threads:
            continue
        for what in ("train", "infer"):
            m = {who: median(e) for who, e in c[what].items()}
            rows.append([c["cell"], f"({c['B']},{c['T']},{c['I']},{c['H']})", c["dtype"],
                         threads, what, fmt(m["crnn"] * 1e3, 3),
                         fmt(m.get("numpy") and m["numpy"] * 1e3, 3),
                         fmt(m.get("torch") and m["torch"] * 1e3, 3),
                         fmt(m.get("ort") and m["ort"] * 1e3, 3),
                         fmt(ratio(m.get("numpy"), m["crnn"])),
                         fmt(ratio(m.get("torch"), m["crnn"])),
                         fmt(ratio(m.get("ort"), m["crnn"])),
                         fmt(c[f"{what}_gflops"]["crnn"], 1),
                         fmt(c[f"{what}_gflops"].get("torch"), 1)])
    return table(["cell", "(B,T,I,H)", "dtype", "thr", "what", "crnn ms", "numpy ms",
                  "torch ms", "ort ms", "numpy/crnn", "torch/crnn", "ort/crnn",
                  "crnn GF/s", "torch GF/s"], rows)


def inference(data, threads, dtype="float32", lead=1.2):
    """Forward pass: PyTorch's and ONNX Runtime's time over crnn's, and the
    GFLOP/s crnn would need to lead the faster of them by ``lead``, against
    the machine's GEMM peak (a ``PEAK_N``-cubed product, scipy and MKL)."""
    peak = next((p for p in data.get("gemm_peak") or [] if p["dtype"] == dtype), None)
    top = max(peak["scipy_gflops"], peak.get("torch_gflops") or 0) if peak else None
    rows = []
    for c in data["cases"]:
        if c["threads"] != threads or c["dtype"] != dtype:
            continue
        m = {who: median(e) for who, e in c["infer"].items()}
        others = [m[k] for k in ("torch", "ort") if m.get(k)]
        flops = c["infer_gflops"]["crnn"] * m["crnn"]          # GFLOP of one pass
        needed = flops / (min(others) / lead) if others else None
        rows.append([c["cell"], f"({c['B']},{c['T']},{c['I']},{c['H']})",
                     fmt(m["crnn"] * 1e3, 3), fmt(ratio(m.get("torch"), m["crnn"])),
                     fmt(ratio(m.get("ort"), m["crnn"])),
                     fmt(c["infer_gflops"]["crnn"], 1), fmt(needed, 1),
                     f"{needed / top * 100:.0f} %" if needed and top else "-"])
    return table(["cell", "(B,T,I,H)", "crnn ms", "torch/crnn", "ort/crnn", "crnn GF/s",
                  f"GF/s for {lead}x", "of peak"], rows)


def predict_overhead(data):
    rows = []
    for r in data.get("predict_overhead") or []:
        raw = r["raw"]
        rows.append([r["cell"], r["dtype"], r["threads"],
                     fmt(raw["predict"]["median_s"] * 1e6, 1),
                     fmt(raw["kernel"]["median_s"] * 1e6, 1), fmt(r["overhead_s"] * 1e6, 1)])
    return table(["cell", "dtype", "thr", "predict us", "kernel us", "overhead us"], rows)


def floor(data, threads, only_large=True):
    rows = []
    for c in data["cases"]:
        if c["threads"] != threads or (only_large and case_key(c) not in FLOOR_CASES):
            continue
        f = c["gemm_floor"]["floor_s"]
        crnn, torch = median(c["train"]["crnn"]), median(c["train"].get("torch"))
        ref = c["gemm_reference"]["recurrent_BxH_HxG_gflops"]
        rows.append([c["cell"], f"({c['B']},{c['T']},{c['I']},{c['H']})", c["dtype"],
                     threads, fmt(f * 1e3, 3), fmt(crnn * 1e3, 3),
                     fmt(torch and torch * 1e3, 3), fmt(f / crnn),
                     fmt(ratio(torch, crnn)), fmt(ratio(torch, f)),
                     fmt(c["train_gflops"]["crnn"], 1), fmt(c["train_gflops"].get("torch"), 1),
                     fmt(ref, 1), f"{c['train_gflops']['crnn'] / ref * 100:.0f} %"])
    return table(["cell", "(B,T,I,H)", "dtype", "thr", "GEMM floor ms", "crnn ms",
                  "torch ms", "floor/crnn", "torch/crnn", "torch/floor", "crnn GF/s",
                  "torch GF/s", "gemm rec GF/s", "crnn/rec"], rows)


def overhead(data):
    rows = []
    for p in data["per_call_floor"]:
        m = {who: median(e) for who, e in p["raw"].items()}
        rows.append([p["cell"], p["dtype"], p["threads"], fmt(m["crnn"] * 1e6, 1),
                     fmt(m.get("numpy") and m["numpy"] * 1e6, 1),
                     fmt(m.get("torch") and m["torch"] * 1e6, 1),
                     fmt(ratio(m.get("torch"), m["crnn"]), 1)])
    return table(["cell", "dtype", "thr", "crnn us", "numpy us", "torch us", "torch/crnn"],
                 rows)


def fit(data):
    rows = []
    for f in data["fit"]:
        m = {who: median(e) for who, e in f["raw"].items()}
        loss = f["final_train_loss"]
        rows.append([f["cell"], f["H"], f["dtype"], f["threads"], fmt(m["crnn"], 3),
                     fmt(m.get("torch"), 3), fmt(ratio(m.get("torch"), m["crnn"])),
                     f"{loss['crnn']:.4g}", f"{loss['torch']:.4g}" if "torch" in loss else "-"])
    return table(["cell", "H", "dtype", "thr", "crnn s", "torch s", "torch/crnn",
                  "crnn loss", "torch loss"], rows)


def memory(data):
    mem = data.get("memory")
    if not mem:
        return ""
    mib = 2.0 ** 20
    rows = []
    for m in mem["measurements"]:
        if "error" in m:
            rows.append([m["who"], m["method"], "error"])
        elif m["method"] == "rss":
            rows.append([m["who"], "ru_maxrss increase",
                         f"+{m['increase_bytes'] / mib:.1f} MiB "
                         f"({m['maxrss_before_bytes'] / mib:.1f} -> "
                         f"{m['maxrss_after_bytes'] / mib:.1f} MiB); VmHWM "
                         f"+{m.get('vmhwm_increase_bytes', 0) / mib:.1f} MiB"])
        else:
            rows.append([m["who"], "tracemalloc peak",
                         f"{m['peak_above_start_bytes'] / mib:.1f} MiB"])
    return table(["who", "method", "result"], rows)


def ragged(data):
    rows = []
    for r in data.get("ragged") or []:
        a = r["profiles"]["(a) all 100"]["real_steps"]
        for label, p in r["profiles"].items():
            crnn, torch = p["crnn"], p.get("torch")
            pad = r.get("torch_padded_s")
            rows.append([r["cell"], r["dtype"], label, p["real_steps"],
                         fmt(p["real_steps"] / a, 3), fmt(crnn["median_s"] * 1e3, 3),
                         fmt(crnn["per_real_step_us"]), fmt(crnn["relative_to_a"], 3),
                         fmt(torch and torch["median_s"] * 1e3, 3),
                         fmt(torch and torch["median_s"] / crnn["median_s"]),
                         fmt(pad and pad * 1e3, 3), fmt(pad and pad / crnn["median_s"])])
    return table(["cell", "dtype", "lengths", "real steps", "steps/(a)", "crnn ms",
                  "us/step", "time/(a)", "torch ms", "torch/crnn", "padded ms",
                  "padded/crnn"], rows)


def main(path):
    data = json.load(open(path))
    for threads in data["threads"]:
        print(f"## Summary, {threads} thread(s): training step, torch/crnn\n")
        print(summary(data, threads) + "\n")
    for p in data.get("gemm_peak") or []:
        print(f"GEMM peak, {p['dtype']} {p['n']}^3, {p['threads']} thread: scipy "
              f"{p['scipy_gflops']:.1f} GFLOP/s"
              + (f", torch.mm {p['torch_gflops']:.1f}" if p.get("torch_gflops") else "")
              + "\n")
    print(f"## Inference, float32, {data['threads'][0]} thread(s)\n")
    print(inference(data, data["threads"][0]) + "\n")
    print(f"## GEMM floor of the medium and large cases, {data['threads'][0]} thread(s)\n")
    print(floor(data, data["threads"][0]) + "\n")
    print("## Grid\n")
    print(join_tables([grid(data, t) for t in data["threads"]]) + "\n")
    print("## GEMM floor, all cases\n")
    print(join_tables([floor(data, t, only_large=False) for t in data["threads"]]) + "\n")
    print("## Overhead floor\n")
    print(overhead(data) + "\n")
    if data.get("predict_overhead"):
        print("## predict overhead\n")
        print(predict_overhead(data) + "\n")
    if data.get("fit"):
        print("## Fit\n")
        print(fit(data) + "\n")
    if data.get("memory"):
        print("## Memory\n")
        print(memory(data) + "\n")
    if data.get("ragged"):
        print("## Ragged\n")
        print(ragged(data))
    stepper.print_stepper(data.get("stepper"))
    stepper.print_generate(data.get("generate"))
    tokens.print_tokens(data.get("tokens"))


def join_tables(tables):
    """One table from several with the same header."""
    return "\n".join(t if i == 0 else t.split("\n", 2)[2] for i, t in enumerate(tables))


if __name__ == "__main__":
    main(sys.argv[1])
