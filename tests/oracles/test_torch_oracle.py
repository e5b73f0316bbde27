"""crnn against PyTorch, number for number.

PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (float64, ``batch_first``,
packed ragged batches via ``pack_padded_sequence(enforce_sorted=False)``)
followed by ``nn.Linear`` is the oracle for crnn's ``RecurrentNetwork``:
outputs, final states of every layer and direction, the loss, and the
gradient of every parameter block; then end to end through the estimators
(``weights_`` -> torch, ``predict``) and for streaming with
``initial_state`` / ``return_state``.

Parameter correspondence (crnn has one bias where torch has two):

* Elman / LSTM: ``b = bias_ih + bias_hh``;
* GRU: ``b = [b_ir + b_hr, b_iz + b_hz, b_in]`` and ``b_hn = bias_hh[2H:]``;

so ``db`` equals torch's ``bias_ih.grad`` (and ``bias_hh.grad`` where the two
biases overlap) and ``db_hn`` equals ``bias_hh.grad[2H:]``.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor  # noqa: E402
from crnn import _estimators  # noqa: E402
from crnn._network import RecurrentNetwork  # noqa: E402
from crnn._validation import check_sequences  # noqa: E402

# Every test runs with each recurrent product (BLAS, and the packed kernels
# this CPU has): see conftest.py.
pytestmark = pytest.mark.usefixtures("recurrent_product")

RTOL = ATOL = 1e-10
I, H, O = 3, 4, 2
LENGTHS = [7, 4, 4, 1, 6]        # ragged, with a tie and a length-1 sequence

# (crnn cell, crnn/torch activation): the Elman cell with both of torch's
# nonlinearities, the LSTM and the GRU.
CELLS = [("elman", "tanh"), ("elman", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
CELL_IDS = ["elman-tanh", "elman-relu", "lstm", "gru"]
N_STATES = {"elman": 1, "lstm": 2, "gru": 1}


def close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected),
                               rtol=RTOL, atol=ATOL, err_msg=what)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


# -- torch models and weight transfer ---------------------------------------

def torch_model(cell, activation, num_layers, bidirectional, rng, n_in=I, n_out=O):
    """A float64 torch RNN + Linear with every weight and bias U(-0.5, 0.5)."""
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    if cell == "elman":
        rnn = torch.nn.RNN(n_in, H, nonlinearity=activation, **kwargs)
    elif cell == "lstm":
        rnn = torch.nn.LSTM(n_in, H, **kwargs)
    else:
        rnn = torch.nn.GRU(n_in, H, **kwargs)
    D = 2 if bidirectional else 1
    lin = torch.nn.Linear(D * H, n_out)
    rnn, lin = rnn.double(), lin.double()
    with torch.no_grad():
        for p in list(rnn.parameters()) + list(lin.parameters()):
            p.copy_(t(rng.uniform(-0.5, 0.5, size=tuple(p.shape))))
    return rnn, lin


def units(num_layers, D):
    """``(k, torch suffix)`` of every layer-direction unit, k = layer * D + d."""
    return [(l * D + d, f"_l{l}" + ("_reverse" if d else ""))
            for l in range(num_layers) for d in range(D)]


def torch_to_crnn(rnn, lin, cell, P):
    """Copy torch's weights into crnn's named views ``P``."""
    D = 2 if rnn.bidirectional else 1
    for _, sfx in units(rnn.num_layers, D):
        w_ih = getattr(rnn, "weight_ih" + sfx).detach().numpy()
        w_hh = getattr(rnn, "weight_hh" + sfx).detach().numpy()
        b_ih = getattr(rnn, "bias_ih" + sfx).detach().numpy()
        b_hh = getattr(rnn, "bias_hh" + sfx).detach().numpy()
        P["W_ih" + sfx][...] = w_ih
        P["W_hh" + sfx][...] = w_hh
        if cell == "gru":
            P["b" + sfx][...] = np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
            P["b_hn" + sfx][...] = b_hh[2 * H:]
        else:
            P["b" + sfx][...] = b_ih + b_hh
    P["W_y"][...] = lin.weight.detach().numpy()
    P["b_y"][...] = lin.bias.detach().numpy()


def crnn_to_torch(P, cell, rnn, lin):
    """Copy crnn's named views ``P`` (e.g. an estimator's ``weights_``) into torch."""
    D = 2 if rnn.bidirectional else 1
    with torch.no_grad():
        for _, sfx in units(rnn.num_layers, D):
            getattr(rnn, "weight_ih" + sfx).copy_(t(P["W_ih" + sfx]))
            getattr(rnn, "weight_hh" + sfx).copy_(t(P["W_hh" + sfx]))
            b_ih, b_hh = getattr(rnn, "bias_ih" + sfx), getattr(rnn, "bias_hh" + sfx)
            b_ih.copy_(t(P["b" + sfx]))
            b_hh.zero_()
            if cell == "gru":
                b_hh[2 * H:] = t(P["b_hn" + sfx])
        lin.weight.copy_(t(P["W_y"]))
        lin.bias.copy_(t(P["b_y"]))


def run_torch(rnn, lin, X_list, state0=None, return_sequences=False):
    """Torch on a ragged list of ``(L_i, I)`` arrays, in the user's order.

    Returns the pre-activation outputs ``Z`` (``(B, T, O)`` zero-padded per
    step, or ``(B, O)`` from the last layer's final states), the final
    states ``(h_n[, c_n])`` (each ``(L*D, B, H)``) and the valid-step mask.
    """
    lengths = torch.tensor([len(x) for x in X_list])
    T = int(lengths.max())
    padded = torch.zeros(len(X_list), T, X_list[0].shape[1], dtype=torch.float64)
    for i, x in enumerate(X_list):
        padded[i, :len(x)] = t(x)
    packed = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
    if state0 is not None and len(state0) == 1:
        state0 = state0[0]                      # nn.RNN / nn.GRU take h0 alone
    out, final = rnn(packed, state0)
    final = final if isinstance(final, tuple) else (final,)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    if return_sequences:
        seq, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        Z = lin(seq) * mask[:, :, None]
    else:
        D = 2 if rnn.bidirectional else 1
        h_n = final[0]
        # The last layer's final states: forward at each sequence's own last
        # step, reverse after step 0 (what crnn scores).
        Z = lin(torch.cat([h_n[-D + d] for d in range(D)], dim=1))
    return Z, final, mask


def ragged(rng, lengths, n_in=I):
    return [rng.uniform(-1, 1, size=(L, n_in)) for L in lengths]


def random_state0(cell, num_layers, D, B, rng):
    return tuple(t(rng.uniform(-0.8, 0.8, size=(num_layers * D, B, H)))
                 for _ in range(N_STATES[cell]))


def packed_initial(state0, batch, n_units):
    """Torch's ``(L*D, B, H)`` initial states as crnn's ``(n_states, L*D, B, H)``,
    rows in packed order (row j is sequence ``batch.src_seq[j]``)."""
    rows = batch.src_seq[:batch.B]
    initial = np.stack([s.numpy()[:, rows] for s in state0])
    assert initial.shape[1] == n_units
    return initial


def torch_grads(rnn, lin, cell):
    """Torch's gradients as crnn's named blocks."""
    D = 2 if rnn.bidirectional else 1
    G = {}
    for _, sfx in units(rnn.num_layers, D):
        G["W_ih" + sfx] = getattr(rnn, "weight_ih" + sfx).grad.numpy()
        G["W_hh" + sfx] = getattr(rnn, "weight_hh" + sfx).grad.numpy()
        g_ih = getattr(rnn, "bias_ih" + sfx).grad.numpy()
        g_hh = getattr(rnn, "bias_hh" + sfx).grad.numpy()
        G["b" + sfx] = g_ih
        # The two biases enter the same sum (all of it for Elman/LSTM, r and z
        # for the GRU): their gradients agree there, so crnn's one b is right.
        shared = 2 * H if cell == "gru" else g_ih.size
        close(g_hh[:shared], g_ih[:shared], "torch bias_ih.grad vs bias_hh.grad" + sfx)
        if cell == "gru":
            G["b_hn" + sfx] = g_hh[2 * H:]
    G["W_y"] = lin.weight.grad.numpy()
    G["b_y"] = lin.bias.grad.numpy()
    return G


def zero_grads(rnn, lin):
    for p in list(rnn.parameters()) + list(lin.parameters()):
        p.grad = None


def torch_loss(Z, mask, target, loss, return_sequences):
    """Mean loss over the scored outputs (valid steps only per step)."""
    if return_sequences:
        Z, target = Z[mask], target[mask]
    if loss == "cross_entropy":
        return F.cross_entropy(Z, target, reduction="mean")
    return F.mse_loss(Z, target, reduction="mean")


# -- 1. the network, configuration by configuration --------------------------

class Case:
    """One configuration: a torch model, the same crnn network, data, targets."""

    def __init__(self, cell, activation, num_layers, bidirectional, return_sequences,
                 loss="squared_error", seed=0):
        rng = np.random.default_rng(seed)
        self.cell, self.L, self.D = cell, num_layers, 2 if bidirectional else 1
        self.loss, self.rs = loss, return_sequences
        self.rnn, self.lin = torch_model(cell, activation, num_layers, bidirectional, rng)
        softmax = loss == "cross_entropy"
        self.net = RecurrentNetwork(
            I, H, O, cell=cell, num_layers=num_layers, bidirectional=bidirectional,
            activation=activation, return_sequences=return_sequences, loss=loss,
            output_activation="softmax" if softmax else "identity")
        self.params = self.net.layout.zeros(np.float64)
        torch_to_crnn(self.rnn, self.lin, cell, self.net.layout.views(self.params))
        self.X = ragged(rng, LENGTHS)
        self.batch = check_sequences(self.X, np.float64).pack()
        self.B, self.T = len(LENGTHS), max(LENGTHS)
        self.state0 = random_state0(cell, num_layers, self.D, self.B, rng)
        # Targets: padded (B, T[, O]) per step, (B[, O]) per sequence, in user order.
        shape = (self.B, self.T) if return_sequences else (self.B,)
        if softmax:
            self.target = rng.integers(0, O, size=shape)
            self.target_t = torch.from_numpy(self.target)
        else:
            self.target = rng.uniform(-1, 1, size=shape + (O,))
            self.target_t = t(self.target)
        b = self.batch
        # crnn's targets, packed like the scored states.
        self.target_packed = (self.target[b.src_seq, b.src_t] if return_sequences
                              else self.target[b.src_seq[:b.B]])

    def crnn_outputs_user_order(self, Y):
        if self.rs:
            return self.batch.unpack_steps(Y, as_list=False)
        return self.batch.unpack_last(Y)

    def torch_forward(self, state0):
        zero_grads(self.rnn, self.lin)
        Z, final, mask = run_torch(self.rnn, self.lin, self.X, state0, self.rs)
        value = torch_loss(Z, mask, self.target_t, self.loss, self.rs)
        value.backward()
        return Z.detach(), final, mask, value.item(), torch_grads(self.rnn, self.lin,
                                                                  self.cell)

    def compare_outputs(self, Y, Z, mask, what):
        Yu = self.crnn_outputs_user_order(Y)
        ref = torch.softmax(Z, dim=-1) if self.loss == "cross_entropy" else Z
        if self.rs:
            m = mask.numpy()
            close(Yu[m], ref.numpy()[m], what + ": outputs Y at valid steps")
        else:
            close(Yu, ref.numpy(), what + ": outputs Y")

    def compare_grads(self, grad, G, what):
        mine = self.net.layout.views(grad)
        assert set(mine) == set(G)
        for name in self.net.layout.names:
            close(mine[name], G[name], f"{what}: gradient of {name}")


CONFIGS = [(c, a, L, bi, rs) for (c, a) in CELLS for L in (1, 2)
           for bi in (False, True) for rs in (False, True)]
CONFIG_IDS = [f"{cid}-L{L}-{'bi' if bi else 'uni'}-{'seq' if rs else 'last'}"
              for cid, (c, a) in zip(CELL_IDS, CELLS) for L in (1, 2)
              for bi in (False, True) for rs in (False, True)]


def test_packed_initial_rows_follow_src_seq():
    """The packed order crnn's initial states must follow: row j of step 0 is
    sequence ``src_seq[j]`` (longest first, ties in input order)."""
    b = check_sequences(ragged(np.random.default_rng(0), LENGTHS), np.float64).pack()
    np.testing.assert_array_equal(b.src_seq[:b.B], [0, 4, 1, 2, 3])
    np.testing.assert_array_equal(b.order, b.src_seq[:b.B])
    np.testing.assert_array_equal(b.batch_sizes, [5, 4, 4, 4, 2, 2, 1])


@pytest.mark.parametrize("cell, activation, num_layers, bidirectional, return_sequences",
                         CONFIGS, ids=CONFIG_IDS)
def test_network_matches_torch(cell, activation, num_layers, bidirectional,
                               return_sequences):
    case = Case(cell, activation, num_layers, bidirectional, return_sequences)
    net, params, batch = case.net, case.params, case.batch
    n_units = num_layers * case.D

    # Forward from random initial states: outputs and every final state.
    Z, final_t, mask, loss_t, G = case.torch_forward(case.state0)
    initial = packed_initial(case.state0, batch, n_units)
    Y, finals = net.output(params, batch, initial)
    case.compare_outputs(Y, Z, mask, "initial states")
    assert finals.shape == (N_STATES[cell], n_units, batch.B, H)
    for k in range(n_units):
        for s, name in enumerate(("h_n", "c_n")[:N_STATES[cell]]):
            close(batch.unpack_last(finals[s, k]), final_t[s][k].detach().numpy(),
                  f"{name} of unit {k}")

    # Loss and gradient from those initial states.
    value, grad = net.loss_grad(params, batch, case.target_packed, initial=initial)
    close(value, loss_t, "loss from initial states")
    case.compare_grads(grad, G, "from initial states")

    # The public loss and loss_grad, from zero initial states.
    Z0, _, _, loss0, G0 = case.torch_forward(None)
    Y0, _ = net.output(params, batch)
    case.compare_outputs(Y0, Z0, mask, "zero states")
    close(net.loss(params, batch, case.target_packed), loss0, "loss")
    value, grad = net.loss_grad(params, batch, case.target_packed)
    close(value, loss0, "loss_grad's loss")
    case.compare_grads(grad, G0, "loss_grad")
    assert np.abs(grad).max() > 1e-3        # a non-trivial comparison


@pytest.mark.parametrize("cell, activation", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_cross_entropy_matches_torch(cell, activation, return_sequences):
    """RNNClassifier's setting: softmax output, mean cross-entropy, integer classes."""
    case = Case(cell, activation, 2, True, return_sequences, loss="cross_entropy",
                seed=1)
    net, params, batch = case.net, case.params, case.batch
    Z, _, mask, loss_t, G = case.torch_forward(None)
    Y, _ = net.output(params, batch)
    case.compare_outputs(Y, Z, mask, "cross-entropy")
    close(net.loss(params, batch, case.target_packed), loss_t, "cross-entropy loss")
    value, grad = net.loss_grad(params, batch, case.target_packed)
    close(value, loss_t, "cross-entropy loss_grad's loss")
    case.compare_grads(grad, G, "cross-entropy")


# -- 2. end to end through the estimators ------------------------------------

def user_states(state):
    """predict's returned state as a tuple: ``(h_n,)`` or ``(h_n, c_n)``."""
    return state if isinstance(state, tuple) else (state,)


def fit_one_epoch(model, X, y):
    with pytest.warns(ConvergenceWarning):
        return model.fit(X, y)


@pytest.mark.parametrize("cell, activation", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_regressor_predict_matches_torch(cell, activation, return_sequences):
    rng = np.random.default_rng(2)
    X = ragged(rng, [5, 3, 6, 2, 4, 1])
    if return_sequences:
        y = [rng.uniform(-1, 1, size=(len(x), O)) for x in X]
    else:
        y = rng.uniform(-1, 1, size=(len(X), O))
    model = RNNRegressor(hidden_size=H, cell=cell, activation=activation, num_layers=2,
                         bidirectional=True, return_sequences=return_sequences,
                         max_iter=1, batch_size=4, random_state=0)
    fit_one_epoch(model, X, y)
    rnn, lin = torch_model(cell, activation, 2, True, rng)
    crnn_to_torch(model.weights_, cell, rnn, lin)

    X_new = ragged(rng, LENGTHS)
    pred = model.predict(X_new)
    with torch.no_grad():
        Z, _, _ = run_torch(rnn, lin, X_new, None, return_sequences)
    check_prediction(pred, Z, return_sequences, "predict")

    # The same with user initial states (L*D, n, H) in and final states out.
    state0 = random_state0(cell, 2, 2, len(X_new), rng)
    init = tuple(s.numpy() for s in state0)
    pred, state = model.predict(X_new, initial_state=init if cell == "lstm" else init[0],
                                return_state=True)
    with torch.no_grad():
        Z, final_t, _ = run_torch(rnn, lin, X_new, state0, return_sequences)
    check_prediction(pred, Z, return_sequences, "predict from initial_state")
    for s, (mine, ref) in enumerate(zip(user_states(state), final_t)):
        close(mine, ref.numpy(), f"returned state {s}")


def check_prediction(pred, Z, return_sequences, what):
    if return_sequences:
        assert isinstance(pred, list) and len(pred) == len(LENGTHS)
        for i, (p, L) in enumerate(zip(pred, LENGTHS)):
            assert p.shape == (L, O)
            close(p, Z[i, :L].numpy(), f"{what}: sequence {i}")
    else:
        assert pred.shape == (len(LENGTHS), O)
        close(pred, Z.numpy(), what)


@pytest.mark.parametrize("cell, activation", CELLS, ids=CELL_IDS)
def test_classifier_predict_proba_matches_torch(cell, activation):
    rng = np.random.default_rng(3)
    X = ragged(rng, [5, 3, 6, 2, 4, 1])
    y = np.array(["a", "b", "c", "a", "c", "b"])
    model = RNNClassifier(hidden_size=H, cell=cell, activation=activation, num_layers=2,
                          bidirectional=True, max_iter=1, random_state=0)
    fit_one_epoch(model, X, y)
    rnn, lin = torch_model(cell, activation, 2, True, rng, n_out=3)
    crnn_to_torch(model.weights_, cell, rnn, lin)
    X_new = ragged(rng, LENGTHS)
    with torch.no_grad():
        Z, _, _ = run_torch(rnn, lin, X_new)
    close(model.predict_proba(X_new), torch.softmax(Z, dim=1).numpy(), "predict_proba")
    np.testing.assert_array_equal(model.predict(X_new),
                                  model.classes_[Z.argmax(dim=1).numpy()])


# -- 3. initial states and streaming ----------------------------------------

@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("predict_chunk", [None, 1], ids=["one-chunk", "tiny-chunks"])
def test_streaming_matches_one_torch_pass(cell, predict_chunk, monkeypatch):
    """``predict(part 1, return_state)`` then ``predict(part 2, initial_state=...)``
    equals torch over the whole sequences, from random initial states; also
    with predict's internal batching forced down to one sequence per chunk."""
    rng = np.random.default_rng(4)
    model = RNNRegressor(hidden_size=H, cell=cell, num_layers=2, return_sequences=True,
                         max_iter=1, random_state=0)
    X_fit = ragged(rng, [4, 6, 3])
    fit_one_epoch(model, X_fit, [rng.uniform(-1, 1, size=(len(x), O)) for x in X_fit])
    rnn, lin = torch_model(cell, "tanh", 2, False, rng)
    torch_to_crnn(rnn, lin, cell, model.weights_)      # writes into params_
    if predict_chunk is not None:
        # predict packs _PREDICT_CHUNK_ELEMENTS // (T * H * D * L * gates)
        # sequences at a time: make that one.
        monkeypatch.setattr(_estimators, "_PREDICT_CHUNK_ELEMENTS", predict_chunk)

    # Ragged sequences cut at ragged places; both parts non-empty.
    X = ragged(rng, [7, 4, 4, 2, 6])
    cut = [4, 1, 2, 1, 3]
    part1 = [x[:c] for x, c in zip(X, cut)]
    part2 = [x[c:] for x, c in zip(X, cut)]

    state0 = random_state0(cell, 2, 1, len(X), rng)
    h0 = tuple(s.numpy() for s in state0)
    init = h0 if cell == "lstm" else h0[0]
    Y1, s1 = model.predict(part1, initial_state=init, return_state=True)
    Y2, s2 = model.predict(part2, initial_state=s1, return_state=True)
    with torch.no_grad():
        Z, final_t, _ = run_torch(rnn, lin, X, state0, return_sequences=True)
        _, final1, _ = run_torch(rnn, lin, part1, state0, return_sequences=True)
    for i, x in enumerate(X):
        close(np.concatenate([Y1[i], Y2[i]]), Z[i, :len(x)].numpy(),
              f"streamed outputs of sequence {i}")
    for s, (mine, ref) in enumerate(zip(user_states(s1), final1)):
        close(mine, ref.numpy(), f"state {s} after part 1")
    for s, (mine, ref) in enumerate(zip(user_states(s2), final_t)):
        assert mine.shape == (2, len(X), H)
        close(mine, ref.numpy(), f"state {s} after part 2")
    assert isinstance(s2, tuple) == (cell == "lstm")


def test_weights_transfer_changes_predictions():
    """Guard against the transfer being a no-op: crnn's own fitted weights
    disagree with fresh torch weights before the copy."""
    rng = np.random.default_rng(5)
    X = ragged(rng, [5, 3, 6])
    model = RNNRegressor(hidden_size=H, cell="gru", num_layers=2, bidirectional=True,
                         max_iter=1, random_state=0)
    fit_one_epoch(model, X, rng.uniform(-1, 1, size=(3, O)))
    rnn, lin = torch_model("gru", "tanh", 2, True, rng)
    with torch.no_grad():
        Z, _, _ = run_torch(rnn, lin, X)
    assert np.abs(model.predict(X) - Z.numpy()).max() > 1e-3
    crnn_to_torch(model.weights_, "gru", rnn, lin)
    with torch.no_grad():
        Z, _, _ = run_torch(rnn, lin, X)
    close(model.predict(X), Z.numpy(), "predict after transfer")
