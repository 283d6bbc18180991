"""The seed article's comparison made real: seven activations on the same task.

The same 3x128 MLP on scikit-learn digits, with each activation in the hidden
layers — sigmoid, tanh, ReLU, LeakyReLU6, PReLU, hard-swish, swish — each
with `match_initializers` (He, LeCun, Glorot or a computed gain), Adam 1e-3,
10 epochs. Prints a table (validation accuracy, dead or saturated fraction of
hidden units at the end from DeadNeuronMonitor, seconds per epoch) and saves
a bar chart as a PNG.

    python examples/activation_zoo.py [--quick] [--out DIR]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402
import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import load_digits_split, parse_args, save_plot  # noqa: E402

import keras_actkit as ak  # noqa: E402

ZOO = {
    "sigmoid": lambda i: keras.layers.Activation("sigmoid", name=f"act{i}"),
    "tanh": lambda i: keras.layers.Activation("tanh", name=f"act{i}"),
    "ReLU": lambda i: keras.layers.ReLU(name=f"act{i}"),
    "LeakyReLU6": lambda i: ak.layers.LeakyReLU6(name=f"act{i}"),
    "PReLU": lambda i: ak.layers.PReLU(name=f"act{i}"),
    "hard-swish": lambda i: ak.layers.HardSwish(name=f"act{i}"),
    "swish": lambda i: keras.layers.Activation("swish", name=f"act{i}"),
}


def build(make, seed):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,))]
    for i in range(3):
        layers += [keras.layers.Dense(128, name=f"dense{i}"), make(i)]
    layers.append(keras.layers.Dense(10, activation="softmax", name="out"))
    model = keras.Sequential(layers)
    ak.match_initializers(model)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def run(name, data, epochs, seed):
    (x, y), val = data
    model = build(ZOO[name], seed)
    monitor, timer = ak.callbacks.DeadNeuronMonitor(every_n_epochs=epochs), EpochTimer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[monitor, timer])
    # The first epoch includes tracing and compilation: the median of the others.
    seconds = float(np.median(timer.seconds[1:] or timer.seconds))
    fractions = [v[-1] for key in ("dead_fraction", "saturated_fraction") for v in monitor.history[key].values()]
    kind = "saturated" if monitor.history["saturated_fraction"] else "dead"
    off = float(np.mean(fractions)) if fractions else float("nan")
    return {"name": name, "accuracy": model.evaluate(*val, verbose=0)[1], "off": off,
            "kind": kind if fractions else "-", "seconds": seconds}


def main():
    args = parse_args(__doc__.splitlines()[0])
    data = load_digits_split(args.seed)
    epochs = 10
    if args.quick:
        (x, y), (xv, yv) = data
        data, epochs = ((x[:256], y[:256]), (xv[:64], yv[:64])), 1
    print(f"backend: {keras.backend.backend()}; 3x128 MLP on digits, Adam 1e-3, {epochs} epoch(s), seed {args.seed}")
    rows = [run(name, data, epochs, args.seed) for name in ZOO]
    print("\n| activation | val accuracy | dead / saturated hidden units | s per epoch |")
    print("|---|---|---|---|")
    for r in rows:
        off = "-" if r["kind"] == "-" else f"{r['off']:.2f} {r['kind']}"
        print(f"| {r['name']} | {r['accuracy']:.3f} | {off} | {r['seconds']:.3f} |")

    from keras_actkit.plotting import get_axes

    figure, _ = get_axes(figsize=(10, 3.6))
    figure.clear()
    axes = figure.subplots(1, 3)
    names = [r["name"] for r in rows]
    for ax, key, title in zip(axes, ("accuracy", "off", "seconds"),
                              ("val accuracy", "dead (ReLU family) / saturated fraction", "seconds per epoch")):
        ax.bar(names, [r[key] for r in rows], color="C0")
        ax.set_title(title, fontsize="medium")
        ax.tick_params(axis="x", rotation=60, labelsize="small")
    save_plot(figure, args.out, "activation_zoo.png")


if __name__ == "__main__":
    main()
