"""NaNGuard: skip non-finite steps in-graph, roll back to the last good state, lower the LR, go on."""

import logging
import os
import warnings

import keras
import numpy as np

from keras_actkit import _backend, _keras_internals, _layer_paths, _training_state, _validation
from keras_actkit.callbacks import _log_order, _tap

logger = logging.getLogger("keras_actkit")

# A snapshot is refused when the loss has grown this many times since the last
# one: finite weights on their way to overflow are not a good state to return to.
DIVERGENCE = 10.0

# Layout of the guard's state vector (one variable, so one read is consistent).
# BAD_DATA: skipped steps whose batch held a NaN/Inf (a data fault, not divergence).
SKIPPED, STREAK, LAST_BAD_STEP, FIRST_BAD, MAX_STREAK, BAD_DATA = range(6)
# On a finite step only the streak changes (to 0): one multiplication.
_KEEP_ON_FINITE = np.array([1, 0, 1, 1, 1, 1], "float32")


class _GuardClient(_tap.TapClient):
    """In-graph part: the update runs only when every gradient is finite; counters in one vector."""

    guards = True

    def __init__(self):
        self.signature = ("nan_guard",)
        self.names = None  # layer of each gradient, in the order the tap sees them
        self._pending = None
        self._streak = 0  # eager (torch) only
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
        self._old = None

    def step_patches(self, model):
        tracker = _keras_internals.loss_tracker(model)
        if tracker is None or self.tracker_filter is None:
            return []
        return [(tracker, "update_state", self.tracker_filter)]

    def variable_specs(self):
        return [((6,), "float32", "keras_actkit_nan_guard")]

    def initial_values(self):
        values = np.zeros(6, "float32")
        values[[LAST_BAD_STEP, FIRST_BAD]] = -1.0
        return [values]

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
            variable.assign(self._old * _KEEP_ON_FINITE)

    def after_apply(self, context):
        self.tracker_before = None
        pending, self._pending = self._pending, None
        if pending is None or self._old is not None:
            return
        ops = keras.ops
        finite, first = pending
        variable = self.variables[0]
        if context.eager:
            if finite and self._streak == 0:
                return
            state = np.array(ops.convert_to_numpy(variable.value))
            if finite:
                self._streak = 0
            else:
                self._streak += 1
                state[SKIPPED] += 1
                state[BAD_DATA] += not context.data_finite()
                state[LAST_BAD_STEP], state[FIRST_BAD] = context.step, first
            state[STREAK] = self._streak
            state[MAX_STREAK] = max(state[MAX_STREAK], self._streak)
            variable.assign(state)
            return
        old = variable.value
        # JAX: the skip branch is pure there; the bad step's bookkeeping is a
        # select of five numbers (the first bad layer comes from the finite
        # check's per-gradient sums): cheaper than a conditional of its own.
        variable.assign(ops.where(finite, old * _KEEP_ON_FINITE, self._bad_state(old, context, first)))

    @staticmethod
    def _bad_state(old, context, first):
        ops = keras.ops
        streak = old[STREAK] + 1.0
        return ops.stack([
            old[SKIPPED] + 1.0,
            streak,
            ops.cast(context.step, "float32"),
            ops.cast(first(), "float32"),
            ops.maximum(old[MAX_STREAK], streak),  # the host checks every few steps: keep the longest run
            old[BAD_DATA] + 1.0 - ops.cast(context.data_finite(), "float32"),
        ])

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


