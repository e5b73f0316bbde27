"""The compiled ``Stepper`` (``Stack.stepper``): one step at a time of a
one-directional network, checked at its boundary like the ``Stack``.

Its steps against the Stack's whole-sequence pass on the same parameters
(1e-12 in float64, 1e-5 in float32), with each recurrent product (BLAS and
the packed kernels, ``conftest.recurrent_product``), and every wrong argument refused by name before a
kernel runs: dtype, shape, order, writability, a lying ndarray subclass,
non-finite inputs and states. Each step's outputs are an array of their
own, which no later step writes; ``squeeze`` drops the output axis and
``convert`` turns what a step does not take into what it does.
"""
import gc

import numpy as np
import pytest

from crnn._network import RecurrentNetwork
from crnn._sequences import Sequences
from crnn.kernels import blas

B, T, I, H, O = 3, 6, 4, 5, 2


def network(cell="lstm", dtype=np.float64, hidden=H, **kw):
    net = RecurrentNetwork(I, hidden, O, cell=cell, num_layers=2, return_sequences=True,
                           dtype=dtype, **kw)
    return net, net.init_params(np.random.default_rng(0), random_biases=True)


def whole_pass_and_steps(cell, dtype, hidden, between=None):
    """The outputs and final states of the whole-sequence pass, and those of
    T steps of a Stepper made before ``between()`` runs."""
    net, params = network(cell, dtype, hidden)
    X = np.random.default_rng(1).normal(size=(B, T, I)).astype(dtype)
    stepper = net.stack.stepper(params, B)
    if between is not None:
        between()
    batch = Sequences(X, np.full(B, T), True).pack()
    Y, finals = net.output(params, batch)                  # (T*B, O), time-major
    got = np.stack([stepper.step(np.ascontiguousarray(X[:, t])) for t in range(T)])
    return Y, finals, got, stepper, X


