"""The examples in crnn's docstrings run and print what they say."""
import doctest
import warnings

import pytest

import crnn._estimators
import crnn._gradcheck
import crnn._params
import crnn.datasets
from crnn import ConvergenceWarning


@pytest.mark.parametrize("module", [crnn._estimators, crnn._gradcheck, crnn._params,
                                    crnn.datasets], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
