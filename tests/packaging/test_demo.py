"""The README's first command, ``python -m crnn``, runs and beats the naive forecast."""
import re

from crnn.__main__ import main


def test_demo_beats_the_naive_forecast(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    rnn = float(re.search(r"Elman RNN\s+([\d.]+)", out).group(1))
    naive = float(re.search(r"naive \(same as last year\)\s+([\d.]+)", out).group(1))
    assert rnn < 0.8 * naive
    check = float(re.search(r"max relative error ([\d.e+-]+)", out).group(1))
    assert check < 1e-6
    for cell in ("LSTM", "GRU"):
        assert float(re.search(rf"{cell}\s+RMSE\s+([\d.]+)", out).group(1)) < naive
