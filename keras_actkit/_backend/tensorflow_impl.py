"""TensorFlow: `tf.cond` around the update, as Keras's LossScaleOptimizer does;
under a `tf.distribute` strategy, in cross-replica context (as it does too)."""

import keras
import tensorflow as tf

from keras_actkit._backend import _common
from keras_actkit._backend._common import (call_train_function, eager_steps, finite_of, guarded_train_step,
                                           loss_tracked_after_apply, make_train_function, read_values,
                                           request_values, write_values)

__all__ = ["all_finite", "apply_if", "bookkeeping_in_skip_branch", "call_train_function", "eager_steps",
           "finite_of", "finite_terms", "global_apply", "guarded_train_step", "inference_function",
           "loss_tracked_after_apply", "make_train_function", "read_values", "request_values", "write_values"]


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


def squared_norm(tensor):
    """Sum of squares of a gradient; a sparse `IndexedSlices` one (an `Embedding`'s) is summed per row first.

    An `IndexedSlices` gradient holds one row per looked-up id, repeated ids
    included: the gradient of a row is the sum of its slices, so they are
    added (segment sum over the unique ids) before squaring.
    """
    if isinstance(tensor, tf.IndexedSlices):
        unique, position = tf.unique(tensor.indices)
        rows = tf.math.unsorted_segment_sum(tf.cast(tensor.values, "float32"), position, tf.shape(unique)[0])
        return tf.reduce_sum(tf.square(rows))
    return _common.squared_norm(tensor)


def recording_train_function(model, function, record):
    """`function` (a train function) with `record(batch)` called on its batch, before its step.

    The batch is taken from the iterator, recorded, and handed to the step as a
    new iterator of the same element spec (batch dimension None): the step
    fit has traced runs it. Handing it over as a Python list instead ran
    Keras's other, separately traced step function, which changed the logged
    per-output losses of a multi-output model (issue 17, item 12).
    """
    if model.steps_per_execution != 1:
        raise ValueError(
            "DeadNeuronMonitor cannot capture probe samples from training with steps_per_execution > 1 "
            "on TensorFlow (one call takes several batches from the iterator); pass `probe_data=` "
            "(a batch of inputs)."
        )
    strategy = model.distribute_strategy
    replicas = strategy.num_replicas_in_sync

    def wrapped(iterator):
        data = next(iterator)
        if replicas > 1:
            # Each replica's share of the batch, in order: the whole batch again.
            data = tf.nest.map_structure(lambda v: tf.concat(strategy.experimental_local_results(v), axis=0), data)
        record(data)
        size = keras.tree.flatten(data)[0].shape[0]
        # from_tensor_slices(...).batch: ~3 ms a captured batch, where
        # from_tensors(...).unbatch().batch took ~50 (both on a loaded 2-core machine).
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(size)
        if replicas > 1:
            return function(iter(strategy.experimental_distribute_dataset(dataset)))
        return function(iter(dataset))

    return wrapped


def variable_scope(model):
    return model.distribute_strategy.scope()
