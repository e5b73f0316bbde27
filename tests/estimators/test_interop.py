"""Weight interchange with PyTorch and Keras (``crnn.interop``).

1. PyTorch -> crnn: a torch RNN/LSTM/GRU + Linear trained for a few steps
   (float64, 2 layers, uni- and bidirectional) is imported into an
   RNNRegressor and an RNNClassifier, whose predictions equal torch's on
   ragged packed batches.
2. crnn -> PyTorch: a fitted model's exported state dict loads into torch
   modules with ``load_state_dict(strict=True)``, and torch's outputs equal
   ``predict``.
3. crnn -> dict -> crnn gives bit-identical predictions; the imported model
   continues training.
4. Every validation error.
5. Keras LSTM / GRU(reset_after=True) weights against a NumPy reference of
   Keras' own step equations.

Only the tests marked by ``pytest.importorskip("torch")`` need PyTorch.
"""
import doctest
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import crnn
import crnn.interop
from crnn import (ConvergenceWarning, NotFittedError, RNNClassifier, RNNRegressor,
                  from_keras_weights, from_torch_state_dict, to_torch_state_dict,
                  torch_module_kwargs)

TOL = 1e-10
I, H = 3, 4
LENGTHS = [6, 2, 5, 5, 1, 4, 3]      # ragged, with a tie and a length-1 sequence
CELLS = [("elman", "tanh"), ("elman", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
CELL_IDS = ["elman-tanh", "elman-relu", "lstm", "gru"]
CLASSES_TORCH_ORDER = np.array(["dog", "ant", "cat"])   # torch's output columns
ROOT = pathlib.Path(__file__).resolve().parents[2]


def ragged(rng, lengths=LENGTHS, n_in=I):
    return [rng.uniform(-1, 1, size=(L, n_in)) for L in lengths]


def quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def make(kind, cell, activation="tanh", num_layers=2, bidirectional=False, **kwargs):
    cls = RNNRegressor if kind == "regressor" else RNNClassifier
    return cls(H, cell=cell, activation=activation, num_layers=num_layers,
               bidirectional=bidirectional, **kwargs)


def close(actual, expected, what=""):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=TOL,
                               atol=TOL, err_msg=what)


def softmax(Z):
    E = np.exp(Z - Z.max(axis=-1, keepdims=True))
    return E / E.sum(axis=-1, keepdims=True)


def fitted(kind, cell, activation="tanh", num_layers=2, bidirectional=False, seed=0,
           n_out=2, **kwargs):
    """A crnn model fitted for a few epochs on ragged data, and the data."""
    rng = np.random.default_rng(seed)
    X = ragged(rng)
    if kind == "regressor":
        y = rng.normal(size=(len(X), n_out)) if n_out > 1 else rng.normal(size=len(X))
    else:
        y = np.array(["x", "y", "z"])[np.arange(len(X)) % 3]
    model = make(kind, cell, activation, num_layers, bidirectional, max_iter=3,
                 learning_rate=0.05, random_state=seed, **kwargs)
    return quiet_fit(model, X, y), X, y


# -- PyTorch helpers (only called from tests that imported torch) -------------

def torch_net(torch, cell, activation, num_layers, bidirectional, n_out, n_in=I,
              double=True):
    """torch's nn.RNN/LSTM/GRU with an nn.Linear attribute ``head``: its
    state_dict has exactly the keys of crnn's export."""
    base = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]

    class Net(base):
        def __init__(self, n_out, **kwargs):
            super().__init__(**kwargs)
            D = 2 if self.bidirectional else 1
            self.head = torch.nn.Linear(D * self.hidden_size, n_out)

    kwargs = dict(input_size=n_in, hidden_size=H, num_layers=num_layers,
                  bidirectional=bidirectional, batch_first=True)
    if cell == "elman":
        kwargs["nonlinearity"] = activation
    net = Net(n_out, **kwargs)
    return net.double() if double else net


