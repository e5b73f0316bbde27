"""Shared fixtures, and the layout of the suite.

The tests are in folders by layer, each file saying what it checks and
against what:

* ``kernels/`` -- the compiled kernels and the compiled network driver
  against ``reference.py`` (plain NumPy, written from the equations), finite
  differences and PyTorch;
* ``network/`` -- the network over one flat buffer: BPTT against finite
  differences (``check_gradient``), ragged batches against sequences run
  alone, truncated BPTT against a reference, the optimizers against their
  equations;
* ``estimators/`` -- the scikit-learn-style estimators: behaviour,
  validation, hyper-parameter constraints, the fitted state and
  transactional fits, persistence, interchange, threads, learning tasks;
* ``mpi/`` -- data-parallel training over two MPI ranks (``mpiexec``)
  against the estimators' own fit in one process;
* ``oracles/`` -- whole models against PyTorch number for number, and the
  property-based suite against a NumPy forward pass;
* ``packaging/`` -- what users install: the C-level API through a consumer
  extension, the docs and README examples, the import graph, the demo.

``reference.py`` sits here, beside this file, so every folder imports it.

``recurrent_product`` runs a test once per implementation of the per-step
recurrent product that this CPU has: BLAS (``"blas"``), and the packed
kernels (``"packed-avx2"``, ``"packed-avx512"``; see
``crnn/kernels/packed.h``), forced for every product whatever its size and
the BLAS thread count, so that the small shapes of the tests exercise them.
The kernel test modules use it for all their tests (``pytestmark``).
"""
import pytest

from crnn.kernels import blas

#: name -> (packed mode, kernel)
RECURRENT_PRODUCTS = {"blas": ("never", -1), "packed-avx2": ("always", 1),
                      "packed-avx512": ("always", 2)}


@pytest.fixture(params=list(RECURRENT_PRODUCTS))
def recurrent_product(request):
    mode, isa = RECURRENT_PRODUCTS[request.param]
    if isa > 0 and blas.set_packed_isa(isa) != isa:
        blas.set_packed_isa(-1)
        pytest.skip(f"this CPU has no {request.param} kernel")
    previous = blas.set_packed_mode(mode)
    yield request.param
    blas.set_packed_mode(previous)
    blas.set_packed_isa(-1)
