"""Sets of sequences, possibly of different lengths, and packed batches of them.

A :class:`Sequences` holds ``n`` validated sequences of ``F`` values per step:
as one ``(n, T, F)`` array when they all have length ``T``, or as the rows of
all sequences stacked into one ``(sum of lengths, F)`` array otherwise.

A :class:`PackedBatch` is what the kernels take: the sequences of a batch
sorted longest first and stored time-major, step after step, with only the
sequences still running at each step (PyTorch's ``PackedSequence``). No
compute is spent on padding and no mask is needed.
"""
from functools import cached_property

import numpy as np


class Sequences:
    """``n`` sequences with per-step values of shape ``item_shape``.

    Parameters
    ----------
    data : ndarray
        ``(n, T, *item_shape)`` when ``uniform``, else ``(sum(lengths), *item_shape)``.
    lengths : ndarray of int, shape (n,)
    uniform : bool
        Whether all sequences have one length and ``data`` is the 3-D form.
    as_list : bool
        Whether the user gave a list, so that per-step results go back as a list.
    """

    def __init__(self, data, lengths, uniform, as_list=False):
        self.data = data
        self.lengths = np.asarray(lengths, dtype=np.intp)
        self.uniform = uniform
        self.as_list = as_list
        self.starts = None if uniform else np.concatenate(
            ([0], np.cumsum(self.lengths)[:-1])).astype(np.intp)

    @property
    def n(self):
        return self.lengths.size

    @property
    def item_shape(self):
        return self.data.shape[2:] if self.uniform else self.data.shape[1:]

    def gather(self, seq, t):
        """Rows ``(seq[k], t[k])`` for every ``k``, as one array."""
        if self.uniform:
            return self.data[seq, t]
        return self.data[self.starts[seq] + t]

    def pack(self, idx=None):
        """The sequences ``idx`` (all by default) as a :class:`PackedBatch`."""
        idx = np.arange(self.n) if idx is None else np.asarray(idx, dtype=np.intp)
        return PackedBatch(self, idx)


def packed_rows(batch_sizes):
    """Where every packed row comes from, for a packing with ``batch_sizes``:
    ``(j, t)``, the row's sequence in packed (longest first) order and its step."""
    batch_sizes = np.asarray(batch_sizes, dtype=np.intp)
    t = np.repeat(np.arange(batch_sizes.size, dtype=np.intp), batch_sizes)
    offsets = np.concatenate(([0], np.cumsum(batch_sizes)[:-1]))
    return np.arange(t.size, dtype=np.intp) - np.repeat(offsets, batch_sizes), t


def packing(lengths):
    """How sequences of ``lengths`` are packed: ``order`` (the position of the
    ``j``-th longest; ties keep their order) and the ``batch_sizes``."""
    lengths = np.asarray(lengths, dtype=np.intp)
    order = np.argsort(-lengths, kind="stable")
    ordered = lengths[order]
    batch_sizes = np.count_nonzero(
        ordered[None, :] > np.arange(ordered[0])[:, None], axis=1).astype(np.intp)
    return order, batch_sizes


class PackedBatch:
    """Sequences ``idx`` of a :class:`Sequences`, packed for the kernels.

    Attributes
    ----------
    X : ndarray (N, F)
        Packed rows, time-major: step 0 of every sequence, then step 1 of
        those still running, ...; C-contiguous.
    batch_sizes : ndarray (T,) of intp
        Sequences running at each step, non-increasing.
    order : ndarray (B,)
        ``order[j]`` is the position in ``idx`` of the ``j``-th longest sequence.
    lengths : ndarray (B,)
        Lengths in packed (longest first) order.
    sources : ndarray (B,)
        ``sources[j]`` is the index into the source of the ``j``-th longest sequence.
    src_seq, src_t : ndarray (N,)
        Sequence (index into the source) and step of every packed row
        (computed on first use: a training step needs neither).
    """

    def __init__(self, source, idx):
        lengths = source.lengths[idx]
        self.B = idx.size
        # Equal lengths keep their order, and packing is a transpose to time-major.
        self.in_order = source.uniform
        if source.uniform:
            self.order = np.arange(idx.size)
            self.batch_sizes = np.empty(int(lengths[0]), dtype=np.intp)
            self.batch_sizes.fill(self.B)
        else:
            self.order, self.batch_sizes = packing(lengths)
        self.lengths = lengths[self.order]
        self.T = int(self.lengths[0])
        self.sources = sources = idx[self.order]
        if source.uniform:
            # (all the sequences in their order: no gather before the transpose)
            whole = self.B == source.n and (self.B == 1 or (sources[1:] > sources[:-1]).all())
            data = source.data if whole else np.take(source.data, sources, axis=0)
            self.X = np.ascontiguousarray(np.swapaxes(data, 0, 1)).reshape(self.T * self.B, -1)
        else:
            self.X = np.ascontiguousarray(source.gather(self.src_seq, self.src_t))
        self.N = self.X.shape[0]

    @cached_property
    def _rows(self):
        return packed_rows(self.batch_sizes)

    @property
    def src_t(self):
        return self._rows[1]

    @cached_property
    def src_seq(self):
        return self.sources[self._rows[0]]

    def pack_like(self, values):
        """Per-step values (a :class:`Sequences` with the same lengths), packed."""
        return np.ascontiguousarray(values.gather(self.src_seq, self.src_t))

    def per_sequence(self, values):
        """Per-sequence values ``values[idx]`` in packed order."""
        return values[self.sources]

    def targets(self, target, per_step):
        """The targets of this batch, packed like its scored states: per step
        (``target`` a :class:`Sequences`) or per sequence (an array)."""
        return self.pack_like(target) if per_step else self.per_sequence(target)

    def unpack_last(self, P):
        """Rows per packed sequence ``(B, ...)`` back in the order of ``idx``."""
        if self.in_order:
            return P
        out = np.empty_like(P)
        out[self.order] = P
        return out

    def unpack_steps(self, P, as_list, T=None, fill=0):
        """Packed rows ``(N, ...)`` back to ``(B, T, ...)`` (or a list of
        ``(L_i, ...)``) in the order of ``idx``; ``fill`` past each end."""
        position = np.empty(self.B, dtype=np.intp)
        position[self.order] = np.arange(self.B)
        # Row of packed sequence j at step t, for the user's i: j = position[i].
        user_i = self.order[self._rows[0]]
        if as_list:
            flat_len = self.lengths[position]
            starts = np.concatenate(([0], np.cumsum(flat_len)[:-1]))
            flat = np.empty_like(P)
            flat[starts[user_i] + self.src_t] = P
            return [flat[s:s + n] for s, n in zip(starts, flat_len)]
        out = np.full((self.B, T or self.T) + P.shape[1:], fill, dtype=P.dtype)
        out[user_i, self.src_t] = P
        return out
