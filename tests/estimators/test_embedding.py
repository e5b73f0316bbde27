"""Token input: integer ids through an embedding (``vocab_size``, ``embedding_dim``).

The first layer reads ``x_t = W_emb[k_t]``: the compiled forward pass copies
the rows, BPTT scatter-adds ``dE/dx_t`` into them (none into the row of
``padding_idx``). Checked by finite differences (float64, random non-zero
biases, ragged batches with T = 1 and B = 1 among them: max relative error
1e-6), against PyTorch's ``nn.Embedding`` + ``nn.RNN/LSTM/GRU`` + ``nn.Linear``
(outputs and every gradient block to 1e-10), and against the same network
fed one-hot vectors with the embedding folded into ``W_ih`` (1e-12).
"""
import warnings

import numpy as np
import pytest

from crnn import (
    ConvergenceWarning, RNNClassifier, RNNRegressor, check_gradient, from_torch_state_dict,
    load, to_torch_state_dict,
)
from crnn.preprocessing import one_hot

V, E, H = 7, 3, 4
LENGTHS = [5, 1, 3, 3]           # ragged, a tie, a length-1 sequence
CELLS = ["elman", "lstm", "gru"]


def ids(rng, lengths=LENGTHS):
    return [rng.integers(0, V, size=n) for n in lengths]


def quiet_fit(model, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **kwargs)


