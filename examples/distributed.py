"""The callbacks on two devices: they see what one device would see.

The same digits MLP (LeakyReLU6 and PReLU, matched initialisation) trained on
one device and on two: JAX's `keras.distribution.DataParallel` or
TensorFlow's `MirroredStrategy`, on two CPU devices made from this machine's
CPU. One training row is NaN. `find_lr` picks the learning rate on the
two-device model; both runs then train with GradientNormLogger, NaNGuard and
DeadNeuronMonitor, on the same batches in the same order.

What it shows: on two devices the logged gradient norms are those of the whole
batch (equal to the one-device run's, up to float rounding), NaNGuard skips
the same poisoned steps on both devices at once, and the dead fractions and
accuracy match. Prints a table and saves the global gradient norm per step
of both runs as a PNG.

Keras has no multi-device API for the torch backend: there the script says so
and runs the one-device half.

    KERAS_BACKEND=jax python examples/distributed.py [--quick] [--out DIR]
"""

import os

# Two host devices, set before any backend starts (harmless for the others).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402
import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import load_digits_split, parse_args, save_plot  # noqa: E402

import keras_actkit as ak  # noqa: E402

BATCH = 64
POISONED_ROW = 330  # in batch 5 of every epoch; past the monitor's 256-sample probe


def two_devices():
    """A context that builds models for two devices, and a label; None on torch."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        # Before TensorFlow's runtime starts (listing logical devices would start it).
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        return strategy.scope, f"MirroredStrategy, {strategy.num_replicas_in_sync} replicas"
    if backend == "jax":
        import contextlib

        import jax

        @contextlib.contextmanager
        def data_parallel():
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()[:2]))
            try:
                yield
            finally:
                keras.distribution.set_distribution(None)

        return data_parallel, f"DataParallel, {len(jax.devices()[:2])} devices"
    return None, None


def build(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, name="dense_1"), ak.layers.LeakyReLU6(name="leaky_relu6"),
        keras.layers.Dense(128, name="dense_2"), ak.layers.PReLU(name="prelu"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])
    ak.match_initializers(model)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train(model, data, epochs, lr):
    (x, y), (x_val, y_val) = data
    model.optimizer.learning_rate = lr
    norms = ak.callbacks.GradientNormLogger(every_n_steps=1)
    guard = ak.callbacks.NaNGuard()
    dead = ak.callbacks.DeadNeuronMonitor()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=[norms, guard, dead])
    seconds = (time.perf_counter() - start) / epochs
    accuracy = model.evaluate(x_val, y_val, batch_size=BATCH, verbose=0, return_dict=True)["accuracy"]
    last_dead = {name: values[-1] for name, values in dead.history["dead_fraction"].items()}
    finite = all(np.all(np.isfinite(w)) for w in model.get_weights())
    return {"norms": norms.history, "skipped": guard.skipped, "dead": last_dead, "accuracy": accuracy,
            "finite": finite, "seconds": seconds}


def main():
    args = parse_args(__doc__.splitlines()[0])
    epochs = 2 if args.quick else 10
    (x, y), (x_val, y_val) = load_digits_split(args.seed)
    # Whole batches only: a data-parallel batch must split evenly across the devices.
    x, y = x[: len(x) // BATCH * BATCH].copy(), y[: len(x) // BATCH * BATCH]
    x_val, y_val = x_val[: len(x_val) // BATCH * BATCH], y_val[: len(x_val) // BATCH * BATCH]
    x[POISONED_ROW, 3] = np.nan
    data = (x, y), (x_val, y_val)
    scope, label = two_devices()
    print(f"backend: {keras.backend.backend()}; two devices: {label or 'not available on this backend'}")

    lr = 0.01
    if scope is not None:
        with scope():
            model = build(args.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = ak.find_lr(model, x[:POISONED_ROW // BATCH * BATCH], y[:POISONED_ROW // BATCH * BATCH],
                                batch_size=BATCH, num_steps=30 if args.quick else 100)
        if result.suggestion is not None:
            lr = float(result.suggestion)
        print(f"find_lr on two devices: suggestion {result.suggestion} -> training at {lr:.3g}")
    else:
        print(f"training at {lr:.3g}")

    runs = {"one device": train(build(args.seed), data, epochs, lr)}
    if scope is not None:
        with scope():
            model = build(args.seed)
        runs[label] = train(model, data, epochs, lr)

    one = runs["one device"]["norms"]
    print(f"\n{len(x) // BATCH} steps per epoch, {epochs} epochs, row {POISONED_ROW} is NaN\n")
    print("| run | steps skipped | global grad norm, step 0 | max rel. diff of layer norms vs one device "
          "| dead fraction (last check) | val accuracy | s/epoch | finite weights |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        norms = run["norms"]
        finite = np.isfinite(one["norms"]) & np.isfinite(norms["norms"])
        diff = np.max(np.abs(norms["norms"][finite] - one["norms"][finite]) / one["norms"][finite])
        dead = ", ".join(f"{k} {v:.2f}" for k, v in run["dead"].items())
        print(f"| {name} | {run['skipped']} | {norms['global'][0]:.6f} | {diff:.1e} | {dead} "
              f"| {run['accuracy']:.3f} | {run['seconds']:.2f} | {run['finite']} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for (name, run), style in zip(runs.items(), ("-", "--")):
        axis.plot(run["norms"]["step"], run["norms"]["global"], style, label=name)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("global gradient norm")
    axis.set_yscale("log")
    axis.set_title(f"digits MLP, {keras.backend.backend()}: the tap sees the whole batch on two devices")
    axis.legend()
    figure.tight_layout()
    save_plot(figure, args.out, "distributed.png")


if __name__ == "__main__":
    main()
