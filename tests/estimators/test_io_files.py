"""The file-system side of ``crnn.save`` / ``crnn.load``: no process-wide side
effects (the umask), no temporary file left behind (not even by a killed
process), long names, symbolic links, non-regular files, and headers that
declare more than the file can hold."""
import errno
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest

import crnn
from crnn import _io
from crnn import ModelFileError, RNNRegressor

from test_io import assert_same_predictions, fitted, read_arrays, read_header, write_npz

posix = pytest.mark.skipif(os.name == "nt", reason="POSIX file system semantics")
pytestmark = posix

TEMPORARY = re.compile(r"\.crnn-([0-9]+)-[0-9a-f]{16}\.tmp")


@pytest.fixture(scope="module")
def models():
    """Two fitted regressors with different weights, and their input."""
    a, X, _ = fitted()
    b, _, _ = fitted(random_state=1)
    assert not np.array_equal(a.params_, b.params_)
    return a, b, X


def holds(path, model, X):
    """The file at ``path`` loads as ``model``."""
    loaded = crnn.load(path)
    np.testing.assert_array_equal(loaded.params_, model.params_)
    assert_same_predictions(model, loaded, X)


def current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    saved = []

    def set_umask(mask):
        previous = os.umask(mask)
        if not saved:
            saved.append(previous)

    yield set_umask
    if saved:
        os.umask(saved[0])


# -- the umask -------------------------------------------------------------------------


def test_save_never_reads_or_sets_the_umask(models, tmp_path, umask, monkeypatch):
    """The umask is process-wide: setting it, even for an instant, changes the
    mode of files other threads create meanwhile. save must not call it."""
    model, _, X = models
    umask(0o027)

    def no_umask(mask):
        raise AssertionError(f"os.umask({mask:#o}) called while saving")

    monkeypatch.setattr(os, "umask", no_umask)
    new = tmp_path / "new.npz"
    model.save(new)                              # a new file: mode from the umask
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o640
    os.chmod(new, 0o604)
    model.save(new)                              # a replaced file keeps its mode
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o604
    monkeypatch.undo()
    assert current_umask() == 0o027
    holds(new, model, X)


