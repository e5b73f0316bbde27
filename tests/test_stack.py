"""The compiled network driver, ``crnn.kernels.stack.Stack``.

* Its workspace is reused from one batch to the next: a network that has run
  batches of other shapes (larger and smaller ``N`` and ``B``, other lengths)
  returns bit for bit what a fresh network returns.
* Its entry points reject what they cannot run with a ValueError that names
  what was expected, before any kernel runs.
* Its kernels flush subnormal numbers to zero, and leave the caller's
  floating-point state as it was.
"""
import platform

import numpy as np
import pytest

from crnn._network import RecurrentNetwork
from crnn._validation import check_sequences

# Every test runs with each recurrent product (BLAS, and the packed kernels
# this CPU has): see conftest.py.
pytestmark = pytest.mark.usefixtures("recurrent_product")

CELLS = ["elman", "lstm", "gru"]


def batch_of(rng, lengths, I=3):
    return check_sequences([rng.normal(size=(L, I)) for L in lengths], np.float64).pack()


def make(cell, **kw):
    kw = {"num_layers": 2, "bidirectional": True, **kw}
    network = RecurrentNetwork(3, 5, 2, cell=cell, **kw)
    params = network.init_params(np.random.default_rng(1), random_biases=True)
    return network, params


def run(network, params, batch, rng):
    """loss, gradient, outputs and final states of one batch."""
    rows = batch.N if network.return_sequences else batch.B
    target = rng.normal(size=(rows, network.O))
    loss, grad = network.loss_grad(params, batch, target)
    Y, finals = network.output(params, batch)
    return loss, grad.copy(), Y, finals


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_workspace_reuse_is_exact(cell, return_sequences):
    """Batches of growing and shrinking shapes through one network equal the
    same batches through a fresh network each, bit for bit."""
    rng = np.random.default_rng(0)
    shapes = [[4, 2, 1], [9, 9, 7, 3, 1, 1], [1], [5, 5], [12, 3], [2, 2, 2, 2, 2, 2, 2]]
    batches = [batch_of(rng, lengths) for lengths in shapes]
    shared, params = make(cell, return_sequences=return_sequences)
    for k, batch in enumerate(batches):
        fresh, _ = make(cell, return_sequences=return_sequences)
        got = run(shared, params, batch, np.random.default_rng(k))
        want = run(fresh, params, batch, np.random.default_rng(k))
        assert got[0] == want[0]
        for a, b in zip(got[1:], want[1:]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_loss_grad_keeps_final_states(cell):
    """After loss_grad the final states are still those of the forward pass
    (truncated BPTT carries them to the next chunk)."""
    rng = np.random.default_rng(2)
    network, params = make(cell)
    batch = batch_of(rng, [6, 4, 4])
    _, finals = network.output(params, batch)
    network.loss_grad(params, batch, rng.normal(size=(3, 2)))
    np.testing.assert_array_equal(network.stack.final_states(), finals)


@pytest.fixture
def setup():
    rng = np.random.default_rng(3)
    network, params = make("lstm")
    batch = batch_of(rng, [4, 3, 1])
    target = rng.normal(size=(3, 2))
    return network, params, batch, target


def test_rejects_wrong_parameter_size_and_dtype(setup):
    network, params, batch, target = setup
    stack = network.stack
    with pytest.raises(ValueError, match=r"params has 3 elements; expected \d+"):
        stack.forward(params[:3], batch.X, batch.batch_sizes)
    with pytest.raises(ValueError, match="params and X must be float64; got float32"):
        stack.forward(params.astype(np.float32), batch.X, batch.batch_sizes)
    with pytest.raises(ValueError, match=r"grad has 1 elements; expected \d+"):
        stack.loss_grad(params, batch.X, batch.batch_sizes, target, np.zeros(1))


def test_rejects_inconsistent_batch(setup):
    network, params, batch, _ = setup
    stack = network.stack
    with pytest.raises(ValueError, match=r"X must be \(N, 3\); got \(8, 2\)"):
        stack.forward(params, batch.X[:, :2].copy(), batch.batch_sizes)
    with pytest.raises(ValueError, match="batch_sizes sums to 8, but the packed input has 7"):
        stack.forward(params, batch.X[:7].copy(), batch.batch_sizes)
    with pytest.raises(ValueError, match="non-increasing"):
        stack.forward(params, batch.X, batch.batch_sizes[::-1].copy())
    with pytest.raises(ValueError, match="batch_sizes is empty"):
        stack.forward(params, batch.X[:0].copy(), batch.batch_sizes[:0].copy())


def test_rejects_wrong_states_masks_and_targets(setup):
    network, params, batch, target = setup
    stack = network.stack
    with pytest.raises(ValueError, match=r"initial states must be \(2, 4, 3, 5\)"):
        stack.forward(params, batch.X, batch.batch_sizes, initial=np.zeros((2, 4, 2, 5)))
    with pytest.raises(ValueError, match=r"dropout masks must be \(1, 8, 10\)"):
        stack.forward(params, batch.X, batch.batch_sizes, masks=np.ones((1, 8, 5)))
    grad = np.zeros_like(params)
    with pytest.raises(ValueError, match=r"targets must be float64 of shape \(3, 2\)"):
        stack.loss_grad(params, batch.X, batch.batch_sizes, target[:2].copy(), grad)
    with pytest.raises(ValueError, match=r"row0 must be in \[0, 3\]; got 4"):
        stack.loss_grad(params, batch.X, batch.batch_sizes, target, grad, row0=4)


def test_rejects_class_targets_out_of_range():
    rng = np.random.default_rng(4)
    network = RecurrentNetwork(3, 5, 4, cell="gru", output_activation="softmax",
                               loss="cross_entropy")
    params = network.init_params(rng)
    batch = batch_of(rng, [3, 2])
    grad = np.zeros_like(params)
    with pytest.raises(ValueError, match=r"class targets must lie in \[0, 4\)"):
        network.stack.loss_grad(params, batch.X, batch.batch_sizes,
                                np.array([0, 4], dtype=np.intp), grad)
    with pytest.raises(ValueError, match=r"class targets must be intp of shape \(2,\)"):
        network.stack.loss_grad(params, batch.X, batch.batch_sizes,
                                np.array([0, 1], dtype=np.int32), grad)


def test_reading_before_a_forward_pass_is_an_error(setup):
    network, params, batch, target = setup
    fresh, _ = make("lstm")
    with pytest.raises(RuntimeError, match="call forward first"):
        fresh.stack.loss(params, target)
    with pytest.raises(RuntimeError, match="call forward first"):
        fresh.stack.final_states()
    # loss_grad consumes the forward pass: its gate activations are gone.
    fresh.stack.loss_grad(params, batch.X, batch.batch_sizes, target, np.zeros_like(params))
    with pytest.raises(RuntimeError, match="call forward first"):
        fresh.stack.output(params, np.empty((3, 2)))


def test_a_network_pickles_without_its_workspace(setup):
    import pickle

    network, params, batch, target = setup
    network.loss(params, batch, target)
    clone = pickle.loads(pickle.dumps(network))
    assert clone.loss(params, batch, target) == network.loss(params, batch, target)


FLUSHES = platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")


@pytest.mark.skipif(not FLUSHES, reason="subnormals are flushed on x86-64 and AArch64 only")
def test_subnormal_states_are_flushed_to_zero():
    """Inside the kernels a float32 state of 1e-40 (subnormal) becomes 0."""
    network = RecurrentNetwork(1, 1, 1, cell="elman", activation="identity",
                               dtype=np.float32)
    params = network.layout.zeros(np.float32)
    P = network.views(params)[0]
    P["W_ih_l0"][...] = 1e-20
    P["W_y"][...] = 1
    batch = check_sequences(np.full((1, 1, 1), 1e-20, np.float32), np.float32).pack()
    assert np.float32(1e-20) * np.float32(1e-20) != 0     # numpy keeps the subnormal
    _, finals = network.output(params, batch)
    assert finals[0, 0, 0, 0] == 0


def test_callers_floating_point_state_is_restored():
    """After crnn returns, this thread computes subnormals again."""
    rng = np.random.default_rng(5)
    network = RecurrentNetwork(3, 4, 1, cell="lstm", dtype=np.float32)
    params = network.init_params(rng)
    packed = check_sequences([rng.normal(size=(5, 3)), rng.normal(size=(2, 3))],
                             np.float32).pack()
    network.loss_grad(params, packed, rng.normal(size=(2, 1)).astype(np.float32))
    network.output(params, packed)
    tiny = np.array([1e-30], dtype=np.float32) * np.float32(1e-10)
    assert tiny[0] != 0 and tiny[0] < np.finfo(np.float32).tiny


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 16, 1000, 100_003])
def test_workspace_blocks_start_on_a_cache_line(dtype, n):
    from crnn.kernels.stack import aligned_empty

    a = aligned_empty(n, dtype)
    assert a.shape == (n,) and a.dtype == dtype
    assert a.ctypes.data % 64 == 0
    a[:] = 1                     # the whole view is writable memory
    assert a.sum() == n
