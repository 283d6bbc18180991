import warnings

import keras
import numpy as np
import pytest

import keras_actkit as ak
from keras_actkit.callbacks import DeadNeuronMonitor

import helpers
from conftest import only_backends


def kill(layer, units):
    """Make `units` dead: a bias far below anything the kernel can reach."""
    bias = helpers.value(layer.bias)
    bias[units] = -100.0
    layer.bias.assign(bias)


def fit_quietly(model, x, y, callbacks, epochs=1, batch_size=32, shuffle=True):
    return helpers.fit_and_warnings(model, x, y, said_by="DeadNeuronMonitor", callbacks=callbacks, epochs=epochs,
                                    batch_size=batch_size, shuffle=shuffle)


def mlp():
    inputs = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu", name="fused")(inputs)
    h = keras.layers.Dense(12, name="lin")(h)
    h = ak.layers.LeakyReLU6(name="lr6")(h)
    h = keras.layers.Dense(10, name="pre_prelu")(h)
    h = ak.layers.PReLU(name="prelu")(h)
    h = keras.layers.Dense(9, name="pre_relu")(h)
    h = keras.layers.ReLU(name="relu")(h)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(h)
    return keras.Model(inputs, outputs)


def numpy_dead_counts(model, x):
    """Independent reference: forward pass in numpy, count units <= 0 on every sample."""
    w = {layer.name: (helpers.value(layer.kernel), helpers.value(layer.bias)) for layer in model.layers if hasattr(layer, "kernel")}
    alpha = helpers.value(model.get_layer("prelu").alpha)

    def dense(name, h):
        kernel, bias = w[name]
        return h @ kernel + bias

    counts = {}
    pre = dense("fused", x)
    counts["fused"] = int((pre.max(0) <= 0).sum())
    pre = dense("lin", np.maximum(pre, 0))
    counts["lr6"] = int((pre.max(0) <= 0).sum())
    pre = dense("pre_prelu", np.minimum(np.where(pre > 0, pre, 0.01 * pre), 6))
    counts["prelu"] = int((pre.max(0) <= 0).sum())
    pre = dense("pre_relu", np.where(pre > 0, pre, alpha * pre))
    counts["relu"] = int((pre.max(0) <= 0).sum())
    return counts


def test_killed_units_are_reported_exactly_and_match_numpy(rng):
    x = rng.normal(size=(96, 8)).astype("float32")
    y = rng.integers(0, 3, 96)
    model = mlp()
    for name, units in (("fused", [0, 3, 5, 7, 11]), ("lin", [1, 2, 4]), ("pre_prelu", [0, 9]), ("pre_relu", [8])):
        kill(model.get_layer(name), units)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    monitor = DeadNeuronMonitor(probe_data=x)
    history, _ = fit_quietly(model, x, y, [monitor])

    expected = numpy_dead_counts(model, x)
    sizes = {"fused": 16, "lr6": 12, "prelu": 10, "relu": 9}
    # At least the killed units; deeper layers of a random net may add their own.
    assert expected["fused"] == 5 and expected["lr6"] == 3 and expected["prelu"] >= 2 and expected["relu"] >= 1
    for name, size in sizes.items():
        assert history.history[f"dead_fraction/{name}"] == [expected[name] / size], name
        assert int(monitor.dead_units[name].sum()) == expected[name]
    assert np.flatnonzero(monitor.dead_units["fused"]).tolist() == [0, 3, 5, 7, 11]


