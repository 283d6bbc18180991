"""NaNGuard's pure parts (keras_actkit.callbacks._nan_guard): counters and decisions, on plain numbers."""

import math

import numpy as np

from keras_actkit.callbacks._nan_guard import counters, decisions


def test_initial_counters_have_no_bad_step_or_layer():
    np.testing.assert_array_equal(counters.initial(), [0, 0, -1, -1, 0, 0])


def test_counted_bad_steps_then_a_finite_one():
    state = counters.initial()
    state = counters.counted(state, 1, bad=(7, 2, True))  # step 7, gradient 2, a NaN in the batch
    state = counters.counted(state, 2, bad=(8, 0, False))  # step 8, finite batch: divergence
    np.testing.assert_array_equal(state, [2, 2, 8, 0, 2, 1])
    state = counters.counted(state, 0)  # a finite step ends the run, keeps the longest
    np.testing.assert_array_equal(state, [2, 0, 8, 0, 2, 1])


def test_traced_bad_state_counts_as_the_host_does():
    # The current run growing past the longest one (2 -> 3), on a batch holding a NaN...
    old = np.array([3, 2, 5, 4, 2, 1], "float32")
    traced = np.asarray(counters.traced_bad_state(old, step=9, first=6, data_finite=False))
    np.testing.assert_array_equal(traced, [4, 3, 9, 6, 3, 2])
    np.testing.assert_array_equal(traced, counters.counted(old, 3, bad=(9, 6, True)))
    # ... and a new run shorter than an earlier one (kept: 5), on a finite batch.
    old = np.array([3, 0, 5, 4, 5, 1], "float32")
    traced = np.asarray(counters.traced_bad_state(old, step=10, first=0, data_finite=True))
    np.testing.assert_array_equal(traced, [4, 1, 10, 0, 5, 1])
    np.testing.assert_array_equal(traced, counters.counted(old, 1, bad=(10, 0, False)))


def test_after_rollback_keeps_the_totals_and_ends_the_run():
    live = np.array([5, 3, 12, 1, 3, 2], "float32")
    np.testing.assert_array_equal(counters.after_rollback(live), [5, 0, -1, -1, 0, 2])


def test_loss_ok_refuses_ten_times_the_reference_and_non_finite():
    assert decisions.loss_ok(None, None) and decisions.loss_ok(100.0, None)
    assert decisions.loss_ok(3.0, 0.3) and not decisions.loss_ok(3.01, 0.3)
    assert not decisions.loss_ok(math.nan, 0.3) and not decisions.loss_ok(None, 0.3)


def test_data_only_compares_the_new_skips_with_the_new_bad_batches():
    state = np.array([5, 0, 9, 0, 1, 4], "float32")  # 5 skipped, 4 of them on bad data
    assert decisions.data_only(state, seen_skipped=4, seen_bad_data=3)  # the one new skip was bad data
    assert not decisions.data_only(state, seen_skipped=3, seen_bad_data=3)  # 2 new skips, 1 bad batch


def test_rollback_reason():
    assert decisions.rollback_reason(3, 3) == "3 non-finite steps in a row"
    assert decisions.rollback_reason(2, 3) is None
    assert "BatchNormalization" in decisions.rollback_reason(1, 3, state_finite=False)


def test_cause_is_data_only_with_finite_state_and_a_sane_loss():
    assert decisions.cause(True, True, 0.5, 0.3) == "data"
    assert decisions.cause(True, True, None, 0.3) == "data"
    assert decisions.cause(False, True, 0.5, 0.3) == "divergence"
    assert decisions.cause(True, False, 0.5, 0.3) == "divergence"
    assert decisions.cause(True, True, 3.5, 0.3) == "divergence"
    assert decisions.cause(True, True, math.inf, 0.3) == "divergence"


def test_fit_report():
    assert decisions.fit_report([], 0, 0, 0) is None
    assert decisions.fit_report([], 2, 2, 0) == {"cause": "data", "stopped": False, "skipped": 2,
                                                 "skipped_on_bad_data": 2, "rollbacks": 0}
    assert decisions.fit_report([], 3, 2, 0)["cause"] == "divergence"  # one skip on a finite batch
    assert decisions.fit_report([{"cause": "divergence"}], 2, 2, 1)["cause"] == "divergence"
