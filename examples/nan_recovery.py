"""A poisoned batch and a learning-rate spike: TerminateOnNaN stops, NaNGuard recovers.

The same MLP regressor on scikit-learn's diabetes data (standardised, mean
squared error), SGD with momentum, 30 epochs, in five runs: clean; one
training row set to NaN, with Keras's `TerminateOnNaN` and with `NaNGuard`;
and a learning-rate spike (x10,000 for 5 steps in epoch 10, which overflows the
weights), with each. Prints a table (epochs completed, fraction of weights
that are NaN/Inf at the end, validation R², steps skipped, rollbacks, and
what NaNGuard's `.report` calls the cause: "data" for the NaN row, whose
skipped steps never change the learning rate, "divergence" for the spike)
and saves the loss curves as a PNG.

    python examples/nan_recovery.py [--quick] [--out DIR]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import parse_args, save_plot  # noqa: E402

import keras_actkit as ak  # noqa: E402

LEARNING_RATE = 0.002  # SGD + momentum 0.9


@keras.saving.register_keras_serializable("nan_recovery_example")
class Spike(keras.optimizers.schedules.LearningRateSchedule):
    """A constant rate, times `factor` for steps in [start, start + length)."""

    def __init__(self, rate, start, length=5, factor=1e4):
        self.rate, self.start, self.length, self.factor = rate, start, length, factor

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        inside = keras.ops.logical_and(step >= self.start, step < self.start + self.length)
        return keras.ops.where(inside, self.rate * self.factor, self.rate)

    def get_config(self):
        return {"rate": self.rate, "start": self.start, "length": self.length, "factor": self.factor}


def load_diabetes_split(seed=0, val_fraction=0.25):
    """scikit-learn's diabetes data (442 rows, 10 features), standardised, split train/val."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype("float32"), y[order].astype("float32")[:, None]
    n_val = int(len(x) * val_fraction)
    x = (x - x[n_val:].mean(0)) / x[n_val:].std(0)
    y = (y - y[n_val:].mean()) / y[n_val:].std()
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val])


def build(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(1),
    ])
    ak.match_initializers(model)
    return model


def run(label, x, y, val, learning_rate, guard, epochs, seed):
    model = build(seed)
    model.compile(keras.optimizers.SGD(learning_rate, momentum=0.9), "mse")
    callback = ak.callbacks.NaNGuard() if guard else keras.callbacks.TerminateOnNaN()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False, callbacks=[callback])
    values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.weights]
    broken = sum(int(np.sum(~np.isfinite(v))) for v in values) / sum(v.size for v in values)
    mse = model.evaluate(*val, verbose=0) if broken == 0 else float("nan")
    r2 = 1.0 - mse / float(np.var(val[1]))
    return {
        "label": label, "epochs": len(history.history["loss"]), "broken": broken, "r2": r2,
        "skipped": getattr(callback, "skipped", "-"), "rollbacks": getattr(callback, "rollbacks", "-"),
        "cause": (getattr(callback, "report", None) or {}).get("cause", "-"),
        "loss": history.history["loss"],
    }


def main():
    args = parse_args(__doc__.splitlines()[0])
    (x, y), val = load_diabetes_split(args.seed)
    epochs = 30
    if args.quick:
        epochs = 3
    steps = int(np.ceil(len(x) / 16))
    poisoned = x.copy()
    poisoned[5 * 16 + 7] = np.nan  # one row in the 6th batch of every epoch
    spike = Spike(LEARNING_RATE, start=(1 if args.quick else 9) * steps + 5)
    print(f"backend: {keras.backend.backend()}; diabetes, MLP 10-64-64-1, SGD({LEARNING_RATE}, momentum=0.9), "
          f"{epochs} epochs, seed {args.seed}")
    runs = [
        run("clean", x, y, val, LEARNING_RATE, False, epochs, args.seed),
        run("NaN row + TerminateOnNaN", poisoned, y, val, LEARNING_RATE, False, epochs, args.seed),
        run("NaN row + NaNGuard", poisoned, y, val, LEARNING_RATE, True, epochs, args.seed),
        run("LR spike + TerminateOnNaN", x, y, val, spike, False, epochs, args.seed),
        run("LR spike + NaNGuard", x, y, val, spike, True, epochs, args.seed),
    ]
    print("\n| run | epochs completed | weights NaN/Inf | val R² | skipped | rollbacks | cause |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['label']} | {r['epochs']} of {epochs} | {r['broken']:.0%} | {r['r2']:.3f} | "
              f"{r['skipped']} | {r['rollbacks']} | {r['cause']} |")

    from keras_actkit.plotting import get_axes

    figure, ax = get_axes(figsize=(7, 4))
    for r in runs:
        ax.plot(range(1, len(r["loss"]) + 1), r["loss"], marker="o", ms=3, label=r["label"])
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training MSE (epoch mean)")
    ax.set_title("NaN batch and LR spike: TerminateOnNaN vs NaNGuard")
    ax.legend(fontsize="small")
    save_plot(figure, args.out, "nan_recovery.png")


if __name__ == "__main__":
    main()
