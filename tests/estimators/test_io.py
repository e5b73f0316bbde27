"""Saving and loading estimators (``crnn.save`` / ``crnn.load``): exact round
trips, continued training after loading, refusal of damaged or tampered
files with :class:`crnn.ModelFileError` (and no other exception), and atomic
writes."""
import io
import json
import os
import pathlib
import pickle
import warnings
import zipfile

import numpy as np
import pytest

import crnn
from crnn import ConvergenceWarning, ModelFileError, RNNClassifier, RNNRegressor

N, T, F, H = 12, 4, 2, 3
CELLS = ("elman", "lstm", "gru")


def fit_quietly(model, X, y, method="fit", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return getattr(model, method)(X, y, **kwargs)


def make_data(kind, return_sequences, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, T, F))
    if kind == "classifier":
        s = np.cumsum(X[:, :, 0], axis=1) if return_sequences else X[:, :, 0].sum(axis=1)
        y = np.where(s > 0.3, "up", np.where(s < -0.3, "down", "flat"))
    elif return_sequences:
        y = np.tanh(np.cumsum(X, axis=1)[:, :, :2])      # (N, T, 2): not squeezed
    else:
        y = np.tanh(X.sum(axis=(1, 2)))                    # (N,): squeezed
    return X, y


def fitted(kind="regressor", cell="elman", num_layers=1, bidirectional=False,
           return_sequences=False, **kwargs):
    cls = RNNClassifier if kind == "classifier" else RNNRegressor
    kwargs.setdefault("hidden_size", H)
    kwargs.setdefault("max_iter", 2)
    kwargs.setdefault("batch_size", 5)
    kwargs.setdefault("random_state", 0)
    model = cls(cell=cell, num_layers=num_layers, bidirectional=bidirectional,
                return_sequences=return_sequences, **kwargs)
    X, y = make_data(kind, return_sequences)
    return fit_quietly(model, X, y), X, y


