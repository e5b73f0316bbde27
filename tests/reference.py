"""Plain-NumPy reference implementations of the recurrent layers.

This module is written from the equations, independently of the Cython
kernels in ``crnn.kernels`` (``elman``, ``lstm``, ``gru``), so that the test
suite can compare the two. It favours obviousness over speed.

Two families of functions live here.

**Per-sequence references** (the packed, variable-length API). Every
sequence of a batch is run on its own, with an explicit Python loop over its
own steps and one matrix-vector product per gate block and step; the
backward passes are explicit BPTT per sequence with the weight gradients
accumulated step by step (``np.outer``), whereas the kernels process all
active sequences of a step together, with GEMMs over all packed rows after
the time loop. The gates are written with PyTorch's names and order:

* Elman:  ``h_t = g(W_ih x_t + W_hh h_prev + b)``
* LSTM (i, f, g, o), one bias ``b`` (PyTorch's ``b_ih + b_hh``)::

      i = sigmoid(W_ii x + W_hi h_prev + b_i)   f = sigmoid(W_if x + W_hf h_prev + b_f)
      g = tanh(W_ig x + W_hg h_prev + b_g)      o = sigmoid(W_io x + W_ho h_prev + b_o)
      c_t = f * c_prev + i * g                  h_t = o * tanh(c_t)

* GRU (r, z, n), ``b = [b_ir + b_hr, b_iz + b_hz, b_in]`` and ``b_hn``::

      r = sigmoid(W_ir x + W_hr h_prev + b_r)   z = sigmoid(W_iz x + W_hz h_prev + b_z)
      n = tanh(W_in x + b_in + r * (W_hn h_prev + b_hn))
      h_t = (1 - z) * n + z * h_prev

``h_prev`` is the state of step ``t - 1``, or of step ``t + 1`` when
``reverse`` (each sequence then runs from its own last step to its first),
or the sequence's initial state where it starts. The *final* state is the
one after the last processed step (step 0 when ``reverse``).

The gradient references differentiate the loss

    E = sum_j sum_t <R_j[t], h_j,t> + sum_j <r[j], h_n[j]>  (+ sum_j <rc[j], c_n[j]>, LSTM)

for per-sequence output weights ``R_j`` (T_j, H) and final-state weights
``r`` (B, H) (and ``rc`` (B, H)).

``pack(seqs)`` / ``unpack(P, batch_sizes, lengths)`` convert between a list
of sequences (sorted longest first) and the packed layout of
``crnn/kernels/recurrence.pxd``: step ``t`` holds the ``B_t =
batch_sizes[t]`` sequences still running, in consecutive rows, row ``j`` of
each step being sequence ``j``.

**Time-major batch references** (the original Elman API, equal lengths):
``elman_forward_ref`` / ``elman_backward_ref`` work on ``(T, B, ·)`` arrays,
one explicit loop over time steps:

==========  ==============  ==============================================
name        shape           meaning
==========  ==============  ==============================================
X           (T, B, I)       inputs, ``X[t - 1] = x_t`` for t = 1..T
W_ih        (H, I)          input-to-hidden weights
W_hh        (H, H)          hidden-to-hidden (recurrent) weights
b           (H,)            bias
h0          (B, H)          initial state
H_all       (T + 1, B, H)   states, ``H_all[0] = h_0``, ``H_all[t] = h_t``
dH          (T, B, H)       ``dE/dh_t`` arriving from above the layer
==========  ==============  ==============================================

The derivative of an activation is taken at the pre-activation ``a_t``,
which the references recompute; the kernels write it in terms of the output
``h_t = g(a_t)``. All arithmetic is done in the dtype of the inputs
(NumPy's promotion rules); pass float64 arrays to obtain a float64
reference.
"""
import numpy as np

__all__ = ["ACTIVATIONS", "activation_ref", "activation_derivative_ref",
           "elman_forward_ref", "elman_backward_ref",
           "pack", "unpack", "step_order",
           "elman_ref", "elman_preactivations_ref", "elman_grads_ref",
           "LSTM_GATES", "lstm_ref", "lstm_grads_ref",
           "GRU_GATES", "gru_ref", "gru_grads_ref"]

#: Activation names understood by the reference, in the order of the codes
#: of ``crnn.kernels.activations.Activation`` (IDENTITY=0, TANH=1,
#: SIGMOID=2, RELU=3).
ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu")


def activation_ref(a, activation):
    r"""Apply the activation ``g`` element-wise.

    Parameters
    ----------
    a : ndarray
        Pre-activations.
    activation : {"identity", "tanh", "sigmoid", "relu"}
        Name of ``g``:

        * identity: :math:`g(a) = a`
        * tanh: :math:`g(a) = \tanh a`
        * sigmoid: :math:`g(a) = 1 / (1 + e^{-a})`
        * relu: :math:`g(a) = \max(a, 0)`

    Returns
    -------
    ndarray
        :math:`g(a)`, same shape and dtype as ``a``.
    """
    a = np.asarray(a)
    if activation == "identity":
        return a.copy()
    if activation == "tanh":
        return np.tanh(a)
    if activation == "sigmoid":
        # 1 / (1 + exp(-a)) evaluated without overflow for large |a|.
        e = np.exp(-np.abs(a))
        return np.where(a >= 0, 1 / (1 + e), e / (1 + e))
    if activation == "relu":
        return np.where(a > 0, a, np.zeros_like(a))
    raise ValueError(f"unknown activation {activation!r}")