@pytest.mark.parametrize("mask,mode", [(0o077, 0o600), (0o002, 0o664), (0o022, 0o644)])
def test_new_file_mode_is_what_the_umask_gives(models, tmp_path, umask, mask, mode):
    model, _, _ = models
    umask(mask)
    model.save(tmp_path / "m.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == mode
    assert current_umask() == mask


def test_files_other_threads_create_keep_their_mode(models, tmp_path, umask):
    """Files created by another thread while saves run get the umask's mode."""
    model, _, _ = models
    umask(0o077)
    stop = threading.Event()
    errors = []

    def saving():
        try:
            while not stop.is_set():
                path = tmp_path / "saved" / "m.npz"
                if path.exists():
                    path.unlink()
                model.save(path)                # a new file every time
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    (tmp_path / "saved").mkdir()
    (tmp_path / "other").mkdir()
    thread = threading.Thread(target=saving)
    thread.start()
    try:
        modes = set()
        deadline = time.monotonic() + 0.5
        i = 0
        while time.monotonic() < deadline:
            fd = os.open(tmp_path / "other" / str(i), os.O_CREAT | os.O_WRONLY, 0o666)
            modes.add(stat.S_IMODE(os.fstat(fd).st_mode))
            os.close(fd)
            i += 1
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert modes == {0o600}
    assert stat.S_IMODE(os.stat(tmp_path / "saved" / "m.npz").st_mode) == 0o600


# -- temporary files -------------------------------------------------------------------

CHILD = r"""
import os, signal, sys
import numpy as np
import crnn

source, target = sys.argv[1:3]
model = crnn.load(source)

def dying_savez(file, **arrays):
    # Part of the archive, then death: nothing of crnn's runs after this.
    file.write(b"PK\x03\x04" + bytes(2 << 20))
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = dying_savez
crnn.save(model, target)
raise SystemExit("not killed")
"""


def kill_during_save(source, target):
    """A child process that loads ``source`` and is SIGKILLed half-way through
    saving it to ``target``; returns the child's (dead, reaped) pid."""
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(crnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root,
                                                      env.get("PYTHONPATH")]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(source), str(target)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err.decode()
    return child.pid


def test_leftover_of_a_killed_save_is_removed_by_the_next_save(models, tmp_path):
    model, other, X = models
    source = tmp_path / "source.npz"
    model.save(source)
    directory = tmp_path / "models"
    directory.mkdir()
    target = directory / "m.npz"
    other.save(target)
    before = target.read_bytes()

    pid = kill_during_save(source, target)
    # The kill left a partial temporary file next to the untouched target.
    leftovers = sorted(set(os.listdir(directory)) - {"m.npz"})
    assert len(leftovers) == 1
    assert TEMPORARY.fullmatch(leftovers[0]) and f"-{pid}-" in leftovers[0]
    assert os.path.getsize(directory / leftovers[0]) > 2 << 20
    assert target.read_bytes() == before

    # Names that only resemble crnn's, and the file of a live process (this
    # one), are not crnn's to remove.
    alive = f".crnn-{os.getpid()}-0123456789abcdef.tmp"
    decoys = [alive, f".crnn-{pid}-0123456789abcdef.tmp.bak",
              f"crnn-{pid}-0123456789abcdef.tmp", f".crnn-{pid}-0123456789ABCDEF.tmp",
              f".crnn-{pid}-0123.tmp", f".crnn-0-0123456789abcdef.tmp", ".m.npz.tmp"]
    for name in decoys:
        (directory / name).write_bytes(b"not crnn's")
    dead_link = f".crnn-{pid}-aaaaaaaaaaaaaaaa.tmp"
    os.symlink("m.npz", directory / dead_link)

    # Any save into the directory removes the dead process's leftover.
    model.save(directory / "another.npz")
    assert sorted(os.listdir(directory)) == sorted(["m.npz", "another.npz", dead_link]
                                                   + decoys)
    assert target.read_bytes() == before
    holds(directory / "another.npz", model, X)
    holds(target, other, X)


def test_failed_saves_leave_no_temporary_file(models, tmp_path, monkeypatch):
    model, other, X = models
    path = tmp_path / "m.npz"
    model.save(path)
    # A private file: a failed fchmod would make its replacement readable by more.
    os.chmod(path, 0o600)
    for name, exc in [("fchmod", OSError("fchmod failed")), ("fsync", KeyboardInterrupt()),
                      ("replace", OSError("replace failed"))]:
        def broken(*args, exc=exc):
            raise exc

        monkeypatch.setattr(os, name, broken)
        with pytest.raises(type(exc)):
            other.save(path)
        monkeypatch.undo()
        assert os.listdir(tmp_path) == ["m.npz"], name
        holds(path, model, X)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_fchmod_refused_where_it_changes_nothing(models, tmp_path, umask, monkeypatch):
    """A file system without modes may refuse fchmod: that is no reason to fail
    when the new file is no more readable than the old one."""
    model, other, X = models
    umask(0o077)
    path = tmp_path / "m.npz"
    model.save(path)
    os.chmod(path, 0o640)

    def refused(fd, mode):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refused)
    other.save(path)                             # 0o600 <= 0o640: fine
    monkeypatch.undo()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    holds(path, other, X)


