"""Weights to and from PyTorch and Keras, without importing either.

crnn's cells compute PyTorch's equations with PyTorch's gate orders (LSTM:
i, f, g, o; GRU: r, z, n), so a model moves between the two libraries by
renaming and, for the biases, re-splitting arrays. crnn has one bias per
cell where PyTorch has two (``bias_ih`` and ``bias_hh``), because only their
sum enters the equations -- except in the GRU's candidate state, where
PyTorch's ``b_hn`` sits inside the reset gate's product and is kept
separately. Per layer ``l`` and direction (suffix ``_reverse``),
``G = n_gates * H`` (1, 4 or 3 gates)::

    crnn                         PyTorch (nn.RNN / nn.LSTM / nn.GRU)
    W_ih_l{l}   (G, I_l)    =    weight_ih_l{l}  (G, I_l)
    W_hh_l{l}   (G, H)      =    weight_hh_l{l}  (G, H)
    b_l{l}      (G,)        =    bias_ih_l{l} + bias_hh_l{l}               Elman, LSTM
    b_l{l}      (3H,)       =    [b_ir + b_hr, b_iz + b_hz, b_in]          GRU
    b_hn_l{l}   (H,)        =    b_hn = bias_hh_l{l}[2H:]                  GRU
    W_y         (O, D*H)    =    head.weight   (an nn.Linear on the last layer)
    b_y         (O,)        =    head.bias
    W_emb       (V, I_0)    =    embedding.weight  (an nn.Embedding, token input)

with ``I_0 = n_features`` (``embedding_dim`` for a model with
``vocab_size``) and ``I_l = D * H`` above the first layer.
Exporting puts the whole bias in ``bias_ih`` and zeros in ``bias_hh``
(``[0, 0, b_hn]`` for the GRU), which PyTorch's forward pass turns into
exactly crnn's sums.

Keras' single-layer ``LSTM`` and ``GRU(reset_after=True)`` map onto the
same equations with transposed kernels and, for the GRU, reordered gates;
see :func:`from_keras_weights` and ``docs/interop.md``.
"""
import re
from collections.abc import Mapping

import numpy as np

from crnn import _validation as v
from crnn._cells import CELL_TYPES, cell_by_gates, cell_type
from crnn._estimators import RNNClassifier, RNNRegressor

__all__ = ["to_torch_state_dict", "torch_module_kwargs", "from_torch_state_dict",
           "from_keras_weights"]

HEAD_WEIGHT = "head.weight"
HEAD_BIAS = "head.bias"
EMBEDDING = "embedding.weight"

# The cells of Keras layers that from_keras_weights maps (crnn._cells).
_KERAS_CELLS = tuple(name for name, cell in CELL_TYPES.items() if cell.keras_layer)
_TORCH_NONLINEARITIES = ("tanh", "relu")


# -- helpers -----------------------------------------------------------------

def _check_estimator(model):
    if not isinstance(model, (RNNRegressor, RNNClassifier)):
        raise TypeError(
            f"model must be a crnn RNNRegressor or RNNClassifier; got "
            f"{type(model).__name__}"
        )


def _suffixes(num_layers, bidirectional):
    """PyTorch's suffix of every layer and direction, in state_dict order."""
    return [f"_l{l}" + ("_reverse" if d else "")
            for l in range(num_layers) for d in range(2 if bidirectional else 1)]


def _torch_keys(num_layers, bidirectional, tokens=False):
    keys = [EMBEDDING] if tokens else []
    for sfx in _suffixes(num_layers, bidirectional):
        keys += ["weight_ih" + sfx, "weight_hh" + sfx, "bias_ih" + sfx, "bias_hh" + sfx]
    return keys + [HEAD_WEIGHT, HEAD_BIAS]


def _check_elman_activation(model):
    if model.cell == "elman" and model.activation not in _TORCH_NONLINEARITIES:
        raise ValueError(
            f"torch.nn.RNN's nonlinearity is 'tanh' or 'relu'; this Elman model "
            f"has activation={model.activation!r}, which PyTorch's RNN cannot "
            f"compute. Use activation='tanh' or 'relu' (the nonlinearity of the "
            f"torch module) to move weights between crnn and PyTorch"
        )


def _fitted_network(model):
    """The network of a fitted estimator whose hyper-parameters still define
    its fitted weights."""
    _check_estimator(model)
    model._check_architecture()
    return model._network()


def _to_numpy(value, name):
    """A NumPy array of real numbers from an array, a torch tensor (anything
    with ``.detach().cpu().numpy()``) or anything with ``__array__``."""
    if not isinstance(value, np.ndarray) and hasattr(value, "detach"):
        try:
            value = value.detach().cpu().numpy()
        except Exception as exc:  # e.g. bfloat16 tensors have no NumPy dtype
            raise TypeError(
                f"{name} could not be converted to a NumPy array with "
                f".detach().cpu().numpy() ({type(exc).__name__}: {exc}); convert "
                f"it to float32 or float64 first"
            ) from None
    return v.real_array(value, name, allow_bool=False)


