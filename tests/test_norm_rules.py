"""GradientNormLogger's tests as pure functions, on arrays (no model)."""

import numpy as np
import pytest

from keras_actkit.callbacks import _norm_rules


def test_first_exploding_compares_with_the_median_of_the_window():
    norms = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 12.0, 1.0]
    # Median of the 6 values before index 6 is 1.0: 12 > 10 x 1.0.
    assert _norm_rules.first_exploding(norms, 0, window=20, factor=10) == 6
    assert _norm_rules.first_exploding(norms, 0, window=20, factor=15) is None
    assert _norm_rules.first_exploding(norms, 7, window=20, factor=10) is None  # only judged from `start`


def test_first_exploding_needs_five_values_and_flags_non_finite():
    assert _norm_rules.first_exploding([1.0, 1.0, 1.0, 1.0, 100.0], 0, window=20, factor=10) is None
    assert _norm_rules.first_exploding([1.0] * 5 + [np.nan], 0, window=20, factor=10) == 5
    # The window bounds the history: with window=2 the median is of the two values before.
    assert _norm_rules.first_exploding([100.0, 100.0, 1.0, 1.0, 11.0], 0, window=2, factor=10) == 4


def test_largest_jumps_orders_layers_by_growth():
    order, jumps = _norm_rules.largest_jumps([2.0, 30.0, np.inf, 1.0], [[1.0, 1.0, 1.0, 1.0], [1.0, 3.0, 1.0, 1.0]])
    assert order.tolist() == [2, 1, 0]
    np.testing.assert_allclose(jumps, [np.inf, 15.0, 2.0])


def test_first_vanishing_compares_rms_of_first_and_last_thirds():
    sizes = np.array([100.0, 100.0, 400.0])
    norms = np.array([[1.0, 1.0, 2.0],  # RMS 0.1 vs 0.1: ratio 1
                      [1e-3, 1.0, 2.0]])  # RMS 1e-4 vs 0.1: ratio 1e-3
    assert _norm_rules.first_vanishing(norms, sizes, ratio=1e-2) == (1, pytest.approx(1e-3))
    assert _norm_rules.first_vanishing(norms, sizes, ratio=1e-4) is None
    assert _norm_rules.first_vanishing(np.array([[1e-3, 1.0, 0.0]]), sizes, 1e-2) is None  # last third zero
    assert _norm_rules.first_vanishing(np.array([[1.0]]), [1.0], 1e-2) is None  # one layer: nothing to compare


def test_remedies_tell_dead_units_from_saturation():
    dead = _norm_rules.vanishing_remedies([0.0, 1e-9], saturating_model=False)
    assert "dead" in dead and "ReLU-family" not in dead
    assert "ReLU-family" in _norm_rules.vanishing_remedies([1e-9], saturating_model=True)
    relu_only = _norm_rules.vanishing_remedies([1e-9], saturating_model=False)
    assert "ReLU-family" not in relu_only and "residual" in relu_only


def test_clipping_note_names_the_clipping():
    assert "before any clipnorm" in _norm_rules.clipping_note()
    assert "clipnorm=1" in _norm_rules.clipping_note(clipnorm=1.0)
    assert "global_clipnorm=0.5" in _norm_rules.clipping_note(global_clipnorm=0.5)
