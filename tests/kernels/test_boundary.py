"""The compiled boundary holds against any Python caller.

Every Python-callable compiled entry point checks what it is given before a
kernel runs: the Stack its parameter layout (at construction) and every
buffer of a pass (through the buffer itself, not the object's attributes),
the cell kernels and BLAS wrappers their arguments, and every size against
what scipy's 32-bit BLAS takes. The cases that used to corrupt memory or
crash run in a child process, so that a regression fails one test instead
of ending the run.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import crnn
from crnn._network import RecurrentNetwork
from crnn._validation import check_sequences
from crnn.kernels import blas, elman, gru, lstm, optim, stack as stack_module
from crnn.kernels.stack import BLOCKS, Stack

BEYOND_BLAS = blas.BLAS_INT_MAX + 1


def batch_of(rng, lengths, I=3):
    return check_sequences([rng.normal(size=(L, I)) for L in lengths], np.float64).pack()


def stack_args(network):
    """The constructor arguments of ``network.stack``, as a dict."""
    slices = network.layout.slices
    offsets = [[slices[unit[name]].start if name in unit else 0 for name in BLOCKS]
               for unit in network.units]
    return dict(cell=network.cell.name, activation=network.cell.g, I=network.I,
                H=network.H, O=network.O, L=network.L, D=network.D,
                output_activation=network.g2,
                cross_entropy=network.loss_name == "cross_entropy",
                return_sequences=network.return_sequences,
                unit_offsets=np.array(offsets, dtype=np.intp),
                off_W_y=slices["W_y"].start, off_b_y=slices["b_y"].start,
                n_params=network.layout.size, dtype=network.dtype)


def build(args):
    a = dict(args)
    return Stack(a.pop("cell"), a.pop("activation"), a.pop("I"), a.pop("H"), a.pop("O"),
                 a.pop("L"), a.pop("D"), a.pop("output_activation"), a.pop("cross_entropy"),
                 a.pop("return_sequences"), a.pop("unit_offsets"), a.pop("off_W_y"),
                 a.pop("off_b_y"), a.pop("n_params"), a.pop("dtype"))


def in_child(code):
    """Run ``code`` in a fresh interpreter; its return code and output."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    return result.returncode, result.stdout + result.stderr


# --- the parameter layout ------------------------------------------------------

@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_the_layout_of_every_network_is_accepted(cell):
    network = RecurrentNetwork(3, 5, 2, cell=cell, num_layers=2, bidirectional=True)
    build(stack_args(network))                   # as the network builds it


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("change, message", [
    (lambda a: a["unit_offsets"].__setitem__((3, 0), a["n_params"] - 1),
     r"unit 3's W_ih \(\d+ elements at offset \d+\) does not lie inside"),
    (lambda a: a["unit_offsets"].__setitem__((0, 1), -1),
     r"unit 0's W_hh \(\d+ elements at offset -1\) does not lie inside"),
    (lambda a: a.__setitem__("off_b_y", a["off_b_y"] + 1), r"b_y .* does not lie inside"),
    (lambda a: a.__setitem__("n_params", a["n_params"] - 1), r"does not lie inside"),
    (lambda a: a.__setitem__("off_W_y", a["off_W_y"] - 1), r"overlaps"),
    (lambda a: a["unit_offsets"].__setitem__((1, 2), a["unit_offsets"][0, 2]),
     r"overlaps unit [01]'s b"),
])
def test_a_layout_outside_the_buffer_or_overlapping_is_refused(cell, change, message):
    args = stack_args(RecurrentNetwork(3, 5, 2, cell=cell, num_layers=2,
                                       bidirectional=True))
    change(args)
    with pytest.raises(ValueError, match=message):
        build(args)


def test_the_offsets_are_copied():
    """Changing the caller's offsets array after construction moves nothing."""
    rng = np.random.default_rng(0)
    network = RecurrentNetwork(3, 5, 2, cell="lstm")
    params = network.init_params(rng, random_biases=True)
    batch = batch_of(rng, [4, 2])
    args = stack_args(network)
    s = build(args)
    before = s.forward(params, batch.X, batch.batch_sizes)
    args["unit_offsets"][...] = 10**9
    np.testing.assert_array_equal(s.forward(params, batch.X, batch.batch_sizes), before)


