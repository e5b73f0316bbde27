"""The version of crnn (one place, read by the package and by its model files)."""
__version__ = "0.1.0"