def test_concurrent_saves_in_one_directory(models, tmp_path):
    """Threads of one process never take each other's temporary files for
    leftovers (the process is alive)."""
    model, other, X = models
    errors = []

    def saving(m, name):
        try:
            for _ in range(8):
                m.save(tmp_path / name)
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    threads = [threading.Thread(target=saving, args=(m, n))
               for m, n in [(model, "a.npz"), (other, "b.npz"), (model, "c.npz")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz", "c.npz"]
    holds(tmp_path / "b.npz", other, X)


def test_temporary_name_is_short_and_in_the_target_directory(models, tmp_path,
                                                             monkeypatch):
    model, _, _ = models
    seen = []
    real_replace = os.replace

    def spying_replace(src, dst):
        seen.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spying_replace)
    model.save(tmp_path / ("x" * 200))
    (src, dst), = seen
    assert os.path.dirname(src) == os.path.dirname(dst) == str(tmp_path)
    assert TEMPORARY.fullmatch(os.path.basename(src))
    assert len(os.path.basename(src)) < 48


@pytest.mark.parametrize("length", [254, 255])
def test_longest_legal_file_names(models, tmp_path, length):
    model, _, X = models
    if os.pathconf(tmp_path, "PC_NAME_MAX") < length:
        pytest.skip("file system with shorter names")
    name = "m" * (length - 4) + ".npz"
    model.save(tmp_path / name)
    assert os.listdir(tmp_path) == [name]
    holds(tmp_path / name, model, X)


# -- symbolic links --------------------------------------------------------------------


def test_save_through_a_symlink_replaces_its_target(models, tmp_path):
    model, other, X = models
    (tmp_path / "links").mkdir()
    (tmp_path / "store").mkdir()
    real = tmp_path / "store" / "real.npz"
    model.save(real)
    os.chmod(real, 0o640)
    link = tmp_path / "links" / "current.npz"
    os.symlink("../store/real.npz", link)
    chain = tmp_path / "links" / "chain.npz"
    os.symlink("current.npz", chain)

    other.save(link)
    assert os.path.islink(link) and os.readlink(link) == "../store/real.npz"
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o640
    holds(real, other, X)
    # The temporary file was in the target's directory, and is gone.
    assert sorted(os.listdir(tmp_path / "links")) == ["chain.npz", "current.npz"]
    assert os.listdir(tmp_path / "store") == ["real.npz"]

    model.save(chain)                            # a chain of links: the last target
    assert os.path.islink(chain) and os.path.islink(link)
    holds(real, model, X)
    holds(chain, model, X)


def test_save_through_a_dangling_symlink_creates_its_target(models, tmp_path):
    model, _, X = models
    link = tmp_path / "current.npz"
    os.symlink("models/v2.npz", link)
    (tmp_path / "models").mkdir()
    model.save(link)
    assert os.path.islink(link)
    target = tmp_path / "models" / "v2.npz"
    assert target.is_file() and not target.is_symlink()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~current_umask()
    holds(link, model, X)

    # A link into a missing directory: the error of creating the file.
    broken = tmp_path / "broken.npz"
    os.symlink("absent/m.npz", broken)
    with pytest.raises(FileNotFoundError):
        model.save(broken)
    assert os.path.islink(broken) and not (tmp_path / "absent").exists()


def test_symlink_loop_is_refused(models, tmp_path):
    model, _, _ = models
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(OSError) as info:
        model.save(tmp_path / "a")
    assert info.value.errno == errno.ELOOP
    assert os.path.islink(tmp_path / "a") and os.path.islink(tmp_path / "b")
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_save_refuses_to_replace_what_is_not_a_regular_file(models, tmp_path):
    model, _, _ = models
    os.mkfifo(tmp_path / "fifo")
    os.mkdir(tmp_path / "dir")
    os.symlink("dir", tmp_path / "dirlink")
    for name, error, kind in [("fifo", FileExistsError, "FIFO"),
                              ("dir", IsADirectoryError, "directory"),
                              ("dirlink", IsADirectoryError, "directory")]:
        with pytest.raises(error, match=kind):
            model.save(tmp_path / name)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    assert os.listdir(tmp_path / "dir") == []
    assert sorted(os.listdir(tmp_path)) == ["dir", "dirlink", "fifo"]


# -- loading non-regular files ---------------------------------------------------------


def run_with_timeout(function, timeout=10.0):
    """``function()`` in a thread: (finished, result or exception)."""
    outcome = []

    def target():
        try:
            outcome.append(function())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive()), (outcome[0] if outcome else None), thread