def test_offsets_past_the_buffer_never_write_into_another_array():
    """The reported reproducer: a gradient buffer that is a slice of a larger
    array, with offsets that point past it, into its neighbour."""
    code, out = in_child("""
        import numpy as np
        from crnn._network import RecurrentNetwork
        from crnn.kernels.stack import Stack
        n = RecurrentNetwork(2, 3, 1, cell="elman")
        buf = np.zeros(300)
        params, grad, victim = np.ones(100), buf[:100], buf[200:]
        try:
            Stack("elman", n.cell.g, 2, 3, 1, 1, 1, "identity", False, False,
                  np.array([[200, 230, 240, 0]]), 250, 260, 100, np.float64)
        except ValueError as e:
            print("refused:", e)
        assert not victim.any()
    """)
    assert code == 0, out
    assert "refused: unit 0's W_ih (6 elements at offset 200) does not lie inside the " \
           "100 parameters" in out


# --- the buffers of a pass ---------------------------------------------------------

@pytest.fixture
def lstm_pass():
    rng = np.random.default_rng(1)
    network = RecurrentNetwork(3, 5, 2, cell="lstm", num_layers=2)
    params = network.init_params(rng, random_biases=True)
    batch = batch_of(rng, [4, 3, 1])
    return network.stack, params, batch, rng.normal(size=(3, 2))


class LyingSize(np.ndarray):
    """An array that claims another size and shape than its buffer's."""

    @property
    def size(self):
        return 10**6

    @property
    def shape(self):
        return (10**6,)


def test_a_buffer_is_checked_not_the_objects_attributes(lstm_pass):
    s, params, batch, target = lstm_pass
    liar = np.zeros(1).view(LyingSize)
    with pytest.raises(ValueError, match=r"params must have shape \(\d+,\); got \(1,\)"):
        s.output(liar, batch.X, batch.batch_sizes, np.empty((3, 2)))
    grad = np.zeros(3).view(LyingSize)
    with pytest.raises(ValueError, match=r"grad must have shape \(\d+,\); got \(3,\)"):
        s.loss_grad(params, batch.X, batch.batch_sizes, target, grad)


@pytest.mark.parametrize("argument, value, message", [
    ("params", [0.0] * 10, "params must be a float64 array; got list"),
    ("params", "abc", "params must be a float64 array; got str"),
    ("X", None, "X must be a float64 array; got NoneType"),
    ("X", np.zeros((8, 3, 1)), r"X must be a C-contiguous 2-d float64 array; got a 3-d"),
    ("X", np.zeros((3, 8)).T, r"got a 2-d float64 array, not C-contiguous"),
    ("batch_sizes", np.array([3, 3, 2], dtype=np.int32), r"1-d int64 array; got a 1-d int32"),
    ("batch_sizes", b"\x03\x03\x02", r"got a 1-d uint8 array"),
])
def test_buffers_of_the_wrong_kind_are_refused(lstm_pass, argument, value, message):
    s, params, batch, _ = lstm_pass
    args = dict(params=params, X=batch.X, batch_sizes=batch.batch_sizes)
    args[argument] = value
    with pytest.raises(ValueError, match=message):
        s.forward(args["params"], args["X"], args["batch_sizes"])


def test_what_a_pass_writes_must_be_writable(lstm_pass):
    s, params, batch, target = lstm_pass
    for name, array in (("Y", np.empty((3, 2))), ("finals", np.empty((2, 2, 3, 5))),
                        ("grad", np.zeros_like(params))):
        array.flags.writeable = False
        with pytest.raises(ValueError, match=f"{name} must be writable"):
            if name == "Y":
                s.output(params, batch.X, batch.batch_sizes, array)
            elif name == "finals":
                s.forward(params, batch.X, batch.batch_sizes, finals=array)
            else:
                s.loss_grad(params, batch.X, batch.batch_sizes, target, array)
    readonly = params.copy()
    readonly.flags.writeable = False                   # inputs may be read-only
    s.forward(readonly, batch.X, batch.batch_sizes)


