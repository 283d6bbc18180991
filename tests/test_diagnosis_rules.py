"""The diagnosis rules on synthetic records: no model, no training."""

import numpy as np
import pytest

from keras_actkit.diagnosis import rules
from keras_actkit.diagnosis.problems import Diagnosis, Problem
from keras_actkit.diagnosis.rules import TrialRecord
from keras_actkit.diagnosis.trial import Certainty


def record(loss, initial=0.7, epochs=10, **kw):
    return TrialRecord(epochs=epochs, steps_per_epoch=10, initial_loss=initial, loss=np.asarray(loss, "float64"),
                       **kw)


FLAT = [0.7, 0.694, 0.693, 0.693, 0.693]
LEARNING = [0.6, 0.45, 0.35, 0.28, 0.22]


def grads(first_rms, last_rms, records=6, sizes=(15.0, 30.0, 6.0)):
    sizes = np.asarray(sizes)
    rms = np.tile(np.geomspace(first_rms, last_rms, len(sizes)), (records, 1))
    norms = rms * np.sqrt(sizes)
    return dict(grad_layers=[f"dense_{i}" for i in range(len(sizes))], grad_sizes=sizes, grad_norms=norms,
                grad_global=np.sqrt((norms ** 2).sum(1)), grad_steps=np.arange(records) * 5,
                update_ratios=np.full_like(norms, 1e-3))


def test_progress_and_stall_follow_their_definitions():
    # progress = (start - best) / start; stalled = < 1% gain over the last k = 2 epochs and progress < 50%.
    r = record([0.6, 0.5, 0.45], initial=1.0)
    assert rules.progress(r) == pytest.approx(0.55)
    assert not rules.stalled(record([0.69, 0.68, 0.675], initial=0.7))  # 0.69 -> 0.675 is a 2.2% gain
    assert rules.stalled(record([0.69, 0.6931, 0.6932], initial=0.7))
    assert not rules.stalled(record([0.30, 0.30, 0.30], initial=0.7))  # low: converged, not stalled
    assert not rules.stalled(record([0.69], initial=0.7))  # too early to tell


def test_vanishing_needs_the_ratio_and_a_stall():
    assert rules.vanishing_gradient(record(FLAT, **grads(1e-6, 1e-2))).kind == "vanishing_gradient"
    problem = rules.vanishing_gradient(record(FLAT, **grads(1e-6, 1e-2)))
    assert problem.layers == ("dense_0",)  # dense_1 sits at 1e-4 / 1e-2 = 1e-2 of the last: not vanished
    assert "0.0001" in problem.evidence or "1e-04" in problem.evidence
    assert rules.vanishing_gradient(record(LEARNING, **grads(1e-6, 1e-2))) is None  # learning: not blamed
    assert rules.vanishing_gradient(record(FLAT, **grads(1e-4, 1e-2))) is None  # ratio 1e-2 >= 1e-3


def test_exploding_needs_a_hundredfold_growth():
    g = grads(1e-2, 1e-2, records=8)
    g["grad_global"] = np.array([1, 1, 1, 2, 5, 40, 150, 300.0])
    assert rules.exploding_gradient(record([0.7, 0.71, 0.72, 0.72, 0.72], **g)).kind == "exploding_gradient"
    g["grad_global"] = np.array([1, 1, 1, 2, 5, 40, 60, 90.0])  # < 100x
    assert rules.exploding_gradient(record([0.7, 0.71, 0.72, 0.72, 0.72], **g)) is None


def test_dead_units_flagged_from_seventy_percent_only_when_stalled_and_never_on_the_output():
    dead = {"dense": [0.5, 0.69], "dense_1": [0.8, 0.75], "out": [1.0, 1.0]}
    problem = rules.dead_relu(record(FLAT, dead=dead, output_layers=("out",)))
    assert problem.layers == ("dense_1",)
    assert rules.dead_relu(record(LEARNING, dead=dead)) is None  # a learning net with dead units is healthy


