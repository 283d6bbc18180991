"""The guard's counters: one float32 vector (one variable, so one read is consistent).

`BAD_DATA` counts the skipped steps whose batch held a NaN/Inf (a data fault, not divergence).
"""

import keras
import numpy as np

SKIPPED, STREAK, LAST_BAD_STEP, FIRST_BAD, MAX_STREAK, BAD_DATA = range(6)
SIZE = 6
# On a finite step only the streak changes (to 0): one multiplication.
KEEP_ON_FINITE = np.array([1, 0, 1, 1, 1, 1], "float32")


def initial():
    """The counters before any step: nothing skipped, no bad step, no bad layer (-1)."""
    values = np.zeros(SIZE, "float32")
    values[[LAST_BAD_STEP, FIRST_BAD]] = -1.0
    return values


def counted(state, streak, bad=None):
    """The counters after one step, on the host (eager steps).

    Args:
        state: The counters before the step.
        streak: The run of non-finite steps in a row, this one included (0 after a finite step).
        bad: For a skipped step, `(step, first non-finite gradient, whether the batch held a NaN/Inf)`;
            None for a finite one.
    """
    state = np.array(state, "float32")
    if bad is not None:
        step, first, bad_data = bad
        state[SKIPPED] += 1
        state[BAD_DATA] += bool(bad_data)
        state[LAST_BAD_STEP], state[FIRST_BAD] = step, first
    state[STREAK] = streak
    state[MAX_STREAK] = max(state[MAX_STREAK], streak)
    return state


def traced_bad_state(old, step, first, data_finite):
    """In-graph: the counters after a skipped step, from `old` (a tensor) and the step's tensors."""
    ops = keras.ops
    streak = old[STREAK] + 1.0
    return ops.stack([
        old[SKIPPED] + 1.0,
        streak,
        ops.cast(step, "float32"),
        ops.cast(first, "float32"),
        ops.maximum(old[MAX_STREAK], streak),  # the host checks every few steps: keep the longest run
        old[BAD_DATA] + 1.0 - ops.cast(data_finite, "float32"),
    ])


def after_rollback(live):
    """The counters to go on with after a rollback: the totals kept (none is lost), the run ended."""
    reset = initial()
    reset[SKIPPED], reset[BAD_DATA] = live[SKIPPED], live[BAD_DATA]
    return reset
