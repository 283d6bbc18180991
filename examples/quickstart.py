"""keras_actkit in one model: its layers and activations on scikit-learn digits.

Trains a small classifier that uses LeakyReLU6, PReLU and hard-swish, then saves
it to `.keras` and loads it back with `safe_mode=True` and no custom_objects.

    python examples/quickstart.py [--quick] [--out DIR]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import load_digits_split, parse_args  # noqa: E402

import keras_actkit as ak  # noqa: E402


def build_model():
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128),
            ak.layers.LeakyReLU6(),
            keras.layers.Dense(128),
            ak.layers.PReLU(),
            keras.layers.Dense(64, activation=ak.activations.hard_swish),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="quickstart",
    )


def main():
    args = parse_args(__doc__.splitlines()[0])
    keras.utils.set_random_seed(args.seed)
    (x, y), (x_val, y_val) = load_digits_split(args.seed)
    epochs = 1 if args.quick else 15

    model = build_model()
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    print(f"backend: {keras.backend.backend()}, training {epochs} epoch(s) on digits")
    model.fit(x, y, batch_size=32, epochs=epochs, validation_data=(x_val, y_val), verbose=0)
    loss, accuracy = model.evaluate(x_val, y_val, verbose=0)
    print(f"validation accuracy: {accuracy:.3f} (loss {loss:.3f})")

    path = args.out / "quickstart.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    same = np.array_equal(model.predict(x_val, verbose=0), loaded.predict(x_val, verbose=0))
    print(f"saved to {path}; loaded back with safe_mode=True, identical predictions: {same}")
    if not same:
        raise SystemExit("the loaded model disagrees with the saved one")


if __name__ == "__main__":
    main()
