"""LRFinderResult on its own (keras_actkit/callbacks/_lr_finder_result.py): built from arrays, no range test.

`find_lr`'s own results are in test_lr_finder.py; here a result is made by hand,
so every number it shows (`to_dict`, `apply`, the lines of `plot`) is known.
"""

import json

import keras
import numpy as np
import pytest

from keras_actkit import _keras_internals
from keras_actkit.callbacks import LRFinderResult
from keras_actkit.callbacks._lr_finder_result import DEFAULT_RULE

import helpers

LRS = np.geomspace(1e-4, 1.0, 9)
LOSSES = np.array([2.3, 2.2, 2.0, 1.6, 1.1, 0.9, 1.4, 3.0, 9.0])
SMOOTHED = np.array([2.3, 2.25, 2.15, 1.9, 1.5, 1.2, 1.3, 2.1, 5.0])
SUGGESTIONS = {DEFAULT_RULE: 3e-3, "onset": 1e-3, "minimum/10": 1e-2 / 3, "valley": 3e-3, "steepest": None}


def result(**changes):
    fields = dict(lrs=LRS, losses=LOSSES, smoothed_losses=SMOOTHED, suggestion=SUGGESTIONS[DEFAULT_RULE],
                  suggestions=dict(SUGGESTIONS), stop_reason="diverged")
    fields.update(changes)
    return LRFinderResult(**fields)


def compiled(optimizer=None):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer or keras.optimizers.SGD(0.5, momentum=0.9), "mse")
    return model


# ---------------------------------------------------------------- to_dict


def test_to_dict_is_plain_python_and_round_trips_through_json():
    found = result()
    plain = found.to_dict()
    assert json.loads(json.dumps(plain)) == plain
    assert all(type(v) is float for key in ("lrs", "losses", "smoothed_losses") for v in plain[key])  # no numpy
    assert plain["lrs"] == [float(v) for v in LRS] and plain["losses"] == [float(v) for v in LOSSES]
    assert plain["smoothed_losses"] == [float(v) for v in SMOOTHED]
    assert plain["suggestion"] == 3e-3 and plain["stop_reason"] == "diverged"
    assert plain["suggestions"] == SUGGESTIONS
    plain["suggestions"]["onset"] = 1.0  # a copy: the result is untouched
    assert found.suggestions["onset"] == 1e-3


# ---------------------------------------------------------------- apply


@pytest.mark.parametrize("rule, expected", [(None, 3e-3), ("onset", 1e-3), ("minimum/10", 1e-2 / 3)])
def test_apply_sets_the_rule_s_learning_rate_and_nothing_else(rule, expected):
    model = compiled()
    before = helpers.state(model)
    assert result().apply(model, rule=rule) == expected
    assert float(helpers.value(model.optimizer.learning_rate)) == float(np.float32(expected))
    after = helpers.state(model)
    helpers.assert_same_values(after["model"], before["model"], "weights")
    changed = [v.path for v, a, b in zip(model.optimizer.variables, before["optimizer"], after["optimizer"])
               if a.tobytes() != b.tobytes()]
    assert changed == [v.path for v in model.optimizer.variables if v.path.endswith("/learning_rate")]
    assert len(changed) == 1


def test_apply_without_a_rule_uses_the_default_rule():
    # The default rule's entry, not another rule's, even when another rule was listed first.
    found = result(suggestions={"onset": 1e-3, DEFAULT_RULE: 2e-3})
    assert found.apply(compiled()) == 2e-3


def test_apply_reaches_the_optimizer_inside_a_loss_scale_wrapper():
    model = compiled(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.5)))
    result().apply(model, rule="onset")
    assert float(helpers.value(model.optimizer.inner_optimizer.learning_rate)) == float(np.float32(1e-3))


def test_apply_a_rule_that_found_nothing_is_a_value_error_naming_it():
    model = compiled()
    with pytest.raises(ValueError, match=r"rule 'steepest' found none"):
        result().apply(model, rule="steepest")
    with pytest.raises(ValueError, match=r"'max\(onset, valley\)' found none"):
        result(suggestion=None, suggestions={**SUGGESTIONS, DEFAULT_RULE: None}).apply(model)
    assert float(helpers.value(model.optimizer.learning_rate)) == 0.5  # left as it was


