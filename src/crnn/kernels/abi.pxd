# cython: language_level=3
"""The versioned C ABI of crnn's kernels.

An extension that ``cimport``s crnn's ``.pxd`` files compiles part of crnn
into itself: the constants and enums, the structs, the ``cdef inline``
functions (``align_up``, ``recurrence.pxd``) and the signatures of the
other functions, which it then calls through the C-API capsules of crnn's
modules at run time. Every size and offset that describes a workspace or an
array the kernels read and write is such an out-of-line function, so the
consumer always gets the formula of the crnn it runs against.

``C_ABI_VERSION`` numbers that contract. It goes up whenever something a
consumer compiles in changes meaning: a constant, an enum value, a struct,
an inline function, what a function expects of its arguments (shapes,
layouts, sizes). A consumer checks at import that it was built against the
version it runs with:

    from crnn.kernels.abi cimport check_c_abi
    check_c_abi(__name__)       # at module level: ImportError on a mismatch

A changed signature needs no check: Cython refuses to import a C function
whose signature differs from the one the consumer was compiled with.
"""

cdef enum:
    # The version of the C ABI these .pxd files describe: compiled into
    # every extension that cimports them.
    C_ABI_VERSION = 1
    # Workspace blocks, and the column chunks of the per-step products,
    # start at multiples of ALIGN elements (a 64-byte cache line in float32).
    ALIGN = 16


# crnn's own C_ABI_VERSION, from the crnn that is running (out of line: a
# consumer calls crnn's copy, never its own).
cpdef int c_abi_version() noexcept nogil


cdef inline Py_ssize_t align_up(Py_ssize_t n) noexcept nogil:
    """``n`` rounded up to a multiple of ALIGN."""
    return (n + ALIGN - 1) // ALIGN * ALIGN


cdef inline int check_c_abi(str module) except -1:
    """Raise ImportError unless the extension ``module``, compiled with this
    file's C_ABI_VERSION, runs against a crnn of the same C ABI version."""
    cdef int provided = c_abi_version()
    if provided != C_ABI_VERSION:
        raise ImportError(
            f"{module} was built against crnn C ABI {C_ABI_VERSION}, this crnn "
            f"provides {provided}; rebuild {module} against the installed crnn "
            f"(its .pxd files)"
        )
    return 0
