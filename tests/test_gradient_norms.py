"""GradientNormLogger: logged norms equal an independent recomputation on every backend."""

import csv
import warnings

import keras
import numpy as np
import pytest
from autodiff import model_grads
from conftest import only_backends

import keras_actkit as ak
from keras_actkit.callbacks import GradientNormLogger

import helpers


def _model(d=6, classes=3):
    return keras.Sequential([
        keras.Input((d,)),
        keras.layers.Dense(8, activation="tanh", name="first"),
        ak.layers.PReLU(name="prelu"),
        keras.layers.Dense(classes, activation="softmax", name="out"),
    ])


def _expected_norms(grads, variables):
    per_layer = {}
    for g, v in zip(grads, variables):
        key = v.path.split("/")[1]
        per_layer[key] = per_layer.get(key, 0.0) + float(np.sum(np.square(g.astype("float64"))))
    return {k: np.sqrt(s) for k, s in per_layer.items()}


def test_norms_and_update_ratio_match_independent_gradient():
    x, y = helpers.random_classification()
    model = _model()
    lr = 0.1
    model.compile(keras.optimizers.SGD(lr), keras.losses.SparseCategoricalCrossentropy())
    before = helpers.values(model.trainable_variables)
    grads = model_grads(model, x, y, keras.losses.SparseCategoricalCrossentropy())
    logger = GradientNormLogger(every_n_steps=1)
    history = model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[logger])

    expected = _expected_norms(grads, model.trainable_variables)
    assert logger.history["layers"] == ["first", "prelu", "out"]
    np.testing.assert_array_equal(logger.history["step"], [0])
    for i, name in enumerate(logger.history["layers"]):
        np.testing.assert_allclose(logger.history["norms"][0, i], expected[name], rtol=1e-5)
        np.testing.assert_allclose(history.history[f"grad_norm/{name}"][0], expected[name], rtol=1e-5)
    np.testing.assert_allclose(logger.history["global"][0], np.sqrt(sum(e ** 2 for e in expected.values())),
                               rtol=1e-5)
    # Plain SGD: Δw = -lr·g, so ‖Δw‖/‖w‖ = lr·‖g‖/‖w‖ per layer (closed form).
    norms_w = _expected_norms(before, model.trainable_variables)
    for i, name in enumerate(logger.history["layers"]):
        np.testing.assert_allclose(logger.history["update_ratios"][0, i], lr * expected[name] / norms_w[name],
                                   rtol=1e-4)


def test_global_norm_of_layers_whose_squares_overflow_float32_together():
    # Two layers of gradient norm 1.5e19 each: each squared (2.25e38) is a float32, their sum
    # (4.5e38) is not. The global norm must still be sqrt(2) * 1.5e19, as numpy computes in float64.
    scale = 1.5e19
    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="a"),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="b")])

    def loss(y_true, y_pred):  # d/da = d/db = scale, for x = 1 and both weights 1
        return scale * keras.ops.mean(y_pred)

    model.compile(keras.optimizers.SGD(1e-30), loss)
    x, y = np.ones((1, 1), "float32"), np.zeros((1, 1), "float32")
    grads = model_grads(model, x, y, loss)
    logger = GradientNormLogger(every_n_steps=1)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    expected = _expected_norms(grads, model.trainable_variables)
    np.testing.assert_allclose(logger.history["norms"][0], [expected["a"], expected["b"]], rtol=1e-6)
    np.testing.assert_allclose(logger.history["global"][0], np.sqrt(expected["a"] ** 2 + expected["b"] ** 2),
                               rtol=1e-6)


