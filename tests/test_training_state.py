"""keras_actkit._training_state: bitwise snapshot/restore, the learning rate, the innermost optimizer."""

import keras
import numpy as np
import pytest

from keras_actkit import _keras_internals, _training_state

import helpers


def data(n=64):
    return helpers.separable(n, direction=(1.0, 0.0, -1.0))


def model_with_state(optimizer=None):
    return helpers.batchnorm_classifier(8, keras.layers.ReLU(), optimizer or keras.optimizers.Adam(1e-2))


def values_by_path(model):
    """Every model and optimizer variable's value, read directly (outside fit), keyed by path."""
    variables = list(model.variables) + list(model.optimizer.variables)
    out = {v.path: np.array(keras.ops.convert_to_numpy(v.value)) for v in variables}
    assert len(out) == len(variables), "two variables share a path"
    return out


def assert_bitwise(expected, actual):
    """Same paths, same bytes; between two models built alike, same values in the same order."""
    if isinstance(expected, dict):
        assert set(expected) == set(actual)
        expected, actual = [expected[p] for p in sorted(expected)], [actual[p] for p in sorted(expected)]
    assert len(expected) == len(actual)
    for i, (a, b) in enumerate(zip(expected, actual)):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), i


def test_innermost_optimizer_unwraps_loss_scaling():
    inner = keras.optimizers.SGD(0.1)
    wrapped = keras.optimizers.LossScaleOptimizer(inner)
    assert _training_state.innermost_optimizer(wrapped) is inner
    assert _training_state.innermost_optimizer(inner) is inner


def test_snapshot_restores_every_variable_bitwise():
    x, y = data()
    model = model_with_state()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # moments, BN statistics, iterations != initial
    before = values_by_path(model)
    snapshot = _training_state.Snapshot(model)
    assert {v.path for v in snapshot.variables} == set(before)  # nothing left out
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert len(snapshot.differs()) == len(before) - 1  # all but the learning rate moved
    snapshot.restore()
    assert_bitwise(before, values_by_path(model))
    assert snapshot.differs() == []


def test_restore_keeps_the_variables_asked_for():
    x, y = data()
    model = model_with_state()
    snapshot = _training_state.Snapshot(model)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    iterations = model.optimizer.iterations
    snapshot.restore(keep=[iterations])
    assert int(keras.ops.convert_to_numpy(iterations)) == 4
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[0].kernel), snapshot.values[0])


def test_restore_matches_by_identity_when_a_wrapper_adds_variables():
    """mixed_float16: the LossScaleOptimizer's own variables appear after the snapshot, in front of the
    inner optimizer's; a restore by position would write the kernel into `iterations`."""
    keras.config.set_dtype_policy("mixed_float16")
    x, y = data()
    model = model_with_state()
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    _training_state.innermost_optimizer(model.optimizer).build(model.trainable_variables)
    before = values_by_path(model)
    snapshot = _training_state.Snapshot(model)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # builds the wrapper, then trains
    assert len(model.optimizer.variables) == len(snapshot.variables) - len(model.variables) + 2
    snapshot.restore()
    after = values_by_path(model)
    assert_bitwise(before, {path: after[path] for path in before})


class _MidFit(keras.callbacks.Callback):
    """Snapshot after batch `take`, restore after batch `back`: running values on JAX."""

    def __init__(self, take, back):
        super().__init__()
        self.take, self.back, self.snapshot = take, back, None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.take:
            self.snapshot = _training_state.Snapshot(self.model)
        if batch == self.back:
            self.snapshot.restore()


def test_mid_fit_restore_continues_from_the_restored_state():
    """Every batch is the same batch: restoring after step 4 to the state after step 2 and running
    2 more steps must give exactly a plain 4-step fit (weights, BN statistics, moments, iterations)."""
    x, y = data(16)
    x, y = np.tile(x, (6, 1)), np.tile(y, 6)
    keras.utils.set_random_seed(3)
    reference = model_with_state(keras.optimizers.SGD(0.05, momentum=0.9))
    initial = reference.get_weights()
    reference.fit(x[:64], y[:64], batch_size=16, epochs=1, shuffle=False, verbose=0)

    keras.utils.set_random_seed(3)
    model = model_with_state(keras.optimizers.SGD(0.05, momentum=0.9))
    model.set_weights(initial)
    midfit = _MidFit(take=1, back=3)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[midfit])
    assert_bitwise(list(values_by_path(reference).values()), list(values_by_path(model).values()))
    # The snapshot read the running values after step 2, not the variables' stale ones.
    assert int(midfit.snapshot.values[[v.path for v in midfit.snapshot.variables].index(
        model.optimizer.iterations.path)]) == 2


