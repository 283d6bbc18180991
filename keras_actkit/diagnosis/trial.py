"""The trial run: train a copy of the model with the kit's own instruments attached.

Everything measured here comes from the public surface of the kit's callbacks
(`GradientNormLogger.history` and `.layer_sizes`, `DeadNeuronMonitor.history`)
and from Keras's `History`; the rules in `rules.py` read only the
`TrialRecord` built from them.

No `NaNGuard` is attached: a non-finite gradient shows in the logger's record
of that step (every step is recorded where steps are compiled) and in the
epoch's loss, and the trial stops at that epoch's end; the guard's in-graph
skip cost ~0.4 s more XLA compilation per trial on JAX, for nothing the rules
read.
"""

import math
import warnings

import keras
import numpy as np

from keras_actkit import _backend
from keras_actkit.callbacks.dead_neurons import DeadNeuronMonitor
from keras_actkit.callbacks.gradient_norms import GradientNormLogger
from keras_actkit.diagnosis import rules
from keras_actkit.diagnosis.static import chance_loss, is_graph, output_layers

# Gradient records per epoch (the logger records every n-th step).
RECORDS_PER_EPOCH = 4
# Samples of the training data the starting loss is measured on.
INITIAL_SAMPLES = 512
# Checks in a row a finding must hold before the trial stops on it (NaN: one).
CONFIRMATIONS = 2
# Warnings from the instruments that mean "this could not be measured".
_CANNOT = ("cannot", "nothing to", "nothing will", "not be monitored", "needs a built model")


def copy_model(model, weights=True):
    """A new model with `model`'s architecture, its weights (when `weights`) and a fresh compile.

    The optimizer is rebuilt from its config (no shared state), with the same
    loss, metrics and loss weights, through Keras's public
    `get_compile_config` / `compile_from_config`.
    """
    try:
        clone = keras.models.clone_model(model)
    except Exception as error:  # subclassed models without get_config
        raise ValueError(f"diagnose works on a copy of the model and could not clone {model.name!r} "
                         f"({type(error).__name__}: {error}); implement get_config/from_config for it.") from error
    if weights:
        clone.set_weights(model.get_weights())
    clone.compile_from_config(model.get_compile_config())
    return clone


def learning_rate(model):
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except Exception:  # a schedule object that cannot be read outside a step
        return None


def _length(x):
    if isinstance(x, (list, tuple)) and x:
        return _length(x[0])
    if isinstance(x, dict) and x:
        return _length(next(iter(x.values())))
    return len(x) if hasattr(x, "shape") else None


def steps_per_epoch(x, batch_size, fit_kwargs):
    n = _length(x)
    if n is None:
        try:
            return len(x)
        except TypeError:
            return None
    n = int(n * (1.0 - fit_kwargs.get("validation_split", 0.0)))
    return max(1, math.ceil(n / (batch_size or 32)))


def initial_loss(model, x, y, batch_size):
    """The loss before any training, on the first INITIAL_SAMPLES samples (4 batches of other inputs).

    Through `evaluate` with the user's batch size, on a whole number of
    batches: the compiled test step it builds is the one the trial's
    validation pass reuses (same batch shape), so measuring the start costs no
    compilation of its own. (An eager forward pass cost ~1.3 s on JAX, one
    small XLA compilation per op; a compiled `evaluate` of another batch shape
    ~0.5 s more.)
    """
    n = _length(x)
    if n is None:
        return float(model.evaluate(x, y, steps=4, verbose=0, return_dict=True)["loss"])
    size = batch_size or 32
    n = min(n, INITIAL_SAMPLES)
    n = n // size * size or n
    cut = keras.tree.map_structure(lambda a: a[:n], x)
    cut_y = None if y is None else keras.tree.map_structure(lambda a: a[:n], y)
    return float(model.evaluate(cut, cut_y, batch_size=size, verbose=0, return_dict=True)["loss"])


