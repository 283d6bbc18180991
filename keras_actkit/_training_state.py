"""Training state: snapshot and restore of a model's and its optimizer's variables, and the learning rate.

What `LRFinder` and `NaNGuard` both need, in one place:

- `innermost_optimizer`: the optimizer inside any wrapper (`LossScaleOptimizer`),
  the one that holds the learning rate and the step counter;
- `state_variables`: every variable a bit-for-bit restore must cover;
- `Snapshot`: their values at one moment, written back to the same variable
  objects (by identity, never by position: a `LossScaleOptimizer` may create
  variables after the snapshot, and lists would no longer line up), also in
  the middle of a JAX `fit`, where the running values live in the trainer's
  state (through `_backend.read_values` / `write_values`);
- the learning rate, constant or schedule: `LearningRate` (record and put
  back), `set_learning_rate`, `scale_learning_rate` / `unscale_learning_rate`
  (a factor for the rest of a fit), `StepSchedule` (one exact value per
  optimizer step).

Example:
```python
snapshot = Snapshot(model)              # every model and optimizer variable
learning_rate = LearningRate(model)     # the variable's value or the schedule object
learning_rate.replace(StepSchedule(lrs, first_step=0))
model.fit(x, y)
snapshot.restore()                      # bit for bit, also from inside a JAX fit
learning_rate.restore()
```
"""

import keras
import numpy as np

from keras_actkit import _backend, _keras_internals

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


def innermost_optimizer(optimizer):
    """The optimizer inside every wrapper (`inner_optimizer`): it holds the learning rate."""
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    return optimizer


def compiled_optimizer(model, who):
    """`model.optimizer`, or a ValueError naming `who` when the model was never compiled."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(model, "compiled", True):
        raise ValueError(f"{who} needs a compiled model: call model.compile(optimizer, loss) first.")
    return optimizer


def state_variables(model, exclude=()):
    """Every variable of `model` and of its optimizer (wrappers included), each once.

    Weights, non-trainable state (BatchNormalization statistics, seed
    generators) and every optimizer variable (iterations, moments, the
    learning rate, a loss scale), except those in `exclude`.
    """
    skip = {id(v) for v in exclude}
    optimizer = getattr(model, "optimizer", None)
    out = []
    for variable in list(model.variables) + list(optimizer.variables if optimizer is not None else []):
        if id(variable) not in skip:
            skip.add(id(variable))
            out.append(variable)
    return out


def _floating(values):
    return [v for v in values if np.issubdtype(v.dtype, np.floating)]


class Snapshot:
    """The values of `variables` now, restorable bit for bit into the same variable objects.

    The values are read when the snapshot is made (the running values in the
    middle of a JAX `fit`), and `restore` writes them so that the next step of
    a running `fit` starts from them.

    Args:
        model: The model the variables belong to (its trainer holds the
            running values in the middle of a JAX `fit`).
        variables: The variables to record. Defaults to `state_variables(model)`.
    """

    def __init__(self, model, variables=None):
        self.model = model
        self.variables = list(state_variables(model) if variables is None else variables)
        self.values = _backend.read_values(model, self.variables)

    def all_finite(self):
        """True when every floating-point value recorded is finite."""
        return all(np.all(np.isfinite(v)) for v in _floating(self.values))

    def restore(self, keep=()):
        """Write the recorded values back; the variables in `keep` keep their current values."""
        held = {id(v) for v in keep}
        pairs = [(v, value) for v, value in zip(self.variables, self.values) if id(v) not in held]
        for variable, value in pairs:
            if tuple(variable.shape) != value.shape:
                raise ValueError(f"Cannot restore {variable.path}: its shape is now {tuple(variable.shape)}, "
                                 f"the snapshot holds {value.shape}.")
        _backend.write_values(self.model, [v for v, _ in pairs], [value for _, value in pairs])

    def differs(self):
        """Paths of the recorded variables whose current value is not bitwise the recorded one."""
        now = _backend.read_values(self.model, self.variables)
        return [v.path for v, a, b in zip(self.variables, self.values, now)
                if a.shape != b.shape or a.tobytes() != b.tobytes()]


def all_finite(model, variables):
    """True when every floating-point value of `variables` is finite (running values on JAX)."""
    return all(np.all(np.isfinite(v)) for v in _floating(_backend.read_values(model, variables)))


# -- learning rate ---------------------------------------------------------------


def learning_rate_variable(optimizer):
    """The innermost optimizer's learning-rate variable, or None when it is a schedule or callable."""
    current = _keras_internals.learning_rate_object(innermost_optimizer(optimizer))
    return current if isinstance(current, keras.Variable) else None


