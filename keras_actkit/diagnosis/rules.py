"""The dynamic rules: pure functions over a trial run's record.

Each rule takes a `TrialRecord` (plain numbers and arrays, what the kit's
callbacks measured) and returns a `Problem` or None. The thresholds and where
they come from are argued in docs/guides/diagnose.md; in short:

- a gradient or activation symptom counts only while the loss is *stalled*
  (AUTOTRAINER's monitor.py reports its gradient issues only when training
  has not converged): a healthy run that learns is never blamed for what its
  gradients look like;
- the symptom thresholds are the anchors' own (AUTOTRAINER's monitor.py:
  first/last gradient ratio 1e-3, dead share 0.7, oscillation count 0.2 of
  the epochs; DeepDiagnosis's callbacks.py: saturated share 0.5).
"""

import numpy as np

from keras_actkit.diagnosis.problems import Problem
from keras_actkit.diagnosis.record import (  # noqa: F401  (TrialRecord and the gates: part of this module's API)
    HALF, JUDGMENT_POINT, NO_PROGRESS, TrialRecord, diverged, failing, no_progress, progress, reference, series,
    stalled)

# Vanishing: RMS gradient of the first layer below 1e-3 x the last layer's
# (AUTOTRAINER beta_1 = 1e-3; GradientNormLogger's own default).
VANISHING_RATIO = 1e-3
# Exploding: the global gradient norm two orders of magnitude above its start.
EXPLODING_GROWTH = 100.0
# Dead ReLU: >= 70% of a layer's units dead (AUTOTRAINER gamma = 0.7,
# DeepDiagnosis threshold_layer_1 = 0.7).
DEAD_SHARE = 0.7
# Saturated: >= 50% of a hidden layer's units saturated (DeepDiagnosis threshold_layer = 0.5).
SATURATED_SHARE = 0.5
# Oscillating: rises of the epoch loss by >= 2% on at least 20% of the epochs
# (AUTOTRAINER eta = 0.2), at least 2 of them, nothing gained from the first
# half of the epochs to the second, and less than half of the reference loss removed.
RISE = 0.02
RISE_SHARE = 0.2


def non_finite(record):
    losses = series(record)
    bad = np.flatnonzero(~np.isfinite(losses))
    norms = np.asarray([] if record.grad_global is None else record.grad_global, "float64")
    steps = int(np.count_nonzero(~np.isfinite(norms)))
    if not steps and not bad.size:
        return None
    parts = []
    if steps:
        parts.append(f"{steps} of {len(norms)} recorded step(s) had non-finite gradients")
    if bad.size:
        parts.append(f"the loss was {losses[bad[0]]} at epoch {int(bad[0])}")
    return Problem("non_finite", (), "; ".join(parts), _lower_lr_text(record) + ", and clip gradients (clipnorm=1.0)")


def _rms(record):
    return record.grad_norms / np.sqrt(np.maximum(record.grad_sizes, 1.0))


def vanishing_gradient(record):
    if record.grad_norms is None or len(record.grad_norms) == 0 or len(record.grad_layers) < 2:
        return None
    if not failing(record):
        return None
    rms = np.median(_rms(record), axis=0)
    last = rms[-1]
    if not (np.isfinite(rms).all() and last > 0):
        return None
    ratio = rms / last
    if ratio[0] >= VANISHING_RATIO:
        return None
    layers = [name for name, r in zip(record.grad_layers[:-1], ratio[:-1]) if r < VANISHING_RATIO]
    return Problem(
        "vanishing_gradient", layers,
        f"RMS gradient of {record.grad_layers[0]} is {ratio[0]:.2g} x that of {record.grad_layers[-1]} "
        f"(median of {len(record.grad_norms)} steps; rule < {VANISHING_RATIO:g}) while the loss does not fall",
        "use ReLU-family activations in the hidden layers with He initialisation "
        "(or SELU with LeCun normal), or add BatchNormalization")


