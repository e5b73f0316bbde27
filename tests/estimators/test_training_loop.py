"""The training loop's schedules, history, callbacks and checkpoints.

Each learning-rate schedule is checked against a fit run epoch by epoch at
the schedule's rates (bit for bit); the history against what the loop
computes; a callback's stop and failure against the transactional fit; and
a fit resumed from a checkpoint against the fit never stopped (bit for bit).
"""
import math
import warnings

import numpy as np
import pytest

import crnn
from crnn import ConvergenceWarning, RNNClassifier, RNNRegressor
from crnn.callbacks import Checkpoint, StopAt

N = 24


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 7, 2))
    return X, np.tanh(X[:, :, 0].sum(axis=1))


def quiet(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def params(**kwargs):
    return dict(dict(hidden_size=5, batch_size=8, random_state=0, learning_rate=1e-2,
                     n_iter_no_change=10 ** 6), **kwargs)


SCHEDULES = {
    "constant": (dict(), lambda e: 1e-2),
    "step": (dict(lr_decay=0.5, lr_step=2), lambda e: 1e-2 * 0.5 ** ((e - 1) // 2)),
    "exponential": (dict(lr_decay=0.9), lambda e: 1e-2 * 0.9 ** (e - 1)),
    "cosine": (dict(lr_step=4, lr_decay=0.1),
               lambda e: 1e-2 * (0.1 + 0.9 * (1 + math.cos(math.pi * min(e - 1, 4) / 4)) / 2)),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("warmup", [0, 2])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_schedule_is_a_fit_at_each_epochs_rate(data, name, warmup, solver):
    X, y = data
    extra, rate = SCHEDULES[name]
    scheduled = quiet(RNNRegressor(**params(lr_schedule=name, warmup_epochs=warmup,
                                            max_iter=6, solver=solver, **extra)), X, y)

    def at(e):
        return rate(e) * (e / (warmup + 1) if e <= warmup else 1.0)

    assert [r["learning_rate"] for r in scheduled.history_] == pytest.approx(
        [at(e) for e in range(1, 7)], rel=1e-15)
    by_hand = RNNRegressor(**params(max_iter=1, solver=solver, warm_start=True))
    for e in range(1, 7):
        quiet(by_hand.set_params(learning_rate=at(e)), X, y)
    np.testing.assert_array_equal(scheduled.params_, by_hand.params_)
    if name != "constant" or warmup:
        plain = quiet(RNNRegressor(**params(max_iter=6, solver=solver)), X, y)
        assert not np.array_equal(plain.params_, scheduled.params_)


def test_adaptive_divides_the_rate_on_every_plateau(data):
    X, y = data
    # tol larger than any improvement: every epoch is a non-improving one
    model = RNNRegressor(**params(lr_schedule="adaptive", tol=100.0, n_iter_no_change=2,
                                  max_iter=50))
    model.fit(X, y)
    rates = [r["learning_rate"] for r in model.history_]
    # epoch 1 improves on nothing (infinity); then every second epoch is a
    # plateau of 2, after epochs 3, 5, 7, ...
    expected, rate = [], 1e-2
    for e in range(1, len(rates) + 1):
        expected.append(rate)
        if e >= 3 and e % 2 == 1:
            rate *= 0.2
    assert rates == pytest.approx(expected, rel=1e-12)
    # it stops once the rate would fall below 1e-6: 1e-2 * 0.2^5 = 3.2e-6 is the last
    assert rates[-1] == pytest.approx(1e-2 * 0.2 ** 5) and len(rates) == 13
    assert model.learning_rate_ == pytest.approx(1e-2 * 0.2 ** 5)


def test_history_records_what_the_loop_computed(data):
    X, y = data
    clip = 1e-3
    model = quiet(RNNRegressor(**params(max_iter=3, clip_norm=clip, batch_size=N,
                                        shuffle=False)), X, y)
    assert [r["epoch"] for r in model.history_] == [1, 2, 3]
    assert [r["loss"] for r in model.history_] == model.loss_curve_
    first = model.history_[0]
    assert first["clipped"] == 1.0 and first["grad_norm"] > clip
    assert first["grad_norm"] == first["grad_norm_max"]        # one batch per epoch
    assert first["validation_loss"] is None and first["time"] > 0
    # the gradient norm before clipping: that of the initial weights' gradient
    start = RNNRegressor(**params(max_iter=1, batch_size=N, shuffle=False))
    state = start._new_state(2, {"n_outputs_": 1, "_squeeze": True}, np.dtype("float64"))
    network = start._make_network(2, 1, np.float64)
    batch = start._sequences(X, np.float64, None, 2).pack()
    _, grad = network.loss_grad(state["params_"], batch, batch.targets(y[:, None], False))
    assert first["grad_norm"] == pytest.approx(np.linalg.norm(grad), rel=1e-12)
    unclipped = quiet(RNNRegressor(**params(max_iter=2)), X, y)
    assert all(r["clipped"] == 0.0 for r in unclipped.history_)
    validated = quiet(RNNRegressor(**params(max_iter=2, early_stopping=True)), X, y)
    assert [r["validation_loss"] for r in validated.history_] == \
        validated.validation_loss_curve_


def test_callbacks_see_the_epoch_and_can_stop(data):
    X, y = data
    seen = []

    def watch(model, record):
        seen.append((record["epoch"], model.n_iter_, model.predict(X[:2]).shape,
                     len(model.history_)))
        return record["epoch"] == 4

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)     # a stop is not a warning
        model = RNNRegressor(**params(max_iter=10, callbacks=[watch])).fit(X, y)
    assert seen == [(e, e, (2,), e) for e in range(1, 5)]
    assert model.n_iter_ == 4
    same = quiet(RNNRegressor(**params(max_iter=4)), X, y)
    np.testing.assert_array_equal(model.params_, same.params_)


def test_a_callback_that_raises_leaves_the_model_at_that_epoch(data):
    X, y = data

    class Boom:
        def on_epoch_end(self, model, record):
            if record["epoch"] == 3:
                raise RuntimeError("disk full")

    model = RNNClassifier(**params(max_iter=10, callbacks=[Boom()]))
    with pytest.raises(RuntimeError, match="disk full"):
        model.fit(X, y > 0)
    assert model.n_iter_ == 3 and len(model.history_) == 3
    same = quiet(RNNClassifier(**params(max_iter=3)), X, y > 0)
    np.testing.assert_array_equal(model.params_, same.params_)
    assert model._rng.bit_generator.state == same._rng.bit_generator.state


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_a_fit_resumed_from_a_checkpoint_is_the_uninterrupted_fit(data, tmp_path, schedule):
    X, y = data
    every = Checkpoint(tmp_path / "epoch-{epoch}.npz", save_best_only=False)
    # (the cosine's period set, not taken from max_iter, which the resumed fit changes)
    full = RNNRegressor(**params(max_iter=8, lr_schedule=schedule, lr_step=8 if
                                 schedule == "cosine" else 2, callbacks=[every]))
    quiet(full, X, y)
    assert [p.rsplit("-", 1)[1] for p in every.saved_] == [f"{e}.npz" for e in range(1, 9)]
    resumed = crnn.load(tmp_path / "epoch-4.npz")
    assert resumed.n_iter_ == 4
    quiet(resumed.set_params(warm_start=True, max_iter=4), X, y)
    np.testing.assert_array_equal(resumed.params_, full.params_)
    assert [r["learning_rate"] for r in resumed.history_] == \
        [r["learning_rate"] for r in full.history_]


def test_checkpoint_keeps_the_best_epoch(data, tmp_path):
    X, y = data
    best = Checkpoint(tmp_path / "best.npz", monitor="validation_loss")
    model = quiet(RNNRegressor(**params(max_iter=12, learning_rate=5e-2,
                                        early_stopping=True, validation_split="last",
                                        callbacks=[best])), X, y)
    losses = [r["validation_loss"] for r in model.history_]
    saved = crnn.load(tmp_path / "best.npz")
    assert saved.n_iter_ == 1 + int(np.argmin(losses))
    assert best.best_ == min(losses)
    assert len(best.saved_) == sum(loss < min(losses[:i], default=np.inf)
                                   for i, loss in enumerate(losses))
    no_validation = Checkpoint(tmp_path / "x.npz", monitor="validation_loss")
    model = RNNRegressor(**params(max_iter=3, callbacks=[no_validation]))
    with pytest.raises(ValueError, match="needs a validation loss"):
        model.fit(X, y)
    assert model.n_iter_ == 1                   # the epoch the callback refused


def test_stop_at(data):
    X, y = data
    model = RNNRegressor(**params(max_iter=300, callbacks=[StopAt(below=0.3)])).fit(X, y)
    assert model.loss_ <= 0.3 and model.history_[-2]["loss"] > 0.3


@pytest.mark.parametrize("bad, match", [
    (dict(lr_schedule="linear"), "lr_schedule"),
    (dict(lr_decay=0.0), "lr_decay"),
    (dict(lr_decay=1.5), "lr_decay"),
    (dict(lr_step=0), "lr_step"),
    (dict(warmup_epochs=-1), "warmup_epochs"),
    (dict(callbacks=print), "callbacks"),
    (dict(callbacks=[1]), "callbacks"),
])
def test_bad_training_parameters(data, bad, match):
    X, y = data
    model = RNNRegressor(**params(max_iter=2, **bad))
    with pytest.raises(ValueError, match=match):
        model.fit(X, y)
    assert not hasattr(model, "params_")


def test_a_format_1_file_loads_without_a_history(data, tmp_path):
    """Files written before the per-epoch history (format 1) load with an
    empty history and the rate of their hyper-parameters."""
    import json
    import zipfile
    X, y = data
    model = quiet(RNNRegressor(**params(max_iter=2)), X, y)
    model.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as npz:
        members = {k: npz[k] for k in npz.files}
    header = json.loads(members.pop("header").tobytes())
    header["format_version"] = 1
    del header["fitted"]["history_"], header["fitted"]["learning_rate_"]
    del header["arrays"]["history"], members["history"]
    members["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **members)
    assert zipfile.is_zipfile(tmp_path / "old.npz")
    old = crnn.load(tmp_path / "old.npz")
    assert old.history_ == [] and old.learning_rate_ == 1e-2 and old.n_iter_ == 2
    np.testing.assert_array_equal(old.predict(X), model.predict(X))


def test_verbose_shows_progress_inside_long_epochs(data, monkeypatch, capsys):
    import crnn._training as training
    X, y = data
    clock = iter(np.arange(0.0, 10_000.0, 0.9))         # every reading 0.9 s later
    monkeypatch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
    monkeypatch.setattr(training, "_tqdm", lambda: None)      # as without tqdm
    quiet(RNNRegressor(**params(max_iter=1, batch_size=2, verbose=True)), X, y)
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if "batches" in line]
    assert progress and all(line.startswith("Epoch 1: ") for line in progress)
    assert "s left" in progress[0] and "/12 batches" in progress[0]
    assert lines[-1].startswith("Epoch 1: loss = ")
    quiet(RNNRegressor(**params(max_iter=1, batch_size=2)), X, y)
    assert capsys.readouterr().out == ""


class FakeBar:
    """Records what a tqdm bar is told."""
    made = []

    def __init__(self, total, initial, desc, unit, leave, file):
        self.total, self.n, self.desc, self.closed = total, initial, desc, False
        self.made.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


def test_verbose_uses_tqdm_when_installed(data, monkeypatch, capsys):
    import crnn._training as training
    X, y = data
    clock = iter(np.arange(0.0, 10_000.0, 0.9))
    monkeypatch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
    monkeypatch.setattr(training, "_tqdm", lambda: FakeBar)
    FakeBar.made = []
    quiet(RNNRegressor(**params(max_iter=2, batch_size=2, verbose=True)), X, y)
    # one bar per epoch, opened once the epoch passed 2 s, run to its last batch
    assert [bar.desc for bar in FakeBar.made] == ["Epoch 1", "Epoch 2"]
    assert all(bar.total == 12 and bar.n == 12 and bar.closed for bar in FakeBar.made)
    out = capsys.readouterr().out
    assert "s left" not in out and "Epoch 2: loss = " in out
    # a fit that fails mid-epoch closes its bar too

    def failing_clock():
        yield from np.arange(6) * 0.9
        raise RuntimeError("stopped after 5 batches")

    FakeBar.made = []
    clock = failing_clock()
    with pytest.raises(RuntimeError, match="after 5 batches"):
        quiet(RNNRegressor(**params(max_iter=1, batch_size=2, verbose=True)), X, y)
    assert len(FakeBar.made) == 1 and FakeBar.made[0].n < 12 and FakeBar.made[0].closed
