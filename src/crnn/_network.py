"""A stack of recurrent layers under an output layer, over one flat buffer."""
import numpy as np

from crnn._cells import glorot_uniform, make_cell
from crnn._optim import sum_of_squares
from crnn._params import ParamLayout
from crnn.kernels.stack import BLOCKS, Stack


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

    With ``vocab_size`` ``V``, the inputs are token ids ``k_t`` in ``[0, V)``
    and layer 0 reads their embeddings, ``x_t = W_emb[k_t]`` (``W_emb``
    ``(V, I)``, PyTorch's ``nn.Embedding``): the product of ``W_emb^T`` with a
    one-hot vector, done as a row copy, whose gradient is the scatter-add
    ``dW_emb[k_t] += dE/dx_t`` (none into the row of ``padding_idx``).

    All parameters live in one flat buffer laid out by :attr:`layout`; every
    method takes that buffer explicitly, so one network object serves any
    number of parameter vectors. Batches are :class:`~crnn._sequences.PackedBatch`.
    Every method is one self-contained pass: nothing of one call is read by
    the next. States, initial and final, are ``(n_states, L*D, B, H)`` arrays
    (:meth:`state_shape`).

    Thread safety: a network runs one pass at a time. Its compiled
    :attr:`stack` refuses (RuntimeError) a pass that another thread starts
    while one runs; threads that train or predict at once use one network
    each, as the estimators do (they build a network per call).

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
    vocab_size : int, optional
        ``V``: the inputs are token ids, embedded in ``n_inputs`` dimensions.
    padding_idx : int, optional
        A token id whose embedding row starts at zero and gets no gradient.
    """

    def __init__(self, n_inputs, hidden_size, n_outputs, *, cell="elman", num_layers=1,
                 bidirectional=False, activation="tanh", output_activation="identity",
                 loss="squared_error", return_sequences=False, dropout=0.0,
                 forget_bias=1.0, dtype=np.float64, vocab_size=None, padding_idx=None):
        if loss == "cross_entropy" and output_activation != "softmax":
            raise ValueError("the cross_entropy loss needs a softmax output")
        self.V = int(vocab_size or 0)
        self.padding_idx = -1 if padding_idx is None else int(padding_idx)
        if padding_idx is not None and not 0 <= self.padding_idx < self.V:
            raise ValueError(f"padding_idx must be a token id in [0, vocab_size = "
                             f"{self.V}); got {padding_idx}")
        self.I, self.H, self.O = int(n_inputs), int(hidden_size), int(n_outputs)
        self.cell = make_cell(cell, activation, forget_bias)
        self.L = int(num_layers)
        self.D = 2 if bidirectional else 1
        self.g2 = output_activation
        self.loss_name = loss
        self.return_sequences = bool(return_sequences)
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        blocks = [("W_emb", (self.V, self.I))] if self.V else []
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
        if self.V:
            # N(0, 1), PyTorch's nn.Embedding; the padding row zero
            P["W_emb"][...] = rng.standard_normal(P["W_emb"].shape)
            if self.padding_idx >= 0:
                P["W_emb"][self.padding_idx] = 0
        if random_biases:
            for name in self.layout.names:
                if not name.startswith("W"):
                    P[name][...] = rng.uniform(-0.5, 0.5, size=P[name].shape)
        return params

    def frozen(self):
        """Flat indices of the parameters that get no gradient (training
        never changes them): the embedding row of ``padding_idx``."""
        if self.padding_idx < 0:
            return np.empty(0, dtype=np.intp)
        start = self.layout.slices["W_emb"].start + self.padding_idx * self.I
        return np.arange(start, start + self.I, dtype=np.intp)

    def _penalty_grad(self, params, grad, alpha):
        """grad += alpha * W for every weight block (the penalty's gradient),
        but for the :meth:`frozen` parameters."""
        if alpha:
            P, G = self.views(params)[0], self.views(grad)[0]
            for name in self.weight_names:
                G[name] += alpha * P[name]
            if self.padding_idx >= 0:
                G["W_emb"][self.padding_idx] = 0

    def penalty(self, params, alpha):
        """``(alpha / 2) * sum of squared weights`` (biases excluded)."""
        if alpha == 0:
            return 0.0
        P = self.views(params)[0]
        return 0.5 * alpha * sum(float(sum_of_squares(P[n].ravel())) for n in self.weight_names)

    # -- the compiled network -----------------------------------------------

    @property
    def stack(self):
        """The compiled :class:`~crnn.kernels.stack.Stack` of this network.

        Its workspace is scratch, grown to the largest batch seen and reused
        by every pass; it serves one pass at a time (a concurrent call from
        another thread raises RuntimeError).
        """
        stack = self.__dict__.get("_stack")
        if stack is None:
            slices = self.layout.slices
            # unit_offsets: one column per block of stack.BLOCKS, in its order
            offsets = [[slices[unit[name]].start if name in unit else 0
                        for name in BLOCKS] for unit in self.units]
            stack = self._stack = Stack(
                self.cell.name, self.cell.g, self.I, self.H, self.O, self.L, self.D,
                self.g2, self.loss_name == "cross_entropy", self.return_sequences,
                np.array(offsets, dtype=np.intp), slices["W_y"].start,
                slices["b_y"].start, self.layout.size, self.dtype, self.V,
                slices["W_emb"].start if self.V else 0, self.padding_idx)
        return stack

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_stack", "_view_cache")}

    def _masks(self, rng, N):
        """Dropout masks of layers 1 .. L-1, ``(L - 1, N, D*H)``, or None.

        Each input of those layers is kept with probability ``1 - dropout``
        and then scaled by ``1 / (1 - dropout)``.
        """
        if rng is None or self.dropout == 0 or self.L == 1:
            return None
        keep = 1.0 - self.dropout
        draws = rng.random((self.L - 1, N, self.D * self.H))
        return (draws < keep).astype(self.dtype) / self.dtype.type(keep)

    def _inputs(self, X):
        """Packed inputs in the form the compiled passes read: ``(N, I)``
        reals, or the ``(N,)`` token ids of ``(N, 1)`` packed ids."""
        return X.reshape(-1) if self.V else X

    def _states(self, states):
        """States in the form the compiled passes read (C order), or None."""
        return None if states is None else np.ascontiguousarray(states, self.dtype)

    def _weights(self, weights):
        """Per-row loss weights in the form the compiled loss reads, or None."""
        return None if weights is None else np.ascontiguousarray(weights, self.dtype)

    def _target(self, target):
        """Targets in the form the compiled loss reads."""
        if self.loss_name == "cross_entropy":
            return np.ascontiguousarray(target.reshape(-1), dtype=np.intp)
        return np.ascontiguousarray(target.reshape(-1, self.O), dtype=self.dtype)

    # -- forward ------------------------------------------------------------

    def state_shape(self, B):
        """``(n_states, L*D, B, H)``: the initial or final states of ``B``
        sequences, state ``j`` (``cell.type.states[j]``: h, and the LSTM's c)
        of unit ``k = layer * D + direction``, rows in packed order."""
        return self.stack.state_shape(B)

    def forward(self, params, batch, initial=None, rng=None):
        """Run the recurrent stack over a packed batch; return the final states.

        Parameters
        ----------
        params : ndarray (P,)
        batch : PackedBatch
        initial : ndarray (n_states, L*D, B, H), optional
            Initial states of every unit (``layer * D + direction``), rows in
            packed order; zeros by default. ``n_states`` is 2 for the LSTM's
            ``(h, c)``, else 1 (:meth:`state_shape`).
        rng : numpy Generator, optional
            Draws the dropout masks; without it no dropout is applied.

        Returns
        -------
        finals : ndarray (n_states, L*D, B, H)
            The final state of every unit and sequence.
        """
        return self.stack.forward(params, self._inputs(batch.X), batch.batch_sizes,
                                  self._states(initial), self._masks(rng, batch.N))

    def output(self, params, batch, initial=None):
        """Outputs ``Y``: ``(N, O)`` packed per step, or ``(B, O)`` per sequence
        in packed order; and the final states ``(n_states, L*D, B, H)``."""
        Y = np.empty((batch.N if self.return_sequences else batch.B, self.O), self.dtype)
        finals = self.stack.output(params, self._inputs(batch.X), batch.batch_sizes, Y,
                                   self._states(initial))
        return Y, finals

    # -- loss and gradient --------------------------------------------------

    def _count(self, N, B, weights=None):
        """How many terms the mean loss of ``N`` packed rows of ``B``
        sequences averages over: with per-row ``weights``, their total
        weight (times ``O`` for squared error)."""
        rows = N if self.return_sequences else B
        if weights is not None:
            rows = float(np.sum(weights))
        return rows if self.loss_name == "cross_entropy" else rows * self.O

    def loss(self, params, batch, target, alpha=0.0, count=None, weights=None):
        """The training objective: mean data loss plus the L2 penalty.

        ``target`` is packed like the scored states: ``(N, O)`` / ``(B, O)``
        floats for squared error, ``(N,)`` / ``(B,)`` classes for cross-entropy.
        ``count`` and ``weights`` are as for :meth:`loss_grad`.
        """
        value = self.stack.loss(params, self._inputs(batch.X), batch.batch_sizes,
                                self._target(target), 0, count or 0,
                                weights=self._weights(weights))
        return value + self.penalty(params, alpha)

    def loss_grad(self, params, batch, target, alpha=0.0, grad=None, rng=None,
                  initial=None, count=None, masks=None, weights=None):
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
        initial : ndarray (n_states, L*D, B, H), optional
            Initial states, as for :meth:`forward`; zeros by default.
        count : int, optional
            What the data loss is divided by; by default the number of
            scored terms of this batch. A block of a larger batch passes the
            whole batch's count, so that the blocks' losses and gradients
            add up to the batch's.
        masks : ndarray (L-1, N, D*H), optional
            Dropout masks drawn beforehand (instead of from ``rng``).
        weights : ndarray, optional
            A weight >= 0 per scored row (packed like ``target``): the data
            loss is ``sum_r w_r e_r / count``, and the default ``count`` the
            total weight (times ``O`` for squared error): a weighted mean.

        Returns
        -------
        loss : float
        grad : ndarray (P,)
        """
        if grad is None:
            grad = self.layout.zeros(self.dtype)
        else:
            grad.fill(0)
        if masks is None:
            masks = self._masks(rng, batch.N)
        value = self.stack.loss_grad(params, self._inputs(batch.X), batch.batch_sizes,
                                     self._target(target), grad, 0, count or 0,
                                     initial=self._states(initial), masks=masks,
                                     weights=self._weights(weights))
        if alpha:
            self._penalty_grad(params, grad, alpha)
            value += self.penalty(params, alpha)
        return value, grad

    def state_gradients(self, params, batch, target, weights=None):
        """dE/dh_t in total of every unit, step and sequence, by BPTT.

        ``E`` is the data loss of :meth:`loss_grad` (``weights`` as there),
        with no dropout. The total derivative with
        respect to a state takes in every path from it to the loss: through
        the layer above (or the output) at its own step and through the
        unit's later steps (earlier ones for the reverse direction),
        ``dE/dh_t = dE/dh_t|above + (dE/dh_{t+1}) (dh_{t+1}/dh_t)``.

        Returns
        -------
        loss : float
            ``E``.
        dS : ndarray (L*D, N, H)
            Packed like the states: row ``r`` of unit ``k = layer * D +
            direction`` is the gradient at that row's step and sequence.
        """
        grad = self.layout.zeros(self.dtype)
        dS = np.zeros((self.L * self.D, batch.N, self.H), self.dtype)
        loss = self.stack.loss_grad(params, self._inputs(batch.X), batch.batch_sizes,
                                    self._target(target), grad,
                                    weights=self._weights(weights), state_grads=dS)
        return loss, dS

    # -- truncated BPTT -----------------------------------------------------

    def _chunks(self, batch, k, target, weights=None):
        """Consecutive time chunks of at most ``k`` steps of a packed batch.

        Yields ``(chunk, n_cont, scored, scored_weights)``: the chunk as a
        packed batch, how many of its sequences continue into the next chunk
        (those are a prefix of the rows), and the targets (and weights, or
        None) of its scored rows. Per step, every row of the chunk is scored;
        per sequence, the rows ``n_cont ..`` whose sequence ends in this
        chunk (the rest are scored later).
        """
        bs = batch.batch_sizes
        T = bs.size
        offsets = np.concatenate(([0], np.cumsum(bs)))
        for t0 in range(0, T, k):
            t1 = min(t0 + k, T)
            chunk = Chunk(batch.X[offsets[t0]:offsets[t1]], bs[t0:t1])
            n_cont = bs[t1] if t1 < T else 0
            rows = (slice(offsets[t0], offsets[t1]) if self.return_sequences
                    else slice(n_cont, chunk.B))
            yield chunk, n_cont, target[rows], None if weights is None else weights[rows]

    @staticmethod
    def _carry(state, B):
        """Final states of the previous chunk for the ``B`` continuing rows."""
        return None if state is None else np.ascontiguousarray(state[:, :, :B])

    def _row0(self, n_cont):
        """The first scored row of a chunk's states."""
        return 0 if self.return_sequences else int(n_cont)

    def loss_grad_truncated(self, params, batch, target, k, alpha=0.0, grad=None,
                            rng=None, count=None, masks=None, weights=None):
        """Loss and gradient by truncated BPTT over chunks of ``k`` steps.

        The batch is run forward chunk by chunk, each chunk starting from the
        final states of the previous one; each chunk is backpropagated on its
        own, so no gradient crosses a chunk boundary (the carried states are
        treated as constants). The loss is the same mean over the whole batch
        as :meth:`loss_grad`'s, which this equals exactly when ``k >= T``.

        ``count``, ``masks`` and ``weights`` are as for :meth:`loss_grad`
        (``masks`` for every packed row of the batch; each chunk takes its
        own rows); by default, each chunk's masks are drawn from ``rng`` in
        turn.
        """
        if grad is None:
            grad = self.layout.zeros(self.dtype)
        else:
            grad.fill(0)
        weights = self._weights(weights)
        count = count or self._count(batch.N, batch.B, weights)
        total, state, row = 0.0, None, 0
        for chunk, n_cont, scored, w in self._chunks(batch, k, self._target(target),
                                                      weights):
            finals = np.empty(self.state_shape(chunk.B), self.dtype)
            chunk_masks = (self._masks(rng, chunk.N) if masks is None
                           else np.ascontiguousarray(masks[:, row:row + chunk.N]))
            row += chunk.N
            total += self.stack.loss_grad(
                params, self._inputs(chunk.X), chunk.batch_sizes, scored, grad,
                self._row0(n_cont), count, self._carry(state, chunk.B), chunk_masks, finals,
                weights=w)
            state = finals
        self._penalty_grad(params, grad, alpha)
        return total + self.penalty(params, alpha), grad

    def loss_truncated(self, params, batch, target, k, alpha=0.0, carry_params=None,
                       weights=None):
        """The objective whose gradient truncated BPTT computes.

        Each chunk's loss is evaluated at ``params`` from initial states
        carried along by ``carry_params`` (``params`` by default), so that the
        carried states are constants: the derivative of this function with
        respect to ``params`` at ``params == carry_params`` is exactly
        :meth:`loss_grad_truncated`'s gradient.
        """
        carry_params = params if carry_params is None else carry_params
        weights = self._weights(weights)
        count = self._count(batch.N, batch.B, weights)
        total, state = 0.0, None
        for chunk, n_cont, scored, w in self._chunks(batch, k, self._target(target),
                                                      weights):
            initial = self._carry(state, chunk.B)
            # the states carried on: this pass's, or a pass at carry_params
            finals = (np.empty(self.state_shape(chunk.B), self.dtype)
                      if carry_params is params else None)
            total += self.stack.loss(params, self._inputs(chunk.X), chunk.batch_sizes,
                                     scored, self._row0(n_cont), count, initial, finals,
                                     weights=w)
            if carry_params is not params:
                finals = self.forward(carry_params, chunk, initial)
            state = finals
        return total + self.penalty(params, alpha)


class Chunk:
    """A run of consecutive steps of a packed batch, itself a packed batch."""

    def __init__(self, X, batch_sizes):
        self.X = X
        self.batch_sizes = batch_sizes
        self.N = X.shape[0]
        self.B = int(batch_sizes[0])
