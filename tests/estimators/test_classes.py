"""``RNNClassifier.fit(..., classes=)``: a fixed set of classes, whatever
the training labels hold -- the columns of ``predict_proba`` are every
declared class, those never seen included."""
import numpy as np
import pytest

from crnn import RNNClassifier

pytestmark = pytest.mark.filterwarnings("ignore::crnn.exceptions.ConvergenceWarning")


@pytest.mark.parametrize("return_sequences", [False, True])
def test_declared_classes_are_the_columns(return_sequences):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6, 2))
    if return_sequences:
        y = np.where(X[..., 0] > 0, "t", "e")
    else:
        y = np.where(X[:, -1, 0] > 0, "t", "e")
    model = RNNClassifier(4, return_sequences=return_sequences, max_iter=200,
                          learning_rate=0.01,
                          random_state=0).fit(X, y, classes=["x", "t", "e", "a"])
    assert model.classes_.tolist() == ["a", "e", "t", "x"]
    P = model.predict_proba(X)
    assert P.shape[-1] == 4
    np.testing.assert_allclose(P.sum(axis=-1), 1, rtol=1e-12)
    # the classes never seen end up least probable
    unseen = P[..., [0, 3]].reshape(-1, 2).mean(axis=0)
    seen = P[..., [1, 2]].reshape(-1, 2).mean(axis=0)
    assert unseen.max() < seen.min()
    assert set(np.unique(model.predict(X))) <= {"e", "t"}
    # without classes=, only the labels found
    assert RNNClassifier(4, return_sequences=return_sequences, max_iter=2,
                         random_state=0).fit(X, y).classes_.tolist() == ["e", "t"]


def test_labels_outside_the_declared_classes_are_refused():
    X = np.zeros((4, 3, 1))
    with pytest.raises(ValueError, match=r"not among the classes \['a', 'b'\]: \['c'\]"):
        RNNClassifier(2, max_iter=1).fit(X, ["a", "b", "c", "a"], classes=["a", "b"])
    model = RNNClassifier(2, max_iter=1, warm_start=True, random_state=0).fit(
        X, ["a", "b", "a", "b"], classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="differs from the classes"):
        model.fit(X, ["a", "b", "a", "b"], classes=["a", "b"])
    model.fit(X, ["c", "b", "a", "b"], classes=["c", "b", "a"])     # the same set
    assert model.classes_.tolist() == ["a", "b", "c"]
