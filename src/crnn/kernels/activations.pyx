"""Python view of the activation codes declared in ``activations.pxd``."""

#: Activation name -> code understood by the kernels.
CODES = {
    "identity": IDENTITY,
    "tanh": TANH,
    "sigmoid": SIGMOID,
    "relu": RELU,
}