def activation_derivative_ref(a, activation):
    r"""Derivative :math:`g'(a)` of the activation, evaluated at ``a``.

    Parameters
    ----------
    a : ndarray
        Pre-activations (not the activation's output).
    activation : {"identity", "tanh", "sigmoid", "relu"}
        Name of ``g``:

        * identity: :math:`g'(a) = 1`
        * tanh: :math:`g'(a) = 1 - \tanh^2 a`
        * sigmoid: :math:`g'(a) = \sigma(a)\,(1 - \sigma(a))`
        * relu: :math:`g'(a) = 1` if :math:`a > 0` else :math:`0`
          (the derivative at exactly 0 is taken to be 0)

    Returns
    -------
    ndarray
        :math:`g'(a)`, same shape and dtype as ``a``.
    """
    a = np.asarray(a)
    if activation == "identity":
        return np.ones_like(a)
    if activation == "tanh":
        return 1 - np.tanh(a) ** 2
    if activation == "sigmoid":
        s = activation_ref(a, "sigmoid")
        return s * (1 - s)
    if activation == "relu":
        return (a > 0).astype(a.dtype)
    raise ValueError(f"unknown activation {activation!r}")


def elman_forward_ref(X, W_ih, W_hh, b, h0, activation):
    r"""Forward pass of the Elman layer, one time step at a time.

    For :math:`t = 1, \dots, T` and every sequence of the batch,

    .. math::

        a_t = W_{ih} x_t + W_{hh} h_{t-1} + b, \qquad h_t = g(a_t),

    starting from the given :math:`h_0`. With the batch stored row by row
    this is ``a_t = x_t @ W_ih.T + h_{t-1} @ W_hh.T + b``.

    Parameters
    ----------
    X : ndarray, shape (T, B, I)
        Inputs, time-major: ``X[t - 1]`` holds :math:`x_t` for the B
        sequences.
    W_ih : ndarray, shape (H, I)
        Input weights :math:`W_{ih}`.
    W_hh : ndarray, shape (H, H)
        Recurrent weights :math:`W_{hh}`.
    b : ndarray, shape (H,)
        Bias :math:`b`.
    h0 : ndarray, shape (B, H)
        Initial state :math:`h_0`.
    activation : {"identity", "tanh", "sigmoid", "relu"}
        The activation :math:`g`.

    Returns
    -------
    H_all : ndarray, shape (T + 1, B, H)
        ``H_all[0] = h0`` and ``H_all[t]`` :math:`= h_t`.
    """
    X = np.asarray(X)
    T, B, _ = X.shape
    H = W_hh.shape[0]
    dtype = np.result_type(X, W_ih, W_hh, b, h0)
    H_all = np.empty((T + 1, B, H), dtype=dtype)
    H_all[0] = h0
    for t in range(1, T + 1):
        x_t = X[t - 1]                       # (B, I)
        h_prev = H_all[t - 1]                # (B, H)
        a_t = x_t @ W_ih.T + h_prev @ W_hh.T + b
        H_all[t] = activation_ref(a_t, activation)
    return H_all


