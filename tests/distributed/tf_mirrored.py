"""Run by tests/test_distributed.py in a fresh process: two logical CPUs, MirroredStrategy."""

import os
import warnings

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_actkit as ak  # noqa: E402
from _shared import find_lr_report, report  # noqa: E402

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 6)).astype("float32")
y = (x[:, 0] > 0).astype("int32")


def build():
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="hidden"),
                                  keras.layers.Dense(2, activation="softmax", name="out")])
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    return model


out = {"replicas": strategy.num_replicas_in_sync}
model = build()
# Independent reference: tf.GradientTape on the whole first batch (16 rows), one device, initial weights.
weights = [np.array(v.numpy()) for v in model.trainable_variables]
reference = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
reference.set_weights(weights)
with tf.GradientTape() as tape:
    loss = keras.losses.SparseCategoricalCrossentropy()(y[:16], reference(x[:16], training=True))
grads = tape.gradient(loss, reference.trainable_variables)
out["expected_step0"] = [float(np.sqrt(sum(np.sum(np.square(g.numpy())) for g in grads[i:i + 2]))) for i in (0, 2)]

# A plain run on the clean data, for the weights a skipped step must leave as they were.
clean = build()
clean.fit(np.delete(x, np.s_[16:32], axis=0), np.delete(y, np.s_[16:32]), batch_size=16, epochs=1, shuffle=False,
          verbose=0)

bad = x.copy()
bad[20, 1] = np.nan  # batch 1, the first replica's half
logger = ak.callbacks.GradientNormLogger(every_n_steps=1)
monitor = ak.callbacks.DeadNeuronMonitor(probe_size=32)
guard = ak.callbacks.NaNGuard()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(bad, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[logger, monitor, guard])
out["logged_steps"] = [int(s) for s in logger.history["step"]]
out["logged_step0"] = [float(v) for v in logger.history["norms"][0]]
out["skipped"] = guard.skipped
out["finite"] = all(bool(np.all(np.isfinite(v.numpy()))) for v in model.weights)
out["max_diff_vs_clean"] = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), clean.get_weights()))
out["dead_checks"] = len(monitor.history["step"])
# The probe captured from training is the first 32 rows, in order, gathered back from the two replicas.
out["probe_is_first_rows"] = bool(np.array_equal(monitor._probe, bad[:32], equal_nan=True))
out.update(find_lr_report(build(), x, y))
report(out)
