"""What `diagnose` and `check_model` return: `Problem`, `Attempt`, `Diagnosis`."""

import dataclasses

import numpy as np

KINDS = (
    "non_finite", "exploding_gradient", "vanishing_gradient", "dead_relu", "saturated_activation",
    "oscillating_loss", "not_learning", "lr_too_high", "lr_too_low", "bad_initialization",
    "output_loss_mismatch", "unscaled_input", "missing_nonlinearity", "hidden_softmax",
)


@dataclasses.dataclass
class Problem:
    """One thing wrong with a model or its training run.

    Attributes:
        kind: One of `KINDS` (e.g. `"vanishing_gradient"`).
        layers: Names of the culprit layers (paths in the model), possibly empty.
        evidence: The measured number or fact that shows it, in words.
        prescription: What to change, concretely.
        step: Optimizer step at which the trial run was sure of it (None
            for problems found without training).
        epoch: Epochs completed when the trial run was sure of it (None
            for problems found without training).
        fraction: `epoch / epochs`, the share of the training budget spent
            before the problem was certain (None without training).
    """

    kind: str
    layers: tuple
    evidence: str
    prescription: str
    step: int = None
    epoch: int = None
    fraction: float = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}; received kind={self.kind!r}.")
        self.layers = tuple(self.layers)


@dataclasses.dataclass
class Attempt:
    """One repair tried: what changed, and how the run went with it.

    Attributes:
        name: Short name of the fix (e.g. `"lower_lr"`).
        words: What was changed, in words.
        code: The code a user would write to make the same change.
        score: The run's validation score (higher is better).
        problems: Kinds of the problems the repaired run still showed.
        model: The model trained with the fix.
        record: Its trial run's measurements (a `TrialRecord`).
        given_up: The epoch at which the run was given up, behind the runs
            before it (see `search.behind`), or None.
    """

    name: str
    words: str
    code: str
    score: float
    problems: tuple
    model: object = dataclasses.field(default=None, repr=False)
    record: object = dataclasses.field(default=None, repr=False)
    given_up: int = None


def _when(problem):
    if problem.epoch is None:
        return "before training"
    return f"epoch {problem.epoch} (step {problem.step}, {problem.fraction:.0%} of budget)"


def _wrap(text, width):
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line] if line else lines or [""]


class Diagnosis:
    """The result of `diagnose` (or `check_model`).

    Attributes:
        healthy: True when no problem was found.
        problems: The `Problem`s found, root causes first.
        notes: What could not be measured, and why.
        record: The trial run's measurements (a `TrialRecord`, None for `check_model`).
        score: The original run's validation score (None for `check_model`).
        attempts: Every repair tried (`Attempt`s), in the order tried.
        repaired_model: The model trained with the best repair that beat the
            original run, or None.
        repair: That repair, in words and as code, or None.
    """

    def __init__(self, problems, notes=(), record=None, score=None):
        self.problems = list(problems)
        self.notes = list(notes)
        self.record = record
        self.score = score
        self.attempts = []
        self.repaired_model = None
        self.repair = None

    @property
    def healthy(self):
        return not self.problems

    def __repr__(self):
        kinds = ", ".join(p.kind for p in self.problems) or "healthy"
        return f"<Diagnosis: {kinds}>"

    def __str__(self):
        lines = ["Healthy: no problem found." if self.healthy else f"{len(self.problems)} problem(s) found:"]
        width = 44
        for i, p in enumerate(self.problems, 1):
            lines.append(f"{i}. {p.kind}  [{', '.join(p.layers) or 'whole model'}]  {_when(p)}")
            for label, text in (("evidence", p.evidence), ("fix", p.prescription)):
                for j, part in enumerate(_wrap(text, 100 - width // 4)):
                    lines.append(f"   {label if j == 0 else '':<9}{part}")
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.score is not None:
            lines.append(f"validation score of the trial run: {self.score:.4g}")
        for attempt in self.attempts:
            left = ", ".join(attempt.problems) or "none"
            stop = "" if attempt.given_up is None else f"  (given up at epoch {attempt.given_up}: behind the runs before)"
            lines.append(f"repair tried: {attempt.name:<18} score {attempt.score:.4g}  problems left: {left}{stop}")
        if self.repair is not None:
            lines.append(f"repair kept: {self.repair['words']}")
            lines.append(f"   code: {self.repair['code']}")
        elif self.attempts:
            lines.append("no repair beat the original run.")
        return "\n".join(lines)

    def plot(self, path=None):
        """One figure: loss curves, per-layer gradient norms, dead/saturated fractions.

        matplotlib is imported here only; the figure never opens a window.

        Args:
            path: If given, the figure is also saved to this file.

        Returns:
            The matplotlib `Figure`.

        Example:
        ```python
        d = keras_actkit.diagnose(model, x, y, epochs=10)
        d.plot("diagnosis.png")
        ```
        """
        from keras_actkit.diagnosis.plot import plot_diagnosis

        figure = plot_diagnosis(self)
        if path is not None:
            figure.savefig(path, dpi=110)
        return figure


def score_of(history, monitor):
    """The run's score: the last epoch's `monitor` value, higher is better (loss negated)."""
    values = history.get(monitor)
    if not values:
        return float("-inf")
    value = float(values[-1])
    if not np.isfinite(value):
        return float("-inf")
    return -value if monitor.endswith("loss") else value
