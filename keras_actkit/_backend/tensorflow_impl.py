"""TensorFlow: `tf.cond` around the update, as Keras's LossScaleOptimizer does;
under a `tf.distribute` strategy, in cross-replica context (as it does too)."""

import keras
import numpy as np
import tensorflow as tf

from keras_actkit._backend import _common
from keras_actkit._backend.tensorflow_replay import recording_train_function
from keras_actkit._backend._common import (call_train_function, compiles_random_per_shape, eager_steps, finite_of,
                                           guarded_train_step, loss_tracked_after_apply, make_train_function,
                                           request_values)

__all__ = ["all_finite", "apply_if", "bookkeeping_in_skip_branch", "call_train_function", "compiles_random_per_shape",
           "eager_steps", "finite_of", "finite_terms", "global_apply", "guarded_train_step", "inference_function",
           "loss_tracked_after_apply", "make_train_function", "read_values", "recording_train_function",
           "request_values", "scaled_squares", "variable_scope", "write_values"]


def _plain(variable):
    """The `tf.Variable` behind `variable` when it is a plain one (not a tf.distribute variable), else None."""
    value = variable.value if isinstance(variable, keras.Variable) else variable
    if isinstance(value, tf.Variable) and not isinstance(value, tf.distribute.DistributedValues):
        return value
    return None


def _host_copy(variable):
    value = _plain(variable)
    if value is not None:
        # The bare read op: `numpy()` adds a name scope and an identity op,
        # 2-3x the cost of the read itself (30-70 us against 16 us a variable).
        return np.array(tf.raw_ops.ReadVariableOp(resource=value.handle, dtype=value.dtype))
    # `numpy()` also reads a tf.distribute SyncOnRead variable (a metric's
    # total under a strategy: the sum over replicas), which the handle cannot.
    return np.array(variable.numpy())


def read_values(model, variables):
    return [_host_copy(v) for v in variables]


def write_values(model, variables, values):
    for variable, value in zip(variables, values):
        plain = _plain(variable)
        if plain is not None and tuple(plain.shape) == np.shape(value):
            # The bare assign op: Keras's `assign` costs 4x as much (190 us
            # against 46 us), in its checks of what is checked here.
            tf.raw_ops.AssignVariableOp(resource=plain.handle, value=tf.cast(value, plain.dtype))
        else:  # Keras's assign: its error for a shape that does not fit, SyncOnRead semantics
            variable.assign(value)


def finite_terms(tensors):
    """As `_common.finite_terms`; a sparse gradient (an `Embedding`'s `IndexedSlices`) by its rows' values."""
    return _common.finite_terms([t.values if isinstance(t, tf.IndexedSlices) else t for t in tensors])


def all_finite(tensors):
    return finite_of(finite_terms(tensors))


def apply_if(condition, apply_fn, variables, otherwise=None):
    def run():
        apply_fn()
        return tf.constant(True)

    def skip():
        if otherwise is not None:
            otherwise()
        return tf.constant(False)

    tf.cond(condition, run, skip)


def global_apply(body, apply, grads, variables):
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return _common.global_apply(body, apply, grads, variables)

    def cross_replica(strategy, grads, variables):
        # `grads` are per-replica values here. The optimizer's own update sums
        # them over the replicas (the loss of each replica is already divided by
        # their number), so the sum is the gradient the update uses.
        present = [i for i, g in enumerate(grads) if g is not None]
        summed = strategy.extended.batch_reduce_to(
            tf.distribute.ReduceOp.SUM, [(grads[i], grads[i]) for i in present])
        seen = [None] * len(grads)
        for i, value in zip(present, summed):
            seen[i] = strategy.experimental_local_results(value)[0]

        def update():
            # The real apply, once per replica: it all-reduces and updates in its
            # own merge call, nested in this one (as under LossScaleOptimizer).
            strategy.extended.call_for_each_replica(apply, args=(grads, variables))

        body(seen, update, replicated=True)

    context.merge_call(cross_replica, args=(grads, variables))


def inference_function(model):
    # Variables are read when the graph runs; one trace per input signature.
    run = tf.function(lambda x: keras.tree.flatten(model(x, training=False)), reduce_retracing=True)
    return lambda x: [out.numpy() for out in run(x)]


def bookkeeping_in_skip_branch():
    return True  # a conditional of the guard's own would be one more function call per step


def scaled_squares(tensor):
    """As `_common.scaled_squares`; a sparse `IndexedSlices` gradient (an `Embedding`'s) summed per row first.

    An `IndexedSlices` gradient holds one row per looked-up id, repeated ids
    included: the gradient of a row is the sum of its slices, so they are
    added (segment sum over the unique ids) before squaring.
    """
    if isinstance(tensor, tf.IndexedSlices):
        unique, position = tf.unique(tensor.indices)
        tensor = tf.math.unsorted_segment_sum(tf.cast(tensor.values, "float32"), position, tf.shape(unique)[0])
    return _common.scaled_squares(tensor)


def variable_scope(model):
    return model.distribute_strategy.scope()
