"""Saving and loading fitted estimators: one versioned ``.npz`` file, no pickle.

:func:`save` writes a fitted :class:`~crnn.RNNRegressor` or
:class:`~crnn.RNNClassifier` to one file and :func:`load` reads it back. The
file is an ordinary NumPy ``.npz`` archive (a zip of ``.npy`` members, as
``numpy.savez`` writes them: uncompressed) that holds no pickled object, so
loading a file never runs code from it, and everything in it is checked
before an estimator is built. ``docs/format.md`` describes the format for
readers outside Python.

Format, version 2
-----------------
Members of the archive (each ``<name>.npy``), all one-dimensional and
little-endian:

``header`` (``uint8``)
    The UTF-8 bytes of a JSON document (strict JSON: no NaN or Infinity)::

        {"format": "crnn-model", "format_version": 2, "crnn_version": "0.1.0",
         "estimator": "RNNRegressor" | "RNNClassifier",
         "params": {...},          # get_params(): every hyper-parameter
         "notes": [...],           # strings for humans, e.g. why random_state is null
         "fitted": {"n_features_in_": int, "n_outputs_": int,
                    "squeeze": bool (regressor) | null (classifier),
                    "n_iter_": int, "t_": int, "loss_": float | null,
                    "best_loss_": float | "inf",
                    "loss_curve_": [float], "validation_loss_curve_": [float],
                    "history_": int (records in 'history'), "learning_rate_": float},
         "dtype": "float64" | "float32",                      # of params_
         "layout": [[block name, [dims]], ...],              # storage order
         "optimizer": {"kind": "adam", "t": int} | {"kind": "sgd"} | null,
         "rng": {"bit_generator": "PCG64", "state": {...}} | null,
         "arrays": {"params": {"dtype": "<f8", "shape": [n]}, ...}}

    ``params`` stores ``random_state`` when it is an int or None; a
    ``Generator`` or ``RandomState`` instance is stored as null, with a note,
    and so are ``callbacks`` (code).
    ``dtype`` hyper-parameters are stored by name (``"float32"``).
    ``rng`` is the state of the training random generator
    (``bit_generator.state``, arrays written as lists), so that a fit
    continued after loading (``warm_start``, ``partial_fit``) draws the same
    numbers as one continued on the original estimator.
``params``
    The flat parameter buffer ``params_`` (``<f8`` or ``<f4``), laid out as
    ``layout`` says.
``history`` (``<f8``)
    ``history_``: for each recorded epoch, one after another, the values of
    ``crnn._training.HISTORY_KEYS`` (a validation loss of None as NaN).
    Format 1 (crnn before the per-epoch history) has no ``history`` member
    nor ``history_`` and ``learning_rate_`` entries; such files load with an
    empty history and the ``learning_rate`` hyper-parameter as the rate.
``classes`` (classifier only)
    ``classes_``: numbers or unicode strings (object labels cannot be saved).
``adam_m``, ``adam_v`` (optimizer ``adam``) or ``sgd_velocity`` (``sgd``)
    The optimizer's state, same dtype and size as ``params``.

What :func:`load` checks
------------------------
The path names a regular file (a FIFO, directory, device or socket is
refused without being read, and the open never blocks). It opens as a zip
(``numpy.load(..., allow_pickle=False)``); its members are exactly
``header`` and the arrays the header lists, stored uncompressed, each a
valid ``.npy`` of at most the archive's own size; the
header is at most 1 MiB plus one byte per stored parameter, and parses as
strict JSON with no duplicate keys; ``format`` and
``format_version`` are known (a newer version is refused, naming both
versions); the estimator class is known; every hyper-parameter name is known
(a missing one takes its default) and the estimator's own validation accepts
the values; the fitted attributes have the right types and ranges; the layout
recomputed from the hyper-parameters, ``n_features_in_`` and ``n_outputs_``
equals the stored one (at most 1024 layers and 8195 blocks, no more blocks
than stored parameters: checked before the network is described); every
array has exactly the dtype and shape expected (checked from its ``.npy``
header before its data is read); every float is
finite (and Adam's second moments are not negative); classifier labels are
sorted, distinct and as many as ``n_outputs_``; the random generator state
is accepted by its bit generator. Any failure raises
:class:`crnn.ModelFileError` naming the file and the problem. A path that
cannot be opened at all raises the operating system's error
(``FileNotFoundError``, ``PermissionError``, ...).

Saving is atomic: the archive is written to a new temporary file,
``.crnn-<pid>-<random>.tmp`` in the target's directory, flushed and synced,
then renamed onto the target with ``os.replace``. If anything fails, the
temporary file is removed and a file already at the target is left
untouched; the leftover of a killed process is removed by the next save into
that directory. A symbolic link at the path is written through: the file it
finally names is replaced (or created) and the link stays. Nothing
process-wide changes (the umask is never set).
"""
import errno
import json
import math
import os
import re
import stat
import zipfile

import numpy as np

from crnn import _validation as v
from crnn._training import HISTORY_KEYS
from crnn._version import __version__
from crnn.exceptions import ModelFileError

__all__ = ["save", "load", "register_estimator", "FORMAT", "FORMAT_VERSION"]

FORMAT = "crnn-model"
FORMAT_VERSION = 2

