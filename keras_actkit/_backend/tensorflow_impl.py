"""TensorFlow: `tf.cond` around the update, as Keras's LossScaleOptimizer does;
under a `tf.distribute` strategy, in cross-replica context (as it does too)."""

import keras
import numpy as np
import tensorflow as tf

from keras_actkit._backend import _common
from keras_actkit._backend._common import (call_train_function, compiles_random_per_shape, eager_steps, finite_of,
                                           guarded_train_step, loss_tracked_after_apply, make_train_function)

__all__ = ["all_finite", "apply_if", "bookkeeping_in_skip_branch", "call_train_function", "compiles_random_per_shape",
           "eager_steps", "finite_of", "finite_terms", "global_apply", "guarded_train_step", "inference_function",
           "loss_tracked_after_apply", "make_train_function", "read_values", "request_values", "write_values"]


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


def request_values(model, variables):
    # Steps run synchronously here: the fetch reads the values current then.
    return lambda: read_values(model, variables)


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


def _whole_batch(data, strategy):
    """A batch as one structure of tensors: under a strategy, each replica's share joined in order."""
    if strategy.num_replicas_in_sync == 1:
        return data
    return tf.nest.map_structure(lambda v: tf.concat(strategy.experimental_local_results(v), axis=0), data)


def _replay_iterator(batches, strategy):
    """One iterator over `batches`, each as it was (batch dimension None, as in fit's own spec)."""
    flat = [keras.tree.flatten(data) for data in batches]
    sizes = [parts[0].shape[0] for parts in flat]
    one_shape = len({tuple(t.shape[1:] for t in parts) for parts in flat}) == 1
    if one_shape and all(size == sizes[0] for size in sizes[:-1]) and sizes[-1] <= sizes[0]:
        # Full batches (and a last, smaller one) of one shape: one pipeline re-cuts them.
        whole = tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *batches)
        dataset = tf.data.Dataset.from_tensor_slices(whole).batch(sizes[0])
    else:  # e.g. sequences padded per batch
        dataset = None
        for data, size in zip(batches, sizes):
            part = tf.data.Dataset.from_tensor_slices(data).batch(size)
            dataset = part if dataset is None else dataset.concatenate(part)
    # Tensors already in memory: tf.data's graph rewrites and autotuning only
    # cost time here (they double the cost of making the iterator).
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    if strategy.num_replicas_in_sync > 1:
        dataset = strategy.experimental_distribute_dataset(dataset)
    return iter(dataset)


def recording_train_function(model, function, record, limit=None):
    """`function` (a train function) with `record(batch)` called on the batches it takes, before their step.

    The first call takes batches from the iterator until `record` returns True
    (enough) or `limit` batches are taken, records them, and makes one replay
    iterator of them: this call and the next ones step on them one at a time,
    through the step fit has traced. Handing a batch over as a Python list
    instead ran Keras's other, separately traced step function, which changed
    the logged per-output losses of a multi-output model (issue 17, item 12);
    one replay pipeline per capture, not one per batch, because making a
    tf.data iterator costs ~3-10 ms. `wrapped.finished` turns True once the
    last recorded batch has been stepped on.
    """
    if model.steps_per_execution != 1:
        raise ValueError(
            "DeadNeuronMonitor cannot capture probe samples from training with steps_per_execution > 1 "
            "on TensorFlow (one call takes several batches from the iterator); pass `probe_data=` "
            "(a batch of inputs)."
        )
    strategy, replay = model.distribute_strategy, {}

    def take(iterator):
        batches = []
        while limit is None or len(batches) < limit:
            try:
                batches.append(_whole_batch(next(iterator), strategy))
            except StopIteration:
                break
            if record(batches[-1]):
                break
        return batches

    def wrapped(iterator):
        if not replay:
            batches = take(iterator)
            if not batches:  # the data ran out: the step says so as it would have
                wrapped.finished = True
                return function(iterator)
            replay.update(iterator=_replay_iterator(batches, strategy), left=len(batches))
        replay["left"] -= 1
        wrapped.finished = replay["left"] == 0
        return function(replay["iterator"])

    wrapped.finished = False
    return wrapped


def variable_scope(model):
    return model.distribute_strategy.scope()
