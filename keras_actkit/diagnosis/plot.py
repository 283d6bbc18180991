"""The figure of a `Diagnosis`: loss curves, per-layer gradient norms, dead/saturated fractions."""

import numpy as np


def _loss_panel(ax, d):
    record = d.record
    epochs = np.arange(len(record.loss) + 1)
    ax.plot(epochs, np.concatenate([[record.initial_loss], record.loss]), color="C0", marker=".", label="train")
    if record.val_loss is not None and len(record.val_loss):
        ax.plot(epochs[1:], record.val_loss, color="C1", marker=".", label="validation")
    for attempt in d.attempts:
        if d.repair is not None and attempt.name == d.repair["name"]:
            loss = attempt.record.loss
            ax.plot(np.arange(len(loss) + 1), np.concatenate([[attempt.record.initial_loss], loss]), color="C2",
                    ls="--", label=f"repaired: {attempt.name}")
    for i, problem in enumerate(p for p in d.problems if p.epoch is not None):
        ax.axvline(problem.epoch, color=f"C{3 + i}", ls=":", label=f"{problem.kind} (epoch {problem.epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend(fontsize="x-small")


def _gradient_panel(ax, d):
    record = d.record
    if record.grad_norms is None or not len(record.grad_norms):
        ax.text(0.5, 0.5, "no gradient records", ha="center", transform=ax.transAxes)
        return
    for i, name in enumerate(record.grad_layers):
        values = np.where(record.grad_norms[:, i] > 0, record.grad_norms[:, i], np.nan)
        ax.plot(record.grad_steps, values, label=name, color=f"C{i % 10}", alpha=0.4 + 0.6 * i / len(record.grad_layers))
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_title("gradient norm per layer")
    ax.legend(fontsize="x-small", ncol=2)


def _units_panel(ax, d):
    record = d.record
    drawn = False
    for style, fractions, word in (("-", record.dead, "dead"), ("--", record.saturated, "saturated")):
        for name, values in fractions.items():
            ax.plot(np.arange(1, len(values) + 1), values, ls=style, marker=".", label=f"{name} {word}")
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no ReLU or saturating activation watched", ha="center", transform=ax.transAxes)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch")
    ax.set_title("dead / saturated fraction of units")
    if drawn:
        ax.legend(fontsize="x-small")


def plot_diagnosis(d):
    """Three panels side by side; returns the `matplotlib.figure.Figure` (never shown)."""
    from keras_actkit.plotting import new_figure

    figure = new_figure((15, 4.2))
    axes = figure.subplots(1, 3)
    if d.record is None:
        for ax in axes:
            ax.text(0.5, 0.5, "static check only: no trial run", ha="center", transform=ax.transAxes)
        return figure
    _loss_panel(axes[0], d)
    _gradient_panel(axes[1], d)
    _units_panel(axes[2], d)
    kinds = ", ".join(p.kind for p in d.problems) or "healthy"
    figure.suptitle(f"keras_actkit.diagnose: {kinds}")
    return figure
