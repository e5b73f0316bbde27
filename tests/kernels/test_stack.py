"""The compiled network driver, ``crnn.kernels.stack.Stack``.

* Every call is one self-contained pass; its workspace is scratch, reused
  from one batch to the next: a network that has run batches of other shapes
  (larger and smaller ``N`` and ``B``, other lengths) returns bit for bit
  what a fresh network returns.
* A Stack runs one pass at a time: a concurrent call from another thread is
  refused with a RuntimeError, never run over the same workspace.
* The cell registry (``crnn._cells``) and the compiled kernels agree: gate
  and state counts and the parameter blocks are those the kernels check.
* Its entry points reject what they cannot run with a ValueError that names
  what was expected, before any kernel runs.
* Its kernels flush subnormal numbers to zero, and leave the caller's
  floating-point state as it was.
* ``output_dense`` (predict's short path) gives the bits of ``output`` on
  the packed batch of the same sequences, and runs nothing (None) for any
  input it does not take, leaving it to the general path.
"""
import platform
import threading

import numpy as np
import pytest

from crnn import _cells
from crnn._network import RecurrentNetwork
from crnn.kernels import elman, gru, lstm, stack as stack_module
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
def test_every_pass_gives_the_same_final_states(cell):
    """forward, output, loss and loss_grad each return or write the final
    states of their own pass (truncated BPTT carries loss_grad's to the next
    chunk), whatever ran before on the same Stack."""
    rng = np.random.default_rng(2)
    network, params = make(cell)
    batch, other = batch_of(rng, [6, 4, 4]), batch_of(rng, [9, 2])
    target = rng.normal(size=(3, 2))
    stack = network.stack
    args = (batch.X, batch.batch_sizes)
    _, finals = network.output(params, batch)
    assert finals.shape == network.state_shape(3) == (network.cell.n_states, 4, 3, 5)
    network.output(params, other)
    np.testing.assert_array_equal(network.forward(params, batch), finals)
    for call in (lambda out: stack.loss(params, *args, target, finals=out),
                 lambda out: stack.loss_grad(params, *args, target, np.zeros_like(params),
                                             finals=out),
                 lambda out: stack.forward(params, *args, finals=out),
                 lambda out: stack.output(params, *args, np.empty((3, 2)), finals=out)):
        network.loss_grad(params, other, rng.normal(size=(2, 2)))
        out = np.full_like(finals, np.nan)
        call(out)
        np.testing.assert_array_equal(out, finals)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_output_dense_is_output_of_the_packed_batch(cell, dtype):
    """``output_dense`` of ``(B, T, I)`` batch-first sequences (B = 1: no
    transpose; B > 1: made time-major in the workspace) equals ``output`` of
    their packed batch bit for bit, on a Stack that has run other batches,
    and leaves the Stack's later passes exact."""
    rng = np.random.default_rng(4)
    network, params = make(cell, dtype=np.dtype(dtype))
    params = params.astype(dtype)
    for B, T in [(1, 1), (1, 7), (4, 1), (5, 6), (2, 9)]:
        X = rng.normal(size=(B, T, 3)).astype(dtype)
        batch = check_sequences(list(X), np.dtype(dtype)).pack()
        assert np.array_equal(batch.sources, np.arange(B))      # one length: in order
        want, _ = make(cell, dtype=np.dtype(dtype))[0].output(params, batch)
        got = network.stack.output_dense(params, X, 64, 1 << 22)
        assert got.shape == (B, 2) and got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        other = check_sequences([rng.normal(size=(n, 3)).astype(dtype) for n in (3, 2)],
                                np.dtype(dtype)).pack()
        np.testing.assert_array_equal(network.output(params, other)[0],
                                      make(cell, dtype=np.dtype(dtype))[0].output(params,
                                                                                  other)[0])


class Subclass(np.ndarray):
    pass


