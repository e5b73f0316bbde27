"""Variable-length batches, initial and final states, streaming, truncated BPTT
and dropout.

Tolerances: equalities that only reorder floating-point work are checked to
``1e-12`` (float64); what runs the very same operations is checked bit for bit.
"""
import warnings

import numpy as np
import pytest

from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor
from crnn._network import RecurrentNetwork
from crnn._validation import check_sequences

# Every test runs with each recurrent product (BLAS, and the packed kernels
# this CPU has): see conftest.py.
pytestmark = pytest.mark.usefixtures("recurrent_product")

TOL = 1e-12
CELLS = ["elman", "lstm", "gru"]


def fitted(model, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **kw)


def ragged(rng, lengths, I=3):
    return [rng.normal(size=(L, I)) for L in lengths]


def randomize(model, seed):
    """Random weights and non-zero biases, so that every term matters."""
    rng = np.random.default_rng(seed)
    for block in model.weights_.values():
        block[...] = rng.uniform(-0.6, 0.6, size=block.shape)
    return model


# -- ragged batches equal running each sequence alone -------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_ragged_batch_equals_sequences_alone(cell, bidirectional, return_sequences):
    rng = np.random.default_rng(0)
    lengths = [6, 1, 4, 6, 2]
    X = ragged(rng, lengths)
    network = RecurrentNetwork(3, 4, 2, cell=cell, num_layers=2, bidirectional=bidirectional,
                               return_sequences=return_sequences)
    params = network.init_params(rng, random_biases=True)
    if return_sequences:
        y = [rng.normal(size=(L, 2)) for L in lengths]
    else:
        y = rng.normal(size=(len(lengths), 2))

    batch = check_sequences(X, np.float64).pack()
    Y, _ = network.output(params, batch)
    target = batch.pack_like(check_sequences(y, np.float64)) if return_sequences \
        else batch.per_sequence(y)
    loss, grad = network.loss_grad(params, batch, target)

    expected_grad = np.zeros_like(grad)
    expected_loss = 0.0
    N = sum(lengths)
    for i, x in enumerate(X):
        alone = check_sequences([x], np.float64).pack()
        Y_i, _ = network.output(params, alone)
        t_i = y[i] if return_sequences else y[i:i + 1]
        l_i, g_i = network.loss_grad(params, alone, t_i)
        # The batch loss is a mean over all scored outputs: weight each sequence
        # by its share of them.
        share = len(x) / N if return_sequences else 1 / len(X)
        expected_loss += share * l_i
        expected_grad += share * g_i
        if return_sequences:
            got = batch.unpack_steps(Y, as_list=True)[i]
        else:
            got = batch.unpack_last(Y)[i:i + 1]
        np.testing.assert_allclose(got, Y_i, rtol=TOL, atol=TOL)
    assert loss == pytest.approx(expected_loss, rel=TOL)
    np.testing.assert_allclose(grad, expected_grad, rtol=TOL, atol=TOL)


def test_padded_with_lengths_equals_list_input():
    rng = np.random.default_rng(1)
    lengths = np.array([5, 2, 4, 1])
    X_list = ragged(rng, lengths)
    X_pad = np.full((4, 5, 3), 1e3)  # padding values must never be read
    for i, x in enumerate(X_list):
        X_pad[i, :len(x)] = x
    y_list = [rng.normal(size=L) for L in lengths]
    y_pad = np.zeros((4, 5))
    for i, t in enumerate(y_list):
        y_pad[i, :len(t)] = t
    a = fitted(RNNRegressor(4, cell="gru", return_sequences=True, max_iter=2,
                            random_state=0), X_list, y_list)
    b = fitted(RNNRegressor(4, cell="gru", return_sequences=True, max_iter=2,
                            random_state=0), X_pad, y_pad, lengths=lengths)
    np.testing.assert_array_equal(a.params_, b.params_)
    pred_list, pred_pad = a.predict(X_list), a.predict(X_pad, lengths=lengths)
    assert isinstance(pred_list, list) and isinstance(pred_pad, np.ndarray)
    assert pred_pad.shape == (4, 5)
    for i, L in enumerate(lengths):
        assert pred_list[i].shape == (L,)
        np.testing.assert_array_equal(pred_list[i], pred_pad[i, :L])
        assert not pred_pad[i, L:].any()
    assert a.score(X_list, y_list) == pytest.approx(b.score(X_pad, y_pad, lengths=lengths),
                                                    rel=1e-12)


def test_predictions_come_back_in_the_users_order_and_shape():
    rng = np.random.default_rng(2)
    lengths = [2, 7, 1, 7, 3]
    X = ragged(rng, lengths)
    model = randomize(fitted(RNNClassifier(3, cell="lstm", return_sequences=True,
                                           max_iter=1, random_state=0),
                             X, [np.arange(L) % 2 for L in lengths]), 3)
    proba = model.predict_proba(X)
    labels = model.predict(X)
    for i, x in enumerate(X):
        alone = model.predict_proba([x])[0]
        assert proba[i].shape == (lengths[i], 2)
        np.testing.assert_allclose(proba[i], alone, rtol=TOL, atol=TOL)
        np.testing.assert_array_equal(labels[i], model.classes_[alone.argmax(axis=1)])
    one = RNNRegressor(3, cell="gru", max_iter=1, random_state=0)
    fitted(one, X, np.arange(5.0))
    pred = one.predict(X)
    assert pred.shape == (5,)
    for i, x in enumerate(X):
        assert pred[i] == pytest.approx(one.predict([x])[0], rel=TOL)


