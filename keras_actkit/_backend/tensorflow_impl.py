"""TensorFlow: `tf.cond` around the update, as Keras's LossScaleOptimizer does."""

import tensorflow as tf

from keras_actkit._backend._common import all_finite, read_values, write_values

__all__ = ["all_finite", "apply_if", "read_values", "write_values"]


def apply_if(condition, apply_fn, variables):
    def run():
        apply_fn()
        return tf.constant(True)

    tf.cond(condition, run, lambda: tf.constant(False))
