"""dE/dS_t by BPTT (``gradient_flow``) against finite differences of a perturbed state.

The reference (``tests/reference.py: network_loss_ref``) runs the whole
network in NumPy, one sequence and one step at a time, and adds a
perturbation to one hidden state as soon as it is computed. The fourth-order
stencil of that loss over each of the state's H components is the numeric
gradient. Tolerance: ``max|g_bptt - g_fd| / max|g_fd|`` over every state of
a unit at most ``RTOL = 1e-7`` (float64; the stencil with step 1e-4 leaves
about 1e-11); each state's own norm agrees to 1e-6 relative wherever it is
above 1e-4 of the unit's largest.
"""
import numpy as np
import pytest

from crnn import GradientFlow, RNNClassifier, RNNRegressor, gradient_flow
from crnn._network import RecurrentNetwork
from crnn._validation import check_sequences, check_tokens
from tests.reference import network_loss_ref

pytestmark = [pytest.mark.usefixtures("recurrent_product"),
              # the estimators here train for an epoch or three only
              pytest.mark.filterwarnings("ignore::crnn.ConvergenceWarning")]

RTOL = 1e-7
EPSILON = 1e-4

# (cell, layers, directions, return_sequences, loss, lengths)
CASES = [
    ("elman", 1, 1, False, "squared_error", [4, 2, 3]),
    ("lstm", 1, 1, True, "cross_entropy", [3, 1]),
    ("gru", 1, 1, False, "squared_error", [1]),
    ("elman", 2, 2, True, "squared_error", [3, 1, 2]),
    ("lstm", 2, 2, False, "squared_error", [3, 3, 1]),
    ("gru", 2, 2, True, "cross_entropy", [2, 3, 1]),
    ("lstm", 1, 2, False, "cross_entropy", [1, 1]),
    ("gru", 2, 1, False, "cross_entropy", [4, 2]),
]


def _problem(cell, L, D, return_sequences, loss, lengths, seed, vocab_size=None,
             weighted=False):
    rng = np.random.default_rng(seed)
    I, H, O = 2, 3, 3
    ce = loss == "cross_entropy"
    network = RecurrentNetwork(
        I, H, O, cell=cell, num_layers=L, bidirectional=D == 2,
        output_activation="softmax" if ce else "identity", loss=loss,
        return_sequences=return_sequences, vocab_size=vocab_size)
    params = network.init_params(rng, random_biases=True)
    if vocab_size:
        seqs = [rng.integers(0, vocab_size, size=n) for n in lengths]
    else:
        seqs = [rng.normal(size=(n, I)) for n in lengths]
    if ce:
        targets = [rng.integers(0, O, size=n if return_sequences else None)
                   for n in lengths]
    else:
        targets = [rng.normal(size=(n, O) if return_sequences else O) for n in lengths]
    weights = None
    if weighted:
        weights = [rng.uniform(0.2, 2.0, size=n if return_sequences else None)
                   for n in lengths]
    return network, params, seqs, targets, weights


def _packed(network, seqs, targets, weights, return_sequences):
    if network.V:
        X = check_tokens(list(seqs), network.V)
    else:
        X = check_sequences(seqs, np.float64)
    batch = X.pack()
    if return_sequences:
        per_step = check_sequences([np.asarray(t, dtype=float).reshape(len(s), -1)
                                    for s, t in zip(seqs, targets)], np.float64)
        target = batch.pack_like(per_step)
        if network.loss_name == "cross_entropy":
            target = target[:, 0].astype(np.intp)
        w = None if weights is None else batch.pack_like(
            check_sequences([np.asarray(w)[:, None] for w in weights], np.float64))[:, 0]
    else:
        target = np.array(targets)[batch.sources]
        w = None if weights is None else np.array(weights)[batch.sources]
    return batch, target, w


def _numeric(network, params, seqs, targets, weights, l, d, j, t):
    """The fourth-order stencil of the reference loss over h_t's components."""
    blocks = {name: np.array(block) for name, block in network.layout.views(params).items()}
    kwargs = dict(loss=network.loss_name, return_sequences=network.return_sequences,
                  output_activation=network.g2, weights=weights)
    g = np.empty(network.H)
    for m in range(network.H):
        values = []
        for step in (2, 1, -1, -2):
            delta = np.zeros(network.H)
            delta[m] = step * EPSILON
            values.append(network_loss_ref(blocks, network.cell.name, network.L,
                                           network.D, seqs, targets,
                                           perturb=(l, d, j, t, delta), **kwargs))
        g[m] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * EPSILON)
    return g