def test_saturated_from_half_of_the_units():
    sat = {"dense": [0.49], "dense_1": [0.5]}
    assert rules.saturated_activation(record(FLAT, saturated=sat)).layers == ("dense_1",)


def test_non_finite_from_the_recorded_gradients_or_the_loss():
    g = grads(1e-3, 1e-2)
    g["grad_global"] = g["grad_global"].copy()
    g["grad_global"][[2, 4]] = [np.nan, np.inf]
    problem = rules.non_finite(record(LEARNING, **g))
    assert problem.kind == "non_finite" and "2 of 6 recorded step(s)" in problem.evidence
    assert rules.non_finite(record([0.6, np.nan])).kind == "non_finite"
    assert rules.non_finite(record(LEARNING)) is None


def test_oscillating_is_up_and_down_without_gain_at_a_high_loss():
    # Rises of > 2% on >= 2 epochs, nothing gained from the first half to the second, < 50% of the start removed.
    wobbly = [0.6, 0.68, 0.55, 0.66, 0.55, 0.62, 0.56, 0.6, 0.55, 0.6]
    assert rules.oscillating_loss(record(wobbly)).kind == "oscillating_loss"
    noisy = [0.6, 0.62, 0.55, 0.57, 0.5, 0.52, 0.46, 0.48, 0.44, 0.45]  # batch noise on a falling loss
    assert rules.oscillating_loss(record(noisy)) is None
    converged = [0.3, 0.1, 0.08, 0.085, 0.079, 0.083, 0.08, 0.084]  # wobbling at a low plateau
    assert rules.oscillating_loss(record(converged)) is None


def _certain(loss, **kw):
    """What the trial's watch would have found certain, epoch by epoch, on `loss`."""
    judge = Certainty()
    for epoch in range(len(loss)):
        judge.check(record(loss[: epoch + 1], **kw), epoch)
    return judge.certain


def test_oscillation_is_certain_during_the_run_and_its_noisy_twin_never():
    # The wobbly curve meets the rule on its first 6 epochs (3 rises, no gain from
    # epochs 1-3 to 4-6) and again on 7: certain at epoch 7 of 10, so the trial stops there.
    wobbly = [0.6, 0.68, 0.55, 0.66, 0.55, 0.62, 0.56, 0.6, 0.55, 0.6]
    assert [rules.oscillating_loss(record(wobbly[:n])) is not None for n in (4, 5, 6, 7)] == [False, False, True, True]
    assert _certain(wobbly) == {"oscillating_loss": 7}
    # A noisy batch-8 curve that falls: never flagged, on any prefix.
    noisy = [0.6, 0.62, 0.55, 0.57, 0.5, 0.52, 0.46, 0.48, 0.44, 0.45]
    assert _certain(noisy) == {}
    # Not before 30% of the budget: the same 6 epochs out of a 30-epoch budget are too early (9 needed).
    assert rules.oscillating_loss(record(wobbly[:6], epochs=30)) is None
    # A wobbly plateau still edging down (1.7% gained from the first half to the second), as a converged
    # run on noisy data (circles_healthy) does: never, mid-run or at the end.
    edging = [0.6, 0.65, 0.58, 0.64, 0.585, 0.63, 0.57, 0.62]
    assert rules.oscillating_loss(record(edging, epochs=20)) is None
    assert rules.oscillating_loss(record(edging, epochs=8)) is None


def test_progress_is_measured_from_the_loss_of_guessing_when_the_start_is_above_it():
    # Shaped like AUTOTRAINER's blobs demo: unscaled inputs start the loss at 2.0; guessing 3 classes costs
    # log 3; the second half no better than the first.
    r = record([0.869, 0.929, 0.911, 0.935, 0.954, 0.984, 0.91, 0.889], initial=2.02, epochs=8, chance_loss=np.log(3))
    assert rules.progress(r) == pytest.approx((np.log(3) - 0.869) / np.log(3))
    assert rules.oscillating_loss(r).kind == "oscillating_loss"
    assert rules.oscillating_loss(record(r.loss, initial=2.02, epochs=8)) is None  # from the start: 57% progress


