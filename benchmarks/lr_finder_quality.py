"""How good is each LR-suggestion rule? Train at its suggestion and compare.

The task (as in the issue's anchors): scikit-learn digits, MLP 64-128-128-10
(ReLU), batch 32, 5 epochs, 3 seeds. Score = mean validation loss when
trained at a rule's suggestion / the best mean validation loss over a 13-point
log grid of LRs (1 is perfect). The grid is trained once per optimizer and
shared by every rule. Each seed runs its own range test (`find_lr` with
defaults) on a freshly initialised model.

    python benchmarks/lr_finder_quality.py [--dataset digits|wine|breast_cancer] [--quick]
"""

import argparse
import math
import os
import statistics
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_actkit as ak  # noqa: E402
from keras_actkit.callbacks.lr_finder import DEFAULT_RULE  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _common import load_digits_split  # noqa: E402

OPTIMIZERS = {
    "SGD + momentum 0.9": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
    "Adam": lambda lr: keras.optimizers.Adam(lr),
}
GRID = [10.0**e for e in np.arange(-5.0, 1.01, 0.5)]  # 13 points, 1e-5 .. 10


def load(dataset, seed):
    if dataset == "digits":
        return load_digits_split(seed)
    from sklearn import datasets

    x, y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype("float32"), y[order].astype("int32")
    n_val = len(x) // 4
    mean, std = x[n_val:].mean(0), x[n_val:].std(0) + 1e-6
    x = (x - mean) / std
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val])


def model_for(n_features, n_classes, optimizer, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((n_features,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer, "sparse_categorical_crossentropy")
    return model


def val_loss(data, make_optimizer, lr, seed, epochs):
    (x, y), (x_val, y_val) = data
    model = model_for(x.shape[1], int(y.max()) + 1, make_optimizer(lr), seed)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    loss = model.evaluate(x_val, y_val, verbose=0)
    return loss if math.isfinite(loss) else math.inf


def tally_warning(tally, result, caught):
    """Count the 'never diverged' warnings, and those on curves that clearly rose (judged independently)."""
    warned = any("never diverged" in str(w.message) for w in caught)
    finite = result.losses[np.isfinite(result.losses)]
    curve = np.convolve(finite, np.ones(9) / 9, mode="valid") if finite.size >= 9 else finite
    risen = curve.size > 0 and curve[-1] >= 1.2 * curve.min()
    tally["tests"] += 1
    tally["warned"] += warned
    tally["warned_risen"] += warned and risen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["digits", "wine", "breast_cancer"], default="digits")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 5 grid points")
    parser.add_argument("--dump", help="write the grid losses and range-test curves to this JSON file")
    args = parser.parse_args()
    seeds, epochs, grid = ([0], 1, GRID[::3]) if args.quick else ([0, 1, 2], 5, GRID)
    data = {s: load(args.dataset, s) for s in seeds}

    rows, dump, tally = {}, {}, {"tests": 0, "warned": 0, "warned_risen": 0}
    for opt_name, make_optimizer in OPTIMIZERS.items():
        grid_loss = {lr: statistics.mean(val_loss(data[s], make_optimizer, lr, s, epochs) for s in seeds) for lr in grid}
        best_lr = min(grid_loss, key=grid_loss.get)
        per_rule = {}
        for s in seeds:
            (x, y), _ = data[s]
            # The range test runs at an arbitrary LR's optimizer: it is overridden.
            model = model_for(x.shape[1], int(y.max()) + 1, make_optimizer(1e-3), s)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = ak.find_lr(model, x, y, batch_size=32)
            tally_warning(tally, result, caught)
            dump.setdefault(opt_name, {"grid": dict(grid_loss), "curves": []})["curves"].append(
                {"lrs": result.lrs.tolist(), "losses": result.losses.tolist()})
            for rule, lr in result.suggestions.items():
                loss = val_loss(data[s], make_optimizer, lr, s, epochs) if lr else math.inf
                per_rule.setdefault(rule, []).append((lr, loss))
        for rule, values in per_rule.items():
            score = statistics.mean(loss for _, loss in values) / grid_loss[best_lr]
            lrs = ", ".join(f"{lr:.2g}" if lr else "-" for lr, _ in values)
            rows.setdefault(rule, {})[opt_name] = (score, lrs)
        rows.setdefault("(grid best)", {})[opt_name] = (1.0, f"{best_lr:.2g}")

    print(f"\n'never diverged' warnings: {tally['warned']} of {tally['tests']} range tests, "
          f"{tally['warned_risen']} of them on curves that rose (9-point moving average ending >= 1.2x its minimum)")
    print("\nMean validation loss over the grid:")
    for opt_name, entry in dump.items():
        print(f"  {opt_name}: " + ", ".join(f"{float(lr):.2g}: {loss:.3g}" for lr, loss in entry["grid"].items()))
    if args.dump:
        import json

        for entry in dump.values():
            entry["grid"] = {str(k): (v if math.isfinite(v) else None) for k, v in entry["grid"].items()}
        Path(args.dump).write_text(json.dumps(dump))
    print(f"\n### {keras.backend.backend()}: {args.dataset}, score = val loss at suggestion / grid best "
          f"(1 is perfect), {len(seeds)} seed(s), {epochs} epoch(s)\n")
    names = list(OPTIMIZERS)
    print("| rule | " + " | ".join(f"{n} (suggested LRs)" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    default = DEFAULT_RULE
    for rule in sorted(rows, key=lambda r: (r != default, r.startswith("("), r)):
        label = f"**{rule}** (default)" if rule == default else rule
        cells = []
        for n in names:
            score, lrs = rows[rule][n]
            shown = "diverges" if math.isinf(score) else f"{score:.2f}"
            cells.append(f"{shown} ({lrs})")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