def _check_against_fd(network, params, seqs, targets, weights):
    batch, target, w = _packed(network, seqs, targets, weights, network.return_sequences)
    loss, dS = network.state_gradients(params, batch, target, weights=w)
    blocks = {name: np.array(block) for name, block in network.layout.views(params).items()}
    ref_loss = network_loss_ref(blocks, network.cell.name, network.L, network.D, seqs,
                                targets, loss=network.loss_name,
                                return_sequences=network.return_sequences,
                                output_activation=network.g2, weights=weights)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    rows_j = batch.order[batch._rows[0]]      # the user's sequence of each packed row
    for l in range(network.L):
        for d in range(network.D):
            analytic = dS[l * network.D + d]
            numeric = np.array([_numeric(network, params, seqs, targets, weights, l, d,
                                         int(j), int(t))
                                for j, t in zip(rows_j, batch.src_t)])
            scale = np.max(np.abs(numeric))
            assert scale > 0
            assert np.max(np.abs(analytic - numeric)) <= RTOL * scale, (l, d)
            norms_a, norms_n = (np.linalg.norm(a, axis=1) for a in (analytic, numeric))
            big = norms_n > 1e-4 * norms_n.max()
            np.testing.assert_allclose(norms_a[big], norms_n[big], rtol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[:5])))
def test_state_gradients_equal_finite_differences(case):
    cell, L, D, return_sequences, loss, lengths = case
    network, params, seqs, targets, weights = _problem(*case, seed=len(lengths) + L)
    _check_against_fd(network, params, seqs, targets, weights)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_state_gradients_weighted(cell):
    case = (cell, 2, 2, True, "squared_error", [3, 2, 1])
    network, params, seqs, targets, weights = _problem(*case, seed=7, weighted=True)
    _check_against_fd(network, params, seqs, targets, weights)


def test_state_gradients_token_input():
    case = ("gru", 1, 2, False, "cross_entropy", [3, 2])
    network, params, seqs, targets, weights = _problem(*case, seed=3, vocab_size=5)
    _check_against_fd(network, params, seqs, targets, weights)


def test_state_gradients_leave_the_parameter_gradient_unchanged():
    # recording dE/dh_t is a side output: the BPTT gradient is bit for bit the same
    network, params, seqs, targets, _ = _problem("lstm", 2, 2, False, "squared_error",
                                                 [3, 1, 2], seed=1)
    batch, target, _ = _packed(network, seqs, targets, None, False)
    plain = network.layout.zeros(network.dtype)
    network.stack.loss_grad(params, batch.X, batch.batch_sizes, target, plain)
    recorded = network.layout.zeros(network.dtype)
    dS = np.zeros((4, batch.N, network.H))
    network.stack.loss_grad(params, batch.X, batch.batch_sizes, target, recorded,
                            state_grads=dS)
    assert np.array_equal(plain, recorded)
    assert np.count_nonzero(dS) == dS.size


def test_state_gradients_buffer_is_checked():
    network, params, seqs, targets, _ = _problem("elman", 1, 2, False, "squared_error",
                                                 [2, 2], seed=0)
    batch, target, _ = _packed(network, seqs, targets, None, False)
    grad = network.layout.zeros(network.dtype)
    read_only = np.zeros((2, batch.N, network.H))
    read_only.flags.writeable = False
    for bad in (np.zeros((1, batch.N, network.H)), np.zeros((2, batch.N + 1, network.H)),
                np.zeros((2, batch.N, network.H), np.float32),
                np.zeros((2, batch.N, 2 * network.H))[:, :, ::2], read_only):
        with pytest.raises(ValueError, match="state gradients"):
            network.stack.loss_grad(params, batch.X, batch.batch_sizes, target, grad,
                                    state_grads=bad)


# --- the estimators' gradient_flow ------------------------------------------------------

