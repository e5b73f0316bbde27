"""RNNClassifier.generate: next-token sampling on the stream, against an
explicit loop over predict_proba with carried states, reproducibility, the
distribution it draws from, and its errors; one_hot and the shipped text."""
import warnings

import numpy as np
import pytest

from crnn import ConvergenceWarning, RNNClassifier, load_coriolanus
from crnn.preprocessing import one_hot

V = 5


def _model(cell="lstm", num_layers=1, dtype="float64", classes=None):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, V, size=(6, 12))
    labels = np.arange(V) if classes is None else np.asarray(classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return RNNClassifier(8, cell=cell, num_layers=num_layers, return_sequences=True,
                             dtype=dtype, max_iter=3, random_state=0).fit(
            one_hot(codes[:, :-1], V), labels[codes[:, 1:]], classes=labels)


def _reference(model, prompt_codes, n_steps, temperature, top_k, seed):
    """generate's documented rule, one predict_proba call per token."""
    rng = np.random.default_rng(seed)
    eye = np.eye(V)
    P, state = model.predict_proba(eye[prompt_codes], return_state=True)
    P = P[:, -1]
    out = []
    for _ in range(n_steps):
        z = np.log(P) / temperature if temperature else None
        if temperature == 0:
            c = np.argmax(P, axis=1)
        else:
            if top_k is not None:
                order = np.argsort(z, axis=1)[:, :-top_k]
                np.put_along_axis(z, order, -np.inf, axis=1)
            w = np.exp(z - z.max(axis=1, keepdims=True))
            cdf = np.cumsum(w, axis=1)
            u = rng.random(len(P)) * cdf[:, -1]
            c = np.array([np.searchsorted(row, ui, side="right") for row, ui in zip(cdf, u)])
        out.append(c)
        P, state = model.predict_proba(eye[c][:, None], initial_state=state,
                                       return_state=True)
        P = P[:, -1]
    return np.stack(out, axis=1)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 3), (0, None), (1.5, 1)])
def test_generate_equals_an_explicit_loop_over_predict_proba(cell, temperature, top_k):
    model = _model(cell, num_layers=2)
    prompts = np.array([[0, 1, 2], [4, 4, 3]])
    got = model.generate(prompts, 15, temperature=temperature, top_k=top_k,
                         random_state=7)
    want = _reference(model, prompts, 15, temperature, top_k, 7)
    assert got.shape == (2, 15)
    np.testing.assert_array_equal(got, want)


def test_generate_is_reproducible_and_seeded():
    model = _model()
    a = model.generate([1, 2], 40, random_state=3)
    b = model.generate([1, 2], 40, random_state=3)
    c = model.generate([1, 2], 40, random_state=4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    rng = np.random.default_rng(11)
    np.testing.assert_array_equal(model.generate([1, 2], 40, random_state=rng),
                                  model.generate([1, 2], 40, random_state=11))


def test_generate_draws_from_the_tempered_distribution():
    """The first token over 20000 identical prompts, against softmax(log p / T)."""
    model = _model("gru")
    n, T = 20000, 0.6
    P = model.predict_proba(np.eye(V)[[[3, 1]]])[0, -1]
    want = P ** (1 / T) / np.sum(P ** (1 / T))
    first = model.generate(np.tile([3, 1], (n, 1)), 1, temperature=T, random_state=0)[:, 0]
    freq = np.bincount(first, minlength=V) / n
    # 5 standard errors of a binomial proportion
    np.testing.assert_array_less(np.abs(freq - want), 5 * np.sqrt(want * (1 - want) / n) + 1e-12)


def test_top_k_never_draws_outside_the_k_most_probable():
    model = _model()
    P = model.predict_proba(np.eye(V)[[[0]]])[0, -1]
    allowed = set(np.argsort(P)[-2:])
    first = model.generate(np.zeros((2000, 1), int), 1, temperature=5.0, top_k=2,
                           random_state=0)[:, 0]
    assert set(first) == allowed


def test_labels_and_text_in_and_out():
    chars = np.array(list("abcde"))
    model = _model(classes=chars)
    out = model.generate("ab", 8, random_state=0)
    assert isinstance(out, str) and len(out) == 8 and set(out) <= set("abcde")
    arr = model.generate(list("ab"), 8, random_state=0)
    assert arr.dtype == chars.dtype and "".join(arr) == out


def test_float32_model_generates():
    model = _model(dtype="float32")
    assert model.generate([0, 1], 5, random_state=0).shape == (5,)


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt=[0], n_steps=0), "n_steps must be at least 1"),
    (dict(prompt=[0], n_steps=3, temperature=-1), "temperature must be"),
    (dict(prompt=[0], n_steps=3, temperature=np.nan), "temperature must be"),
    (dict(prompt=[0], n_steps=3, top_k=0), "top_k must be between 1"),
    (dict(prompt=[0], n_steps=3, top_k=V + 1), "top_k must be between 1"),
    (dict(prompt=[], n_steps=3), "prompt must be"),
    (dict(prompt=[0, 9], n_steps=3), "labels not among the classes"),
])
def test_generate_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _model().generate(**kwargs)


def test_generate_needs_a_next_token_model():
    X = np.random.default_rng(0).normal(size=(10, 4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seq2one = RNNClassifier(4, max_iter=1).fit(X, np.arange(10) % 3)
        seq2seq = RNNClassifier(4, return_sequences=True, max_iter=1).fit(
            X, np.tile([0, 1, 0, 1], (10, 1)))
    for model in (seq2one, seq2seq):
        with pytest.raises(ValueError, match="next-token model"):
            model.generate([0], 3)


def test_one_hot():
    np.testing.assert_array_equal(one_hot([[1, 0], [2, 2]], 3),
                                  np.eye(3)[[[1, 0], [2, 2]]])
    assert one_hot([0], 2, dtype=np.float32).dtype == np.float32
    for bad, match in [([3], "codes must lie in"), ([-1], "codes must lie in"),
                       ([0.5], "codes must be integers")]:
        with pytest.raises(ValueError, match=match):
            one_hot(bad, 3)


def test_shipped_text():
    text = load_coriolanus()
    assert len(text.encode("utf-8")) <= 100_000
    assert text.startswith("First Citizen:\n") and len(set(text)) == 61
