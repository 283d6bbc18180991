"""Matplotlib helpers shared by the `.plot()` methods.

matplotlib is imported only when a plot is asked for, and figures are built
with `matplotlib.figure.Figure` rather than `pyplot`, so plotting never opens a
window or blocks a script; save them with `figure.savefig(path)`.
"""


def get_axes(ax=None, figsize=(6.4, 4.0)):
    """Return `(figure, axes)`: `ax` and its figure, or a new non-blocking pair."""
    if ax is not None:
        return ax.figure, ax
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Plotting needs matplotlib: pip install 'keras_actkit[plot]'"
        ) from None
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot()
