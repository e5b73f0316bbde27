"""crnn: recurrent neural networks for sequences, with compiled BPTT kernels.

The estimators :class:`RNNRegressor` and :class:`RNNClassifier` train
recurrent networks -- the Elman RNN

    S_t = g1(W_ih x_t + W_hh S_{t-1} + b),     Y_t = g2(W_y S_t + b_y)

and LSTM and GRU cells with PyTorch's equations; stacked, bidirectional, on
sequences of different lengths -- by backpropagation through time, with the
time loops in typed Cython over BLAS. :func:`check_gradient` verifies the
gradient by finite differences; :func:`gradient_flow` shows it reaching
every step; :func:`save` and :func:`load` keep models
safely; :func:`to_torch_state_dict` and :func:`from_torch_state_dict` move
weights to and from PyTorch; :func:`to_onnx` exports a model for any ONNX
runtime.
"""
from crnn._config import config_context, get_config, set_config
from crnn._estimators import RNNClassifier, RNNRegressor
from crnn._flow import GradientFlow, gradient_flow
from crnn._gradcheck import GradientCheck, check_gradient
from crnn.datasets import load_coriolanus, load_sunspots
from crnn.interop import (from_keras_weights, from_torch_state_dict,
                          to_torch_state_dict, torch_module_kwargs)
from crnn.exceptions import (
    ConvergenceWarning,
    ModelFileError,
    NotFittedError,
    TrainingDivergedError,
)
from crnn._io import load, save
from crnn._onnx import to_onnx
from crnn._stream import ClassifierStream, Stream
from crnn._version import __version__


__all__ = [
    "RNNRegressor",
    "RNNClassifier",
    "check_gradient",
    "GradientCheck",
    "gradient_flow",
    "GradientFlow",
    "load_sunspots",
    "load_coriolanus",
    "to_torch_state_dict",
    "torch_module_kwargs",
    "from_torch_state_dict",
    "from_keras_weights",
    "ConvergenceWarning",
    "NotFittedError",
    "TrainingDivergedError",
    "ModelFileError",
    "save",
    "load",
    "to_onnx",
    "Stream",
    "ClassifierStream",
    "get_config",
    "set_config",
    "config_context",
]
