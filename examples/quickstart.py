"""keras_actkit in one model, on scikit-learn digits.

Builds a classifier with LeakyReLU6, PReLU and hard-swish, matches every
kernel's initializer to its activation, finds a learning rate with a range
test (which leaves the model untouched), trains at it with NaNGuard,
GradientNormLogger and DeadNeuronMonitor watching, then saves to `.keras` and
loads back with `safe_mode=True` and no custom_objects.

    python examples/quickstart.py [--quick] [--out DIR]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

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
    print(ak.match_initializers(model))  # He / LeCun / Glorot / computed gain, per kernel
    model.compile(
        keras.optimizers.SGD(momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short quick-mode test may not reach divergence
        result = ak.find_lr(model, x, y, batch_size=32, num_steps=30 if args.quick else 100)
    figure_path = args.out / "quickstart_lr_find.png"
    result.plot().savefig(figure_path)
    if result.suggestion is None:  # a very short quick-mode test can end before the loss falls
        lr = float(model.optimizer.learning_rate)
        print(f"range test: {result.stop_reason}, no suggestion; keeping LR {lr:.3g}")
    else:
        lr = result.apply(model)
        print(f"range test: {result.stop_reason} after {len(result.lrs)} steps; "
              f"training at the suggested LR {lr:.3g} (plot: {figure_path})")
    print(f"backend: {keras.backend.backend()}, training {epochs} epoch(s) on digits")
    guard = ak.callbacks.NaNGuard()  # a non-finite step never reaches the weights
    norms = ak.callbacks.GradientNormLogger()  # per-layer gradient norms of the real step
    dead = ak.callbacks.DeadNeuronMonitor()  # dead units per layer, with a remedy
    history = model.fit(x, y, batch_size=32, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
                        callbacks=[guard, norms, dead])
    loss, accuracy = model.evaluate(x_val, y_val, verbose=0)
    print(f"validation accuracy: {accuracy:.3f} (loss {loss:.3f})")
    last = {k: v[-1] for k, v in history.history.items()}
    print(f"last epoch: global gradient norm {last['grad_norm/global']:.3g}; "
          f"non-finite steps skipped {guard.skipped}, rollbacks {guard.rollbacks}; dead fraction "
          + ", ".join(f"{k.split('/', 1)[1]} {v:.2f}" for k, v in last.items() if k.startswith("dead_fraction/")))
    norms.plot().savefig(args.out / "quickstart_grad_norms.png")

    path = args.out / "quickstart.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    same = np.array_equal(model.predict(x_val, verbose=0), loaded.predict(x_val, verbose=0))
    print(f"saved to {path}; loaded back with safe_mode=True, identical predictions: {same}")
    if not same:
        raise SystemExit("the loaded model disagrees with the saved one")


if __name__ == "__main__":
    main()