def exploding_gradient(record):
    norms = record.grad_global
    if norms is None or len(norms) < 4:
        return None
    if not (failing(record) or diverged(record)):
        return None
    start = float(np.median(norms[: max(3, len(norms) // 10)]))
    late = norms[len(norms) // 2:]
    peak = float(np.max(np.where(np.isfinite(late), late, np.inf)))
    if not (start > 0 and peak > EXPLODING_GROWTH * start):
        return None
    last = record.grad_norms[-1] / np.maximum(record.grad_norms[0], 1e-30)
    order = np.argsort(-np.nan_to_num(last, nan=np.inf))[:3]
    layers = [record.grad_layers[i] for i in order]
    return Problem("exploding_gradient", layers,
                   f"global gradient norm grew from {start:.3g} to {peak:.3g} (> {EXPLODING_GROWTH:g} x its start) "
                   "while the loss did not fall",
                   "clip gradients (clipnorm=1.0) and " + _lower_lr_text(record))


def _activation_rule(record, fractions, share, kind, prescription):
    if not fractions or not failing(record):
        return None
    hit = {name: values[-1] for name, values in fractions.items()
           if values and name not in record.output_layers and values[-1] >= share}
    if not hit:
        return None
    text = ", ".join(f"{name} {value:.0%}" for name, value in hit.items())
    word = "dead" if kind == "dead_relu" else "saturated"
    return Problem(kind, list(hit), f"{word} units: {text} (rule >= {share:.0%}) while the loss does not fall",
                   prescription)


def dead_relu(record):
    return _activation_rule(record, record.dead, DEAD_SHARE, "dead_relu",
                            "use a leaky activation (leaky_relu, keras_actkit.layers.LeakyReLU6) with He "
                            "initialisation, and/or a lower learning rate")


def saturated_activation(record):
    return _activation_rule(record, record.saturated, SATURATED_SHARE, "saturated_activation",
                            "replace the sigmoid/tanh hidden activations with ReLU and re-initialise with He, "
                            "or add BatchNormalization before them")


def lr_too_high(record):
    if not diverged(record):
        return None
    return Problem("lr_too_high", (), f"the loss rose from {record.initial_loss:.4g} to {record.loss[-1]:.4g}",
                   _lower_lr_text(record))


def oscillating_loss(record):
    """Up and down without getting anywhere: frequent rises, no gain over the second half, loss high.

    Judged during the run on the epochs so far, from 30% of the budget (at
    least 4 epochs) on, as AUTOTRAINER's `loss_issue` judges its unstable loss
    from the judgment point on the history so far. The second half must have
    gained nothing at all on the first: a converged but noisy plateau edges
    down by a few percent from half to half, and which side of any small
    allowance it lands on depends on the shuffling seed.
    """
    loss = np.asarray(record.loss, "float64")
    if len(loss) < max(4, JUDGMENT_POINT * record.epochs) or not np.isfinite(loss).all() \
            or progress(record) >= HALF:
        return None
    half = len(loss) // 2
    gain = (loss[:half].min() - loss[half:].min()) / abs(loss[:half].min())
    rises = np.diff(loss) > RISE * loss[:-1]
    count = int(rises.sum())
    if gain > 0 or count < max(2, RISE_SHARE * len(loss)):
        return None
    return Problem("oscillating_loss", (),
                   f"the epoch loss rose by more than {RISE:.0%} on {count} of {len(loss) - 1} epochs, the best of "
                   f"their second half is {-gain:.1%} above the first half's, and it stays at {loss[-1]:.3g} "
                   f"(progress {progress(record):.0%} of {reference(record):.3g})",
                   _lower_lr_text(record) + " (or use a larger batch)")


def not_learning(record):
    if not no_progress(record):
        return None
    return Problem("not_learning", (),
                   f"the loss fell by {progress(record):.1%} of its start in {len(record.loss)} epochs "
                   f"(rule < {NO_PROGRESS:.0%})",
                   "check the labels and the output/loss pair; try a larger learning rate "
                   "(keras_actkit.find_lr) or Adam")


def lr_too_low(record):
    """Not learning, but every epoch a little better: the steps are too small."""
    if not_learning(record) is None:
        return None
    if not (np.diff(series(record)) < 0).all():
        return None
    target = record.lr_suggestion
    raise_to = f"raise the learning rate to {target:.2g}, the range test's suggestion" if target and record.lr \
        and target > record.lr else "raise the learning rate 10x"
    ratio = ""
    if record.update_ratios is not None and len(record.update_ratios):
        ratio = f"; median update ratio |dw|/|w| {float(np.nanmedian(record.update_ratios)):.2g}"
    return Problem("lr_too_low", (),
                   f"the loss fell on every epoch but only by {progress(record):.1%} of its start{ratio}", raise_to)


def _lower_lr_text(record):
    if record.lr_suggestion and record.lr and record.lr_suggestion < record.lr:
        return f"lower the learning rate to {record.lr_suggestion:.2g}, the range test's suggestion"
    if record.lr:
        return f"lower the learning rate to {record.lr / 10:.2g} (a tenth)"
    return "lower the learning rate 10x"


# Every rule, root causes first (the report's order). Each is judged at every
# epoch's end on the epochs so far; a finding that holds on consecutive checks
# stops the trial (`trial._Watch`).
RULES = (non_finite, exploding_gradient, dead_relu, saturated_activation, vanishing_gradient, lr_too_high,
         oscillating_loss, lr_too_low, not_learning)
# What each finding already explains (left out of the report when the finding is there).
_EXPLAINS = {
    "non_finite": {"lr_too_high", "oscillating_loss", "not_learning", "lr_too_low"},
    "exploding_gradient": {"oscillating_loss", "not_learning", "lr_too_low"},
    "dead_relu": {"vanishing_gradient", "oscillating_loss", "not_learning", "lr_too_low"},
    "saturated_activation": {"vanishing_gradient", "oscillating_loss", "not_learning", "lr_too_low"},
    "vanishing_gradient": {"oscillating_loss", "not_learning", "lr_too_low"},
    "lr_too_high": {"oscillating_loss", "not_learning", "lr_too_low"},
    "lr_too_low": {"not_learning"},
}


def evaluate(record, rules=RULES):
    """Every rule's finding on `record`, root causes first; symptoms an earlier finding explains left out."""
    found = [p for p in (rule(record) for rule in rules) if p is not None]
    explained = set()
    for problem in found:
        explained |= _EXPLAINS.get(problem.kind, set())
    return [p for p in found if p.kind not in explained]
