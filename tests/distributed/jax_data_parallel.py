"""Run by tests/test_distributed.py in a fresh process: two host devices, keras.distribution.DataParallel."""

import os
import warnings

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_actkit as ak  # noqa: E402
from _shared import find_lr_report, report  # noqa: E402

keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 6)).astype("float32")
y = (x[:, 0] > 0).astype("int32")


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="hidden"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy())
    return model


out = {"devices": len(jax.devices())}
model = build()
# Independent reference: jax.grad of the loss over the whole first batch (16 rows) at the initial weights.
trainable = [v.value for v in model.trainable_variables]
non_trainable = [v.value for v in model.non_trainable_variables]
loss_fn = keras.losses.SparseCategoricalCrossentropy()


def loss_of(weights):
    y_pred, _ = model.stateless_call(weights, non_trainable, x[:16], training=True)
    return loss_fn(y[:16], y_pred)


grads = jax.grad(loss_of)(trainable)
expected = [float(np.sqrt(sum(np.sum(np.square(np.asarray(g))) for g in grads[i:i + 2]))) for i in (0, 2)]
logger = ak.callbacks.GradientNormLogger(every_n_steps=1)
monitor = ak.callbacks.DeadNeuronMonitor()
guard = ak.callbacks.NaNGuard()
bad = x.copy()
bad[20, 1] = np.nan  # batch 1
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    history = model.fit(bad, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                        callbacks=[logger, monitor, guard])
# Reference: the same sharded training on the data without the bad batch.
keep = np.r_[0:16, 32:64]
clean = build()
clean_history = clean.fit(x[keep], y[keep], batch_size=16, epochs=2, shuffle=False, verbose=0)
out["max_diff_vs_clean"] = max(float(np.max(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b))))
                               for a, b in zip(model.weights, clean.weights))
out["loss"], out["clean_loss"] = history.history["loss"], clean_history.history["loss"]
out["logged_step0"] = [float(v) for v in logger.history["norms"][0]]
out["expected_step0"] = expected
out["skipped"] = guard.skipped
out["finite"] = all(bool(np.all(np.isfinite(keras.ops.convert_to_numpy(v)))) for v in model.weights)
out["dead_checks"] = len(monitor.history["step"])
out.update(find_lr_report(build(), x, y))
report(out)
