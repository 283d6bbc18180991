"""Learning-rate suggestions from a range test: small pure functions on arrays.

Every rule takes the learning rates tried (increasing) and the smoothed losses
recorded at them, and returns one learning rate (or None when the curve says
nothing). Non-finite losses, e.g. a NaN tail after divergence, are ignored.
"""

import numpy as np


def smooth(losses, beta=0.98):
    """Exponential moving average with bias correction (as in Adam).

    `s_i = beta * s_{i-1} + (1 - beta) * l_i`, reported as `s_i / (1 - beta^i)`,
    so the first points are not dragged towards zero. A non-finite loss makes
    every later point non-finite: the curve ends there.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"`beta` must lie in [0, 1). Received: beta={beta!r}")
    losses = np.asarray(losses, dtype="float64")
    out = np.empty_like(losses)
    average = 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1.0 - beta) * loss
        out[i] = average / (1.0 - beta ** (i + 1))
    return out


def _finite(lrs, losses):
    lrs, losses = np.asarray(lrs, dtype="float64"), np.asarray(losses, dtype="float64")
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(f"`lrs` and `losses` must be 1-D and of one length. Received shapes {lrs.shape} and {losses.shape}")
    keep = np.isfinite(losses) & np.isfinite(lrs) & (lrs > 0)
    return lrs[keep], losses[keep]


def minimum_over(lrs, losses, divisor=10.0):
    """The LR at the lowest loss, divided by `divisor` (fastai's "minimum"/10)."""
    lrs, losses = _finite(lrs, losses)
    if lrs.size == 0:
        return None
    return float(lrs[np.argmin(losses)] / divisor)


def steepest(lrs, losses):
    """Where the loss falls fastest per decade of LR (pytorch-lr-finder's rule)."""
    lrs, losses = _finite(lrs, losses)
    if lrs.size < 3:
        return None
    slope = np.gradient(losses, np.log10(lrs))
    return float(lrs[np.argmin(slope)])


def valley(lrs, losses):
    """fastai's "valley": the longest run of descending loss, 2/3 of the way down.

    Up to the minimum of the curve, find the longest stretch over which the
    loss keeps decreasing, and return the LR two thirds of the way along it.
    """
    lrs, losses = _finite(lrs, losses)
    n = lrs.size
    if n < 3:
        return None
    end = int(np.argmin(losses)) + 1
    lrs, losses = lrs[:end], losses[:end]
    n = lrs.size
    if n < 2:
        return float(lrs[0])
    # run[i]: length of the longest decreasing chain ending at i (O(n^2), n ~ 100).
    run, start = np.ones(n, dtype=int), np.arange(n)
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[j] + 1 > run[i]:
                run[i], start[i] = run[j] + 1, start[j]
    last = int(np.argmax(run))
    first = int(start[last])
    return float(lrs[first + int(round((last - first) * 2 / 3))])


def flat_edge(lrs, losses, rise=0.1, divisor=4.0):
    """This package's rule: the edge of the flat bottom, backed off by `divisor`.

    Find the largest LR, at or below the minimum, whose smoothed loss is still
    within `rise` of the curve's total drop above the minimum; return it over
    `divisor`. Where the bottom is sharp this lands near minimum/`divisor`;
    where it is a long plateau it stays at the plateau's start, the safe side,
    instead of sliding to the brink of divergence.
    """
    lrs, losses = _finite(lrs, losses)
    if lrs.size == 0:
        return None
    best = int(np.argmin(losses))
    drop = losses[: best + 1].max() - losses[best]
    if drop <= 0:
        return float(lrs[best] / divisor)
    near = np.flatnonzero(losses[: best + 1] <= losses[best] + rise * drop)
    return float(lrs[near[0]] / divisor)


RULES = {
    "minimum/10": minimum_over,
    "steepest": steepest,
    "valley": valley,
    "flat_edge": flat_edge,
}


def all_suggestions(lrs, smoothed_losses):
    """Every rule's suggestion by name."""
    return {name: rule(lrs, smoothed_losses) for name, rule in RULES.items()}
