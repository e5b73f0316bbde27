"""Export a fitted model as an ONNX graph of standard operators.

The recurrent layers become ONNX's ``RNN``, ``LSTM`` and ``GRU`` operators,
one per layer (both directions in one, ``direction="bidirectional"``); the
output layer a ``Gemm`` or ``MatMul`` + ``Add`` and its activation. Each
operator computes crnn's equations once the weights are laid out as ONNX
wants them (``crnn._cells``: ``onnx_op``, ``onnx_gates``):

* gate blocks reordered: LSTM (i, f, g, o) -> ONNX (i, o, f, c); GRU
  (r, z, n) -> ONNX (z, r, h); the Elman cell's one block as it is;
* ``B = [Wb, Rb]``: crnn's bias ``b`` as ``Wb`` and zeros as ``Rb``, but
  the GRU's ``b_hn`` as the candidate block of ``Rb``, inside the reset
  gate's product: ``linear_before_reset=1``, PyTorch's and crnn's GRU;
* ``layout=0`` (time-major: ONNX Runtime's CPU operators refuse
  ``layout=1``) between a ``Transpose`` from and to the graph's
  batch-first tensors.

With ``sequence_lens``, the operators run each sequence to its own length;
the final states (``Y_h``) are then each sequence's, as in crnn, and the
per-step outputs past a sequence's end are set to zero, as ``predict``
sets them.
"""
import json

import numpy as np

from crnn._estimators import RNNClassifier, RNNRegressor
from crnn._io import write_atomic

__all__ = ["to_onnx"]

#: The opset the graph is made for: the recurrent operators as of opset 14
#: (``layout``), and what every maintained runtime reads.
OPSET = 17

#: crnn's hidden activations as ONNX's recurrent-operator activations;
#: the identity is ONNX's ``Affine`` with alpha 1 and beta 0.
_RNN_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid",
                    "identity": "Affine"}
#: The output activations as nodes (None: no node).
_OUTPUT_ACTIVATIONS = {"identity": None, "tanh": "Tanh", "sigmoid": "Sigmoid",
                       "softmax": "Softmax"}


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("crnn.to_onnx needs the onnx package: pip install "
                          "'crnn[onnx]'") from exc
    return onnx


class _Graph:
    """The nodes, initializers and names of a graph being built."""

    def __init__(self, onnx, dtype):
        self.onnx, self.helper = onnx, onnx.helper
        self.dtype = np.dtype(dtype)
        self.elem = self.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes, self.initializers = [], []
        self.count = 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def constant(self, hint, value, dtype=None):
        """An initializer holding ``value``; its name."""
        name = self.name(hint)
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, n_outputs=1, outputs=None, **attributes):
        """Add a node; the names of its outputs (one name if it has one)."""
        outputs = outputs or [self.name(op.lower()) for _ in range(n_outputs)]
        self.nodes.append(self.helper.make_node(op, list(inputs), outputs,
                                                name=self.name(op), **attributes))
        return outputs[0] if len(outputs) == 1 else outputs


def _layer_weights(network, params, layer):
    """ONNX's ``W (D, G, I_l)``, ``R (D, G, H)`` and ``B (D, 2G)`` of a layer."""
    cell, H, D = network.cell.type, network.H, network.D
    rows = cell.onnx_rows(H)
    W, R, B = [], [], []
    for d in range(D):
        P = network.unit_views(params, layer * D + d)
        W.append(P["W_ih"][rows])
        R.append(P["W_hh"][rows])
        input_bias, recurrent_bias = P["b"][rows], np.zeros(rows.size, params.dtype)
        if "b_hn" in P:           # the GRU's candidate bias, inside the reset product
            recurrent_bias[cell.onnx_gates.index("n") * H:][:H] = P["b_hn"]
        B.append(np.concatenate([input_bias, recurrent_bias]))
    return np.stack(W), np.stack(R), np.stack(B)


