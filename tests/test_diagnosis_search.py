"""The repair search: when an attempt is given up, when the search stops (synthetic runs, one tiny trial)."""

import keras
import numpy as np

from keras_actkit.diagnosis import repairs, search
from keras_actkit.diagnosis.problems import Diagnosis, Problem
from keras_actkit.diagnosis.rules import TrialRecord
from keras_actkit.diagnosis.trial import run_trial

EPOCHS = 10  # judgment point: max(2, 0.3 * 10) = 3 epochs


def test_behind_is_the_median_stopping_rule_from_the_judgment_point():
    references = [[0.5, 0.5, 0.5, 0.5], [0.6, 0.7, 0.8, 0.9], [0.9, 0.9, 0.9, 0.9]]
    # Running averages over 3 epochs: 0.5, 0.7, 0.9 -> median 0.7.
    assert search.behind([0.6, 0.65, 0.69], references, EPOCHS)
    assert not search.behind([0.6, 0.7, 0.65], references, EPOCHS)  # best 0.7 is not below 0.7
    assert not search.behind([0.1, 0.1], references, EPOCHS)  # 2 epochs: before the judgment point
    # Over 4 epochs the averages are 0.5, 0.75, 0.9: 0.72 is behind now.
    assert search.behind([0.6, 0.65, 0.69, 0.72], references, EPOCHS)
    # A reference stopped early counts with the epochs it has (mean of 0.2, 0.4 = 0.3).
    assert search.behind([0.25, 0.25, 0.25], [[0.2, 0.4]], EPOCHS)
    assert not search.behind([0.25, 0.25, 0.31], [[0.2, 0.4]], EPOCHS)
    assert not search.behind([0.0, 0.0, 0.0], [], EPOCHS)  # nothing to compare with
    # 30% of a 20-epoch budget is 6 epochs.
    assert not search.behind([0.1] * 5, [[0.9] * 20], 20) and search.behind([0.1] * 6, [[0.9] * 20], 20)


def test_scores_negate_a_loss_and_count_a_non_finite_one_as_worst():
    np.testing.assert_array_equal(search.scores({"val_loss": [0.5, float("nan")]}, "val_loss"), [-0.5, -np.inf])
    np.testing.assert_array_equal(search.scores({"val_accuracy": [0.5, 0.75]}, "val_accuracy"), [0.5, 0.75])


def record(loss, initial=0.7):
    return TrialRecord(epochs=EPOCHS, steps_per_epoch=10, initial_loss=initial, loss=np.asarray(loss, "float64"))


def test_solved_needs_no_problem_left_and_half_the_reference_loss_removed():
    assert search.solved(record([0.5, 0.4, 0.34]), ())  # (0.7 - 0.34) / 0.7 = 51%
    assert not search.solved(record([0.5, 0.4, 0.36]), ())  # 49%
    assert not search.solved(record([0.5, 0.4, 0.2]), ("dead_relu",))


# Scripted attempts: per fix, the validation accuracy and training loss after each epoch.
LEARNS = dict(val_accuracy=[0.7, 0.8, 0.85, 0.9] + [0.9] * 6, loss=np.linspace(0.6, 0.2, EPOCHS))
SLOW = dict(val_accuracy=[0.55, 0.6, 0.62] + [0.65] * 7, loss=np.linspace(0.69, 0.6, EPOCHS))
STUCK = dict(val_accuracy=[0.45] * EPOCHS, loss=[0.693] * EPOCHS)


def run_search(monkeypatch, scripts, limit=3):
    """`search.search` for a vanishing gradient, with the fixes and trials replaced by `scripts`."""
    for name, script in scripts.items():  # a script None: the fix has nothing to change in this model
        monkeypatch.setitem(repairs.REPAIRS, name,
                            lambda model, context, name=name, script=script: script and (name, f"did {name}", name))
    monkeypatch.setattr(search, "static_problems", lambda model: [])
    trained = []

    def findings(new, x, y, settings, notes, static, give_up):
        history = {}
        for epoch in range(settings["epochs"]):
            history = {key: list(values[: epoch + 1]) for key, values in scripts[new].items()}
            if give_up(history):
                break
        trained.append((new, len(history["loss"])))
        return [], history, record(history["loss"])

    result = Diagnosis([Problem("vanishing_gradient", (), "", "")], record=record([0.7] * 3), score=0.45)
    result.history, result.monitor = {"val_accuracy": [0.45] * 3, "loss": [0.7] * 3}, "val_accuracy"
    search.search(result, None, None, None, dict(epochs=EPOCHS), limit, findings)
    return result, trained


def test_the_search_stops_at_the_first_attempt_that_solves_the_problem(monkeypatch):
    # Plan for a vanishing gradient: selu_lecun, relu_he, selu_lecun+raise_lr, batchnorm.
    result, trained = run_search(monkeypatch, {"selu_lecun": LEARNS, "relu_he": LEARNS,
                                               "selu_lecun+raise_lr": LEARNS, "batchnorm": LEARNS})
    assert trained == [("selu_lecun", EPOCHS)]
    assert result.repair["name"] == "selu_lecun" and result.repair["score"] == 0.9


def test_an_attempt_behind_the_runs_before_it_is_given_up_at_the_judgment_point(monkeypatch):
    result, trained = run_search(monkeypatch, {"selu_lecun": SLOW, "relu_he": STUCK,
                                               "selu_lecun+raise_lr": LEARNS, "batchnorm": LEARNS})
    # SLOW learns too little to stop the search; STUCK (0.45) is below the median of the running
    # averages of the original (0.45) and SLOW (0.59) at epoch 3; the third fix solves it; limit 3.
    assert trained == [("selu_lecun", EPOCHS), ("relu_he", 3), ("selu_lecun+raise_lr", EPOCHS)]
    assert [a.given_up for a in result.attempts] == [None, 3, None]
    assert result.repair["name"] == "selu_lecun+raise_lr"
    assert "given up at epoch 3" in str(result)


def test_nothing_is_kept_when_no_attempt_beats_the_original(monkeypatch):
    result, trained = run_search(monkeypatch, {"selu_lecun": STUCK, "relu_he": STUCK,
                                               "selu_lecun+raise_lr": STUCK}, limit=3)
    # The first attempt is level with the original (0.45, not below): run to the end; the others
    # are level with the median too, so all run and none is kept.
    assert [n for n, _ in trained] == ["selu_lecun", "relu_he", "selu_lecun+raise_lr"]
    assert result.repair is None and result.repaired_model is None


def test_run_trial_stops_when_give_up_says_so():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", metrics=["accuracy"])
    seen = []

    def give_up(history):
        seen.append(len(history["loss"]))
        return len(history["loss"]) >= 2

    record, history, _, _ = run_trial(model, x, y, epochs=5, batch_size=32, validation_data=(x, y),
                                      fit_kwargs={}, give_up=give_up)
    assert seen == [1, 2] and len(record.loss) == 2 and len(history["val_accuracy"]) == 2


def test_the_limit_counts_attempts_run_not_fixes_with_nothing_to_change(monkeypatch):
    # In a network without sigmoid/tanh layers the SELU swap has nothing to change: BatchNormalization,
    # fourth in the plan for a vanishing gradient, is the third attempt.
    result, trained = run_search(monkeypatch, {"selu_lecun": None, "relu_he": SLOW, "selu_lecun+raise_lr": SLOW,
                                               "batchnorm": LEARNS}, limit=3)
    assert [n for n, _ in trained] == ["relu_he", "selu_lecun+raise_lr", "batchnorm"]
    assert result.repair["name"] == "batchnorm"