def elman_backward_ref(X, W_ih, W_hh, b, H_all, dH, activation):
    r"""Backpropagation through time for the Elman layer, step by step.

    Let :math:`E` be a loss whose gradient with respect to each state, as
    seen from above the layer, is :math:`\bar h_t = \partial E /
    \partial h_t|_{\text{above}}` (``dH[t - 1]``). Going backwards from
    :math:`t = T` to :math:`1`, with :math:`\delta_{T+1} = 0`,

    .. math::

        \frac{\partial E}{\partial h_t} &= \bar h_t + W_{hh}^\top
            \delta_{t+1}, \\
        \delta_t = \frac{\partial E}{\partial a_t} &=
            \frac{\partial E}{\partial h_t} \odot g'(a_t),
            \qquad a_t = W_{ih} x_t + W_{hh} h_{t-1} + b, \\
        \frac{\partial E}{\partial x_t} &= W_{ih}^\top \delta_t,

    and the parameter gradients are accumulated inside the loop,

    .. math::

        \frac{\partial E}{\partial W_{ih}} \mathrel{+}= \delta_t x_t^\top,
        \quad
        \frac{\partial E}{\partial W_{hh}} \mathrel{+}=
            \delta_t h_{t-1}^\top,
        \quad
        \frac{\partial E}{\partial b} \mathrel{+}= \delta_t,

    each summed over the batch. Finally :math:`\partial E / \partial h_0
    = W_{hh}^\top \delta_1` (the gradient through the recurrence only).

    Parameters
    ----------
    X : ndarray, shape (T, B, I)
        Inputs of the forward pass.
    W_ih : ndarray, shape (H, I)
        Input weights.
    W_hh : ndarray, shape (H, H)
        Recurrent weights.
    b : ndarray, shape (H,)
        Bias, used to recompute the pre-activations :math:`a_t`.
    H_all : ndarray, shape (T + 1, B, H)
        States from the forward pass, ``H_all[0] = h0``.
    dH : ndarray, shape (T, B, H)
        :math:`\bar h_t` for t = 1..T (``dH[t - 1]``). Not modified.
    activation : {"identity", "tanh", "sigmoid", "relu"}
        The activation :math:`g`.

    Returns
    -------
    dict of ndarray
        ``dW_ih`` (H, I), ``dW_hh`` (H, H), ``db`` (H,), ``dh0`` (B, H),
        ``dX`` (T, B, I) and ``dA`` (T, B, H) with ``dA[t - 1]``
        :math:`= \delta_t`.
    """
    X = np.asarray(X)
    T, B, I = X.shape
    H = W_hh.shape[0]
    dtype = np.result_type(X, W_ih, W_hh, b, H_all, dH)
    dW_ih = np.zeros((H, I), dtype=dtype)
    dW_hh = np.zeros((H, H), dtype=dtype)
    db = np.zeros(H, dtype=dtype)
    dX = np.zeros((T, B, I), dtype=dtype)
    dA = np.zeros((T, B, H), dtype=dtype)
    dh_from_next = np.zeros((B, H), dtype=dtype)   # W_hh^T delta_{t+1}
    for t in range(T, 0, -1):
        x_t = X[t - 1]
        h_prev = H_all[t - 1]
        a_t = x_t @ W_ih.T + h_prev @ W_hh.T + b
        dh_t = dH[t - 1] + dh_from_next
        delta = dh_t * activation_derivative_ref(a_t, activation)   # (B, H)
        dA[t - 1] = delta
        # Per-step accumulation, one sequence of the batch at a time.
        for s in range(B):
            dW_ih += np.outer(delta[s], x_t[s])
            dW_hh += np.outer(delta[s], h_prev[s])
            db += delta[s]
        dX[t - 1] = delta @ W_ih
        dh_from_next = delta @ W_hh
    return {"dW_ih": dW_ih, "dW_hh": dW_hh, "db": db, "dh0": dh_from_next,
            "dX": dX, "dA": dA}


# =============================================================================
# Packed variable-length batches: per-sequence references
# =============================================================================

def pack(seqs):
    """Pack a list of sequences, sorted longest first, time-major.

    Parameters
    ----------
    seqs : list of ndarray, shapes (T_j, ...)
        ``B`` sequences with non-increasing lengths ``T_0 >= T_1 >= ...
        >= 1`` and the same trailing shape.

    Returns
    -------
    P : ndarray, shape (N, ...)
        ``N = sum_j T_j`` rows: for ``t = 0, 1, ...``, row ``seqs[j][t]`` for
        every sequence ``j`` with ``T_j > t``, in order of ``j``.
    batch_sizes : ndarray of intp, shape (T_0,)
        ``batch_sizes[t]`` = the number of sequences with ``T_j > t``.
    """
    seqs = [np.asarray(s) for s in seqs]
    if not seqs:
        raise ValueError("pack: no sequences")
    lengths = [s.shape[0] for s in seqs]
    if min(lengths) < 1:
        raise ValueError("pack: every sequence needs at least one step")
    if any(lengths[j] < lengths[j + 1] for j in range(len(lengths) - 1)):
        raise ValueError(f"pack: sequences must be sorted longest first; got {lengths}")
    trailing = seqs[0].shape[1:]
    if any(s.shape[1:] != trailing for s in seqs):
        raise ValueError("pack: sequences differ in their trailing shape")
    T = lengths[0]
    batch_sizes = np.array([sum(1 for L in lengths if L > t) for t in range(T)],
                           dtype=np.intp)
    rows = []
    for t in range(T):
        for j in range(batch_sizes[t]):
            rows.append(seqs[j][t])
    P = np.empty((len(rows),) + trailing, dtype=np.result_type(*seqs))
    for k, row in enumerate(rows):
        P[k] = row
    return P, batch_sizes


def unpack(P, batch_sizes, lengths):
    """Inverse of :func:`pack`: the list of ``B`` sequences of a packed array.

    Parameters
    ----------
    P : ndarray, shape (N, ...)
        Packed rows.
    batch_sizes : sequence of int, length T
        As returned by :func:`pack`.
    lengths : sequence of int, length B
        The sequence lengths, non-increasing; must agree with ``batch_sizes``.

    Returns
    -------
    list of ndarray, shapes (T_j, ...)
        Copies, in the dtype of ``P``.
    """
    P = np.asarray(P)
    lengths = [int(L) for L in lengths]
    batch_sizes = [int(n) for n in batch_sizes]
    expected = [sum(1 for L in lengths if L > t) for t in range(max(lengths))]
    if batch_sizes != expected:
        raise ValueError(f"unpack: batch_sizes {batch_sizes} do not match lengths {lengths}")
    if sum(batch_sizes) != P.shape[0]:
        raise ValueError(f"unpack: {P.shape[0]} rows, batch_sizes sums to {sum(batch_sizes)}")
    out = [np.empty((L,) + P.shape[1:], dtype=P.dtype) for L in lengths]
    row = 0
    for t, n in enumerate(batch_sizes):
        for j in range(n):
            out[j][t] = P[row]
            row += 1
    return out


