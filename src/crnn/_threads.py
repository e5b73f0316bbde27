"""How crnn's work is threaded.

crnn runs its matrix products on one BLAS thread and parallelises over
blocks of sequences itself:

* :func:`one_blas_thread` holds scipy's BLAS at one thread while crnn works
  (every compiled pass does so too; nested and concurrent holds are
  counted, and the last restores the thread count the process had). The
  per-step products of a recurrence are too small to gain from BLAS's
  threads, whose spinning workers lose their core to any other busy
  process; held at one thread they run as fast as when the user pins BLAS.
* :func:`effective_n_jobs` turns the estimators' ``n_jobs`` into a number
  of threads: by default the cores this process may use, read from its CPU
  affinity, its cgroup's CPU quota and the BLAS thread count the process
  set (through ``threadpoolctl``, joblib's workers, or ``OPENBLAS_NUM_THREADS``).
* :func:`map_blocks` runs a function over fixed blocks of work on that many
  threads (the compiled passes release the GIL) and returns the results in
  block order, so that what is computed never depends on the thread count.
"""
import contextlib
import math
import operator
import os
from concurrent.futures import ThreadPoolExecutor, wait

from crnn.kernels import blas

__all__ = ["one_blas_thread", "available_cpus", "effective_n_jobs", "map_blocks"]


@contextlib.contextmanager
def one_blas_thread():
    """Hold scipy's BLAS at one thread for the ``with`` block."""
    blas.hold_blas_threads()
    try:
        yield
    finally:
        blas.release_blas_threads()


#: Where Linux states the CPU quota of the process's cgroup (v2, then v1).
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_QUOTA = ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                   "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _cgroup_cpus():
    """The CPU quota of this process's cgroup, in cores (rounded up), or None."""
    try:
        with open(CGROUP_CPU_MAX) as f:                               # cgroup v2
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:                                                              # cgroup v1
        with open(CGROUP_V1_QUOTA[0]) as f:
            quota = int(f.read())
        with open(CGROUP_V1_QUOTA[1]) as f:
            period = int(f.read())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus():
    """The cores this process may use: its CPU affinity, capped by its
    cgroup's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):                  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(cpus, quota) if quota else cpus)


def _blas_threads_set():
    """The thread count the process gave scipy's BLAS (not crnn's own hold)."""
    held, before = blas.blas_threads_held()
    if held:
        return before or 1
    return blas.blas_thread_count()


def effective_n_jobs(n_jobs=None):
    """The number of threads ``n_jobs`` means.

    ``None``: the cores this process may use (:func:`available_cpus`), and
    no more than the BLAS thread count the process set, so that a limit set
    with ``threadpoolctl``, inside a joblib worker or by
    ``OPENBLAS_NUM_THREADS`` is honoured. A positive integer: that many
    threads. A negative one counts back from the available cores, as in
    scikit-learn: -1 all of them, -2 all but one.
    """
    cpus = available_cpus()
    if n_jobs is None:
        blas_threads = _blas_threads_set()
        return max(1, min(cpus, blas_threads) if blas_threads else cpus)
    n_jobs = operator.index(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning: use None, a positive number of "
                         "threads, or -1 for all cores")
    return n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)


def map_blocks(function, blocks, n_threads, executor=None):
    """``[function(block) for block in blocks]``, run on up to ``n_threads``
    threads (of ``executor``, a ``ThreadPoolExecutor`` of that many workers,
    if given: a loop that maps many times reuses its threads). The results
    are in block order; each block's work is the same whatever the number
    of threads. The first exception raised is raised again, after every
    started block has finished."""
    blocks = list(blocks)
    n_threads = min(n_threads, len(blocks))
    with one_blas_thread():
        if n_threads <= 1:
            return [function(block) for block in blocks]
        if executor is not None:
            futures = [executor.submit(function, block) for block in blocks]
            try:
                return [future.result() for future in futures]
            finally:
                for future in futures:
                    future.cancel()
                wait(futures)
        with ThreadPoolExecutor(n_threads, thread_name_prefix="crnn") as pool:
            return list(pool.map(function, blocks))
