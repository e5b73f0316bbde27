"""When the networks use the packed per-step product, and that it agrees with BLAS.

The kernel tests run every cell on small shapes with the packed kernel
forced on (``conftest.recurrent_product``). Here networks large enough for
the default mode to choose it: layers whose per-step products exceed 10^6
multiply-adds, with scipy's BLAS limited to one thread. Two bidirectional
layers, ragged lengths, H = 170 (so that the last 32-column panel is partial
and the backward products run over several 128-row blocks of a panel).

* In the default mode with one BLAS thread, a training step equals the step
  with the packed product forced on, bit for bit, and differs from the BLAS
  step only by rounding: relative ``RTOL[dtype]`` on the loss, and every
  gradient entry within ``RTOL[dtype] * max|gradient|`` (sums of 170 to 680
  terms, in another order).
* In float64 with a W_hh of more than 4 MiB (H = 512 to 740, one layer), or
  with two BLAS threads, the default mode equals the BLAS path bit for bit,
  but for the LSTM's and the GRU's forward passes, which run the fused step
  (fused.h) at every size.
"""
import numpy as np
import pytest

from crnn._network import RecurrentNetwork
from crnn._validation import check_sequences
from crnn.kernels import blas

threadpoolctl = pytest.importorskip("threadpoolctl")

RTOL = {np.float32: 2e-4, np.float64: 1e-11}
LENGTHS = [9, 9, 7, 4, 4, 1] * 6     # B = 36; ragged, with ties
CELLS = ["elman", "lstm", "gru"]
GATES = {"elman": 1, "lstm": 4, "gru": 3}
H = 170

pytestmark = pytest.mark.skipif(
    blas.packed_isa() == 0 or blas.blas_thread_count() is None,
    reason="no packed kernel on this CPU, or no BLAS thread count")


def step(cell, dtype, mode, hidden=H, num_layers=2):
    """Loss and gradient of one training step under packed mode ``mode``."""
    rng = np.random.default_rng(3)
    network = RecurrentNetwork(20, hidden, 2, cell=cell, num_layers=num_layers,
                               bidirectional=num_layers > 1, dtype=np.dtype(dtype))
    params = network.init_params(rng, random_biases=True)
    seqs = [rng.normal(size=(n, 20)).astype(dtype) for n in LENGTHS]
    batch = check_sequences(seqs, np.dtype(dtype)).pack()
    target = rng.normal(size=(batch.B, 2)).astype(dtype)
    previous = blas.set_packed_mode(mode)
    try:
        loss, grad = network.loss_grad(params, batch, target)
    finally:
        blas.set_packed_mode(previous)
    return loss, grad.copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_default_mode_packs_large_layers_with_one_thread(cell, dtype):
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert blas.py_use_packed(len(LENGTHS), H, GATES[cell] * H, dtype)
        auto, packed, plain = (step(cell, dtype, m) for m in ("auto", "always", "never"))
    assert auto[0] == packed[0] and np.array_equal(auto[1], packed[1])
    assert not np.array_equal(packed[1], plain[1])      # another summation order
    assert abs(packed[0] - plain[0]) <= RTOL[dtype] * abs(plain[0])
    assert np.max(np.abs(packed[1] - plain[1])) <= RTOL[dtype] * np.max(np.abs(plain[1]))


def test_default_mode_keeps_large_float64_weights_on_blas():
    cell, hidden = "elman", 740
    assert GATES[cell] * hidden * hidden * 8 > 4 * 2 ** 20
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert not blas.py_use_packed(len(LENGTHS), hidden, GATES[cell] * hidden,
                                      np.float64)
        auto, plain = (step(cell, np.float64, m, hidden, 1) for m in ("auto", "never"))
    assert auto[0] == plain[0] and np.array_equal(auto[1], plain[1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float64_gated_cells_run_the_fused_forward_and_blas_backward(cell):
    """The LSTM's and the GRU's forward passes run the fused step whatever
    the size (their products never go through BLAS); only BPTT's per-step
    product keeps a float64 W_hh of more than 4 MiB on BLAS. So the default
    mode's states are the fused forward's, as when the packed kernels are
    forced, and its gradient differs from the forced one only by rounding."""
    hidden = 512
    rng = np.random.default_rng(3)
    network = RecurrentNetwork(20, hidden, 2, cell=cell, return_sequences=True)
    params = network.init_params(rng, random_biases=True)
    seqs = [rng.normal(size=(n, 20)) for n in LENGTHS]
    batch = check_sequences(seqs, np.dtype(np.float64)).pack()

    def states(mode):
        previous = blas.set_packed_mode(mode)
        try:
            return network.output(params, batch)[0]
        finally:
            blas.set_packed_mode(previous)

    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert not blas.py_use_packed(len(LENGTHS), hidden, GATES[cell] * hidden,
                                      np.float64)
        auto, packed, plain = (states(m) for m in ("auto", "always", "never"))
        grads = [step(cell, np.float64, m, hidden, 1)[1]
                 for m in ("auto", "always", "never")]
    assert np.array_equal(auto, packed) and not np.array_equal(auto, plain)
    assert np.max(np.abs(auto - plain)) <= RTOL[np.float64] * np.max(np.abs(plain))
    assert not np.array_equal(grads[0], grads[1])
    scale = np.max(np.abs(grads[2]))
    assert np.max(np.abs(grads[0] - grads[1])) <= RTOL[np.float64] * scale
    assert np.max(np.abs(grads[0] - grads[2])) <= RTOL[np.float64] * scale