def test_not_learning_judged_from_thirty_percent_of_the_budget():
    assert rules.not_learning(record([0.69, 0.69], epochs=10)) is None  # 2 of 10 epochs: too early
    assert rules.not_learning(record([0.69, 0.69, 0.69], epochs=10)).kind == "not_learning"
    assert rules.not_learning(record([0.6, 0.6, 0.6], epochs=10)) is None  # 14% progress


def test_lr_too_low_is_a_steady_but_tiny_descent():
    steady = [0.699, 0.698, 0.697, 0.696]
    found = [p.kind for p in rules.evaluate(record(steady, lr=1e-6, lr_suggestion=1e-2))]
    assert found == ["lr_too_low"]
    assert "0.01" in rules.lr_too_low(record(steady, lr=1e-6, lr_suggestion=1e-2)).prescription
    assert [p.kind for p in rules.evaluate(record([0.699, 0.7, 0.698, 0.699]))] == ["not_learning"]


def test_lr_too_high_when_the_loss_ends_above_its_start():
    assert rules.lr_too_high(record([0.9, 1.2], initial=0.7)).kind == "lr_too_high"
    assert rules.lr_too_high(record([0.72, 0.75], initial=0.7)) is None  # within 10%


def test_evaluate_puts_causes_before_the_symptoms_they_explain():
    found = [p.kind for p in rules.evaluate(record(FLAT, **grads(1e-7, 1e-2)))]
    assert found == ["vanishing_gradient"]  # not_learning is explained by it


def test_a_healthy_record_is_healthy():
    sat = {"dense": [0.1, 0.2]}
    r = record(LEARNING, dead={"dense_1": [0.3, 0.4]}, saturated=sat, **grads(1e-3, 1e-2))
    assert rules.evaluate(r) == []


def test_problem_kind_is_checked_and_the_table_names_everything():
    with pytest.raises(ValueError, match="kind"):
        Problem("dying", (), "", "")
    d = Diagnosis([Problem("dead_relu", ["dense_1"], "dead units: dense_1 80%", "use leaky_relu", 20, 2, 0.2)])
    text = str(d)
    assert not d.healthy
    for part in ("dead_relu", "dense_1", "80%", "leaky_relu", "epoch 2", "20%"):
        assert part in text
    assert str(Diagnosis([])).startswith("Healthy")


def test_a_loss_no_better_than_guessing_counts_as_stalled_after_k_epochs():
    # Falling 2% an epoch, but from above the loss of guessing (log 2) and still above it.
    falling = [0.78, 0.76, 0.745]
    assert not rules.stalled(record(falling, initial=0.8))
    assert rules.stalled(record(falling, initial=0.8, chance_loss=np.log(2)))
    assert not rules.stalled(record([0.68, 0.6, 0.5], initial=0.8, chance_loss=np.log(2)))


def test_a_small_lr_whose_fall_would_reach_the_bar_by_the_end_is_not_judged_early():
    # 4.3% of the start removed after 3 of 10 epochs, falling 0.01 an epoch: kept up for the 7 epochs
    # left that removes 14%, a small but converging learning rate (digits_small_lr on TensorFlow and
    # torch). With no budget left, the same curve is too slow.
    converging = [0.69, 0.68, 0.67]
    assert rules.evaluate(record(converging, epochs=10)) == []
    assert [p.kind for p in rules.evaluate(record(converging, epochs=3))] == ["lr_too_low"]
    # A fall too small to get there stays a finding at the judgment point.
    assert [p.kind for p in rules.evaluate(record([0.699, 0.698, 0.697], epochs=10))] == ["lr_too_low"]