class NaNGuard(keras.callbacks.Callback):
    """Survive NaN/Inf in training instead of dying.

    Every step, in-graph (through the optimizer tap shared with
    `GradientNormLogger`): if any gradient is not finite, the update is
    skipped, so weights and optimizer state stay as they were
    (`logs["nan_guard/skipped"]`). Under `LossScaleOptimizer` the gradients are
    checked after unscaling, and the steps it skips itself (normal in mixed
    precision) are left to it. Under JAX's `DataParallel` or a TensorFlow
    `tf.distribute` strategy the check is on the whole batch's gradient, so
    every replica skips the same steps.

    A skipped step leaves every variable as it was, also the state the
    forward pass wrote before the decision (BatchNormalization's moving
    statistics), and its batch out of `logs["loss"]`: one NaN row costs one
    batch. An epoch whose every step was skipped logs `loss` NaN.

    Every `check_every_n_steps` steps (before the next step starts, so no
    step waits for it) and at each epoch's end, the guard reads its counters.
    It rolls back to the last good snapshot (weights, non-trainable state,
    optimizer variables; the step counter goes on, so a schedule moves past a
    spike) when the weights or the state are not finite or after `patience`
    non-finite steps in a row, and goes on (`logs["nan_guard/rollbacks"]`).
    The learning rate changes only for divergence: non-finite weights or
    state, a running loss 10x the snapshot's, or skipped steps on batches
    without a NaN/Inf (the weights make the step overflow); it is then
    multiplied by `lr_factor` (a schedule is scaled for the rest of the fit).
    A data fault, steps skipped because their batches hold a NaN/Inf while
    the weights stay finite, never changes it. Each rollback is in `.events`
    with its `cause` ("data" or "divergence"). Past `max_retries` rollbacks
    it restores the snapshot and stops training. After a fit in which
    something was skipped, `.report` says what: `cause`, `stopped`, `skipped`,
    `skipped_on_bad_data`, `rollbacks` (and the last event's fields when
    training was stopped); None when nothing was. Snapshots are taken only of
    a finite state whose running loss is below 10x the loss at the previous
    snapshot (weights on their way to overflow are not a good state).
    Whatever happens, the weights left after `fit` are finite.

    Args:
        patience: Non-finite steps in a row that trigger a rollback, >= 1.
            Defaults to 3.
        lr_factor: Learning-rate factor at each rollback, in (0, 1].
            Defaults to 0.5.
        max_retries: Rollbacks before training is stopped, >= 0. Defaults to 3.
        check_every_n_steps: Read the counters every n steps, >= 1 (on JAX,
            whose steps run asynchronously, the counters requested at the
            previous check, copied then without waiting: a read does not
            wait for the newest step or drain the queue of dispatched
            steps). Defaults to 10: a bad state is acted on at most 10
            (JAX: 20) steps late (skipped steps change nothing meanwhile).
        snapshot_every_n_steps: Take a snapshot (when everything is finite)
            every n steps, >= 1 (at the first check after n steps). Defaults
            to 100. One is also taken when training begins.
        snapshot_path: Also write each snapshot to this `.npz` file.
        verbose: Log rollbacks at INFO level as well as warning.

    Example:
    ```python
    guard = keras_actkit.callbacks.NaNGuard()
    model.fit(x, y, epochs=10, callbacks=[guard])
    guard.skipped, guard.rollbacks, guard.report
    ```
    """

    def __init__(self, patience=3, lr_factor=0.5, max_retries=3, check_every_n_steps=10, snapshot_every_n_steps=100,
                 snapshot_path=None, verbose=False):
        super().__init__()

        patience = _validation.integer("patience", patience, minimum=1)
        lr_factor = _validation.number("lr_factor", lr_factor, minimum=0, maximum=1, min_inclusive=False)
        max_retries = _validation.integer("max_retries", max_retries, minimum=0)
        check_every_n_steps = _validation.integer("check_every_n_steps", check_every_n_steps, minimum=1)
        snapshot_every_n_steps = _validation.integer("snapshot_every_n_steps", snapshot_every_n_steps, minimum=1)
        snapshot_path = _validation.writable_file("snapshot_path", snapshot_path, allow_none=True)
        if snapshot_path is not None and not str(snapshot_path).endswith(".npz"):
            raise ValueError(f"`snapshot_path` must name a .npz file; received snapshot_path={snapshot_path!r}.")
        verbose = _validation.boolean("verbose", verbose)
        self.patience, self.lr_factor, self.max_retries = patience, lr_factor, max_retries
        self.check_every_n_steps = check_every_n_steps
        self.snapshot_every_n_steps, self.snapshot_path = snapshot_every_n_steps, snapshot_path
        self.verbose = verbose
        self.skipped = 0
        self.rollbacks = 0
        self.report = None
        self.events = []  # one dict per rollback
        self._client = None
        self._tap = None

    # -- state ------------------------------------------------------------------------
    def _tracked(self):
        """Every variable a rollback restores: weights, non-trainable state, optimizer variables."""
        model = self._model
        optimizer_variables = self._tap.without_tap(model.optimizer.variables)
        return list(model.trainable_variables) + list(model.non_trainable_variables) + optimizer_variables

    def _running_loss(self):
        """The epoch's running mean loss so far (Keras's loss tracker), or None before the first step."""
        tracker = _keras_internals.loss_tracker(self._model)
        if tracker is None or len(tracker.variables) != 2:
            return None
        total, count = _backend.read_values(self._model, tracker.variables)
        return float(total / count) if float(count) > 0 else None

    def _loss_ok(self, loss):
        if self._reference_loss is None:
            return True
        return loss is not None and bool(np.isfinite(loss)) and loss <= DIVERGENCE * self._reference_loss

    def _snapshot(self, loss=None):
        """Take a snapshot if everything is finite; returns False (and keeps the old one) otherwise."""
        snapshot = _training_state.Snapshot(self._model, self._variables)
        if not snapshot.all_finite():
            return False
        self._good = snapshot
        self._good_step = self._calls
        if loss is not None and np.isfinite(loss):
            self._reference_loss = float(loss)
        if self.snapshot_path is not None:
            tmp = f"{self.snapshot_path}.tmp.npz"
            np.savez(tmp, **{f"{i:05d}": v for i, v in enumerate(snapshot.values)})
            os.replace(tmp, self.snapshot_path)
        return True

    def _try_snapshot(self, state):
        """Snapshot when the loss has not diverged; roll back if the state is not finite."""
        loss = self._running_loss()
        if not self._loss_ok(loss):
            return
        if not self._snapshot(loss):
            self._rollback("the weights or non-trainable state are not finite", state)

    def _restore(self, keep=()):
        self._good.restore(keep)

    def _all_finite(self, variables):
        return all(np.all(np.isfinite(v)) for v in _backend.read_values(self._model, variables)
                   if np.issubdtype(v.dtype, np.floating))

    # -- fit hooks -----------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        _log_order.run_before_loggers(self)  # its NaN epoch loss must reach ModelCheckpoint, CSVLogger, ...
        _layer_paths.variable_keys(self._model)  # the report names layers by their path in the model
        self.skipped, self.rollbacks, self.report, self.events = 0, 0, None, []
        self._client = _GuardClient()
        client = self._client
        client.abort = lambda: self._abort(client)  # the fit ended by an exception
        self._client.tracker_filter = self._loss_filter()
        self._tap = _tap.attach(self._model, self._client)
        self._variables = self._tracked()
        self._calls, self._seen_skipped, self._epoch, self._checked_at = 0, 0, 0, -1
        self._seen_bad_data, self._data_only = 0, True
        self._requested = None  # fetch of the counters requested at the last check, called at the next one
        self._reference_loss = None  # running loss when the snapshot was taken (the first check's, first)
        self._skipped_before_epoch = 0
        if not self._snapshot():
            self._detach()
            raise ValueError("NaNGuard: the model's weights or optimizer state are already not finite before "
                             "training; there is no good state to return to.")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._skipped_before_epoch = self.skipped

    def _loss_filter(self):
        """Leave skipped batches out of `logs["loss"]` (Keras's running mean would read NaN all epoch).

        In place of the loss tracker's `update_state` while a training step
        runs (the tap puts it there and takes it out): validation and
        `evaluate` see Keras's own.
        """
        tracker = _keras_internals.loss_tracker(self._model)
        if tracker is None:
            return None
        original = type(tracker).update_state.__get__(tracker)
        client = self._client

        def update_state(values, sample_weight=None):
            finite = _backend.all_finite([values])
            if client.tracker_after_apply:
                # Inside a LossScaleOptimizer the tap publishes no decision (JAX:
                # its cond keeps it); the steps it skips are its own and their loss counts, as in Keras.
                decided = self._tap.decision if self._tap is not None else None
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

    def _epoch_loss_or_nan(self, logs):
        """An epoch whose every step was skipped has no loss: NaN, not the empty mean's 0.0.

        Callbacks listed after NaNGuard (and History) see it; one listed before it sees Keras's 0.0.
        """
        tracker = _keras_internals.loss_tracker(self._model)
        if "loss" not in logs or tracker is None or self.skipped == self._skipped_before_epoch:
            return
        (count,) = _backend.read_values(self._model, tracker.variables[1:2])
        if float(count) == 0:
            logs["loss"] = float("nan")

    # Checks run before a step, never after one: a batch-end hook would make
    # Keras give up asynchronous dispatch for every callback (costly on JAX).
    def on_train_batch_begin(self, batch, logs=None):
        if self._client is None:
            return
        if self._calls - max(self._checked_at, 0) >= self.check_every_n_steps:
            self._check(deferred=True)
        self._calls += 1

    def on_epoch_end(self, epoch, logs=None):
        if self._client is None:
            return
        self._check()
        if logs is not None:
            self._epoch_loss_or_nan(logs)
            logs["nan_guard/skipped"] = self.skipped
            logs["nan_guard/rollbacks"] = self.rollbacks

    def _check(self, deferred=False):
        if self._checked_at == self._calls or self._model.stop_training:
            return
        self._checked_at = self._calls
        # In the middle of an epoch a check looks at the counters requested at
        # the previous check (on JAX, copied then without waiting; the counters
        # only grow, so nothing is missed, only seen n steps later); elsewhere
        # and at an epoch's end (fit has waited for its steps) it reads them now.
        fetch = _backend.request_values(self._model, self._client.variables)
        if deferred:
            fetch, self._requested = self._requested or fetch, fetch
        else:
            self._requested = None
        (state,) = fetch()
        if self._reference_loss is None:
            self._reference_loss = self._running_loss()
        self.skipped = int(state[SKIPPED])
        new_bad = self.skipped > self._seen_skipped
        # Were the steps skipped since the last check all on batches holding a NaN/Inf?
        self._data_only = int(state[BAD_DATA]) - self._seen_bad_data == self.skipped - self._seen_skipped
        self._seen_skipped, self._seen_bad_data = self.skipped, int(state[BAD_DATA])
        reason = None
        # Non-finite weights make every later gradient non-finite: they show as
        # a run of skipped steps (checking the weights every step costs a
        # reduction per variable); snapshots check them too.
        if state[MAX_STREAK] >= self.patience:
            reason = f"{int(state[MAX_STREAK])} non-finite steps in a row"
        elif new_bad and not self._all_finite(self._model.non_trainable_variables):
            reason = "a non-finite batch left non-finite non-trainable state (e.g. BatchNormalization statistics)"
        if reason is not None:
            self._rollback(reason, state)
        elif self._calls - self._good_step >= self.snapshot_every_n_steps:
            self._try_snapshot(state)

    def on_train_end(self, logs=None):
        if self._client is None:
            return
        if not self._all_finite(self._variables):
            self._restore()
            warnings.warn("NaNGuard: the weights were not finite at the end of training; restored the last good "
                          "snapshot.", stacklevel=2)
        if self.report is None and (self.skipped or self.rollbacks):
            diverged = any(event["cause"] == "divergence" for event in self.events)
            diverged = diverged or self._seen_bad_data < self.skipped
            self.report = {"cause": "divergence" if diverged else "data", "stopped": False,
                           "skipped": self.skipped, "skipped_on_bad_data": self._seen_bad_data,
                           "rollbacks": self.rollbacks}
        self._detach()

    def _cause(self):
        """"data" when the steps skipped since the last check all had a NaN/Inf in their batch and the
        weights, the state and the running loss are fine; else "divergence".

        A data fault leaves the weights finite and the loss of the other
        batches where it was: a lower learning rate would not help. Finite
        batches whose gradients overflow point at the weights.
        """
        if not self._data_only or not self._all_finite(self._variables):
            return "divergence"
        loss, reference = self._running_loss(), self._reference_loss
        if loss is not None and reference is not None and not (np.isfinite(loss) and loss <= DIVERGENCE * reference):
            return "divergence"
        return "data"

    # -- rollback ------------------------------------------------------------------------
    def _rollback(self, reason, state):
        first = int(state[FIRST_BAD])
        names = self._client.names or []
        event = {
            "batch_calls": self._calls,
            "epoch": self._epoch,
            "step": int(state[LAST_BAD_STEP]),
            "reason": reason,
            "first_nonfinite_gradient": names[first] if 0 <= first < len(names) else None,
            "skipped": self.skipped,
            "cause": self._cause(),
        }
        # The snapshot holds the learning rate and the step counter too: keep the
        # ones in use. The LR is lowered from where it is; the step counter goes
        # on, as in large-model practice (restart from a good state, skip the
        # bad batches), so a schedule moves past a spike instead of replaying it.
        self._restore(keep=[_training_state.innermost_optimizer(self._model.optimizer).iterations,
                            _training_state.learning_rate_variable(self._model.optimizer)])
        reset = self._client.initial_values()[0]
        # The counts as they are now (on JAX `state` may be a check old): none is lost.
        (live,) = _backend.read_values(self._model, self._client.variables)
        reset[SKIPPED], reset[BAD_DATA] = live[SKIPPED], live[BAD_DATA]
        self._client._streak = 0
        _backend.write_values(self._model, self._client.variables, [reset])
        self._requested = None  # counters from before the rollback
        if self.rollbacks >= self.max_retries:
            self._model.stop_training = True
            self.report = dict(event, rollbacks=self.rollbacks, stopped=True)
            warnings.warn(
                f"NaNGuard: {reason} (epoch {event['epoch']}, optimizer step {event['step']}; first non-finite "
                f"gradient in layer {event['first_nonfinite_gradient']!r}). {self.rollbacks} rollback(s) did not "
                "help: training stopped with the model at the last good snapshot. Lower the learning rate "
                "(keras_actkit.find_lr), check the data for NaN/Inf, or clip gradients (clipnorm=).",
                stacklevel=2)
            return
        self.rollbacks += 1
        # A data fault never changes the learning rate; divergence lowers it.
        event["lr_factor"] = self._lower_lr() if event["cause"] == "divergence" else 1.0
        event["rollbacks"] = self.rollbacks
        self.events.append(event)
        lr = (f"multiplied the learning rate by {self.lr_factor:g}" if event["cause"] == "divergence" else
              "kept the learning rate (a data fault: the weights and the loss of the other batches are fine)")
        message = (f"NaNGuard: {reason} (epoch {event['epoch']}, optimizer step {event['step']}; first non-finite "
                   f"gradient in layer {event['first_nonfinite_gradient']!r}): rolled back to the last good "
                   f"snapshot and {lr} (rollback {self.rollbacks} of at most {self.max_retries}).")
        warnings.warn(message, stacklevel=2)
        if self.verbose:
            logger.info(message)

    def _lower_lr(self):
        if self.lr_factor == 1:
            return 1.0
        factor, retrace = _training_state.scale_learning_rate(self._model, self.lr_factor)
        if factor is None:
            warnings.warn("NaNGuard: the optimizer's learning rate is neither a variable nor a schedule; "
                          "it was not lowered.", stacklevel=3)
            return 1.0
        if retrace:  # the factor is a constant of the traced step
            self._tap.functions.clear()
            self._tap._select_function()
        return factor

    def _detach(self):
        self._restore_schedule()
        if self._tap is not None and self._client is not None:
            self._tap.detach(self._client)
        self._tap = None

    def _abort(self, client):
        self._restore_schedule()
        if client is self._client:
            self._client, self._tap = None, None

    def _restore_schedule(self):
        factor = _training_state.unscale_learning_rate(self._model)
        if factor is not None:
            if self._tap is not None:
                self._tap.functions.clear()  # traced with the scaled schedule
            logger.info("NaNGuard: the learning-rate schedule is restored; the factor %g applied during fit only.",
                        factor)
