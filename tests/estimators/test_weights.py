"""Sample and class weights: the loss is the weighted mean of the scored rows'
terms, ``sum_r w_r e_r / sum_r w_r``.

Checked by finite differences (every cell, both losses, ragged, per sequence
and per step, truncated BPTT: 1e-6), against the same batch with each
sequence repeated as many times as its integer weight (loss and gradient to
1e-12), and against scikit-learn's weighted metrics for ``score``.
"""
import warnings

import numpy as np
import pytest

from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor, check_gradient

LENGTHS = [5, 1, 3, 3]
CELLS = ["elman", "lstm", "gru"]


def ragged(rng, lengths=LENGTHS, F=2):
    return [rng.normal(size=(n, F)) for n in lengths]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradient_check_with_sample_and_class_weights(cell, return_sequences,
                                                      bidirectional):
    rng = np.random.default_rng(1)
    X = ragged(rng)
    if return_sequences:
        y = [rng.integers(0, 3, size=n) for n in LENGTHS]
        w = [rng.uniform(0, 2, size=n) for n in LENGTHS]
        y_reg = [rng.normal(size=n) for n in LENGTHS]
    else:
        y, w, y_reg = np.array([0, 1, 2, 1]), rng.uniform(0.1, 2, size=4), rng.normal(size=4)
    clf = RNNClassifier(3, cell=cell, return_sequences=return_sequences,
                        bidirectional=bidirectional, class_weight={0: 2.0, 2: 0.5})
    assert check_gradient(clf, X, y, sample_weight=w).max_error <= 1e-6
    reg = RNNRegressor(3, cell=cell, return_sequences=return_sequences,
                       bidirectional=bidirectional, alpha=0.1)
    assert check_gradient(reg, X, y_reg, sample_weight=w).max_error <= 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_check_with_weights_and_truncated_bptt(cell):
    rng = np.random.default_rng(2)
    X = ragged(rng, [6, 4, 2])
    y = [rng.normal(size=n) for n in (6, 4, 2)]
    model = RNNRegressor(3, cell=cell, return_sequences=True, bptt_steps=2)
    assert check_gradient(model, X, y, sample_weight=[3.0, 0.5, 1.0]).max_error <= 1e-6


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_an_integer_weight_counts_a_sequence_that_many_times(cell, return_sequences):
    rng = np.random.default_rng(3)
    X = ragged(rng)
    y = ([rng.normal(size=(n, 2)) for n in LENGTHS] if return_sequences
         else rng.normal(size=(4, 2)))
    counts = np.array([2, 1, 3, 0])
    model = RNNRegressor(4, cell=cell, return_sequences=return_sequences, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y, sample_weight=counts, )
    network = model._network()

    def loss_grad(X_, y_, weights=None):
        seqs = model._sequences(X_, np.float64, None, None)
        found, target = model._check_targets(y_, seqs, np.float64)
        w = model._row_weights(weights, seqs, target, found, np.float64)
        batch = seqs.pack()
        return network.loss_grad(model.params_, batch, batch.targets(target,
                                 return_sequences), weights=None if w is None else
                                 batch.targets(w, return_sequences))

    weighted, g_weighted = loss_grad(X, y, counts)
    repeat = np.repeat(np.arange(4), counts)
    repeated, g_repeated = loss_grad([X[i] for i in repeat],
                                     [y[i] for i in repeat] if return_sequences
                                     else y[repeat])
    np.testing.assert_allclose(weighted, repeated, rtol=1e-12)
    np.testing.assert_allclose(g_weighted, g_repeated, rtol=1e-10, atol=1e-13)