def test_a_finite_gradient_whose_squares_pass_float32_is_logged_finite():
    # A gradient of norm ~1.4e25 is finite: its squared entries (1e50) are not float32 numbers. The
    # logged norm must be the float64 norm, not inf (inf reads as a non-finite gradient, for the logger
    # and for diagnose alike).
    scale = 1e25
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="a")])

    def loss(y_true, y_pred):  # d/dw = scale for each of the two weights, for x = 1
        return scale * keras.ops.mean(y_pred)

    lr = 1e-26  # a step of 0.1 per weight
    model.compile(keras.optimizers.SGD(lr), loss)
    x, y = np.ones((1, 2), "float32"), np.zeros((1, 1), "float32")
    grads = model_grads(model, x, y, loss)
    logger = GradientNormLogger(every_n_steps=1)
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    expected = _expected_norms(grads, model.trainable_variables)["a"]
    assert np.isfinite(expected)
    np.testing.assert_allclose(logger.history["norms"][0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(history.history["grad_norm/a"][0], expected, rtol=1e-6)
    # ‖Δw‖/‖w‖ = lr·‖g‖/‖w‖ (closed form; the weights were all 1).
    np.testing.assert_allclose(logger.history["update_ratios"][0, 0], lr * expected / np.sqrt(2), rtol=1e-5)


def test_every_n_steps_records_those_steps_and_epoch_means():
    x, y = helpers.random_classification(n=64)
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    logger = GradientNormLogger(every_n_steps=3)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[logger])
    np.testing.assert_array_equal(logger.history["step"], [0, 3, 6, 9, 12, 15])
    first_epoch = logger.history["global"][:3]
    np.testing.assert_allclose(history.history["grad_norm/global"][0], first_epoch.mean(), rtol=1e-6)


def test_a_later_fit_records_at_its_own_interval():
    # Each fit's step is traced for its own callbacks (on JAX a rebuilt train
    # function with the same state layout used to rerun the previous trace).
    x, y = helpers.random_classification(n=64)
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    for every, expected in ((1, range(0, 8)), (4, [8, 12]), (1, range(16, 24))):
        logger = GradientNormLogger(every_n_steps=every)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
        np.testing.assert_array_equal(logger.history["step"], list(expected))


def test_gradient_accumulation_records_every_nth_update():
    # The host foresees which calls update and record (the others run a step traced without the logger).
    x, y = helpers.random_classification(n=96)
    model = _model()
    model.compile(keras.optimizers.Adam(0.01, gradient_accumulation_steps=3), "sparse_categorical_crossentropy")
    logger = GradientNormLogger(every_n_steps=2)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[logger])
    # 12 batches per epoch: 4 updates per epoch, steps 0..7.
    np.testing.assert_array_equal(logger.history["step"], [0, 2, 4, 6])
    assert np.all(np.isfinite(logger.history["norms"])) and np.all(logger.history["norms"] > 0)


def test_gradient_accumulation_next_to_the_guard_decides_in_graph():
    # A skipped micro-step shifts the accumulation windows away from the host's
    # count of calls: the logger must then decide in-graph which calls update.
    x, y = helpers.random_classification(n=64)
    x[16, 0] = np.nan  # batch 2, the first micro-step of the second window
    model = _model()
    model.compile(keras.optimizers.Adam(0.01, gradient_accumulation_steps=2), "sparse_categorical_crossentropy")
    logger, guard = GradientNormLogger(every_n_steps=1), ak.callbacks.NaNGuard()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[logger, guard])
    assert guard.skipped == 1
    # Batches 0-1 update (step 0); batch 2 is skipped, so batches 3-4, then 5-6
    # make the next windows (steps 1, 2); batch 7 starts a window it cannot
    # finish. Counting calls, the host would have picked batches 1, 3, 5, 7:
    # only batch 1 is an update among them.
    np.testing.assert_array_equal(logger.history["step"], [0, 1, 2])
    assert np.all(np.isfinite(logger.history["norms"]))


def test_gradient_accumulation_logs_the_window_mean():
    x, y = helpers.random_classification(n=16)
    model = _model()
    loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2), loss)
    g0 = model_grads(model, x[:8], y[:8], loss)
    g1 = model_grads(model, x[8:], y[8:], loss)
    logger = GradientNormLogger(every_n_steps=1)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
    expected = _expected_norms([(a + b) / 2 for a, b in zip(g0, g1)], model.trainable_variables)
    np.testing.assert_array_equal(logger.history["step"], [0])
    for i, name in enumerate(logger.history["layers"]):
        np.testing.assert_allclose(logger.history["norms"][0, i], expected[name], rtol=1e-5)