def refused_quickly(path, kind):
    done, result, thread = run_with_timeout(lambda: crnn.load(path))
    if not done:  # pragma: no cover - the failure being tested; unblock the reader
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
        pytest.fail(f"crnn.load({path}) blocked")
    assert isinstance(result, ModelFileError), repr(result)
    assert str(path) in str(result) and "not a regular file" in str(result)
    assert kind in str(result)


def test_load_of_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    refused_quickly(fifo, "FIFO")
    link = tmp_path / "link.npz"
    os.symlink("model.npz", link)
    refused_quickly(link, "FIFO")


def test_load_of_a_directory_device_or_socket_is_refused(tmp_path):
    # Deliberate change: a directory was an IsADirectoryError (an OSError).
    refused_quickly(tmp_path, "directory")
    if os.path.exists(os.devnull):
        refused_quickly(os.devnull, "character device")
    short = tempfile.mkdtemp()  # AF_UNIX paths are short
    try:
        path = os.path.join(short, "s")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path)
            refused_quickly(path, "socket")
    finally:
        if os.path.exists(os.path.join(short, "s")):
            os.unlink(os.path.join(short, "s"))
        os.rmdir(short)


def test_load_checks_the_file_it_opened(models, tmp_path, monkeypatch):
    """A regular file swapped for a FIFO between the check of the path and the
    open: the opened descriptor itself is checked, and never blocks."""
    model, _, _ = models
    path = tmp_path / "m.npz"
    model.save(path)
    real_open = os.open

    def swapping_open(p, flags, *args, **kwargs):
        if os.fspath(p) == str(path):
            os.unlink(path)
            os.mkfifo(path)
        return real_open(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", swapping_open)
    refused_quickly(path, "FIFO")


def test_load_reads_through_one_descriptor(models, tmp_path, monkeypatch):
    """load opens the file once (no second open that could find another file)."""
    model, _, X = models
    path = tmp_path / "m.npz"
    model.save(path)
    opened = []
    real_open = os.open

    def counting_open(p, flags, *args, **kwargs):
        opened.append((os.fspath(p), flags))
        return real_open(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail(f"open{a}"))
    loaded = crnn.load(path)
    monkeypatch.undo()
    assert [p for p, _ in opened] == [str(path)]
    assert opened[0][1] & os.O_NONBLOCK and not opened[0][1] & (os.O_WRONLY | os.O_RDWR)
    assert_same_predictions(model, loaded, X)


def test_missing_file_and_no_permission_are_os_errors(models, tmp_path):
    model, _, _ = models
    with pytest.raises(FileNotFoundError):
        crnn.load(tmp_path / "absent.npz")
    os.symlink("absent.npz", tmp_path / "dangling.npz")
    with pytest.raises(FileNotFoundError):
        crnn.load(tmp_path / "dangling.npz")
    if os.geteuid() != 0:
        model.save(tmp_path / "private.npz")
        os.chmod(tmp_path / "private.npz", 0)
        with pytest.raises(PermissionError):
            crnn.load(tmp_path / "private.npz")


# -- headers that declare more than the file holds -------------------------------------


@pytest.fixture(scope="module")
def saved_small(tmp_path_factory):
    model, X, _ = fitted()
    path = tmp_path_factory.mktemp("small") / "m.npz"
    model.save(path)
    return model, X, path


def hostile_file(path, num_layers, hidden_size=1):
    """A consistent model file of an Elman regressor of ``num_layers`` layers of
    ``hidden_size`` units on one feature: a header and arrays that agree, as a
    crafted file would have them (no optimizer state). Returns its size."""
    model = RNNRegressor(hidden_size=hidden_size, max_iter=1, random_state=0)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crnn.ConvergenceWarning)
        model.fit(rng.normal(size=(4, 3, 1)), rng.normal(size=4))
    small = path.with_name(path.name + ".small")
    model.save(small)
    header = read_header(small)
    small.unlink()
    H = hidden_size
    layout = []
    for l in range(num_layers):
        layout += [[f"W_ih_l{l}", [H, 1 if l == 0 else H]], [f"W_hh_l{l}", [H, H]],
                   [f"b_l{l}", [H]]]
    layout += [["W_y", [1, H]], ["b_y", [1]]]
    n_params = sum(int(np.prod(shape)) for _, shape in layout)
    header["params"]["num_layers"] = num_layers
    header["layout"] = layout
    header["optimizer"] = None
    header["arrays"] = {"params": {"dtype": "<f8", "shape": [n_params]}}
    write_npz(path, header, {"params": np.zeros(n_params)})
    return os.path.getsize(path)


