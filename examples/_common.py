"""Shared by the example scripts: real data shipped with scikit-learn, output paths."""

import argparse
import os
from pathlib import Path

import numpy as np


def parse_args(description, **extra):
    """`--quick` (a few steps, for the test suite) and `--out DIR` for files."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="run a few steps only (smoke test)")
    parser.add_argument("--out", default=os.environ.get("ACTKIT_OUT", "actkit_out"),
                        help="folder for plots and saved models (default: ./actkit_out)")
    parser.add_argument("--seed", type=int, default=0)
    for name, kwargs in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", **kwargs)
    args = parser.parse_args()
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def load_digits_split(seed=0, val_fraction=0.25):
    """scikit-learn's 8x8 digits (1797 images), standardised, split train/val."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order].astype("int32")
    n_val = int(len(x) * val_fraction)
    mean, std = x[n_val:].mean(0), x[n_val:].std(0) + 1e-6
    x = (x - mean) / std
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val])


def save_plot(figure, out, name):
    """Save a matplotlib figure as `out/name` and print where it went."""
    path = Path(out) / name
    figure.savefig(path)
    print(f"\nplot: {path}")
    return path
