"""Learning-rate suggestions from a range test: small pure functions on arrays.

Every rule takes the learning rates tried (increasing) and the raw per-batch
losses recorded at them, and returns one learning rate (or None when the
curve says nothing). Each rule smooths the losses its own way (the peers'
rules exactly as their libraries do). Non-finite losses, e.g. a NaN tail
after divergence, end the curve.
"""

import numpy as np

from keras_actkit import _validation


def smooth(losses, beta=0.9):
    """Exponential moving average with bias correction (as in Adam).

    `s_i = beta * s_{i-1} + (1 - beta) * l_i`, reported as `s_i / (1 - beta^i)`,
    so the first points are not dragged towards zero. A non-finite loss makes
    every later point non-finite: the curve ends there.
    """
    beta = _validation.number("beta", beta)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"`beta` must lie in [0, 1). Received: beta={beta!r}")
    losses = np.asarray(losses, dtype="float64")
    out = np.empty_like(losses)
    average = 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1.0 - beta) * loss
        out[i] = average / (1.0 - beta ** (i + 1))
    return out


def running_median(lrs, losses, half_width=0.5):
    """Median of the losses within `half_width` decades of LR around each point.

    Centred, so it does not lag behind the LR the way an exponential average
    does (at 100 steps over 8 decades, beta=0.98 lags by about 4 decades), and
    a median, so one exploding batch does not drag the curve.
    """
    half_width = _validation.number("half_width", half_width, minimum=0.0)
    lrs, losses = np.asarray(lrs, dtype="float64"), np.asarray(losses, dtype="float64")
    x = np.log10(lrs)
    low = np.searchsorted(x, x - half_width - 1e-12, side="left")
    high = np.searchsorted(x, x + half_width + 1e-12, side="right")
    return np.array([np.median(losses[a:b]) for a, b in zip(low, high)])


def _finite(lrs, losses):
    lrs, losses = np.asarray(lrs, dtype="float64"), np.asarray(losses, dtype="float64")
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(f"`lrs` and `losses` must be 1-D and of one length. Received shapes {lrs.shape} and {losses.shape}")
    if not np.all(np.isfinite(lrs) & (lrs > 0)) or np.any(np.diff(lrs) <= 0):
        raise ValueError("`lrs` must be finite, > 0 and strictly increasing (the ladder of a range test); "
                         f"received lrs={lrs!r}.")
    bad = np.flatnonzero(~np.isfinite(losses))
    end = bad[0] if bad.size else lrs.size  # the curve ends at its first non-finite loss
    return lrs[:end], losses[:end]


def _trim(lrs, losses, skip_start, skip_end):
    stop = lrs.size - skip_end
    return lrs[skip_start:stop], losses[skip_start:stop]