def step_order(T, reverse=False):
    """The time steps of one sequence of length ``T`` in processing order."""
    return list(range(T - 1, -1, -1)) if reverse else list(range(T))


def _sigmoid(a):
    return activation_ref(a, "sigmoid")


def _rows(k, H):
    """Rows of gate block ``k`` in a stacked (G*H, ·) weight or (G*H,) bias."""
    return slice(k * H, (k + 1) * H)


# --- Elman -------------------------------------------------------------------------

def _elman_seq(x, W_ih, W_hh, b, h0, activation, reverse):
    """One sequence ``x`` (T, I) from state ``h0`` (H,).

    Returns the states ``hs`` (T, H), the final state (H,), the
    pre-activations ``a`` (T, H) and the previous state of every step (T, H),
    all indexed by time (not by processing order).
    """
    x = np.asarray(x)
    T, H = x.shape[0], W_hh.shape[0]
    dtype = np.result_type(x, W_ih, W_hh, b, h0)
    hs = np.empty((T, H), dtype)
    pre = np.empty((T, H), dtype)
    prev = np.empty((T, H), dtype)
    h = np.array(h0, dtype=dtype)
    for t in step_order(T, reverse):
        prev[t] = h
        pre[t] = W_ih @ x[t] + W_hh @ h + b
        h = activation_ref(pre[t], activation)
        hs[t] = h
    return hs, h, pre, prev


def elman_ref(seqs, W_ih, W_hh, b, h0, activation, reverse=False):
    r"""Elman forward pass, each sequence on its own.

    .. math:: h_t = g(W_{ih} x_t + W_{hh} h_{prev} + b)

    Parameters
    ----------
    seqs : list of ndarray, shapes (T_j, I)
    W_ih : (H, I); W_hh : (H, H); b : (H,); h0 : (B, H), row j for sequence j
    activation : {"identity", "tanh", "sigmoid", "relu"}
    reverse : run each sequence from its last step to its first

    Returns
    -------
    hs : list of ndarray, shapes (T_j, H), indexed by time
    h_n : ndarray, shape (B, H), the state after each sequence's last
        processed step
    """
    hs, h_n = [], []
    for j, x in enumerate(seqs):
        out, last, _, _ = _elman_seq(x, W_ih, W_hh, b, h0[j], activation, reverse)
        hs.append(out)
        h_n.append(last)
    return hs, np.array(h_n)


def elman_preactivations_ref(seqs, W_ih, W_hh, b, h0, activation, reverse=False):
    """The pre-activations ``a_t`` (list of (T_j, H)) of :func:`elman_ref`."""
    return [_elman_seq(x, W_ih, W_hh, b, h0[j], activation, reverse)[2]
            for j, x in enumerate(seqs)]


def elman_grads_ref(seqs, W_ih, W_hh, b, h0, Rs, r, activation, reverse=False):
    r"""Gradients of ``E = sum_j sum_t <Rs[j][t], h_j,t> + sum_j <r[j], h_n[j]>``.

    Explicit BPTT through each sequence, visiting its steps in the opposite
    of the processing order. With ``dh`` = dE/dh of the state produced by
    the step being visited (starting from ``r[j]``):

    .. math::

        \delta_t = (R_t + dh) \odot g'(a_t), \qquad
        dh \leftarrow W_{hh}^\top \delta_t, \qquad
        \partial E / \partial x_t = W_{ih}^\top \delta_t,

    and ``dW_ih += outer(delta_t, x_t)``, ``dW_hh += outer(delta_t,
    h_prev)``, ``db += delta_t`` at every step. What is left in ``dh`` after
    the first processed step is dE/dh0 of the sequence.

    Returns
    -------
    dict
        ``dW_ih`` (H, I), ``dW_hh`` (H, H), ``db`` (H,), ``dh0`` (B, H),
        ``dX`` list of (T_j, I), ``dA`` list of (T_j, H) (the
        :math:`\delta_t`, indexed by time).
    """
    H, I = W_ih.shape
    dtype = np.result_type(W_ih, W_hh, b, h0, *seqs, *Rs, r)
    dW_ih = np.zeros((H, I), dtype)
    dW_hh = np.zeros((H, H), dtype)
    db = np.zeros(H, dtype)
    dh0 = np.zeros((len(seqs), H), dtype)
    dX, dA = [], []
    for j, x in enumerate(seqs):
        _, _, pre, prev = _elman_seq(x, W_ih, W_hh, b, h0[j], activation, reverse)
        T = x.shape[0]
        dx = np.zeros((T, I), dtype)
        da_seq = np.zeros((T, H), dtype)
        dh = np.array(r[j], dtype=dtype)
        for t in reversed(step_order(T, reverse)):
            delta = (Rs[j][t] + dh) * activation_derivative_ref(pre[t], activation)
            da_seq[t] = delta
            dW_ih += np.outer(delta, x[t])
            dW_hh += np.outer(delta, prev[t])
            db += delta
            dx[t] = W_ih.T @ delta
            dh = W_hh.T @ delta
        dh0[j] = dh
        dX.append(dx)
        dA.append(da_seq)
    return {"dW_ih": dW_ih, "dW_hh": dW_hh, "db": db, "dh0": dh0, "dX": dX, "dA": dA}


