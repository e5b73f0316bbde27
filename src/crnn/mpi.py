"""Data-parallel training over the ranks of an MPI job, through mpi4py.

Each rank of the job holds a shard of the training sequences; together the
shards are one training set, rank 0's sequences first, then rank 1's, and so
on (:func:`shard` gives each rank an even, contiguous share of ``n``
sequences). :func:`fit` and :func:`partial_fit` train one model on all of
them:

* the starting weights, optimizer state and random generator are rank 0's,
  broadcast to every rank;
* every rank draws the same permutation of the global sequence indices, so
  the mini-batches are exactly those one process would draw from the
  concatenated data with the same ``random_state``; each rank runs forward
  and BPTT over its own sequences of each batch (on ``n_jobs`` threads);
* the batch's flat gradient is the sum over ranks of their parts, each
  already divided by the whole batch's count of scored terms, so that it is
  the global mean::

      g = (1 / count) * sum over ranks r of  sum over i in batch and shard r
          of  dE_i / dtheta

  It is reduced to rank 0 and broadcast back, so that every rank applies the
  same optimizer step to the same weights; the dropout masks are those one
  process draws for that batch;
* early stopping's validation sequences are drawn from the global indices
  too, and their loss is reduced the same way.

Every rank ends with the same fitted model, equal to the model one process
fits on the concatenated data to rounding: the gradient of a batch is summed
in another order (per rank, then over ranks, instead of in blocks of the
whole batch), which changes its last bits, and the steps carry that on. On
one rank the result is bit for bit that of ``model.fit``.

mpi4py and an MPI library are optional (``pip install "crnn[mpi]"``, or the
cluster's MPI and an mpi4py built against it); ``import crnn`` never imports
them. See the user guide's parallelism page for running on a cluster.
"""
import operator
import os

import numpy as np

from crnn import _validation as v
from crnn._sequences import packed_rows, packing
from crnn._threads import available_cpus, effective_n_jobs, one_blas_thread
from crnn._training import TrainingData, copy_state, train, training_blocks

__all__ = ["fit", "partial_fit", "shard"]

#: Hyper-parameters that may differ between ranks: they change neither the
#: data nor the arithmetic of a fit. The starting weights and random
#: generator are rank 0's, so ``random_state`` matters on rank 0 only.
RANK_LOCAL_PARAMS = ("n_jobs", "verbose", "random_state")


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            "crnn.mpi needs mpi4py and an MPI library: pip install 'crnn[mpi]' "
            "(mpi4py and MPICH), or mpi4py built against the cluster's MPI"
        ) from exc
    return MPI


def _communicator(comm):
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator; got "
                        f"{type(comm).__name__}")
    return MPI, comm