#: The estimator classes a model file may name, by class name. Each class
#: registers itself (``crnn._estimators``); this module reads and writes
#: their fitted state through ``_get_state`` / ``_set_state`` only.
_ESTIMATORS = {}
_HEADER_KEYS = {"format", "format_version", "crnn_version", "estimator", "params",
                "notes", "fitted", "dtype", "layout", "optimizer", "rng", "arrays"}
# The header's "fitted" entries are the estimator's _FITTED_ATTRIBUTES and
# "squeeze" (the regressor's _squeeze; null for a classifier).
_SQUEEZE = "squeeze"
# The file member of each array of an optimizer's state (crnn._optim.STATE_ARRAYS).
_OPTIMIZER_MEMBERS = {"adam": {"m": "adam_m", "v": "adam_v"},
                      "sgd": {"velocity": "sgd_velocity"}}
_FLOAT_DTYPES = {"float64": "<f8", "float32": "<f4"}
# Label dtypes a file may hold (canonical numpy spellings, little-endian).
_LABEL_DTYPE = re.compile(r"\|b1|\|[iu]1|<[iu][248]|<f[248]|<U[1-9][0-9]{0,5}")
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
# What a header may declare, checked before anything is built from it.
# Real recurrent stacks have a handful of layers (more than ten is rare).
# Describing a network costs about 40 us per layer (a bidirectional GRU
# layer has 8 parameter blocks), so 1024 layers take ~50 ms, while the 640000
# layers a crafted 58 MB file declared took ~20 s and ~1.7 GB to load.
_MAX_LAYERS = 1024
# At most 4 blocks per layer and direction (GRU: W_ih, W_hh, b, b_hn), two
# directions, the output layer's W_y and b_y, and the embedding W_emb.
_MAX_LAYOUT_BLOCKS = 8 * _MAX_LAYERS + 3
# The JSON header's size, checked before it is read: parsing costs up to
# ~20 bytes of memory per byte of JSON (a list of empty lists). A real header
# holds the hyper-parameters and notes (~2 KiB), the layout (~30 bytes per
# block: at most ~0.25 MiB within the block limit), the random generator
# state (MT19937's, the largest, ~7 KiB) and the loss curves (~21 bytes per
# epoch and curve): 1 MiB holds the curves of ~20000 epochs, whatever the
# model. One more byte per stored parameter gives larger models more room
# and bounds what parsing may cost by a small multiple of the file's size
# (the parameters take 4 or 8 bytes each). save refuses a model whose
# header would exceed the limit, so it never writes what load refuses.
_HEADER_BASE_BYTES = 1 << 20
_HEADER_BYTES_PER_PARAM = 1
_MAX_HEADER_BYTES = 64 << 20
# Temporary files of save: ".crnn-<pid>-<16 hex digits>.tmp", at most 37
# characters whatever the target's name; a file of this exact name whose
# process no longer runs is the leftover of a killed save.
_TMP_NAME = re.compile(r"\.crnn-([1-9][0-9]{0,9})-[0-9a-f]{16}\.tmp")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)        # Windows
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)


def register_estimator(cls):
    """Let model files hold instances of ``cls`` (a class decorator).

    ``cls`` provides ``_FITTED_ATTRIBUTES``, ``_TARGET_STATE``,
    ``_get_state``, ``_set_state``, ``_validate_params`` and
    ``_make_network``, as crnn's estimators do.
    """
    _ESTIMATORS[cls.__name__] = cls
    return cls


def _fitted_keys(cls):
    return set(cls._FITTED_ATTRIBUTES) | {_SQUEEZE}


# -- saving -------------------------------------------------------------------


def save(estimator, path):
    """Save a fitted ``RNNRegressor`` or ``RNNClassifier`` to ``path``.

    The file is written exactly at ``path`` (no ``.npz`` suffix is added)
    and replaces any file there atomically: a failed save leaves the old file
    as it was. See the module documentation for the format.

    If ``path`` is a symbolic link, the save writes through it: the file the
    link (or chain of links) finally names is atomically replaced and the
    link stays a link; a dangling link's target is created, as
    ``open(path, "wb")`` would. A replaced file keeps its mode; a new one
    gets ``0o666`` masked by the umask (the kernel applies it: ``save``
    never reads or sets the process's umask).

    The archive is first written to ``.crnn-<pid>-<random>.tmp`` in the
    target's directory (a short name, whatever the target's), which is
    removed if the save fails. A process killed while saving cannot remove
    it: the next save into that directory removes every file of exactly
    that name whose process no longer runs.

    Parameters
    ----------
    estimator : RNNRegressor or RNNClassifier
        A fitted estimator.
    path : str or os.PathLike
        Destination file.

    Raises
    ------
    NotFittedError
        If the estimator has not been fitted.
    TypeError, ValueError
        If the estimator cannot be saved: another class, class labels of
        object dtype, hyper-parameters that are not plain values, fitted
        weights that no longer match the hyper-parameters, more than 1024
        layers, or loss curves too long for the header's size limit.
    OSError
        If the file cannot be written: ``IsADirectoryError`` if ``path`` is
        a directory, ``FileExistsError`` if it is another file that is not
        a regular file (a FIFO, a device, a socket), ``OSError`` (ELOOP) for
        a loop of symbolic links, and the errors of creating a file.
    """
    path = _fspath(path)
    header, arrays = _encode(estimator)
    raw = _dumps(header).encode("utf-8")
    # Check what is about to be written exactly as load will check it, so
    # that no file is written that load would refuse.
    fail = _save_failure(estimator)
    limit = _header_limit(arrays["params"].size)
    if len(raw) > limit:
        fail(f"its header would take {len(raw)} bytes, more than the limit of {limit} "
             f"bytes for {arrays['params'].size} parameters (1 MiB + 1 byte per "
             f"parameter); its loss curves hold {len(header['fitted']['loss_curve_'])} "
             f"and {len(header['fitted']['validation_loss_curve_'])} epochs")
    _check(json.loads(raw), {k: (a.dtype, a.shape) for k, a in arrays.items()}, fail)
    for name, array in arrays.items():
        _check_values(name, array, fail, header["fitted"]["n_iter_"])
    arrays = dict(arrays, header=np.frombuffer(raw, dtype=np.uint8))
    write_atomic(path, lambda fh: np.savez(fh, **arrays))


