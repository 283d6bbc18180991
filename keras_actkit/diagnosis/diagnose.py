"""`diagnose`: a trial run on a copy of the model; what is wrong, where, the evidence, the cure."""

import warnings

from keras_actkit import _training_state, _validation
from keras_actkit.callbacks.lr_finder import find_lr
from keras_actkit.diagnosis import rules, search
from keras_actkit.diagnosis.problems import Diagnosis, score_of
from keras_actkit.diagnosis.static import input_problems, static_notes, static_problems
from keras_actkit.diagnosis.trial import copy_model, run_trial

# At most this many repairs. Each is a trial of its own, ~1.0-1.7 plain fits
# (on JAX mostly compilation, whatever the epochs run), and detection takes
# ~1.1-1.6: three keep the whole under ~6 plain fits, four did not
# (benchmarks/diagnose_cases.py, circles_vanishing: 7.7-9.1x).
MAX_ATTEMPTS = 3
# Findings for which the range test's suggestion makes the prescription concrete.
_LR_KINDS = {"non_finite", "exploding_gradient", "oscillating_loss", "lr_too_high", "lr_too_low"}
_SCORES = ("val_accuracy", "val_acc", "val_binary_accuracy", "val_sparse_categorical_accuracy",
           "val_categorical_accuracy", "val_loss", "accuracy", "acc", "binary_accuracy",
           "sparse_categorical_accuracy", "categorical_accuracy", "loss")


def _monitor(history):
    return next((key for key in _SCORES if key in history), "loss")


def _check_arguments(model, epochs, batch_size, repair):
    _training_state.compiled_optimizer(_validation.model("model", model), "diagnose")
    epochs = _validation.integer("epochs", epochs, minimum=1)
    batch_size = _validation.integer("batch_size", batch_size, minimum=1, allow_none=True)
    return epochs, batch_size, _validation.boolean("repair", repair)


def _range_test(model, x, y, settings, record, notes):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its advice on its own settings is not the user's concern here
            result = find_lr(copy_model(model), x, y, batch_size=settings["batch_size"], num_steps=100)
    except Exception as error:  # the range test is advice for the prescription, not the diagnosis itself
        notes.append(f"the learning-rate range test failed ({type(error).__name__}: {error}); "
                     "LR prescriptions are generic")
        return
    record.lr_suggestion = result.suggestion


def _timed(problems, certain, record):
    for problem in problems:
        problem.epoch = certain.get(problem.kind, len(record.loss))
        problem.step = problem.epoch * record.steps_per_epoch
        problem.fraction = problem.epoch / record.epochs
    return problems


def _findings(model, x, y, settings, notes, static, give_up=None):
    """One trial of `model` (already a copy): its problems (timed), history and record."""
    record, history, certain, trial_notes = run_trial(model, x, y, give_up=give_up, **settings)
    notes.extend(trial_notes)
    found = rules.evaluate(record)
    if static:  # a structural cause explains a run that does not learn
        found = [p for p in found if p.kind not in ("not_learning", "lr_too_low", "oscillating_loss")]
    return _timed(found, certain, record), history, record


def diagnose(model, x, y=None, *, validation_data=None, epochs=10, batch_size=None, repair=False, **fit_kwargs):
    """Train a copy of `model` briefly and say what is wrong with it, where, why, and what to change.

    First the static checks of `check_model` and of the inputs (unscaled
    features); then a trial run of a copy (weights, optimizer config, loss and
    metrics copied; the user's model is left bit for bit as it was) with the
    kit's own instruments attached: `GradientNormLogger`,
    `DeadNeuronMonitor`. The rules (`keras_actkit.diagnosis.rules`) read
    what they measured; the trial stops as soon as a finding has held on two
    epoch checks in a row (a non-finite step: at once). For learning-rate
    findings an LR range test (`find_lr`, on another copy) makes the
    prescription concrete.

    With `repair=True`, the prescriptions for the problems found are tried,
    cheapest and most likely first, each on a fresh copy for the same budget
    (at most `MAX_ATTEMPTS`); the best by validation score that beats the
    original run is kept. An attempt whose score is behind the runs before
    it from 30% of the budget on is given up there, and the search stops at
    the first attempt that shows no problem and has learned
    (`keras_actkit.diagnosis.search`).

    Args:
        model: A compiled Keras model (Sequential, Functional, or subclassed with
            `get_config`).
        x: Training inputs, as for `model.fit`.
        y: Training targets, as for `model.fit` (None when `x` yields them).
        validation_data: As for `model.fit`; the score runs are compared by
            (validation accuracy if compiled with an accuracy metric, else the
            negated validation loss; training figures without it).
        epochs: The training budget of each trial run, >= 1. Defaults to 10.
        batch_size: As for `model.fit`. Defaults to None (32 for arrays).
        repair: Also try the prescriptions. Defaults to False.
        **fit_kwargs: Other `model.fit` arguments (e.g. `class_weight`,
            `validation_split`). `callbacks` are not run in the trial.

    Returns:
        A `Diagnosis`: `.healthy`, `.problems`, `print(d)`, `d.plot()`,
        and with `repair=True` `.repaired_model`, `.repair`, `.attempts`.

    Example:
    ```python
    d = keras_actkit.diagnose(model, x, y, validation_data=(xv, yv), epochs=20)
    print(d)
    d.plot("diagnosis.png")
    r = keras_actkit.diagnose(model, x, y, validation_data=(xv, yv), epochs=20, repair=True)
    r.repair["code"]
    ```
    """
    epochs, batch_size, repair = _check_arguments(model, epochs, batch_size, repair)
    notes = static_notes(model)
    if fit_kwargs.pop("callbacks", None):
        notes.append("the callbacks passed were not run in the trial (they could write files or act on the copy)")
    settings = dict(epochs=epochs, batch_size=batch_size, validation_data=validation_data, fit_kwargs=fit_kwargs)
    static = static_problems(model) + input_problems(model, x)
    dynamic, history, record = _findings(copy_model(model), x, y, settings, notes, static)
    if {p.kind for p in dynamic} & _LR_KINDS:
        _range_test(model, x, y, settings, record, notes)
        dynamic = _timed_again(dynamic, record, static)
    monitor = _monitor(history)
    result = Diagnosis(static + dynamic, notes, record, score_of(history, monitor))
    result.history, result.monitor = history, monitor
    if repair and result.problems:
        search.search(result, model, x, y, settings, MAX_ATTEMPTS, _findings)
    return result


def _timed_again(dynamic, record, static):
    """The findings re-worded with the range test's suggestion, keeping when each was found."""
    when = {p.kind: (p.epoch, p.step, p.fraction) for p in dynamic}
    found = [p for p in rules.evaluate(record) if p.kind in when]
    for problem in found:
        problem.epoch, problem.step, problem.fraction = when[problem.kind]
    return found
