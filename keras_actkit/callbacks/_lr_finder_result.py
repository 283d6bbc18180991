"""LRFinderResult: what a learning-rate range test found, with `apply` and `plot`."""

import dataclasses

import numpy as np

from keras_actkit import _training_state, _validation

DEFAULT_RULE = "max(onset, valley)"


@dataclasses.dataclass
class LRFinderResult:
    """What a learning-rate range test found.

    Attributes:
        lrs: The learning rates used, one per step (float32 values, exact).
        losses: The per-batch training loss at each step.
        smoothed_losses: Bias-corrected exponential moving average of
            `losses` (what the divergence stop watches).
        suggestion: The default rule's suggestion (`"max(onset, valley)"`),
            or None.
        suggestions: Every rule's suggestion by name (`"max(onset, valley)"`,
            `"onset"`, `"minimum/10"`, `"valley"`, `"steepest"`; see
            `keras_actkit.lr_suggestions`).
        stop_reason: `"diverged"`, `"non-finite loss"`, `"non-finite weights"`,
            `"end reached"` or `"data exhausted"`.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggestion: float
    suggestions: dict
    stop_reason: str

    def to_dict(self):
        return {
            "lrs": self.lrs.tolist(),
            "losses": self.losses.tolist(),
            "smoothed_losses": self.smoothed_losses.tolist(),
            "suggestion": self.suggestion,
            "suggestions": dict(self.suggestions),
            "stop_reason": self.stop_reason,
        }

    def apply(self, model, rule=None):
        """Set `model`'s optimizer learning rate to a suggestion and return it.

        Args:
            model: The compiled model (its optimizer must hold a constant
                learning rate, not a schedule).
            rule: A key of `suggestions`; None (default) for the default rule's
                (`suggestion` when `suggestions` has no entry for it).
        """
        if rule is None:
            lr = self.suggestions.get(DEFAULT_RULE, self.suggestion)
            source = f"the default rule {DEFAULT_RULE!r} found none"
        else:
            rule = _validation.one_of("rule", rule, tuple(self.suggestions))
            lr, source = self.suggestions[rule], f"rule {rule!r} found none"
        if lr is None:
            raise ValueError(f"No suggestion to apply ({source}).")
        _training_state.compiled_optimizer(model, "LRFinderResult.apply")
        _training_state.set_learning_rate(model, lr)
        return lr

    def plot(self, ax=None):
        """Loss vs learning rate (log x), raw and smoothed, suggestions marked.

        Returns the matplotlib figure; never opens a window (save it with
        `figure.savefig(path)`).
        """
        from keras_actkit.plotting import get_axes

        figure, ax = get_axes(ax)
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="batch loss")
        ax.plot(self.lrs, self.smoothed_losses, color="C0", lw=2, label="smoothed")
        for i, (name, lr) in enumerate(sorted(self.suggestions.items())):
            if lr is not None:
                style = "-" if name == DEFAULT_RULE else ":"
                ax.axvline(lr, color=f"C{i + 1}", ls=style, label=f"{name}: {lr:.2g}")
        finite = self.smoothed_losses[np.isfinite(self.smoothed_losses)]
        raw = self.losses[np.isfinite(self.losses)]
        if finite.size:
            low, high = min(finite.min(), raw.min()), finite[0]
            ax.set_ylim(low - 0.1 * abs(high - low), high + 0.5 * abs(high - low) + 1e-12)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title(f"LR range test ({self.stop_reason})")
        ax.legend(fontsize="small")
        return figure
