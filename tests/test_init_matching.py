import keras
import numpy as np
import pytest

import keras_actkit as ak


def kernel_std(layer, attr="kernel"):
    return float(np.std(keras.ops.convert_to_numpy(getattr(layer, attr))))


def assert_variance_scaling(layer, fan_in, scale, attr="kernel"):
    init = layer.kernel_initializer
    assert (init.mode, init.scale) == ("fan_in", pytest.approx(scale))
    # The kernel was re-drawn: its spread is the new rule's, not Glorot's. The
    # sample std of n values is off by about 1/sqrt(2n) relative: every kernel
    # checked here has n >= 2304, so 6% is at least 4 standard errors.
    assert np.prod(getattr(layer, attr).shape) >= 2304
    assert kernel_std(layer, attr) == pytest.approx(np.sqrt(scale / fan_in), rel=0.06)


def assert_he(layer, fan_in, slope=0.0):
    assert_variance_scaling(layer, fan_in, 2.0 / (1.0 + slope**2))


def test_fused_separate_behind_batchnorm_and_nested():
    inner_in = keras.Input((128,))
    inner = keras.Model(inner_in, keras.layers.Dense(128, name="inner_last")(inner_in), name="inner")
    inputs = keras.Input((64,))
    h = keras.layers.Dense(128, activation="relu", name="first")(inputs)
    h = keras.layers.Dense(128, activation="relu", name="fused")(h)
    h = keras.layers.Dense(128, name="separate")(h)
    h = keras.layers.LeakyReLU(negative_slope=0.3)(h)
    h = keras.layers.Dense(128, name="behind_bn")(h)
    h = keras.layers.Dropout(0.1)(keras.layers.BatchNormalization()(h))
    h = ak.layers.LeakyReLU6(negative_slope=0.1)(h)
    h = inner(h)
    h = keras.layers.Activation("selu")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(h)
    model = keras.Model(inputs, outputs)

    report = ak.match_initializers(model)

    assert_variance_scaling(model.get_layer("first"), 64, 1.0)  # reads the data: LeCun
    assert_he(model.get_layer("fused"), 128)
    assert_he(model.get_layer("separate"), 128, slope=0.3)
    assert_he(model.get_layer("behind_bn"), 128, slope=0.1)
    lecun = inner.get_layer("inner_last").kernel_initializer  # activation outside the nested model
    assert (lecun.mode, lecun.scale) == ("fan_in", 1.0)
    assert kernel_std(inner.get_layer("inner_last")) == pytest.approx(np.sqrt(1 / 128), rel=0.06)
    glorot = model.get_layer("out").kernel_initializer
    assert (glorot.mode, glorot.scale) == ("fan_avg", 1.0)
    assert [e.layer for e in report.matched] == ["first", "fused", "separate", "behind_bn", "inner_last", "out"]
    text = str(report)
    assert "leaky_relu6(0.1)" in text and "selu" in text and "-> VarianceScaling(2, fan_in" in text
    assert "relu (input layer: LeCun)" in text


@pytest.mark.parametrize("activation", ["relu", "gelu", ak.activations.hard_swish])
def test_kernel_reading_the_data_gets_lecun_even_behind_preprocessing(activation):
    inputs = keras.Input((32,))
    h = keras.layers.Rescaling(0.5)(inputs)
    h = keras.layers.Dropout(0.1)(h)
    first = keras.layers.Dense(256, activation=activation, name="first")
    second = keras.layers.Dense(256, activation=activation, name="second")
    model = keras.Model(inputs, second(first(h)))
    ak.match_initializers(model)
    assert_variance_scaling(first, 32, 1.0)
    expected = ak.initializers.for_activation(activation).scale
    assert_variance_scaling(second, 256, expected)


def test_tanh_and_selu_keep_their_rule_on_the_input_layer():
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="tanh", name="t")])
    ak.match_initializers(model)
    assert model.get_layer("t").kernel_initializer.mode == "fan_avg"