@only_backends("tensorflow", "jax")  # torch's trainer refuses steps_per_execution > 1
def test_steps_per_execution_reads_the_recorded_step():
    x, y = helpers.random_classification(n=64)
    loss = keras.losses.SparseCategoricalCrossentropy()
    model = _model()
    initial = model.get_weights()
    model.compile(keras.optimizers.SGD(0.05), loss, steps_per_execution=2)
    logger = GradientNormLogger(every_n_steps=4)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
    np.testing.assert_array_equal(logger.history["step"], [0, 4])
    # Replay the first four steps without the logger, then take the gradient of batch 4.
    replay = _model()
    replay.set_weights(initial)
    replay.compile(keras.optimizers.SGD(0.05), loss)
    replay.fit(x[:32], y[:32], batch_size=8, epochs=1, shuffle=False, verbose=0)
    expected = _expected_norms(model_grads(replay, x[32:40], y[32:40], loss), replay.trainable_variables)
    for i, name in enumerate(logger.history["layers"]):
        np.testing.assert_allclose(logger.history["norms"][1, i], expected[name], rtol=1e-4)


def test_loss_scale_optimizer_logs_unscaled_gradients():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = helpers.random_classification()
    model = _model()
    loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(keras.optimizers.SGD(0.01), loss)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    keras.config.set_dtype_policy("float32")
    reference = _model()
    reference.set_weights(model.get_weights())
    grads = model_grads(reference, x, y, loss)
    logger = GradientNormLogger(every_n_steps=1)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
    expected = _expected_norms(grads, reference.trainable_variables)
    # float16 forward pass: agreement to float16 precision, not to the loss scale (32768).
    for i, name in enumerate(logger.history["layers"]):
        np.testing.assert_allclose(logger.history["norms"][0, i], expected[name], rtol=2e-2)
    assert "apply" not in model.optimizer.inner_optimizer.__dict__


def test_leaves_no_trace_and_saved_model_loads(tmp_path):
    x, y = helpers.random_classification()
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    count = len(model.optimizer.variables)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[GradientNormLogger(), ak.callbacks.NaNGuard()])
    assert len(model.optimizer.variables) == count
    assert "apply" not in model.optimizer.__dict__
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert len(loaded.optimizer.variables) == count
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    # A later plain fit and a second fit with the logger both work.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    logger = GradientNormLogger(every_n_steps=1)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[logger])
    assert len(logger.history["step"]) == 4


def test_unwrapped_after_an_exception_inside_fit():
    x, y = helpers.random_classification()
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    count = None

    class Boom(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            nonlocal count
            if batch == 2:
                count = len(self.model.optimizer.variables)
                raise RuntimeError("boom")

    def data():
        for i in range(4):
            if i == 3:
                raise RuntimeError("bad data")
            yield x[8 * i: 8 * i + 8], y[8 * i: 8 * i + 8]

    with pytest.raises(Exception, match="bad data"):  # TensorFlow wraps it in its own error
        model.fit(data(), epochs=1, verbose=0, callbacks=[GradientNormLogger()])
    # The wrapper is in place only while a step runs (torch's trainer fetches
    # data outside the step): nothing is left, on every backend.
    assert "apply" not in model.optimizer.__dict__
    plain = len(model.optimizer.variables)
    # An exception raised in another callback (outside the step) is cleaned up by the next fit.
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[GradientNormLogger(), Boom()])
    # The tap's variable is never among the optimizer's, on JAX neither (issue 17 item 1: checkpoints).
    assert count == plain
    assert "apply" not in model.optimizer.__dict__
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    logger = GradientNormLogger(every_n_steps=1)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[logger])
    assert len(model.optimizer.variables) == plain
    assert "apply" not in model.optimizer.__dict__


def test_csv_logger_gets_epoch_columns(tmp_path):
    x, y = helpers.random_classification()
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    path = tmp_path / "log.csv"
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[GradientNormLogger(every_n_steps=100), keras.callbacks.CSVLogger(str(path))])
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 2
    assert {"grad_norm/global", "grad_norm/first", "update_ratio/out"} <= set(rows[0])
    assert np.isfinite(float(rows[0]["grad_norm/global"]))


def test_vanishing_warning_names_the_first_layers():
    keras.utils.set_random_seed(0)
    layers = [keras.Input((6,))] + [keras.layers.Dense(16, activation="sigmoid", name=f"s{i}") for i in range(12)]
    model = keras.Sequential(layers + [keras.layers.Dense(3, activation="softmax", name="out")])
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x, y = helpers.random_classification()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[GradientNormLogger(every_n_steps=1)])
    said = [str(w.message) for w in caught if "vanishing" in str(w.message)]
    assert len(said) == 1 and "'s0'" in said[0]