# -- initial and final states; streaming --------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_streaming_in_chunks_equals_whole_sequence(cell):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3, 20, 2))
    model = randomize(fitted(RNNRegressor(5, cell=cell, num_layers=2, return_sequences=True,
                                          max_iter=1, random_state=0),
                             X, rng.normal(size=(3, 20))), 4)
    whole, final = model.predict(X, return_state=True)
    parts, state = [], None
    for start, stop in [(0, 7), (7, 8), (8, 20)]:
        out, state = model.predict(X[:, start:stop], initial_state=state, return_state=True)
        parts.append(out)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=TOL, atol=TOL)
    for a, b in zip(state if cell == "lstm" else [state], final if cell == "lstm" else [final]):
        assert a.shape == (2, 3, 5)
        np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)


def test_final_states_of_ragged_sequences_are_at_their_own_last_step():
    rng = np.random.default_rng(4)
    X = ragged(rng, [4, 1, 6])
    model = randomize(fitted(RNNRegressor(3, max_iter=1, random_state=0), X,
                             np.zeros(3)), 5)
    _, state = model.predict(X, return_state=True)
    for i, x in enumerate(X):
        _, alone = model.predict([x], return_state=True)
        np.testing.assert_allclose(state[:, i], alone[:, 0], rtol=TOL, atol=TOL)


def test_initial_state_changes_outputs_and_is_validated():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2, 4, 3))
    model = fitted(RNNRegressor(3, cell="lstm", max_iter=1, random_state=0), X,
                   np.zeros(2))
    h0 = rng.normal(size=(1, 2, 3))
    c0 = rng.normal(size=(1, 2, 3))
    assert not np.allclose(model.predict(X), model.predict(X, initial_state=(h0, c0)))
    zeros = (np.zeros_like(h0), np.zeros_like(c0))
    np.testing.assert_array_equal(model.predict(X), model.predict(X, initial_state=zeros))
    with pytest.raises(ValueError, match=r"an LSTM's initial_state is a pair \(h0, c0\)"):
        model.predict(X, initial_state=h0)
    with pytest.raises(ValueError, match=r"h0 must have shape .* = \(1, 2, 3\); got \(1, 3, 3\)"):
        model.predict(X, initial_state=(np.zeros((1, 3, 3)), c0))
    with pytest.raises(ValueError, match="c0 contains NaN"):
        model.predict(X, initial_state=(h0, np.full_like(c0, np.nan)))


# -- truncated BPTT -----------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_truncation_at_or_beyond_the_length_is_full_bptt(cell, return_sequences):
    rng = np.random.default_rng(6)
    lengths = [9, 3, 9, 5]
    batch = check_sequences(ragged(rng, lengths), np.float64).pack()
    network = RecurrentNetwork(3, 4, 1, cell=cell, num_layers=2,
                               return_sequences=return_sequences)
    params = network.init_params(rng, random_biases=True)
    target = rng.normal(size=(batch.N if return_sequences else batch.B, 1))
    full = network.loss_grad(params, batch, target, alpha=0.1)
    for k in (9, 50):
        trunc = network.loss_grad_truncated(params, batch, target, k, alpha=0.1)
        assert trunc[0] == full[0]
        np.testing.assert_array_equal(trunc[1], full[1])


