"""Matplotlib helpers shared by the `.plot()` methods.

matplotlib is imported only when a plot is asked for, and figures are built
with `matplotlib.figure.Figure` rather than `pyplot`, so plotting never opens a
window or blocks a script; save them with `figure.savefig(path)`.
"""


def new_figure(figsize):
    """A new figure pyplot never sees (constrained layout); an ImportError naming the extra without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'keras_actkit[plot]'"
        ) from None
    return Figure(figsize=figsize, layout="constrained")


def get_axes(ax=None, figsize=(6.4, 4.0)):
    """Return `(figure, axes)`: `ax` and its figure, or a new non-blocking pair."""
    if ax is not None:
        return ax.figure, ax
    figure = new_figure(figsize)
    return figure, figure.add_subplot()
