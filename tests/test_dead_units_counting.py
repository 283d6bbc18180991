"""DeadNeuronMonitor's counting, as pure functions on arrays (no model)."""

import numpy as np

from keras_actkit.callbacks._dead_units import counting
from keras_actkit.callbacks._dead_units.capture import default_probe_size


def test_dead_and_saturated_units_from_margins():
    margin = np.array([-1.0, 0.0, 1e-3, 2.0])
    assert counting.bad_units(margin, "dead", 0.01).tolist() == [True, True, False, False]
    assert counting.bad_units(margin, "saturated", 0.01).tolist() == [True, True, True, False]
    assert counting.fraction(np.array([True, False, False, False])) == 0.25
    assert counting.fraction(np.zeros(0, bool)) == 0.0


def test_still_dead_needs_two_checks():
    now = np.array([True, True, False])
    assert counting.still_dead(now, None).tolist() == [False, False, False]
    assert counting.still_dead(now, np.array([True, False, True])).tolist() == [True, False, False]


def test_finite_samples_drops_rows_with_nan_in_any_input():
    a = np.arange(12, dtype="float32").reshape(4, 3)
    b = np.ones((4, 2), "float32")
    a[1, 2], b[3, 0] = np.nan, np.inf
    kept, dropped = counting.finite_samples({"a": a, "b": b})
    assert dropped == 2 and kept["a"].tolist() == [a[0].tolist(), a[2].tolist()]
    same, none = counting.finite_samples(b[:3])
    assert none == 0 and same is not None and len(same) == 3


def test_probe_problem_flags_non_finite_margins():
    assert counting.probe_problem([np.zeros(3), np.ones(2)]) is None
    assert "not finite" in counting.probe_problem([np.zeros(3), np.array([np.nan])])


def test_fresh_slot_value_signed_and_second_moment():
    index = [slice(None), np.array([1])]
    assert counting.fresh_slot_value(np.array([[0.5, -0.1, 0.2]]), index, axis=1) == 0.0  # signed: restart at 0
    second = np.array([[4.0, 1e-9, 2.0]])
    assert counting.fresh_slot_value(second, index, axis=1) == 3.0  # mean of the live units' entries


def test_default_probe_size_is_a_sixteenth_of_an_epoch_within_64_to_256():
    assert default_probe_size(32, 64) == 128
    assert default_probe_size(32, 16) == 64
    assert default_probe_size(32, 1000) == 256
    assert default_probe_size(32, None) == 256
