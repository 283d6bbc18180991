"""Signal propagation with Keras's default initializer vs matched ones.

Table 1: a 50-layer MLP of width 512, N(0, 1) inputs; the standard deviation
of the 50th layer's pre-activation divided by the input's (1 = preserved), per
activation, with Keras's default `glorot_uniform` and after
`keras_actkit.match_initializers`. Median over seeds.

Table 2: a 30-layer ReLU MLP (width 128) on scikit-learn's digits, validation
accuracy after 10 epochs of SGD with momentum, default vs matched, over seeds.

    python benchmarks/signal_propagation.py [--quick]
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_actkit as ak  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _common import load_digits_split  # noqa: E402

ACTIVATIONS = {
    "relu": lambda: keras.layers.ReLU(),
    "LeakyReLU6": lambda: ak.layers.LeakyReLU6(),
    "PReLU": lambda: ak.layers.PReLU(),
    "hard_swish": lambda: ak.layers.HardSwish(),
    "swish": lambda: keras.layers.Activation("swish"),
    "gelu": lambda: keras.layers.Activation("gelu"),
    "selu": lambda: keras.layers.Activation("selu"),
    "tanh": lambda: keras.layers.Activation("tanh"),
}


def deep_mlp(make_activation, depth, width):
    """Outputs the last pre-activation; the activation after it stays in the
    graph so that matching sees what acts on every kernel."""
    inputs = keras.Input((width,))
    h = inputs
    for _ in range(depth):
        pre = keras.layers.Dense(width)(h)
        h = make_activation()(pre)
    return keras.Model(inputs, [pre, h])


def std_ratio(name, mode, depth, width, seed):
    keras.utils.set_random_seed(seed)
    model = deep_mlp(ACTIVATIONS[name], depth, width)
    x = np.random.default_rng(seed).standard_normal((1024, width)).astype("float32")
    if mode == "matched":
        ak.match_initializers(model)
    elif mode == "calibrated":
        # Calibrated on a different batch than the one measured.
        ak.match_initializers(model, calibration_data=np.random.default_rng(seed + 100).standard_normal((256, width)).astype("float32"))
    pre, _ = model.predict(x, batch_size=1024, verbose=0)
    return float(np.std(pre) / np.std(x))


def digits_accuracy(matched, seed, depth, epochs):
    keras.utils.set_random_seed(seed)
    (x, y), (x_val, y_val) = load_digits_split(seed)
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(128, activation="relu") for _ in range(depth)]
    layers += [keras.layers.Dense(10, activation="softmax")]
    model = keras.Sequential(layers)
    if matched:
        ak.match_initializers(model)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model.evaluate(x_val, y_val, verbose=0)[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    depth, width, seeds = (6, 64, [0]) if args.quick else (50, 512, [0, 1, 2])
    mlp_depth, epochs = (4, 1) if args.quick else (30, 10)

    print(f"\n### {keras.backend.backend()}: std(pre-activation of layer {depth}) / std(input), "
          f"width {width}, median of {len(seeds)} seeds\n")
    print("| activation | rule matched | Keras default (glorot_uniform) | matched | matched + calibration_data |")
    print("|---|---|---|---|---|")
    for name in ACTIVATIONS:
        init = ak.initializers.for_activation(ACTIVATIONS[name]())
        rule = f"{init.scale:.3g} / {init.mode}"
        cells = []
        for mode in ("default", "matched", "calibrated"):
            ratio = statistics.median(std_ratio(name, mode, depth, width, s) for s in seeds)
            inside = mode != "default" and 0.7 <= ratio <= 1.4
            cells.append(f"{ratio:.3g}" + (" ✓" if inside else ""))
        print(f"| {name} | {rule} | " + " | ".join(cells) + " |")
    print("\n✓ = within the target [0.7, 1.4]")

    print(f"\n### {keras.backend.backend()}: {mlp_depth}-layer ReLU MLP on digits, validation accuracy "
          f"after {epochs} epochs (SGD 0.01, momentum 0.9, batch 32)\n")
    print("| init | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("|---" * (len(seeds) + 2) + "|")
    for matched in (False, True):
        accs = [digits_accuracy(matched, s, mlp_depth, epochs) for s in seeds]
        label = "matched (He)" if matched else "Keras default"
        print(f"| {label} | " + " | ".join(f"{a:.3f}" for a in accs) + f" | {np.mean(accs):.3f} |")


if __name__ == "__main__":
    main()
