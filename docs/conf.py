"""Sphinx configuration of crnn's documentation.

Build from the repository root, with crnn installed (``pip install ".[docs]"``):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference is generated from the docstrings of the installed ``crnn``
(the names of ``crnn.__all__``, documented as ``crnn.<name>``, whichever
internal module defines them); the example gallery runs ``examples/plot_*.py``
at every build.
"""
import inspect
import os

import crnn

project = "crnn"
author = "the crnn developers"
copyright = "the crnn developers; BSD-3-Clause licence"
release = crnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax 3 copied into the built site, so the equations render offline.
    "sphinx-mathjax-offline",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
# Inline code in the pages is written in Python's terms.
highlight_language = "python3"
pygments_style = "sphinx"

# -- MyST: the markdown pages --------------------------------------------------
# dollarmath: $...$ and $$...$$ for mathematics (also what GitHub renders);
# heading anchors so that pages can link to each other's sections.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference: autosummary + autodoc + numpydoc ----------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "groupwise"}
# Signatures are shown as written; type hints (there are none) stay out.
autodoc_typehints = "none"
# numpydoc renders each docstring's sections; the member tables come from the
# class template (docs/_templates/autosummary/class.rst), not from numpydoc.
numpydoc_show_class_members = False
# Methods listed in the page's table of contents as fit(), not RNNRegressor.fit().
toc_object_entries_show_parents = "hide"
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document crnn's own methods and properties on crnn's classes, plus
    scikit-learn's get_params / set_params; leave out what the scikit-learn
    mixins and the builtin exception classes define (metadata-routing
    ``set_*_request`` methods, ``with_traceback``, ...)."""
    if what != "class" or skip:
        return None
    if name in ("get_params", "set_params"):
        return False
    target = obj.fget if isinstance(obj, property) else inspect.unwrap(obj)
    module = getattr(target, "__module__", None) or ""
    if not module.startswith("crnn"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)


# -- The example gallery ---------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    # "Examples using crnn.X" on the API pages.
    "doc_module": ("crnn",),
    "backreferences_dir": "generated/backreferences",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "show_memory": False,
    # Print what the examples print, not the repr of a plot call's result.
    "capture_repr": (),
}
# Examples run headless.
os.environ.setdefault("MPLBACKEND", "agg")

# -- HTML -------------------------------------------------------------------------
# pydata-sphinx-theme: the light, uncluttered theme of NumPy, SciPy, pandas and
# scikit-learn, so crnn's pages look like the references its users read every
# day; it lays out numpydoc API pages and sphinx-gallery examples well, and
# works offline (no web fonts or scripts fetched at reading time).
html_theme = "pydata_sphinx_theme"
html_title = f"crnn {release}"
html_static_path = ["_static"]
html_css_files = ["crnn.css"]
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 5,
    "show_prev_next": True,
    "secondary_sidebar_items": ["page-toc"],
    # The page's sections and, on API pages, its methods and properties.
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "navigation_with_keys": False,
}
html_sidebars = {"index": [], "**": ["sidebar-nav-bs"]}
html_context = {"default_mode": "light"}
