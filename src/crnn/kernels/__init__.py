"""Compiled kernels of crnn.

The ``.pxd`` files of this package are its C-level API: another Cython
extension can ``cimport`` them (``from crnn.kernels.elman cimport
elman_forward``) and run the kernels without the GIL. Each ``.pxd`` states
the shapes, layouts and leading dimensions its functions expect; the C ABI
they describe is versioned (``abi``, and ``docs/c_api.md``).

Modules
-------
abi
    The C ABI version (``C_ABI_VERSION``, ``c_abi_version``, and
    ``check_c_abi`` for a consumer to call at import) and the workspace
    alignment (``ALIGN``, ``align_up``).
blas
    Row-major fused float32/float64 wrappers over ``scipy.linalg.cython_blas``,
    and the per-step recurrent product with its weight packed once per pass
    (used when scipy's BLAS runs on one thread; ``blas`` finds the function
    that reports its thread count in scipy's BLAS library, at import).
activations
    The activation codes (``Activation``, softmax included), the one table
    of names and codes (``CODES``, ``OUTPUTS``), and the element-wise passes
    of each activation and its derivative exposed for tests.
recurrence
    The bookkeeping of packed variable-length batches that every cell kernel
    shares (``.pxd``: inline), and the argument checks of their Python entry
    points.
elman
    Elman RNN layer: forward pass, backpropagation through time, one step.
lstm
    LSTM layer (PyTorch's equations and gate order): forward pass, BPTT,
    one step.
gru
    GRU layer (PyTorch's equations and gate order): forward pass, BPTT, one
    step.
stack
    A whole network (layers, directions, dropout, output layer, loss and
    BPTT) as one compiled pass per call: ``Stack``, and the facts the cell
    registry ``crnn._cells`` is built from (``CELLS``, ``BLOCKS``).
optim
    The compiled Adam update.
"""