def shard(n_samples, comm=None):
    """This rank's share of ``n_samples`` sequences, as a slice.

    The shares are contiguous, in rank order, and as even as possible (the
    first ``n_samples % size`` ranks hold one more), so that the ranks'
    shards, concatenated in rank order, are the whole data.

    Parameters
    ----------
    n_samples : int
    comm : mpi4py.MPI.Intracomm, optional
        ``MPI.COMM_WORLD`` by default.

    Returns
    -------
    slice
    """
    _, comm = _communicator(comm)
    n_samples = operator.index(n_samples)
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0; got {n_samples}")
    size, rank = comm.Get_size(), comm.Get_rank()
    base, extra = divmod(n_samples, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def fit(model, X, y, lengths=None, *, comm=None):
    """Train ``model`` on the sequences of every rank of ``comm``.

    Every rank calls it with the same hyper-parameters (``n_jobs``,
    ``verbose`` and ``random_state`` excepted: each rank's ``n_jobs`` sets
    its own threads, only rank 0 prints, and rank 0's weights and random
    generator are the ones trained) and with its own shard of the data.
    The fit is the estimator's ``fit`` (``max_iter`` epochs, early stopping,
    ``warm_start`` from rank 0's fitted state, the same transaction on
    failure) over the concatenation of the shards in rank order.

    Parameters
    ----------
    model : RNNRegressor or RNNClassifier
    X, y, lengths
        This rank's sequences and targets, in any form the estimator's
        ``fit`` takes; at least one sequence on every rank.
    comm : mpi4py.MPI.Intracomm, optional
        The ranks that train together; ``MPI.COMM_WORLD`` by default.

    Returns
    -------
    model
        Fitted, with the same state on every rank.

    Notes
    -----
    Every rank draws the same permutation of the global sequence indices,
    so the mini-batches are those of one process on the concatenated data.
    The gradient of a batch is the sum over the ranks ``r`` of their parts,
    each divided by the whole batch's count of scored terms: the global
    mean, summed by one all-reduce::

        g = (1 / count) * sum_r  sum_{i in batch, i in shard r}  dE_i / dtheta

    then clipped and applied by the same optimizer step on every rank. The
    weights equal those of the estimator's ``fit`` on the concatenated data
    to rounding (the sum's order differs); on one rank, bit for bit.

    With ``n_jobs=None`` each rank uses its share of the cores of its node:
    the CPUs its node's ranks may run on, divided by their number.

    An error on one rank (invalid data, too little memory) is raised on
    every rank: on the rank where it happened as itself, on the others as
    a RuntimeError that names that rank. A ``KeyboardInterrupt`` reaches
    one rank only; ``mpiexec`` ends the job.
    """
    return _train(model, X, y, lengths, comm, partial=False)


def partial_fit(model, X, y, lengths=None, *, classes=None, comm=None):
    """Train ``model`` for one epoch on the sequences of every rank of ``comm``,
    from rank 0's current weights (new ones if it is not fitted).

    As :func:`fit` otherwise. A classifier's classes are, on the first call,
    ``classes`` if given, else every label found on any rank; later calls
    must keep to them.

    Returns
    -------
    model
    """
    return _train(model, X, y, lengths, comm, partial=True, classes=classes)


class _Job:
    """The ranks of a communicator, doing one step of a fit together."""

    def __init__(self, comm):
        self.MPI, self.comm = _communicator(comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def agree(self, what, step):
        """``step()`` on every rank; if it raises on any rank, raise on all."""
        try:
            result, error = step(), None
        except Exception as exc:            # reported to every rank, then raised
            result, error = None, exc
        errors = self.comm.allgather(
            None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        for rank, message in enumerate(errors):
            if message is not None:
                raise RuntimeError(f"{what} failed on rank {rank} of {self.size}: {message}")
        return result

    def same(self, what, value):
        """ValueError on every rank unless ``value`` is equal on all."""
        values = self.comm.allgather(value)
        for rank, theirs in enumerate(values):
            if theirs != values[0]:
                raise ValueError(f"every rank must train the same model: {what} is "
                                 f"{theirs} on rank {rank} but {values[0]} on rank 0")

    def sum(self, local, out):
        """``out`` = the sum over ranks of ``local``, the same bits on every rank.

        An all-reduce; on more than two ranks, rank 0's result is broadcast
        too, since MPI may sum in another order on each rank (on two, each
        computes ``a + b``, which IEEE addition makes the same bits).
        """
        self.comm.Allreduce(local, out, op=self.MPI.SUM)
        if self.size > 2:
            self.comm.Bcast(out, root=0)
        return out

    def threads_per_rank(self):
        """This rank's share of its node's cores: the CPUs the node's ranks
        may use, divided among them (capped as :func:`effective_n_jobs` caps)."""
        node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else list(range(os.cpu_count() or 1))
            union = set().union(*node.allgather(cpus))
            share = max(1, len(union) // node.Get_size())
        finally:
            node.Free()
        return max(1, min(share, available_cpus(), effective_n_jobs(None)))


def _settings(model):
    """The hyper-parameters every rank must share, as comparable text."""
    return {name: repr(value) for name, value in model.get_params(deep=False).items()
            if name not in RANK_LOCAL_PARAMS}


def _train(model, X, y, lengths, comm, partial, classes=None):
    job = _Job(comm)
    dtype = job.agree("checking the hyper-parameters", model._validate_params)
    mine, first = _settings(model), job.comm.bcast(_settings(model), root=0)
    differ = job.comm.allgather(sorted(name for name in mine if mine[name] != first[name]))
    for rank, names in enumerate(differ):
        if names:
            raise ValueError(f"every rank must train the same model: rank {rank}'s "
                             f"hyper-parameters differ from rank 0's: {', '.join(names)}")

    # rank 0's starting point: its fitted state when it continues, else None
    def start():
        continuing = model._is_fitted() and (partial or model.warm_start)
        if not continuing:
            return None
        model._check_warm_start(dtype)
        return model._get_state()
    initial = job.agree("reading rank 0's fitted state",
                        start if job.rank == 0 else (lambda: None))
    initial = job.comm.bcast(initial, root=0)
    continuing = initial is not None

    # the working estimator: trained, then committed to ``model``
    work = type(model)(**model.get_params(deep=False))
    if job.rank != 0:
        work.set_params(verbose=0)
    if model.n_jobs is None:
        work.set_params(n_jobs=job.threads_per_rank())
    if continuing:
        initial = copy_state(initial)
        job.agree("installing rank 0's fitted state", lambda: work._set_state(initial))

    seqs, found, target = job.agree("checking the training data", lambda: _local_data(
        work, X, y, lengths, dtype, continuing))
    job.same("the number of features", seqs.item_shape[0])
    if "classes_" in work._TARGET_STATE and not continuing and classes is None:
        # every label of every rank
        labels = job.comm.allgather(v.unique_labels(found))
        classes = job.agree("collecting the class labels",
                            lambda: v.unique_labels(np.concatenate(labels)))
    entries = job.agree("checking the targets", lambda: work._target_entries(
        found, continuing, classes))
    if not continuing:
        job.same("the targets' form", {k: repr(entries[k]) for k in entries})
    target = job.agree("encoding the targets", lambda: work._encode_targets(target, entries))
    n_features = seqs.item_shape[0]
    job.agree("checking the memory", lambda: work._check_training_memory(
        n_features, entries["n_outputs_"], dtype))

    counts = job.comm.allgather(seqs.n)
    start_row = int(sum(counts[:job.rank]))
    all_lengths = np.concatenate(job.comm.allgather(seqs.lengths)).astype(np.intp)
    if continuing:
        state = work._get_state(copy_arrays=True)
    else:
        state = job.comm.bcast(
            work._new_state(n_features, entries, dtype) if job.rank == 0 else None, root=0)
    network = work._make_network(n_features, entries["n_outputs_"], dtype)
    data = ShardedData(job, seqs, target, work.return_sequences, all_lengths, start_row)
    installed = getattr(work, "params_", None)
    epochs, early = (1, False) if partial else (work.max_iter, work.early_stopping)
    try:
        with one_blas_thread():
            train(work, network, state, data, epochs, early,
                  warn=not partial and job.rank == 0)
    finally:
        if work._is_fitted() and work.params_ is not installed:     # committed
            model._set_state(work._get_state())
    return model


def _local_data(work, X, y, lengths, dtype, continuing):
    seqs = v.check_sequences(X, dtype, lengths,
                             work.n_features_in_ if continuing else None)
    found, target = work._check_targets(y, seqs, dtype)
    return seqs, found, target


class ShardedData(TrainingData):
    """The training sequences of every rank of a job: this rank's shard,
    packed and run here, and every sequence's length (which fixes the
    batches' counts, blocks and dropout masks).

    Global sequence ``i`` is this rank's ``i - start`` when
    ``start <= i < start + seqs.n``.
    """

    def __init__(self, job, seqs, target, return_sequences, lengths, start):
        super().__init__(seqs, target, return_sequences)
        self.job, self.lengths = job, lengths
        self.start, self.stop = start, start + seqs.n
        self.T_max = int(lengths.max())
        self.scalars, self.summed = np.zeros(2), np.zeros(2)
        self.grad_sum = None

    @property
    def n(self):
        return self.lengths.size

    def _local(self, idx):
        """This rank's sequences of ``idx``, in their order, as local indices."""
        return idx[(idx >= self.start) & (idx < self.stop)] - self.start

    def _count(self, network, idx):
        """The count of scored terms of the global sequences ``idx``."""
        return network._count(int(self.lengths[idx].sum()), idx.size)

    def _keys(self, ids, lengths):
        """A key for every packed row of the global sequences ``ids`` (of
        ``lengths``), in packed order: ``sequence * T_max + step``."""
        order, batch_sizes = packing(lengths)
        j, t = packed_rows(batch_sizes)
        return ids[order][j] * self.T_max + t

    def _local_keys(self, batch):
        """The keys of a packed batch of this rank's sequences."""
        return (batch.src_seq + self.start) * self.T_max + batch.src_t

    def _masks(self, parts, network, rng):
        """The dropout masks one process draws for ``parts`` (global index
        arrays, each packed on its own; rows ``N`` drawn as ``chunks(part)``
        lists them), as a function of a packed local batch: its rows of them."""
        keys, drawn = [], []
        for part, chunks in parts:
            for N in chunks:
                masks = network._masks(rng, N)
                if masks is None:
                    return lambda batch: None
                drawn.append(masks)
            keys.append(self._keys(part, self.lengths[part]))
        keys, drawn = np.concatenate(keys), np.concatenate(drawn, axis=1)
        order = np.argsort(keys)
        ordered = keys[order]

        def rows(batch):
            return np.ascontiguousarray(
                drawn[:, order[np.searchsorted(ordered, self._local_keys(batch))]])
        return rows

    def loss_and_gradient(self, blocks, params, idx, bptt_steps, alpha, grad, rng):
        network, seqs, target = blocks.network, self.seqs, self.target
        count, local = self._count(network, idx), self._local(idx)
        if bptt_steps is None:
            # the blocks one process runs, for their masks
            parts = [(b, [int(self.lengths[b].sum())]) for b in training_blocks(idx)]
        else:
            batch_sizes = packing(self.lengths[idx])[1]
            parts = [(idx, [int(batch_sizes[t0:t0 + bptt_steps].sum())
                            for t0 in range(0, batch_sizes.size, bptt_steps)])]
        masks = self._masks(parts, network, rng)

        def local_part():
            if local.size == 0:
                grad.fill(0)
                return 0.0
            if bptt_steps is None:
                return blocks.data_loss(params, seqs, training_blocks(local), target,
                                        self.return_sequences, grad, count,
                                        lambda k, batch: masks(batch))
            batch = seqs.pack(local)
            return network.loss_grad_truncated(
                params, batch, batch.targets(target, self.return_sequences), bptt_steps,
                0.0, grad, count=count, masks=masks(batch))[0]

        loss = self._reduce(local_part, grad)
        network._penalty_grad(params, grad, alpha)
        return loss + network.penalty(params, alpha)

    def _reduce(self, local_part, grad=None):
        """Run ``local_part`` (this rank's loss, and gradient into ``grad``)
        and sum both over the ranks; an error on any rank is raised on all."""
        error = None
        try:
            self.scalars[:] = local_part(), 0.0
        except Exception as exc:            # reported to every rank, then raised
            error = exc
            self.scalars[:] = 0.0, 1.0
        loss, failed = self.job.sum(self.scalars, self.summed)
        if error is not None:
            raise error
        if failed:
            raise RuntimeError(f"training failed on another of the {self.job.size} ranks")
        if grad is not None:
            if self.grad_sum is None or self.grad_sum.dtype != grad.dtype:
                self.grad_sum = np.empty_like(grad)
            grad[...] = self.job.sum(grad, self.grad_sum)
        return float(loss)

    def validation_loss(self, network, idx, alpha):
        local, count = self._local(idx), self._count(network, idx)
        batch = self.seqs.pack(local) if local.size else None
        target = None if batch is None else batch.targets(self.target, self.return_sequences)

        def loss(params):
            data_loss = self._reduce(lambda: 0.0 if batch is None else network.loss(
                params, batch, target, 0.0, count))
            return data_loss + network.penalty(params, alpha)
        return loss