def set_learning_rate(model, value):
    """Set a constant learning rate (also mid-fit on JAX); ValueError when the optimizer runs a schedule."""
    variable = learning_rate_variable(model.optimizer)
    if variable is None:
        raise ValueError(
            "The optimizer's learning rate is a schedule, not a settable value; build the schedule around "
            f"the value ({value:.3g}) yourself.")
    _backend.write_values(model, [variable], [np.asarray(value, dtype=variable.dtype)])


class LearningRate:
    """The learning rate in use now (the variable's value, or the schedule object), to put back later.

    Args:
        model: A compiled model; the innermost optimizer's learning rate is recorded.
    """

    def __init__(self, model):
        self.model = model
        self.optimizer = innermost_optimizer(model.optimizer)
        self.value = _keras_internals.learning_rate_object(self.optimizer)
        variable = learning_rate_variable(self.optimizer)
        self.recorded = None if variable is None else Snapshot(model, [variable])

    def replace(self, schedule):
        """Run `schedule` instead until `restore` (the variable stays tracked by the optimizer)."""
        _keras_internals.put_learning_rate_object(self.optimizer, schedule)

    def restore(self):
        """Put the recorded object back, and the variable's recorded value."""
        _keras_internals.put_learning_rate_object(self.optimizer, self.value)
        if self.recorded is not None:
            self.recorded.restore()


class ScaledSchedule(LearningRateSchedule):
    """A schedule times a factor, for the rest of one fit (never saved)."""

    def __init__(self, schedule, factor):
        self.schedule, self.factor = schedule, factor

    def __call__(self, step):
        return self.schedule(step) * self.factor

    def get_config(self):  # pragma: no cover - never saved: removed when the fit ends
        return {"factor": self.factor}


class StepSchedule(LearningRateSchedule):
    """One learning rate per optimizer step from `first_step` on, the last one held after the end.

    `lr(step) = values[clip(step - first_step, 0, len(values) - 1)]`, indexed
    in the traced step, so every backend uses exactly the float32 values given.

    Args:
        values: The learning rates, one per step.
        first_step: The optimizer step (`iterations`) that uses `values[0]`.
    """

    def __init__(self, values, first_step):
        self.values = np.asarray(values, dtype="float32")
        self.first_step = int(first_step)

    def __call__(self, step):
        index = keras.ops.clip(keras.ops.cast(step, "int32") - self.first_step, 0, len(self.values) - 1)
        return keras.ops.take(keras.ops.convert_to_tensor(self.values), index)

    def get_config(self):
        return {"values": self.values.tolist(), "first_step": self.first_step}


def scale_learning_rate(model, factor):
    """Multiply the learning rate in use by `factor` for the rest of the fit.

    A variable is multiplied in place (also mid-fit on JAX). A schedule is
    wrapped in a `ScaledSchedule` (or its factor multiplied); the traced step
    holds the factor as a constant, so the caller must trace it again.

    Args:
        model: A compiled model.
        factor: The multiplier (e.g. 0.5).

    Returns:
        `(total_factor, retrace)`: the factor now applied to the schedule (or
        `factor` for a variable) and whether the step must be traced again;
        `(None, False)` when the learning rate is neither a variable nor a schedule.
    """
    optimizer = innermost_optimizer(model.optimizer)
    current = _keras_internals.learning_rate_object(optimizer)
    if isinstance(current, ScaledSchedule):
        current.factor *= factor
        return current.factor, True
    if isinstance(current, LearningRateSchedule):
        _keras_internals.put_learning_rate_object(optimizer, ScaledSchedule(current, factor))
        return factor, True
    variable = learning_rate_variable(optimizer)
    if variable is None:
        return None, False
    (value,) = _backend.read_values(model, [variable])
    _backend.write_values(model, [variable], [value * factor])
    return factor, False


def unscale_learning_rate(model):
    """Put back the schedule `scale_learning_rate` wrapped; returns the factor removed, or None."""
    optimizer = innermost_optimizer(model.optimizer)
    current = _keras_internals.learning_rate_object(optimizer)
    if not isinstance(current, ScaledSchedule):
        return None
    _keras_internals.put_learning_rate_object(optimizer, current.schedule)
    return current.factor