def elman_truncated_reference(x, d, P, k, count, scored_every_step):
    """Truncated BPTT for one sequence, written out step by step.

    h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), y_t = W_y h_t + b_y, loss
    sum over scored steps of |y_t - d_t|^2 / count. The sequence is cut into
    chunks of k steps; the state crosses chunk boundaries forward, but no
    gradient flows back across them.
    """
    W_ih, W_hh, b, W_y, b_y = (P[n] for n in ("W_ih_l0", "W_hh_l0", "b_l0", "W_y", "b_y"))
    L, H = len(x), W_hh.shape[0]
    hs = [np.zeros(H)]
    for t in range(L):
        hs.append(np.tanh(W_ih @ x[t] + W_hh @ hs[-1] + b))
    g = {n: np.zeros_like(v) for n, v in P.items()}
    loss = 0.0
    for t0 in range(0, L, k):
        t1 = min(t0 + k, L)
        dh_next = np.zeros(H)
        for t in range(t1 - 1, t0 - 1, -1):
            dh = dh_next.copy()
            if scored_every_step or t == L - 1:
                e = W_y @ hs[t + 1] + b_y - (d[t] if scored_every_step else d)
                loss += e @ e / count
                dy = 2 * e / count
                g["W_y"] += np.outer(dy, hs[t + 1])
                g["b_y"] += dy
                dh += W_y.T @ dy
            da = dh * (1 - hs[t + 1] ** 2)
            g["W_ih_l0"] += np.outer(da, x[t])
            g["W_hh_l0"] += np.outer(da, hs[t])
            g["b_l0"] += da
            dh_next = W_hh.T @ da if t > t0 else np.zeros(H)  # cut at the chunk start
    return loss, g


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_truncated_bptt_matches_a_reference(k, return_sequences):
    rng = np.random.default_rng(7)
    lengths = [8, 5, 8, 1, 3]
    X = ragged(rng, lengths, I=2)
    network = RecurrentNetwork(2, 3, 2, return_sequences=return_sequences)
    params = network.init_params(rng, random_biases=True)
    P = network.layout.views(params)
    batch = check_sequences(X, np.float64).pack()
    if return_sequences:
        y = [rng.normal(size=(L, 2)) for L in lengths]
        target = batch.pack_like(check_sequences(y, np.float64))
        count = sum(lengths) * 2
    else:
        y = rng.normal(size=(len(lengths), 2))
        target = batch.per_sequence(y)
        count = len(lengths) * 2
    loss, grad = network.loss_grad_truncated(params, batch, target, k)
    expected = {n: np.zeros_like(v) for n, v in P.items()}
    expected_loss = 0.0
    for x, d in zip(X, y):
        l_i, g_i = elman_truncated_reference(x, d, P, k, count, return_sequences)
        expected_loss += l_i
        for n in expected:
            expected[n] += g_i[n]
    assert loss == pytest.approx(expected_loss, rel=TOL)
    G = network.layout.views(grad)
    for n in expected:
        np.testing.assert_allclose(G[n], expected[n], rtol=1e-10, atol=TOL, err_msg=n)
    # Truncation really changes the gradient when k is shorter than the sequences.
    _, full = network.loss_grad(params, batch, target)
    assert not np.allclose(full, grad)


def test_truncated_bptt_trains():
    rng = np.random.default_rng(8)
    X = rng.uniform(-1, 1, size=(200, 30))
    y = np.zeros_like(X)
    y[:, 1:] = X[:, :-1]  # echo the previous input
    model = fitted(RNNRegressor(8, return_sequences=True, bptt_steps=5, learning_rate=1e-2,
                                max_iter=60, random_state=0), X, y)
    assert model.score(X, y) > 0.95


# -- dropout ------------------------------------------------------------------


def test_dropout_is_seeded_and_only_in_training():
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(40, 6, 2)), rng.normal(size=40)
    make = dict(hidden_size=4, num_layers=3, max_iter=3, random_state=0)
    a = fitted(RNNRegressor(dropout=0.5, **make), X, y)
    b = fitted(RNNRegressor(dropout=0.5, **make), X, y)
    c = fitted(RNNRegressor(dropout=0.0, **make), X, y)
    np.testing.assert_array_equal(a.params_, b.params_)
    assert not np.allclose(a.params_, c.params_)
    np.testing.assert_array_equal(a.predict(X), a.predict(X))  # no dropout at predict
    # Dropout acts between layers only: with one layer it changes nothing.
    d = fitted(RNNRegressor(dropout=0.5, **dict(make, num_layers=1)), X, y)
    e = fitted(RNNRegressor(dropout=0.0, **dict(make, num_layers=1)), X, y)
    np.testing.assert_array_equal(d.params_, e.params_)


# -- validation of the new inputs ---------------------------------------------


@pytest.mark.parametrize("lengths, message", [
    ([3, 0], r"lengths must lie in \[1, 4\] \(the padded length\); lengths\[1\] = 0"),
    ([3, 5], r"lengths\[1\] = 5"),
    ([3], r"one entry per sequence, shape \(2,\); got shape \(1,\)"),
])
def test_bad_lengths(lengths, message):
    with pytest.raises(ValueError, match=message):
        RNNRegressor(2).fit(np.zeros((2, 4, 1)), [0.0, 1.0], lengths=lengths)


def test_bad_ragged_inputs():
    with pytest.raises(ValueError, match=r"X\[1\] is empty"):
        RNNRegressor(2).fit([np.zeros((2, 1)), np.zeros((0, 1))], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"y\[1\] has 3 time steps, but X\[1\] has 2"):
        RNNRegressor(2, return_sequences=True).fit(
            [np.zeros((4, 1)), np.zeros((2, 1))], [np.zeros(4), np.zeros(3)])
    with pytest.raises(ValueError, match=r"X and y have different numbers of sequences"):
        RNNRegressor(2, return_sequences=True).fit(
            [np.zeros((4, 1)), np.zeros((2, 1))], [np.zeros(4)])
    with pytest.raises(ValueError, match=r"bidirectional model cannot"):
        RNNRegressor(2, bidirectional=True, bptt_steps=3).fit(np.zeros((2, 4, 1)), [0., 1.])
    with pytest.raises(ValueError, match=r"activation applies to the Elman cell"):
        RNNRegressor(2, cell="gru", activation="relu").fit(np.zeros((2, 4, 1)), [0., 1.])