def test_convolution_channels_are_counted_per_channel(rng):
    x = rng.normal(size=(40, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 2, 40)
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    conv = model.get_layer("conv")
    kill(conv, [1, 4])
    # Channel 2 is alive at only one position of one sample: still alive.
    kernel = helpers.value(conv.kernel)
    kernel[..., 2] = 0.0
    kernel[1, 1, 0, 2] = 1.0  # picks x[i, r + 1, c + 1, 0]
    conv.kernel.assign(kernel)
    bias = helpers.value(conv.bias)
    bias[2] = -float(x[:, 1:7, 1:7, 0].max()) + 1e-3
    conv.bias.assign(bias)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    monitor = DeadNeuronMonitor(probe_data=x)
    fit_quietly(model, x, y, [monitor])

    # numpy reference: valid 3x3 convolution, then max over samples and positions.
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # (N, 6, 6, C, 3, 3)
    pre = np.einsum("nhwcij,ijcf->nhwf", windows, helpers.value(conv.kernel)) + helpers.value(conv.bias)
    expected = pre.max(axis=(0, 1, 2)) <= 0
    assert expected.tolist() == [False, True, False, False, True, False]
    assert monitor.dead_units["conv"].tolist() == expected.tolist()


def test_nested_model_and_saturated_tanh(rng):
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 2, 64)
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="inner_dense"), keras.layers.ReLU(name="inner_relu")],
                             name="inner")
    inputs = keras.Input((4,))
    h = keras.layers.Dense(6, activation="tanh", name="tanh")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(inner(h))
    model = keras.Model(inputs, outputs)
    tanh = model.get_layer("tanh")
    kernel = helpers.value(tanh.kernel)
    kernel[:, :3] = 0.0  # units 0-2: constant +-tanh(100), saturated on every sample
    tanh.kernel.assign(kernel)
    bias = np.zeros(6, "float32")
    bias[:3] = [100.0, -100.0, 100.0]
    tanh.bias.assign(bias)
    kill(inner.get_layer("inner_dense"), [0, 2])
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    monitor = DeadNeuronMonitor(probe_data=x)
    history, messages = fit_quietly(model, x, y, [monitor])

    out = np.tanh(x @ helpers.value(tanh.kernel) + helpers.value(tanh.bias))
    saturated = (1 - np.abs(out)).max(0) <= 0.01
    pre = out @ helpers.value(inner.get_layer("inner_dense").kernel) + helpers.value(inner.get_layer("inner_dense").bias)
    assert history.history["saturated_fraction/tanh"] == [saturated.mean()] == [0.5]
    inner_dead = (pre.max(0) <= 0).mean()
    assert history.history["dead_fraction/inner/inner_relu"] == [inner_dead] and inner_dead >= 0.4
    assert sum("'tanh'" in m and "saturated" in m for m in messages) == 1
    assert sum("'inner/inner_relu'" in m and "dead" in m for m in messages) == 1


def test_probe_is_captured_from_training_and_the_step_is_unwrapped(rng):
    x = rng.normal(size=(100, 8)).astype("float32")
    y = rng.integers(0, 3, 100)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    original = (model.make_train_function(), model.train_function)[1]
    monitor = DeadNeuronMonitor(probe_size=40)
    history, _ = fit_quietly(model, x, y, [monitor], epochs=2, batch_size=16)
    assert monitor._probe.shape == (40, 8)
    rows = {row.tobytes() for row in x}
    assert all(row.tobytes() in rows for row in monitor._probe)  # real training samples
    assert len(history.history["dead_fraction/fused"]) == 2
    assert model.train_function is original
    # Fewer samples than probe_size: the first epoch's samples are the probe.
    monitor = DeadNeuronMonitor(probe_size=1000)
    fit_quietly(model, x, y, [monitor], epochs=1, batch_size=16)
    assert monitor._probe.shape == (100, 8)
    assert model.train_function is original


@pytest.mark.parametrize("samples, expected", [(2048, 128), (512, 64), (8192, 256), (40, 40)])
def test_default_probe_is_a_sixteenth_of_an_epoch_within_64_to_256(rng, samples, expected):
    x = rng.normal(size=(samples, 8)).astype("float32")
    y = rng.integers(0, 3, samples)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    monitor = DeadNeuronMonitor()
    fit_quietly(model, x, y, [monitor], epochs=1, batch_size=32, shuffle=False)
    np.testing.assert_array_equal(monitor._probe, x[:expected])


