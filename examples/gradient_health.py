"""Vanishing gradients, seen by GradientNormLogger: a deep sigmoid network vs LeakyReLU6 with matched init.

Two 10-layer MLPs (64 units per layer) on scikit-learn digits, SGD with
momentum, 5 epochs: sigmoid everywhere with Keras's default initialisation,
and LeakyReLU6 with `match_initializers`. The logger records per-layer
gradient norms every 5 steps; the script prints the ratio of the first
layer's RMS gradient to the last hidden layer's, the warnings, the validation
accuracy, and saves both heatmaps (layers x steps) as a PNG.

    python examples/gradient_health.py [--quick] [--out DIR]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import load_digits_split, parse_args, save_plot  # noqa: E402

import keras_actkit as ak  # noqa: E402

DEPTH, WIDTH = 10, 64


def build(kind, seed):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,))]
    for i in range(DEPTH):
        if kind == "sigmoid":
            layers.append(keras.layers.Dense(WIDTH, activation="sigmoid", name=f"d{i}"))
        else:
            layers += [keras.layers.Dense(WIDTH, name=f"d{i}"), ak.layers.LeakyReLU6(name=f"a{i}")]
    layers.append(keras.layers.Dense(10, activation="softmax", name="out"))
    model = keras.Sequential(layers)
    if kind != "sigmoid":
        ak.match_initializers(model)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def run(kind, data, epochs, seed):
    (x, y), val = data
    model = build(kind, seed)
    logger = ak.callbacks.GradientNormLogger(every_n_steps=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[logger])
    said = [str(w.message) for w in caught if str(w.message).startswith("GradientNormLogger")]
    history = logger.history
    # RMS gradient per layer: the norm over the root of the layer's weight count (in the logger's layer order).
    rms = history["norms"] / np.sqrt(logger.layer_sizes)
    ratio = float(np.median(rms[:, 0] / rms[:, -2]))  # first layer vs last hidden layer
    return model, logger, ratio, model.evaluate(*val, verbose=0)[1], said


def main():
    args = parse_args(__doc__.splitlines()[0])
    data = load_digits_split(args.seed)
    epochs = 5
    if args.quick:
        (x, y), (xv, yv) = data
        data, epochs = ((x[:320], y[:320]), (xv[:64], yv[:64])), 1
    print(f"backend: {keras.backend.backend()}; {DEPTH}x{WIDTH} MLP on digits, SGD 0.01 + momentum, {epochs} epoch(s)")
    runs = {kind: run(kind, data, epochs, args.seed) for kind in ("sigmoid", "LeakyReLU6 + matched init")}
    print("\n| network | RMS gradient, first layer / last hidden layer (median) | val accuracy |")
    print("|---|---|---|")
    for kind, (_, _, ratio, accuracy, _) in runs.items():
        print(f"| {kind} | {ratio:.2g} | {accuracy:.3f} |")
    for kind, (*_, said) in runs.items():
        for message in said:
            print(f"\n{kind}: {message}")

    from keras_actkit.plotting import get_axes

    figure, _ = get_axes(figsize=(12, 4.2))
    figure.clear()
    axes = figure.subplots(1, 2)
    for ax, (kind, (_, logger, ratio, accuracy, _)) in zip(axes, runs.items()):
        logger.plot(ax=ax)
        ax.set_title(f"{kind}: first/last RMS {ratio:.1g}, val acc {accuracy:.2f}", fontsize="medium")
    save_plot(figure, args.out, "gradient_health.png")


if __name__ == "__main__":
    main()