# --- LSTM --------------------------------------------------------------------------

#: Gate blocks of the stacked LSTM weights, in PyTorch's order.
LSTM_GATES = ("i", "f", "g", "o")


def _lstm_seq(x, W_ih, W_hh, b, h0, c0, reverse):
    """One LSTM sequence; returns a dict of per-step arrays indexed by time."""
    x = np.asarray(x)
    T, H = x.shape[0], W_hh.shape[1]
    dtype = np.result_type(x, W_ih, W_hh, b, h0, c0)
    Wi = {k: W_ih[_rows(n, H)] for n, k in enumerate(LSTM_GATES)}
    Wh = {k: W_hh[_rows(n, H)] for n, k in enumerate(LSTM_GATES)}
    bb = {k: b[_rows(n, H)] for n, k in enumerate(LSTM_GATES)}
    s = {k: np.empty((T, H), dtype) for k in ("h", "c", "h_prev", "c_prev") + LSTM_GATES}
    h = np.array(h0, dtype=dtype)
    c = np.array(c0, dtype=dtype)
    for t in step_order(T, reverse):
        s["h_prev"][t], s["c_prev"][t] = h, c
        i = _sigmoid(Wi["i"] @ x[t] + Wh["i"] @ h + bb["i"])
        f = _sigmoid(Wi["f"] @ x[t] + Wh["f"] @ h + bb["f"])
        g = np.tanh(Wi["g"] @ x[t] + Wh["g"] @ h + bb["g"])
        o = _sigmoid(Wi["o"] @ x[t] + Wh["o"] @ h + bb["o"])
        c = f * c + i * g
        h = o * np.tanh(c)
        s["i"][t], s["f"][t], s["g"][t], s["o"][t] = i, f, g, o
        s["h"][t], s["c"][t] = h, c
    s["h_n"], s["c_n"] = h, c
    return s


def lstm_ref(seqs, W_ih, W_hh, b, h0, c0, reverse=False):
    """LSTM forward pass (PyTorch's equations, gates i, f, g, o), per sequence.

    Parameters
    ----------
    seqs : list of ndarray, shapes (T_j, I)
    W_ih : (4H, I); W_hh : (4H, H); b : (4H,); h0, c0 : (B, H)
    reverse : run each sequence from its last step to its first

    Returns
    -------
    hs, cs : lists of ndarray, shapes (T_j, H), indexed by time
    h_n, c_n : ndarray, shape (B, H)
    """
    runs = [_lstm_seq(x, W_ih, W_hh, b, h0[j], c0[j], reverse) for j, x in enumerate(seqs)]
    return ([s["h"] for s in runs], [s["c"] for s in runs],
            np.array([s["h_n"] for s in runs]), np.array([s["c_n"] for s in runs]))


