"""One flat parameter buffer with named views."""
import numpy as np


class ParamLayout:
    """Where each named parameter block lives inside one flat 1-D buffer.

    Every weight matrix and bias of a network is a view into a single
    contiguous array, and gradients use the same layout. Optimizers, gradient
    clipping, the gradient check and serialisation then each work on one
    array.

    Parameters
    ----------
    blocks : list of (str, tuple of int)
        Names and shapes of the blocks, in storage order.

    Examples
    --------
    >>> layout = ParamLayout([("W", (2, 3)), ("b", (2,))])
    >>> buf = layout.zeros(np.float64)
    >>> layout.views(buf)["W"].shape
    (2, 3)
    >>> layout.size
    8
    """

    def __init__(self, blocks):
        self.shapes = {}
        self.slices = {}
        offset = 0
        for name, shape in blocks:
            if name in self.shapes:
                raise ValueError(f"duplicate parameter block name {name!r}")
            size = int(np.prod(shape, dtype=np.int64))
            self.shapes[name] = tuple(shape)
            self.slices[name] = slice(offset, offset + size)
            offset += size
        self.size = offset

    @property
    def names(self):
        """Block names in storage order."""
        return list(self.shapes)

    def zeros(self, dtype):
        """A zero-filled flat buffer of this layout."""
        return np.zeros(self.size, dtype=dtype)

    def view(self, buffer, name):
        """The block ``name`` of ``buffer`` as a writable view of its shape."""
        return buffer[self.slices[name]].reshape(self.shapes[name])

    def views(self, buffer):
        """All blocks of ``buffer``, as a dict of views keyed by name."""
        return {name: self.view(buffer, name) for name in self.shapes}