def test_capturing_the_probe_leaves_training_unchanged(rng):
    # The captured batches still go through the step, in order: the weights equal a plain fit's.
    x = rng.normal(size=(96, 8)).astype("float32")
    y = rng.integers(0, 3, 96)
    weights = []
    for callbacks in ([], [DeadNeuronMonitor(probe_size=48)]):
        keras.utils.set_random_seed(0)
        model = mlp()
        model.compile("adam", "sparse_categorical_crossentropy")
        fit_quietly(model, x, y, callbacks, epochs=2, batch_size=16, shuffle=False)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(callbacks[0]._probe, x[:48])


def test_each_fit_captures_its_own_batches_and_trains_as_a_plain_fit(rng):
    # Fits on one model, other data and probe sizes each time (a last, smaller batch in the third):
    # every probe is that fit's first rows, never an earlier fit's, and the weights stay a plain fit's.
    data = [rng.normal(size=(n, 8)).astype("float32") for n in (96, 96, 100)]
    labels = [rng.integers(0, 3, len(x)) for x in data]
    plan = [(16, 40), (16, 24), (16, 1000)]  # (batch size, probe size)
    weights, probes = [], []
    for instrumented in (False, True):
        keras.utils.set_random_seed(0)
        model = mlp()
        model.compile("adam", "sparse_categorical_crossentropy")
        for x, y, (batch_size, probe_size) in zip(data, labels, plan):
            callbacks = [DeadNeuronMonitor(probe_size=probe_size)] if instrumented else []
            fit_quietly(model, x, y, callbacks, epochs=1, batch_size=batch_size, shuffle=False)
            probes += [c._probe for c in callbacks]
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    for probe, x, (_, probe_size) in zip(probes, data, plan):
        np.testing.assert_array_equal(probe, x[:probe_size])


@only_backends("tensorflow")
def test_the_kept_replay_pipeline_holds_no_copy_of_the_data_after_the_capture(rng):
    # TensorFlow replays the captured batches through a pipeline kept per model: its rows are
    # dropped once they have been stepped on, so the model does not keep a copy of the probe's data.
    from keras_actkit._backend import tensorflow_replay

    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    monitor = DeadNeuronMonitor(probe_size=32)
    fit_quietly(model, x, y, [monitor], epochs=1, batch_size=16, shuffle=False)
    np.testing.assert_array_equal(monitor._probe, x[:32])
    (buffers,) = tensorflow_replay._BUFFERS[model].values()
    assert [rows.numpy().shape for rows in buffers._rows] == [(0, 8), (0,)]


