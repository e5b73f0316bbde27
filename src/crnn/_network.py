"""A stack of recurrent layers under an output layer, over one flat buffer."""
import numpy as np

from crnn import _output
from crnn._cells import glorot_uniform, make_cell
from crnn._params import ParamLayout


class RecurrentNetwork:
    """Recurrent layers (Elman, LSTM or GRU; stacked; uni- or bidirectional)
    under an output layer, with a loss.

    For inputs ``x_1 .. x_T``, layer ``l`` and direction ``d`` compute states
    ``S^{l,d}_t`` from the outputs of layer ``l - 1`` (both directions
    concatenated; ``x_t`` for ``l = 0``); the reverse direction reads each
    sequence from its own last step to its first. The output layer reads the
    last layer::

        Y_t = g2(W_y [S^{L,fwd}_t ; S^{L,rev}_t] + b_y)      (return_sequences)
        Y   = g2(W_y [S^{L,fwd}_n ; S^{L,rev}_n] + b_y)      (otherwise)

    where ``S_n`` is a direction's final state: the forward state at the
    sequence's own last step, and the reverse state after its first step.

    All parameters live in one flat buffer laid out by :attr:`layout`; every
    method takes that buffer explicitly, so one network object serves any
    number of parameter vectors. Batches are :class:`~crnn._sequences.PackedBatch`.

    Parameters
    ----------
    n_inputs, hidden_size, n_outputs : int
        ``I``, ``H`` and ``O``.
    cell : {"elman", "lstm", "gru"}
    num_layers : int
    bidirectional : bool
    activation : {"tanh", "relu", "sigmoid", "identity"}
        The hidden activation of the Elman cell.
    output_activation : {"identity", "tanh", "sigmoid", "softmax"}
    loss : {"squared_error", "cross_entropy"}
        ``"cross_entropy"`` needs ``output_activation="softmax"`` and integer
        class targets.
    return_sequences : bool
        Score every step (True) or one output per sequence (False).
    dropout : float
        Probability of zeroing each input of layers 1 .. L-1 in training.
    forget_bias : float
        Initial forget-gate bias of LSTM cells.
    dtype : numpy dtype
    """

    def __init__(self, n_inputs, hidden_size, n_outputs, *, cell="elman", num_layers=1,
                 bidirectional=False, activation="tanh", output_activation="identity",
                 loss="squared_error", return_sequences=False, dropout=0.0,
                 forget_bias=1.0, dtype=np.float64):
        if loss == "cross_entropy" and output_activation != "softmax":
            raise ValueError("the cross_entropy loss needs a softmax output")
        self.I, self.H, self.O = int(n_inputs), int(hidden_size), int(n_outputs)
        self.cell = make_cell(cell, activation, forget_bias)
        self.L = int(num_layers)
        self.D = 2 if bidirectional else 1
        self.g2 = output_activation
        self.loss_name = loss
        self.return_sequences = bool(return_sequences)
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        blocks = []
        # One "unit" per layer and direction, with PyTorch's suffixes.
        self.units = []
        for l in range(self.L):
            I_l = self.I if l == 0 else self.D * self.H
            for d in range(self.D):
                suffix = f"_l{l}" + ("_reverse" if d else "")
                names = {}
                for name, shape in self.cell.blocks(I_l, self.H):
                    names[name] = name + suffix
                    blocks.append((name + suffix, shape))
                self.units.append(names)
        blocks += [("W_y", (self.O, self.D * self.H)), ("b_y", (self.O,))]
        self.layout = ParamLayout(blocks)
        # Blocks the L2 penalty applies to: weights, not biases.
        self.weight_names = [n for n in self.layout.names if n.startswith("W")]

    # -- parameters ---------------------------------------------------------

    def views(self, buffer):
        """Named views of a flat parameter (or gradient) buffer, cached.

        Returns ``(blocks, units)``: a dict of every block by its full name,
        and per unit ``k = layer * D + direction`` a dict keyed by the cell's
        generic names (``W_ih``, ``W_hh``, ``b``, ...). Views of the last few
        buffers are kept, so the per-batch cost does not grow with the number
        of blocks.
        """
        cache = self.__dict__.setdefault("_view_cache", {})
        hit = cache.get(id(buffer))
        if hit is not None and hit[0] is buffer:
            return hit[1], hit[2]
        blocks = self.layout.views(buffer)
        units = [{name: blocks[full] for name, full in unit.items()} for unit in self.units]
        if len(cache) >= 8:
            cache.clear()
        cache[id(buffer)] = (buffer, blocks, units)
        return blocks, units

    def unit_views(self, buffer, k):
        """Views of unit ``k = layer * D + direction`` (see :meth:`views`)."""
        return self.views(buffer)[1][k]

    def init_params(self, rng, random_biases=False):
        """A new flat parameter buffer.

        Input weights are Glorot-uniform and recurrent weights orthogonal, per
        gate block; biases are zero (the LSTM forget gate's is ``forget_bias``),
        or, with ``random_biases``, uniform in [-0.5, 0.5] (the gradient check
        uses this to exercise every term).
        """
        params = self.layout.zeros(self.dtype)
        for k in range(len(self.units)):
            self.cell.initialize(self.unit_views(params, k), rng)
        P = self.views(params)[0]
        P["W_y"][...] = glorot_uniform(rng, P["W_y"].shape)
        if random_biases:
            for name in self.layout.names:
                if not name.startswith("W"):
                    P[name][...] = rng.uniform(-0.5, 0.5, size=P[name].shape)
        return params

    def _penalty_grad(self, params, grad, alpha):
        """grad += alpha * W for every weight block (the penalty's gradient)."""
        if alpha:
            P, G = self.views(params)[0], self.views(grad)[0]
            for name in self.weight_names:
                G[name] += alpha * P[name]

    def penalty(self, params, alpha):
        """``(alpha / 2) * sum of squared weights`` (biases excluded)."""
        if alpha == 0:
            return 0.0
        P = self.views(params)[0]
        return 0.5 * alpha * sum(float(np.vdot(P[n], P[n])) for n in self.weight_names)

    def zero_state(self, B):
        """Initial states of every unit: zeros, ``(B, H)`` each."""
        return [tuple(np.zeros((B, self.H), dtype=self.dtype)
                      for _ in range(self.cell.n_states))
                for _ in self.units]

    # -- forward ------------------------------------------------------------

    def forward(self, params, batch, initial=None, rng=None):
        """Run the recurrent stack over a packed batch.

        Parameters
        ----------
        params : ndarray (P,)
        batch : PackedBatch
        initial : list of state tuples, optional
            One per unit (``layer * D + direction``), rows in packed order;
            zeros by default.
        rng : numpy Generator, optional
            Draws the dropout masks; without it no dropout is applied
            (inference).

        Returns
        -------
        cache : dict
            ``S`` (the scored states, ``(N, D*H)`` or ``(B, D*H)``),
            ``final`` (final state tuples per unit) and what backward needs.
        """
        if initial is None:
            initial = self.zero_state(batch.B)
        bs = batch.batch_sizes
        layer_in = batch.X
        inputs, caches, finals, masks = [], [], [], []
        for l in range(self.L):
            if l > 0 and self.dropout > 0 and rng is not None:
                keep = 1.0 - self.dropout
                mask = (rng.random(layer_in.shape) < keep).astype(self.dtype) / keep
                layer_in = layer_in * mask
                masks.append(mask)
            else:
                masks.append(None)
            outs = []
            for d in range(self.D):
                k = l * self.D + d
                Hs, state_n, cache = self.cell.forward(
                    self.unit_views(params, k), layer_in, bs, initial[k], d == 1)
                outs.append(Hs)
                finals.append(state_n)
                caches.append(cache)
            inputs.append(layer_in)
            layer_in = outs[0] if self.D == 1 else np.concatenate(outs, axis=1)
        if self.return_sequences:
            S = layer_in
        else:
            last = finals[-self.D:]
            S = last[0][0] if self.D == 1 else np.concatenate([s[0] for s in last], axis=1)
        return {"S": S, "final": finals, "initial": initial, "inputs": inputs,
                "caches": caches, "masks": masks}

    def output(self, params, batch, initial=None):
        """Outputs ``Y``: ``(N, O)`` packed per step, or ``(B, O)`` per sequence
        in packed order; and the final states of every unit."""
        P = self.views(params)[0]
        cache = self.forward(params, batch, initial)
        Y = _output.activate(cache["S"] @ P["W_y"].T + P["b_y"], self.g2)
        return Y, cache["final"]

    # -- loss and gradient --------------------------------------------------

    def _data_loss(self, Z, target, count):
        if self.loss_name == "cross_entropy":
            return _output.softmax_cross_entropy(Z, target.reshape(-1), count)
        return _output.squared_error(Z, target.reshape(Z.shape), self.g2, count)

    def _count(self, Z):
        """How many terms the mean loss averages over."""
        return Z.shape[0] if self.loss_name == "cross_entropy" else Z.size

    def _batch_count(self, batch):
        """How many terms the mean loss of a whole batch averages over."""
        rows = batch.N if self.return_sequences else batch.B
        return rows if self.loss_name == "cross_entropy" else rows * self.O

    def loss(self, params, batch, target, alpha=0.0):
        """The training objective: mean data loss plus the L2 penalty.

        ``target`` is packed like the scored states: ``(N, O)`` / ``(B, O)``
        floats for squared error, ``(N,)`` / ``(B,)`` classes for cross-entropy.
        """
        P = self.views(params)[0]
        Z = self.forward(params, batch)["S"] @ P["W_y"].T + P["b_y"]
        value, _ = self._data_loss(Z, target, self._count(Z))
        return value + self.penalty(params, alpha)

    def loss_grad(self, params, batch, target, alpha=0.0, grad=None, rng=None):
        """Loss and its gradient with respect to every parameter, by BPTT.

        Parameters
        ----------
        params : ndarray (P,)
        batch : PackedBatch
        target : ndarray
            As for :meth:`loss`.
        alpha : float
            L2 penalty strength.
        grad : ndarray (P,), optional
            Buffer to write the gradient into (it is overwritten).
        rng : numpy Generator, optional
            Dropout masks (training); None for the exact, deterministic loss.

        Returns
        -------
        loss : float
        grad : ndarray (P,)
        """
        if grad is None:
            grad = self.layout.zeros(self.dtype)
        else:
            grad.fill(0)
        cache = self.forward(params, batch, rng=rng)
        value, dS = self._output_backward(params, grad, cache["S"], target)
        self.backward(params, grad, batch, cache, dS)
        self._penalty_grad(params, grad, alpha)
        return value + self.penalty(params, alpha), grad

    def _output_backward(self, params, grad, S, target, count=None):
        """Loss of the output layer on states ``S``; accumulates dW_y, db_y.

        Returns the loss and ``dE/dS``.
        """
        P, G = self.views(params)[0], self.views(grad)[0]
        Z = S @ P["W_y"].T + P["b_y"]
        value, dZ = self._data_loss(Z, target, self._count(Z) if count is None else count)
        dZ = dZ.astype(self.dtype, copy=False)
        # Z = S W_y^T + b_y: dW_y += dZ^T S, db_y += sum dZ, dS = dZ W_y.
        G["W_y"] += dZ.T @ S
        G["b_y"] += dZ.sum(axis=0)
        return value, dZ @ P["W_y"]

    def backward(self, params, grad, batch, cache, dS, d_final=None):
        """BPTT through the stack; accumulates every recurrent gradient.

        ``dS`` is dE/dS for the scored states; ``d_final``, optionally, adds
        gradients arriving at the final states of every unit.
        """
        bs, H, D = batch.batch_sizes, self.H, self.D
        d_final = d_final or [tuple(np.zeros_like(s) for s in state)
                              for state in cache["final"]]
        if self.return_sequences:
            d_out = dS
        else:
            d_out = None
            for d in range(D):
                k = (self.L - 1) * D + d
                d_final[k] = (d_final[k][0] + dS[:, d * H:(d + 1) * H],) + d_final[k][1:]
        for l in range(self.L - 1, -1, -1):
            layer_in = cache["inputs"][l]
            d_in = None
            for d in range(D):
                k = l * D + d
                dHs = (np.zeros((batch.N, H), dtype=self.dtype) if d_out is None
                       else np.ascontiguousarray(d_out[:, d * H:(d + 1) * H]))
                dX, _ = self.cell.backward(
                    self.unit_views(params, k), self.unit_views(grad, k), layer_in, bs,
                    cache["initial"][k], cache["caches"][k], dHs, d_final[k],
                    l > 0, d == 1)
                if l > 0:
                    d_in = dX if d_in is None else d_in + dX
            if l > 0:
                mask = cache["masks"][l]
                d_out = d_in if mask is None else d_in * mask

    # -- truncated BPTT -----------------------------------------------------

    def _chunks(self, batch, k):
        """Consecutive time chunks of at most ``k`` steps of a packed batch.

        Yields ``(chunk, r0, r1, n_cont)``: the chunk as a packed batch, its
        packed rows ``r0:r1`` in ``batch``, and how many of its sequences
        continue into the next chunk (those are a prefix of the rows).
        """
        bs = batch.batch_sizes
        T = bs.size
        offsets = np.concatenate(([0], np.cumsum(bs)))
        for t0 in range(0, T, k):
            t1 = min(t0 + k, T)
            chunk = Chunk(batch.X[offsets[t0]:offsets[t1]], bs[t0:t1])
            yield chunk, offsets[t0], offsets[t1], (bs[t1] if t1 < T else 0)

    @staticmethod
    def _carry(state, B):
        """Final states of the previous chunk for the ``B`` continuing rows."""
        if state is None:
            return None
        return [tuple(np.ascontiguousarray(s[:B]) for s in unit) for unit in state]

    def _chunk_scored(self, S, target, r0, r1, n_cont):
        """The scored states of a chunk and their targets.

        Per step, every row of the chunk; per sequence, the rows whose
        sequence ends in this chunk (the rest are scored in a later chunk).
        """
        if self.return_sequences:
            return S, target[r0:r1], slice(None)
        rows = slice(n_cont, S.shape[0])
        return S[rows], target[rows], rows

    def loss_grad_truncated(self, params, batch, target, k, alpha=0.0, grad=None,
                            rng=None):
        """Loss and gradient by truncated BPTT over chunks of ``k`` steps.

        The batch is run forward chunk by chunk, each chunk starting from the
        final states of the previous one; each chunk is backpropagated on its
        own, so no gradient crosses a chunk boundary (the carried states are
        treated as constants). The loss is the same mean over the whole batch
        as :meth:`loss_grad`'s, which this equals exactly when ``k >= T``.
        """
        if grad is None:
            grad = self.layout.zeros(self.dtype)
        else:
            grad.fill(0)
        count = self._batch_count(batch)
        total, state = 0.0, None
        for chunk, r0, r1, n_cont in self._chunks(batch, k):
            cache = self.forward(params, chunk, self._carry(state, chunk.B), rng)
            S, t, rows = self._chunk_scored(cache["S"], target, r0, r1, n_cont)
            dS = np.zeros_like(cache["S"])
            if S.shape[0]:
                value, dS[rows] = self._output_backward(params, grad, S, t, count)
                total += value
            self.backward(params, grad, chunk, cache, dS)
            state = cache["final"]
        self._penalty_grad(params, grad, alpha)
        return total + self.penalty(params, alpha), grad

    def loss_truncated(self, params, batch, target, k, alpha=0.0, carry_params=None):
        """The objective whose gradient truncated BPTT computes.

        Each chunk's loss is evaluated at ``params`` from initial states
        carried along by ``carry_params`` (``params`` by default), so that the
        carried states are constants: the derivative of this function with
        respect to ``params`` at ``params == carry_params`` is exactly
        :meth:`loss_grad_truncated`'s gradient.
        """
        carry_params = params if carry_params is None else carry_params
        P = self.views(params)[0]
        count = self._batch_count(batch)
        total, state = 0.0, None
        for chunk, r0, r1, n_cont in self._chunks(batch, k):
            initial = self._carry(state, chunk.B)
            cache = self.forward(params, chunk, initial)
            S, t, _ = self._chunk_scored(cache["S"], target, r0, r1, n_cont)
            if S.shape[0]:
                total += self._data_loss(S @ P["W_y"].T + P["b_y"], t, count)[0]
            if carry_params is not params:
                cache = self.forward(carry_params, chunk, initial)
            state = cache["final"]
        return total + self.penalty(params, alpha)


class Chunk:
    """A run of consecutive steps of a packed batch, itself a packed batch."""

    def __init__(self, X, batch_sizes):
        self.X = X
        self.batch_sizes = batch_sizes
        self.N = X.shape[0]
        self.B = int(batch_sizes[0])
