"""Variable reads and writes shared by the TensorFlow and torch backends (state lives in the variables)."""

import keras
import numpy as np


def read_values(model, variables):
    # `numpy()` also reads a tf.distribute SyncOnRead variable (a metric's
    # total under a strategy: the sum over replicas), which `.value` cannot.
    return [np.array(v.numpy()) for v in variables]


def write_values(model, variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


def all_finite(tensors):
    # One concatenation and one reduction: in a compiled CPU step each small
    # reduction costs more in dispatch than in arithmetic.
    ops = keras.ops
    return ops.all(ops.isfinite(ops.concatenate([ops.reshape(t, (-1,)) for t in tensors])))


def global_apply(body, apply, grads, variables):
    # One process sees every gradient: nothing to gather.
    return body(grads, lambda: apply(grads, variables))