def test_an_error_inside_fit_leaves_the_step_unwrapped(rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.make_train_function()
    original = model.train_function

    class Boom(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit_quietly(model, x, y, [DeadNeuronMonitor(probe_size=64), Boom()], batch_size=16)
    # The capture was still running when fit died; the next fit starts clean.
    monitor = DeadNeuronMonitor(probe_size=16)
    fit_quietly(model, x, y, [monitor], batch_size=16)
    assert model.train_function is original
    assert monitor._probe.shape == (16, 8)


def test_revive_recycles_units_dead_twice_and_training_goes_on(rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, 64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    hidden, out = model.get_layer("hidden"), model.get_layer("out")
    dead = [1, 2, 6, 9, 13]
    kill(hidden, dead)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    monitor = DeadNeuronMonitor(probe_data=x, revive=True, seed=0)
    before = helpers.value(hidden.kernel)
    history, _ = fit_quietly(model, x, y, [monitor], epochs=2)

    assert history.history["revived/hidden"] == [0, 5]  # dead on check 1 and 2: revived on 2
    assert monitor.history["still_dead"]["hidden"] == [0, 5]
    assert history.history["revived/total"] == [0, 5]
    kernel, bias = helpers.value(hidden.kernel), helpers.value(hidden.bias)
    assert not np.allclose(kernel[:, dead], before[:, dead])  # redrawn incoming weights
    assert np.all(bias[dead] == 0.0)
    assert np.all(helpers.value(out.kernel)[dead, :] == 0.0)  # outgoing weights zeroed
    optimizer = model.optimizer
    for variable in (hidden.kernel, hidden.bias, out.kernel):
        index = optimizer._get_variable_index(variable)
        axis = 0 if variable is out.kernel else -1
        live = np.setdiff1d(np.arange(16), dead)
        # Adam's first moment restarts at 0; its second moment at the live units' mean (not ~0, which
        # would make the fresh weights' first steps ~3x the learning rate).
        first, second = (helpers.value(slots[index]) for slots in (optimizer._momentums, optimizer._velocities))
        assert np.all(np.take(first, dead, axis=axis) == 0.0)
        live_mean = np.take(second, live, axis=axis).mean()
        assert live_mean > 0
        np.testing.assert_allclose(np.take(second, dead, axis=axis), live_mean, rtol=1e-6)
        assert np.any(np.take(first, live, axis=axis) != 0.0)  # the other units' moments are kept
    pre = x @ kernel + bias
    assert (pre[:, dead].max(0) > 0).all()  # revived units are alive
    # Training goes on, with finite weights and the revived units alive.
    history, _ = fit_quietly(model, x, y, [DeadNeuronMonitor(probe_data=x)], epochs=3)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["dead_fraction/hidden"][-1] < 5 / 16


def test_revivals_with_a_seed_draw_new_weights_each_time_and_repeat_from_run_to_run(rng):
    # Two layers of one kernel shape, each revived twice (dead on two checks in a row, killed again).
    x = rng.normal(size=(64, 16)).astype("float32")
    dead = [1, 2, 6, 9, 13]

    def revived_columns():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, activation="relu", name="a"),
                                  keras.layers.Dense(16, activation="relu", name="b"), keras.layers.Dense(3)])
        monitor = DeadNeuronMonitor(revive=True, seed=0)
        monitor.set_model(model)
        drawn = []
        for _ in range(2):
            for name in "ab":
                kill(model.get_layer(name), dead)
            monitor.check(x)
            monitor.check(x)
            drawn += [helpers.value(model.get_layer(name).kernel)[:, dead] for name in "ab"]
        for counts in monitor.history["revived"].values():  # revived on the second check of each pair
            assert counts[0] == counts[2] == 0 and counts[1] >= 5 and counts[3] >= 5  # (b may have one more)
        return drawn

    first = revived_columns()
    for one, again in zip(first, revived_columns()):
        np.testing.assert_array_equal(one, again)  # the same seed, the same run: the same weights
    a1, b1, a2, b2 = first
    assert not np.any(a1 == b1)  # two layers of one shape each get their own draw
    assert not np.any(a1 == a2) and not np.any(b1 == b2)  # units revived again get new weights


def test_model_without_relu_family_warns_once(rng):
    x = rng.normal(size=(32, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="gelu"), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    monitor = DeadNeuronMonitor()
    _, messages = fit_quietly(model, x, x[:, :1], [monitor], epochs=2)
    assert len(messages) == 1 and "nothing to monitor" in messages[0]
    assert monitor.history["dead_fraction"] == {}


def test_history_plot_and_every_n_steps(rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    monitor = DeadNeuronMonitor(probe_data=(x, y), every_n_steps=2)
    fit_quietly(model, x, y, [monitor], epochs=1, batch_size=8)  # 8 steps: 4 checks
    assert monitor.history["step"] == [2, 4, 6, 8]
    assert len(monitor.history["dead_fraction"]["fused"]) == 4
    figure = monitor.plot()
    assert len(figure.axes[0].lines) == 4 + 1  # four watched layers and the threshold


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(every_n_epochs=0), "every_n_epochs"),
        (dict(every_n_steps=0), "every_n_steps"),
        (dict(threshold=0.0), "threshold"),
        (dict(threshold=1.5), "threshold"),
        (dict(probe_size=0), "probe_size"),
        (dict(saturation=0.5), "saturation"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DeadNeuronMonitor(**kwargs)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.out(self.hidden(x))


@pytest.mark.parametrize("with_probe", [False, True])
def test_subclassed_model_trains_and_is_said_once_not_measured(rng, with_probe):
    # issue 17 item 8: fit crashed with AttributeError '_probe'.
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = Subclassed()
    model.compile("adam", "sparse_categorical_crossentropy")
    monitor = DeadNeuronMonitor(probe_data=x if with_probe else None)
    history, messages = fit_quietly(model, x, y, [monitor], epochs=2, batch_size=16)
    assert len(messages) == 1 and "subclassed" in messages[0] and "nothing is monitored" in messages[0]
    assert not any(key.startswith("dead_fraction") for key in history.history)
    assert monitor.history["dead_fraction"] == {} and len(history.history["loss"]) == 2


def test_multi_output_losses_are_unchanged_by_the_capture(rng):
    # issue 17 item 12: on TensorFlow a capture changed the logged per-output losses (the captured
    # batches ran through a second traced step; seen with a last batch smaller than the others).
    x = rng.normal(size=(264, 8)).astype("float32")  # 16 batches of 16 and one of 8
    y = rng.integers(0, 3, 264)
    logs = []
    for callbacks in ([], [DeadNeuronMonitor(probe_size=48)]):  # 48 samples: 3 batches of 16
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8,))
        h = keras.layers.Dense(16, activation="relu", name="h")(inputs)
        outputs = [keras.layers.Dense(3, activation="softmax", name=n)(h) for n in ("a", "b")]
        model = keras.Model(inputs, outputs)
        model.compile("adam", ["sparse_categorical_crossentropy"] * 2, metrics=[["accuracy"], ["accuracy"]])
        history, _ = fit_quietly(model, x, [y, y], callbacks, epochs=1, batch_size=16, shuffle=False)
        logs.append({k: v for k, v in history.history.items() if not k.startswith("dead_fraction")})
    assert logs[0] == logs[1]