def lstm_grads_ref(seqs, W_ih, W_hh, b, h0, c0, Rs, r, rc, reverse=False):
    r"""Gradients of ``sum <Rs, h> + sum <r, h_n> + sum <rc, c_n>`` for the LSTM.

    Explicit BPTT per sequence. Visiting the steps in the opposite of the
    processing order, with ``dh``, ``dc`` = dE/dh, dE/dc of the state
    produced by the visited step (starting from ``r[j]``, ``rc[j]``):

    * :math:`\bar h = R_t + dh`; from :math:`h = o \tanh c`:
      :math:`\bar o = \bar h \tanh c`,
      :math:`\bar c = dc + \bar h\, o\, (1 - \tanh^2 c)`;
    * from :math:`c = f c_{prev} + i g`: :math:`\bar i = \bar c g`,
      :math:`\bar f = \bar c c_{prev}`, :math:`\bar g = \bar c i`,
      :math:`dc \leftarrow \bar c f`;
    * through the activations: :math:`\delta_i = \bar i\, i (1 - i)`,
      :math:`\delta_f = \bar f f (1 - f)`, :math:`\delta_g = \bar g (1 - g^2)`,
      :math:`\delta_o = \bar o\, o (1 - o)`;
    * per gate block k: ``dW_ih[k] += outer(delta_k, x_t)``, ``dW_hh[k] +=
      outer(delta_k, h_prev)``, ``db[k] += delta_k``; ``dx_t = sum_k
      W_ik^T delta_k``; ``dh = sum_k W_hk^T delta_k``.

    Returns
    -------
    dict
        ``dW_ih`` (4H, I), ``dW_hh`` (4H, H), ``db`` (4H,), ``dh0``, ``dc0``
        (B, H), ``dX`` list of (T_j, I), ``dgates`` list of (T_j, 4H): the
        gradients of the gate pre-activations, in the order (i, f, g, o).
    """
    G, I = W_ih.shape
    H = G // 4
    dtype = np.result_type(W_ih, W_hh, b, h0, c0, *seqs, *Rs, r, rc)
    Wi = {k: W_ih[_rows(n, H)] for n, k in enumerate(LSTM_GATES)}
    Wh = {k: W_hh[_rows(n, H)] for n, k in enumerate(LSTM_GATES)}
    dW_ih = np.zeros((G, I), dtype)
    dW_hh = np.zeros((G, H), dtype)
    db = np.zeros(G, dtype)
    dh0 = np.zeros((len(seqs), H), dtype)
    dc0 = np.zeros((len(seqs), H), dtype)
    dX, dgates = [], []
    for j, x in enumerate(seqs):
        s = _lstm_seq(x, W_ih, W_hh, b, h0[j], c0[j], reverse)
        T = x.shape[0]
        dx = np.zeros((T, I), dtype)
        dpre = np.zeros((T, G), dtype)
        dh = np.array(r[j], dtype=dtype)
        dc = np.array(rc[j], dtype=dtype)
        for t in reversed(step_order(T, reverse)):
            i, f, g, o = s["i"][t], s["f"][t], s["g"][t], s["o"][t]
            tanh_c = np.tanh(s["c"][t])
            h_bar = Rs[j][t] + dh
            o_bar = h_bar * tanh_c
            c_bar = dc + h_bar * o * (1 - tanh_c ** 2)
            i_bar, f_bar, g_bar = c_bar * g, c_bar * s["c_prev"][t], c_bar * i
            dc = c_bar * f
            delta = {"i": i_bar * i * (1 - i), "f": f_bar * f * (1 - f),
                     "g": g_bar * (1 - g ** 2), "o": o_bar * o * (1 - o)}
            dh = np.zeros(H, dtype)
            for n, k in enumerate(LSTM_GATES):
                rows = _rows(n, H)
                dW_ih[rows] += np.outer(delta[k], x[t])
                dW_hh[rows] += np.outer(delta[k], s["h_prev"][t])
                db[rows] += delta[k]
                dx[t] += Wi[k].T @ delta[k]
                dh += Wh[k].T @ delta[k]
                dpre[t, rows] = delta[k]
        dh0[j], dc0[j] = dh, dc
        dX.append(dx)
        dgates.append(dpre)
    return {"dW_ih": dW_ih, "dW_hh": dW_hh, "db": db, "dh0": dh0, "dc0": dc0,
            "dX": dX, "dgates": dgates}


# --- GRU ---------------------------------------------------------------------------

#: Gate blocks of the stacked GRU weights, in PyTorch's order.
GRU_GATES = ("r", "z", "n")


def _gru_seq(x, W_ih, W_hh, b, b_hn, h0, reverse):
    """One GRU sequence; returns a dict of per-step arrays indexed by time."""
    x = np.asarray(x)
    T, H = x.shape[0], W_hh.shape[1]
    dtype = np.result_type(x, W_ih, W_hh, b, b_hn, h0)
    Wi = {k: W_ih[_rows(n, H)] for n, k in enumerate(GRU_GATES)}
    Wh = {k: W_hh[_rows(n, H)] for n, k in enumerate(GRU_GATES)}
    bb = {k: b[_rows(n, H)] for n, k in enumerate(GRU_GATES)}
    s = {k: np.empty((T, H), dtype) for k in ("h", "h_prev", "hn") + GRU_GATES}
    h = np.array(h0, dtype=dtype)
    for t in step_order(T, reverse):
        s["h_prev"][t] = h
        r = _sigmoid(Wi["r"] @ x[t] + Wh["r"] @ h + bb["r"])
        z = _sigmoid(Wi["z"] @ x[t] + Wh["z"] @ h + bb["z"])
        hn = Wh["n"] @ h + b_hn
        n = np.tanh(Wi["n"] @ x[t] + bb["n"] + r * hn)
        h = (1 - z) * n + z * h
        s["r"][t], s["z"][t], s["n"][t], s["hn"][t], s["h"][t] = r, z, n, hn, h
    s["h_n"] = h
    return s