def test_sequential_with_conv_and_separate_activation():
    model = keras.Sequential([
        keras.Input((12, 12, 8)),
        keras.layers.Conv2D(64, 3, name="conv"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(8, activation="tanh", name="dense"),
    ])
    ak.match_initializers(model)
    assert_variance_scaling(model.get_layer("conv"), 3 * 3 * 8, 1.0)  # reads the data
    assert model.get_layer("dense").kernel_initializer.mode == "fan_avg"


def test_user_set_initializers_and_biases_are_left_alone():
    model = keras.Sequential([
        keras.Input((32,)),
        keras.layers.Dense(32, name="data"),
        keras.layers.Dense(32, activation="relu", kernel_initializer="orthogonal", name="user"),
        keras.layers.Dense(32, activation="relu", bias_initializer="ones", name="default"),
    ])
    user_kernel = model.get_layer("user").get_weights()[0].copy()
    bias = model.get_layer("default").get_weights()[1].copy()
    report = ak.match_initializers(model)
    np.testing.assert_array_equal(model.get_layer("user").get_weights()[0], user_kernel)
    np.testing.assert_array_equal(model.get_layer("default").get_weights()[1], bias)
    assert [e.action for e in report.entries] == ["matched", "kept (user-set)", "matched"]

    ak.match_initializers(model, only_defaults=False)
    assert not np.array_equal(model.get_layer("user").get_weights()[0], user_kernel)
    assert model.get_layer("user").kernel_initializer.scale == 2.0


def test_disagreeing_paths_are_reported_not_guessed():
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, name="shared_out")(inputs)
    outputs = keras.layers.Concatenate()([keras.layers.ReLU()(h), keras.layers.Activation("tanh")(h)])
    model = keras.Model(inputs, outputs)
    before = model.get_layer("shared_out").get_weights()[0].copy()
    (entry,) = ak.match_initializers(model).entries
    assert entry.action == "kept (ambiguous)" and "relu" in entry.activation and "tanh" in entry.activation
    np.testing.assert_array_equal(model.get_layer("shared_out").get_weights()[0], before)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")

    def call(self, x):
        return self.hidden(x)


def test_subclassed_models_get_one_clear_warning():
    model = Subclassed()
    model(np.zeros((1, 4), "float32"))
    before = model.hidden.get_weights()[0].copy()
    with pytest.warns(UserWarning, match="cannot walk subclassed.*hidden"):
        report = ak.match_initializers(model)
    assert report.skipped == ["hidden"] and not report.entries
    np.testing.assert_array_equal(model.hidden.get_weights()[0], before)


def test_unbuilt_model_is_a_clear_error():
    with pytest.raises(ValueError, match="built"):
        ak.match_initializers(keras.Sequential([keras.layers.Dense(2)]))


def test_matched_model_saves_and_loads(tmp_path):
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation=ak.activations.hard_swish, name="hs"),
        keras.layers.Dense(2),
    ])
    ak.match_initializers(model)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    init = loaded.get_layer("hs").kernel_initializer
    assert init.get_config() == model.get_layer("hs").kernel_initializer.get_config()
    x = np.ones((3, 6), "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def small_model():
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, name="data"),
        keras.layers.Dense(64, activation="relu", name="hidden"),
        keras.layers.Dense(1),
    ])
    model.compile("sgd", "mse")
    return model


def test_auto_init_matches_before_the_first_step_only():
    model = small_model()
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    y = x[:, :1]
    callback = ak.callbacks.AutoInit()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    assert model.get_layer("hidden").kernel_initializer.scale == 2.0
    assert [e.layer for e in callback.report.matched] == ["data", "hidden", "dense"]

    kernel = model.get_layer("hidden").get_weights()[0].copy()
    model.optimizer.learning_rate = 0.0  # a second fit then changes nothing itself
    with pytest.warns(UserWarning, match="already trained for 1 step"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    assert callback.report is None
    np.testing.assert_array_equal(model.get_layer("hidden").get_weights()[0], kernel)


def test_auto_init_rejects_a_bad_distribution():
    with pytest.raises(ValueError, match="distribution"):
        ak.callbacks.AutoInit(distribution="gaussian")


def np_swish(x):
    return x / (1.0 + np.exp(-x))


def test_calibration_gives_unit_variance_at_every_layer_in_a_numpy_forward_pass():
    depth, width = 12, 128
    model = keras.Sequential(
        [keras.Input((width,))] + [keras.layers.Dense(width, activation="swish") for _ in range(depth)]
    )
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((256, width)).astype("float32")
    report = ak.match_initializers(model, calibration_data=calib, tolerance=0.02)
    assert all(e.calibration is not None for e in report.entries)
    assert "calibrated x" in str(report)

    h = calib.astype("float64")
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        pre = h @ kernel + bias
        assert np.std(pre) == pytest.approx(1.0, abs=0.025)
        h = np_swish(pre)
    # The recorded initializer describes the calibrated kernels.
    last = model.layers[-1]
    assert last.kernel_initializer.scale / width == pytest.approx(np.var(last.get_weights()[0]), rel=0.1)


def test_calibration_skips_nested_kernels_and_says_so():
    inner_in = keras.Input((16,))
    inner = keras.Model(inner_in, keras.layers.Dense(16, activation="relu", name="nested")(inner_in))
    inputs = keras.Input((16,))
    model = keras.Model(inputs, inner(keras.layers.Dense(16, activation="relu", name="top")(inputs)))
    report = ak.match_initializers(model, calibration_data=np.ones((8, 16), "float32"))
    actions = {e.layer: e.action for e in report.entries}
    assert "not calibrated: inside a nested model" in actions["nested"]
    assert report.entries[0].calibration is not None


@pytest.mark.parametrize("tolerance", [0.0, 1.0, -0.1])
def test_bad_tolerance(tolerance):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"tolerance.*\(0, 1\)"):
        ak.match_initializers(model, tolerance=tolerance)