# 5 units: one partial panel of the fused step (fused.h); 17: whole ones and
# a partial one, with AVX-512 and AVX2, in either precision.
@pytest.mark.parametrize("hidden", [5, 17])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_steps_follow_the_whole_sequence_pass(cell, dtype, hidden, recurrent_product):
    Y, finals, got, stepper, X = whole_pass_and_steps(cell, dtype, hidden)
    atol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got.reshape(T * B, O), Y, rtol=0, atol=atol)
    np.testing.assert_allclose(stepper.state, finals, rtol=0, atol=atol)
    stepper.set_state(None)
    np.testing.assert_allclose(stepper.run(np.ascontiguousarray(np.swapaxes(X, 0, 1))),
                               got, rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_a_change_of_kernel_after_the_stepper_is_made_is_followed(cell):
    """A Stepper packs its weights for the packed kernel in use when it is
    made (the LSTM's and GRU's for the fused step, the Elman cell's for its
    two products, here with the packed product forced on); with another
    kernel (AVX2 forced after AVX-512, or the packed mode "never") its steps
    fall back to the plain cell step, and still follow the whole-sequence
    pass."""
    if blas.packed_isa() == 0:
        pytest.skip("no packed kernel on this CPU")
    changes = [(lambda: blas.set_packed_mode("never"))]
    if blas.packed_isa() == 2:
        changes.append(lambda: blas.set_packed_isa(1))
    try:
        for change in changes:
            blas.set_packed_mode("always")
            Y, finals, got, stepper, _ = whole_pass_and_steps(cell, np.float64, 17, change)
            np.testing.assert_allclose(got.reshape(T * B, O), Y, rtol=0, atol=1e-12)
            np.testing.assert_allclose(stepper.state, finals, rtol=0, atol=1e-12)
            blas.set_packed_isa(-1)
    finally:
        blas.set_packed_isa(-1)
        blas.set_packed_mode("auto")


def test_the_parameters_are_kept():
    net, params = network("gru")
    x = np.ones((B, I))
    expected = net.stack.stepper(params.copy(), B).step(x)
    stepper = net.stack.stepper(params.copy(), B)          # its only reference
    gc.collect()
    np.testing.assert_array_equal(stepper.step(x), expected)


class Lying(np.ndarray):
    @property
    def shape(self):
        return (B, I)


def test_bad_arguments_are_refused_by_name():
    net, params = network("lstm")
    stack = net.stack
    with pytest.raises(ValueError, match="params must have shape"):
        stack.stepper(params[:-1], B)
    with pytest.raises(ValueError, match="params must be a C-contiguous 1-d float64"):
        stack.stepper(params.astype(np.float32), B)
    with pytest.raises(ValueError, match="at least 1"):
        stack.stepper(params, 0)
    stepper = stack.stepper(params, B)
    x = np.zeros((B, I))
    for bad, words in [(np.zeros((B, I), np.float32), "float64"),
                       (np.zeros((B + 1, I)), "shape"),
                       (np.zeros((B, 2 * I))[:, ::2], "C-contiguous"),
                       (np.zeros(B * I - 1).view(Lying), "2-d float64 array; got a 1-d"),
                       ("text", "must be a float64 array")]:
        with pytest.raises(ValueError, match=words):
            stepper.step(bad)
    X = np.zeros((T, B, I))
    with pytest.raises(ValueError, match="writable"):
        Y = np.zeros((T, B, O))
        Y.flags.writeable = False
        stepper.run(X, Y)
    with pytest.raises(ValueError, match="Y must have shape"):
        stepper.run(X, np.zeros((T, B, O + 1)))
    with pytest.raises(ValueError, match="2-d float64 array; got a 1-d"):
        stepper.step(np.zeros(I))                       # 1-D: one stream only
    with pytest.raises(ValueError, match="state must have shape"):
        stepper.set_state(np.zeros((2, 2, B, H + 1)))
    bad_state = np.zeros((2, 2, B, H))
    bad_state[1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        stepper.set_state(bad_state)
    with pytest.raises(ValueError, match="X must have shape"):
        stepper.run(np.zeros((T, B + 1, I)))
    nan = x.copy()
    nan[2, 3] = np.nan
    before = stepper.state
    with pytest.raises(ValueError, match="NaN"):
        stepper.step(nan)
    np.testing.assert_array_equal(stepper.state, before)


def test_every_step_gives_outputs_no_later_step_writes():
    """The outputs are views of blocks of 64 KiB of outputs (here 1365 steps
    of (3, 2) float64 a block): over more than a block, and switching
    between one stream's 1-D and 2-D x, every output keeps its own values,
    those of the same steps in one ``run``."""
    net, params = network("elman")
    X = np.random.default_rng(2).normal(size=(1500, 1, I))
    one = net.stack.stepper(params, 1)
    got = [one.step(X[t] if t % 700 < 600 else X[t, 0]) for t in range(1500)]
    assert [g.shape for g in got[598:602]] == [(1, O), (1, O), (O,), (O,)]
    one.set_state(None)
    want = one.run(X)
    np.testing.assert_array_equal(np.array([g.reshape(O) for g in got]), want[:, 0])
    streams = net.stack.stepper(params, B)
    Z = np.random.default_rng(3).normal(size=(1400, B, I))
    outs = [streams.step(z) for z in Z]
    streams.set_state(None)
    np.testing.assert_array_equal(np.array(outs), streams.run(Z))
    outs[0][:] = 7                                   # a user's write stays there
    assert not np.any(outs[1] == 7)


def test_squeeze_and_convert():
    net, params = network("gru", hidden=4)
    single = RecurrentNetwork(I, 4, 1, cell="gru", dtype=np.float64)
    single_params = single.init_params(np.random.default_rng(0), random_biases=True)
    with pytest.raises(ValueError, match="one output"):
        net.stack.stepper(params, B, squeeze=True)
    with pytest.raises(TypeError, match="convert must be callable"):
        net.stack.stepper(params, B, convert=3)
    x = np.random.default_rng(4).normal(size=(B, I))
    plain = single.stack.stepper(single_params, B)
    squeezed = single.stack.stepper(single_params, B, squeeze=True)
    np.testing.assert_array_equal(squeezed.step(x), plain.step(x)[:, 0])
    one, one_plain = (single.stack.stepper(single_params, 1, squeeze=flag)
                      for flag in (True, False))
    y = one.step(x[0])
    assert y.shape == () and y == one_plain.step(x[0])[0]
    seen = []

    def convert(z):
        seen.append(type(z).__name__)
        return np.ascontiguousarray(z, dtype=np.float64)
    converting = single.stack.stepper(single_params, B, convert=convert)
    np.testing.assert_array_equal(converting.step(x.tolist()),
                                  single.stack.stepper(single_params, B).step(x))
    converting.step(x)                              # taken as it is: not converted
    converting.step(np.asfortranarray(np.ones((B, I))))
    assert seen == ["list", "ndarray"]
    with pytest.raises(ValueError, match="shape"):
        converting.step(np.ones((B + 1, I)).tolist())


def test_a_bidirectional_network_cannot_step():
    net = RecurrentNetwork(I, H, O, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        net.stack.stepper(net.init_params(np.random.default_rng(0)), 1)