# -- the gradient ---------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_gradient_check_classifier(cell, bidirectional, return_sequences, padding_idx):
    rng = np.random.default_rng(1)
    X = ids(rng)
    X[0][1] = 2                                 # the padding token inside a sequence
    y = ([rng.integers(0, 3, size=len(x)) for x in X] if return_sequences
         else np.array([0, 1, 2, 1]))
    model = RNNClassifier(H, cell=cell, num_layers=2, bidirectional=bidirectional,
                          return_sequences=return_sequences, vocab_size=V,
                          embedding_dim=E, padding_idx=padding_idx, alpha=0.05)
    check = check_gradient(model, X, y)
    assert check.max_error <= 1e-6, check
    assert np.abs(check.analytic["W_emb"]).max() > 0
    if padding_idx is not None:
        assert np.all(check.analytic["W_emb"][padding_idx] == 0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("X", [[[4]], [[0, 6, 6]], [[1], [5], [3]]],
                         ids=["B1-T1", "B1-T3", "B3-T1"])
def test_gradient_check_regressor_small_shapes(cell, X):
    n = len(X)
    y = np.linspace(-1, 1, 2 * n).reshape(n, 2)
    model = RNNRegressor(H, cell=cell, vocab_size=V, embedding_dim=E)
    assert check_gradient(model, X, y).max_error <= 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_check_truncated_bptt(cell):
    rng = np.random.default_rng(2)
    X = ids(rng, [6, 4, 2])
    y = [rng.normal(size=len(x)) for x in X]
    model = RNNRegressor(H, cell=cell, return_sequences=True, bptt_steps=2,
                         vocab_size=V, embedding_dim=E)
    assert check_gradient(model, X, y).max_error <= 1e-6


# -- PyTorch's nn.Embedding -------------------------------------------------------

def torch_modules(torch, cell, bidirectional, padding_idx, rng, O=2):
    kwargs = dict(num_layers=2, bidirectional=bidirectional, batch_first=True)
    rnn = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        E, H, **kwargs).double()
    lin = torch.nn.Linear((2 if bidirectional else 1) * H, O).double()
    emb = torch.nn.Embedding(V, E, padding_idx=padding_idx).double()
    with torch.no_grad():
        for p in list(rnn.parameters()) + list(lin.parameters()):
            p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, size=tuple(p.shape))))
        emb.weight.copy_(torch.from_numpy(rng.normal(size=(V, E))))
        emb.weight[padding_idx] = 0
    return emb, rnn, lin


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_parity(cell, bidirectional):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence

    rng = np.random.default_rng(3)
    padding_idx = 1
    emb, rnn, lin = torch_modules(torch, cell, bidirectional, padding_idx, rng)
    X = ids(rng)
    X[2][0] = padding_idx
    y = rng.normal(size=(len(X), 2))
    lengths = torch.tensor(LENGTHS)
    padded = torch.zeros(len(X), max(LENGTHS), dtype=torch.long)
    for i, x in enumerate(X):
        padded[i, :len(x)] = torch.from_numpy(x)
    packed = pack_padded_sequence(emb(padded), lengths, batch_first=True,
                                  enforce_sorted=False)
    h_n = rnn(packed)[1]
    h_n = h_n[0] if cell == "lstm" else h_n
    last = torch.cat([h_n[-2], h_n[-1]], 1) if bidirectional else h_n[-1]
    Z = lin(last)
    loss = torch.nn.functional.mse_loss(Z, torch.from_numpy(y))
    loss.backward()

    state = {"embedding.weight": emb.weight,
             **{k: p for k, p in rnn.state_dict().items()},
             "head.weight": lin.weight, "head.bias": lin.bias}
    model = from_torch_state_dict(
        RNNRegressor(H, cell=cell, num_layers=2, bidirectional=bidirectional,
                     vocab_size=V, embedding_dim=E, padding_idx=padding_idx), state)
    np.testing.assert_allclose(model.predict(X), Z.detach().numpy(), rtol=1e-10,
                               atol=1e-10)

    network = model._network()
    seqs = model._sequences(X, np.float64, None, None)
    batch = seqs.pack()
    value, grad = network.loss_grad(model.params_, batch, batch.targets(y, False))
    np.testing.assert_allclose(value, loss.item(), rtol=1e-10)
    G = network.layout.views(grad)
    np.testing.assert_allclose(G["W_emb"], emb.weight.grad.numpy(), rtol=1e-10,
                               atol=1e-12)
    assert np.all(G["W_emb"][padding_idx] == 0)
    for sfx in ["_l0", "_l1"] + (["_l0_reverse", "_l1_reverse"] if bidirectional else []):
        np.testing.assert_allclose(G["W_ih" + sfx], getattr(rnn, "weight_ih" + sfx).grad,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(G["W_hh" + sfx], getattr(rnn, "weight_hh" + sfx).grad,
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(G["W_y"], lin.weight.grad.numpy(), rtol=1e-10, atol=1e-12)

    # and back: the exported state dict is the torch modules' own
    exported = to_torch_state_dict(model)
    assert list(exported)[0] == "embedding.weight"
    np.testing.assert_array_equal(exported["embedding.weight"], emb.weight.detach().numpy())


def test_torch_state_dict_key_errors_name_the_embedding():
    rng = np.random.default_rng(4)
    model = quiet_fit(RNNRegressor(H, vocab_size=V, embedding_dim=E, max_iter=1),
                      ids(rng), rng.normal(size=4))
    state = to_torch_state_dict(model)
    plain = RNNRegressor(H)
    with pytest.raises(ValueError, match="set the model's vocab_size"):
        from_torch_state_dict(plain, state)
    del state["embedding.weight"]
    with pytest.raises(ValueError, match="stored as 'embedding.weight'"):
        from_torch_state_dict(RNNRegressor(H, vocab_size=V, embedding_dim=E), state)
    state = to_torch_state_dict(model)
    state["embedding.weight"] = np.zeros((V + 1, E))
    with pytest.raises(ValueError, match=r"needs \(7, 3\)"):
        from_torch_state_dict(RNNRegressor(H, vocab_size=V, embedding_dim=E), state)


# -- the same network fed one-hot vectors -----------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_equals_one_hot_input_with_the_embedding_folded_in(cell):
    rng = np.random.default_rng(5)
    X = ids(rng)
    y = rng.normal(size=len(X))
    tok = quiet_fit(RNNRegressor(H, cell=cell, num_layers=2, vocab_size=V,
                                 embedding_dim=E, max_iter=2, random_state=0), X, y)
    dense = quiet_fit(RNNRegressor(H, cell=cell, num_layers=2, max_iter=1,
                                   random_state=0), [one_hot(x, V) for x in X], y)
    W, D = tok.weights_, dense.weights_
    for name in D:
        D[name][...] = W[name] if name != "W_ih_l0" else W["W_ih_l0"] @ W["W_emb"].T
    np.testing.assert_allclose(tok.predict(X), dense.predict([one_hot(x, V) for x in X]),
                               rtol=1e-12, atol=1e-13)


# -- input forms and errors ---------------------------------------------------------

def test_input_forms_agree():
    rng = np.random.default_rng(6)
    X = rng.integers(0, V, size=(5, 4))
    model = quiet_fit(RNNClassifier(H, vocab_size=V, embedding_dim=E, max_iter=2,
                                    random_state=0), X, [0, 1, 0, 1, 1])
    P = model.predict_proba(X)
    np.testing.assert_array_equal(model.predict_proba(X.astype(np.float32)), P)
    np.testing.assert_array_equal(model.predict_proba(list(X)), P)
    np.testing.assert_array_equal(model.predict_proba(X.tolist()), P)
    # padding past the lengths is never read, nor checked
    padded = np.full((2, 6), -1)
    padded[0, :4], padded[1, :2] = X[0], X[1, :2]
    np.testing.assert_allclose(model.predict_proba(padded, lengths=[4, 2]),
                               model.predict_proba([X[0], X[1, :2]]), rtol=1e-15)
    assert model.n_features_in_ == 1


@pytest.mark.parametrize("X, error, match", [
    ([[0, 7, 1]], ValueError, r"token id 7, outside the vocabulary \[0, 7\)"),
    ([[0, -1]], ValueError, "token id -1"),
    ([[0.5, 1.0]], TypeError, "whole token ids"),
    ([[0, np.nan]], ValueError, "NaN"),
    (np.zeros((2, 3, 1), dtype=int), ValueError, r"2-D \(n_samples, n_timesteps\)"),
    ([np.array([1, 2]), np.array([[1], [2], [3]])], ValueError, r"X\[1\] must be 1-D"),
    ([[True, False]], TypeError, "real numbers"),
    (np.zeros((0, 3), dtype=int), ValueError, "empty"),
])
def test_bad_token_input_is_refused(X, error, match):
    model = RNNRegressor(H, vocab_size=V, embedding_dim=E, max_iter=1)
    with pytest.raises(error, match=match):
        model.fit(X, np.zeros(len(X)))
    assert not hasattr(model, "params_")


@pytest.mark.parametrize("params, match", [
    (dict(vocab_size=V), "needs both vocab_size"),
    (dict(embedding_dim=E), "needs both vocab_size"),
    (dict(vocab_size=V, embedding_dim=E, padding_idx=V), r"padding_idx must be a token"),
    (dict(padding_idx=0), r"padding_idx must be a token"),
    (dict(vocab_size=0, embedding_dim=E), "vocab_size"),
])
def test_bad_embedding_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        RNNRegressor(H, **params).fit([[1, 2]], [0.0])


def test_compiled_entry_points_check_token_buffers():
    rng = np.random.default_rng(7)
    model = quiet_fit(RNNRegressor(H, cell="lstm", vocab_size=V, embedding_dim=E,
                                   max_iter=1), ids(rng), rng.normal(size=4))
    stack = model._network().stack
    bs = np.array([2, 1], dtype=np.intp)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 7\)"):
        stack.forward(model.params_, np.array([1, 9, 2], dtype=np.intp), bs)
    with pytest.raises(ValueError, match="token ids must be a C-contiguous 1-d int"):
        stack.forward(model.params_, np.zeros((3, E)), bs)
    stepper = stack.stepper(model.params_, 2)
    stepper.step(np.array([3, 4], dtype=np.intp))
    before = stepper.state
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 7\)"):
        stepper.step(np.array([3, 7], dtype=np.intp))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        stepper.step(np.array([3], dtype=np.intp))
    np.testing.assert_array_equal(stepper.state, before)