def gru_ref(seqs, W_ih, W_hh, b, b_hn, h0, reverse=False):
    """GRU forward pass (PyTorch's equations, gates r, z, n), per sequence.

    Parameters
    ----------
    seqs : list of ndarray, shapes (T_j, I)
    W_ih : (3H, I); W_hh : (3H, H); b : (3H,) = [b_ir + b_hr, b_iz + b_hz,
    b_in]; b_hn : (H,); h0 : (B, H)
    reverse : run each sequence from its last step to its first

    Returns
    -------
    hs : list of ndarray, shapes (T_j, H), indexed by time
    h_n : ndarray, shape (B, H)
    """
    runs = [_gru_seq(x, W_ih, W_hh, b, b_hn, h0[j], reverse) for j, x in enumerate(seqs)]
    return [s["h"] for s in runs], np.array([s["h_n"] for s in runs])


def gru_grads_ref(seqs, W_ih, W_hh, b, b_hn, h0, Rs, r, reverse=False):
    r"""Gradients of ``sum <Rs, h> + sum <r, h_n>`` for the GRU.

    Explicit BPTT per sequence. With ``dh`` = dE/dh of the state produced by
    the visited step (starting from ``r[j]``), :math:`\bar h = R_t + dh` and,
    from :math:`h = (1 - z) n + z h_{prev}`,
    :math:`n = \tanh(\tilde n)`, :math:`\tilde n = W_{in} x + b_{in} + r
    \odot hn`, :math:`hn = W_{hn} h_{prev} + b_{hn}`:

    * :math:`\delta_n = \bar h (1 - z)(1 - n^2)` (w.r.t. :math:`\tilde n`),
    * :math:`\delta_z = \bar h (h_{prev} - n)\, z (1 - z)`,
    * :math:`\delta_r = \delta_n\, hn\, r (1 - r)`,
    * :math:`\delta_{hn} = \delta_n r` (w.r.t. :math:`hn`),
    * dE/dh_prev :math:`= \bar h z + W_{hr}^\top \delta_r + W_{hz}^\top
      \delta_z + W_{hn}^\top \delta_{hn}`,

    and per step ``dW_ir += outer(delta_r, x)``, ``dW_hr += outer(delta_r,
    h_prev)``, ``dW_hn += outer(delta_hn, h_prev)``, ``db_n += delta_n``,
    ``db_hn += delta_hn``, etc.

    Returns
    -------
    dict
        ``dW_ih`` (3H, I), ``dW_hh`` (3H, H), ``db`` (3H,), ``db_hn`` (H,),
        ``dh0`` (B, H), ``dX`` list of (T_j, I), ``dgates`` list of
        (T_j, 3H): the gradients of the input-side pre-activations
        ``W_ih x + b`` of (r, z, n).
    """
    G, I = W_ih.shape
    H = G // 3
    dtype = np.result_type(W_ih, W_hh, b, b_hn, h0, *seqs, *Rs, r)
    Wi = {k: W_ih[_rows(n, H)] for n, k in enumerate(GRU_GATES)}
    Wh = {k: W_hh[_rows(n, H)] for n, k in enumerate(GRU_GATES)}
    dW_ih = np.zeros((G, I), dtype)
    dW_hh = np.zeros((G, H), dtype)
    db = np.zeros(G, dtype)
    db_hn = np.zeros(H, dtype)
    dh0 = np.zeros((len(seqs), H), dtype)
    dX, dgates = [], []
    for j, x in enumerate(seqs):
        s = _gru_seq(x, W_ih, W_hh, b, b_hn, h0[j], reverse)
        T = x.shape[0]
        dx = np.zeros((T, I), dtype)
        dpre = np.zeros((T, G), dtype)
        dh = np.array(r[j], dtype=dtype)
        for t in reversed(step_order(T, reverse)):
            rg, z, n, hn, h_prev = s["r"][t], s["z"][t], s["n"][t], s["hn"][t], s["h_prev"][t]
            h_bar = Rs[j][t] + dh
            d_n = h_bar * (1 - z) * (1 - n ** 2)
            d_z = h_bar * (h_prev - n) * z * (1 - z)
            d_r = d_n * hn * rg * (1 - rg)
            d_hn = d_n * rg
            d_in = {"r": d_r, "z": d_z, "n": d_n}     # w.r.t. W_i? x + b_?
            d_rec = {"r": d_r, "z": d_z, "n": d_hn}   # w.r.t. W_h? h_prev
            dh = h_bar * z
            for m, k in enumerate(GRU_GATES):
                rows = _rows(m, H)
                dW_ih[rows] += np.outer(d_in[k], x[t])
                db[rows] += d_in[k]
                dx[t] += Wi[k].T @ d_in[k]
                dW_hh[rows] += np.outer(d_rec[k], h_prev)
                dh = dh + Wh[k].T @ d_rec[k]
                dpre[t, rows] = d_in[k]
            db_hn += d_hn
        dh0[j] = dh
        dX.append(dx)
        dgates.append(dpre)
    return {"dW_ih": dW_ih, "dW_hh": dW_hh, "db": db, "db_hn": db_hn, "dh0": dh0,
            "dX": dX, "dgates": dgates}