def test_output_dense_leaves_what_it_does_not_take_to_the_general_path():
    """None, before any kernel runs, for another dtype, order, rank, width,
    an empty batch or sequence, more sequences or gate activations than
    allowed, a non-finite value, an ndarray subclass, a network that scores
    every step or reads token ids; a wrong parameter buffer is refused."""
    rng = np.random.default_rng(5)
    network, params = make("lstm")
    stack = network.stack
    X = rng.normal(size=(3, 4, 3))
    assert stack.output_dense(params, X, 64, 1 << 22) is not None
    bad = X.copy()
    bad[2, 3, 1] = np.nan
    gates = 3 * 4 * 2 * 2 * 4 * 5                  # B T L D 4H
    for Z, max_B, max_gates in [(X.astype(np.float32), 64, 1 << 22),
                                (np.asfortranarray(X), 64, 1 << 22),
                                (X[:, ::2], 64, 1 << 22), (X[0], 64, 1 << 22),
                                (X[..., :2].copy(), 64, 1 << 22),
                                (X[:0], 64, 1 << 22), (X[:, :0], 64, 1 << 22),
                                (X, 2, 1 << 22), (X, 64, gates - 1), (bad, 64, 1 << 22),
                                (X.view(Subclass), 64, 1 << 22), (X.tolist(), 64, 1 << 22)]:
        assert stack.output_dense(params, Z, max_B, max_gates) is None
    assert stack.output_dense(params, X, 64, gates) is not None
    assert stack.output_dense(params, X[:1], 64, 1) is not None     # one sequence: any size
    with pytest.raises(ValueError, match="params must have shape"):
        stack.output_dense(params[:-1], X, 64, 1 << 22)
    with pytest.raises(ValueError, match="params must be a C-contiguous"):
        stack.output_dense(params.astype(np.float32), X, 64, 1 << 22)
    seq, seq_params = make("lstm", return_sequences=True)
    assert seq.stack.output_dense(seq_params, X, 64, 1 << 22) is None
    tokens = RecurrentNetwork(3, 5, 2, cell="gru", vocab_size=7)
    ids = rng.integers(0, 7, size=(2, 4, 3)).astype(np.float64)
    assert tokens.stack.output_dense(tokens.init_params(rng), ids, 64, 1 << 22) is None


def test_loss_after_another_batch_is_that_batchs_loss(setup):
    """No pass reads what an earlier one left in the workspace."""
    network, params, batch, target = setup
    rng = np.random.default_rng(7)
    other = batch_of(rng, [8, 8, 8, 8])
    expected = network.loss(params, batch, target)
    network.loss_grad(params, other, rng.normal(size=(4, 2)))
    network.output(params, other)
    assert network.loss(params, batch, target) == expected


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
    with pytest.raises(ValueError, match=r"params must have shape \(\d+,\); got \(3,\)"):
        stack.forward(params[:3], batch.X, batch.batch_sizes)
    with pytest.raises(ValueError, match="params must be a C-contiguous 1-d float64 array; got a 1-d float32 array"):
        stack.forward(params.astype(np.float32), batch.X, batch.batch_sizes)
    with pytest.raises(ValueError, match=r"grad must have shape \(\d+,\); got \(1,\)"):
        stack.loss_grad(params, batch.X, batch.batch_sizes, target, np.zeros(1))


def test_rejects_wrong_outputs(setup):
    network, params, batch, target = setup
    stack = network.stack
    args = (params, batch.X, batch.batch_sizes)
    with pytest.raises(ValueError, match=r"Y must have shape \(3, 2\); got \(3, 3\)"):
        stack.output(*args, np.empty((3, 3)))
    with pytest.raises(ValueError, match=r"finals must have shape \(2, 4, 3, 5\); "
                                         r"got \(2, 4, 3, 4\)"):
        stack.loss(*args, target, finals=np.empty((2, 4, 3, 4)))
    with pytest.raises(ValueError, match="finals must be a C-contiguous"):
        stack.forward(*args, finals=np.empty((2, 4, 5, 3)).transpose(0, 1, 3, 2))


def test_rejects_inconsistent_batch(setup):
    network, params, batch, _ = setup
    stack = network.stack
    with pytest.raises(ValueError, match=r"X must have shape \(any, 3\); got \(8, 2\)"):
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
    with pytest.raises(ValueError, match=r"initial states must have shape \(2, 4, 3, 5\)"):
        stack.forward(params, batch.X, batch.batch_sizes, initial=np.zeros((2, 4, 2, 5)))
    with pytest.raises(ValueError, match=r"dropout masks must have shape \(1, 8, 10\)"):
        stack.forward(params, batch.X, batch.batch_sizes, masks=np.ones((1, 8, 5)))
    grad = np.zeros_like(params)
    with pytest.raises(ValueError, match=r"targets must have shape \(3, 2\); got \(2, 2\)"):
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
    with pytest.raises(ValueError, match=r"class targets must be a C-contiguous 1-d int64 array; got a 1-d int32"):
        network.stack.loss_grad(params, batch.X, batch.batch_sizes,
                                np.array([0, 1], dtype=np.int32), grad)


