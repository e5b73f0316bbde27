"""crnn's C-level API: a separate extension ``cimport``s the shipped ``.pxd``
files, runs the kernels without the GIL, and must agree with ``predict``.

Slow (it compiles an extension); CI runs it. Tolerance 1e-12 (float64).
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import crnn
from crnn import ConvergenceWarning, RNNRegressor

pytest.importorskip("Cython")
TOL = 1e-12
SETUP = """
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize([Extension("crnn_consumer", ["crnn_consumer.pyx"])],
                            include_path=[{include!r}], language_level=3))
"""


INSTALLED = pathlib.Path(crnn.__file__).resolve().parents[1]   # holds crnn/


def build_consumer(build, include):
    """Build tests/consumer/crnn_consumer.pyx in ``build`` with the crnn
    ``.pxd`` files found under ``include``."""
    shutil.copy(pathlib.Path(__file__).parent / "consumer" / "crnn_consumer.pyx", build)
    (build / "setup.py").write_text(SETUP.format(include=str(include)))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                            cwd=build, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def import_consumer(build):
    sys.path.insert(0, str(build))
    try:
        import crnn_consumer
        return crnn_consumer
    finally:
        sys.path.remove(str(build))
        sys.modules.pop("crnn_consumer", None)


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    """Build tests/consumer/crnn_consumer.pyx against the installed crnn."""
    build = tmp_path_factory.mktemp("consumer")
    build_consumer(build, INSTALLED)
    return import_consumer(build)


def random_model(cell, X, y, seed, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = RNNRegressor(5, cell=cell, max_iter=1, random_state=0, **params).fit(X, y)
    rng = np.random.default_rng(seed)
    for block in model.weights_.values():
        block[...] = rng.uniform(-0.7, 0.7, size=block.shape)
    return model


def time_major(X):
    return np.ascontiguousarray(np.swapaxes(X, 0, 1))


@pytest.mark.slow
def test_pxd_files_ship_with_the_package():
    kernels = pathlib.Path(crnn.__file__).parent / "kernels"
    for name in ("abi", "blas", "activations", "_activation_codes", "recurrence", "elman",
                 "lstm", "gru"):
        assert (kernels / f"{name}.pxd").is_file(), name


@pytest.mark.slow
def test_consumer_checks_the_c_abi_version(consumer):
    from crnn.kernels import abi

    assert abi.c_abi_version() == abi.ABI_VERSION >= 1
    assert consumer.lstm_sequence is not None          # it imported: same version


@pytest.mark.slow
def test_consumer_built_against_another_c_abi_is_refused(tmp_path):
    """A consumer compiled with another C_ABI_VERSION (a copy of crnn's .pxd
    tree with the constant changed) refuses to import, saying why."""
    include = tmp_path / "include"
    for pxd in (INSTALLED / "crnn").rglob("*.pxd"):
        target = include / pxd.relative_to(INSTALLED)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pxd, target)
    for package in ("crnn", "crnn/kernels"):
        (include / package / "__init__.pxd").touch()
    abi_pxd = include / "crnn" / "kernels" / "abi.pxd"
    from crnn.kernels.abi import ABI_VERSION

    text = abi_pxd.read_text()
    assert f"C_ABI_VERSION = {ABI_VERSION}\n" in text
    abi_pxd.write_text(text.replace(f"C_ABI_VERSION = {ABI_VERSION}\n",
                                    f"C_ABI_VERSION = {ABI_VERSION + 1}\n"))
    build = tmp_path / "build"
    build.mkdir()
    build_consumer(build, include)
    message = (f"crnn_consumer was built against crnn C ABI {ABI_VERSION + 1}, this crnn "
               f"provides {ABI_VERSION}; rebuild crnn_consumer")
    with pytest.raises(ImportError, match=re.escape(message)):
        import_consumer(build)


@pytest.mark.slow
def test_lstm_sequence_matches_predict(consumer):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4, 9, 3)), rng.normal(size=(4, 9, 2))
    model = random_model("lstm", X, y, 1, return_sequences=True)
    W = model.weights_
    B, T, I = X.shape
    packed = time_major(X).reshape(T * B, I)
    Y = consumer.lstm_sequence(packed, np.full(T, B, dtype=np.intp), W["W_ih_l0"],
                               W["W_hh_l0"], W["b_l0"], W["W_y"], W["b_y"])
    expected = model.predict(X)
    np.testing.assert_allclose(np.swapaxes(Y.reshape(T, B, 2), 0, 1), expected,
                               rtol=TOL, atol=TOL)


@pytest.mark.slow
def test_lstm_step_by_step_matches_final_states(consumer):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(3, 12, 2)), rng.normal(size=3)
    model = random_model("lstm", X, y, 2)
    W = model.weights_
    Hs = consumer.lstm_stream(time_major(X), W["W_ih_l0"], W["W_hh_l0"], W["b_l0"])
    _, (h_n, _) = model.predict(X, return_state=True)
    np.testing.assert_allclose(Hs[-1], h_n[0], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(Hs[-1] @ W["W_y"].T + W["b_y"], model.predict(X)[:, None],
                               rtol=TOL, atol=TOL)


@pytest.mark.slow
@pytest.mark.parametrize("reverse", [False, True])
def test_gru_ragged_matches_final_states(consumer, reverse):
    rng = np.random.default_rng(2)
    X = [rng.normal(size=(L, 3)) for L in (6, 2, 6, 4)]
    model = random_model("gru", X, np.zeros(4), 3, bidirectional=reverse)
    W = model.weights_
    suffix = "_l0_reverse" if reverse else "_l0"
    batch = crnn._validation.check_sequences(X, np.float64).pack()
    _, h_n = consumer.gru_sequence(batch.X, batch.batch_sizes, W["W_ih" + suffix],
                                   W["W_hh" + suffix], W["b" + suffix], W["b_hn" + suffix],
                                   reverse)
    _, state = model.predict(X, return_state=True)
    np.testing.assert_allclose(batch.unpack_last(h_n), state[1 if reverse else 0],
                               rtol=TOL, atol=TOL)


@pytest.mark.slow
def test_elman_step_by_step_matches_predict(consumer):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(5, 7, 2)), rng.normal(size=(5, 7))
    model = random_model("elman", X, y, 4, return_sequences=True)
    W = model.weights_
    Hs = consumer.elman_stream(time_major(X), W["W_ih_l0"], W["W_hh_l0"], W["b_l0"])
    Y = np.swapaxes(Hs @ W["W_y"].T + W["b_y"], 0, 1)[..., 0]
    np.testing.assert_allclose(Y, model.predict(X), rtol=TOL, atol=TOL)
