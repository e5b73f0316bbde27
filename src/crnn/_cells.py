"""The cell registry: every recurrent cell, described once.

The compiled side owns what is compiled into the kernels: each cell's code,
its number of gates and of states, and the parameter blocks its kernels read
(``crnn.kernels.stack.CELLS``, built from the constants of ``elman.pxd``,
``lstm.pxd`` and ``gru.pxd``). This module adds what only Python needs (the
names of the gates and states, the equations, the initialisation, and the
same cell's names in PyTorch and Keras) and is what the rest of crnn reads:
the network, interop, the estimators' validation and the benchmarks.

The kernels run one layer and one direction over a packed batch;
``crnn.kernels.stack`` drives them for a whole network.
"""
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from crnn.kernels.activations import CODES as ACTIVATIONS
from crnn.kernels.stack import BLOCKS
from crnn.kernels.stack import CELLS as KERNELS

# The shape of each parameter block of a unit with G = n_gates * H gate rows,
# input width I and H hidden units; keyed by the names of stack.BLOCKS.
_BLOCK_SHAPES = {
    "W_ih": lambda G, I, H: (G, I),
    "W_hh": lambda G, I, H: (G, H),
    "b": lambda G, I, H: (G,),
    "b_hn": lambda G, I, H: (H,),
}


def glorot_uniform(rng, shape):
    """``U(-sqrt(6 / (fan_in + fan_out)), +...)`` for a ``(fan_out, fan_in)`` matrix."""
    fan_out, fan_in = shape
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)


def orthogonal(rng, n):
    """A random ``n x n`` orthogonal matrix, Haar-distributed (QR with sign fix).

    The QR is SciPy's LAPACK, on the BLAS that crnn holds at one thread
    during a fit (``crnn._threads``): NumPy's would wake NumPy's own BLAS
    pool, whose threads then spin beside the training loop.
    """
    Q, R = scipy.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


@dataclass(frozen=True)
class CellType:
    """One cell of the registry.

    Attributes
    ----------
    name : str
        ``"elman"``, ``"lstm"`` or ``"gru"``.
    code : int
        The compiled kernels' code of the cell.
    n_gates : int
        ``G / H``: gate blocks of ``H`` rows in ``W_ih``, ``W_hh`` and ``b``
        (from the kernels).
    n_states : int
        States per unit, 2 for the LSTM's ``(h, c)`` (from the kernels).
    blocks : tuple of str
        The parameter blocks of one layer and direction, in the order of
        ``crnn.kernels.stack.BLOCKS`` (from the kernels).
    gates : tuple of str
        The gate blocks, in the kernels' order (``n_gates`` of them).
    states : tuple of str
        The states, in the order of the first axis of state arrays.
    equations : str
        What one step computes.
    torch_class : str
        The PyTorch module with the same equations and gate order.
    keras_layer : str or None
        The Keras layer whose weights :func:`crnn.from_keras_weights` maps
        onto this cell, if any.
    keras_gates : tuple of str or None
        That layer's gate blocks, in Keras' order, named as in ``gates``.
    onnx_op : str
        The ONNX operator with this cell's equations (``RNN``, ``LSTM``,
        ``GRU``; the GRU's with ``linear_before_reset=1``).
    onnx_gates : tuple of str
        That operator's gate blocks, in ONNX's order, named as in ``gates``.
    forget_gate : str or None
        The gate whose bias starts at ``forget_bias``.
    has_activation : bool
        Whether the cell takes a hidden activation (the Elman cell's ``g``).
    """

    name: str
    code: int
    n_gates: int
    n_states: int
    blocks: tuple
    gates: tuple
    states: tuple
    equations: str
    torch_class: str
    keras_layer: str = None
    keras_gates: tuple = None
    onnx_op: str = None
    onnx_gates: tuple = None
    forget_gate: str = None
    has_activation: bool = False

    def block_shapes(self, I, H):
        """Names and shapes of one layer-direction's parameters, for input
        width ``I`` and ``H`` hidden units."""
        G = self.n_gates * H
        return [(name, _BLOCK_SHAPES[name](G, I, H)) for name in self.blocks]

    def keras_columns(self, H):
        """The columns of a Keras kernel ``(I, n_gates * H)`` (or bias) that
        hold each of crnn's gate blocks, in crnn's order."""
        return self.gate_rows(self.gates, self.keras_gates, H)

    def onnx_rows(self, H):
        """The rows of crnn's ``(n_gates * H, ...)`` weights (or bias) that
        make ONNX's, in ONNX's gate order."""
        return self.gate_rows(self.onnx_gates, self.gates, H)

    @staticmethod
    def gate_rows(order, source, H):
        """The indices, into gate blocks of ``H`` laid out in ``source``
        order, of the blocks in ``order``."""
        return np.concatenate([np.arange(k * H, (k + 1) * H)
                               for k in map(source.index, order)])