def test_gradient_flow_matches_the_network_and_pads_with_nan():
    rng = np.random.default_rng(0)
    lengths = [5, 2, 4]
    X = [rng.normal(size=(n, 2)) for n in lengths]
    y = rng.integers(0, 3, size=3)
    model = RNNClassifier(hidden_size=4, cell="gru", num_layers=2, bidirectional=True,
                          max_iter=3, random_state=0).fit(X, y)
    flow = model.gradient_flow(X, y)
    assert isinstance(flow, GradientFlow)
    assert flow.gradients.shape == (2, 2, 3, 5, 4)
    assert flow.norms.shape == flow.gradients.shape[:-1]
    assert flow.mean.shape == (2, 2, 5)
    np.testing.assert_array_equal(flow.lengths, lengths)
    for i, n in enumerate(lengths):
        assert np.isfinite(flow.norms[:, :, i, :n]).all()
        assert np.isnan(flow.gradients[:, :, i, n:]).all()
    # the same, sequence by sequence in the user's order, from the padded form
    padded = np.zeros((3, 5, 2))
    for i, x in enumerate(X):
        padded[i, :len(x)] = x
    again = gradient_flow(model, padded, y, lengths=lengths)
    np.testing.assert_array_equal(again.gradients, flow.gradients)
    # each sequence on its own: its gradients times its share of the mean loss
    for i in range(3):
        alone = model.gradient_flow([X[i]], y[i:i + 1])
        n = lengths[i]
        np.testing.assert_allclose(alone.gradients[:, :, 0, :n] / 3,
                                   flow.gradients[:, :, i, :n], rtol=1e-12, atol=1e-300)
    # the mean at a step is over the sequences running there
    np.testing.assert_allclose(flow.mean[..., 4], flow.norms[:, :, 0, 4], rtol=1e-15)
    np.testing.assert_allclose(flow.mean[..., 3],
                               flow.norms[:, :, [0, 2], 3].mean(axis=-1), rtol=1e-14)
    assert flow.loss == pytest.approx(model._network().loss(
        model.params_.astype(np.float64), check_sequences(X, np.float64).pack(),
        model._encode(y, model.classes_)[check_sequences(X, np.float64).pack().sources]), rel=1e-12)


def test_gradient_flow_of_an_unfitted_model_is_at_fits_initial_weights():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(6, 30, 2)), rng.normal(size=6)
    model = RNNRegressor(hidden_size=8, random_state=3, max_iter=1, solver="sgd",
                         momentum=0.0, learning_rate=1e-12, dtype=np.float64)
    before = model.gradient_flow(X, y)
    assert not hasattr(model, "params_")
    # one epoch of steps of 1e-12 moves the weights by about 1e-12 relative
    at_start = model.fit(X, y).gradient_flow(X, y)
    scale = np.nanmax(np.abs(before.gradients))
    np.testing.assert_allclose(at_start.gradients, before.gradients, rtol=0,
                               atol=1e-9 * scale)
    other = RNNRegressor(hidden_size=8, random_state=4).gradient_flow(X, y)
    assert not np.allclose(other.gradients, before.gradients, rtol=1e-3)


def test_gradient_flow_vanishes_for_a_contracting_elman_rnn():
    # W_hh scaled to spectral norm 0.5: ||dE/dS_t|| falls at least 2x per step back
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(4, 20, 1)), rng.normal(size=4)
    model = RNNRegressor(hidden_size=6, max_iter=1, random_state=0).fit(X, y)
    W = model.weights_["W_hh_l0"]
    W *= 0.5 / np.linalg.norm(W, 2)
    mean = model.gradient_flow(X, y).mean[0, 0]
    assert (mean[:-1] <= 0.5 * mean[1:] * (1 + 1e-12)).all()
    assert mean[0] < 1e-5 * mean[-1]


def test_gradient_flow_with_sample_weight_and_errors():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(3, 4, 2)), rng.normal(size=3)
    model = RNNRegressor(hidden_size=3, cell="lstm", max_iter=2, random_state=0).fit(X, y)
    w = np.array([1.0, 0.0, 2.0])
    flow = model.gradient_flow(X, y, sample_weight=w)
    assert np.count_nonzero(flow.gradients[0, 0, 1]) == 0
    assert np.all(np.isfinite(flow.gradients))
    with pytest.raises(ValueError, match="X and sample_weight have different numbers"):
        model.gradient_flow(X, y, sample_weight=[1.0, 2.0])
    with pytest.raises(ValueError):
        model.gradient_flow(X[:, :, :1], y)
    assert "layer 0 forward" in repr(flow)


def test_gradient_flow_of_a_token_model():
    rng = np.random.default_rng(5)
    ids = [rng.integers(0, 7, size=n) for n in (6, 3)]
    labels = np.array([0, 1])
    model = RNNClassifier(hidden_size=4, cell="lstm", vocab_size=7, embedding_dim=3,
                          random_state=0)
    flow = model.gradient_flow(ids, labels)
    assert flow.gradients.shape == (1, 1, 2, 6, 4)
    assert np.isfinite(flow.norms[0, 0, 1, :3]).all() and np.isnan(flow.norms[0, 0, 1, 3:]).all()
    fitted = model.set_params(max_iter=2).fit(ids, labels).gradient_flow(ids, labels)
    assert not np.allclose(fitted.norms[0, 0, 0], flow.norms[0, 0, 0])