def torch_forward(torch, rnn, head, X_list, return_sequences=False):
    """Head pre-activations on a ragged list, through a packed batch:
    ``(B, O)`` from the last layer's final states, or a list of ``(L_i, O)``."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    dtype = next(rnn.parameters()).dtype
    lengths = torch.tensor([len(x) for x in X_list])
    T = int(lengths.max())
    padded = torch.zeros(len(X_list), T, X_list[0].shape[1], dtype=dtype)
    for i, x in enumerate(X_list):
        padded[i, :len(x)] = torch.from_numpy(x).to(dtype)
    packed = pack_padded_sequence(padded, lengths, batch_first=True,
                                  enforce_sorted=False)
    out, final = rnn(packed)
    h_n = final[0] if isinstance(final, tuple) else final
    if return_sequences:
        seq, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        Z = head(seq)
        return [Z[i, :len(x)] for i, x in enumerate(X_list)]
    D = 2 if rnn.bidirectional else 1
    return head(torch.cat([h_n[-D + d] for d in range(D)], dim=1))


def train_torch(torch, net, X_list, target, loss, return_sequences=False, steps=5):
    """A few Adam steps, so that both torch biases move away from their init."""
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        Z = torch_forward(torch, net, net.head, X_list, return_sequences)
        if return_sequences:
            Z, target_ = torch.cat(Z), torch.cat(target)
        else:
            target_ = target
        if loss == "mse":
            value = torch.nn.functional.mse_loss(Z, target_)
        else:
            value = torch.nn.functional.cross_entropy(Z, target_)
        value.backward()
        opt.step()
    return net


def as_numpy(Z):
    if isinstance(Z, list):
        return [z.detach().numpy() for z in Z]
    return Z.detach().numpy()


# -- 1. PyTorch -> crnn -------------------------------------------------------

@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell,activation", CELLS, ids=CELL_IDS)
def test_torch_trained_regressor(cell, activation, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    X = ragged(rng)
    for return_sequences in (False, True):
        net = torch_net(torch, cell, activation, 2, bidirectional, n_out=2)
        if return_sequences:
            target = [torch.from_numpy(rng.normal(size=(len(x), 2))) for x in X]
        else:
            target = torch.from_numpy(rng.normal(size=(len(X), 2)))
        train_torch(torch, net, X, target, "mse", return_sequences)
        state = net.state_dict()
        b_hh = state["bias_hh_l1"].numpy()
        assert np.abs(b_hh).min() > 0            # both biases carry weight
        model = make("regressor", cell, activation, 2, bidirectional,
                     return_sequences=return_sequences)
        assert from_torch_state_dict(model, state) is model
        assert model.n_features_in_ == I and model.n_outputs_ == 2
        expected = as_numpy(torch_forward(torch, net, net.head, X, return_sequences))
        pred = model.predict(X)
        if return_sequences:
            assert len(pred) == len(X)
            for p, e in zip(pred, expected):
                close(p, e, f"per-step {cell} bidirectional={bidirectional}")
        else:
            assert pred.shape == (len(X), 2)
            close(pred, expected, f"{cell} bidirectional={bidirectional}")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell,activation", CELLS, ids=CELL_IDS)
def test_torch_trained_classifier(cell, activation, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    rng = np.random.default_rng(2)
    X = ragged(rng)
    net = torch_net(torch, cell, activation, 2, bidirectional, n_out=3)
    codes = torch.from_numpy(np.arange(len(X)) % 3)
    train_torch(torch, net, X, codes, "cross_entropy")
    # keep_vars: Parameters with requires_grad, converted via .detach()
    state = net.state_dict(keep_vars=True)
    assert state["weight_hh_l0"].requires_grad
    clf = make("classifier", cell, activation, 2, bidirectional)
    from_torch_state_dict(clf, state, classes=CLASSES_TORCH_ORDER)
    assert clf.classes_.tolist() == ["ant", "cat", "dog"]
    P_torch = softmax(as_numpy(torch_forward(torch, net, net.head, X)))
    # crnn's columns follow the sorted classes_; torch's the given order.
    columns = [CLASSES_TORCH_ORDER.tolist().index(c) for c in clf.classes_]
    close(clf.predict_proba(X), P_torch[:, columns])
    np.testing.assert_array_equal(clf.predict(X),
                                  CLASSES_TORCH_ORDER[P_torch.argmax(axis=1)])


def test_torch_single_output_regressor_predicts_1d():
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    X = ragged(np.random.default_rng(3))
    net = torch_net(torch, "lstm", "tanh", 1, True, n_out=1)
    model = from_torch_state_dict(make("regressor", "lstm", num_layers=1,
                                       bidirectional=True), net.state_dict())
    pred = model.predict(X)
    assert pred.shape == (len(X),)
    close(pred, as_numpy(torch_forward(torch, net, net.head, X))[:, 0])


def test_torch_float32_module_into_float32_and_float64_models():
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    X = ragged(np.random.default_rng(4))
    net = torch_net(torch, "gru", "tanh", 2, False, n_out=2, double=False)
    expected = as_numpy(torch_forward(torch, net, net.head, X))
    for dtype in ("float32", "float64"):
        model = from_torch_state_dict(make("regressor", "gru", dtype=dtype),
                                      net.state_dict())
        assert model.params_.dtype == np.dtype(dtype)
        np.testing.assert_allclose(model.predict(X), expected, rtol=1e-5, atol=1e-5)


# -- 2. crnn -> PyTorch -------------------------------------------------------

@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell,activation", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_export_loads_strictly_into_torch(kind, cell, activation, bidirectional):
    torch = pytest.importorskip("torch")
    model, X, _ = fitted(kind, cell, activation, 2, bidirectional)
    state = to_torch_state_dict(model)
    kwargs = torch_module_kwargs(model)
    assert kwargs == dict(input_size=I, hidden_size=H, num_layers=2,
                          bidirectional=bidirectional,
                          **({"nonlinearity": activation} if cell == "elman" else {}))
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}

    # The whole dict into one module (an RNN with a Linear ``head``) ...
    net = torch_net(torch, cell, activation, 2, bidirectional, model.n_outputs_)
    net.load_state_dict(tensors, strict=True)
    # ... and into a plain torch.nn.RNN/LSTM/GRU plus an nn.Linear.
    cls = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    rnn = cls(**kwargs, batch_first=True).double()
    rnn.load_state_dict({k: v for k, v in tensors.items()
                         if not k.startswith("head.")}, strict=True)
    head = torch.nn.Linear(*state["head.weight"].shape[::-1]).double()
    head.load_state_dict({"weight": tensors["head.weight"],
                          "bias": tensors["head.bias"]}, strict=True)

    with torch.no_grad():
        Z_net = as_numpy(torch_forward(torch, net, net.head, X))
        Z = as_numpy(torch_forward(torch, rnn, head, X))
    np.testing.assert_array_equal(Z, Z_net)
    if kind == "regressor":
        close(model.predict(X), Z)
    else:
        close(model.predict_proba(X), softmax(Z))
        np.testing.assert_array_equal(model.predict(X), model.classes_[Z.argmax(1)])


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_export_per_step_model_into_torch(cell):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    X = ragged(rng)
    y = [rng.normal(size=(len(x), 2)) for x in X]
    model = quiet_fit(make("regressor", cell, bidirectional=True, return_sequences=True,
                           max_iter=2, random_state=0), X, y)
    net = torch_net(torch, cell, "tanh", 2, True, 2)
    net.load_state_dict({k: torch.from_numpy(v)
                         for k, v in to_torch_state_dict(model).items()}, strict=True)
    with torch.no_grad():
        Z = as_numpy(torch_forward(torch, net, net.head, X, return_sequences=True))
    for p, z in zip(model.predict(X), Z):
        close(p, z)


def test_export_float32_keeps_dtype():
    torch = pytest.importorskip("torch")
    model, X, _ = fitted("regressor", "lstm", dtype="float32")
    state = to_torch_state_dict(model)
    assert all(v.dtype == np.float32 for v in state.values())
    net = torch_net(torch, "lstm", "tanh", 2, False, 2, double=False)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    with torch.no_grad():
        Z = as_numpy(torch_forward(torch, net, net.head, [x.astype(np.float32)
                                                          for x in X]))
    np.testing.assert_allclose(model.predict(X), Z, rtol=1e-5, atol=1e-5)


def test_docs_interop_examples_run():
    """Every Python block of docs/interop.md runs as written (they use torch)."""
    pytest.importorskip("torch")
    text = (ROOT / "docs" / "interop.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for block in blocks:
            exec(compile(block, "docs/interop.md", "exec"), namespace)


# -- 3. crnn -> dict -> crnn ---------------------------------------------------

@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell,activation", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_round_trip_is_bit_identical(kind, cell, activation, bidirectional):
    model, X, y = fitted(kind, cell, activation, 2, bidirectional)
    state = to_torch_state_dict(model)
    assert list(state) == [
        f"{w}_{m}_l{l}{s}" for l in range(2) for s in
        (["", "_reverse"] if bidirectional else [""]) for w, m in
        [("weight", "ih"), ("weight", "hh"), ("bias", "ih"), ("bias", "hh")]
    ] + ["head.weight", "head.bias"]
    G = {"elman": 1, "lstm": 4, "gru": 3}[cell] * H
    D = 2 if bidirectional else 1
    assert state["weight_ih_l0"].shape == (G, I)
    assert state["weight_ih_l1"].shape == (G, D * H)
    assert state["weight_hh_l1"].shape == (G, H)
    assert state["bias_ih_l1"].shape == state["bias_hh_l1"].shape == (G,)
    assert state["head.weight"].shape == (model.n_outputs_, D * H)
    # The export split: bias_ih = b, bias_hh = 0 ([0, 0, b_hn] for the GRU).
    W = model.weights_
    np.testing.assert_array_equal(state["bias_ih_l1"], W["b_l1"])
    hh = np.zeros(G)
    if cell == "gru":
        hh[2 * H:] = W["b_hn_l1"]
    np.testing.assert_array_equal(state["bias_hh_l1"], hh)
    # Copies, not views.
    state["weight_hh_l0"][...] = 0
    assert np.abs(model.weights_["W_hh_l0"]).max() > 0
    state = to_torch_state_dict(model)

    fresh = make(kind, cell, activation, 2, bidirectional, random_state=7)
    classes = model.classes_ if kind == "classifier" else None
    copy = from_torch_state_dict(fresh, state, classes=classes)
    np.testing.assert_array_equal(copy.params_, model.params_)
    np.testing.assert_array_equal(copy.predict(X), model.predict(X))
    if kind == "classifier":
        np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))


def test_import_into_a_fitted_model_replaces_everything():
    model, X, y = fitted("regressor", "lstm")
    other, X2, y2 = fitted("regressor", "lstm", seed=3)
    old_params = other.params_
    # A model fitted on 2 features receives a 3-feature, 2-output network.
    small = quiet_fit(make("regressor", "lstm", max_iter=1),
                      [x[:, :2] for x in X2], y2[:, 0])
    from_torch_state_dict(small, to_torch_state_dict(model))
    assert small.n_features_in_ == I and small.n_outputs_ == 2
    np.testing.assert_array_equal(small.predict(X), model.predict(X))
    from_torch_state_dict(other, to_torch_state_dict(model))
    assert other.params_ is not old_params
    np.testing.assert_array_equal(other.predict(X), model.predict(X))


def test_imported_model_continues_training():
    model, X, y = fitted("regressor", "gru", bidirectional=True)
    state = to_torch_state_dict(model)
    for continue_with in ("partial_fit", "warm_start"):
        copy = from_torch_state_dict(
            make("regressor", "gru", bidirectional=True, learning_rate=0.05,
                 max_iter=2, random_state=0, warm_start=True), state)
        assert copy.n_iter_ == 0 and copy.t_ == 0 and copy.loss_curve_ == []
        assert copy._get_state()["optimizer"] is None  # fresh optimizer state
        before = copy.params_.copy()
        if continue_with == "partial_fit":
            copy.partial_fit(X, y)
            expected_iter = 1
        else:
            quiet_fit(copy, X, y)
            expected_iter = 2
        assert copy.n_iter_ == expected_iter and np.isfinite(copy.loss_)
        assert not np.array_equal(copy.params_, before)
        # warm start continued from the imported weights, not a new init:
        # one small step keeps them close.
        assert np.abs(copy.params_ - before).max() < 0.5
    # The classifier continues too, with the imported classes.
    clf, Xc, yc = fitted("classifier", "lstm")
    copy = from_torch_state_dict(make("classifier", "lstm"), to_torch_state_dict(clf),
                                 classes=clf.classes_)
    copy.partial_fit(Xc, yc)
    assert copy.n_iter_ == 1
    with pytest.raises(ValueError, match="differs from the classes"):
        copy.partial_fit(Xc, yc, classes=["x", "y", "q"])


def test_regressor_output_shape_rules():
    model, X, y = fitted("regressor", "elman", n_out=1)          # y 1-D
    state = to_torch_state_dict(model)
    assert from_torch_state_dict(make("regressor", "elman"), state).predict(X).shape \
        == (len(X),)
    # Fitted on a (n, 1) target: a fresh model predicts 1-D, the fitted model
    # itself keeps its 2-D shape.
    two_d = quiet_fit(make("regressor", "elman", max_iter=1), X, y[:, None])
    assert two_d.predict(X).shape == (len(X), 1)
    assert from_torch_state_dict(two_d, state).predict(X).shape == (len(X), 1)
    assert from_torch_state_dict(make("regressor", "elman"), to_torch_state_dict(two_d)
                                 ).predict(X).shape == (len(X),)
    multi, X, _ = fitted("regressor", "elman", n_out=3)
    assert from_torch_state_dict(make("regressor", "elman"),
                                 to_torch_state_dict(multi)).predict(X).shape \
        == (len(X), 3)


def test_classifier_classes_rules():
    clf, X, y = fitted("classifier", "gru")
    state = to_torch_state_dict(clf)
    # A fitted classifier with matching classes keeps them without `classes`.
    from_torch_state_dict(clf, state)
    assert clf.classes_.tolist() == ["x", "y", "z"]
    # Classes given in another order: the head's rows are permuted.
    other = from_torch_state_dict(make("classifier", "gru"), state,
                                  classes=["z", "x", "y"])
    assert other.classes_.tolist() == ["x", "y", "z"]
    P, Q = clf.predict_proba(X), other.predict_proba(X)
    close(Q, P[:, [1, 2, 0]])             # the softmax sums in another order
    # Integer classes.
    ints = from_torch_state_dict(make("classifier", "gru"), state, classes=[5, 1, 3])
    np.testing.assert_array_equal(ints.predict(X),
                                  np.array([5, 1, 3])[P.argmax(axis=1)])


def test_values_with_array_interfaces_without_torch():
    model, X, _ = fitted("regressor", "lstm", num_layers=1)
    state = to_torch_state_dict(model)

    class ArrayLike:                       # only __array__
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a if dtype is None else self.a.astype(dtype)

    class FakeTensor:                      # .detach().cpu().numpy()
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    for wrap in (ArrayLike, FakeTensor, lambda a: a.tolist()):
        wrapped = {k: wrap(v) for k, v in state.items()}
        copy = from_torch_state_dict(make("regressor", "lstm", num_layers=1), wrapped)
        np.testing.assert_array_equal(copy.predict(X), model.predict(X))
    # Integer arrays are real numbers too.
    ints = {k: np.round(v * 4).astype(np.int64) for k, v in state.items()}
    from_torch_state_dict(make("regressor", "lstm", num_layers=1), ints)


def test_interop_does_not_import_torch():
    code = ("import sys, numpy as np, crnn\n"
            "X = np.random.default_rng(0).normal(size=(6, 4, 2))\n"
            "m = crnn.RNNRegressor(3, cell='gru').partial_fit(X, X[:, 0, 0])\n"
            "s = crnn.to_torch_state_dict(m)\n"
            "crnn.from_torch_state_dict(crnn.RNNRegressor(3, cell='gru'), s)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docstring_examples():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = doctest.testmod(crnn.interop, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10
    assert result.failed == 0


def test_public_api():
    for name in ("to_torch_state_dict", "torch_module_kwargs", "from_torch_state_dict",
                 "from_keras_weights"):
        assert name in crnn.__all__
        assert getattr(crnn, name) is getattr(crnn.interop, name)


# -- 4. validation errors -----------------------------------------------------

@pytest.fixture(scope="module")
def lstm2():
    """A fitted 2-layer unidirectional LSTM regressor and its state dict."""
    model, X, _ = fitted("regressor", "lstm")
    return model, to_torch_state_dict(model), X


def lstm_model(**kwargs):
    return make("regressor", "lstm", **kwargs)


def edited(state, drop=(), **replace):
    new = {k: v for k, v in state.items() if k not in drop}
    new.update({k.replace("__", "."): v for k, v in replace.items()})
    return new


def test_export_errors():
    with pytest.raises(NotFittedError):
        to_torch_state_dict(RNNRegressor())
    with pytest.raises(NotFittedError):
        torch_module_kwargs(RNNClassifier())
    with pytest.raises(TypeError, match="RNNRegressor or RNNClassifier"):
        to_torch_state_dict(object())
    with pytest.raises(TypeError, match="RNNRegressor or RNNClassifier"):
        torch_module_kwargs({"weight_ih_l0": 0})
    for activation in ("sigmoid", "identity"):
        model, _, _ = fitted("regressor", "elman", activation, num_layers=1)
        for export in (to_torch_state_dict, torch_module_kwargs):
            with pytest.raises(ValueError, match="nonlinearity is 'tanh' or 'relu'.*"
                               + activation):
                export(model)
    model, _, _ = fitted("regressor", "gru", num_layers=1)
    model.set_params(hidden_size=H + 1)
    with pytest.raises(ValueError, match="changed after fitting"):
        to_torch_state_dict(model)
    model.set_params(hidden_size=H, num_layers=2)
    with pytest.raises(ValueError, match="changed after fitting"):
        torch_module_kwargs(model)


def test_import_type_errors(lstm2):
    _, state, _ = lstm2
    with pytest.raises(TypeError, match="RNNRegressor or RNNClassifier"):
        from_torch_state_dict("model", state)
    with pytest.raises(TypeError, match="mapping"):
        from_torch_state_dict(lstm_model(), list(state.items()))
    with pytest.raises(TypeError, match=r"state_dict\['bias_ih_l0'\] must hold real "
                                        r"numbers.*complex"):
        from_torch_state_dict(lstm_model(), edited(
            state, bias_ih_l0=state["bias_ih_l0"] + 0j))
    with pytest.raises(TypeError, match="real numbers.*<U"):
        from_torch_state_dict(lstm_model(), edited(state, head__bias=np.array(["a"])))
    with pytest.raises(TypeError, match="real numbers.*bool"):
        from_torch_state_dict(lstm_model(), edited(
            state, head__bias=np.array([True, False])))

    class Broken:
        def detach(self):
            raise TypeError("Got unsupported ScalarType BFloat16")

    with pytest.raises(TypeError, match=r"weight_hh_l1.*detach\(\).cpu\(\).numpy\(\).*"
                                        r"BFloat16.*float32 or float64"):
        from_torch_state_dict(lstm_model(), edited(state, weight_hh_l1=Broken()))


def test_import_key_errors(lstm2):
    _, state, _ = lstm2
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l1'\]"):
        from_torch_state_dict(lstm_model(), edited(state, drop=["bias_hh_l1"]))
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        from_torch_state_dict(lstm_model(), edited(state, extra=np.zeros(1)))
    with pytest.raises(ValueError, match=r"unexpected keys \[0\]"):
        from_torch_state_dict(lstm_model(), {**state, 0: np.zeros(1)})
    # Architecture mismatches, named.
    with pytest.raises(ValueError, match=r"unexpected keys.*weight_ih_l1.*2 layer\(s\), "
                                         r"the model num_layers=1"):
        from_torch_state_dict(lstm_model(num_layers=1), state)
    with pytest.raises(ValueError, match=r"missing keys.*weight_ih_l2.*2 layer\(s\), "
                                         r"the model num_layers=3"):
        from_torch_state_dict(lstm_model(num_layers=3), state)
    with pytest.raises(ValueError, match="missing keys.*_reverse.*not bidirectional, "
                                         "the model has bidirectional=True"):
        from_torch_state_dict(lstm_model(bidirectional=True), state)
    bi, _, _ = fitted("regressor", "lstm", bidirectional=True)
    with pytest.raises(ValueError, match="unexpected keys.*_reverse.*is bidirectional, "
                                         "the model has bidirectional=False"):
        from_torch_state_dict(lstm_model(), to_torch_state_dict(bi))
    # Common ways of assembling a state dict wrongly.
    prefixed = {("rnn." + k if not k.startswith("head.") else k): v
                for k, v in state.items()}
    with pytest.raises(ValueError, match="prefix 'rnn.'"):
        from_torch_state_dict(lstm_model(), prefixed)
    fc = {k.replace("head.", "fc."): v for k, v in state.items()}
    with pytest.raises(ValueError, match=r"'head.weight' and 'head.bias' \(is "
                                         r"'fc.weight' the output layer\?\)"):
        from_torch_state_dict(lstm_model(), fc)
    no_bias = {k: v for k, v in state.items() if not k.startswith("bias")}
    with pytest.raises(ValueError, match="bias=False"):
        from_torch_state_dict(lstm_model(), no_bias)
    with pytest.raises(ValueError, match="proj_size"):
        from_torch_state_dict(lstm_model(), edited(state, weight_hr_l0=np.zeros((2, 4))))


@pytest.mark.parametrize("key,shape,match", [
    ("weight_ih_l0", (16, 3, 1), r"needs \(16, n_features\)"),
    ("weight_ih_l0", (12, 3), r"needs \(16, 3\)"),
    ("weight_ih_l0", (16, 0), "n_features"),
    ("weight_hh_l0", (12, 4), r"needs \(16, 4\).*\(n_gates \* hidden_size, "
                              r"hidden_size\)"),
    ("bias_ih_l0", (15,), r"needs \(16,\)"),
    ("bias_hh_l1", (16, 1), r"needs \(16,\)"),
    ("weight_ih_l1", (16, 3), r"needs \(16, 4\).*num_directions"),
    ("head.weight", (2, 5), r"needs \(2, 4\)"),
    ("head.weight", (8,), r"needs \(n_outputs, 4\)"),
    ("head.bias", (3,), r"needs \(2,\)"),
])
def test_import_shape_errors(lstm2, key, shape, match):
    _, state, _ = lstm2
    bad = dict(state)
    bad[key] = np.zeros(shape)
    with pytest.raises(ValueError, match=rf"state_dict\['{re.escape(key)}'\] has "
                                         rf"shape.*{match}") as info:
        from_torch_state_dict(lstm_model(), bad)
    # The hint names what weight_hh_l0's shape suggests when it is not the model:
    # (12, 4) is a GRU's; the other cases keep the LSTM's (16, 4), so no hint.
    assert ("is that of" in str(info.value)) == (key == "weight_hh_l0")


def test_import_architecture_shape_hints(lstm2):
    _, state, _ = lstm2
    with pytest.raises(ValueError, match=r"cell='lstm' with hidden_size=4"):
        from_torch_state_dict(make("regressor", "gru"), state)
    with pytest.raises(ValueError, match=r"needs \(20, 3\).*cell='lstm' with "
                                         r"hidden_size=4"):
        from_torch_state_dict(lstm_model().set_params(hidden_size=5), state)


def test_import_value_errors(lstm2):
    _, state, _ = lstm2
    nan = state["weight_hh_l0"].copy()
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"weight_hh_l0'\] contains NaN or infinity "
                                         r"\(the first at index \(2, 1\)"):
        from_torch_state_dict(lstm_model(), edited(state, weight_hh_l0=nan))
    with pytest.raises(ValueError, match=r"head.bias'\] contains NaN or infinity"):
        from_torch_state_dict(lstm_model(), edited(
            state, head__bias=np.array([0.0, -np.inf])))
    big = state["bias_ih_l1"].copy()
    big[0] = 1e300
    with pytest.raises(ValueError, match="overflows float32"):
        from_torch_state_dict(lstm_model(dtype="float32"), edited(state, bias_ih_l1=big))
    half = np.full(16, 3e38)
    with pytest.raises(ValueError, match="bias_ih \\+ bias_hh overflow"):
        from_torch_state_dict(lstm_model(dtype="float32"),
                              edited(state, bias_ih_l0=half, bias_hh_l0=half))
    with pytest.raises(ValueError, match="hidden_size must be"):
        from_torch_state_dict(lstm_model().set_params(hidden_size=0), state)


def test_import_elman_activation_errors():
    model, _, _ = fitted("regressor", "elman", num_layers=1)
    state = to_torch_state_dict(model)
    for activation in ("sigmoid", "identity"):
        with pytest.raises(ValueError, match="nonlinearity is 'tanh' or 'relu'"):
            from_torch_state_dict(make("regressor", "elman", activation,
                                       num_layers=1), state)
    # relu is fine (the state dict does not record the nonlinearity).
    from_torch_state_dict(make("regressor", "elman", "relu", num_layers=1), state)


def test_import_classes_errors(lstm2):
    _, state, _ = lstm2                                      # 2 outputs
    with pytest.raises(ValueError, match="classes is required.*2 outputs"):
        from_torch_state_dict(make("classifier", "lstm"), state)
    fitted3, _, _ = fitted("classifier", "lstm")            # 3 classes
    with pytest.raises(ValueError, match=r"classes is required.*fitted classes_ "
                                         r"\['x', 'y', 'z'\] has 3"):
        from_torch_state_dict(fitted3, state)
    with pytest.raises(ValueError, match="1-D sequence of 2 labels.*shape \\(3,\\)"):
        from_torch_state_dict(make("classifier", "lstm"), state, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="1-D sequence of 2 labels"):
        from_torch_state_dict(make("classifier", "lstm"), state, classes=[[0, 1]])
    with pytest.raises(ValueError, match="distinct"):
        from_torch_state_dict(make("classifier", "lstm"), state, classes=["a", "a"])
    with pytest.raises(TypeError, match="sortable"):
        from_torch_state_dict(make("classifier", "lstm"), state,
                              classes=np.array([1, "a"], dtype=object))
    one = edited(state, head__weight=state["head.weight"][:1],
                 head__bias=state["head.bias"][:1])
    with pytest.raises(ValueError, match="at least 2 classes.*1 row"):
        from_torch_state_dict(make("classifier", "lstm"), one, classes=["a"])
    with pytest.raises(ValueError, match="classes applies to an RNNClassifier"):
        from_torch_state_dict(lstm_model(), state, classes=[0, 1])


def test_failed_import_leaves_the_model_unchanged(lstm2):
    _, state, X = lstm2
    model, _, _ = fitted("regressor", "lstm", seed=5)
    params, pred = model.params_.copy(), model.predict(X)
    attributes = dict(vars(model))
    bad = edited(state, head__bias=np.array([0.0, np.nan]))
    with pytest.raises(ValueError):
        from_torch_state_dict(model, bad)
    assert vars(model).keys() == attributes.keys()
    assert all(vars(model)[k] is attributes[k] for k in attributes)
    np.testing.assert_array_equal(model.params_, params)
    np.testing.assert_array_equal(model.predict(X), pred)
    clf, _, _ = fitted("classifier", "lstm")
    before = clf.params_.copy()
    with pytest.raises(ValueError):
        from_torch_state_dict(clf, state)                  # classes missing
    np.testing.assert_array_equal(clf.params_, before)
    assert clf.classes_.tolist() == ["x", "y", "z"]


# -- 5. Keras -----------------------------------------------------------------

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def keras_lstm_states(x, kernel, recurrent_kernel, bias):
    """Keras' LSTM over one sequence ``(T, I)``, from its equations
    (gates i, f, c, o; activation tanh, recurrent_activation sigmoid)."""
    n = recurrent_kernel.shape[0]
    h, c, states = np.zeros(n), np.zeros(n), []
    for x_t in x:
        z = x_t @ kernel + h @ recurrent_kernel + bias
        i, f = sigmoid(z[:n]), sigmoid(z[n:2 * n])
        c_bar, o = np.tanh(z[2 * n:3 * n]), sigmoid(z[3 * n:])
        c = f * c + i * c_bar
        h = o * np.tanh(c)
        states.append(h)
    return np.array(states)


def keras_gru_states(x, kernel, recurrent_kernel, bias):
    """Keras' GRU with reset_after=True over one sequence ``(T, I)``
    (gates z, r, h; bias rows: input bias, recurrent bias)::

        z = sigmoid(x W_z + b_z^in + h U_z + b_z^rec), r likewise,
        hh = tanh(x W_h + b_h^in + r * (h U_h + b_h^rec)),
        h' = z * h + (1 - z) * hh
    """
    n = recurrent_kernel.shape[0]
    b_in, b_rec = bias
    W = {g: kernel[:, k * n:(k + 1) * n] for k, g in enumerate("zrh")}
    U = {g: recurrent_kernel[:, k * n:(k + 1) * n] for k, g in enumerate("zrh")}
    bi = {g: b_in[k * n:(k + 1) * n] for k, g in enumerate("zrh")}
    br = {g: b_rec[k * n:(k + 1) * n] for k, g in enumerate("zrh")}
    h, states = np.zeros(n), []
    for x_t in x:
        z = sigmoid(x_t @ W["z"] + bi["z"] + h @ U["z"] + br["z"])
        r = sigmoid(x_t @ W["r"] + bi["r"] + h @ U["r"] + br["r"])
        hh = np.tanh(x_t @ W["h"] + bi["h"] + r * (h @ U["h"] + br["h"]))
        h = z * h + (1 - z) * hh
        states.append(h)
    return np.array(states)


KERAS_REFERENCE = {"lstm": keras_lstm_states, "gru": keras_gru_states}


def keras_weights(kind, rng, n_in=I, n_units=H, use_bias=True):
    G = {"lstm": 4, "gru": 3}[kind] * n_units
    weights = [rng.uniform(-0.6, 0.6, size=(n_in, G)),
               rng.uniform(-0.6, 0.6, size=(n_units, G))]
    if use_bias:
        weights.append(rng.uniform(-0.5, 0.5, size=(G,) if kind == "lstm" else (2, G)))
    return weights


def full_bias(kind, weights):
    G = weights[0].shape[1]
    if len(weights) == 3:
        return weights[2]
    return np.zeros(G) if kind == "lstm" else np.zeros((2, G))


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_keras_regressor_against_keras_equations(kind, use_bias):
    rng = np.random.default_rng(10)
    weights = keras_weights(kind, rng, use_bias=use_bias)
    dense = [rng.normal(size=(H, 2)), rng.normal(size=2)]
    X = ragged(rng)
    bias = full_bias(kind, weights)
    states = [KERAS_REFERENCE[kind](x, weights[0], weights[1], bias) for x in X]

    model = from_keras_weights(make("regressor", kind, num_layers=1), weights,
                               kind=kind, head=dense)
    expected = np.array([s[-1] @ dense[0] + dense[1] for s in states])
    close(model.predict(X), expected)

    per_step = from_keras_weights(
        make("regressor", kind, num_layers=1, return_sequences=True), weights,
        kind=kind, head=dense[:1])                         # Dense(use_bias=False)
    for p, s in zip(per_step.predict(X), states):
        close(p, s @ dense[0])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_keras_classifier_against_keras_equations(kind):
    rng = np.random.default_rng(11)
    weights = keras_weights(kind, rng)
    dense = [rng.normal(size=(H, 3)), rng.normal(size=3)]
    X = ragged(rng)
    logits = np.array([KERAS_REFERENCE[kind](x, *weights)[-1] @ dense[0] + dense[1]
                       for x in X])
    clf = from_keras_weights(make("classifier", kind, num_layers=1), weights,
                             kind=kind, head=dense, classes=CLASSES_TORCH_ORDER)
    columns = [CLASSES_TORCH_ORDER.tolist().index(c) for c in clf.classes_]
    close(clf.predict_proba(X), softmax(logits)[:, columns])
    np.testing.assert_array_equal(clf.predict(X),
                                  CLASSES_TORCH_ORDER[logits.argmax(axis=1)])


def test_keras_mapping_is_the_documented_one():
    rng = np.random.default_rng(12)
    dense = [rng.normal(size=(H, 1)), rng.normal(size=1)]
    kernel, recurrent, bias = keras_weights("lstm", rng)
    W = from_keras_weights(make("regressor", "lstm", num_layers=1),
                           [kernel, recurrent, bias], kind="lstm", head=dense).weights_
    np.testing.assert_array_equal(W["W_ih_l0"], kernel.T)
    np.testing.assert_array_equal(W["W_hh_l0"], recurrent.T)
    np.testing.assert_array_equal(W["b_l0"], bias)
    np.testing.assert_array_equal(W["W_y"], dense[0].T)
    np.testing.assert_array_equal(W["b_y"], dense[1])

    kernel, recurrent, bias = keras_weights("gru", rng)
    W = from_keras_weights(make("regressor", "gru", num_layers=1),
                           [kernel, recurrent, bias], kind="gru", head=dense).weights_
    z, r, h = (slice(k * H, (k + 1) * H) for k in range(3))
    b_in, b_rec = bias
    np.testing.assert_array_equal(W["W_ih_l0"],
                                  np.hstack([kernel[:, r], kernel[:, z], kernel[:, h]]).T)
    np.testing.assert_array_equal(
        W["W_hh_l0"], np.hstack([recurrent[:, r], recurrent[:, z], recurrent[:, h]]).T)
    np.testing.assert_array_equal(W["b_l0"], np.concatenate(
        [b_in[r] + b_rec[r], b_in[z] + b_rec[z], b_in[h]]))
    np.testing.assert_array_equal(W["b_hn_l0"], b_rec[h])


def test_keras_head_none_keeps_the_fitted_head():
    rng = np.random.default_rng(13)
    model, X, _ = fitted("classifier", "gru", num_layers=1)
    W_y, b_y = model.weights_["W_y"].copy(), model.weights_["b_y"].copy()
    weights = keras_weights("gru", rng)
    from_keras_weights(model, weights, kind="gru")
    np.testing.assert_array_equal(model.weights_["W_y"], W_y)
    np.testing.assert_array_equal(model.weights_["b_y"], b_y)
    assert model.classes_.tolist() == ["x", "y", "z"]
    logits = np.array([keras_gru_states(x, *weights)[-1] @ W_y.T + b_y for x in X])
    close(model.predict_proba(X), softmax(logits))


def test_keras_errors():
    rng = np.random.default_rng(14)
    lstm_w, gru_w = keras_weights("lstm", rng), keras_weights("gru", rng)
    dense = [np.zeros((H, 1)), np.zeros(1)]

    def lstm1(**kwargs):
        return make("regressor", "lstm", num_layers=1, **kwargs)

    with pytest.raises(TypeError, match="RNNRegressor or RNNClassifier"):
        from_keras_weights(None, lstm_w, kind="lstm", head=dense)
    with pytest.raises(ValueError, match="kind must be 'lstm' or 'gru'"):
        from_keras_weights(lstm1(), lstm_w, kind="simple_rnn", head=dense)
    with pytest.raises(ValueError, match="kind='gru' weights need a model with "
                                         "cell='gru'; this model has cell='lstm'"):
        from_keras_weights(lstm1(), gru_w, kind="gru", head=dense)
    with pytest.raises(ValueError, match="one unidirectional Keras layer.*num_layers=2"):
        from_keras_weights(lstm_model(), lstm_w, kind="lstm", head=dense)
    with pytest.raises(ValueError, match="bidirectional=True"):
        from_keras_weights(lstm1(bidirectional=True), lstm_w, kind="lstm", head=dense)
    with pytest.raises(TypeError, match="get_weights"):
        from_keras_weights(lstm1(), {"kernel": lstm_w[0]}, kind="lstm", head=dense)
    for count in (1, 4):
        with pytest.raises(ValueError, match=f"got {count} arrays"):
            from_keras_weights(lstm1(), (lstm_w * 2)[:count], kind="lstm", head=dense)
    with pytest.raises(ValueError, match=r"LSTM\(4\) kernel has shape \(n_features, "
                                         r"16\); got \(3, 12\) \(is units 3\?\)"):
        from_keras_weights(lstm1(), [lstm_w[0][:, :12]] + lstm_w[1:], kind="lstm",
                           head=dense)
    with pytest.raises(ValueError, match="recurrent_kernel has shape \\(4, 16\\); got"):
        from_keras_weights(lstm1(), [lstm_w[0], lstm_w[1].T, lstm_w[2]], kind="lstm",
                           head=dense)
    with pytest.raises(ValueError, match=r"LSTM\(4\) bias has shape \(16,\); got"):
        from_keras_weights(lstm1(), lstm_w[:2] + [np.zeros((2, 16))], kind="lstm",
                           head=dense)
    gru1 = make("regressor", "gru", num_layers=1)
    with pytest.raises(ValueError, match="reset_after=False"):
        from_keras_weights(gru1, gru_w[:2] + [np.zeros(12)], kind="gru", head=dense)
    with pytest.raises(ValueError, match=r"has shape \(2, 12\).*got \(3, 12\)"):
        from_keras_weights(gru1, gru_w[:2] + [np.zeros((3, 12))], kind="gru",
                           head=dense)
    nan = lstm_w[1].copy()
    nan[0, 3] = np.nan
    with pytest.raises(ValueError, match="LSTM recurrent_kernel contains NaN"):
        from_keras_weights(lstm1(), [lstm_w[0], nan, lstm_w[2]], kind="lstm",
                           head=dense)
    with pytest.raises(TypeError, match="LSTM kernel must hold real numbers"):
        from_keras_weights(lstm1(), [lstm_w[0].astype(complex)] + lstm_w[1:],
                           kind="lstm", head=dense)
    # The head.
    with pytest.raises(ValueError, match="head is required"):
        from_keras_weights(lstm1(), lstm_w, kind="lstm")
    with pytest.raises(ValueError, match="head must be a Dense layer's get_weights"):
        from_keras_weights(lstm1(), lstm_w, kind="lstm", head=dense * 2)
    with pytest.raises(ValueError, match="head must be a Dense layer's get_weights"):
        from_keras_weights(lstm1(), lstm_w, kind="lstm", head=np.zeros((H, 1)).tolist()
                           + [0.0, 0.0])
    with pytest.raises(ValueError, match=r"head's kernel has shape \(units=4, "
                                         r"n_outputs\); got \(1, 4\)"):
        from_keras_weights(lstm1(), lstm_w, kind="lstm", head=[dense[0].T, dense[1]])
    with pytest.raises(ValueError, match=r"head's bias has shape \(1,\)"):
        from_keras_weights(lstm1(), lstm_w, kind="lstm", head=[dense[0], np.zeros(2)])
    with pytest.raises(ValueError, match="head's bias contains NaN"):
        from_keras_weights(lstm1(), lstm_w, kind="lstm",
                           head=[dense[0], np.array([np.nan])])
    # Classes, as for from_torch_state_dict.
    with pytest.raises(ValueError, match="classes is required"):
        from_keras_weights(make("classifier", "lstm", num_layers=1), lstm_w,
                           kind="lstm", head=[np.zeros((H, 2)), np.zeros(2)])
