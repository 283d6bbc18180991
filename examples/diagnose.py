"""A model that cannot learn, found and repaired by `ak.diagnose`, on scikit-learn digits.

Ten sigmoid layers initialised for ReLU (He-uniform), as in AUTOTRAINER's
demo: the gradient that reaches the first layers is a thousandth of the
last layer's, and the loss sits at the level of guessing. `diagnose` trains a
copy, names the problem, the layers and the number that shows it, tries the
prescriptions on fresh copies and keeps the one that beats the original run.
The figure (loss curves, per-layer gradient norms, saturated fractions) is
saved as a PNG.

    python examples/diagnose.py [--quick] [--out DIR]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import keras  # noqa: E402
from _common import load_digits_split, parse_args, save_plot  # noqa: E402

import keras_actkit as ak  # noqa: E402


def build(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((64,))]
        + [keras.layers.Dense(32, activation="sigmoid", kernel_initializer="he_uniform") for _ in range(10)]
        + [keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def run(data, epochs, out, seed=0):
    """Diagnose and repair the model on `data` ((x, y), (x_val, y_val)); print the report, save the figure."""
    (x, y), (x_val, y_val) = data
    model = build(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the instruments' own warnings: the diagnosis says it all
        result = ak.diagnose(model, x, y, validation_data=(x_val, y_val), epochs=epochs, batch_size=32,
                             repair=True)
    print(result)
    if result.repair is not None:
        print(f"\nvalidation accuracy: {result.score:.3f} as built, {result.repair['score']:.3f} repaired")
        print(f"the change, as code:\n{result.repair['code']}")
    save_plot(result.plot(), out, "diagnose.png")
    return result


def main():
    args = parse_args(__doc__.splitlines()[0])
    (x, y), (x_val, y_val) = load_digits_split(args.seed)
    epochs = 4 if args.quick else 20
    if args.quick:
        x, y, x_val, y_val = x[:256], y[:256], x_val[:64], y_val[:64]
    run(((x, y), (x_val, y_val)), epochs, args.out, args.seed)


if __name__ == "__main__":
    main()
