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


def test_readme_examples_run():
    """Every Python block of the README runs as written."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for block in blocks:
            exec(compile(block, str(readme), "exec"), namespace)
    assert namespace["model"].score(namespace["X"], namespace["y"]) > 0.95