def test_a_class_target_out_of_range_names_its_row():
    rng = np.random.default_rng(2)
    network = RecurrentNetwork(3, 4, 3, cell="gru", output_activation="softmax",
                               loss="cross_entropy")
    params = network.init_params(rng)
    batch = batch_of(rng, [3, 2])
    with pytest.raises(ValueError, match=r"lie in \[0, 3\); got -1 at row 1"):
        network.stack.loss(params, batch.X, batch.batch_sizes,
                           np.array([0, -1], dtype=np.intp))


def test_a_parameter_buffer_too_small_is_refused_in_every_pass():
    """The reported reproducer: H = 2000 and a one-element buffer read far
    out of bounds (SIGSEGV)."""
    code, out = in_child("""
        import numpy as np
        from crnn._network import RecurrentNetwork
        n = RecurrentNetwork(2, 2000, 1, cell="elman")
        X = np.ones((3, 2)); bs = np.array([1, 1, 1], dtype=np.intp)
        for call in (lambda p: n.stack.loss(p, X, bs, np.zeros((1, 1))),
                     lambda p: n.stack.output(p, X, bs, np.empty((1, 1))),
                     lambda p: n.stack.forward(p, X, bs)):
            try:
                call(np.ones(1))
            except ValueError as e:
                print("refused:", e)
    """)
    assert code == 0, out
    assert out.count("refused: params must have shape (4008001,); got (1,)") == 3, out


def test_required_arrays_are_required(lstm_pass):
    s, params, batch, target = lstm_pass
    with pytest.raises(ValueError, match="Y, the array for the outputs, is required"):
        s.output(params, batch.X, batch.batch_sizes, None)
    with pytest.raises(ValueError, match="grad, the array the gradient is added to"):
        s.loss_grad(params, batch.X, batch.batch_sizes, target, None)


# --- memory -------------------------------------------------------------------------

def test_a_workspace_beyond_the_memory_limit_leaves_the_stack_as_it_was(lstm_pass):
    """The limit is checked before the workspace grows; a refused (or failed)
    allocation keeps the previous workspace, and the next passes are exact."""
    s, params, batch, target = lstm_pass
    rng = np.random.default_rng(3)
    big = batch_of(rng, [400] * 50)
    grad = np.zeros_like(params)
    loss = s.loss_grad(params, batch.X, batch.batch_sizes, target, grad)
    held = s.workspace_nbytes
    need = s.workspace_size(400, big.N, 50) * 8
    assert need > held
    with crnn.config_context(memory_limit=need - 1):
        with pytest.raises(MemoryError, match="the workspace of this batch would need"):
            s.forward(params, big.X, big.batch_sizes)
        assert s.workspace_nbytes == held
        grad_after = np.zeros_like(params)
        assert s.loss_grad(params, batch.X, batch.batch_sizes, target, grad_after) == loss
        np.testing.assert_array_equal(grad_after, grad)
    with crnn.config_context(memory_limit=need):
        s.forward(params, big.X, big.batch_sizes)
    assert s.workspace_nbytes >= need


def test_a_failed_allocation_keeps_the_previous_workspace(lstm_pass, monkeypatch):
    s, params, batch, target = lstm_pass
    Y = np.empty((3, 2))
    s.output(params, batch.X, batch.batch_sizes, Y)
    before, held = Y.copy(), s.workspace_nbytes

    def out_of_memory(n, dtype):
        raise MemoryError("no memory")

    monkeypatch.setattr(stack_module, "aligned_empty", out_of_memory)
    big = batch_of(np.random.default_rng(4), [300] * 40)
    with pytest.raises(MemoryError, match="no memory"):
        s.forward(params, big.X, big.batch_sizes)
    assert s.workspace_nbytes == held
    Y[...] = 0
    s.output(params, batch.X, batch.batch_sizes, Y)
    np.testing.assert_array_equal(Y, before)


# --- sizes beyond scipy's 32-bit BLAS ------------------------------------------------

@pytest.fixture
def beyond_blas_rows(tmp_path):
    """A (2^31, 1) float64 array on a sparse file: 16 GiB of address space,
    nothing of it read or resident."""
    return np.memmap(tmp_path / "rows", dtype=np.float64, mode="w+",
                     shape=(BEYOND_BLAS, 1))


