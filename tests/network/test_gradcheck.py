"""Analytic BPTT gradients against finite differences, for every configuration.

Tolerance: the relative error of every parameter block, in the max norm
(``max|g_bptt - g_fd| / max|g|``), must be at most ``GRAD_RTOL = 1e-6`` in
float64. The fourth-order stencil with step 1e-4 leaves about 1e-10, so a
real mistake in any term stands out by orders of magnitude.
"""
import itertools

import numpy as np
import pytest

from crnn import RNNClassifier, RNNRegressor, check_gradient
from crnn._network import RecurrentNetwork
from crnn._validation import check_sequences

# Every test runs with each recurrent product (BLAS, and the packed kernels
# this CPU has): see conftest.py.
pytestmark = pytest.mark.usefixtures("recurrent_product")

GRAD_RTOL = 1e-6
# A ReLU's kink inside the stencil (+-2 epsilon around a pre-activation)
# breaks the finite difference; a smaller step makes that rare.
EPSILON = {"relu": 1e-6}

# (T, B, I, H): one step, one sequence, one of everything, and long sequences.
SHAPES = [(1, 3, 2, 4), (5, 1, 3, 4), (1, 1, 1, 1), (7, 4, 3, 5), (20, 3, 2, 4), (25, 2, 1, 6)]
ACTIVATIONS = ["tanh", "relu", "sigmoid", "identity"]


def regression_data(T, B, I, O, return_sequences, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, T, I))
    y = rng.normal(size=(B, T, O) if return_sequences else (B, O))
    return X, y


def classification_data(T, B, I, K, return_sequences, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, T, I))
    shape = (B, T) if return_sequences else (B,)
    y = rng.integers(0, K, size=shape)
    y.flat[:K] = np.arange(K)[: y.size]  # every class present when possible
    return X, y


def fitted_classifier(H, I, K, seed, **params):
    """A classifier at random weights and random non-zero biases.

    ``partial_fit`` with ``classes`` sets the classes, so that the check also
    runs on a batch holding a single label (B = 1).
    """
    rng = np.random.default_rng(seed)
    model = RNNClassifier(H, random_state=seed, **params)
    T = 2
    X = rng.normal(size=(K, T, I))
    y = np.arange(K) if not model.return_sequences else np.tile(np.arange(K), (T, 1)).T
    model.partial_fit(X, y, classes=np.arange(K))
    for name, block in model.weights_.items():
        block[...] = rng.uniform(-0.8, 0.8, size=block.shape)
    return model


def assert_gradient_ok(result, one_step=False, relu=False):
    assert set(result.errors) == {"W_ih_l0", "W_hh_l0", "b_l0", "W_y", "b_y"}
    for name, error in result.errors.items():
        assert error <= GRAD_RTOL, f"{name}: relative error {error:.2e}\n{result!r}"
        if one_step and name == "W_hh_l0":
            # One step from h_0 = 0: W_hh multiplies zero, its gradient is exactly 0.
            assert not result.analytic[name].any()
        elif not relu or name == "b_y":
            # Guard against a vacuous pass: every block has a gradient (but
            # a ReLU that is off at every step zeroes all blocks but b_y).
            assert np.abs(result.analytic[name]).max() > 1e-6, name


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_squared_error(shape, activation, return_sequences):
    T, B, I, H = shape
    X, y = regression_data(T, B, I, 2, return_sequences)
    model = RNNRegressor(H, activation=activation, return_sequences=return_sequences)
    result = check_gradient(model, X, y, random_state=1,
                            epsilon=EPSILON.get(activation, 1e-4))
    assert_gradient_ok(result, one_step=T == 1, relu=activation == "relu")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_cross_entropy(shape, activation, return_sequences):
    T, B, I, H = shape
    X, y = classification_data(T, B, I, 3, return_sequences)
    model = fitted_classifier(H, I, 3, seed=2, activation=activation,
                              return_sequences=return_sequences)
    # Fitted weights: h_0 = 0 still zeroes W_hh's gradient for one step.
    assert_gradient_ok(check_gradient(model, X, y, epsilon=EPSILON.get(activation, 1e-4)),
                       one_step=T == 1, relu=activation == "relu")