def test_apply_without_a_rule_sets_the_results_suggestion():
    # A result whose suggestions do not hold the default rule's name (made by hand, or saved from another
    # version): `apply()` applies its `suggestion` rather than raising a KeyError.
    model = compiled()
    custom = result(suggestion=2e-3, suggestions={"onset": 1e-3})
    assert custom.apply(model) == 2e-3
    assert float(helpers.value(model.optimizer.learning_rate)) == float(np.float32(2e-3))
    assert custom.apply(model, rule=np.str_("onset")) == 1e-3


def test_apply_needs_a_compiled_model_with_a_constant_learning_rate():
    uncompiled = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="LRFinderResult.apply needs a compiled model"):
        result().apply(uncompiled)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model = compiled(keras.optimizers.SGD(schedule))
    with pytest.raises(ValueError, match=r"schedule.*\(0\.003\)"):
        result().apply(model)
    assert _keras_internals.learning_rate_object(model.optimizer) is schedule


# ---------------------------------------------------------------- plot


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_draws_the_losses_and_one_line_per_suggestion(tmp_path):
    figure = result().plot()
    ax = figure.axes[0]
    lines = _lines(ax)
    np.testing.assert_array_equal(lines["batch loss"].get_xdata(), LRS)
    np.testing.assert_array_equal(lines["batch loss"].get_ydata(), LOSSES)
    np.testing.assert_array_equal(lines["smoothed"].get_xdata(), LRS)
    np.testing.assert_array_equal(lines["smoothed"].get_ydata(), SMOOTHED)
    # A vertical line at each rule's suggestion (none for the rule that found none), the default solid.
    marked = {label: line for label, line in lines.items() if label not in ("batch loss", "smoothed")}
    expected = {f"{name}: {lr:.2g}": lr for name, lr in SUGGESTIONS.items() if lr is not None}
    assert set(marked) == set(expected)
    for label, lr in expected.items():
        assert list(marked[label].get_xdata()) == [lr, lr]
        assert marked[label].get_linestyle() == ("-" if label.startswith(DEFAULT_RULE) else ":")
    assert ax.get_xscale() == "log"
    assert ax.get_title() == "LR range test (diverged)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [line.get_label() for line in ax.get_lines()]
    path = tmp_path / "lr.png"
    figure.savefig(path)
    assert path.stat().st_size > 0


def test_plot_limits_show_the_fall_and_cut_the_divergence():
    ax = result().plot().axes[0]
    # From below the lowest loss (raw or smoothed) to half the fall above the first smoothed loss.
    low, high = min(SMOOTHED.min(), LOSSES.min()), SMOOTHED[0]
    np.testing.assert_allclose(ax.get_ylim(), (low - 0.1 * (high - low), high + 0.5 * (high - low) + 1e-12))
    assert ax.get_ylim()[1] < LOSSES.max()  # the last, diverged losses are off the top


def test_plot_limits_ignore_non_finite_losses():
    losses, smoothed = LOSSES.copy(), SMOOTHED.copy()
    losses[-2:], smoothed[-2:] = [np.nan, np.inf], np.nan
    ax = result(losses=losses, smoothed_losses=smoothed, stop_reason="non-finite loss").plot().axes[0]
    low, high = min(smoothed[:-2].min(), losses[:-2].min()), smoothed[0]
    np.testing.assert_allclose(ax.get_ylim(), (low - 0.1 * (high - low), high + 0.5 * (high - low) + 1e-12))


def test_plot_of_a_test_that_recorded_nothing(tmp_path):
    empty = np.zeros(0)
    found = result(lrs=empty, losses=empty, smoothed_losses=empty, suggestion=None,
                   suggestions={name: None for name in SUGGESTIONS}, stop_reason="data exhausted")
    figure = found.plot()
    assert [len(line.get_xdata()) for line in figure.axes[0].get_lines()] == [0, 0]
    figure.savefig(tmp_path / "empty.png")


def test_plot_into_given_axes_returns_their_figure():
    from matplotlib.figure import Figure

    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert result().plot(ax=right) is figure
    assert not left.get_lines() and len(right.get_lines()) == 2 + 4
