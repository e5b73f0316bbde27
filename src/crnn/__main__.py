"""``python -m crnn``: forecast yearly sunspot numbers with an Elman RNN.

Trains on the sunspot record shipped with crnn (1700-2008), checks the
gradient of the trained model by finite differences, and compares its
one-year-ahead forecasts on held-out years with the naive forecast "next
year equals this year".
"""
import argparse
import time

import numpy as np

from crnn import RNNRegressor, check_gradient, load_sunspots


def make_windows(series, window):
    """Sliding windows ``series[i:i + window]`` and the value that follows each."""
    X = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
    return np.ascontiguousarray(X), series[window:]


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m crnn", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=20,
                        help="years of history in each input sequence (default 20)")
    parser.add_argument("--test-from", type=int, default=1950,
                        help="first year of the held-out test period (default 1950)")
    parser.add_argument("--hidden-size", type=int, default=32,
                        help="hidden units (default 32)")
    parser.add_argument("--epochs", type=int, default=300,
                        help="maximum training epochs (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)

    years, sunspots = load_sunspots()
    print(f"crnn demo: yearly sunspot numbers {years[0]}-{years[-1]} "
          f"({years.size} years), shipped with the package.")
    X, y = make_windows(sunspots, args.window)
    target_years = years[args.window:]
    train = target_years < args.test_from
    if train.sum() < 10 or (~train).sum() < 1:
        parser.error("--test-from leaves too little training or test data")
    # Scale by the training period only; nothing of the test years leaks in.
    scale = float(sunspots[years < args.test_from].std())
    X, y = X / scale, y / scale
    print(f"Task: forecast each year's number from the {args.window} years before "
          f"it.\nTraining on {train.sum()} years up to {args.test_from - 1}; "
          f"testing on the {(~train).sum()} years from {args.test_from}.\n")

    def make(cell, verbose=0):
        return RNNRegressor(
            hidden_size=args.hidden_size, cell=cell, learning_rate=3e-3,
            batch_size=16, max_iter=args.epochs, tol=1e-5, n_iter_no_change=40,
            early_stopping=True, validation_fraction=0.2, clip_norm=1.0,
            alpha=1e-4, random_state=args.seed, verbose=verbose,
        )

    model = make("elman", verbose=10)
    started = time.perf_counter()
    model.fit(X[train], y[train])
    seconds = time.perf_counter() - started
    print(f"\nTrained {model.n_iter_} epochs in {seconds:.1f} s; "
          f"{model.params_.size} parameters, Elman cell, H={args.hidden_size}.")

    check = check_gradient(model, X[train][:8], y[train][:8])
    print(f"\nGradient check of the trained model (BPTT vs finite differences, "
          f"float64): max relative error {check.max_error:.1e}")
    for name, error in check.errors.items():
        print(f"  {name:<8} {error:.1e}")

    test_pred = model.predict(X[~train]) * scale
    test_true = y[~train] * scale
    naive = X[~train][:, -1] * scale
    rnn_rmse, naive_rmse = rmse(test_pred, test_true), rmse(naive, test_true)
    print(f"\nHeld-out forecasts {args.test_from}-{target_years[-1]} (RMSE, sunspots):")
    print(f"  Elman RNN                    {rnn_rmse:7.2f}")
    print(f"  naive (same as last year)    {naive_rmse:7.2f}")
    print(f"  RNN error / naive error      {rnn_rmse / naive_rmse:7.2f}")

    print("\nThe same forecast with gated cells (same settings):")
    for cell in ("lstm", "gru"):
        started = time.perf_counter()
        gated = make(cell).fit(X[train], y[train])
        seconds = time.perf_counter() - started
        error = rmse(gated.predict(X[~train]) * scale, test_true)
        print(f"  {cell.upper():<5} RMSE {error:6.2f}  ({gated.n_iter_} epochs, "
              f"{seconds:.1f} s, {gated.params_.size} parameters)")
    print("\n  year  actual  RNN  naive")
    for year, true, pred, last in list(zip(target_years[~train], test_true,
                                           test_pred, naive))[-8:]:
        print(f"  {year}  {true:6.1f} {pred:6.1f} {last:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