@pytest.mark.parametrize("output_activation", ["identity", "tanh", "sigmoid", "softmax"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_output_activations_with_squared_error(output_activation, return_sequences):
    X, y = regression_data(6, 3, 2, 3, return_sequences, seed=3)
    model = RNNRegressor(5, output_activation=output_activation,
                         return_sequences=return_sequences)
    assert_gradient_ok(check_gradient(model, X, y, random_state=3))


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_l2_penalty_is_in_the_gradient(return_sequences):
    X, y = regression_data(6, 3, 2, 1, return_sequences, seed=4)
    model = RNNRegressor(4, alpha=0.3, return_sequences=return_sequences)
    result = check_gradient(model, X, y, random_state=4)
    assert_gradient_ok(result)
    # The penalty changes the weight gradients, not the bias gradients.
    plain = check_gradient(model.set_params(alpha=0.0), X, y, random_state=4)
    assert not np.allclose(result.analytic["W_hh_l0"], plain.analytic["W_hh_l0"])
    np.testing.assert_allclose(result.analytic["b_l0"], plain.analytic["b_l0"], rtol=1e-12)


def test_fitted_float32_model_is_checked_in_float64():
    X, y = regression_data(8, 6, 2, 1, False, seed=5)
    model = RNNRegressor(4, dtype="float32", max_iter=3, random_state=0,
                         n_iter_no_change=100)
    with pytest.warns(Warning):
        model.fit(X, y[:, 0])
    result = model.check_gradient(X, y[:, 0])
    assert result.analytic["W_y"].dtype == np.float64
    assert_gradient_ok(result)
    # At the fitted weights: the float64 copy of params_, not a fresh draw.
    np.testing.assert_array_equal(
        result.analytic["W_y"].shape, model.weights_["W_y"].shape)


def test_unfitted_check_leaves_the_estimator_unfitted():
    X, y = regression_data(3, 2, 2, 1, False)
    model = RNNRegressor(3)
    check_gradient(model, X, y[:, 0])
    assert not hasattr(model, "params_")


def test_check_detects_a_wrong_gradient(monkeypatch):
    """The check must fail when one term of the BPTT gradient is wrong."""
    X, y = regression_data(6, 3, 2, 1, True)
    original = RecurrentNetwork.loss_grad

    def broken(self, params, *args, **kwargs):
        loss, grad = original(self, params, *args, **kwargs)
        self.layout.view(grad, "W_hh_l0")[0, 0] *= 1.001
        return loss, grad

    monkeypatch.setattr(RecurrentNetwork, "loss_grad", broken)
    result = check_gradient(RNNRegressor(4, return_sequences=True), X, y)
    assert result.errors["W_hh_l0"] > 1e-5
    assert result.errors["W_ih_l0"] <= GRAD_RTOL


def test_result_repr_lists_every_block():
    X, y = regression_data(2, 2, 1, 1, False)
    text = repr(check_gradient(RNNRegressor(2), X, y[:, 0]))
    for name in ("W_ih_l0", "W_hh_l0", "b_l0", "W_y", "b_y"):
        assert name in text


def test_network_loss_grad_is_deterministic_and_overwrites_grad():
    rng = np.random.default_rng(0)
    network = RecurrentNetwork(2, 3, 1, return_sequences=True)
    params = network.init_params(rng, random_biases=True)
    X = check_sequences(rng.normal(size=(2, 4, 2)), np.float64).pack()
    target = rng.normal(size=(X.N, 1))
    grad = np.full(network.layout.size, 123.0)
    loss1, g1 = network.loss_grad(params, X, target, 0.0, grad)
    assert g1 is grad
    loss2, g2 = network.loss_grad(params, X, target)
    assert loss1 == loss2
    np.testing.assert_array_equal(g1, g2)
    assert loss1 == pytest.approx(network.loss(params, X, target), rel=1e-15)


@pytest.mark.parametrize("activation,return_sequences",
                         list(itertools.product(["tanh", "relu"], [False, True])))
def test_long_sequences(activation, return_sequences):
    X, y = classification_data(40, 2, 2, 2, return_sequences, seed=6)
    model = RNNClassifier(3, activation=activation, return_sequences=return_sequences)
    assert_gradient_ok(check_gradient(model, X, y, random_state=6,
                                      epsilon=EPSILON.get(activation, 1e-4)),
                       relu=activation == "relu")


# -- every cell, layer count and direction, on ragged batches ---------------------

CELLS = ["elman", "lstm", "gru"]
RAGGED = [[5, 1, 7, 3], [1], [1, 1, 1], [25, 2, 13]]


def ragged_regression(lengths, I, O, return_sequences, seed):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(L, I)) for L in lengths]
    if return_sequences:
        return X, [rng.normal(size=(L, O)) for L in lengths]
    return X, rng.normal(size=(len(lengths), O))