# -- training, streaming, generation, files ----------------------------------------------

def test_padding_row_stays_zero_and_others_train():
    rng = np.random.default_rng(8)
    X = ids(rng, [6] * 20)
    model = RNNRegressor(H, vocab_size=V, embedding_dim=E, padding_idx=3, alpha=0.1,
                         random_state=0, max_iter=1)
    model.partial_fit(X, rng.normal(size=20))
    start = model.weights_["W_emb"].copy()
    assert np.all(start[3] == 0)
    quiet_fit(model.set_params(warm_start=True, max_iter=5), X, rng.normal(size=20))
    W = model.weights_["W_emb"]
    assert np.all(W[3] == 0)
    assert np.all(np.abs(np.delete(W - start, 3, axis=0)).max(axis=1) > 0)


@pytest.mark.parametrize("cell", CELLS)
def test_stream_steps_are_predict(cell):
    rng = np.random.default_rng(9)
    X = rng.integers(0, V, size=(3, 5))
    model = quiet_fit(RNNRegressor(H, cell=cell, num_layers=2, return_sequences=True,
                                   vocab_size=V, embedding_dim=E, max_iter=2),
                      X, rng.normal(size=(3, 5)))
    expected = model.predict(X)
    stream = model.stream(3)
    np.testing.assert_allclose(stream.steps(X.T).T, expected, rtol=1e-12, atol=1e-14)
    one = model.stream()
    np.testing.assert_allclose([one.step(int(k)) for k in X[1]], expected[1],
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.stream().steps(X[2]), expected[2], rtol=1e-12,
                               atol=1e-14)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        one.step(V)