# Step 25 has a full window of 20 records before it (the vectorised test), step 8 only 8 (one by one).
@pytest.mark.parametrize("jump", [25, 8])
def test_exploding_warning_once(jump):
    x, y = helpers.random_classification(n=256)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="first"),
                              keras.layers.Dense(3, name="out")])
    # Logits, so the loss does not clip its gradient away when the inputs blow up.
    model.compile(keras.optimizers.SGD(1e-6), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    big = x.copy()
    big[8 * jump:] *= 1e4  # the later batches have a far larger gradient
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(big, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                  callbacks=[GradientNormLogger(every_n_steps=1)])
    said = [str(w.message) for w in caught if "exploding" in str(w.message)]
    assert len(said) == 1 and f"step {jump}:" in said[0]
    # Which norm the test uses, and that it is taken before any clipping.
    assert "global L2 norm" in said[0] and "before any clipnorm/clipvalue" in said[0]


def test_plot_is_a_layers_by_steps_heatmap(tmp_path):
    x, y = helpers.random_classification()
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    logger = GradientNormLogger(every_n_steps=1)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[logger])
    figure = logger.plot()
    image = figure.axes[0].images[0]
    assert image.get_array().shape == (3, 8)
    figure.savefig(tmp_path / "norms.png")


@pytest.mark.parametrize("kwargs, name, error", [
    ({"every_n_steps": 0}, "every_n_steps", ValueError), ({"every_n_steps": 1.5}, "every_n_steps", TypeError),
    ({"vanishing_ratio": 0}, "vanishing_ratio", ValueError), ({"vanishing_ratio": 1}, "vanishing_ratio", ValueError),
    ({"exploding_factor": 1}, "exploding_factor", ValueError), ({"window": 1}, "window", ValueError),
    # The package's policy (keras_actkit._validation): bool is not an integer, strings are not numbers.
    ({"every_n_steps": True}, "every_n_steps", TypeError), ({"window": "20"}, "window", TypeError),
    ({"exploding_factor": float("nan")}, "exploding_factor", ValueError),
    ({"verbose": "yes"}, "verbose", TypeError),
])
def test_bad_arguments(kwargs, name, error):
    # A wrong type is a TypeError, a value out of range a ValueError (keras_actkit._validation's policy).
    with pytest.raises(error, match=f"`{name}`"):
        GradientNormLogger(**kwargs)


def test_numpy_scalars_are_accepted():
    logger = GradientNormLogger(every_n_steps=np.int64(3), vanishing_ratio=np.float32(1e-4),
                                exploding_factor=np.float64(5.0), window=np.int32(4))
    assert (logger.every_n_steps, logger.window) == (3, 4) and type(logger.every_n_steps) is int
    assert logger.vanishing_ratio == pytest.approx(1e-4)


def test_unwritable_log_dir_fails_at_construction(tmp_path):
    pytest.importorskip("tensorflow")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="`log_dir`"):
        GradientNormLogger(log_dir=blocker / "tb")


def test_all_three_callbacks_in_one_fit():
    x, y = helpers.random_classification(n=64)
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    monitor = ak.callbacks.DeadNeuronMonitor()  # captures its probe from the (tapped) train function
    logger, guard = GradientNormLogger(every_n_steps=2), ak.callbacks.NaNGuard()
    bad = x.copy()
    bad[9, 0] = np.nan
    history = model.fit(bad, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor, logger, guard])
    assert guard.skipped == 2
    assert len(monitor.history["step"]) == 2 and "dead_fraction/prelu" in history.history
    # Next to the guard the logger records every 2nd batch, counted from the
    # optimizer step at the epoch's start (0, then 7), and each record keeps
    # the step it was made at. Batch 1 of each epoch is skipped and does not
    # advance the step: epoch 1 records batches 0, 2, 4, 6 = steps 0, 1, 3, 5;
    # epoch 2 batches 1 (the skipped one, step 8, NaN), 3, 5, 7 = steps 8, 9, 11, 13.
    np.testing.assert_array_equal(logger.history["step"], [0, 1, 3, 5, 8, 9, 11, 13])
    assert np.isnan(logger.history["global"][4]) and np.all(np.isfinite(np.delete(logger.history["global"], 4)))
    assert "apply" not in model.optimizer.__dict__