def numeric_gradient(loss, arr, h):
    """Fourth-order central differences of ``loss()`` for every entry of ``arr``.

    ``arr`` is perturbed in place and restored; ``loss`` reads it.

        dE/dw ~ (-E(w + 2h) + 8 E(w + h) - 8 E(w - h) + E(w - 2h)) / (12 h)
    """
    g = np.empty_like(arr)
    flat, gflat = arr.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        v = flat[k]
        f = []
        for s in (2, 1, -1, -2):
            flat[k] = v + s * h
            f.append(loss())
        flat[k] = v
        gflat[k] = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * h)
    return g


# --- a whole network, with a state perturbed -----------------------------------------

def _cell_step_ref(cell, x, h, c, p, activation):
    """One step of ``cell`` for one sequence: ``(h, c)`` from ``(h_prev, c_prev)``
    (``c`` None except for the LSTM); ``p`` the unit's blocks without suffix."""
    H = h.shape[0]
    if cell == "elman":
        return activation_ref(p["W_ih"] @ x + p["W_hh"] @ h + p["b"], activation), None
    if cell == "lstm":
        a = p["W_ih"] @ x + p["W_hh"] @ h + p["b"]
        i, f, o = (_sigmoid(a[_rows(k, H)]) for k in (0, 1, 3))
        c = f * c + i * np.tanh(a[_rows(2, H)])
        return o * np.tanh(c), c
    a_x = p["W_ih"] @ x + p["b"]
    a_h = p["W_hh"] @ h
    r = _sigmoid(a_x[_rows(0, H)] + a_h[_rows(0, H)])
    z = _sigmoid(a_x[_rows(1, H)] + a_h[_rows(1, H)])
    n = np.tanh(a_x[_rows(2, H)] + r * (a_h[_rows(2, H)] + p["b_hn"]))
    return (1 - z) * n + z * h, None


def network_loss_ref(blocks, cell, L, D, seqs, targets, *, loss="squared_error",
                     output_activation="identity", return_sequences=False,
                     activation="tanh", weights=None, perturb=None):
    """The data loss of a stacked, possibly bidirectional network, computed
    one sequence and one step at a time.

    Parameters
    ----------
    blocks : dict of str to ndarray
        The parameter blocks under crnn's names (``W_ih_l0``, ``W_hh_l0_reverse``,
        ``W_y``, ``W_emb``, ...). With ``W_emb``, ``seqs`` hold token ids.
    seqs : list of ndarray (T_j, I), or (T_j,) token ids
    targets : list of ndarray
        Per sequence: ``(O,)`` floats or a class (per sequence), ``(T_j, O)``
        floats or ``(T_j,)`` classes (``return_sequences``).
    weights : list, optional
        Per sequence, a weight (or ``(T_j,)`` weights per step): the weighted
        mean ``sum w e / sum w`` (times ``O`` for squared error).
    perturb : (layer, direction, j, t, delta), optional
        ``delta`` (H,) is added to the state ``h_t`` of that unit and sequence
        as soon as its step computes it, before the unit's next step and the
        layer above read it (an LSTM's cell state ``c_t`` is left as it is).

    Returns
    -------
    float
        The mean loss over the scored terms, as ``fit`` minimises it.
    """
    total, count = 0.0, 0.0
    for j, x in enumerate(seqs):
        x = blocks["W_emb"][np.asarray(x)] if "W_emb" in blocks else np.asarray(x)
        inputs = x
        T = x.shape[0]
        for l in range(L):
            outputs = []
            for d in range(D):
                suffix = f"_l{l}" + ("_reverse" if d else "")
                p = {name[:-len(suffix)]: value for name, value in blocks.items()
                     if name.endswith(suffix)}
                H = p["W_hh"].shape[1]
                h, c = np.zeros(H), np.zeros(H)
                out = np.empty((T, H))
                for t in step_order(T, reverse=d == 1):
                    h, c = _cell_step_ref(cell, inputs[t], h, c, p, activation)
                    if perturb is not None and perturb[:4] == (l, d, j, t):
                        h = h + perturb[4]
                    out[t] = h
                outputs.append(out)
            inputs = np.concatenate(outputs, axis=1)
        # the scored states: every step, or the last step forward (first reverse)
        if return_sequences:
            S = inputs
        else:
            last = [inputs[-1, :H]] + ([inputs[0, H:]] if D == 2 else [])
            S = np.concatenate(last)[None, :]
        Z = S @ blocks["W_y"].T + blocks["b_y"]
        w = np.ones(S.shape[0]) if weights is None else np.broadcast_to(
            np.asarray(weights[j], dtype=float), (S.shape[0],))
        k = np.atleast_1d(np.asarray(targets[j]))
        if loss == "cross_entropy":
            logp = Z - Z.max(axis=1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
            total += -np.sum(w * logp[np.arange(S.shape[0]), k.astype(int)])
            count += w.sum()
        else:
            Y = activation_ref(Z, output_activation)
            D_t = np.asarray(targets[j], dtype=float).reshape(Y.shape)
            total += np.sum(w[:, None] * (Y - D_t) ** 2)
            count += w.sum() * Y.shape[1]
    return total / count