def test_resnet_convolutions_behind_batchnorm_and_add_get_he():
    # Conv -> BN -> Add -> ReLU: the ReLU after the join acts on both branches' convolutions.
    inputs = keras.Input((8, 8, 16))
    r = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3, padding="same", name="res")(inputs))
    s = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 1, name="shortcut")(inputs))
    h = keras.layers.ReLU()(keras.layers.Add()([r, s]))
    h = keras.layers.Concatenate()([keras.layers.Conv2D(144, 1, name="cat")(h), h])  # 2304 weights
    h = keras.layers.LeakyReLU(negative_slope=0.2)(h)
    model = keras.Model(inputs, keras.layers.Dense(4, name="mixed")(h))
    report = ak.match_initializers(model)
    labels = {e.layer: e.activation for e in report.entries}
    # res and shortcut read the data (LeCun); cat, behind Concatenate then a leaky ReLU, is He.
    assert labels == {"res": "relu (input layer: LeCun)", "shortcut": "relu (input layer: LeCun)",
                      "cat": "leaky_relu(0.2)", "mixed": "linear"}
    assert_he(model.get_layer("cat"), 1 * 1 * 16, slope=0.2)


def test_resnet_block_inside_the_network_gets_he_not_linear():
    inputs = keras.Input((8, 8, 8))
    h = keras.layers.ReLU()(keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs))
    r = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3, padding="same", name="res")(h))
    h = keras.layers.ReLU()(keras.layers.Add()([r, h]))
    model = keras.Model(inputs, h)
    report = ak.match_initializers(model)
    assert {e.layer: e.activation for e in report.entries}["res"] == "relu"
    assert_he(model.get_layer("res"), 3 * 3 * 16)


def test_every_kernel_layer_gets_a_row_with_its_action_or_reason():
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(10, 8, name="embed")(inputs)
    h = keras.layers.LSTM(8, return_sequences=True, name="lstm")(h)
    h = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True), name="bigru")(h)
    h = keras.layers.MultiHeadAttention(2, 4, name="mha")(h, h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="relu", name="out")(h))
    embed = model.get_layer("embed").get_weights()[0].copy()
    report = ak.match_initializers(model)
    actions = {e.layer: e.action for e in report.entries}
    assert list(actions) == ["embed", "lstm", "bigru", "mha", "out"]
    assert actions["out"] == "matched"
    assert "embedding" in actions["embed"] and "attention" in actions["mha"]
    assert all(actions[name].startswith("kept (no rule: recurrent") for name in ("lstm", "bigru"))
    np.testing.assert_array_equal(model.get_layer("embed").get_weights()[0], embed)
    text = str(report)
    assert all(name in text for name in actions)


def test_subclassed_model_lists_its_recurrent_and_embedding_layers_too():
    class WithLSTM(keras.Model):
        def __init__(self):
            super().__init__()
            self.embed = keras.layers.Embedding(10, 4, name="embed")
            self.lstm = keras.layers.LSTM(4, name="lstm")

        def call(self, x):
            return self.lstm(self.embed(x))

    model = WithLSTM()
    model(np.zeros((1, 3), "int32"))
    with pytest.warns(UserWarning, match="cannot walk"):
        report = ak.match_initializers(model)
    assert report.skipped == ["embed", "lstm"]


@pytest.mark.parametrize("data, message", [
    (np.zeros((0, 8), "float32"), "at least one sample"),
    (np.full((4, 8), np.nan, "float32"), "finite"),
    (np.array([[0.0] * 7 + [np.inf]], "float32"), "finite"),
    ([], "non-empty"),
])
def test_bad_calibration_data_raises_before_anything_changes(data, message):
    model = small_model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=f"calibration_data.*{message}|{message}.*calibration_data"):
        ak.match_initializers(model, calibration_data=data)
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)