def minimum_over(lrs, losses, divisor=10.0, beta=0.98):
    """fastai's "minimum": the LR at the lowest smoothed loss, over `divisor`.

    As fastai computes it: bias-corrected average with `beta=0.98`, the first
    10% and last 5 points dropped.
    """
    divisor = _validation.number("divisor", divisor, minimum=0.0, min_inclusive=False)
    lrs, losses = _finite(lrs, losses)
    lrs, smoothed = _trim(lrs, smooth(losses, beta), lrs.size // 10, 5)
    if lrs.size == 0:
        return None
    return float(lrs[np.argmin(smoothed)] / divisor)


def steepest(lrs, losses, beta=0.95):
    """pytorch-lr-finder's default: where the smoothed loss falls fastest per
    step (per decade of LR on an exponential ladder); first 10 and last 5
    points dropped, as there."""
    lrs, losses = _finite(lrs, losses)
    lrs, smoothed = _trim(lrs, smooth(losses, beta), 10, 5)
    if lrs.size < 3:
        return None
    return float(lrs[np.argmin(np.gradient(smoothed))])


def valley(lrs, losses, beta=0.98):
    """fastai's default "valley": the longest run of falling smoothed loss,
    taken at 2/3 of its length (same smoothing and trimming as `minimum_over`).
    """
    lrs, losses = _finite(lrs, losses)
    lrs, smoothed = _trim(lrs, smooth(losses, beta), lrs.size // 10, 5)
    n = lrs.size
    if n < 3:
        return None
    # run[i]: length of the longest falling chain ending at i (O(n^2), n ~ 100).
    run, start = np.ones(n, dtype=int), np.arange(n)
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and run[j] + 1 > run[i]:
                run[i], start[i] = run[j] + 1, start[j]
    last = int(np.argmax(run))
    first = int(start[last])
    return float(lrs[first + int(round((last - first) * 2 / 3))])


def onset(lrs, losses, fraction=0.2, half_width=0.5):
    """This package's rule: where the loss has made `fraction` of its fall.

    Smith's lower bound ("the LR at which the loss starts to fall") made
    exact: on the centred running median (`half_width` decades), take the
    starting level (median of the first tenth) and the lowest point; return
    the first LR whose loss is `fraction` of the way down. The range test's
    minimum sits where a few steps of a growing LR still pay off, at the brink
    of divergence; a whole training run at a fixed LR wants the LR that
    already learns steadily, where the fall begins.
    Returns None when the loss never falls.
    """
    fraction = _validation.number("fraction", fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`fraction` must lie in (0, 1). Received: fraction={fraction!r}")
    lrs, losses = _finite(lrs, losses)
    if lrs.size < 3:
        return None
    median = running_median(lrs, losses, half_width)
    head = max(lrs.size // 10, 3)
    start = float(np.median(losses[:head]))
    lowest = int(np.argmin(median))
    drop = start - median[lowest]
    if lowest < head or not drop > 0:  # the loss never fell below where it started
        return None
    return float(lrs[np.flatnonzero(median[: lowest + 1] <= start - fraction * drop)[0]])


def onset_or_valley(lrs, losses):
    """This package's default: the larger of `onset` and `valley`.

    Both land below the range test's minimum, and each errs low in its own
    way: `onset` when an easy task's loss already falls at tiny LRs through
    many small steps, `valley` when the averaging lag stretches the valley
    back towards the start. The larger of the two is the one not fooled.
    Measured, not derived: see `benchmarks/lr_finder_quality.py`.
    Returns None when the loss never fell (flat or rising curve): there is
    nothing to trust then.
    """
    first = onset(lrs, losses)
    if first is None:
        return None
    second = valley(lrs, losses)
    return first if second is None else max(first, second)


def rose(lrs, losses, fraction=0.5, tolerance=0.1, half_width=0.5):
    """Whether the loss clearly rose after its lowest point: the test went past the best LR.

    On the centred running median (`half_width` decades), the rise from the
    lowest point to the end must reach `fraction` of the larger of the fall
    before it (from the median of the first tenth) and `tolerance` times the
    lowest loss's magnitude, so noise on a flat curve is no rise. A range test
    stopped by its step budget whose curve rose has bracketed the minimum,
    divergence threshold reached or not.
    """
    fraction = _validation.number("fraction", fraction, minimum=0.0, min_inclusive=False)
    tolerance = _validation.number("tolerance", tolerance, minimum=0.0)
    lrs, losses = _finite(lrs, losses)
    if lrs.size < 3:
        return False
    median = running_median(lrs, losses, half_width)
    lowest = float(np.min(median))
    start = float(np.median(losses[: max(lrs.size // 10, 3)]))
    rise = float(median[-1]) - lowest
    return bool(rise > 0 and rise >= fraction * max(start - lowest, tolerance * abs(lowest)))


RULES = {
    "max(onset, valley)": onset_or_valley,
    "onset": onset,
    "minimum/10": minimum_over,
    "valley": valley,
    "steepest": steepest,
}


def all_suggestions(lrs, losses):
    """Every rule's suggestion by name, from the raw per-batch losses."""
    return {name: rule(lrs, losses) for name, rule in RULES.items()}