def test_csv_logger_listed_first_still_gets_the_columns(rng, tmp_path):
    # issue 17 item 15.
    import csv

    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    path = tmp_path / "log.csv"
    history, _ = fit_quietly(model, x, y, [keras.callbacks.CSVLogger(str(path)), DeadNeuronMonitor(probe_data=x)],
                             epochs=2)
    rows = list(csv.DictReader(open(path)))
    assert [float(r["dead_fraction/fused"]) for r in rows] == history.history["dead_fraction/fused"]


def test_history_is_per_fit_and_never_mixes_two_models(rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, 64)
    monitor = DeadNeuronMonitor(probe_data=x)
    first = mlp()
    first.compile("adam", "sparse_categorical_crossentropy")
    fit_quietly(first, x, y, [monitor], epochs=2)
    second = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5, activation="relu", name="only"),
                               keras.layers.Dense(3, activation="softmax")])
    kill(second.get_layer("only"), [0, 1])
    second.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    _, messages = fit_quietly(second, x, y, [monitor], epochs=1)
    assert list(monitor.history["dead_fraction"]) == ["only"] and monitor.history["step"] == [2]
    assert monitor.history["dead_fraction"]["only"] == [numpy_fraction_dead(second, x)]
    assert any("'only'" in m for m in messages)  # the warning is per fit, not silenced by the first model's


def numpy_fraction_dead(model, x):
    layer = model.get_layer("only")
    pre = x @ helpers.value(layer.kernel) + helpers.value(layer.bias)
    return float((pre.max(0) <= 0).mean())


def test_check_outside_fit(rng):
    x = rng.normal(size=(32, 8)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5, activation="relu", name="only"),
                              keras.layers.Dense(3, activation="softmax")])
    kill(model.get_layer("only"), [3])
    with pytest.raises(ValueError, match="set_model"):
        DeadNeuronMonitor().check(x)
    monitor = DeadNeuronMonitor()
    monitor.set_model(model)
    assert monitor.check(x) == {"only": numpy_fraction_dead(model, x)}
    with pytest.raises(ValueError, match="`x`"):
        monitor.check(np.full((4, 8), np.nan, "float32"))


