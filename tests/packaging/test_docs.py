"""The examples in crnn's docstrings, the README and the documentation pages
run, and print the numbers they state."""
import doctest
import warnings

import pytest

import crnn._config
import crnn._estimators
import crnn._gradcheck
import crnn._params
import crnn.callbacks
import crnn.datasets
import crnn.preprocessing
from crnn import ConvergenceWarning


@pytest.mark.parametrize("module", [crnn._config, crnn._estimators, crnn._gradcheck,
                                    crnn._params, crnn.callbacks, crnn.datasets,
                                    crnn.preprocessing],
                         ids=lambda m: m.__name__)
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

    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for block in blocks:
            exec(compile(block, str(readme), "exec"), namespace)
    assert namespace["model"].score(namespace["X"], namespace["y"]) > 0.95


def _page_blocks(name):
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / name
    return page, re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("name", ["index.md", "user_guide.md", "maths.md",
                                  "deployment.md"])
def test_docs_page_examples_run(name, tmp_path, monkeypatch):
    """Every Python block of the documentation's landing page, user guide,
    maths and deployment pages runs as written, each page's blocks in order
    in one namespace (in a temporary directory: they may write files)."""
    import numpy as np

    if name == "deployment.md":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)

    page, blocks = _page_blocks(name)
    assert blocks
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for block in blocks:
            exec(compile(block, str(page), "exec"), namespace)
    if name == "maths.md":
        # The worked example's numbers, as the page states them (5 decimals).
        model, X, check = namespace["model"], namespace["X"], namespace["check"]
        np.testing.assert_allclose(model.predict(X), [0.35090], atol=5e-6)
        np.testing.assert_allclose(check.analytic["W_hh_l0"],
                                   [[-0.04521, -0.08329], [0.00095, 0.00412]], atol=5e-6)
        np.testing.assert_allclose(check.analytic["W_ih_l0"],
                                   [[-0.08996, -0.09158], [0.00306, 0.00232]], atol=5e-6)
        np.testing.assert_allclose(check.analytic["b_l0"], [-0.09364, -0.00117], atol=5e-6)
        np.testing.assert_allclose(check.analytic["W_y"], [[-0.25043, -0.29158]], atol=5e-6)
        assert check.max_error < 1e-8
    if name == "user_guide.md":
        chunks, whole = namespace["chunks"], namespace["whole"]
        assert np.abs(np.concatenate(chunks, axis=1) - whole).max() < 1e-12