class Certainty:
    """Which findings are certain: found on CONFIRMATIONS epoch checks in a row (a non-finite step: one).

    `check(record, epoch)` runs every rule on the record of the epochs so far
    and returns `certain`, {kind: the epoch count at which it became certain}.
    """

    def __init__(self):
        self.streak, self.certain = {}, {}

    def check(self, record, epoch):
        found = {p.kind for p in rules.evaluate(record)}
        for kind in set(self.streak) | found:
            self.streak[kind] = self.streak.get(kind, 0) + 1 if kind in found else 0
            need = 1 if kind == "non_finite" else CONFIRMATIONS
            if self.streak[kind] >= need and kind not in self.certain:
                self.certain[kind] = epoch + 1
        return self.certain


class _Watch(keras.callbacks.Callback):
    """Judges the run at each epoch's end; stops the trial once a finding is certain (or `give_up` says so)."""

    def __init__(self, build_record, early, give_up=None):
        super().__init__()
        self.build_record, self.early, self.give_up = build_record, early, give_up

    def on_train_begin(self, logs=None):
        self.history, self.judge = {}, Certainty()
        self.certain = self.judge.certain

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        certain = self.judge.check(self.build_record(self.history), epoch)
        if self.early and (certain or (self.give_up is not None and self.give_up(self.history))):
            self.model.stop_training = True


def record_every(steps):
    """The logger's `every_n_steps`: every step where steps are compiled, else RECORDS_PER_EPOCH per epoch.

    A logger that records every n-th step runs a second variant of the
    compiled step on the others (see `callbacks/_tap.py`): one more
    compilation per batch shape, ~2 s of XLA on JAX, more than recording every
    step costs on a small model. Eager steps (torch) compile nothing, and a
    record there is host work per step, so they keep a few per epoch.
    """
    if not _backend.eager_steps():
        return 1
    return max(1, (steps or 40) // RECORDS_PER_EPOCH)


def _fractions(history, key):
    return {name: list(values) for name, values in history.get(key, {}).items()}


def run_trial(model, x, y, *, epochs, batch_size, validation_data, fit_kwargs, early=True, give_up=None):
    """Train `model` (a copy) with the instruments; returns (TrialRecord, history dict, certain {kind: epoch}, notes).

    `give_up(history)`, if given, is asked at each epoch's end (after the
    rules) with the epoch logs so far; True stops the trial there (a repair
    attempt behind the runs before it, see `search.behind`).
    """
    steps = steps_per_epoch(x, batch_size, fit_kwargs)
    logger = GradientNormLogger(every_n_steps=record_every(steps))
    # DeadNeuronMonitor probes layer outputs of a graph; on a subclassed model it
    # has nothing to probe (it would only warn that it cannot).
    monitor = DeadNeuronMonitor() if is_graph(model) else None
    outputs = tuple(layer.name for layer in output_layers(model))
    start = initial_loss(model, x, y, batch_size)
    lr = learning_rate(model)
    chance = chance_loss(model)

    def build_record(history):
        grads = logger.history
        return rules.TrialRecord(
            epochs=epochs, steps_per_epoch=steps or 0, initial_loss=start,
            loss=np.asarray(history.get("loss", []), "float64"),
            val_loss=np.asarray(history["val_loss"], "float64") if "val_loss" in history else None,
            lr=lr, grad_layers=grads["layers"], grad_sizes=np.asarray(logger.layer_sizes, "float64"),
            grad_steps=grads["step"], grad_global=grads["global"], grad_norms=grads["norms"],
            update_ratios=grads["update_ratios"],
            dead=_fractions(monitor.history, "dead_fraction") if monitor else {},
            saturated=_fractions(monitor.history, "saturated_fraction") if monitor else {},
            output_layers=outputs, chance_loss=chance)

    watch = _Watch(build_record, early, give_up)
    kwargs = dict(fit_kwargs)
    kwargs.setdefault("verbose", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                  callbacks=[c for c in (logger, monitor, watch) if c is not None], **kwargs)
    notes = sorted({str(w.message) for w in caught if any(c in str(w.message) for c in _CANNOT)})
    if monitor is None:
        notes.append(f"{type(model).__name__} is a subclassed model: dead and saturated units were not measured "
                     "(they need the layer outputs of a Functional or Sequential model)")
    record = build_record(watch.history)
    return record, watch.history, watch.certain, notes