def test_nan_samples_of_a_captured_probe_are_left_out(rng):
    # One NaN row in the training data: captured, it made every unit's margin NaN
    # (TensorFlow read 100% dead, JAX/torch 0%).
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5, activation="relu", name="only"),
                              keras.layers.Dense(3, activation="softmax")])
    kill(model.get_layer("only"), [1, 4])
    for layer in model.layers:
        layer.trainable = False  # the NaN batch must not reach the weights (that is NaNGuard's part)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    bad = x.copy()
    bad[3, 2] = np.nan
    history, messages = fit_quietly(model, bad, y, [DeadNeuronMonitor(probe_size=32)], shuffle=False)
    assert history.history["dead_fraction/only"] == [numpy_fraction_dead(model, np.delete(x[:32], 3, axis=0))]
    assert sum("left out" in m for m in messages) == 1


@pytest.mark.parametrize("kwargs, name, error", [
    (dict(probe_data=np.full((4, 8), np.nan, "float32")), "probe_data", ValueError),
    (dict(probe_data=np.zeros((0, 8), "float32")), "probe_data", ValueError),
    (dict(seed="abc"), "seed", TypeError),
    (dict(every_n_epochs=True), "every_n_epochs", TypeError),
    (dict(probe_size=True), "probe_size", TypeError),
    (dict(threshold="0.5"), "threshold", TypeError),
    (dict(revive="yes"), "revive", TypeError),
])
def test_bad_arguments_are_named_at_construction(kwargs, name, error):
    with pytest.raises(error, match=f"`{name}`"):
        DeadNeuronMonitor(**kwargs)


def test_numpy_scalars_are_accepted():
    monitor = DeadNeuronMonitor(every_n_epochs=np.int64(2), threshold=np.float32(0.5), probe_size=np.int32(64),
                                saturation=np.float64(0.02), seed=np.int64(3))
    assert (monitor.every_n_epochs, monitor.probe_size, monitor.seed) == (2, 64, 3)
    assert type(monitor.every_n_epochs) is int and monitor.threshold == 0.5


def _trained_weights(build, fit, callbacks):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile("adam", "sparse_categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(model, callbacks)
    return model.get_weights()


def test_capture_keeps_the_data_order_when_an_epoch_is_shorter_than_the_probe(rng):
    # steps_per_epoch=2 with 3 batches to capture: the capture must stop at the epoch's end
    # (on TensorFlow it takes its batches ahead of the step; one taken too many would be
    # dropped when the epoch ends and the probe is fixed, and epoch 2 would start one batch late).
    x = rng.normal(size=(96, 8)).astype("float32")
    y = rng.integers(0, 3, 96)

    def fit(model, callbacks):
        model.fit(x, y, batch_size=16, epochs=3, steps_per_epoch=2, shuffle=False, verbose=0, callbacks=callbacks)

    monitor = DeadNeuronMonitor(probe_size=48)
    plain, monitored = _trained_weights(mlp, fit, []), _trained_weights(mlp, fit, [monitor])
    for a, b in zip(plain, monitored):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(monitor._probe, x[:32])  # what epoch 1 gave


def test_capture_of_batches_of_different_shapes_leaves_training_unchanged(rng):
    # Sequences padded per batch: each batch has its own length, so the captured batches cannot
    # be joined into one array; they still go through the step unchanged and in order. Two
    # lengths only: each new shape is one more trace and compilation of the step (per fit).
    lengths = [5, 3, 5, 3]
    batches = [(rng.normal(size=(8, n, 4)).astype("float32"), rng.integers(0, 3, 8)) for n in lengths]

    def build():
        inputs = keras.Input((None, 4))
        h = keras.layers.Dense(8, activation="relu", name="relu_dense")(inputs)
        h = keras.layers.GlobalAveragePooling1D()(h)
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))

    def fit(model, callbacks):
        model.fit((batch for batch in batches), epochs=1, steps_per_epoch=len(batches), verbose=0, callbacks=callbacks)

    monitor = DeadNeuronMonitor(probe_size=24)
    plain, monitored = _trained_weights(build, fit, []), _trained_weights(build, fit, [monitor])
    for a, b in zip(plain, monitored):
        np.testing.assert_array_equal(a, b)
    assert len(monitor.history["dead_fraction"]["relu_dense"]) == 1
    np.testing.assert_array_equal(monitor._probe, batches[0][0])  # the batches of the first shape
