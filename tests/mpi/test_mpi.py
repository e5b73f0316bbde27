"""Data-parallel training over MPI (``crnn.mpi``), with two ranks on loopback.

One ``mpiexec -n 2`` job (``mpi_job.py``) fits every case of
``mpi_cases.py`` on the ranks' shards, and on rank 0 alone; these tests fit
the same cases in this process with the estimators' own ``fit`` and compare:

* one rank alone gives the estimator's weights bit for bit;
* two ranks give them to rounding: the batch gradient is summed per rank
  and then over ranks instead of in blocks of the whole batch, so its last
  bits differ, and three or four epochs of steps carry that on. The bound,
  relative to the largest weight, is 1e-12 in float64 and 2e-5 in float32
  (the differences seen are 1e-16 and 3e-8); a wrong reduction (a rank's
  mean instead of the global mean, another rank's masks, other batches)
  moves the weights by 1e-3 or more;
* every rank ends with the same weights, bit for bit, and threads inside the
  ranks do not change them;
* an error on one rank is raised on every rank, and the job goes on.
"""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import mpi_cases as cases

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH")

HERE = Path(__file__).parent
TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Run ``mpi_job.py`` on two ranks; its report and weights."""
    out = tmp_path_factory.mktemp("mpi") / "job"
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(HERE / "mpi_job.py"),
                             str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(f"{out}.json") as f:
        report = json.load(f)
    with np.load(f"{out}.npz") as weights:
        return report, dict(weights)


def one_process(name, **changes):
    """Case ``name`` fitted here, on all the data, by the estimator itself."""
    X, y, lengths = cases.data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cases.run(
            name, lambda m, X, y, L: m.fit(X, y, lengths=L),
            lambda m, X, y, L, classes: m.partial_fit(X, y, L, classes=classes),
            X, y, lengths, **changes)


@pytest.mark.parametrize("name", list(cases.CASES))
def test_one_rank_alone_is_the_estimators_fit_bit_for_bit(job, name):
    _, weights = job
    np.testing.assert_array_equal(weights[f"{name}/alone"], one_process(name).params_)


@pytest.mark.parametrize("name", list(cases.CASES))
def test_two_ranks_give_one_process_weights_to_rounding(job, name):
    report, weights = job
    assert report["size"] == 2
    expected, got = one_process(name), report["cases"][name]
    params = weights[name]
    assert params.dtype == expected.params_.dtype
    scale = np.abs(expected.params_).max()
    error = np.abs(params - expected.params_).max() / scale
    assert error <= TOLERANCE[params.dtype], error
    assert got["n_iter"] == expected.n_iter_ and got["t"] == expected.t_
    np.testing.assert_allclose(got["loss_curve"], expected.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(got["validation_loss_curve"],
                               expected.validation_loss_curve_, rtol=1e-6)
    assert got["classes"] == getattr(expected, "classes_", np.array([])).tolist()


def test_every_rank_ends_with_the_same_weights(job):
    report, _ = job
    assert len(report["cases"]) == len(cases.CASES) + 2 * len(cases.THREADED)
    for name, got in report["cases"].items():
        assert got["same_on_every_rank"], name


@pytest.mark.parametrize("name", list(cases.THREADED))
def test_threads_inside_the_ranks_do_not_change_the_weights(job, name):
    _, weights = job
    np.testing.assert_array_equal(weights[f"{name}/n_jobs=1"], weights[f"{name}/n_jobs=2"])
    # and the batches of 64 are split in blocks, as one process splits them
    expected = one_process(name, n_jobs=1, **cases.THREADED[name]).params_
    error = np.abs(weights[f"{name}/n_jobs=2"] - expected).max() / np.abs(expected).max()
    assert error <= TOLERANCE[expected.dtype]


def test_a_classifier_knows_the_labels_of_every_rank(job):
    report, _ = job
    # rank 1's shard holds no "high"
    assert report["cases"]["elman-f64-classifier"]["classes"] == ["high", "low", "mid"]


def test_the_default_threads_share_the_node(job):
    report, _ = job
    cpus = len(os.sched_getaffinity(0))
    assert report["threads_per_rank"] == [max(1, cpus // 2)] * 2


def test_shards_are_even_contiguous_and_cover_the_data(job):
    report, _ = job
    rank0, rank1 = report["shards"]
    assert [a + b for a, b in zip(rank0, rank1)] == [[0, 0, 0, 0], [0, 1, 1, 1],
                                                    [0, 3, 3, 5], [0, 36, 36, 72]]


def test_an_error_on_one_rank_is_raised_on_every_rank(job):
    errors = job[0]["errors"]
    # on the rank where it happens as itself; on the other as RuntimeError
    rank0, rank1 = errors["nan"]["outcomes"]
    assert rank1[0] == "ValueError" and "NaN" in rank1[1]
    assert rank0[0] == "RuntimeError"
    assert rank0[1].startswith("checking the training data failed on rank 1 of 2: "
                               "ValueError: X contains NaN")
    rank0, rank1 = errors["empty"]["outcomes"]
    assert rank1[0] == "ValueError" and rank0[0] == "RuntimeError"
    # what every rank can see is wrong is the same error everywhere
    for name, words in [("hyper-parameters", "rank 1's hyper-parameters differ from "
                                             "rank 0's: hidden_size"),
                        ("features", "the number of features is 4 on rank 1 but 3")]:
        for kind, message in errors[name]["outcomes"]:
            assert kind == "ValueError" and words in message
    for name in ("hyper-parameters", "nan", "features", "empty"):
        assert errors[name]["fitted"] == [False, False], name
    # and the ranks go on together
    assert errors["recovered"]["outcomes"] == [None, None]
    assert errors["recovered"]["fitted"] == [True, True]


def test_a_diverged_fit_keeps_the_same_state_on_every_rank(job):
    diverged = job[0]["errors"]["diverged"]
    assert [kind for kind, _ in diverged["outcomes"]] == ["TrainingDivergedError"] * 2
    assert diverged["fitted"][0] == diverged["fitted"][1]
    assert diverged["same_on_every_rank"]


def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    import crnn.mpi
    from crnn import RNNRegressor
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'crnn\[mpi\]'"):
        crnn.mpi.fit(RNNRegressor(), np.zeros((2, 3, 1)), np.zeros(2))