def _registry(**python_side):
    """The registry: the kernels' facts about each cell, and Python's."""
    if set(_BLOCK_SHAPES) != set(BLOCKS):
        raise ImportError("crnn._cells and the compiled kernels disagree about the "
                          "parameter blocks: rebuild crnn")
    types = {}
    for name, kernel in KERNELS.items():
        cell = CellType(name, kernel.code, kernel.n_gates, kernel.n_states,
                        tuple(kernel.blocks), **python_side[name])
        if len(cell.gates) != cell.n_gates or len(cell.states) != cell.n_states:
            raise ImportError(f"crnn._cells and the compiled kernels disagree about the "
                              f"{name} cell: rebuild crnn")
        types[name] = cell
    return types


#: Every cell, by name.
CELL_TYPES = _registry(
    elman=dict(
        gates=("h",), states=("h",),
        equations="h_t = g(W_ih x_t + W_hh h_{t-1} + b)",
        torch_class="nn.RNN", has_activation=True, onnx_op="RNN", onnx_gates=("h",)),
    lstm=dict(
        gates=("i", "f", "g", "o"), states=("h", "c"),
        equations="PyTorch's LSTM: gates (i, f, g, o), c_t = f c_{t-1} + i g, "
                  "h_t = o tanh(c_t); one bias b (PyTorch's b_ih + b_hh)",
        torch_class="nn.LSTM", keras_layer="LSTM", keras_gates=("i", "f", "g", "o"),
        forget_gate="f", onnx_op="LSTM", onnx_gates=("i", "o", "f", "g")),
    gru=dict(
        gates=("r", "z", "n"), states=("h",),
        equations="PyTorch's GRU: gates (r, z, n), n = tanh(W_in x + b_in + r (W_hn h "
                  "+ b_hn)), h_t = (1 - z) n + z h_{t-1}; b holds b_ir + b_hr, "
                  "b_iz + b_hz, b_in",
        torch_class="nn.GRU", keras_layer="GRU", keras_gates=("z", "r", "n"),
        onnx_op="GRU", onnx_gates=("z", "r", "n")),
)

#: The names of the cells, in the kernels' order.
CELLS = tuple(CELL_TYPES)


def cell_type(name):
    """The registry entry of the cell called ``name``."""
    try:
        return CELL_TYPES[name]
    except (KeyError, TypeError):
        raise ValueError(f"cell must be one of {CELLS}; got {name!r}") from None


def cell_by_gates(n_gates):
    """The cell with ``n_gates`` gate blocks, or None."""
    for cell in CELL_TYPES.values():
        if cell.n_gates == n_gates:
            return cell
    return None


class Cell:
    """A cell of the registry with its hyper-parameters: what the network
    needs of it.

    Attributes
    ----------
    type : CellType
    name, n_gates, n_states
        Those of ``type``.
    g : int
        The code of the hidden activation (the Elman cell's; the identity's
        for the others, whose kernels take none).
    forget_bias : float
        The initial bias of the forget gate, if the cell has one.
    """

    def __init__(self, cell_type, activation="tanh", forget_bias=1.0):
        self.type = cell_type
        if cell_type.has_activation and activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}; got "
                             f"{activation!r}")
        self.g = ACTIVATIONS[activation if cell_type.has_activation else "identity"]
        self.forget_bias = forget_bias

    @property
    def name(self):
        return self.type.name

    @property
    def n_gates(self):
        return self.type.n_gates

    @property
    def n_states(self):
        return self.type.n_states

    def blocks(self, I, H):
        """Names and shapes of one layer-direction's parameters."""
        return self.type.block_shapes(I, H)

    def initialize(self, P, rng):
        """Glorot-uniform input weights and orthogonal recurrent weights, per
        gate block; zero biases, but ``forget_bias`` for a forget gate's."""
        H = P["W_hh"].shape[1]
        for k in range(self.n_gates):
            rows = slice(k * H, (k + 1) * H)
            P["W_ih"][rows] = glorot_uniform(rng, P["W_ih"][rows].shape)
            P["W_hh"][rows] = orthogonal(rng, H)
        for name in P:
            if name.startswith("b"):
                P[name][...] = 0
        if self.type.forget_gate is not None:
            k = self.type.gates.index(self.type.forget_gate)
            P["b"][k * H:(k + 1) * H] = self.forget_bias


def make_cell(name, activation="tanh", forget_bias=1.0):
    """The cell called ``name``; ``activation`` applies to the Elman cell only."""
    return Cell(cell_type(name), activation, forget_bias)
