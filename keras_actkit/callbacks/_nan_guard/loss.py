"""Keras's loss tracker beside the guard: a skipped batch left out of it, the running loss read from it."""

import keras

from keras_actkit import _backend, _keras_internals


def loss_filter(model, client, decision):
    """Leave skipped batches out of `logs["loss"]` (Keras's running mean would read NaN all epoch).

    Returns the function that stands in place of the loss tracker's
    `update_state` while a training step runs (the tap puts it there and
    takes it out: validation and `evaluate` see Keras's own), or None when
    the model has no loss tracker. `decision()` gives the tap's skip decision
    for the step (None where it publishes none).
    """
    tracker = _keras_internals.loss_tracker(model)
    if tracker is None:
        return None
    original = type(tracker).update_state.__get__(tracker)

    def update_state(values, sample_weight=None):
        finite = _backend.all_finite([values])
        if client.defers_loss:
            # Eager steps (torch): counted once the step's decision is known
            # (GuardClient.after_apply), instead of a copy of the tracker kept to undo it.
            client.deferred_loss = (lambda: original(values, sample_weight=sample_weight)) if finite else None
            return
        if client.tracker_after_apply:
            # Inside a LossScaleOptimizer the tap publishes no decision (JAX:
            # its cond keeps it); the steps it skips are its own and their loss counts, as in Keras.
            decided = decision()
            if decided is not None:
                finite = keras.ops.logical_and(finite, decided)
        else:
            client.tracker_before = (tracker.variables, [keras.ops.copy(v.value) for v in tracker.variables])
        if isinstance(finite, bool):  # torch: decided on the host
            if finite:
                original(values, sample_weight=sample_weight)
            return
        # A batch left out adds exactly 0 to the total and to the count
        # (a select, not a conditional: no function call per step on TensorFlow).
        ops = keras.ops
        values = ops.convert_to_tensor(values)
        weight = ops.ones_like(values) if sample_weight is None else ops.convert_to_tensor(sample_weight)
        original(ops.where(finite, values, ops.zeros_like(values)),
                 sample_weight=ops.where(finite, weight, ops.zeros_like(weight)))

    return update_state


def running_loss(model):
    """The epoch's running mean loss so far (Keras's loss tracker), or None before the first step."""
    tracker = _keras_internals.loss_tracker(model)
    if tracker is None or len(tracker.variables) != 2:
        return None
    total, count = _backend.read_values(model, tracker.variables)
    return float(total / count) if float(count) > 0 else None


def no_batch_counted(model):
    """Whether the loss tracker has counted no batch this epoch (every one was left out); False without one."""
    tracker = _keras_internals.loss_tracker(model)
    if tracker is None:
        return False
    (count,) = _backend.read_values(model, tracker.variables[1:2])
    return float(count) == 0