def to_onnx(model, path=None, *, lengths=True, states=False, opset=OPSET):
    """Export a fitted model as an ONNX graph.

    The graph uses standard ONNX operators only (``RNN``, ``LSTM``, ``GRU``,
    ``Gemm``, ``MatMul``, ``Softmax``, ``ArgMax``, ``Transpose``,
    ``Gather``, ...), so any ONNX runtime runs it; it computes what
    ``predict`` (and, for a classifier, ``predict_proba``) computes, with
    dynamic batch and time axes.

    Parameters
    ----------
    model : RNNRegressor or RNNClassifier
        Fitted.
    path : str or path-like, optional
        Where to write the ``.onnx`` file (as well as returning the model);
        written atomically, as :func:`crnn.save` writes.
    lengths : bool, default=True
        Give the graph an input ``lengths`` (``(batch,)`` int32: each
        sequence's length, as ``predict``'s ``lengths``) for padded ragged
        batches. Without it every sequence runs over all the time steps.
    states : bool, default=False
        Give the graph initial-state inputs and final-state outputs:
        ``initial_h`` / ``final_h`` ``(num_layers * D, batch, H)`` and, for
        the LSTM, ``initial_c`` / ``final_c``, in the layout of
        ``predict``'s ``initial_state`` and ``return_state``.
    opset : int, default=17
        The ONNX opset to declare (at least 14).

    Returns
    -------
    onnx.ModelProto

    Notes
    -----
    Inputs: ``X`` ``(batch, time, n_features)``, the model's float type
    (for a model with ``vocab_size``: ``(batch, time)`` int64 token ids,
    embedded by a ``Gather`` of the embedding's rows); ``lengths`` and the
    initial states as chosen. Outputs:

    * regressor: ``y``, ``(batch[, time], n_outputs)``, or without the last
      axis when the model predicts 1-D targets;
    * classifier: ``probabilities`` ``(batch[, time], n_classes)``, columns
      in the order of ``classes_``, and ``label_index`` (int64): the column
      of the most probable class, an index into ``classes_``, which the
      model's metadata holds as JSON (``metadata_props["classes"]``);

    then ``final_h`` (and ``final_c``) with ``states``. With
    ``return_sequences``, steps past a sequence's length give zeros (and
    index 0), as ``predict`` on a padded array does.

    ONNX Runtime's CPU ``LSTM``, ``GRU`` and ``RNN`` run float32 only: a
    float64 model exports to a valid graph that it refuses.

    Examples
    --------
    >>> import numpy as np, crnn
    >>> X = np.random.default_rng(0).normal(size=(20, 6, 2))
    >>> model = crnn.RNNRegressor(4, cell="gru", max_iter=2, dtype="float32",
    ...                           random_state=0).fit(X, X[:, -1, 0])  # doctest: +SKIP
    >>> graph = crnn.to_onnx(model, "model.onnx")                    # doctest: +SKIP
    """
    onnx = _onnx()
    if not isinstance(model, (RNNRegressor, RNNClassifier)):
        raise TypeError(f"model must be a crnn RNNRegressor or RNNClassifier; got "
                        f"{type(model).__name__}")
    model._check_is_fitted()
    model._check_architecture()
    opset = int(opset)
    if opset < 14:
        raise ValueError(f"opset must be at least 14 (the recurrent operators' "
                         f"layout attribute); got {opset}")
    network, params = model._network(), model.params_
    classifier = isinstance(model, RNNClassifier)
    L, D, H, O = network.L, network.D, network.H, network.O
    cell = network.cell.type
    g = _Graph(onnx, params.dtype)
    helper, elem = g.helper, g.elem

    if network.V:           # token ids, embedded by a Gather of W_emb's rows
        inputs = [helper.make_tensor_value_info("X", onnx.TensorProto.INT64,
                                                ["batch", "time"])]
    else:
        inputs = [helper.make_tensor_value_info("X", elem, ["batch", "time", network.I])]
    seq_lens = ""
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", onnx.TensorProto.INT32,
                                                    ["batch"]))
        seq_lens = "lengths"
    state_names = [f"{s}" for s in cell.states]           # h, and the LSTM's c
    initial = {}
    if states:
        for s in state_names:
            inputs.append(helper.make_tensor_value_info(f"initial_{s}", elem,
                                                        [L * D, "batch", H]))
            initial[s] = f"initial_{s}"

    x = "X"
    if network.V:
        # x(B, T, I) = W_emb[X]
        W_emb = network.views(params)[0]["W_emb"]
        x = g.node("Gather", [g.constant("W_emb", W_emb), "X"], axis=0)
    x = g.node("Transpose", [x], perm=[1, 0, 2])                 # (T, B, I)
    finals = {s: [] for s in state_names}
    for layer in range(L):
        W, R, B = _layer_weights(network, params, layer)
        op_inputs = [x, g.constant("W", W), g.constant("R", R), g.constant("B", B),
                     seq_lens]
        for s in state_names:
            if s in initial:
                start = g.constant("start", [layer * D], np.int64)
                stop = g.constant("stop", [(layer + 1) * D], np.int64)
                op_inputs.append(g.node("Slice", [initial[s], start, stop]))
            else:
                op_inputs.append("")
        attributes = dict(hidden_size=H, layout=0,
                          direction="bidirectional" if D == 2 else "forward")
        if cell.onnx_op == "GRU":
            attributes["linear_before_reset"] = 1
        if cell.onnx_op == "RNN":
            activation = model.activation
            attributes["activations"] = [_RNN_ACTIVATIONS[activation]] * D
            if activation == "identity":
                attributes["activation_alpha"] = [1.0] * D
                attributes["activation_beta"] = [0.0] * D
        outputs = g.node(cell.onnx_op, op_inputs, n_outputs=1 + len(state_names),
                         **attributes)
        y, layer_finals = outputs[0], outputs[1:]
        for s, final in zip(state_names, layer_finals):
            finals[s].append(final)                                # (D, B, H)
        # (T, D, B, H) -> (T, B, D*H): the next layer's input
        x = g.node("Reshape", [g.node("Transpose", [y], perm=[0, 2, 1, 3]),
                               g.constant("shape", [0, 0, D * H], np.int64)])

    W_y, b_y = (network.views(params)[0][k] for k in ("W_y", "b_y"))
    if network.return_sequences:
        z = g.node("Transpose", [x], perm=[1, 0, 2])                  # (B, T, D*H)
        z = g.node("Add", [g.node("MatMul", [z, g.constant("W_y_T", W_y.T)]),
                           g.constant("b_y", b_y)])
    else:
        last = g.node("Reshape", [g.node("Transpose", [finals["h"][-1]], perm=[1, 0, 2]),
                                  g.constant("shape", [0, D * H], np.int64)])
        z = g.node("Gemm", [last, g.constant("W_y", W_y), g.constant("b_y", b_y)],
                   transB=1)
    activation = _OUTPUT_ACTIVATIONS[network.g2]
    if activation == "Softmax":
        z = g.node("Softmax", [z], axis=-1)
    elif activation is not None:
        z = g.node(activation, [z])
    if network.return_sequences and lengths:
        # zero the steps past each sequence's length: (B, T, 1) mask
        T = g.node("Gather", [g.node("Shape", ["X"]), g.constant("axis1", 1, np.int64)])
        steps = g.node("Range", [g.constant("zero", 0, np.int64), T,
                                 g.constant("one", 1, np.int64)])
        lens = g.node("Cast", ["lengths"], to=onnx.TensorProto.INT64)
        mask = g.node("Less", [g.node("Unsqueeze", [steps, g.constant("ax0", [0], np.int64)]),
                               g.node("Unsqueeze", [lens, g.constant("ax1", [1], np.int64)])])
        mask = g.node("Unsqueeze", [mask, g.constant("ax2", [2], np.int64)])
        z = g.node("Where", [mask, z, g.constant("zeros", 0.0)])
    outputs = []
    if classifier:
        g.node("Identity", [z], outputs=["probabilities"])
        g.node("ArgMax", [z], outputs=["label_index"], axis=-1, keepdims=0)
        shape = ["batch"] + (["time"] if network.return_sequences else [])
        outputs += [helper.make_tensor_value_info("probabilities", elem, shape + [O]),
                    helper.make_tensor_value_info("label_index", onnx.TensorProto.INT64,
                                                  shape)]
    else:
        shape = ["batch"] + (["time"] if network.return_sequences else [])
        if model._squeeze:
            g.node("Squeeze", [z, g.constant("last", [-1], np.int64)], outputs=["y"])
        else:
            g.node("Identity", [z], outputs=["y"])
            shape = shape + [O]
        outputs.append(helper.make_tensor_value_info("y", elem, shape))
    if states:
        for s in state_names:
            g.node("Concat", finals[s], outputs=[f"final_{s}"], axis=0)
            outputs.append(helper.make_tensor_value_info(f"final_{s}", elem,
                                                         [L * D, "batch", H]))

    graph = helper.make_graph(g.nodes, f"crnn_{type(model).__name__}", inputs, outputs,
                              g.initializers)
    onnx_model = helper.make_model(graph, producer_name="crnn",
                                   opset_imports=[helper.make_opsetid("", opset)])
    onnx_model.doc_string = (f"crnn {type(model).__name__}: {L} x {cell.name} "
                             f"(H={H}{', bidirectional' if D == 2 else ''})")
    metadata = {"crnn_estimator": type(model).__name__,
                "crnn_params": json.dumps({k: repr(v) for k, v in
                                           model.get_params(deep=False).items()})}
    if classifier:
        metadata["classes"] = json.dumps(model.classes_.tolist())
    helper.set_model_props(onnx_model, metadata)
    onnx.checker.check_model(onnx_model, full_check=True)
    if path is not None:
        write_atomic(path, lambda fh: fh.write(onnx_model.SerializeToString()))
    return onnx_model
