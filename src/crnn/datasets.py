"""Data sets shipped with crnn."""
from importlib import resources

import numpy as np


def load_sunspots():
    """Yearly mean sunspot numbers, 1700 to 2008 (309 years).

    Public-domain data from the US National Geophysical Data Center, as
    distributed with statsmodels' ``sunspots`` data set.

    Returns
    -------
    years : ndarray of shape (309,), int
    sunspots : ndarray of shape (309,), float64

    Examples
    --------
    >>> from crnn import load_sunspots
    >>> years, sunspots = load_sunspots()
    >>> int(years[0]), int(years[-1]), sunspots.shape
    (1700, 2008, (309,))
    """
    text = resources.files("crnn").joinpath("data/sunspots.csv").read_text()
    table = np.loadtxt(text.splitlines(), delimiter=",", skiprows=1)
    return table[:, 0].astype(np.int64), table[:, 1]


def load_coriolanus():
    """The first 99 KB of Shakespeare's *Coriolanus*, as one string.

    Public-domain text, the opening of the ``tinyshakespeare`` corpus,
    cut at the end of a speech: 98,846 characters of 61 kinds (letters,
    punctuation, space and newline), for character-level language models.

    Returns
    -------
    text : str

    Examples
    --------
    >>> from crnn import load_coriolanus
    >>> text = load_coriolanus()
    >>> text[:15], len(text), len(set(text))
    ('First Citizen:\\n', 98846, 61)
    """
    return resources.files("crnn").joinpath("data/coriolanus.txt").read_text("utf-8")