def test_learning_rate_restores_the_schedule_object_and_the_variable():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model = model_with_state(keras.optimizers.SGD(schedule))
    recorded = _training_state.LearningRate(model)
    recorded.replace(_training_state.StepSchedule([1.0, 2.0], 0))
    assert float(model.optimizer.learning_rate) == 1.0
    recorded.restore()
    assert _keras_internals.learning_rate_object(model.optimizer) is schedule

    model = model_with_state(keras.optimizers.SGD(0.1))
    variables = len(model.optimizer.variables)
    variable = _training_state.learning_rate_variable(model.optimizer)
    recorded = _training_state.LearningRate(model)
    recorded.replace(_training_state.StepSchedule([1.0], 0))
    variable.assign(0.5)
    recorded.restore()
    assert isinstance(_keras_internals.learning_rate_object(model.optimizer), keras.Variable)
    assert np.float32(model.optimizer.learning_rate) == np.float32(0.1)
    assert len(model.optimizer.variables) == variables  # the variable stayed tracked throughout


def test_step_schedule_gives_the_exact_values_from_its_first_step():
    values = np.array([1e-7, 3.3e-4, 0.7], "float32")
    schedule = _training_state.StepSchedule(values, first_step=5)
    got = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 5, 6, 7, 50)]
    assert got == [float(values[0]), float(values[0]), float(values[1]), float(values[2]), float(values[2])]


def test_scale_learning_rate_on_a_variable_and_on_a_schedule():
    model = model_with_state(keras.optimizers.SGD(0.1))
    assert _training_state.scale_learning_rate(model, 0.5) == (0.5, False)
    assert np.float32(model.optimizer.learning_rate) == np.float32(0.1) * np.float32(0.5)
    assert _training_state.unscale_learning_rate(model) is None

    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model = model_with_state(keras.optimizers.SGD(schedule))
    assert _training_state.scale_learning_rate(model, 0.5) == (0.5, True)
    assert _training_state.scale_learning_rate(model, 0.5) == (0.25, True)
    scaled = _keras_internals.learning_rate_object(model.optimizer)
    step = 20  # 0.1 * 0.5 ** (20 / 10) = 0.025, times 0.25
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(scaled(step))), 0.025 * 0.25, rtol=1e-6)
    assert _training_state.unscale_learning_rate(model) == 0.25
    assert _keras_internals.learning_rate_object(model.optimizer) is schedule


def test_set_learning_rate_refuses_a_schedule():
    model = model_with_state(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)))
    with pytest.raises(ValueError, match="schedule"):
        _training_state.set_learning_rate(model, 0.01)


# -- the Keras internals this module relies on (each names the attribute when a release moves it) ----

def test_keras_internals_learning_rate_object():
    optimizer = keras.optimizers.SGD(0.1)
    assert isinstance(getattr(optimizer, "_learning_rate", None), keras.Variable), \
        "Keras moved `optimizer._learning_rate` (keras_actkit._keras_internals.learning_rate_object)"
    variable = _keras_internals.learning_rate_object(optimizer)
    schedule = _training_state.StepSchedule([0.5], 0)
    _keras_internals.put_learning_rate_object(optimizer, schedule)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == 0.5
    _keras_internals.put_learning_rate_object(optimizer, variable)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.1)


def test_keras_internals_build_helpers():
    model = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(), "mse")
    assert hasattr(model, "_flatten_layers"), \
        "Keras moved `Model._flatten_layers` (keras_actkit._keras_internals.model_fully_built)"
    assert hasattr(model, "_symbolic_build"), \
        "Keras moved `Trainer._symbolic_build` (keras_actkit._keras_internals.symbolic_build)"
    assert not _keras_internals.model_fully_built(model)
    _keras_internals.symbolic_build(model, (np.zeros((4, 5), "float32"), np.zeros((4, 2), "float32")))
    assert _keras_internals.model_fully_built(model)
    assert [tuple(v.shape) for v in model.trainable_variables] == [(5, 3), (3,), (3, 2), (2,)]
    assert model.optimizer.built