def test_log_dir_writes_the_records_as_tensorboard_scalars(tmp_path):
    tf = pytest.importorskip("tensorflow")
    x, y = helpers.random_classification()
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    logger = GradientNormLogger(every_n_steps=2, log_dir=tmp_path / "tb")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[logger])
    scalars, histograms = {}, 0
    for path in (tmp_path / "tb").glob("events.out.tfevents.*"):
        for raw in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if value.tag == "grad_norm/log10_layers":
                    histograms += 1
                else:
                    scalars[(value.tag, event.step)] = float(tensor)
    history = logger.history
    assert histograms == len(history["step"]) == 4
    for k, step in enumerate(history["step"]):
        assert scalars[("grad_norm/global", step)] == pytest.approx(history["global"][k], rel=1e-6)
        assert scalars[("grad_norm/out", step)] == pytest.approx(history["norms"][k, 2], rel=1e-6)
        assert scalars[("update_ratio/first", step)] == pytest.approx(history["update_ratios"][k, 0], rel=1e-6)


def test_embedding_norm_sums_repeated_ids_before_squaring():
    # issue 17 item 11: on TensorFlow the Embedding's gradient is IndexedSlices with one row
    # per looked-up id; rows of a repeated id must be summed before squaring.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 4, size=(16, 6)).astype("int32")  # 4 ids, each repeated many times
    y = rng.integers(0, 3, 16).astype("int32")
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 4, name="embed"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3, name="out")])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.1), loss)
    grads = model_grads(model, ids, y, loss)  # tf.GradientTape / jax.grad / torch autograd
    logger = GradientNormLogger(every_n_steps=1)
    model.fit(ids, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
    expected = {"embed": np.sqrt(np.sum(np.square(grads[0], dtype="float64"))),
                "out": np.sqrt(sum(np.sum(np.square(g, dtype="float64")) for g in grads[1:]))}
    assert logger.history["layers"] == ["embed", "out"]
    np.testing.assert_allclose(logger.history["norms"][0], [expected["embed"], expected["out"]], rtol=1e-5)
    np.testing.assert_allclose(logger.history["global"][0], np.hypot(expected["embed"], expected["out"]), rtol=1e-5)


def test_csv_logger_listed_first_still_gets_the_columns(tmp_path):
    # issue 17 item 15: the order of the callbacks does not matter.
    x, y = helpers.random_classification()
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    path = tmp_path / "log.csv"
    csv_logger, logger = keras.callbacks.CSVLogger(str(path)), GradientNormLogger(every_n_steps=2)
    callbacks = [csv_logger, logger]
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 2 and {"grad_norm/global", "grad_norm/first", "update_ratio/out"} <= set(rows[0])
    for row, value in zip(rows, logger.model.history.history["grad_norm/global"]):
        assert float(row["grad_norm/global"]) == pytest.approx(value, rel=1e-6)
    assert callbacks == [csv_logger, logger]  # the user's list is left as it was


def test_dead_first_layer_of_a_relu_network_is_not_told_to_switch_to_relu():
    x, y = helpers.random_classification(n=32)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="first"),
                              keras.layers.Dense(8, activation="relu", name="second"),
                              keras.layers.Dense(3, name="out")])
    first = model.get_layer("first")
    first.bias.assign(np.full(8, -100.0, "float32"))  # every unit dead: its gradient is exactly 0
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[GradientNormLogger(every_n_steps=1)])
    said = [str(w.message) for w in caught if "vanishing" in str(w.message)]
    assert len(said) == 1 and "'first'" in said[0]
    assert "dead" in said[0] and "DeadNeuronMonitor" in said[0]
    assert "ReLU-family activations" not in said[0]


def test_state_is_reset_at_each_fit():
    # As Keras's own callbacks: one instance serving several fits (of one model or two) starts each afresh.
    x, y = helpers.random_classification(n=32)
    logger = GradientNormLogger(every_n_steps=1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="one")])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    for _ in range(2):
        model.fit(x, np.zeros((32, 3)), batch_size=16, epochs=1, verbose=0, callbacks=[logger])
    np.testing.assert_array_equal(logger.history["step"], [2, 3])  # the second fit's steps only
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="two")])
    other.compile(keras.optimizers.SGD(0.01), "mse")
    other.fit(x, np.zeros((32, 3)), batch_size=16, epochs=1, verbose=0, callbacks=[logger])
    assert logger.history["layers"] == ["two"]
    np.testing.assert_array_equal(logger.history["step"], [0, 1])
