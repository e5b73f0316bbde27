"""
Deploying to ONNX Runtime
=========================

Train a GRU that forecasts next year's sunspot number from the 20 years
before it, export it with :func:`crnn.to_onnx`, run the graph in ONNX
Runtime, and compare: the same forecasts, to float32 rounding. The file
holds standard ONNX operators only (a ``GRU`` with
``linear_before_reset=1``, a ``Gemm``, transposes and reshapes), so any
ONNX runtime, in any language, can serve it without crnn.
"""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import onnx
import onnxruntime as ort

import crnn

years, sunspots = crnn.load_sunspots()
scale = sunspots.std()
X = np.lib.stride_tricks.sliding_window_view(sunspots[:-1] / scale, 20)[..., None]
y = sunspots[20:] / scale
X, y = X.astype(np.float32), y.astype(np.float32)
model = crnn.RNNRegressor(16, cell="gru", dtype="float32", max_iter=300,
                          learning_rate=3e-3, early_stopping=True,
                          random_state=0).fit(X, y)

# %%
# Export: a graph with a batch-first input ``X``, the sequences' ``lengths``
# and the forecast ``y``; both the batch and the time axis are dynamic.

path = os.path.join(tempfile.mkdtemp(), "sunspots.onnx")
graph = crnn.to_onnx(model, path)
print(f"{os.path.getsize(path)} bytes;",
      "operators:", sorted({node.op_type for node in graph.graph.node}))
for value in list(graph.graph.input) + list(graph.graph.output):
    dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    print(f"  {value.name}: {onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)}"
          f" {dims}")

# %%
# Run it in ONNX Runtime, on every window at once, and compare with crnn.

session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
lengths = np.full(len(X), X.shape[1], dtype=np.int32)
y_onnx, = session.run(None, {"X": X, "lengths": lengths})
y_crnn = model.predict(X)
difference = np.abs(y_onnx - y_crnn) * scale
print(f"largest difference: {difference.max():.2e} sunspots "
      f"(forecasts up to {y_crnn.max() * scale:.0f})")

fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True,
                                  layout="constrained", height_ratios=(3, 2))
target_years = years[20:]
top.plot(target_years, sunspots[20:], color="0.7", lw=3, label="observed")
top.plot(target_years, y_crnn * scale, color="tab:blue", lw=1.5, label="crnn predict")
top.plot(target_years, y_onnx * scale, color="tab:orange", lw=1, ls="--",
         label="ONNX Runtime")
top.set(ylabel="sunspot number", title="One-year forecasts: crnn and the exported graph")
top.legend(loc="upper left", ncols=3)
same = difference == 0
bottom.semilogy(target_years[~same], difference[~same], ".", ms=3, color="tab:red")
bottom.set(xlabel="year", ylabel="|ONNX - crnn|, sunspots",
           title=f"Their difference: float32 rounding ({same.sum()} of {same.size} "
                 f"forecasts identical, not shown)")
plt.show()
