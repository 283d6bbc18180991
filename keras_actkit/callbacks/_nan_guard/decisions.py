"""What the guard decides from the numbers it reads: pure functions over floats and its counters.

Example:
```python
loss_ok(4.0, reference=0.3)                     # False: 10x the loss at the last snapshot
rollback_reason(max_streak=3, patience=3)       # "3 non-finite steps in a row"
cause(data_only=True, state_finite=True, loss=0.4, reference=0.3)   # "data"
```
"""

import math

from keras_actkit.callbacks._nan_guard.counters import BAD_DATA, SKIPPED

# A snapshot is refused when the loss has grown this many times since the last
# one: finite weights on their way to overflow are not a good state to return to.
DIVERGENCE = 10.0


def loss_ok(loss, reference):
    """Whether the running `loss` allows a snapshot: finite and at most DIVERGENCE x the `reference`
    (the loss at the last snapshot); always, before there is a reference."""
    if reference is None:
        return True
    return loss is not None and math.isfinite(loss) and loss <= DIVERGENCE * reference


def data_only(state, seen_skipped, seen_bad_data):
    """Whether every step skipped since the last check (counts `seen_*` then) had a NaN/Inf in its batch."""
    return int(state[BAD_DATA]) - seen_bad_data == int(state[SKIPPED]) - seen_skipped


def rollback_reason(max_streak, patience, state_finite=True):
    """Why the guard rolls back now, or None: a run of `patience` non-finite steps, or non-finite
    non-trainable state (`state_finite` False) left by a skipped batch."""
    if max_streak >= patience:
        return f"{int(max_streak)} non-finite steps in a row"
    if not state_finite:
        return "a non-finite batch left non-finite non-trainable state (e.g. BatchNormalization statistics)"
    return None


def cause(data_only, state_finite, loss, reference):
    """"data" when the steps skipped since the last check all had a NaN/Inf in their batch and the
    weights and state (`state_finite`) and the running `loss` are fine; else "divergence".

    A data fault leaves the weights finite and the loss of the other batches
    where it was: a lower learning rate would not help. Finite batches whose
    gradients overflow point at the weights.
    """
    if not data_only or not state_finite:
        return "divergence"
    if loss is not None and reference is not None and not (math.isfinite(loss) and loss <= DIVERGENCE * reference):
        return "divergence"
    return "data"


def fit_report(events, skipped, skipped_on_bad_data, rollbacks):
    """`NaNGuard.report` after a fit that was not stopped: None when nothing was skipped or rolled back."""
    if not skipped and not rollbacks:
        return None
    diverged = any(event["cause"] == "divergence" for event in events) or skipped_on_bad_data < skipped
    return {"cause": "divergence" if diverged else "data", "stopped": False, "skipped": skipped,
            "skipped_on_bad_data": skipped_on_bad_data, "rollbacks": rollbacks}


def _where(event):
    return (f"epoch {event['epoch']}, optimizer step {event['step']}; first non-finite gradient in layer "
            f"{event['first_nonfinite_gradient']!r}")


def rollback_message(event, lr_factor, max_retries):
    """The warning for a rollback `event` (its `reason`, `cause`, `rollbacks`, where it happened)."""
    lr = (f"multiplied the learning rate by {lr_factor:g}" if event["cause"] == "divergence" else
          "kept the learning rate (a data fault: the weights and the loss of the other batches are fine)")
    return (f"NaNGuard: {event['reason']} ({_where(event)}): rolled back to the last good snapshot and {lr} "
            f"(rollback {event['rollbacks']} of at most {max_retries}).")


def stopped_message(event, rollbacks):
    """The warning when `rollbacks` rollbacks did not help and training stops."""
    return (f"NaNGuard: {event['reason']} ({_where(event)}). {rollbacks} rollback(s) did not help: training "
            "stopped with the model at the last good snapshot. Lower the learning rate (keras_actkit.find_lr), "
            "check the data for NaN/Inf, or clip gradients (clipnorm=).")