def test_stack_sizes_beyond_blas_are_refused(beyond_blas_rows):
    network = RecurrentNetwork(1, 2, 1, cell="elman")
    params = network.init_params(np.random.default_rng(0))
    bs = np.array([1], dtype=np.intp)
    with pytest.raises(ValueError, match=r"rows = 2147483648 is beyond the largest size "
                                         r"scipy's BLAS takes"):
        network.stack.forward(params, beyond_blas_rows, bs)
    args = stack_args(RecurrentNetwork(1, 2, 1, cell="lstm"))
    args.update(H=2**29)
    with pytest.raises(ValueError, match="gates = 2147483648 is beyond"):
        build(args)


def test_cell_kernel_sizes_beyond_blas_are_refused(beyond_blas_rows):
    X = beyond_blas_rows
    bs = np.full(1, 1, dtype=np.intp)
    H = 2
    with pytest.raises(ValueError, match="rows = 2147483650 is beyond"):
        elman.forward(X, bs, np.zeros((H, 1)), np.zeros((H, H)), np.zeros(H),
                      np.zeros((1, H)), np.zeros((1, H)), np.zeros((1, H)))


def test_blas_wrapper_sizes_beyond_blas_are_refused(beyond_blas_rows):
    A = beyond_blas_rows
    with pytest.raises(ValueError, match="M = 2147483648 is beyond"):
        blas.py_gemm(False, False, 1.0, A, np.zeros((1, 1)), 0.0, A)
    with pytest.raises(ValueError, match="n = 2147483648 is beyond"):
        blas.py_nrm2(A.reshape(-1))


# --- the other entry points -----------------------------------------------------------

@pytest.mark.parametrize("function", [elman.forward, elman.backward, lstm.forward,
                                      lstm.backward, gru.forward, gru.backward])
def test_cell_kernels_refuse_none_for_a_required_array(function):
    """None in any required array's place (every array but the optional
    dX) is refused by name, before any kernel runs (the float64 version:
    with None first, the fused function could not choose one)."""
    import inspect
    vectors = {"batch_sizes", "b", "b_hn", "db", "db_hn"}
    required = [name for name, p in inspect.signature(function).parameters.items()
                if p.default is inspect.Parameter.empty]
    arrays = {name: (np.ones(1, dtype=np.intp) if name == "batch_sizes" else
                     np.zeros(1) if name in vectors else np.zeros((1, 1)))
              for name in required}
    assert len(required) >= 8
    for name in required:
        args = {**arrays, name: None}
        if name == "dX":
            continue
        with pytest.raises(TypeError, match=f"Argument '{name}' must not be None"):
            function["double"](**args)


def test_cell_kernels_refuse_read_only_outputs():
    rng = np.random.default_rng(5)
    X, bs, H = rng.normal(size=(3, 2)), np.array([2, 1], dtype=np.intp), 3
    Hs = np.zeros((3, H))
    Hs.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        elman.forward(X, bs, np.zeros((H, 2)), np.zeros((H, H)), np.zeros(H),
                      np.zeros((2, H)), Hs, np.zeros((2, H)))


def test_optimizer_and_activation_entry_points_refuse_none():
    x = np.zeros(3)
    with pytest.raises(TypeError):
        optim.adam_step(x, None, x.copy(), x.copy(), 0.1, 0.9, 0.999, 1e-8)
    from crnn.kernels import activations
    with pytest.raises(TypeError):
        activations.apply("tanh", None, x)


def test_python_cannot_point_the_kernels_at_a_function():
    """The BLAS thread query is found by the blas module itself; there is no
    entry point that takes an address (one used to jump to any address)."""
    assert not hasattr(blas, "set_blas_thread_query")
    assert blas.blas_thread_count() is None or blas.blas_thread_count() >= 1
    code, out = in_child("""
        from crnn.kernels import blas
        for bad in ("auto ", None, 3):
            try:
                blas.set_packed_mode(bad)
            except (TypeError, ValueError) as e:
                print("refused:", type(e).__name__)
        for bad in (3, -2, True, 1.5):
            try:
                blas.set_packed_isa(bad)
            except ValueError as e:
                print("refused:", type(e).__name__)
    """)
    assert code == 0, out
    assert out.count("refused:") == 7, out