def _key_error(model, state_dict, missing, unexpected):
    """A ValueError listing missing and unexpected keys, with a likely cause."""
    pattern = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")
    found = [pattern.match(k) for k in state_dict if isinstance(k, str)]
    found = [m for m in found if m]
    hints = []
    if found:
        layers = 1 + max(int(m.group(3)) for m in found)
        reverse = any(m.group(4) for m in found)
        if layers != model.num_layers:
            hints.append(f"the state dict has {layers} layer(s), the model "
                         f"num_layers={model.num_layers}")
        if reverse != bool(model.bidirectional):
            hints.append(f"the state dict is {'' if reverse else 'not '}"
                         f"bidirectional, the model has bidirectional="
                         f"{model.bidirectional}")
        if not any(m.group(1) == "bias" for m in found):
            hints.append("crnn's cells always have biases: for a torch module "
                         "built with bias=False add zero bias_ih/bias_hh arrays")
    if any(isinstance(k, str) and k.startswith("weight_hr_l") for k in unexpected):
        hints.append("an LSTM with proj_size > 0 (weight_hr_*) has no crnn "
                     "equivalent")
    prefixed = sorted({k[:-len("weight_ih_l0")] for k in unexpected
                       if isinstance(k, str) and k.endswith(".weight_ih_l0")})
    if prefixed:
        hints.append(f"the recurrent keys carry the prefix {prefixed[0]!r}: strip "
                     f"it (the keys are those of the nn.RNN/LSTM/GRU module itself)")
    if EMBEDDING in missing:
        hints.append(f"a model with vocab_size reads its token embeddings from an "
                     f"nn.Embedding stored as {EMBEDDING!r}")
    if EMBEDDING in unexpected:
        hints.append("the state dict has an embedding: set the model's vocab_size and "
                     "embedding_dim to read token ids through it")
    if HEAD_WEIGHT in missing:
        heads = [k for k in unexpected if isinstance(k, str) and k.endswith(".weight")
                 and not k.startswith(tuple(p for p in prefixed))]
        hint = (f" (is {heads[0]!r} the output layer?)" if heads else "")
        hints.append(f"the output layer (an nn.Linear) must be stored as "
                     f"'head.weight' and 'head.bias'{hint}")
    parts = []
    if missing:
        parts.append(f"missing keys {missing}")
    if unexpected:
        parts.append(f"unexpected keys {unexpected}")
    return ValueError(
        f"the state dict does not match this {type(model).__name__} (cell="
        f"{model.cell!r}, num_layers={model.num_layers}, bidirectional="
        f"{model.bidirectional}, i.e. {cell_type(model.cell).torch_class}(..., num_layers="
        f"{model.num_layers}, bidirectional={model.bidirectional}) plus an nn.Linear "
        f"'head'): " + "; ".join(parts)
        + ("" if not hints else ". Likely cause: " + "; ".join(hints))
    )


