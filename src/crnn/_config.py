"""Process-wide settings of crnn: :func:`set_config`, :func:`get_config`,
:func:`config_context`.

``memory_limit`` bounds what crnn allocates for one model or one batch: a
model whose parameters, gradient and optimizer state (with the copies a
transactional fit keeps), or a batch whose workspace, would need more is
refused with a :class:`MemoryError` that says how much it needs -- before
anything is allocated, rather than relying on the operating system's
overcommit and being killed by it later.
"""
import contextlib
import os
import resource

__all__ = ["get_config", "set_config", "config_context"]

_config = {"memory_limit": None}


def get_config():
    """The current settings, as a dict.

    ``memory_limit`` : int or None
        Bytes crnn may allocate for one model or one batch; None (the
        default) means the memory this process may use: the smallest of the
        machine's physical memory, the cgroup limit (``memory.max`` or
        ``memory.limit_in_bytes``) and ``RLIMIT_AS``.
    """
    return dict(_config)


def set_config(memory_limit=None):
    """Change crnn's process-wide settings (see :func:`get_config`).

    Parameters
    ----------
    memory_limit : int or None
        Bytes, at least 1; None restores the default (the memory this
        process may use).
    """
    if memory_limit is not None and (isinstance(memory_limit, bool) or not isinstance(
            memory_limit, int) or memory_limit < 1):
        raise ValueError(f"memory_limit must be None or an int >= 1 (bytes); got "
                         f"{memory_limit!r}")
    _config["memory_limit"] = memory_limit


@contextlib.contextmanager
def config_context(**settings):
    """Settings (as :func:`set_config` takes them) for the duration of a
    ``with`` block; the previous ones are restored after it.

    Examples
    --------
    >>> import crnn
    >>> with crnn.config_context(memory_limit=2**20):
    ...     crnn.get_config()["memory_limit"]
    1048576
    >>> crnn.get_config()["memory_limit"] is None
    True
    """
    before = get_config()
    set_config(**{**before, **settings})
    try:
        yield
    finally:
        set_config(**before)


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory():
    """``(bytes, where the number comes from)``: the memory this process may use."""
    limits = []
    try:
        limits.append((os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
                       "the machine's physical memory"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        value = _read_int(path)
        if value:
            limits.append((value, f"the cgroup limit ({path})"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1):
        limits.append((soft, "RLIMIT_AS"))
    return min(limits) if limits else (None, "no limit found")


def memory_limit():
    """``(bytes or None, where it comes from)``: the limit in force."""
    if _config["memory_limit"] is not None:
        return _config["memory_limit"], "crnn.set_config(memory_limit=...)"
    return available_memory()


def _format_bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def check_memory(nbytes, what):
    """MemoryError if ``nbytes`` is more than the memory limit.

    ``what`` says what needs the memory, e.g. "this model's parameters".
    """
    limit, source = memory_limit()
    if limit is not None and nbytes > limit:
        raise MemoryError(
            f"{what} would need {_format_bytes(nbytes)}, more than the "
            f"{_format_bytes(limit)} that crnn may use ({source}); make the model or "
            f"the batch smaller, or raise the limit with "
            f"crnn.set_config(memory_limit=...)"
        )