def test_generate_with_token_input_draws_what_the_one_hot_model_draws():
    text = "abcabd" * 30
    chars, codes = np.unique(list(text), return_inverse=True)
    n = len(chars)
    tok = quiet_fit(RNNClassifier(8, cell="gru", return_sequences=True, vocab_size=n,
                                  embedding_dim=3, max_iter=30, learning_rate=1e-2,
                                  random_state=0), codes[None, :-1], chars[codes[1:]][None])
    dense = quiet_fit(RNNClassifier(8, cell="gru", return_sequences=True, max_iter=1,
                                    random_state=0), one_hot(codes[:-1], n)[None],
                      chars[codes[1:]][None])
    W, D = tok.weights_, dense.weights_
    for name in D:
        D[name][...] = W[name] if name != "W_ih_l0" else W["W_ih_l0"] @ W["W_emb"].T
    first = tok.generate("ab", 40, random_state=3)
    assert first == tok.generate("ab", 40, random_state=3)
    assert first == dense.generate("ab", 40, random_state=3)
    assert tok.generate("ab", 12, temperature=0) == dense.generate("ab", 12, temperature=0)
    prompts = np.array([["a", "b"], ["b", "d"]])
    np.testing.assert_array_equal(tok.generate(prompts, 10, random_state=5),
                                  dense.generate(prompts, 10, random_state=5))


def test_generate_needs_one_id_per_class():
    X = np.array([[0, 1, 2, 3]])
    model = quiet_fit(RNNClassifier(4, return_sequences=True, vocab_size=5, embedding_dim=2,
                                    max_iter=1), X, [[1, 2, 3, 0]])
    with pytest.raises(ValueError, match="vocab_size=5 and 4 classes"):
        model.generate([1], 3)


def test_save_load_and_onnx(tmp_path):
    rng = np.random.default_rng(11)
    X = ids(rng, [6] * 8)
    y = rng.normal(size=8)
    model = quiet_fit(RNNRegressor(H, cell="gru", vocab_size=V, embedding_dim=E,
                                   padding_idx=0, max_iter=2, dtype="float32"), X, y)
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.get_params()["vocab_size"] == V
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from crnn import to_onnx
    session = ort.InferenceSession(to_onnx(model).SerializeToString())
    padded = np.zeros((3, 6), dtype=np.int64)
    lengths = np.array([6, 2, 4])
    for i, n in enumerate(lengths):
        padded[i, :n] = X[i][:n]
    got = session.run(None, {"X": padded, "lengths": lengths.astype(np.int32)})[0]
    np.testing.assert_allclose(got, model.predict(padded, lengths=lengths), atol=1e-5)


def test_forecast_refuses_token_models():
    model = quiet_fit(RNNRegressor(H, vocab_size=V, embedding_dim=E, max_iter=1),
                      [[1, 2, 3]], [0.5])
    with pytest.raises(ValueError, match="reads token ids"):
        model.forecast([[1, 2]], 3)
