"""ReDo on its own (keras_actkit/callbacks/_dead_units/redo.py): `revive` and `set_units` called directly.

Each test kills units by hand, builds the `Site` by hand (so `sites.py` is not
in the way) and checks every variable: revived units' incoming weights are
fresh and drawn with He's scale for the activation, their bias and outgoing
weights are 0, the network computes the same function, every other entry is
bit for bit what it was, and the optimizer's slots restart as
`counting.fresh_slot_value` documents (signed: 0; second moments: the live
units' mean). DeadNeuronMonitor(revive=True) on top is in test_dead_neurons.py.
"""

import keras
import numpy as np
import pytest

from keras_actkit.activation_info import describe_activation
from keras_actkit.callbacks._dead_units import redo
from keras_actkit.callbacks._dead_units.sites import Site

import helpers

DEAD = np.array([1, 4, 9])


def site_of(layer, consumers, activation="relu"):
    info = describe_activation(activation)
    return Site(layer.name, layer, "dead", info, None, True, kernel_layer=layer, consumers=tuple(consumers))


def dense_model(optimizer):
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(12, activation="relu", name="hidden"),
        keras.layers.Dense(3, name="out"),
    ])
    model.compile(optimizer, "mse")
    bias = helpers.value(model.get_layer("hidden").bias)
    bias[DEAD] = -100.0  # dead on every input below
    model.get_layer("hidden").bias.assign(bias)
    return model


def slots_of(optimizer, variable):
    """The optimizer's per-variable slots, found by name (independent of the code under test)."""
    prefix = variable.path.replace("/", "_") + "_"
    return {v.path.split("/")[-1][len(prefix):]: v for v in optimizer.variables
            if v.path.split("/")[-1].startswith(prefix) and tuple(v.shape) == tuple(variable.shape)}


def set_slots(optimizer, variables, rng):
    """Known slot values: a signed first moment, a positive second moment."""
    for variable in variables:
        for kind, slot in slots_of(optimizer, variable).items():
            values = rng.normal(size=slot.shape) if kind == "momentum" else rng.uniform(0.5, 2.0, size=slot.shape)
            slot.assign(values.astype("float32"))


def test_revive_recycles_the_units_and_leaves_the_function_and_everything_else_unchanged(rng):
    model = dense_model(keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    set_slots(model.optimizer, model.trainable_variables, rng)
    hidden, out = model.get_layer("hidden"), model.get_layer("out")
    x = rng.normal(size=(32, 8)).astype("float32")
    assert (x @ helpers.value(hidden.kernel) + helpers.value(hidden.bias))[:, DEAD].max() < 0  # dead
    before = {v.path: helpers.value(v) for v in model.variables + model.optimizer.variables}
    predictions = helpers.value(model(x))

    assert redo.revive(model, site_of(hidden, [out]), DEAD, seed=3) == 3

    after = {v.path: helpers.value(v) for v in model.variables + model.optimizer.variables}
    live = np.setdiff1d(np.arange(12), DEAD)
    kernel, bias, outgoing = after[hidden.kernel.path], after[hidden.bias.path], after[out.kernel.path]
    assert np.all(kernel[:, DEAD] != before[hidden.kernel.path][:, DEAD])  # fresh incoming weights
    np.testing.assert_array_equal(kernel[:, live], before[hidden.kernel.path][:, live])
    assert np.all(bias[DEAD] == 0) and np.array_equal(bias[live], before[hidden.bias.path][live])
    assert np.all(outgoing[DEAD, :] == 0) and np.array_equal(outgoing[live], before[out.kernel.path][live])
    # ReDo's promise: the function is unchanged (the revived units now fire, into zero weights).
    assert (x @ kernel + bias)[:, DEAD].max() > 0
    np.testing.assert_allclose(helpers.value(model(x)), predictions, rtol=1e-6, atol=1e-6)

    # The slots: Adam's first moment restarts at 0; its second at the mean of the live units' entries.
    optimizer = model.optimizer
    for variable, axis in ((hidden.kernel, -1), (hidden.bias, -1), (out.kernel, 0)):
        slots = slots_of(optimizer, variable)
        first, second = (before[slots[kind].path] for kind in ("momentum", "velocity"))
        new_first, new_second = (after[slots[kind].path] for kind in ("momentum", "velocity"))
        assert np.all(np.take(new_first, DEAD, axis=axis) == 0)
        np.testing.assert_allclose(np.take(new_second, DEAD, axis=axis), np.take(second, live, axis=axis).mean(),
                                   rtol=1e-6)
        np.testing.assert_array_equal(np.take(new_first, live, axis=axis), np.take(first, live, axis=axis))
        np.testing.assert_array_equal(np.take(new_second, live, axis=axis), np.take(second, live, axis=axis))
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    revived = (hidden.kernel, hidden.bias, out.kernel)
    assert changed == {v.path for v in revived} | {s.path for v in revived for s in slots_of(optimizer, v).values()}


def test_sgd_momentum_restarts_at_zero_and_an_unbuilt_optimizer_is_left_alone(rng):
    model = dense_model(keras.optimizers.SGD(0.1, momentum=0.9))
    hidden, out = model.get_layer("hidden"), model.get_layer("out")
    assert redo.revive(model, site_of(hidden, [out]), DEAD, seed=0) == 3  # optimizer not built: no slots yet
    assert not model.optimizer.built
    model.optimizer.build(model.trainable_variables)
    set_slots(model.optimizer, model.trainable_variables, rng)
    momentum = slots_of(model.optimizer, out.kernel)["momentum"]
    before = helpers.value(momentum)
    redo.revive(model, site_of(hidden, [out]), DEAD, seed=0)
    after = helpers.value(momentum)
    assert np.all(after[DEAD] == 0)
    live = np.setdiff1d(np.arange(12), DEAD)
    np.testing.assert_array_equal(after[live], before[live])


def test_the_slots_of_the_optimizer_inside_a_loss_scale_wrapper_restart(rng):
    model = dense_model(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1, momentum=0.9)))
    model.optimizer.build(model.trainable_variables)
    inner = model.optimizer.inner_optimizer
    set_slots(inner, model.trainable_variables, rng)
    hidden = model.get_layer("hidden")
    redo.revive(model, site_of(hidden, [model.get_layer("out")]), DEAD, seed=0)
    assert np.all(helpers.value(slots_of(inner, hidden.kernel)["momentum"])[:, DEAD] == 0)