def rng_state(model):
    """The training generator's state, arrays as lists (comparable with ==)."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value.tolist() if isinstance(value, np.ndarray) else value
    return plain(model._get_state()["rng"].bit_generator.state)


def optimizer_state(model):
    opt = model._get_state()["optimizer"]
    if opt is None:
        return None
    if opt["kind"] == "adam":
        return ("adam", opt["t"], opt["m"].copy(), opt["v"].copy())
    return ("sgd", opt["velocity"].copy())


def untimed(history):
    """Per-epoch records without their (measured) times."""
    return [{k: v for k, v in record.items() if k != "time"} for record in history]


def assert_same_state(a, b):
    """Hyper-parameters and every piece of fitted state (``_get_state``, the
    estimators' one account of it) are equal, bit for bit."""
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    sa, sb = a._get_state(), b._get_state()
    assert sa.keys() == sb.keys()
    np.testing.assert_array_equal(a.params_, b.params_)
    assert a.params_.dtype == b.params_.dtype
    assert b.params_.flags.c_contiguous and b.params_.flags.writeable
    for name in type(a)._FITTED_ATTRIBUTES:
        if name == "history_":      # each epoch's time is measured, not computed
            assert untimed(sa[name]) == untimed(sb[name]), name
        else:
            assert sa[name] == sb[name], name
    if isinstance(a, RNNClassifier):
        np.testing.assert_array_equal(a.classes_, b.classes_)
        assert a.classes_.dtype == b.classes_.dtype
    else:
        assert sa["_squeeze"] == sb["_squeeze"]
    assert rng_state(a) == rng_state(b)
    sa, sb = optimizer_state(a), optimizer_state(b)
    assert (sa is None) == (sb is None)
    if sa is not None:
        assert sa[0] == sb[0]
        for x, y in zip(sa[1:], sb[1:]):
            np.testing.assert_array_equal(x, y)


def assert_same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    if isinstance(a, RNNClassifier):
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def continue_both(a, b, X, y):
    """Continue training both estimators the same ways; they must stay equal."""
    for model in (a, b):
        model.set_params(warm_start=True, max_iter=2)
        fit_quietly(model, X, y)
    assert_same_state(a, b)
    for model in (a, b):
        model.partial_fit(X, y)
    assert_same_state(a, b)
    assert_same_predictions(a, b, X)


def save_load(model, tmp_path, name="model.npz"):
    path = tmp_path / name
    crnn.save(model, path)
    return crnn.load(path)


# -- round trips ------------------------------------------------------------------

GRID = [(kind, cell, layers, bidir, rs)
        for kind in ("regressor", "classifier") for cell in CELLS
        for layers in (1, 2) for bidir in (False, True) for rs in (False, True)]


@pytest.mark.parametrize("kind,cell,num_layers,bidirectional,return_sequences", GRID)
def test_round_trip_and_continued_training(tmp_path, kind, cell, num_layers,
                                           bidirectional, return_sequences):
    model, X, y = fitted(kind, cell, num_layers, bidirectional, return_sequences)
    loaded = save_load(model, tmp_path)
    assert_same_state(model, loaded)
    assert_same_predictions(model, loaded, X)

    unpickled = pickle.loads(pickle.dumps(model))
    assert_same_state(model, unpickled)
    assert_same_predictions(model, unpickled, X)

    # Training continued after loading equals training continued on the original.
    continue_both(model, loaded, X, y)
    continue_both(unpickled, crnn.load(tmp_path / "model.npz"), X, y)


@pytest.mark.parametrize("options", [
    dict(solver="sgd", nesterov=True),
    dict(solver="sgd", cell="lstm", dtype="float32"),
    dict(dtype="float32", cell="gru", bidirectional=True),
    dict(early_stopping=True, validation_fraction=0.25, max_iter=3),
    dict(num_layers=2, dropout=0.3, clip_norm=0.5, alpha=1e-3),
    dict(bptt_steps=2, cell="lstm", forget_bias=0.5),
    dict(activation="relu", shuffle=False, verbose=0),
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_round_trip_options(tmp_path, options):
    model, X, y = fitted(**options)
    loaded = save_load(model, tmp_path)
    assert loaded.params_.dtype == np.dtype(options.get("dtype", "float64"))
    assert_same_state(model, loaded)
    assert_same_predictions(model, loaded, X)
    continue_both(model, loaded, X, y)


def test_round_trip_after_solver_change(tmp_path):
    """The optimizer state saved is the one the estimator holds, even when
    the solver hyper-parameter changed since the last fit."""
    model, X, y = fitted(solver="adam")
    model.set_params(solver="sgd")
    loaded = save_load(model, tmp_path)
    assert optimizer_state(loaded)[0] == "adam"
    continue_both(model, loaded, X, y)


@pytest.mark.parametrize("labels", [
    np.array([3, 7, 11]), np.array([-1.0, 0.0, 2.0]), np.array([False, True]),
    np.array(["b", "ä", "long label"]), np.array([0, 1], dtype=np.uint8)])
def test_classifier_label_types(tmp_path, labels):
    X, _ = make_data("classifier", False)
    y = labels[np.arange(N) % labels.size]
    model = fit_quietly(RNNClassifier(H, max_iter=2, random_state=0), X, y)
    loaded = save_load(model, tmp_path)
    assert_same_state(model, loaded)
    assert_same_predictions(model, loaded, X)
    assert loaded.predict(X).dtype == model.predict(X).dtype


def test_ragged_sequences_and_streaming_state(tmp_path):
    rng = np.random.default_rng(3)
    X = [rng.normal(size=(n, F)) for n in rng.integers(2, 7, size=N)]
    y = [np.tanh(np.cumsum(x[:, 0])) for x in X]
    model = fit_quietly(RNNRegressor(H, cell="lstm", return_sequences=True,
                                     max_iter=2, random_state=0), X, y)
    loaded = save_load(model, tmp_path)
    for a, b in zip(model.predict(X), loaded.predict(X)):
        np.testing.assert_array_equal(a, b)
    Xp = rng.normal(size=(3, 5, F))
    ya, sa = model.predict(Xp, return_state=True)
    yb, sb = loaded.predict(Xp, return_state=True)
    np.testing.assert_array_equal(ya, yb)
    for u, v in zip(sa, sb):
        np.testing.assert_array_equal(u, v)


def test_generator_random_state_is_stored_as_null_with_a_note(tmp_path):
    model, X, y = fitted(random_state=np.random.default_rng(5))
    path = tmp_path / "g.npz"
    model.save(path)
    header = read_header(path)
    assert header["params"]["random_state"] is None
    assert any("random_state" in note for note in header["notes"])
    loaded = crnn.load(path)
    assert loaded.random_state is None
    # The training generator's state is saved, so resuming is still exact.
    assert rng_state(loaded) == rng_state(model)
    model.set_params(random_state=None)
    continue_both(model, loaded, X, y)


def test_other_bit_generator(tmp_path):
    model, X, y = fitted(random_state=np.random.Generator(np.random.MT19937(4)))
    loaded = save_load(model, tmp_path)
    assert loaded._get_state()["rng"].bit_generator.state["bit_generator"] == "MT19937"
    model.set_params(random_state=None)
    continue_both(model, loaded, X, y)


def test_numpy_scalar_hyper_parameters_and_dtype_objects(tmp_path):
    model, X, y = fitted(hidden_size=np.int64(H), learning_rate=np.float32(0.01),
                         random_state=np.int64(3), dtype=np.float32)
    loaded = save_load(model, tmp_path)
    params = loaded.get_params()
    assert type(params["hidden_size"]) is int and params["hidden_size"] == H
    assert params["dtype"] == "float32" and params["random_state"] == 3
    assert params["learning_rate"] == float(np.float32(0.01))
    assert_same_predictions(model, loaded, X)


def test_save_method_pathlike_str_and_exact_path(tmp_path):
    model, X, _ = fitted()
    for path in (tmp_path / "no_suffix", str(tmp_path / "other.bin"),
                 tmp_path / "m.npz"):
        model.save(path)
        assert os.path.isfile(path)
        assert not os.path.exists(str(path) + ".npz")
        assert_same_predictions(model, crnn.load(path), X)
        assert_same_predictions(model, crnn.load(str(path)), X)
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "no_suffix", "other.bin"]


def test_overwrite_keeps_nothing_else(tmp_path):
    a, X, _ = fitted(cell="gru")
    b, _, _ = fitted(cell="lstm")
    path = tmp_path / "m.npz"
    a.save(path)
    b.save(path)
    assert crnn.load(path).cell == "lstm"
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_file_mode_is_not_private(tmp_path):
    model, _, _ = fitted()
    path = tmp_path / "m.npz"
    model.save(path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o640)
    model.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_exports():
    assert {"save", "load", "ModelFileError"} <= set(crnn.__all__)
    assert issubclass(ModelFileError, ValueError)
    assert crnn.exceptions.ModelFileError is ModelFileError


# -- what cannot be saved -------------------------------------------------------------


def test_save_unfitted_raises_not_fitted(tmp_path):
    with pytest.raises(crnn.NotFittedError):
        crnn.save(RNNRegressor(), tmp_path / "m.npz")
    with pytest.raises(crnn.NotFittedError):
        RNNClassifier().save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_object_string_labels_are_saved_as_strings(tmp_path):
    """Labels in an object array (what pandas gives) become unicode strings,
    so that every fitted classifier saves."""
    X, _ = make_data("classifier", False)
    y = np.array([("a", 1), ("b", 2)] * (N // 2), dtype=object)[:, 0]
    model = fit_quietly(RNNClassifier(H, max_iter=2, random_state=0), X, y)
    assert model.classes_.dtype.kind == "U"
    loaded = save_load(model, tmp_path)
    assert_same_predictions(model, loaded, X)
    assert loaded.predict(X).tolist() == model.predict(X).tolist()


def test_save_refuses_hyper_parameters_changed_after_fit(tmp_path):
    model, _, _ = fitted()
    model.set_params(hidden_size=H + 1)
    with pytest.raises(ValueError, match="hyper-parameters changed after fit"):
        model.save(tmp_path / "m.npz")
    model.set_params(hidden_size=H, learning_rate=-1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        model.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_save_refuses_subclasses(tmp_path):
    class Mine(RNNRegressor):
        pass

    model = fit_quietly(Mine(H, max_iter=1, random_state=0), *make_data("regressor", False))
    with pytest.raises(TypeError, match="RNNRegressor and RNNClassifier"):
        model.save(tmp_path / "m.npz")


# -- damaged files ---------------------------------------------------------------------


def read_header(path):
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz["header"].tobytes().decode("utf-8"))


def read_arrays(path):
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files if name != "header"}


def write_npz(path, header, arrays, savez=np.savez):
    """Write a (possibly tampered) model file exactly at ``path``."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    with open(path, "wb") as fh:
        savez(fh, header=np.frombuffer(raw, dtype=np.uint8), **arrays)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small saved classifier (string labels, Adam state) and its bytes."""
    model, X, _ = fitted("classifier", "gru", bidirectional=True)
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    model.save(path)
    return model, X, path, path.read_bytes()


def load_or_refuse(path, expected_size):
    """load either refuses with ModelFileError (returned) or gives a usable
    estimator (None is returned); any other exception propagates."""
    try:
        model = crnn.load(path)
    except ModelFileError as exc:
        assert str(path) in str(exc)
        return exc
    assert model.params_.shape == (expected_size,)
    assert np.isfinite(model.params_).all()
    return None


def fuzz_variants(data):
    rng = np.random.default_rng(1234)
    n = len(data)
    for cut in sorted({0, 1, 2, 3, 4, 10, 30, 100, n // 4, n // 2, 3 * n // 4,
                       n - 100, n - 22, n - 21, n - 1}):
        yield f"truncate {cut}", data[:cut]
    for cut in rng.integers(0, n, size=40):
        yield f"truncate {cut}", data[:cut]
    for i in range(150):
        buf = bytearray(data)
        for pos in rng.integers(0, n, size=1 + i % 4):
            buf[pos] ^= int(rng.integers(1, 256))
        yield f"flip {i}", bytes(buf)
    for i in range(50):
        start = int(rng.integers(0, n))
        stop = min(n, start + int(rng.integers(1, 200)))
        yield f"zero {start}:{stop}", data[:start] + bytes(stop - start) + data[stop:]
    for i in range(30):
        garbage = rng.integers(0, 256, size=int(rng.integers(1, 300)), dtype=np.uint8)
        yield f"append {i}", data + garbage.tobytes()
    for i in range(15):
        garbage = rng.integers(0, 256, size=int(rng.integers(1, 100)), dtype=np.uint8)
        yield f"prepend {i}", garbage.tobytes() + data
    yield "pickle", pickle.dumps({"a": 1})
    yield "empty zip", _empty_zip()
    yield "npy", _npy_bytes()
    yield "text", b"PK\x03\x04 not really a zip"


def _empty_zip():
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    return buf.getvalue()


def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.arange(3.0))
    return buf.getvalue()


def test_fuzz_damaged_files_raise_only_model_file_error(saved, tmp_path):
    model, X, _, data = saved
    size = model.params_.size
    outcomes = {True: 0, False: 0}
    count = 0
    for label, variant in fuzz_variants(data):
        path = tmp_path / "variant.npz"
        path.write_bytes(variant)
        try:
            ok = load_or_refuse(path, size) is None
        except AssertionError:
            raise
        except Exception as exc:  # pragma: no cover - the failure being tested
            pytest.fail(f"{label}: load raised {type(exc).__name__}: {exc}")
        outcomes[ok] += 1
        count += 1
        if ok and variant[:len(data)] == data:
            # Only garbage appended: the model itself is intact.
            assert_same_predictions(model, crnn.load(path), X)
    assert count >= 300
    assert outcomes[False] > 200      # nearly every damage is detected


def header_paths(node, prefix=()):
    """Every path to a value of a JSON document (subtrees included)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from header_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node[:3]):
            yield from header_paths(value, prefix + (i,))


ODD_VALUES = [None, True, 0, -1, 2 ** 70, 1e308, 0.5, "", "x", "inf", [], [1], {},
              {"kind": "adam"}]


def test_fuzz_header_values(saved, tmp_path):
    """Replace each value of a valid header by odd JSON values (the archive
    itself stays valid): load refuses with a specific message, never with
    another exception and never through the catch-all for damaged archives."""
    model, _, path, _ = saved
    header, arrays = read_header(path), read_arrays(path)
    out = tmp_path / "h.npz"
    refused = loaded = 0
    for i, where in enumerate(list(header_paths(header))[1:]):
        # Five of the odd values for each path, rotating: every value is
        # tried at many paths, and every path with several values.
        for value in (ODD_VALUES * 2)[i % len(ODD_VALUES):][:5]:
            edited = json.loads(json.dumps(header))
            node = edited
            for key in where[:-1]:
                node = node[key]
            if node[where[-1]] == value and type(node[where[-1]]) is type(value):
                continue
            node[where[-1]] = value
            write_npz(out, edited, arrays)
            try:
                error = load_or_refuse(out, model.params_.size)
            except AssertionError:
                raise
            except Exception as exc:  # pragma: no cover - the failure being tested
                pytest.fail(f"{where}={value!r}: load raised {type(exc).__name__}: {exc}")
            if error is None:
                loaded += 1
            else:
                refused += 1
                assert "damaged or not a crnn model file" not in str(error), (where, value)
    assert refused > 300 and loaded > 0


def test_flipped_weight_bytes_are_detected(saved, tmp_path):
    """The zip CRC-32 of each member catches changed array data."""
    model, _, path, data = saved
    raw = model.params_.astype("<f8").tobytes()
    start = data.index(raw)
    for offset in (0, len(raw) // 2, len(raw) - 1):
        buf = bytearray(data)
        buf[start + offset] ^= 0x01
        variant = tmp_path / "v.npz"
        variant.write_bytes(bytes(buf))
        with pytest.raises(ModelFileError, match="CRC"):
            crnn.load(variant)


def test_not_a_zip(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(pickle.dumps(RNNRegressor()))
    with pytest.raises(ModelFileError, match=r"m\.npz.*not an \.npz \(zip\) file"):
        crnn.load(path)
    path.write_bytes(_npy_bytes())
    with pytest.raises(ModelFileError, match="not an .npz"):
        crnn.load(path)
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not an .npz"):
        crnn.load(path)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        crnn.load(tmp_path / "absent.npz")


# -- tampered files ----------------------------------------------------------------------


def tampered(saved, tmp_path, edit_header=None, edit_arrays=None, savez=np.savez):
    _, _, path, _ = saved
    header, arrays = read_header(path), read_arrays(path)
    if edit_header is not None:
        edit_header(header)
    if edit_arrays is not None:
        edit_arrays(arrays)
    out = tmp_path / "tampered.npz"
    write_npz(out, header, arrays, savez)
    return out


def refuses(path, pattern):
    with pytest.raises(ModelFileError, match=pattern) as info:
        crnn.load(path)
    assert str(path) in str(info.value)
    return info.value


def test_untampered_rewrite_loads(saved, tmp_path):
    model, X, _, _ = saved
    loaded = crnn.load(tampered(saved, tmp_path))
    assert_same_state(model, loaded)


def test_wrong_shape(saved, tmp_path):
    def longer(arrays):
        arrays["params"] = np.append(arrays["params"], 0.0)

    def described_longer(header):
        header["arrays"]["params"]["shape"] = [header["arrays"]["params"]["shape"][0] + 1]

    refuses(tampered(saved, tmp_path, edit_arrays=longer),
            r"array 'params' has shape \(\d+,\); expected")
    refuses(tampered(saved, tmp_path, described_longer, longer),
            r"array 'params' is described with shape")
    refuses(tampered(saved, tmp_path, edit_arrays=lambda a: a.update(
        adam_m=a["adam_m"][:-1])), r"array 'adam_m' has shape")
    refuses(tampered(saved, tmp_path, edit_arrays=lambda a: a.update(
        params=a["params"].reshape(1, -1))), r"'params\.npy' must be one-dimensional")
    refuses(tampered(saved, tmp_path, edit_arrays=lambda a: a.update(
        classes=a["classes"][:2])), r"array 'classes' has shape")


def test_wrong_layout(saved, tmp_path):
    def swap(header):
        header["layout"][0], header["layout"][1] = header["layout"][1], header["layout"][0]

    refuses(tampered(saved, tmp_path, swap), "stored parameter layout")

    def more_features(header):
        header["fitted"]["n_features_in_"] += 1

    refuses(tampered(saved, tmp_path, more_features), "stored parameter layout")

    def bigger(header):
        header["params"]["hidden_size"] = 10 ** 9

    refuses(tampered(saved, tmp_path, bigger), "stored parameter layout")


def test_wrong_dtype(saved, tmp_path):
    refuses(tampered(saved, tmp_path, edit_arrays=lambda a: a.update(
        params=a["params"].astype(np.float32))),
        r"array 'params' has dtype '<f4'; expected '<f8'")
    refuses(tampered(saved, tmp_path, edit_arrays=lambda a: a.update(
        adam_v=a["adam_v"].astype(">f8"))), r"array 'adam_v' has dtype '>f8'")

    def header_float32(header):
        header["dtype"] = "float32"

    refuses(tampered(saved, tmp_path, header_float32),
            r"'params' is described with dtype '<f8'; expected '<f4'")

    def header_float16(header):
        header["dtype"] = "float16"

    refuses(tampered(saved, tmp_path, header_float16), "dtype must be 'float64'")
    refuses(tampered(saved, tmp_path, edit_arrays=lambda a: a.update(
        classes=np.array([b"a", b"b", b"c"]))), r"array 'classes' has dtype '\|S1'")

    def datetime_labels(header):
        header["arrays"]["classes"]["dtype"] = "<M8[s]"

    refuses(tampered(saved, tmp_path, datetime_labels),
            "class labels must be booleans, numbers or unicode strings")


def test_unknown_hyper_parameter(saved, tmp_path):
    def add(header):
        header["params"]["spectral_radius"] = 0.9

    refuses(tampered(saved, tmp_path, add),
            r"unknown hyper-parameter\(s\) \['spectral_radius'\] for RNNClassifier")


def test_invalid_hyper_parameter_values(saved, tmp_path):
    for name, value, pattern in [
            ("hidden_size", -1, "hidden_size must be an integer >= 1"),
            ("hidden_size", 3.0, "hidden_size must be an integer"),
            ("cell", "transformer", "cell must be one of"),
            ("learning_rate", "fast", "learning_rate must be"),
            ("random_state", -5, "invalid hyper-parameters"),
            ("random_state", 1.5, "random_state must be an int or null"),
            ("solver", ["adam"], "is not a plain value")]:
        def edit(header, name=name, value=value):
            header["params"][name] = value

        refuses(tampered(saved, tmp_path, edit), pattern)


def test_missing_hyper_parameter_takes_its_default(saved, tmp_path):
    model, X, _, _ = saved

    def drop(header):
        del header["params"]["verbose"]

    loaded = crnn.load(tampered(saved, tmp_path, drop))
    assert loaded.verbose is False
    assert_same_predictions(model, loaded, X)


def test_newer_format_version(saved, tmp_path):
    def newer(header):
        header["format_version"] = 3
        header["crnn_version"] = "9.0"
        header["something_new"] = True

    error = refuses(tampered(saved, tmp_path, newer), "format_version 3")
    assert "format_version 2" in str(error) and "newer crnn" in str(error)
    for bad in (0, "1", True, None, 1.0):
        def edit(header, bad=bad):
            header["format_version"] = bad

        refuses(tampered(saved, tmp_path, edit), "unknown format_version")


def test_header_problems(saved, tmp_path):
    refuses(tampered(saved, tmp_path, lambda h: h.update(format="other")),
            "not a crnn model file")
    refuses(tampered(saved, tmp_path, lambda h: h.update(estimator="os.system")),
            "unknown estimator 'os.system'")
    refuses(tampered(saved, tmp_path, lambda h: h.update(extra=1)),
            r"unknown header entries \['extra'\]")
    refuses(tampered(saved, tmp_path, lambda h: h.pop("layout")),
            r"the header lacks \['layout'\]")
    refuses(tampered(saved, tmp_path, lambda h: h["fitted"].update(n_iter_=-1)),
            "n_iter_ must be an integer >= 0")
    refuses(tampered(saved, tmp_path, lambda h: h["fitted"].update(best_loss_="-inf")),
            "best_loss_ must be a finite number or 'inf'")
    refuses(tampered(saved, tmp_path, lambda h: h["fitted"].update(squeeze=True)),
            "squeeze must be null for a classifier")
    refuses(tampered(saved, tmp_path, lambda h: h["fitted"].update(loss_curve_=[1, "x"])),
            "loss_curve_ must be a list of finite numbers")
    refuses(tampered(saved, tmp_path, lambda h: h["fitted"].update(n_outputs_=1)),
            "a classifier has at least 2 outputs")
    refuses(tampered(saved, tmp_path, lambda h: h.update(optimizer={"kind": "rmsprop"})),
            "unknown optimizer state")
    refuses(tampered(saved, tmp_path, lambda h: h["optimizer"].update(t=-1)),
            "Adam step count t must be an integer >= 0")
    refuses(tampered(saved, tmp_path, lambda h: h["rng"]["state"]["state"].update(
        state=-1)), "invalid random generator state")
    refuses(tampered(saved, tmp_path, lambda h: h["rng"].update(bit_generator="Evil")),
            "rng must be null or")
    refuses(tampered(saved, tmp_path, lambda h: h.update(optimizer=None)),
            r"the header describes arrays .*adam_m.*; expected \['classes', 'history', 'params'\]")


def test_header_not_json(saved, tmp_path):
    _, _, path, _ = saved
    arrays = read_arrays(path)
    out = tmp_path / "bad.npz"
    for raw, pattern in [(b"{not json", "not valid JSON"),
                         (b"\xff\xfe", "not UTF-8"),
                         (b"[1, 2]", "not a JSON object"),
                         (b'{"format": NaN}', "NaN is not valid JSON"),
                         (b'{"format": 1, "format": 2}', "duplicate key"),
                         (b"[" * 100000 + b"]" * 100000, "not valid JSON")]:
        write_npz(out, raw, arrays)
        refuses(out, pattern)
    with open(out, "wb") as fh:
        np.savez(fh, header=np.zeros(4, dtype=np.int32), **arrays)
    refuses(out, "'header' must be uint8")
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    refuses(out, "no 'header' member")


def test_object_array_refused(saved, tmp_path):
    """An object array (which only pickle can store) is refused before it is
    read, whether it replaces an expected array or comes in addition."""
    evil = np.array([{"x": 1}, None, 3], dtype=object)
    # np.savez pickles object arrays (allow_pickle defaults to True there).
    for edit in (lambda a: a.update(classes=evil), lambda a: a.update(params=evil),
                 lambda a: a.update(evil=evil)):
        path = tampered(saved, tmp_path, edit_arrays=edit)
        refuses(path, "holds Python objects")


def test_extra_and_missing_arrays(saved, tmp_path):
    refuses(tampered(saved, tmp_path, edit_arrays=lambda a: a.update(
        extra=np.zeros(3))), r"unexpected array\(s\) \['extra'\]")
    refuses(tampered(saved, tmp_path, edit_arrays=lambda a: a.pop("adam_v")),
            r"missing array\(s\) \['adam_v'\]")

    _, _, path, _ = saved
    out = tmp_path / "extra_member.npz"
    out.write_bytes(path.read_bytes())
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr("README.txt", "hello")
    refuses(out, "unexpected member 'README.txt'")


def test_non_finite_values(saved, tmp_path):
    def nan_params(arrays):
        arrays["params"] = arrays["params"].copy()
        arrays["params"][3] = np.nan

    refuses(tampered(saved, tmp_path, edit_arrays=nan_params),
            "array 'params' contains NaN or infinite values")

    def inf_moment(arrays):
        arrays["adam_m"] = arrays["adam_m"].copy()
        arrays["adam_m"][0] = -np.inf

    refuses(tampered(saved, tmp_path, edit_arrays=inf_moment),
            "array 'adam_m' contains NaN")

    def negative_v(arrays):
        arrays["adam_v"] = -arrays["adam_v"] - 1.0

    refuses(tampered(saved, tmp_path, edit_arrays=negative_v), "negative values")

    def unsorted_labels(arrays):
        arrays["classes"] = arrays["classes"][::-1].copy()

    refuses(tampered(saved, tmp_path, edit_arrays=unsorted_labels),
            "class labels are not sorted and distinct")


def test_compressed_members_refused(saved, tmp_path):
    refuses(tampered(saved, tmp_path, savez=np.savez_compressed), "is compressed")


def _npy_with_shape(shape, dtype="<f8"):
    """A .npy header announcing ``shape`` with only a few bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + bytes(16)


def test_huge_announced_shape_is_refused_before_allocation(saved, tmp_path):
    """A .npy header claiming 10**12 values must not make load allocate them."""
    _, _, path, _ = saved
    header = read_header(path)
    n = 10 ** 12
    header["arrays"]["params"]["shape"] = [n]
    out = tmp_path / "huge.npz"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("header.npy", _npy_with_shape((len(json.dumps(header)),), "|u1")[:-16]
                    + json.dumps(header).encode())
        zf.writestr("params.npy", _npy_with_shape((n,)))
    refuses(out, "does not match its size")


def test_duplicate_members_refused(saved, tmp_path):
    _, _, path, _ = saved
    out = tmp_path / "dup.npz"
    out.write_bytes(path.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(out, "a") as zf, np.load(path) as npz:
            buf = io.BytesIO()
            np.save(buf, np.zeros_like(npz["params"]))
            zf.writestr("params.npy", buf.getvalue())
    refuses(out, "duplicate members")


# -- atomic saving -----------------------------------------------------------------------


def test_failed_replace_keeps_previous_file(saved, tmp_path, monkeypatch):
    model, X, _, _ = saved
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()
    other, _, _ = fitted("classifier", "lstm")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        other.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]
    assert path.read_bytes() == before
    assert_same_predictions(model, crnn.load(path), X)


def test_failed_write_keeps_previous_file(saved, tmp_path, monkeypatch):
    model, X, _, _ = saved
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()
    other, _, _ = fitted("classifier", "lstm")

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        other.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]
    assert path.read_bytes() == before
    assert_same_predictions(model, crnn.load(path), X)


def test_failed_fsync_on_new_target(tmp_path, monkeypatch):
    model, _, _ = fitted()

    def broken_fsync(fd):
        raise OSError("no space left")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="no space left"):
        model.save(tmp_path / "new.npz")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory(tmp_path):
    model, _, _ = fitted()
    with pytest.raises(FileNotFoundError):
        model.save(tmp_path / "absent" / "m.npz")
    assert os.listdir(tmp_path) == []


def test_format_documented():
    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "format.md"
    text = doc.read_text()
    for word in ("crnn-model", "format_version", "adam_m", "sgd_velocity", "layout",
                 "ModelFileError", "allow_pickle=False", "os.replace"):
        assert word in text
