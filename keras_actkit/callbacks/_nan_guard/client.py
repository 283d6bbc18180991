"""NaNGuard's in-graph part: the update runs only when every gradient is finite; counters in one vector."""

import keras
import numpy as np

from keras_actkit import _backend, _keras_internals
from keras_actkit.callbacks import _tap
from keras_actkit.callbacks._nan_guard import counters


class GuardClient(_tap.TapClient):
    """The guard's tap client: the skip decision's bookkeeping in its counter vector."""

    guards = True

    def __init__(self):
        self.signature = ("nan_guard",)
        self.names = None  # layer of each gradient, in the order the tap sees them
        self._pending = None
        self.streak = 0  # eager (torch) only
        # Leaving a skipped step out of the loss tracker. The loss can be finite
        # while a gradient is not (TensorFlow's crossentropy clips a NaN
        # probability), so the step's decision is what counts. TensorFlow and
        # torch update the tracker before the apply: its values before the
        # update are kept here and put back in the skip branch of the update's
        # conditional (no extra op on a normal step). JAX updates it after the
        # apply, in the same traced step: it reads the tap's decision instead
        # (not from inside a LossScaleOptimizer's cond, where the tap publishes none).
        self.tracker_after_apply = _backend.loss_tracked_after_apply()
        self.tracker_before = None  # (variables, values)
        self.bookkeeping_in_skip = _backend.bookkeeping_in_skip_branch()
        self.tracker_filter = None  # set by NaNGuard: shadows the loss tracker's update_state during a step
        # Eager steps, when every step reaches this client's `after_apply` (its
        # optimizer is the model's: no LossScaleOptimizer skipping the call;
        # trainable weights): the tracker is updated there, after the decision.
        self.defers_loss = False
        self.deferred_loss = None  # the tracker's update for this step's finite loss
        self._old = None

    def step_patches(self, model):
        tracker = _keras_internals.loss_tracker(model)
        if tracker is None or self.tracker_filter is None:
            return []
        return [(tracker, "update_state", self.tracker_filter)]

    def variable_specs(self):
        return [((counters.SIZE,), "float32", "keras_actkit_nan_guard")]

    def initial_values(self):
        return [counters.initial()]

    def before_apply(self, context):
        self._old = None
        if self.names is None:
            self.names = [_tap.layer_key(v) for v in context.variables]
        if not context.grads:
            self._pending = None
            return
        if context.eager:
            # Counters in Python; the variable is written only when they change.
            finite = context.finite
            self._pending = (finite, None if finite else context.first_non_finite)
            return
        # The first bad layer is worked out only on a bad step.
        self._pending = (context.finite, lambda: context.first_non_finite)
        if self.bookkeeping_in_skip:
            # A normal step's bookkeeping (the streak back to 0) now; a bad
            # step's is written in the skip branch of the update's conditional,
            # so the guard adds no conditional of its own (on TensorFlow each
            # is a function call per step).
            variable = self.variables[0]
            self._old = keras.ops.copy(variable.value)  # a read now, not the variable
            variable.assign(self._old * counters.KEEP_ON_FINITE)

    def after_apply(self, context):
        self.tracker_before = None
        pending, self._pending = self._pending, None
        counted, self.deferred_loss = self.deferred_loss, None
        if counted is not None and (pending is None or pending[0]):
            counted()  # the loss of a step that went ahead
        if pending is None or self._old is not None:
            return
        finite, first = pending
        variable = self.variables[0]
        if context.eager:
            if finite and self.streak == 0:
                return
            self.streak = 0 if finite else self.streak + 1
            bad = None if finite else (context.step, first, not context.data_finite())
            state = np.array(keras.ops.convert_to_numpy(variable.value))
            variable.assign(counters.counted(state, self.streak, bad))
            return
        old = variable.value
        # JAX: the skip branch is pure there; the bad step's bookkeeping is a
        # select of five numbers (the first bad layer comes from the finite
        # check's per-gradient sums): cheaper than a conditional of its own.
        variable.assign(keras.ops.where(finite, old * counters.KEEP_ON_FINITE, self._bad_state(old, context, first)))

    @staticmethod
    def _bad_state(old, context, first):
        return counters.traced_bad_state(old, context.step, first(), context.data_finite())

    def _restores_tracker(self, context):
        return self.tracker_before is not None and not context.replicated

    def skip_work(self, context):
        return self._restores_tracker(context) or self._old is not None

    def on_skipped(self, context):
        if self._restores_tracker(context):
            variables, values = self.tracker_before
            for variable, value in zip(variables, values):
                variable.assign(value)
        if self._old is not None:
            self.variables[0].assign(self._bad_state(self._old, context, self._pending[1]))
