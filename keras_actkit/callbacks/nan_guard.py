"""NaNGuard: skip non-finite steps in-graph, roll back to the last good state, lower the LR, go on."""

import logging
import os
import warnings

import keras
import numpy as np

from keras_actkit import _backend, _layer_paths, _training_state, _validation
from keras_actkit.callbacks import _log_order, _tap
from keras_actkit.callbacks._nan_guard import counters, decisions, loss
from keras_actkit.callbacks._nan_guard.client import GuardClient
from keras_actkit.callbacks._nan_guard.counters import BAD_DATA, FIRST_BAD, LAST_BAD_STEP, MAX_STREAK, SKIPPED

logger = logging.getLogger("keras_actkit")


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

    def _snapshot(self, running_loss=None):
        """Take a snapshot if everything is finite; returns False (and keeps the old one) otherwise."""
        snapshot = _training_state.Snapshot(self._model, self._variables)
        if not snapshot.all_finite():
            return False
        self._good, self._good_step = snapshot, self._calls
        if running_loss is not None and np.isfinite(running_loss):
            self._reference_loss = float(running_loss)
        if self.snapshot_path is not None:
            tmp = f"{self.snapshot_path}.tmp.npz"
            np.savez(tmp, **{f"{i:05d}": v for i, v in enumerate(snapshot.values)})
            os.replace(tmp, self.snapshot_path)
        return True

    def _try_snapshot(self, state):
        """Take a snapshot when the loss has not diverged; roll back if the state is not finite."""
        running_loss = loss.running_loss(self._model)
        if not decisions.loss_ok(running_loss, self._reference_loss):
            return
        if not self._snapshot(running_loss):
            self._rollback("the weights or non-trainable state are not finite", state)

    # -- fit hooks -----------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        _log_order.run_before_loggers(self)  # its NaN epoch loss must reach ModelCheckpoint, CSVLogger, ...
        _layer_paths.variable_keys(self._model)  # the report names layers by their path in the model
        self.skipped, self.rollbacks, self.report, self.events = 0, 0, None, []
        self._client = client = GuardClient()
        client.abort = lambda: self._abort(client)  # the fit ended by an exception
        client.tracker_filter = loss.loss_filter(self._model, client, lambda: getattr(self._tap, "decision", None))
        self._tap = _tap.attach(self._model, client)
        client.defers_loss = _backend.eager_steps() and self._tap.optimizer is self._model.optimizer \
            and bool(self._model.trainable_variables)
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
            # An epoch whose every step was skipped has no loss: NaN, not the empty mean's 0.0
            # (every callback that reads the epoch logs runs after this one: _log_order).
            if "loss" in logs and self.skipped != self._skipped_before_epoch and loss.no_batch_counted(self._model):
                logs["loss"] = float("nan")
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
            self._reference_loss = loss.running_loss(self._model)
        self.skipped = int(state[SKIPPED])
        new_bad = self.skipped > self._seen_skipped
        self._data_only = decisions.data_only(state, self._seen_skipped, self._seen_bad_data)
        self._seen_skipped, self._seen_bad_data = self.skipped, int(state[BAD_DATA])
        # Non-finite weights make every later gradient non-finite: they show as
        # a run of skipped steps (checking the weights every step costs a
        # reduction per variable); snapshots check them too.
        state_finite = state[MAX_STREAK] >= self.patience or not new_bad or \
            _training_state.all_finite(self._model, self._model.non_trainable_variables)
        reason = decisions.rollback_reason(state[MAX_STREAK], self.patience, state_finite)
        if reason is not None:
            self._rollback(reason, state)
        elif self._calls - self._good_step >= self.snapshot_every_n_steps:
            self._try_snapshot(state)

    def on_train_end(self, logs=None):
        if self._client is None:
            return
        if not _training_state.all_finite(self._model, self._variables):
            self._good.restore()
            warnings.warn("NaNGuard: the weights were not finite at the end of training; restored the last good "
                          "snapshot.", stacklevel=2)
        if self.report is None:
            self.report = decisions.fit_report(self.events, self.skipped, self._seen_bad_data, self.rollbacks)
        self._detach()

    # -- rollback ------------------------------------------------------------------------
    def _event(self, reason, state):
        first = int(state[FIRST_BAD])
        names = self._client.names or []
        state_finite = _training_state.all_finite(self._model, self._variables) if self._data_only else False
        return {
            "batch_calls": self._calls,
            "epoch": self._epoch,
            "step": int(state[LAST_BAD_STEP]),
            "reason": reason,
            "first_nonfinite_gradient": names[first] if 0 <= first < len(names) else None,
            "skipped": self.skipped,
            "cause": decisions.cause(self._data_only, state_finite, loss.running_loss(self._model),
                                     self._reference_loss),
        }

    def _rollback(self, reason, state):
        event = self._event(reason, state)
        # The snapshot holds the learning rate and the step counter too: keep the
        # ones in use. The LR is lowered from where it is; the step counter goes
        # on, as in large-model practice (restart from a good state, skip the
        # bad batches), so a schedule moves past a spike instead of replaying it.
        self._good.restore(keep=[_training_state.innermost_optimizer(self._model.optimizer).iterations,
                                 _training_state.learning_rate_variable(self._model.optimizer)])
        # The counts as they are now (on JAX `state` may be a check old): none is lost.
        (live,) = _backend.read_values(self._model, self._client.variables)
        self._client.streak = 0
        _backend.write_values(self._model, self._client.variables, [counters.after_rollback(live)])
        self._requested = None  # counters from before the rollback
        if self.rollbacks >= self.max_retries:
            self._model.stop_training = True
            self.report = dict(event, rollbacks=self.rollbacks, stopped=True)
            warnings.warn(decisions.stopped_message(event, self.rollbacks), stacklevel=2)
            return
        self.rollbacks += 1
        # A data fault never changes the learning rate; divergence lowers it.
        event["lr_factor"] = self._lower_lr() if event["cause"] == "divergence" else 1.0
        event["rollbacks"] = self.rollbacks
        self.events.append(event)
        message = decisions.rollback_message(event, self.lr_factor, self.max_retries)
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
            self._tap.retrace()
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
                self._tap.retrace(install=False)  # traced with the scaled schedule
            logger.info("NaNGuard: the learning-rate schedule is restored; the factor %g applied during fit only.",
                        factor)
