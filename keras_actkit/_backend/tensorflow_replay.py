"""TensorFlow: the probe capture's replay, batches taken ahead from fit's iterator and stepped on as they were.

Fit's train function steps on a `tf.data` iterator. The capture takes its
batches from that iterator before their step, so they must reach the step
again through an iterator of the same element spec, or the traced function
would not be reused. Making a `tf.data` pipeline of tensors costs 3-5 ms (the
dataset ops are built in Python). So each model keeps one pipeline and one
iterator per kind of batch, made at its first capture, that read their
batches from variables written at each capture.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

# model -> {kind of batch: _Buffers}. Weak: it goes with the model; it holds the last probe's batches.
_BUFFERS = weakref.WeakKeyDictionary()


def _options():
    # Tensors already in memory: tf.data's graph rewrites and autotuning only
    # cost time here (they double the cost of making the iterator).
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    return options


def _kind(batch):
    return repr(tf.nest.map_structure(lambda t: (t.dtype.name, tuple(t.shape[1:])), batch))


class _Buffers:
    """Variables holding the rows of several batches of one kind, and one endless iterator over them, batch by batch.

    Its next element is rows bounds[k]:bounds[k+1] of every buffer, k a
    cursor the element moves on; its batch dimension is None, as in fit's own
    spec. The pipeline has no prefetch, so an element is read from the
    variables when the step asks for it, and a capture starts it over by
    setting the cursor to 0. One iterator, made once: each new iterator of a
    pipeline with a function in it costs ~10 ms, more than a new pipeline.
    """

    def __init__(self, batch):
        flat = tf.nest.flatten(batch)
        structure = tf.nest.map_structure(lambda _: None, batch)
        with tf.init_scope():
            self._rows = [tf.Variable(tf.zeros((0,) + tuple(t.shape[1:]), t.dtype), trainable=False,
                                      shape=tf.TensorShape([None] + t.shape[1:].as_list())) for t in flat]
            self._bounds = tf.Variable(tf.zeros((0,), tf.int64), trainable=False, shape=tf.TensorShape([None]))
            self._cursor = tf.Variable(0, dtype=tf.int64, trainable=False)
            rows, bounds, cursor = self._rows, self._bounds, self._cursor

            def element(_):
                k = cursor.assign_add(1) - 1
                start, stop = bounds[k], bounds[k + 1]
                return tf.nest.pack_sequence_as(structure, [r[start:stop] for r in rows])

            dataset = tf.data.Dataset.range(np.iinfo(np.int64).max).map(element).with_options(_options())
            self._iterator = iter(dataset)

    def iterator(self, batches):
        """The iterator, set to give `batches` (all of this kind) from the first."""
        flat = [tf.nest.flatten(data) for data in batches]
        for rows, parts in zip(self._rows, zip(*flat)):
            rows.assign(tf.concat(parts, axis=0))
        self._bounds.assign(np.cumsum([0] + [parts[0].shape[0] for parts in flat]))
        self._cursor.assign(0)
        return self._iterator

    def release(self):
        """Drop the rows once they have been stepped on: the model keeps the pipeline, not a copy of the data."""
        for rows in self._rows:
            rows.assign(tf.zeros((0,) + tuple(rows.shape[1:]), rows.dtype))


def _dense(batch):
    return all(isinstance(t, tf.Tensor) for t in tf.nest.flatten(batch))  # not sparse, not ragged


def _whole_batch(data, strategy):
    """A batch as one structure of tensors: under a strategy, each replica's share joined in order."""
    if strategy.num_replicas_in_sync == 1:
        return data
    return tf.nest.map_structure(lambda v: tf.concat(strategy.experimental_local_results(v), axis=0), data)


def _pipeline(batches, strategy):
    """A new pipeline over `batches`, each as it was (batch dimension None, as in fit's own spec)."""
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
    dataset = dataset.with_options(_options())
    if strategy.num_replicas_in_sync > 1:
        dataset = strategy.experimental_distribute_dataset(dataset)
    return iter(dataset)


def _replay_iterator(model, batches, strategy):
    """One iterator over `batches` (the model's kept pipeline for their kind when they are all of one kind),
    and what to call once they have all been stepped on."""
    kind = _kind(batches[0])
    if strategy.num_replicas_in_sync > 1 or tf.distribute.has_strategy() or \
            not all(_dense(b) and _kind(b) == kind for b in batches):
        return _pipeline(batches, strategy), lambda: None  # a strategy's own datasets and variables: not kept
    kept = _BUFFERS.setdefault(model, {})
    if kind not in kept:
        kept[kind] = _Buffers(batches[0])
    return kept[kind].iterator(batches), kept[kind].release


def recording_train_function(model, function, record, limit=None):
    """`function` (a train function) with `record(batch)` called on the batches it takes, before their step.

    The first call takes batches from the iterator until `record` returns True
    (enough) or `limit` batches are taken, records them, and makes one replay
    iterator of them: this call and the next ones step on them one at a time,
    through the step fit has traced. Handing a batch over as a Python list
    instead ran Keras's other, separately traced step function, which changed
    the logged per-output losses of a multi-output model (issue 17, item 12);
    one replay iterator per capture, not one per batch (`_replay_iterator`). `wrapped.finished` turns True once the
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
            iterator, release = _replay_iterator(model, batches, strategy)
            replay.update(iterator=iterator, release=release, left=len(batches))
        replay["left"] -= 1
        wrapped.finished = replay["left"] == 0
        outputs = function(replay["iterator"])
        if wrapped.finished:
            replay["release"]()
        return outputs

    wrapped.finished = False
    return wrapped
