"""``crnn.to_onnx``: the exported graph against ``predict``.

float32 graphs run in ONNX Runtime on padded ragged batches, with initial
states, for every cell x 1-2 layers x direction x sequence-to-one or
-to-sequence x regressor or classifier: outputs and final states within
1e-5 of ``predict`` (the differences seen are below 1e-6: float32 rounding
in another order of operations). ONNX Runtime's CPU recurrent operators
run float32 only, so float64 graphs run in onnx's reference evaluator,
within 1e-10 (seen: 2e-16); that evaluator ignores ``sequence_lens``, so
there every sequence has the full length.
"""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx.reference import ReferenceEvaluator  # noqa: E402

import crnn  # noqa: E402
from crnn import NotFittedError, RNNClassifier, RNNRegressor, to_onnx  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::crnn.exceptions.ConvergenceWarning")

N, T, I, H = 9, 6, 3, 5


def ragged(rng, dtype=np.float32):
    lengths = rng.integers(1, T + 1, size=N)
    lengths[0] = T                                   # the batch's time axis is T
    X = np.zeros((N, T, I), dtype)
    for i, n in enumerate(lengths):
        X[i, :n] = rng.normal(size=(n, I))
    return X, lengths


def fitted(cls, X, lengths, rng, **params):
    params = dict(dict(hidden_size=H, max_iter=2, random_state=0), **params)
    steps = params.get("return_sequences", False)
    if cls is RNNClassifier:
        y = ([np.array(list("abc"))[rng.integers(0, 3, size=n)] for n in lengths] if steps
             else rng.integers(0, 3, size=N) * 10)
    else:
        y = [rng.normal(size=(n, 2)) for n in lengths] if steps else rng.normal(size=N)
    return cls(**params).fit([x[:n] for x, n in zip(X, lengths)], y)


def session(graph):
    return ort.InferenceSession(graph.SerializeToString(),
                                providers=["CPUExecutionProvider"])


def states_of(model, rng):
    D = 2 if model.bidirectional else 1
    shape = (model.num_layers * D, N, model.hidden_size)
    h = rng.normal(size=shape).astype(model.params_.dtype)
    if model.cell == "lstm":
        return {"initial_h": h, "initial_c": rng.normal(size=shape).astype(h.dtype)}
    return {"initial_h": h}


def as_initial_state(feeds):
    if "initial_c" in feeds:
        return feeds["initial_h"], feeds["initial_c"]
    return feeds["initial_h"]


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_onnx_runtime_computes_predict(cell, num_layers, bidirectional, return_sequences,
                                       cls):
    rng = np.random.default_rng([num_layers, bidirectional, return_sequences,
                                 cls is RNNClassifier])
    X, lengths = ragged(rng)
    model = fitted(cls, X, lengths, rng, cell=cell, num_layers=num_layers,
                   bidirectional=bidirectional, return_sequences=return_sequences,
                   dtype="float32")
    graph = to_onnx(model, states=True)
    onnx.checker.check_model(graph, full_check=True)
    feeds = dict(X=X, lengths=lengths.astype(np.int32), **states_of(model, rng))
    outputs = dict(zip([o.name for o in graph.graph.output], session(graph).run(None, feeds)))
    initial = as_initial_state(feeds)
    if cls is RNNClassifier:
        expected, finals = model.predict_proba(X, lengths, initial_state=initial,
                                               return_state=True)
        got = outputs["probabilities"]
        labels = model.predict(X, lengths, initial_state=initial)
        classes = np.array(json.loads(
            {p.key: p.value for p in graph.metadata_props}["classes"]))
        assert classes.tolist() == model.classes_.tolist()
        np.testing.assert_array_equal(classes[outputs["label_index"]], labels)
    else:
        expected, finals = model.predict(X, lengths, initial_state=initial,
                                         return_state=True)
        got = outputs["y"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    finals = finals if isinstance(finals, tuple) else (finals,)
    for name, final in zip(("final_h", "final_c"), finals):
        np.testing.assert_allclose(outputs[name], final, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_float64_graphs_compute_predict_in_the_reference_evaluator(cell, return_sequences):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N, T, I))
    lengths = np.full(N, T)
    model = fitted(RNNRegressor, X, lengths, rng, cell=cell, num_layers=2,
                   bidirectional=True, return_sequences=return_sequences)
    graph = to_onnx(model, states=True)
    feeds = dict(X=X, lengths=lengths.astype(np.int32), **states_of(model, rng))
    y, *finals = ReferenceEvaluator(graph).run(None, feeds)
    expected, expected_finals = model.predict(X, initial_state=as_initial_state(feeds),
                                              return_state=True)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-10)
    expected_finals = (expected_finals if isinstance(expected_finals, tuple)
                       else (expected_finals,))
    for got, want in zip(finals, expected_finals):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity"])