def measure(function):
    """(result or exception, seconds, peak bytes allocated by Python)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = function()
    except Exception as exc:
        result = exc
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def never_build(monkeypatch):
    def fail(self, *args):
        raise AssertionError(f"a network of {self.num_layers} layers was built")

    monkeypatch.setattr(RNNRegressor, "_make_network", fail)


@pytest.mark.parametrize("num_layers,message", [
    # A header small enough to be read: num_layers is refused before the
    # network is described.
    (5000, r"num_layers=5000 is more than the limit of 1024 layers"),
    # A larger one (the layout of 90002 blocks takes ~2 MiB): refused from
    # its size alone, before it is read (a 58 MB file declaring 640000
    # layers used to take ~20 s and ~1.7 GB to load).
    (30000, r"'header' has [0-9]+ bytes, more than the limit of 1138578 bytes "
            r"for 90002 parameters")])
def test_too_many_layers_refused_quickly(tmp_path, monkeypatch, num_layers, message):
    path = tmp_path / "deep.npz"
    hostile_file(path, num_layers)
    never_build(monkeypatch)
    result, seconds, peak = measure(lambda: crnn.load(path))
    assert isinstance(result, ModelFileError), repr(result)
    assert re.search(message, str(result)), str(result)
    assert seconds < 0.5
    assert peak < (8 << 20 if num_layers == 5000 else 1 << 20)


def test_layout_longer_than_the_parameters_refused(tmp_path, monkeypatch):
    """Each layout block holds at least one parameter: a layout of more blocks
    than the file stores values is refused before anything is built."""
    path = tmp_path / "thin.npz"
    hostile_file(path, 200)
    header = read_header(path)
    header["arrays"]["params"]["shape"] = [10]
    write_npz(path, header, {"params": np.zeros(10)})
    never_build(monkeypatch)
    with pytest.raises(ModelFileError, match="602 parameter blocks .* only 10 param"):
        crnn.load(path)


def test_oversized_header_refused_before_it_is_read(saved_small, tmp_path):
    model, X, path = saved_small
    header, arrays = read_header(path), read_arrays(path)
    n_params = arrays["params"].size
    limit = _io._header_limit(n_params)
    assert limit == (1 << 20) + n_params
    out = tmp_path / "padded.npz"
    for extra, refused in [(limit - 4096, False), (limit + 1, True)]:
        header["notes"] = ["x" * extra]
        write_npz(out, header, arrays)
        result, seconds, peak = measure(lambda: crnn.load(out))
        if refused:
            assert isinstance(result, ModelFileError), repr(result)
            assert re.search(r"'header' has [0-9]+ bytes, more than the limit of "
                             rf"{limit} bytes", str(result))
            assert peak < (1 << 20) < extra       # the header was not even read
        else:
            assert_same_predictions(model, result, X)


def test_save_refuses_a_header_load_would_refuse(models, tmp_path):
    model, _, _ = models
    rng = np.random.default_rng(0)
    state = model.__dict__.copy()
    try:
        model.loss_curve_ = rng.random(40000).tolist()
        model.validation_loss_curve_ = rng.random(40000).tolist()
        with pytest.raises(ValueError, match="header would take [0-9]+ bytes, more than"):
            model.save(tmp_path / "long.npz")
    finally:
        model.__dict__.update(state)
    assert os.listdir(tmp_path) == []


def test_documented():
    doc = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "format.md")
    with open(doc) as fh:
        text = fh.read()
    for phrase in (".crnn-", "symbolic link", "umask", "regular file", "FIFO",
                   "1024", "1 MiB"):
        assert phrase in text, phrase