def test_a_stack_refuses_a_concurrent_pass():
    """While one thread's pass runs on a Stack, a call from another thread
    raises RuntimeError; every pass that does run gives the sequential
    result, and the Stack serves passes again afterwards."""
    rng = np.random.default_rng(6)
    network = RecurrentNetwork(3, 64, 2, cell="lstm", num_layers=2)
    params = network.init_params(rng)
    long = batch_of(rng, [600] * 8)                 # a pass of a good fraction of a second
    short = batch_of(rng, [3, 2])
    long_target = rng.normal(size=(8, 2))
    expected_long = network.loss(params, long, long_target)
    expected_short, _ = network.output(params, short)
    results, refused = [], []

    def train():
        try:
            results.append(network.loss(params, long, long_target))
        except RuntimeError as error:
            refused.append(error)

    worker = threading.Thread(target=train)
    worker.start()
    while worker.is_alive():
        try:
            Y, _ = network.output(params, short)
            np.testing.assert_array_equal(Y, expected_short)
        except RuntimeError as error:
            refused.append(error)
    worker.join()
    assert refused, "no call overlapped the long pass"
    assert all("running a pass in another thread" in str(e) for e in refused)
    assert results in ([], [expected_long])
    assert network.loss(params, long, long_target) == expected_long


def test_registry_matches_the_kernels():
    """The registry's gate and state counts, blocks and shapes are those of
    the kernels: a network's parameter blocks have the shapes the cell
    kernels check, its states the shape the Stack checks."""
    assert _cells.CELLS == tuple(stack_module.CELLS) == ("elman", "lstm", "gru")
    assert "gru" in _cells.CELLS and "rnn" not in _cells.CELLS
    kernels = {"elman": elman, "lstm": lstm, "gru": gru}
    for name in _cells.CELLS:
        spec = _cells.cell_type(name)
        kernel = stack_module.CELLS[name]
        assert (spec.code, spec.n_gates, spec.n_states) == kernel[:3]
        assert spec.blocks == kernel.blocks == stack_module.BLOCKS[:len(spec.blocks)]
        assert len(spec.gates) == spec.n_gates and spec.states[0] == "h"
        assert spec.torch_class == {"elman": "nn.RNN", "lstm": "nn.LSTM",
                                    "gru": "nn.GRU"}[name]
        assert _cells.cell_by_gates(spec.n_gates) is spec
        network = RecurrentNetwork(3, 4, 1, cell=name, bidirectional=True)
        assert (network.cell.name, network.cell.n_gates, network.cell.n_states) == (
            name, spec.n_gates, spec.n_states)
        assert network.state_shape(2) == (spec.n_states, 2, 2, 4)
        P = network.unit_views(network.init_params(np.random.default_rng(0)), 0)
        assert tuple(P) == spec.blocks
        # The cell's kernel accepts exactly these shapes (and refuses others).
        N, B, H = 3, 2, 4
        bs = np.array([2, 1], dtype=np.intp)
        X, h0 = np.zeros((N, 3)), np.zeros((B, H))
        G = spec.n_gates * H
        Hs, h_n = np.empty((N, H)), np.empty((B, H))
        if name == "elman":
            call = lambda W_ih: elman.forward(X, bs, W_ih, P["W_hh"], P["b"], h0, Hs, h_n)
        elif name == "lstm":
            call = lambda W_ih: lstm.forward(X, bs, W_ih, P["W_hh"], P["b"], h0, h0,
                                             np.empty((N, G)), Hs, np.empty((N, H)), h_n,
                                             np.empty((B, H)))
        else:
            call = lambda W_ih: gru.forward(X, bs, W_ih, P["W_hh"], P["b"], P["b_hn"], h0,
                                            np.empty((N, G)), np.empty((N, H)), Hs, h_n)
        call(np.ascontiguousarray(P["W_ih"]))
        with pytest.raises(ValueError, match="W_ih must have shape"):
            call(np.zeros((G + H, 3)))
    with pytest.raises(ValueError, match=r"cell must be one of \('elman', 'lstm', 'gru'\)"):
        _cells.make_cell("rnn")


def test_keras_gate_order_comes_from_the_registry():
    gru_cell = _cells.cell_type("gru")
    H = 2
    # Keras' (z, r, h) columns -> crnn's (r, z, n)
    np.testing.assert_array_equal(gru_cell.keras_columns(H), [2, 3, 0, 1, 4, 5])
    assert _cells.cell_type("lstm").keras_gates == _cells.cell_type("lstm").gates
    assert _cells.cell_type("elman").keras_layer is None


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
