"""The repair search: the fixes tried in turn, when one is given up, when the search stops.

`diagnose(..., repair=True)` tries the prescriptions of the problems found
(`repairs.plan`: root causes first, cheapest and most likely first), each on
a fresh copy for the user's budget. Two decisions keep that near a few plain
fits, both pure functions of the runs' histories (tested on synthetic ones):

- `behind`: an attempt is given up at an epoch's end once, from the
  judgment point (30% of the budget, AUTOTRAINER's) on, its best score so far
  is below the median of the running averages of the runs before it (the
  original run and the attempts tried) over as many epochs: the median
  stopping rule of Google Vizier (Golovin et al., KDD 2017). Such a run has
  not yet beaten what came before at the same point of training.
- `solved`: the search stops at the first attempt whose run showed no
  problem and removed at least half of the reference loss (the line the
  rules draw between failing and learning): the later fixes in the plan are
  the less likely ones. AUTOTRAINER stops at the first fix after which its
  monitor finds no problem; a healthy run that has not yet learned much (a
  slow one) does not stop the search here.
"""

import numpy as np

from keras_actkit.diagnosis import repairs
from keras_actkit.diagnosis.problems import Attempt, score_of
from keras_actkit.diagnosis.record import HALF, JUDGMENT_POINT, progress
from keras_actkit.diagnosis.static import static_problems


def scores(history, monitor):
    """The run's score after each epoch, higher is better (a loss negated; non-finite -> -inf)."""
    values = np.asarray(history.get(monitor, []), "float64")
    values = -values if monitor.endswith("loss") else values
    return np.where(np.isfinite(values), values, -np.inf)


def behind(current, references, epochs):
    """Whether a run should be given up: the median stopping rule, from the judgment point on.

    Args:
        current: The run's scores so far, one per epoch (higher is better).
        references: The scores per epoch of the runs before it (each possibly
            shorter: a run stopped early counts with the epochs it has).
        epochs: The budget of each run, in epochs.

    Returns:
        True when at least max(2, 30% of `epochs`) epochs are done and the best
        of `current` is below the median over `references` of their mean
        score over the first `len(current)` epochs.

    Example:
    ```python
    behind([0.5, 0.5, 0.5], [[0.6, 0.7, 0.8]], epochs=10)  # True: 0.5 < 0.7
    ```
    """
    current = np.asarray(current, "float64")
    n = len(current)
    averages = [float(np.mean(np.asarray(r, "float64")[:n])) for r in references if len(r)]
    if n < max(2, JUDGMENT_POINT * epochs) or not averages:
        return False
    return bool(np.max(current) < np.median(averages))


def solved(record, problems):
    """Whether an attempt ends the search: no problem left and half of the reference loss removed."""
    return not problems and progress(record) >= HALF


class GiveUp:
    """The check a trial runs at each epoch's end: `behind` the runs before it? Remembers when it first was."""

    def __init__(self, references, monitor, epochs):
        self.references, self.monitor, self.epochs = list(references), monitor, epochs
        self.epoch = None

    def __call__(self, history):
        current = scores(history, self.monitor)
        if self.epoch is None and behind(current, self.references, self.epochs):
            self.epoch = len(current)
        return self.epoch is not None


def search(result, model, x, y, settings, limit, findings):
    """Try the fixes for `result.problems` on `model`; fill `result.attempts` and the repair kept.

    `findings(model, x, y, settings, notes, static, give_up)` is the trial
    run of `diagnose` (its problems, history and record).
    """
    context = {"x": x, "lr_suggestion": result.record.lr_suggestion,
               "culprits": {p.kind: list(p.layers) for p in result.problems}}
    references = [scores(result.history, result.monitor)]
    best = None
    # `limit` counts the attempts run: a fix with nothing to change in this model (an activation swap
    # in a network without that activation) leaves its place to the next one in the plan.
    for name in repairs.plan(result.problems, None):
        if len(result.attempts) >= limit:
            break
        built = repairs.REPAIRS[name](model, context)
        if built is None:
            continue
        new, words, code = built
        give_up = GiveUp(references, result.monitor, settings["epochs"])
        static = static_problems(new)
        found, history, record = findings(new, x, y, settings, [], static, give_up)
        attempt = Attempt(name, words, code, score_of(history, result.monitor),
                          tuple(p.kind for p in static + found), new, record, give_up.epoch)
        result.attempts.append(attempt)
        references.append(scores(history, result.monitor))
        if attempt.score > result.score and (best is None or attempt.score > best.score):
            best = attempt
        if attempt.score > result.score and solved(record, attempt.problems):
            break
    if best is not None:
        result.repaired_model = best.model
        result.repair = {"name": best.name, "words": best.words, "code": best.code, "score": best.score}
