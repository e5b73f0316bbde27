"""The C ABI version of crnn's kernels (see ``abi.pxd`` for the contract)."""

#: The C ABI version this crnn was built with (``C_ABI_VERSION`` of ``abi.pxd``).
ABI_VERSION = C_ABI_VERSION


cpdef int c_abi_version() noexcept nogil:
    """The C ABI version of the running crnn (``ABI_VERSION``)."""
    return C_ABI_VERSION
