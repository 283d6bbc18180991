"""A trial run's record, and the predicates on its loss curve that gate the rules.

`TrialRecord` holds what the kit's callbacks measured as plain numbers;
`progress`, `stalled`, `no_progress`, `failing` and `diverged` say how the
loss is doing, pure functions tested on synthetic records. The thresholds are
argued in docs/guides/diagnose.md.
"""

import dataclasses
import math

import numpy as np

# Stalled: the loss has not fallen by 1% over the last k epochs (k = 10% of
# the budget, at least 2) and is not yet half its starting value.
PLATEAU = 0.01
PLATEAU_SHARE = 0.1
HALF = 0.5
# Not learning: the loss fell by less than 5% of its start over the run,
# judged after 30% of the budget at the earliest (AUTOTRAINER's judgment point).
NO_PROGRESS = 0.05
JUDGMENT_POINT = 0.3
# Diverged: the loss ended 10% above where it started.
DIVERGED = 1.1


@dataclasses.dataclass
class TrialRecord:
    """What one trial run measured, as plain numbers (see `trial.run_trial`)."""

    epochs: int  # the budget
    steps_per_epoch: int
    initial_loss: float
    loss: np.ndarray  # per completed epoch
    val_loss: np.ndarray = None
    lr: float = None
    grad_layers: list = dataclasses.field(default_factory=list)
    grad_sizes: np.ndarray = None  # parameters per layer
    grad_steps: np.ndarray = None
    grad_global: np.ndarray = None
    grad_norms: np.ndarray = None  # (records, layers)
    update_ratios: np.ndarray = None
    dead: dict = dataclasses.field(default_factory=dict)  # layer -> fraction per check
    saturated: dict = dataclasses.field(default_factory=dict)
    output_layers: tuple = ()
    lr_suggestion: float = None
    chance_loss: float = None  # the loss of guessing (cross-entropies: log of the class count), if known


def series(record):
    """The loss before training, then after each completed epoch."""
    return np.concatenate([[record.initial_loss], np.asarray(record.loss, "float64")])


def reference(record):
    """The loss progress is measured from: the starting loss, or the loss of guessing when that is lower.

    A cross-entropy's loss of guessing (log of the class count) is what a model
    that learnt nothing about the inputs reaches by fitting its output bias; a
    start far above it (large initial logits, unscaled inputs) would otherwise
    count that bias fit as progress.
    """
    if record.chance_loss and np.isfinite(record.initial_loss):
        return min(record.initial_loss, record.chance_loss)
    return record.initial_loss


def progress(record):
    """Share of the reference loss the run has removed so far (best epoch)."""
    curve = series(record)
    finite = curve[np.isfinite(curve)]
    start = reference(record)
    if len(curve) < 2 or not finite.size or not np.isfinite(start) or start == 0:
        return 0.0
    return float((start - finite[1:].min()) / abs(start)) if finite.size > 1 else 0.0


def stalled(record):
    """True while the loss is neither falling nor low.

    After k epochs (10% of the budget, at least 2): no 1% gain over the last
    k epochs, or (cross-entropies) still no better than guessing; and less
    than half of the reference loss removed.
    """
    curve = series(record)
    k = max(2, math.ceil(PLATEAU_SHARE * record.epochs))
    if len(curve) < k + 1 or not np.isfinite(curve).all():
        return False
    before, window = curve[-k - 1], curve[-k:]
    gain = (before - window.min()) / abs(before) if before else 0.0
    guessing = bool(record.chance_loss and window.min() > (1 - PLATEAU) * record.chance_loss)
    return bool((gain < PLATEAU or guessing) and progress(record) < HALF)


def projected_progress(record):
    """`progress` at the end of the budget if the last two epochs' mean fall went on."""
    curve = series(record)
    start, left = reference(record), record.epochs - len(record.loss)
    if len(curve) < 3 or not np.isfinite(curve[-3:]).all() or not np.isfinite(start) or start == 0 or left <= 0:
        return progress(record)
    fall = max(0.0, (curve[-3] - curve[-1]) / 2)
    return progress(record) + fall * left / abs(start)


def no_progress(record):
    """True once 30% of the budget is spent with less than 5% of the starting loss removed, and the
    last epochs' fall, kept up to the end of the budget, would not remove 5% either."""
    return bool(len(record.loss) >= JUDGMENT_POINT * record.epochs and projected_progress(record) < NO_PROGRESS)


def failing(record):
    """The gate of the gradient and activation rules: stalled now, or no progress over the run."""
    return stalled(record) or no_progress(record)


def diverged(record):
    curve = series(record)
    return bool(len(curve) > 1 and np.isfinite(curve).all() and curve[-1] > DIVERGED * curve[0])