def _shape_hint(model, arrays):
    """What the recurrent weights look like, from ``weight_hh_l0``'s shape,
    if that is not the model's cell and hidden size."""
    w = arrays.get("weight_hh_l0")
    if w is None or w.ndim != 2 or w.shape[1] == 0 or w.shape[0] % w.shape[1]:
        return ""
    match = cell_by_gates(w.shape[0] // w.shape[1])
    cell = None if match is None else match.name
    if cell is None or (cell, w.shape[1]) == (model.cell, model.hidden_size):
        return ""
    return (f" (weight_hh_l0 of shape {w.shape} is that of cell={cell!r} with "
            f"hidden_size={w.shape[1]})")


def _check_shapes(model, arrays):
    """Check every array's shape; return ``(n_features, n_outputs)``
    (``n_features`` the width of layer 0's input: ``embedding_dim`` for
    token input)."""
    H = int(model.hidden_size)
    D = 2 if model.bidirectional else 1
    G = cell_type(model.cell).n_gates * H
    what = (f"cell={model.cell!r} with hidden_size={H}"
            + (" and bidirectional=True" if D == 2 else ""))
    w0, head = arrays["weight_ih_l0"], arrays[HEAD_WEIGHT]
    n_features = w0.shape[1] if w0.ndim == 2 and w0.shape[1] >= 1 else None
    n_outputs = head.shape[0] if head.ndim == 2 and head.shape[0] >= 1 else None
    for key, arr in arrays.items():
        if key == EMBEDDING:
            V, E = model.vocab_size, model.embedding_dim
            if arr.shape != (V, E) or n_features != E:
                raise ValueError(
                    f"state_dict[{key!r}] has shape {arr.shape} and weight_ih_l0 "
                    f"{w0.shape}; a model with vocab_size={V} and embedding_dim={E} "
                    f"needs ({V}, {E}) and (n_gates * hidden_size, {E})")
            continue
        if key == HEAD_WEIGHT:
            expected, text = (n_outputs, D * H), "(n_outputs, D * hidden_size)"
        elif key == HEAD_BIAS:
            expected, text = (n_outputs,), "(n_outputs,) like head.weight's rows"
        elif key.startswith("bias"):
            expected, text = (G,), "(n_gates * hidden_size,)"
        elif key.startswith("weight_hh"):
            expected, text = (G, H), "(n_gates * hidden_size, hidden_size)"
        elif key.startswith("weight_ih_l0"):
            expected, text = (G, n_features), "(n_gates * hidden_size, n_features)"
        else:
            expected, text = (G, D * H), ("(n_gates * hidden_size, num_directions * "
                                          "hidden_size)")
        if arr.shape != expected or None in expected:
            shown = ["n_features" if e is None and key.startswith("weight")
                     else "n_outputs" if e is None else str(e) for e in expected]
            shown = "(" + ", ".join(shown) + ("," if len(shown) == 1 else "") + ")"
            raise ValueError(
                f"state_dict[{key!r}] has shape {arr.shape}; a model with {what} "
                f"needs {shown}, i.e. {text}" + _shape_hint(model, arrays)
            )
    return n_features, n_outputs


def _class_order(model, n_outputs, classes):
    """Sorted class labels and the head rows that go with them."""
    if n_outputs < 2:
        raise ValueError(
            f"an RNNClassifier needs a head with one row per class and at least 2 "
            f"classes; head.weight has {n_outputs} row(s)"
        )
    if classes is None:
        fitted = getattr(model, "classes_", None) if model._is_fitted() else None
        if fitted is not None and len(fitted) == n_outputs:
            return fitted, np.arange(n_outputs)
        raise ValueError(
            f"classes is required: the label of each of the head's {n_outputs} "
            f"outputs, in the order of head.weight's rows"
            + ("" if fitted is None else
               f" (the model's fitted classes_ {fitted.tolist()} has "
               f"{len(fitted)} labels)")
        )
    labels = np.asarray(classes)
    if labels.ndim != 1 or labels.size != n_outputs:
        raise ValueError(
            f"classes must be a 1-D sequence of {n_outputs} labels, one per row of "
            f"head.weight; got shape {labels.shape}"
        )
    unique = v.unique_labels(labels)
    if unique.size != labels.size:
        raise ValueError(f"classes must be distinct; got {labels.tolist()}")
    _, rows = np.unique(labels, return_index=True)
    return unique, rows


# -- PyTorch -----------------------------------------------------------------

def to_torch_state_dict(model):
    """The weights of a fitted model as a PyTorch ``state_dict`` of NumPy arrays.

    The keys and shapes are exactly those of
    ``torch.nn.RNN/LSTM/GRU(**torch_module_kwargs(model)).state_dict()``
    (any ``batch_first``), followed by ``head.weight`` and ``head.bias`` for
    the output layer, an ``nn.Linear(D * hidden_size, n_outputs)``; for a
    model with ``vocab_size``, preceded by ``embedding.weight``, that of
    ``nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)``.

    Parameters
    ----------
    model : RNNRegressor or RNNClassifier
        A fitted estimator. An Elman model needs ``activation="tanh"`` or
        ``"relu"`` (PyTorch's two nonlinearities).

    Returns
    -------
    state_dict : dict of str to ndarray
        New C-contiguous arrays of the model's dtype, in PyTorch's order:
        for each layer ``l`` and direction (suffix ``""`` or ``"_reverse"``),
        ``weight_ih_l{l}``, ``weight_hh_l{l}``, ``bias_ih_l{l}``,
        ``bias_hh_l{l}``; then ``head.weight`` and ``head.bias``.

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    ValueError
        For an Elman activation PyTorch does not have, or hyper-parameters
        changed since fitting.

    See Also
    --------
    torch_module_kwargs : the constructor arguments of the torch module.
    from_torch_state_dict : the inverse.

    Notes
    -----
    With ``G = n_gates * H`` and crnn's named blocks (:attr:`weights_`)::

        weight_ih_l{l} = W_ih_l{l}                    (G, I_l)
        weight_hh_l{l} = W_hh_l{l}                    (G, H)
        bias_ih_l{l}   = b_l{l}                       (G,)
        bias_hh_l{l}   = 0                            Elman, LSTM
        bias_hh_l{l}   = [0, 0, b_hn_l{l}]            GRU (gates r, z, n)
        head.weight    = W_y                          (O, D*H)
        head.bias      = b_y                          (O,)

    PyTorch adds ``bias_ih + bias_hh`` where crnn adds ``b`` (and applies
    ``b_hn`` inside the GRU's reset product as crnn does), so its forward
    pass is crnn's. ``head`` computes the output layer's pre-activation
    ``Z = W_y S + b_y``: apply the regressor's ``output_activation`` to it
    (nothing for the default ``"identity"``); a classifier's ``Z`` are the
    logits of ``predict_proba``, whose columns follow ``classes_``. For a
    sequence-to-one model, ``S`` is the last layer's final state of each
    direction (``torch.cat([h_n[-2], h_n[-1]], 1)`` when bidirectional,
    ``h_n[-1]`` otherwise, with packed ragged batches); with
    ``return_sequences`` it is every step's output.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNRegressor, to_torch_state_dict, torch_module_kwargs
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(20, 6, 3)), rng.normal(size=20)
    >>> model = RNNRegressor(4, cell="gru", num_layers=2, random_state=0)
    >>> state = to_torch_state_dict(model.partial_fit(X, y))
    >>> for key, value in state.items():
    ...     print(key, value.shape)
    weight_ih_l0 (12, 3)
    weight_hh_l0 (12, 4)
    bias_ih_l0 (12,)
    bias_hh_l0 (12,)
    weight_ih_l1 (12, 4)
    weight_hh_l1 (12, 4)
    bias_ih_l1 (12,)
    bias_hh_l1 (12,)
    head.weight (1, 4)
    head.bias (1,)

    With PyTorch:

    >>> import torch                                          # doctest: +SKIP
    >>> rnn = torch.nn.GRU(**torch_module_kwargs(model),
    ...                    batch_first=True).double()         # doctest: +SKIP
    >>> rnn.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()
    ...                      if not k.startswith("head.")})  # doctest: +SKIP
    """
    network = _fitted_network(model)
    _check_elman_activation(model)
    P = network.layout.views(model.params_)
    H = network.H
    state = {EMBEDDING: P["W_emb"].copy()} if network.V else {}
    for sfx in _suffixes(network.L, network.D == 2):
        b = P["b" + sfx]
        bias_hh = np.zeros_like(b)
        if model.cell == "gru":
            bias_hh[2 * H:] = P["b_hn" + sfx]
        state["weight_ih" + sfx] = P["W_ih" + sfx].copy()
        state["weight_hh" + sfx] = P["W_hh" + sfx].copy()
        state["bias_ih" + sfx] = b.copy()
        state["bias_hh" + sfx] = bias_hh
    state[HEAD_WEIGHT] = P["W_y"].copy()
    state[HEAD_BIAS] = P["b_y"].copy()
    return state


def torch_module_kwargs(model):
    """Constructor arguments of the PyTorch module with a fitted model's layers.

    Parameters
    ----------
    model : RNNRegressor or RNNClassifier
        A fitted estimator.

    Returns
    -------
    kwargs : dict
        ``input_size``, ``hidden_size``, ``num_layers``, ``bidirectional``
        and, for the Elman cell, ``nonlinearity``: the arguments of
        ``torch.nn.RNN`` (``cell="elman"``), ``torch.nn.LSTM`` (``"lstm"``)
        or ``torch.nn.GRU`` (``"gru"``). Add ``batch_first`` as you like,
        and call ``.double()`` on the module for a float64 model. The output
        layer is ``nn.Linear(D * hidden_size, n_outputs_)`` with ``D = 2``
        when bidirectional. For a model with ``vocab_size``, ``input_size``
        is ``embedding_dim``, and the module reads the output of
        ``nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)``.

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    ValueError
        For an Elman model whose activation is not ``"tanh"`` or ``"relu"``:
        ``torch.nn.RNN`` has no other nonlinearity.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNClassifier, torch_module_kwargs
    >>> X = np.random.default_rng(0).normal(size=(10, 5, 2))
    >>> clf = RNNClassifier(8, activation="relu", bidirectional=True, random_state=0)
    >>> torch_module_kwargs(clf.partial_fit(X, [0, 1] * 5, classes=[0, 1]))
    {'input_size': 2, 'hidden_size': 8, 'num_layers': 1, 'bidirectional': True, \
'nonlinearity': 'relu'}
    """
    network = _fitted_network(model)
    _check_elman_activation(model)
    kwargs = {"input_size": network.I, "hidden_size": network.H,
              "num_layers": network.L, "bidirectional": network.D == 2}
    if model.cell == "elman":
        kwargs["nonlinearity"] = model.activation
    return kwargs


def from_torch_state_dict(model, state_dict, *, classes=None):
    """Set an estimator's weights from a PyTorch ``state_dict``.

    The state dict is that of ``torch.nn.RNN/LSTM/GRU`` (``weight_ih_l0``,
    ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ... ``_reverse``) plus
    ``head.weight`` and ``head.bias`` of an ``nn.Linear`` output layer (and,
    for a model with ``vocab_size``, ``embedding.weight`` of an
    ``nn.Embedding``), as :func:`to_torch_state_dict` makes. Values may be NumPy arrays, torch
    tensors (anything with ``.detach().cpu().numpy()``; on any device, with
    or without ``requires_grad``) or anything with ``__array__``; torch is
    never imported.

    Parameters
    ----------
    model : RNNRegressor or RNNClassifier
        Fitted or not. Its ``cell``, ``hidden_size``, ``num_layers`` and
        ``bidirectional`` must match the arrays; an Elman model's
        ``activation`` must be the torch module's nonlinearity (``"tanh"``
        or ``"relu"``, which the state dict does not record). Its ``dtype``
        is kept: the arrays are cast to it.
    state_dict : mapping of str to array
        Exactly the keys above, no more and no fewer.
    classes : array-like of shape (n_outputs,), optional
        For an :class:`RNNClassifier`: the label of each output of the head,
        in the order of ``head.weight``'s rows. crnn keeps ``classes_``
        sorted, so the rows are permuted to match. Required unless the
        model is fitted with ``n_outputs`` classes, which it then keeps.

    Returns
    -------
    model
        The same estimator, fitted: ``n_features_in_`` is
        ``weight_ih_l0.shape[1]``, ``n_outputs_`` is ``head.weight.shape[0]``,
        and it predicts at once. It can also continue training
        (``warm_start=True`` with ``fit``, or ``partial_fit``) from these
        weights with a fresh optimizer state (Adam's moments and SGD's
        velocity start at zero), a fresh random generator from
        ``random_state``, and ``n_iter_ = 0``.

    Raises
    ------
    TypeError
        If ``model`` is not a crnn estimator, ``state_dict`` not a mapping,
        or a value not an array of real numbers.
    ValueError
        For missing or unexpected keys, an array of the wrong shape, a NaN
        or infinite value (or one that overflows the model's dtype), an
        Elman activation other than tanh/relu, or missing or invalid
        ``classes``. The model is left unchanged.

    See Also
    --------
    to_torch_state_dict : the inverse.
    from_keras_weights : the same from Keras' LSTM and GRU layers.

    Notes
    -----
    With ``H = hidden_size``, for each layer ``l`` and direction::

        W_ih_l{l} = weight_ih_l{l}
        W_hh_l{l} = weight_hh_l{l}
        b_l{l}    = bias_ih_l{l} + bias_hh_l{l}                  Elman, LSTM
        b_l{l}    = [b_ir + b_hr, b_iz + b_hz, b_in]             GRU, where
                    [b_ir, b_iz, b_in] = bias_ih_l{l}, [b_hr, b_hz, b_hn] = bias_hh_l{l}
        b_hn_l{l} = b_hn                                         GRU
        W_y = head.weight,   b_y = head.bias

    PyTorch's LSTM and GRU gate orders (i, f, g, o) and (r, z, n) are crnn's.
    Only the bias sums are kept, so exporting again gives the same forward
    pass with the bias in ``bias_ih`` (see :func:`to_torch_state_dict`); the
    two ways of adding the biases differ by rounding (about 1e-16 in
    float64).

    For token input, ``W_emb = embedding.weight`` (its ``padding_idx`` row
    as stored, zeros in a new ``nn.Embedding``).

    The head computes ``W_y S + b_y`` and crnn applies its output
    activation on top: a classifier's softmax (so the head gives logits),
    a regressor's ``output_activation``. An :class:`RNNRegressor` then
    predicts 2-D arrays ``(n_samples[, n_timesteps], n_outputs)``, except
    with a single output (``head.weight`` of one row), where predictions are
    1-D ``(n_samples,)`` (``(n_samples, n_timesteps)`` per step) -- unless
    the regressor was already fitted with ``n_outputs`` outputs, in which
    case it keeps the shape of its ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNClassifier, from_torch_state_dict
    >>> rng = np.random.default_rng(0)
    >>> state = {"weight_ih_l0": rng.normal(size=(4, 2)),    # nn.RNN(2, 4)
    ...          "weight_hh_l0": rng.normal(size=(4, 4)) / 2,
    ...          "bias_ih_l0": np.zeros(4), "bias_hh_l0": np.zeros(4),
    ...          "head.weight": rng.normal(size=(3, 4)),   # nn.Linear(4, 3)
    ...          "head.bias": np.zeros(3)}
    >>> clf = from_torch_state_dict(RNNClassifier(4), state, classes=["a", "b", "c"])
    >>> clf.n_features_in_, clf.classes_.tolist()
    (2, ['a', 'b', 'c'])
    >>> clf.predict_proba(rng.normal(size=(5, 7, 2))).shape
    (5, 3)

    A torch module's state dict works the same (``head`` is the name of the
    ``nn.Linear`` in the module that holds both; see ``docs/interop.md``):

    >>> import torch                                         # doctest: +SKIP
    >>> from crnn import RNNRegressor                        # doctest: +SKIP
    >>> net = torch.nn.GRU(2, 4, batch_first=True)           # doctest: +SKIP
    >>> head = torch.nn.Linear(4, 1)                         # doctest: +SKIP
    >>> state = {**net.state_dict(), **{"head." + k: v
    ...          for k, v in head.state_dict().items()}}    # doctest: +SKIP
    >>> reg = from_torch_state_dict(RNNRegressor(4, cell="gru", dtype="float32"),
    ...                             state)                  # doctest: +SKIP
    """
    _check_estimator(model)
    dtype = model._validate_params()
    _check_elman_activation(model)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to arrays (a dict "
                        f"or a torch state_dict); got {type(state_dict).__name__}")
    tokens = model.vocab_size is not None
    expected = _torch_keys(model.num_layers, model.bidirectional, tokens)
    missing = [k for k in expected if k not in state_dict]
    known = set(expected)
    unexpected = [k for k in state_dict if k not in known]
    if missing or unexpected:
        raise _key_error(model, state_dict, missing, unexpected)
    arrays = {k: _to_numpy(state_dict[k], f"state_dict[{k!r}]") for k in expected}
    n_features, n_outputs = _check_shapes(model, arrays)
    if tokens:
        n_features = 1                      # one token id per step
    arrays = {k: v.cast_finite(a, f"state_dict[{k!r}]", dtype) for k, a in arrays.items()}

    is_classifier = isinstance(model, RNNClassifier)
    if is_classifier:
        labels, rows = _class_order(model, n_outputs, classes)
        arrays[HEAD_WEIGHT] = np.ascontiguousarray(arrays[HEAD_WEIGHT][rows])
        arrays[HEAD_BIAS] = np.ascontiguousarray(arrays[HEAD_BIAS][rows])
    elif classes is not None:
        raise ValueError("classes applies to an RNNClassifier; this is an "
                         f"{type(model).__name__}")
    else:
        fitted = (model._get_state(check_architecture=False) if model._is_fitted()
                  else None)
        keep = fitted is not None and fitted["n_outputs_"] == n_outputs
        squeeze = fitted["_squeeze"] if keep else n_outputs == 1

    network = model._make_network(n_features, n_outputs, dtype)
    params = network.layout.zeros(dtype)
    P = network.layout.views(params)
    H = network.H
    for sfx in _suffixes(network.L, network.D == 2):
        b_ih, b_hh = arrays["bias_ih" + sfx], arrays["bias_hh" + sfx]
        P["W_ih" + sfx][...] = arrays["weight_ih" + sfx]
        P["W_hh" + sfx][...] = arrays["weight_hh" + sfx]
        with np.errstate(over="ignore"):     # reported just below
            if model.cell == "gru":
                P["b" + sfx][:2 * H] = b_ih[:2 * H] + b_hh[:2 * H]
                P["b" + sfx][2 * H:] = b_ih[2 * H:]
                P["b_hn" + sfx][...] = b_hh[2 * H:]
            else:
                P["b" + sfx][...] = b_ih + b_hh
    P["W_y"][...] = arrays[HEAD_WEIGHT]
    P["b_y"][...] = arrays[HEAD_BIAS]
    if tokens:
        P["W_emb"][...] = arrays[EMBEDDING]
    if not np.isfinite(params).all():
        raise ValueError("the sums bias_ih + bias_hh overflow the model's dtype "
                         f"{np.dtype(dtype).name}")

    # Everything is checked: make the model fitted with these weights, and a
    # fresh random generator, optimizer and counters.
    entries = {"n_outputs_": n_outputs}
    entries.update({"classes_": labels} if is_classifier else {"_squeeze": squeeze})
    model._set_state(model._new_state(n_features, entries, dtype, params=params))
    return model


# -- Keras -------------------------------------------------------------------

def from_keras_weights(model, layer_weights, *, kind, head=None, classes=None):
    """Set an estimator's weights from a Keras ``LSTM`` or ``GRU`` layer.

    For a single unidirectional layer: ``layer_weights`` is what Keras'
    ``layer.get_weights()`` returns, ``[kernel, recurrent_kernel, bias]``
    (without ``bias`` for ``use_bias=False``), and ``head`` what a ``Dense``
    output layer's ``get_weights()`` returns, ``[kernel, bias]``.

    Parameters
    ----------
    model : RNNRegressor or RNNClassifier
        With ``cell=kind``, ``hidden_size`` equal to the layer's ``units``,
        ``num_layers=1`` and ``bidirectional=False``; fitted or not.
    layer_weights : sequence of arrays
        ``kind="lstm"``: kernel ``(I, 4H)``, recurrent kernel ``(H, 4H)``,
        bias ``(4H,)``, gates in Keras' order i, f, c, o.
        ``kind="gru"`` (``reset_after=True``, the Keras 2/3 default):
        kernel ``(I, 3H)``, recurrent kernel ``(H, 3H)``, bias ``(2, 3H)``
        (input bias, recurrent bias), gates in Keras' order z, r, h.
    kind : {"lstm", "gru"}
        The Keras layer type.
    head : sequence of arrays, optional
        The output ``Dense`` layer: kernel ``(H, n_outputs)`` and optionally
        bias ``(n_outputs,)`` (zeros if omitted). If None, the model's own
        fitted output layer is kept.
    classes : array-like, optional
        For a classifier, as for :func:`from_torch_state_dict`: the label
        of each of the head's outputs, in the order of its columns.

    Returns
    -------
    model
        The same estimator, fitted, as :func:`from_torch_state_dict` leaves it.

    Raises
    ------
    TypeError, ValueError
        As :func:`from_torch_state_dict`, and for a ``kind`` that is not the
        model's cell, a model with more than one layer or direction, the
        wrong number or shapes of arrays, a GRU bias of shape ``(3H,)``
        (``reset_after=False``: the reset gate multiplies ``h`` before the
        recurrent product, which neither crnn nor PyTorch computes), or
        ``head=None`` on a model that has no fitted output layer.

    Notes
    -----
    Keras multiplies rows by kernels (``x @ kernel``), PyTorch and crnn
    columns by weights (``W x``), so every matrix is transposed. The Keras
    layer must use its default activations (``activation="tanh"``,
    ``recurrent_activation="sigmoid"``; Keras before 2.3 defaulted to
    ``hard_sigmoid``, which this mapping does not reproduce).

    LSTM: Keras' gates i, f, c, o are PyTorch's i, f, g, o::

        W_ih = kernel.T      W_hh = recurrent_kernel.T      b = bias

    GRU with ``reset_after=True`` computes, with input bias ``b^in = bias[0]``
    and recurrent bias ``b^rec = bias[1]``::

        z  = sigmoid(x W_z + b_z^in + h U_z + b_z^rec)
        r  = sigmoid(x W_r + b_r^in + h U_r + b_r^rec)
        hh = tanh(x W_h + b_h^in + r * (h U_h + b_h^rec))
        h' = z * h + (1 - z) * hh

    which is PyTorch's GRU (same ``z`` convention) once the gate blocks are
    reordered from Keras' z, r, h to PyTorch's r, z, n::

        W_ih = [W_r, W_z, W_h]^T         W_hh = [U_r, U_z, U_h]^T
        b    = [b_r^in + b_r^rec, b_z^in + b_z^rec, b_h^in]
        b_hn = b_h^rec

    Output layer: ``W_y = head[0].T``, ``b_y = head[1]``. For a classifier,
    Keras' ``Dense(n_classes, activation="softmax")`` is crnn's softmax.

    Examples
    --------
    >>> import numpy as np
    >>> from crnn import RNNRegressor, from_keras_weights
    >>> rng = np.random.default_rng(0)
    >>> I, H = 3, 5
    >>> gru_weights = [rng.normal(size=(I, 3 * H)),     # keras GRU(5).get_weights()
    ...                rng.normal(size=(H, 3 * H)),
    ...                rng.normal(size=(2, 3 * H))]
    >>> dense_weights = [rng.normal(size=(H, 1)), np.zeros(1)]   # Dense(1)
    >>> model = from_keras_weights(RNNRegressor(H, cell="gru"), gru_weights,
    ...                            kind="gru", head=dense_weights)
    >>> model.predict(rng.normal(size=(4, 6, I))).shape
    (4,)
    """
    _check_estimator(model)
    if kind not in _KERAS_CELLS:
        raise ValueError(f"kind must be 'lstm' or 'gru' (the Keras layer type); "
                         f"got {kind!r}")
    if model.cell != kind:
        raise ValueError(f"kind={kind!r} weights need a model with cell={kind!r}; "
                         f"this model has cell={model.cell!r}")
    if model.num_layers != 1 or model.bidirectional:
        raise ValueError(
            f"from_keras_weights maps one unidirectional Keras layer; this model "
            f"has num_layers={model.num_layers}, bidirectional={model.bidirectional}"
        )
    if isinstance(layer_weights, (str, bytes, Mapping)) or not hasattr(
            layer_weights, "__len__"):
        raise TypeError(f"layer_weights must be the list of arrays of Keras' "
                        f"layer.get_weights(); got {type(layer_weights).__name__}")
    dtype = model._validate_params()
    if model.vocab_size is not None:
        raise ValueError("from_keras_weights sets one recurrent layer and a head; a model "
                         "with vocab_size also has an embedding: use "
                         "from_torch_state_dict, or set weights_['W_emb'] after loading")
    H = int(model.hidden_size)
    cell = cell_type(kind)
    G = cell.n_gates * H
    layer = cell.keras_layer
    if len(layer_weights) not in (2, 3):
        raise ValueError(
            f"a Keras {layer} layer's get_weights() is [kernel, recurrent_kernel, "
            f"bias] (or [kernel, recurrent_kernel] with use_bias=False); got "
            f"{len(layer_weights)} arrays"
        )
    names = ("kernel", "recurrent_kernel", "bias")
    w = [_to_numpy(a, f"Keras {layer} {n}") for a, n in zip(layer_weights, names)]
    kernel, recurrent = w[0], w[1]
    if kernel.ndim != 2 or kernel.shape[1] != G or kernel.shape[0] < 1:
        raise ValueError(
            f"a Keras {layer}({H}) kernel has shape (n_features, {G}); got "
            f"{kernel.shape}" + (f" (is units {kernel.shape[1] // cell.n_gates}?)"
                                 if kernel.ndim == 2 else "")
        )
    if recurrent.shape != (H, G):
        raise ValueError(f"a Keras {layer}({H}) recurrent_kernel has shape {(H, G)}; "
                         f"got {recurrent.shape}")
    if kind == "lstm":
        bias = w[2] if len(w) == 3 else np.zeros(G)
        if bias.shape != (G,):
            raise ValueError(f"a Keras LSTM({H}) bias has shape {(G,)}; got "
                             f"{bias.shape}")
        bias_in, bias_rec = bias, np.zeros(G)
    else:
        bias = w[2] if len(w) == 3 else np.zeros((2, G))
        if bias.shape == (G,):
            raise ValueError(
                f"a Keras GRU bias of shape {(G,)} comes from reset_after=False, "
                f"which applies the reset gate to h before the recurrent product; "
                f"neither crnn nor PyTorch computes that GRU. Train the Keras "
                f"model with reset_after=True (the default)"
            )
        if bias.shape != (2, G):
            raise ValueError(f"a Keras GRU({H}) bias (reset_after=True) has shape "
                             f"{(2, G)} (input bias, recurrent bias); got {bias.shape}")
        bias_in, bias_rec = bias[0], bias[1]
    for arr, name in ((kernel, "kernel"), (recurrent, "recurrent_kernel"),
                      (bias, "bias")):
        v.cast_finite(arr, f"Keras {layer} {name}", dtype)

    if cell.keras_gates != cell.gates:
        # Keras' gate blocks (GRU: z, r, h) -> crnn's and PyTorch's (r, z, n).
        order = cell.keras_columns(H)
        kernel, recurrent = kernel[:, order], recurrent[:, order]
        bias_in, bias_rec = bias_in[order], bias_rec[order]
    state = {"weight_ih_l0": kernel.T, "weight_hh_l0": recurrent.T,
             "bias_ih_l0": bias_in, "bias_hh_l0": bias_rec}

    if head is None:
        if not model._is_fitted():
            raise ValueError(
                "head is required (the output Dense layer's get_weights(): "
                "[kernel (units, n_outputs), bias (n_outputs,)]) unless the model "
                "is fitted, whose output layer is then kept"
            )
        P = _fitted_network(model).layout.views(model.params_)
        if P["W_y"].shape[1] != H:
            raise ValueError(f"the model's output layer reads {P['W_y'].shape[1]} "
                             f"states, not hidden_size={H}; pass head")
        state[HEAD_WEIGHT], state[HEAD_BIAS] = P["W_y"].copy(), P["b_y"].copy()
    else:
        if isinstance(head, (str, bytes, Mapping)) or not hasattr(head, "__len__") \
                or len(head) not in (1, 2):
            raise ValueError("head must be a Dense layer's get_weights(): [kernel] or "
                             "[kernel, bias]")
        dense = _to_numpy(head[0], "the head's kernel")
        if dense.ndim != 2 or dense.shape[0] != H or dense.shape[1] < 1:
            raise ValueError(f"the head's kernel has shape (units={H}, n_outputs); "
                             f"got {dense.shape}")
        dense_bias = (_to_numpy(head[1], "the head's bias") if len(head) == 2
                      else np.zeros(dense.shape[1]))
        if dense_bias.shape != (dense.shape[1],):
            raise ValueError(f"the head's bias has shape ({dense.shape[1]},) like the "
                             f"kernel's columns; got {dense_bias.shape}")
        v.cast_finite(dense, "the head's kernel", dtype)
        v.cast_finite(dense_bias, "the head's bias", dtype)
        state[HEAD_WEIGHT], state[HEAD_BIAS] = dense.T, dense_bias
    return from_torch_state_dict(model, state, classes=classes)
