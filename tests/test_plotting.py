"""keras_actkit/plotting.py and the package's plotting policy: figures that save to files and never block.

The policy (DESIGN.md, principle 5; plotting.py's docstring): matplotlib is
imported only when a plot is asked for; figures are `matplotlib.figure.Figure`s
that pyplot never sees, so no window opens and no script blocks; a missing
matplotlib is one ImportError naming the extra to install. LRFinderResult's
plot is checked line by line in test_lr_finder_result.py, GradientNormLogger's
heatmap in test_gradient_norms.py.
"""

import ast
import pathlib
import sys

import keras
import numpy as np
import pytest

import keras_actkit as ak
from keras_actkit import plotting
from keras_actkit.callbacks import DeadNeuronMonitor

PACKAGE = pathlib.Path(ak.__file__).parent


def pyplot_figures():
    from matplotlib import pyplot

    return pyplot.get_fignums()


def test_get_axes_makes_a_figure_pyplot_never_sees(tmp_path):
    from matplotlib.figure import Figure

    before = pyplot_figures()
    figure, ax = plotting.get_axes()
    assert type(figure) is Figure and figure.axes == [ax]
    assert tuple(figure.get_size_inches()) == (6.4, 4.0)
    assert type(figure.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
    assert pyplot_figures() == before  # not a pyplot figure: nothing to show, nothing to close
    ax.plot([1, 2, 3], [3, 1, 2])
    path = tmp_path / "figure.png"
    figure.savefig(path, dpi=50)
    import matplotlib.image

    assert matplotlib.image.imread(path).shape[:2] == (200, 320)  # 4.0 x 6.4 inches at 50 dpi


def test_get_axes_with_a_size_and_with_given_axes():
    figure, ax = plotting.get_axes(figsize=(3.0, 2.0))
    assert tuple(figure.get_size_inches()) == (3.0, 2.0)
    again = plotting.get_axes(ax, figsize=(9.0, 9.0))  # given axes: used as they are
    assert again[0] is figure and again[1] is ax and tuple(figure.get_size_inches()) == (3.0, 2.0)


def _static_diagnosis():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return ak.check_model(model)


PLOTS = {
    "get_axes": lambda: plotting.get_axes(),
    "DeadNeuronMonitor.plot": lambda: DeadNeuronMonitor().plot(),
    "Diagnosis.plot": lambda: _static_diagnosis().plot(),
}


@pytest.mark.parametrize("make", PLOTS.values(), ids=PLOTS.keys())
def test_without_matplotlib_every_plot_says_what_to_install(make, monkeypatch):
    # Regression (Diagnosis.plot): it built its figure itself and raised a bare ModuleNotFoundError.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # `import matplotlib.figure` now fails
    with pytest.raises(ImportError, match=r"Plotting needs matplotlib: pip install 'keras_actkit\[plot\]'"):
        make()


@pytest.mark.parametrize("make", PLOTS.values(), ids=PLOTS.keys())
def test_every_plot_saves_to_a_file_without_pyplot(make, tmp_path):
    before = pyplot_figures()
    made = make()
    figure = made[0] if isinstance(made, tuple) else made
    path = tmp_path / "plot.png"
    figure.savefig(path, dpi=40)
    assert path.stat().st_size > 1000
    assert pyplot_figures() == before


def test_dead_neuron_monitor_plots_its_history():
    monitor = DeadNeuronMonitor(threshold=0.3)
    monitor.history["step"] = [10, 20, 30]
    monitor.history["dead_fraction"] = {"hidden": [0.0, 0.25, 0.5], "block/conv": [0.125, 0.125, 0.0]}
    monitor.history["saturated_fraction"] = {"tanh": [0.75, 0.5, 0.5]}
    ax = monitor.plot().axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"hidden (dead)", "block/conv (dead)", "tanh (saturated)", "threshold 0.3"}
    for label, values, style in (("hidden (dead)", [0.0, 0.25, 0.5], "-"), ("block/conv (dead)", [0.125, 0.125, 0.0], "-"),
                                 ("tanh (saturated)", [0.75, 0.5, 0.5], "--")):
        np.testing.assert_array_equal(lines[label].get_xdata(), [10, 20, 30])
        np.testing.assert_array_equal(lines[label].get_ydata(), values)
        assert lines[label].get_linestyle() == style
    assert list(lines["threshold 0.3"].get_ydata()) == [0.3, 0.3]
    assert ax.get_ylim() == (-0.02, 1.02)


def _imports(tree, at_top_level):
    nodes = tree.body if at_top_level else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_matplotlib_is_imported_only_inside_plot_functions_and_pyplot_never():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    eager, pyplot = [], []
    for path in files:
        tree = ast.parse(path.read_text())
        name = str(path.relative_to(PACKAGE))
        eager += [(name, m) for m in _imports(tree, at_top_level=True) if m.split(".")[0] == "matplotlib"]
        pyplot += [(name, m) for m in _imports(tree, at_top_level=False) if m.startswith("matplotlib.pyplot")]
    assert eager == [] and pyplot == []
