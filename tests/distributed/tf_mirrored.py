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
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    return model


out = {}
model = build()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    logger = ak.callbacks.GradientNormLogger(every_n_steps=1)
    monitor = ak.callbacks.DeadNeuronMonitor(probe_data=x[:32])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[logger, monitor])
out["norm_records"] = len(logger.history["step"])
out["norms_finite"] = bool(np.all(np.isfinite(logger.history["global"])))
out["warned_local"] = any("local gradient" in str(w.message) for w in caught)
out["dead_checks"] = len(monitor.history["step"])
try:
    build().fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ak.callbacks.NaNGuard()])
    out["guard"] = "ran"
except ValueError as error:
    out["guard"] = str(error)
out.update(find_lr_report(build(), x, y))
report(out)