def test_balanced_class_weights():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 4, 2))
    y = np.array([0] * 30 + [1] * 10)
    model = RNNClassifier(3, class_weight="balanced", max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    seqs = model._sequences(X, np.float64, None, None)
    found, codes = model._check_targets(y, seqs, np.float64)
    entries = {"classes_": model.classes_, "n_outputs_": 2}
    w = model._row_weights(None, seqs, model._encode_targets(codes, entries), entries,
                           np.float64)
    np.testing.assert_allclose(w, np.where(y == 0, 40 / (2 * 30), 40 / (2 * 10)))
    # and against explicit weights: the same loss at the same weights
    explicit = RNNClassifier(3, class_weight={0: 40 / 60, 1: 40 / 20})
    np.testing.assert_allclose(
        explicit._row_weights(None, seqs, model._encode_targets(codes, entries), entries,
                              np.float64), w, rtol=1e-15)


def test_weighted_score_is_sklearns():
    from sklearn.metrics import accuracy_score, r2_score
    rng = np.random.default_rng(5)
    X = ragged(rng, rng.integers(2, 8, size=30))
    y = np.array([x[:, 0].sum() for x in X])
    w = rng.uniform(0, 3, size=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = RNNRegressor(6, max_iter=20, random_state=0).fit(X, y, sample_weight=w)
        clf = RNNClassifier(6, max_iter=20, random_state=0).fit(X, y > 0, sample_weight=w)
    assert reg.score(X, y, sample_weight=w) == pytest.approx(
        r2_score(y, reg.predict(X), sample_weight=w), rel=1e-12)
    assert clf.score(X, y > 0, sample_weight=w) == pytest.approx(
        accuracy_score(y > 0, clf.predict(X), sample_weight=w), rel=1e-12)
    per_step = [np.full(len(x), wi) for x, wi in zip(X, w)]
    tagger = RNNRegressor(6, return_sequences=True, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tagger.fit(X, [np.cumsum(x[:, 0]) for x in X])
    targets = [np.cumsum(x[:, 0]) for x in X]
    # a weight per sequence is that weight at each of its steps
    assert tagger.score(X, targets, sample_weight=w) == \
        tagger.score(X, targets, sample_weight=per_step)


@pytest.mark.parametrize("weights, match", [
    (np.array([1.0, -1.0, 1.0, 1.0]), ">= 0"),
    (np.array([1.0, np.nan, 1.0, 1.0]), "NaN"),
    (np.zeros(4), "sums to zero"),
    (np.ones(3), "different numbers of samples"),
    (np.ones((4, 2)), r"one weight per sequence"),
])
def test_bad_sample_weights(weights, match):
    rng = np.random.default_rng(6)
    model = RNNRegressor(3, max_iter=1)
    with pytest.raises(ValueError, match=match):
        model.fit(ragged(rng), rng.normal(size=4), sample_weight=weights)
    assert not hasattr(model, "params_")


def test_bad_class_weights():
    rng = np.random.default_rng(7)
    X, y = ragged(rng), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="names the label 5"):
        RNNClassifier(3, class_weight={5: 1.0}).fit(X, y)
    with pytest.raises(ValueError, match=r"class_weight\[0\] must be a finite number"):
        RNNClassifier(3, class_weight={0: -1.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):
        RNNClassifier(3, class_weight="uniform").fit(X, y)


def test_the_compiled_loss_checks_its_weights():
    rng = np.random.default_rng(8)
    model = RNNRegressor(3, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(rng.normal(size=(4, 3, 1)), rng.normal(size=4))
    network = model._network()
    batch = model._sequences(rng.normal(size=(4, 3, 1)), np.float64, None, 1).pack()
    target = rng.normal(size=(4, 1))
    stack, X = network.stack, batch.X
    with pytest.raises(ValueError, match="sum to zero"):
        stack.loss(model.params_, X, batch.batch_sizes, target, weights=np.zeros(4))
    with pytest.raises(ValueError, match="finite and >= 0"):
        stack.loss(model.params_, X, batch.batch_sizes, target,
                   weights=np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\)"):
        stack.loss(model.params_, X, batch.batch_sizes, target, weights=np.ones(3))
    # an explicit count is what the weighted sum is divided by
    whole = stack.loss(model.params_, X, batch.batch_sizes, target, weights=np.ones(4))
    assert stack.loss(model.params_, X, batch.batch_sizes, target, count=8,
                      weights=np.ones(4)) == pytest.approx(whole / 2, rel=1e-15)