@pytest.mark.parametrize("output_activation", ["identity", "tanh", "sigmoid", "softmax"])
def test_every_activation_exports(activation, output_activation):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(N, T, I)).astype(np.float32)
    model = RNNRegressor(H, activation=activation, output_activation=output_activation,
                         max_iter=2, random_state=0, dtype="float32").fit(X, X[:, -1, :2])
    graph = to_onnx(model, lengths=False)
    assert [i.name for i in graph.graph.input] == ["X"]
    y, = session(graph).run(None, {"X": X})
    np.testing.assert_allclose(y, model.predict(X), rtol=0, atol=1e-5)


def test_the_graph_takes_any_batch_and_time_and_keeps_the_output_shape():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(N, T, I)).astype(np.float32)
    one_d = RNNRegressor(H, cell="gru", max_iter=2, random_state=0,
                         dtype="float32").fit(X, X[:, -1, 0])
    two_d = RNNRegressor(H, cell="gru", max_iter=2, random_state=0,
                         dtype="float32").fit(X, X[:, -1, :1])
    for model, shape in [(one_d, ()), (two_d, (1,))]:
        run = session(to_onnx(model))
        for B, steps in [(1, 1), (4, 11), (N, T)]:
            Z = rng.normal(size=(B, steps, I)).astype(np.float32)
            y, = run.run(None, {"X": Z, "lengths": np.full(B, steps, np.int32)})
            assert y.shape == (B,) + shape
            np.testing.assert_allclose(y, model.predict(Z), rtol=0, atol=1e-5)


def test_path_is_written_atomically(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(N, T, I)).astype(np.float32)
    model = RNNRegressor(H, max_iter=1, random_state=0, dtype="float32").fit(X, X[:, 0, 0])
    path = tmp_path / "model.onnx"
    graph = to_onnx(model, path)
    assert path.read_bytes() == graph.SerializeToString()
    assert onnx.load(str(path)).graph.name == graph.graph.name

    def failing(self):
        raise RuntimeError("serialisation failed")
    monkeypatch.setattr(type(graph), "SerializeToString", failing)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="serialisation failed"):
        to_onnx(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_what_cannot_be_exported_is_refused():
    with pytest.raises(NotFittedError):
        to_onnx(RNNRegressor())
    with pytest.raises(TypeError, match="RNNRegressor or RNNClassifier"):
        to_onnx(object())
    X = np.zeros((4, 3, 1), np.float32)
    model = RNNRegressor(2, max_iter=1, random_state=0, dtype="float32").fit(X, X[:, 0, 0])
    with pytest.raises(ValueError, match="opset must be at least 14"):
        to_onnx(model, opset=13)
    model.set_params(hidden_size=3)
    with pytest.raises(ValueError, match="hidden_size"):
        to_onnx(model)


def test_without_onnx_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'crnn\[onnx\]'"):
        to_onnx(RNNRegressor())


def test_import_crnn_does_not_import_onnx():
    code = "import sys, crnn; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_model_loaded_from_its_file_exports_the_same_graph(tmp_path):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N, T, I)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RNNClassifier(H, cell="lstm", max_iter=2, random_state=0,
                              dtype="float32").fit(X, X[:, -1, 0] > 0)
    crnn.save(model, tmp_path / "m.npz")
    again = crnn.load(tmp_path / "m.npz")
    assert (to_onnx(again).SerializeToString() == to_onnx(model).SerializeToString())