def _fspath(path):
    path = os.fspath(path)
    return os.fsdecode(path) if isinstance(path, bytes) else path


def _save_failure(estimator):
    def fail(message):
        raise ValueError(f"cannot save this {type(estimator).__name__}: {message}")
    return fail


def _dumps(header):
    return json.dumps(header, allow_nan=False, ensure_ascii=False, sort_keys=False)


def _plain(value):
    """``value`` with NumPy scalars and arrays turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def _encode(estimator):
    """The JSON header and the named arrays of a fitted estimator."""
    cls = type(estimator)
    if _ESTIMATORS.get(cls.__name__) is not cls:
        raise TypeError(
            f"crnn.save saves {' and '.join(_ESTIMATORS)} estimators; got "
            f"{cls.__module__}.{cls.__qualname__}"
        )
    state = estimator._get_state()
    notes = []
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "random_state" and not (value is None or isinstance(
                value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))):
            notes.append(
                f"random_state was a {type(value).__name__} instance, which cannot be "
                f"stored; it is saved as null. The training random generator's "
                f"state is saved in 'rng'."
            )
            value = None
        elif name == "callbacks" and value is not None:
            notes.append(
                f"callbacks ({len(value)} of them) are code, which a model file does not "
                f"store; they are saved as null: set them again after loading to use "
                f"them in a continued fit."
            )
            value = None
        elif name == "dtype":
            try:
                value = np.dtype(value).name
            except TypeError:
                raise ValueError(f"dtype must be 'float32' or 'float64'; got {value!r}") \
                    from None
        value = _plain(value)
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise TypeError(
                f"cannot save the hyper-parameter {name}={value!r}: only None, "
                f"bools, numbers and strings can be stored"
            )
        params[name] = value

    arrays = {"params": state["params_"]}
    if "classes_" in cls._TARGET_STATE:
        classes = np.asarray(state["classes_"])
        if classes.dtype.kind not in "biufU" or classes.ndim != 1:
            raise TypeError(
                f"only numeric or unicode-string class labels can be saved; this "
                f"classifier's classes_ have dtype {classes.dtype}. Fit it on labels "
                f"converted with numpy.asarray(labels, dtype=str) (or numbers) to "
                f"make it savable"
            )
        arrays["classes"] = classes
    squeeze = bool(state["_squeeze"]) if "_squeeze" in cls._TARGET_STATE else None
    arrays["history"] = _history_array(state["history_"])

    params_ = state["params_"]
    if not isinstance(params_, np.ndarray) or params_.dtype.name not in _FLOAT_DTYPES:
        raise ValueError(f"params_ must be a float32 or float64 array; got "
                         f"{getattr(params_, 'dtype', type(params_))}")
    dtype = params_.dtype.name
    optimizer = state["optimizer"]
    optimizer_info = None
    if optimizer is not None:
        kind = optimizer["kind"]
        for name, member in _OPTIMIZER_MEMBERS[kind].items():
            arrays[member] = optimizer[name]
        optimizer_info = {"kind": kind, "t": int(optimizer["t"])} if kind == "adam" \
            else {"kind": kind}
    # Little-endian, contiguous copies, whatever the host.
    arrays = {name: np.ascontiguousarray(
        np.asarray(a).astype(np.asarray(a).dtype.newbyteorder("<"), copy=False))
        for name, a in arrays.items()}

    rng = state["rng"]
    rng_info = None
    if isinstance(rng, np.random.Generator):
        rng_state = _plain(rng.bit_generator.state)
        if rng_state.get("bit_generator") in _BIT_GENERATORS:
            rng_info = {"bit_generator": rng_state["bit_generator"], "state": rng_state}
    if rng_info is None:
        notes.append(
            "the training random generator's state could not be stored; a fit "
            "continued after loading draws from a new generator"
        )

    def number(x):
        x = float(x)
        return "inf" if x == math.inf else x

    # _get_state has checked that the hyper-parameters still define this network.
    layout = estimator._make_network(state["n_features_in_"], state["n_outputs_"],
                                     params_.dtype).layout
    fitted = {
        "n_features_in_": int(state["n_features_in_"]),
        "n_outputs_": int(state["n_outputs_"]),
        _SQUEEZE: squeeze,
        "n_iter_": int(state["n_iter_"]),
        "t_": int(state["t_"]),
        "loss_": None if state["loss_"] is None else float(state["loss_"]),
        "best_loss_": number(state["best_loss_"]),
        "loss_curve_": [float(x) for x in state["loss_curve_"]],
        "validation_loss_curve_": [float(x) for x in state["validation_loss_curve_"]],
        "history_": len(state["history_"]),           # rows of the array 'history'
        "learning_rate_": float(state["learning_rate_"]),
    }
    if fitted.keys() != _fitted_keys(cls):  # pragma: no cover - one list of names
        raise RuntimeError("the fitted attributes and the model file disagree")

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "crnn_version": __version__,
        "estimator": cls.__name__,
        "params": params,
        "notes": notes,
        "fitted": fitted,
        "dtype": dtype,
        "layout": [[name, list(shape)] for name, shape in layout.shapes.items()],
        "optimizer": optimizer_info,
        "rng": rng_info,
        "arrays": {name: {"dtype": a.dtype.str, "shape": list(a.shape)}
                   for name, a in arrays.items()},
    }
    try:
        _dumps(header)
    except ValueError as exc:  # a NaN or infinite float somewhere
        raise ValueError(f"cannot save this {cls.__name__}: {exc}") from None
    return header, arrays


def _header_limit(n_params):
    """The most bytes a header may have in a file of ``n_params`` parameters."""
    return min(_MAX_HEADER_BYTES, _HEADER_BASE_BYTES + _HEADER_BYTES_PER_PARAM * n_params)


def write_atomic(path, write):
    """Write a file by ``write(fh)`` (``fh`` a binary file object) into a
    temporary file next to the file ``path`` names, then rename it onto
    that file (crnn's ``save``, and ``to_onnx``).

    Nothing process-wide changes (the umask is neither read nor set: the
    kernel applies it to the temporary file, created with mode 0o666), and
    the temporary file is removed on any failure, KeyboardInterrupt included.
    """
    target = _resolve(path)
    directory = os.path.dirname(target)
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        error, code = ((IsADirectoryError, errno.EISDIR) if stat.S_ISDIR(existing.st_mode)
                       else (FileExistsError, errno.EEXIST))
        raise error(code, f"not a regular file but {_kind(existing.st_mode)}; crnn "
                          f"replaces only regular files", target)
    _remove_leftovers(directory)
    fd, tmp = _create_temporary(directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            _set_mode(fh.fileno(), existing)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _resolve(path):
    """The file a save to ``path`` replaces: ``path`` with every symbolic link
    resolved, so that a link is written through (and stays a link). A
    dangling link resolves to the file it names, which the save creates; a
    loop of links raises ``OSError`` (ELOOP)."""
    try:
        return os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return os.path.realpath(path)


def _create_temporary(directory):
    """A new, empty temporary file in ``directory``: (fd, name).

    ``O_EXCL`` creates it (never opens an existing file or follows a link);
    the kernel gives it the mode 0o666 masked by the umask.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY
    for _ in range(100):
        name = os.path.join(directory, f".crnn-{os.getpid()}-{os.urandom(8).hex()}.tmp")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue
    raise FileExistsError(  # pragma: no cover
        errno.EEXIST, "no unused temporary file name", directory)


def _remove_leftovers(directory):
    """Remove the temporary files that killed saves left in ``directory``:
    regular files named exactly as :func:`_create_temporary` names them, of
    a process that no longer runs. Best effort: errors are ignored."""
    if os.name == "nt":  # os.kill(pid, 0) terminates the process there
        return
    try:
        entries = os.scandir(directory)
    except OSError:
        return
    with entries:
        for entry in entries:
            match = _TMP_NAME.fullmatch(entry.name)
            if match is None or _running(int(match.group(1))):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
            except OSError:
                pass


def _running(pid):
    """Whether process ``pid`` exists (True when in doubt)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # EPERM: another user's process
        return True
    return True


def _set_mode(fd, existing):
    """Give the temporary file ``fd`` the mode of the file it replaces (the
    ``os.stat`` result ``existing``); a new file keeps the mode it was
    created with, 0o666 masked by the umask."""
    if existing is None or not hasattr(os, "fchmod"):
        return
    mode = stat.S_IMODE(existing.st_mode)
    try:
        os.fchmod(fd, mode)
    except OSError:
        # A file system without modes (vfat, ...) may refuse; that matters
        # only if the new file would be readable by more than the old one.
        if stat.S_IMODE(os.fstat(fd).st_mode) & ~mode:
            raise


_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")]


def _kind(mode):
    """What a file of ``st_mode`` ``mode`` is, in words."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a special file"


def _fsync_directory(directory):
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# -- loading ------------------------------------------------------------------


def load(path):
    """Load an estimator saved by :func:`save` (or ``estimator.save``).

    Everything in the file is validated before the estimator is built (see
    the module documentation); the file is read with
    ``numpy.load(..., allow_pickle=False)`` and no code from it is run. Only
    a regular file is read (through a symbolic link too); the open never
    blocks, and the file checked is the file read (one descriptor).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    RNNRegressor or RNNClassifier
        Fitted, with its optimizer and random generator state, so that
        ``partial_fit`` or a ``warm_start`` fit continues as it would have
        on the saved estimator.

    Raises
    ------
    ModelFileError
        If the file is not a valid crnn model file (the message names the
        file and the problem), or not a regular file (a FIFO, a directory,
        a device, a socket).
    OSError
        If the file cannot be opened (``FileNotFoundError``,
        ``PermissionError``, ...).
    """
    path = _fspath(path)

    def fail(message):
        raise ModelFileError(f"crnn model file '{path}': {message}")

    # The file is opened here and handed to numpy.load: an OSError (missing
    # file, ...) propagates as it is, the checks below see the very file that
    # is parsed, and the handle is closed even when numpy.load fails on a
    # damaged archive (given a path, numpy 2.x leaks its handle then).
    with os.fdopen(_open_regular(path, fail), "rb") as fh:
        magic = fh.read(4)
        size = os.fstat(fh.fileno()).st_size
        if magic != b"PK\x03\x04":
            fail("not an .npz (zip) file")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as npz:
                if not isinstance(npz, np.lib.npyio.NpzFile):
                    fail("not an .npz (zip) file")
                return _load(npz, size, fail)
        except ModelFileError:
            raise
        except Exception as exc:
            # zipfile, the .npy reader and json raise many kinds of errors on
            # damaged files; each is a damaged model file to the caller.
            raise ModelFileError(
                f"crnn model file '{path}': damaged or not a crnn model file "
                f"({type(exc).__name__}: {exc})"
            ) from exc


def _open_regular(path, fail):
    """A read-only descriptor of the regular file ``path``.

    Anything else (a FIFO, a directory, a device, a socket) is refused
    without being opened, as seen by ``os.stat``, and again as seen by
    ``fstat`` of the descriptor, in case the path changed in between: the
    open does not block (``O_NONBLOCK``) and the descriptor is the one read.
    A path that does not exist or cannot be opened raises its OSError.
    """
    def refuse(mode):
        fail(f"not a regular file but {_kind(mode)}; crnn model files are regular "
             f"files")

    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        refuse(mode)
    fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_NOCTTY | _O_CLOEXEC | _O_BINARY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            refuse(mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _npy_header(npz, member, fail):
    """dtype and shape from the ``.npy`` header of a member, before its data."""
    with npz.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            fail(f"member {member!r} has an unsupported .npy version {version}")
        offset = f.tell()
    info = npz.zip.getinfo(member)
    if dtype.hasobject:
        fail(f"member {member!r} holds Python objects (dtype {dtype}), which a "
             f"crnn model file never contains")
    if len(shape) != 1:
        fail(f"member {member!r} must be one-dimensional; its shape is {shape}")
    if offset + shape[0] * dtype.itemsize != info.file_size:
        fail(f"member {member!r}: its .npy header announces {shape[0]} values of "
             f"{dtype.str}, which does not match its size of {info.file_size} bytes")
    return dtype, tuple(shape)


def _load(npz, size, fail):
    infos = npz.zip.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        fail("the archive has duplicate members")
    members = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            fail(f"unexpected member {info.filename!r} (every member is a .npy array)")
        if info.compress_type != zipfile.ZIP_STORED:
            fail(f"member {info.filename!r} is compressed; crnn model files are "
                 f"written uncompressed (numpy.savez)")
        if info.file_size > size:
            fail(f"member {info.filename!r} claims {info.file_size} bytes, more than "
                 f"the whole file ({size} bytes)")
        members[info.filename[:-4]] = info.filename
    if "header" not in members:
        fail("no 'header' member: not a crnn model file")

    # The header may not be much larger than the parameters the file holds:
    # its size is checked before it is read. (A file without parameters is
    # refused later; its header may have the base size.)
    declared = {}
    if "params" in members:
        declared["params"] = _npy_header(npz, members["params"], fail)
    n_params = declared["params"][1][0] if "params" in declared else 0
    dtype, shape = _npy_header(npz, members["header"], fail)
    if dtype != np.uint8:
        fail(f"'header' must be uint8 bytes; got dtype {dtype}")
    limit = _header_limit(n_params)
    if shape[0] > limit:
        fail(f"'header' has {shape[0]} bytes, more than the limit of {limit} bytes "
             f"for {n_params} parameters (1 MiB + 1 byte per parameter)")
    raw = npz["header"]
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"the header is not UTF-8 text ({exc})")
    header = _parse_json(text, fail)

    for name, member in members.items():
        if name not in declared and name != "header":
            declared[name] = _npy_header(npz, member, fail)
    spec = _check(header, declared, fail)

    arrays = {}
    for name in spec["arrays"]:
        array = npz[name]
        dtype, shape = declared[name]
        if array.dtype != dtype or array.shape != shape:  # pragma: no cover - defensive
            fail(f"array {name!r} read as {array.dtype} {array.shape}, expected "
                 f"{dtype} {shape}")
        _check_values(name, array, fail, spec["fitted"]["n_iter_"])
        arrays[name] = array.astype(array.dtype.newbyteorder("="), copy=False)
    return _build(spec, arrays, fail)


def _parse_json(text, fail):
    def no_constants(name):
        raise ValueError(f"{name} is not valid JSON")

    def no_duplicates(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate key {key!r}")
            result[key] = value
        return result

    try:
        header = json.loads(text, parse_constant=no_constants,
                            object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as exc:
        fail(f"the header is not valid JSON ({exc})")
    if not isinstance(header, dict):
        fail("the header is not a JSON object")
    return header


# -- checks shared by save and load ---------------------------------------------


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _history_array(history):
    """``history_`` as the file stores it: one float64 row of the values of
    ``HISTORY_KEYS`` per epoch, the rows one after another (a 1-D array, as
    every member is), a validation loss of None as NaN."""
    rows = [[np.nan if record[key] is None else float(record[key]) for key in HISTORY_KEYS]
            for record in history]
    return np.array(rows, dtype="<f8").reshape(-1)


def _history_records(array):
    """The inverse of :func:`_history_array`."""
    records = []
    for row in array.reshape(-1, len(HISTORY_KEYS)):
        record = dict(zip(HISTORY_KEYS, (float(x) for x in row)))
        record["epoch"] = int(record["epoch"])
        if math.isnan(record["validation_loss"]):
            record["validation_loss"] = None
        records.append(record)
    return records


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check(header, declared, fail):
    """Validate a parsed header against the arrays' declared (dtype, shape).

    Returns what is needed to build the estimator. ``declared`` maps array
    names (without ``header``) to (numpy dtype, shape).
    """
    if header.get("format") != FORMAT:
        fail(f"not a crnn model file (format is {header.get('format')!r}, expected "
             f"{FORMAT!r})")
    version = header.get("format_version")
    if not _is_int(version) or version < 1:
        fail(f"unknown format_version {version!r}")
    if version > FORMAT_VERSION:
        fail(f"written in format_version {version} by a newer crnn "
             f"({header.get('crnn_version')!r}); this crnn reads format_version "
             f"{FORMAT_VERSION} and older. Upgrade crnn to load it")
    missing = _HEADER_KEYS - header.keys()
    if missing:
        fail(f"the header lacks {sorted(missing)}")
    extra = header.keys() - _HEADER_KEYS
    if extra:
        fail(f"unknown header entries {sorted(extra)}")
    if not isinstance(header["crnn_version"], str):
        fail("crnn_version must be a string")
    notes = header["notes"]
    if not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        fail("notes must be a list of strings")

    # Estimator and hyper-parameters.
    name = header["estimator"]
    if not isinstance(name, str) or name not in _ESTIMATORS:
        fail(f"unknown estimator {name!r} (expected one of {sorted(_ESTIMATORS)})")
    cls = _ESTIMATORS[name]
    params = header["params"]
    if not isinstance(params, dict):
        fail("params must be a JSON object")
    known = set(cls._get_param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        fail(f"unknown hyper-parameter(s) {unknown} for {name}")
    for key, value in params.items():
        if not (value is None or isinstance(value, (bool, int, float, str))):
            fail(f"hyper-parameter {key}={value!r} is not a plain value")
    if "random_state" in params and not (params["random_state"] is None
                                         or _is_int(params["random_state"])):
        fail(f"random_state must be an int or null; got {params['random_state']!r}")
    estimator = cls(**params)
    try:
        estimator._validate_params()
    except (ValueError, TypeError) as exc:
        fail(f"invalid hyper-parameters: {exc}")

    # Fitted attributes.
    fitted = header["fitted"]
    if not isinstance(fitted, dict):
        fail("fitted must be a JSON object")
    if version == 1 and isinstance(fitted, dict):
        # format 1 has no per-epoch history: none, and the rate of the hyper-parameters
        fitted = dict(fitted, history_=None, learning_rate_=estimator.learning_rate)
    if fitted.keys() != _fitted_keys(cls):
        fail(f"fitted must have exactly the entries {sorted(_fitted_keys(cls))}; got "
             f"{sorted(fitted)}")
    for key in ("n_features_in_", "n_outputs_"):
        if not _is_int(fitted[key]) or fitted[key] < 1:
            fail(f"{key} must be an integer >= 1; got {fitted[key]!r}")
    for key in ("n_iter_", "t_"):
        if not _is_int(fitted[key]) or fitted[key] < 0:
            fail(f"{key} must be an integer >= 0; got {fitted[key]!r}")
    if not (fitted["loss_"] is None or _is_number(fitted["loss_"])):
        fail(f"loss_ must be a finite number or null; got {fitted['loss_']!r}")
    if not (fitted["best_loss_"] == "inf" or _is_number(fitted["best_loss_"])):
        fail(f"best_loss_ must be a finite number or 'inf'; got "
             f"{fitted['best_loss_']!r}")
    for key in ("loss_curve_", "validation_loss_curve_"):
        curve = fitted[key]
        if not (isinstance(curve, list) and all(_is_number(x) for x in curve)):
            fail(f"{key} must be a list of finite numbers")
    if version > 1 and not (_is_int(fitted["history_"])
                            and 0 <= fitted["history_"] <= fitted["n_iter_"]):
        fail(f"history_ (the epochs recorded) must be an integer in [0, n_iter_ = "
             f"{fitted['n_iter_']}]; got {fitted['history_']!r}")
    if not (_is_number(fitted["learning_rate_"]) and fitted["learning_rate_"] > 0):
        fail(f"learning_rate_ must be a finite number > 0; got "
             f"{fitted['learning_rate_']!r}")
    if "_squeeze" in cls._TARGET_STATE:
        if not isinstance(fitted["squeeze"], bool):
            fail(f"squeeze must be true or false for a regressor; got "
                 f"{fitted['squeeze']!r}")
        if fitted["squeeze"] and fitted["n_outputs_"] != 1:
            fail(f"squeeze is true but n_outputs_ is {fitted['n_outputs_']}, not 1")
    else:
        if fitted["squeeze"] is not None:
            fail("squeeze must be null for a classifier")
        if fitted["n_outputs_"] < 2:
            fail(f"a classifier has at least 2 outputs; n_outputs_ is "
                 f"{fitted['n_outputs_']}")

    # Layout, recomputed from the hyper-parameters.
    dtype = header["dtype"]
    if not isinstance(dtype, str) or dtype not in _FLOAT_DTYPES:
        fail(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    if not isinstance(header["layout"], list):
        fail("layout must be a list of [name, shape] pairs")
    # Describing the network takes a time proportional to num_layers: what
    # the header declares is bounded before (see _MAX_LAYERS). Every layer
    # has parameter blocks and every block at least one parameter, so the
    # stored parameters bound both (and the file's size bounds those).
    n_blocks = len(header["layout"])
    if estimator.num_layers > _MAX_LAYERS:
        fail(f"num_layers={estimator.num_layers} is more than the limit of "
             f"{_MAX_LAYERS} layers")
    if n_blocks > _MAX_LAYOUT_BLOCKS:
        fail(f"the layout has {n_blocks} parameter blocks, more than the limit of "
             f"{_MAX_LAYOUT_BLOCKS}")
    stored = declared.get("params")
    if stored is not None and len(stored[1]) == 1 and n_blocks > stored[1][0]:
        fail(f"the layout has {n_blocks} parameter blocks but 'params' holds only "
             f"{stored[1][0]} parameters (every block holds at least one)")
    if estimator.num_layers > n_blocks:
        fail(f"num_layers={estimator.num_layers} does not fit the stored layout of "
             f"{n_blocks} parameter blocks")
    try:
        network = estimator._make_network(fitted["n_features_in_"],
                                          fitted["n_outputs_"], np.dtype(dtype))
        expected_layout = [[block, list(shape)]
                           for block, shape in network.layout.shapes.items()]
        n_params = int(network.layout.size)
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        fail(f"the hyper-parameters do not define a network ({exc})")
    if header["layout"] != expected_layout:
        fail(f"the stored parameter layout {header['layout']!r} differs from the "
             f"layout the hyper-parameters define, {expected_layout!r}")

    # Optimizer and random generator.
    optimizer = header["optimizer"]
    arrays = {"params": (_FLOAT_DTYPES[dtype], (n_params,))}
    if version > 1:
        arrays["history"] = ("<f8", (fitted["history_"] * len(HISTORY_KEYS),))
    if "classes_" in cls._TARGET_STATE:
        arrays["classes"] = (None, (fitted["n_outputs_"],))
    if optimizer is not None:
        if not isinstance(optimizer, dict):
            fail(f"optimizer must be an object or null; got {optimizer!r}")
        if optimizer == {"kind": "sgd"}:
            arrays["sgd_velocity"] = arrays["params"]
        elif optimizer.keys() == {"kind", "t"} and optimizer["kind"] == "adam":
            if not _is_int(optimizer["t"]) or optimizer["t"] < 0:
                fail(f"the Adam step count t must be an integer >= 0; got "
                     f"{optimizer['t']!r}")
            arrays["adam_m"] = arrays["adam_v"] = arrays["params"]
        else:
            fail(f"unknown optimizer state {optimizer!r}")
    rng = _check_rng(header["rng"], fail)

    # Arrays: the header's declarations, the expected ones and the members agree.
    described = header["arrays"]
    if not isinstance(described, dict):
        fail("arrays must be a JSON object")
    if set(described) != set(arrays):
        fail(f"the header describes arrays {sorted(described)}; expected "
             f"{sorted(arrays)}")
    if set(declared) != set(arrays):
        missing = sorted(set(arrays) - set(declared))
        extra = sorted(set(declared) - set(arrays))
        fail("; ".join(filter(None, [
            f"missing array(s) {missing}" if missing else "",
            f"unexpected array(s) {extra}" if extra else ""])))
    for key, (expected_dtype, expected_shape) in arrays.items():
        entry = described[key]
        if not (isinstance(entry, dict) and entry.keys() == {"dtype", "shape"}
                and isinstance(entry["dtype"], str) and isinstance(entry["shape"], list)):
            fail(f"the description of array {key!r} must be "
                 f"{{'dtype': str, 'shape': [int]}}; got {entry!r}")
        if expected_dtype is None:  # class labels
            if not _LABEL_DTYPE.fullmatch(entry["dtype"]):
                fail(f"array 'classes' has dtype {entry['dtype']!r}; class labels "
                     f"must be booleans, numbers or unicode strings")
            expected_dtype = entry["dtype"]
        if entry["dtype"] != expected_dtype:
            fail(f"array {key!r} is described with dtype {entry['dtype']!r}; "
                 f"expected {expected_dtype!r}")
        if entry["shape"] != list(expected_shape):
            fail(f"array {key!r} is described with shape {entry['shape']!r}; "
                 f"expected {list(expected_shape)!r}")
        found_dtype, found_shape = declared[key]
        if found_dtype.str != expected_dtype:
            fail(f"array {key!r} has dtype {found_dtype.str!r}; expected "
                 f"{expected_dtype!r}")
        if found_shape != tuple(expected_shape):
            fail(f"array {key!r} has shape {found_shape}; expected "
                 f"{tuple(expected_shape)}")

    return {"estimator": estimator, "fitted": fitted, "optimizer": optimizer,
            "rng": rng, "arrays": list(arrays)}


def _check_rng(info, fail):
    """The training Generator described by ``info`` (None if not stored)."""
    if info is None:
        return None
    if not (isinstance(info, dict) and info.keys() == {"bit_generator", "state"}
            and info["bit_generator"] in _BIT_GENERATORS
            and isinstance(info["state"], dict)):
        fail(f"rng must be null or {{'bit_generator': one of {list(_BIT_GENERATORS)}, "
             f"'state': {{...}}}}")
    bit_generator = getattr(np.random, info["bit_generator"])()
    try:
        bit_generator.state = info["state"]
        restored = _plain(bit_generator.state)
    except Exception as exc:
        fail(f"invalid random generator state ({type(exc).__name__}: {exc})")
    if restored != info["state"]:
        fail("invalid random generator state (it does not survive being set)")
    return np.random.Generator(bit_generator)


def _check_values(name, array, fail, n_iter=None):
    """Values of a loaded (or about to be saved) array (``n_iter``: the
    fitted ``n_iter_``, which bounds the epochs of ``history``)."""
    if name == "history":
        _check_history(array, n_iter, fail)
        return
    if name == "classes":
        if array.dtype.kind == "f" and v.nonfinite_index(array) is not None:
            fail("the class labels contain NaN or infinity")
        if array.size > 1 and not (array[1:] > array[:-1]).all():
            fail("the class labels are not sorted and distinct")
        return
    if v.nonfinite_index(array) is not None:
        fail(f"array {name!r} contains NaN or infinite values")
    if name == "adam_v" and (array < 0).any():
        fail("array 'adam_v' (Adam's second moments) contains negative values")


def _check_history(array, n_iter, fail):
    """The rows of ``history``: epochs increasing in [1, n_iter], every entry
    finite but a validation loss (NaN: none), rates > 0, norms >= 0, the
    clipped share in [0, 1], times >= 0."""
    if array.size == 0:
        return
    array = array.reshape(-1, len(HISTORY_KEYS))
    column = {key: array[:, j] for j, key in enumerate(HISTORY_KEYS)}
    values = np.delete(array, HISTORY_KEYS.index("validation_loss"), axis=1)
    epochs = column["epoch"]
    if (not np.isfinite(values).all() or np.isinf(column["validation_loss"]).any()
            or (epochs != np.round(epochs)).any() or epochs[0] < 1
            or (n_iter is not None and epochs[-1] > n_iter)
            or (np.diff(epochs) <= 0).any() or (column["learning_rate"] <= 0).any()
            or (column["grad_norm"] < 0).any() or (column["grad_norm_max"] < 0).any()
            or (column["clipped"] < 0).any() or (column["clipped"] > 1).any()
            or (column["time"] < 0).any()):
        fail("array 'history' is not a valid per-epoch history (epochs increasing in "
             "[1, n_iter_], finite values but a validation loss of NaN, learning rates "
             "> 0, gradient norms and times >= 0, clipped shares in [0, 1])")


def _build(spec, arrays, fail):
    """The estimator of a checked file, with its fitted state installed."""
    estimator = spec["estimator"]
    cls = type(estimator)
    fitted = spec["fitted"]
    state = {name: fitted[name] for name in cls._FITTED_ATTRIBUTES}
    state["loss_"] = None if fitted["loss_"] is None else float(fitted["loss_"])
    state["best_loss_"] = (math.inf if fitted["best_loss_"] == "inf"
                           else float(fitted["best_loss_"]))
    state["loss_curve_"] = [float(x) for x in fitted["loss_curve_"]]
    state["validation_loss_curve_"] = [float(x) for x in fitted["validation_loss_curve_"]]
    state["history_"] = _history_records(arrays["history"]) if "history" in arrays else []
    state["learning_rate_"] = float(fitted["learning_rate_"])
    if "_squeeze" in cls._TARGET_STATE:
        state["_squeeze"] = fitted[_SQUEEZE]
    if "classes_" in cls._TARGET_STATE:
        state["classes_"] = arrays["classes"]
    state["params_"] = arrays["params"]
    optimizer = spec["optimizer"]
    if optimizer is not None:
        optimizer = dict(optimizer, **{name: arrays[member] for name, member
                                       in _OPTIMIZER_MEMBERS[optimizer["kind"]].items()})
    state["optimizer"] = optimizer
    rng = spec["rng"]
    state["rng"] = v.check_random_state(estimator.random_state) if rng is None else rng
    # The architecture is that of the stored hyper-parameters, which _check
    # has matched against the stored layout.
    state["architecture"] = estimator._architecture()
    try:
        estimator._set_state(state)
    except ValueError as exc:  # pragma: no cover - _check has checked all of it
        fail(str(exc))
    return estimator