@pytest.mark.parametrize("lengths", RAGGED, ids=lambda l: "L" + "-".join(map(str, l)))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_cells_layers_directions_ragged(cell, num_layers, bidirectional, lengths,
                                        return_sequences):
    X, y = ragged_regression(lengths, 3, 2, return_sequences, seed=len(lengths))
    model = RNNRegressor(4, cell=cell, num_layers=num_layers, bidirectional=bidirectional,
                         return_sequences=return_sequences)
    result = check_gradient(model, X, y, random_state=7)
    names = model._make_network(3, 2, np.float64).layout.names
    assert set(result.errors) == set(names)
    for name, error in result.errors.items():
        assert error <= GRAD_RTOL, f"{name}: relative error {error:.2e}\n{result!r}"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 3, 2, 4), (5, 1, 3, 4), (30, 3, 2, 5)],
                         ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
def test_gated_cells_classification(cell, shape):
    T, B, I, H = shape
    X, y = classification_data(T, B, I, 3, True, seed=T + B)
    model = fitted_classifier(H, I, 3, seed=11, cell=cell, return_sequences=True)
    result = check_gradient(model, X, y)
    assert result.max_error <= GRAD_RTOL, repr(result)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bptt_steps", [1, 2, 3, 100])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_truncated_bptt_gradient(cell, bptt_steps, return_sequences):
    """The truncated gradient is the derivative of the chunked loss with the
    carried states held constant (``RecurrentNetwork.loss_truncated``)."""
    X, y = ragged_regression([7, 5, 5, 1], 2, 1, return_sequences, seed=3)
    model = RNNRegressor(3, cell=cell, num_layers=2, bptt_steps=bptt_steps,
                         return_sequences=return_sequences)
    result = check_gradient(model, X, y, random_state=5)
    assert result.max_error <= GRAD_RTOL, repr(result)


def test_dropout_gradient_with_fixed_masks():
    """With the dropout masks fixed (same seed), the gradient is exact."""
    rng = np.random.default_rng(0)
    network = RecurrentNetwork(2, 3, 1, cell="gru", num_layers=3, bidirectional=True,
                               dropout=0.4)
    params = network.init_params(rng, random_biases=True)
    batch = check_sequences([rng.normal(size=(L, 2)) for L in (4, 2, 3)], np.float64).pack()
    target = rng.normal(size=(batch.B, 1))

    def loss(w):
        return network.loss_grad(w, batch, target, rng=np.random.default_rng(42))[0]

    _, grad = network.loss_grad(params, batch, target, rng=np.random.default_rng(42))
    plain_loss, _ = network.loss_grad(params, batch, target)
    assert abs(loss(params) - plain_loss) > 1e-6  # the masks do change the loss
    numeric = np.empty_like(grad)
    w, e = params.copy(), 1e-5
    for i in range(w.size):
        w[i] = params[i] + e
        up = loss(w)
        w[i] = params[i] - e
        numeric[i] = (up - loss(w)) / (2 * e)
        w[i] = params[i]
    assert np.max(np.abs(grad - numeric)) / np.max(np.abs(numeric)) < 1e-7


# Token input: the embedding's row gather and scatter-add, in every layout
# (the bounds-checked and sanitized builds run this file).
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [[1], [3], [4, 4, 2, 1]])
def test_token_embedding(cell, bidirectional, lengths):
    V, E = 6, 3
    rng = np.random.default_rng(11)
    X = [rng.integers(0, V, size=n) for n in lengths]
    X[0][0] = 4                                     # the padding id, in a sequence
    y = rng.normal(size=(len(X), 2))
    model = RNNRegressor(4, cell=cell, num_layers=2, bidirectional=bidirectional,
                         vocab_size=V, embedding_dim=E, padding_idx=4)
    check = check_gradient(model, X, y)
    assert check.max_error <= GRAD_RTOL, check
    assert np.all(check.analytic["W_emb"][4] == 0)
    used = np.unique(np.concatenate(X))
    unused = np.setdiff1d(np.arange(V), used)
    assert np.all(check.analytic["W_emb"][unused] == 0)
    trained = np.setdiff1d(used, [4])
    assert (np.abs(check.analytic["W_emb"][trained]).max(axis=1) > 0).all()
