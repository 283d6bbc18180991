"""Dying ReLU on scikit-learn digits: seen by DeadNeuronMonitor, and two remedies.

The same 3x128 MLP is trained at a learning rate that is too high (Adam 0.03)
three times: with ReLU, with ReLU and `DeadNeuronMonitor(revive=True)`, and with
LeakyReLU6 and `match_initializers`. The monitor reports the fraction of dead
units per hidden layer after every epoch; the plot is saved as a PNG.

    python examples/dead_relu.py [--quick] [--out DIR]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import keras  # noqa: E402
from _common import load_digits_split, parse_args, save_plot  # noqa: E402

import keras_actkit as ak  # noqa: E402

LEARNING_RATE = 0.03  # Adam; about 10x what find_lr suggests for this network


def build(leaky, seed):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,))]
    for i in range(3):
        if leaky:
            layers += [keras.layers.Dense(128, name=f"dense_{i}"), ak.layers.LeakyReLU6(name=f"hidden_{i}")]
        else:
            layers.append(keras.layers.Dense(128, activation="relu", name=f"hidden_{i}"))
    layers.append(keras.layers.Dense(10, activation="softmax", name="out"))
    model = keras.Sequential(layers)
    if leaky:
        ak.match_initializers(model)
    return model


def run(label, leaky, revive, data, epochs, seed):
    (x, y), (x_val, y_val) = data
    model = build(leaky, seed)
    model.compile(keras.optimizers.Adam(LEARNING_RATE), "sparse_categorical_crossentropy", metrics=["accuracy"])
    monitor = ak.callbacks.DeadNeuronMonitor(revive=revive, seed=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=32, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
                            callbacks=[monitor])
    said = [str(w.message) for w in caught if str(w.message).startswith("DeadNeuronMonitor")]
    dead = {name: values[-1] for name, values in monitor.history["dead_fraction"].items()}
    revived = sum(sum(values) for values in monitor.history["revived"].values())
    return label, monitor, dead, history.history["val_accuracy"][-1], revived, said


def main():
    args = parse_args(__doc__.splitlines()[0])
    data = load_digits_split(args.seed)
    if args.quick:
        (x, y), (x_val, y_val) = data
        data = (x[:256], y[:256]), (x_val[:64], y_val[:64])
    epochs = 1 if args.quick else 10
    print(f"backend: {keras.backend.backend()}; Adam({LEARNING_RATE}), {epochs} epoch(s) on digits, seed {args.seed}")
    runs = [
        run("ReLU", False, False, data, epochs, args.seed),
        run("ReLU + revive=True", False, True, data, epochs, args.seed),
        run("LeakyReLU6 + matched init", True, False, data, epochs, args.seed),
    ]

    print("\n| network | dead fraction per hidden layer (last check) | units revived | val accuracy |")
    print("|---|---|---|---|")
    for label, _, dead, accuracy, revived, _ in runs:
        cells = ", ".join(f"{value:.2f}" for value in dead.values())
        print(f"| {label} | {cells} | {revived} | {accuracy:.3f} |")
    first = runs[0][5]
    if first:
        print("\nWhat the monitor said about the ReLU network:\n  " + first[0])

    from keras_actkit.plotting import get_axes

    figure, _ = get_axes(figsize=(12, 3.6))
    figure.clear()
    axes = figure.subplots(1, len(runs), sharey=True)
    for ax, (label, monitor, _, accuracy, _, _) in zip(axes, runs):
        monitor.plot(ax=ax)
        ax.set_title(f"{label}\nval accuracy {accuracy:.2f}", fontsize="medium")
    save_plot(figure, args.out, "dead_relu.png")


if __name__ == "__main__":
    main()
