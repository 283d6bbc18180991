"""The learning-rate range test on scikit-learn digits: its plot, and training at the suggestion vs guesses.

`find_lr` raises the learning rate of an SGD+momentum MLP from 1e-7 to 10 over
100 steps and suggests one (the model is left exactly as it was). The same
network is then trained for 15 epochs at the suggestion and at two guesses
(the Keras default 0.01, and 1.0), and the validation accuracies are printed.

    python examples/lr_finder.py [--quick] [--out DIR]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import keras  # noqa: E402
from _common import load_digits_split, parse_args  # noqa: E402

import keras_actkit as ak  # noqa: E402


def build(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    ak.match_initializers(model)
    model.compile(keras.optimizers.SGD(momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(lr, data, epochs, seed):
    (x, y), val = data
    model = build(seed)
    model.optimizer.learning_rate = lr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model.evaluate(*val, verbose=0)[1]


def main():
    args = parse_args(__doc__.splitlines()[0])
    data = load_digits_split(args.seed)
    epochs, steps = 15, 100
    if args.quick:
        (x, y), (xv, yv) = data
        data, epochs, steps = ((x[:256], y[:256]), (xv[:64], yv[:64])), 1, 30
    (x, y), _ = data
    model = build(args.seed)
    before = [w.copy() for w in model.get_weights()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ak.find_lr(model, x, y, batch_size=32, num_steps=steps)
    untouched = all((a == b).all() for a, b in zip(before, model.get_weights()))
    print(f"backend: {keras.backend.backend()}; range test: {len(result.lrs)} steps, stop: {result.stop_reason}; "
          f"model untouched afterwards: {untouched}")
    for rule, value in result.suggestions.items():
        print(f"  {rule:>16}: {'-' if value is None else f'{value:.3g}'}")
    path = args.out / "lr_finder.png"
    result.plot().savefig(path)

    candidates = {"suggestion": result.suggestion, "guess: 0.01 (SGD default)": 0.01, "guess: 1.0": 1.0}
    print(f"\n| learning rate | value | val accuracy after {epochs} epoch(s) |")
    print("|---|---|---|")
    for label, lr in candidates.items():
        if lr is None:
            print(f"| {label} | none (curve never fell) | - |")
            continue
        print(f"| {label} | {lr:.3g} | {train(lr, data, epochs, args.seed):.3f} |")
    print(f"\nplot: {path}")
    if not untouched:
        raise SystemExit("find_lr changed the model")


if __name__ == "__main__":
    main()