def test_nothing_to_revive_changes_nothing(rng):
    model = dense_model("adam")
    hidden = model.get_layer("hidden")
    before = helpers.values(model.variables)
    assert redo.revive(model, site_of(hidden, []), np.array([], int), seed=0) == 0
    unrevivable = site_of(hidden, [])
    unrevivable.kernel_layer = None
    assert redo.revive(model, unrevivable, DEAD, seed=0) == 0
    helpers.assert_same_values(helpers.values(model.variables), before)


def test_convolution_channels_and_their_readers(rng):
    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(6, 3, activation="relu", name="conv")
    reader = keras.layers.Conv2D(4, 1, name="reader")
    h = reader(conv(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
    channels = np.array([0, 5])
    bias = helpers.value(conv.bias)
    bias[channels] = -100.0
    conv.bias.assign(bias)
    x = rng.normal(size=(4, 6, 6, 2)).astype("float32")
    kernel_before, reader_before, predictions = helpers.value(conv.kernel), helpers.value(reader.kernel), helpers.value(model(x))

    assert redo.revive(model, site_of(conv, [reader]), channels, seed=1) == 2

    kernel, read = helpers.value(conv.kernel), helpers.value(reader.kernel)
    kept = [1, 2, 3, 4]
    assert np.all(kernel[..., channels] != kernel_before[..., channels])  # every (i, j, in) of the channel
    np.testing.assert_array_equal(kernel[..., kept], kernel_before[..., kept])
    assert np.all(read[:, :, channels, :] == 0)  # the reader's input channels: axis -2
    np.testing.assert_array_equal(read[:, :, kept, :], reader_before[:, :, kept, :])
    np.testing.assert_allclose(helpers.value(model(x)), predictions, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_fresh_weights_have_he_s_scale_for_the_activation(slope):
    # He for a leaky slope a: Var(w) = 2 / ((1 + a^2) fan_in), from a normal truncated at two
    # standard deviations of the untruncated one (Keras's truncated_normal).
    fan_in, units = 256, 64
    model = keras.Sequential([keras.Input((fan_in,)), keras.layers.Dense(units, name="wide"), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    wide = model.get_layer("wide")
    wide.kernel.assign(np.zeros((fan_in, units), "float32"))
    revived = np.arange(0, units, 2)  # 32 columns: 8192 fresh values
    activation = keras.layers.LeakyReLU(negative_slope=slope)
    redo.revive(model, site_of(wide, [model.layers[1]], activation), revived, seed=7)
    fresh = helpers.value(wide.kernel)[:, revived]
    std = np.sqrt(2.0 / ((1.0 + slope ** 2) * fan_in))
    assert abs(fresh.mean()) < 0.05 * std
    assert fresh.std() == pytest.approx(std, rel=0.03)
    assert np.abs(fresh).max() <= 2 * std / 0.87962566103423978 * (1 + 1e-6)  # truncated
    assert np.all(helpers.value(wide.kernel)[:, 1::2] == 0)  # the other columns were not drawn into


def test_a_seed_gives_the_same_fresh_weights_and_another_seed_others():
    def revived_with(seed):
        keras.utils.set_random_seed(0)
        model = dense_model("sgd")
        hidden = model.get_layer("hidden")
        redo.revive(model, site_of(hidden, [model.get_layer("out")]), DEAD, seed=seed)
        return helpers.value(hidden.kernel)[:, DEAD]

    first = revived_with(5)
    np.testing.assert_array_equal(revived_with(5), first)
    assert not np.any(revived_with(6) == first)


def test_revival_seed_is_none_without_a_seed_and_its_own_per_revival():
    assert redo.revival_seed(None, 1) is None
    seeds = [redo.revival_seed(3, count) for count in range(1, 50)]
    assert seeds == [redo.revival_seed(3, count) for count in range(1, 50)]  # reproducible
    assert len(set(seeds)) == len(seeds)  # each revival its own
    assert not set(seeds) & {redo.revival_seed(4, count) for count in range(1, 50)}  # another seed, others
    assert all(isinstance(s, int) and 0 <= s < 2 ** 31 for s in seeds)  # a seed every backend takes


def test_set_units_along_an_axis_from_a_source_or_zero():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d")])
    kernel = model.get_layer("d").kernel
    start = np.arange(12, dtype="float32").reshape(3, 4)
    kernel.assign(start)
    source = -np.arange(12, dtype="float32").reshape(3, 4) - 100
    redo.set_units(model, kernel, np.array([0, 2]), axis=-1, source=source)
    expected = start.copy()
    expected[:, [0, 2]] = source[:, [0, 2]]  # the source's own entries for those units
    np.testing.assert_array_equal(helpers.value(kernel), expected)
    redo.set_units(model, kernel, np.array([1]), axis=0, source=None)  # no optimizer: weights only
    expected[1, :] = 0
    np.testing.assert_array_equal(helpers.value(kernel), expected)
