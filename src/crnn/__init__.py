"""crnn: recurrent neural networks with compiled BPTT kernels."""
__version__ = "0.1.0"
