"""One naming rule for layers in every callback: the layer's path in the model."""

import keras
import numpy as np
from autodiff import model_grads

from keras_actkit import _layer_paths
from keras_actkit.callbacks import GradientNormLogger


def recurrent_attention_model():
    inputs = keras.Input((2, 4))
    h = keras.layers.LSTM(6, return_sequences=True, unroll=True, name="lstm_a")(inputs)
    h = keras.layers.LSTM(6, return_sequences=True, unroll=True, name="lstm_b")(h)
    h = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True, unroll=True), name="bilstm")(h)
    h = keras.layers.MultiHeadAttention(2, 3, name="enc1_mha")(h, h)
    h = keras.layers.MultiHeadAttention(2, 3, name="enc2_mha")(h, h)
    block = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="conv")], name="block1")
    h = block(keras.layers.GlobalAveragePooling1D()(h))
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(h))


EXPECTED = ["lstm_a", "lstm_b", "bilstm/forward_lstm", "bilstm/backward_lstm",
            "enc1_mha/query", "enc1_mha/key", "enc1_mha/value", "enc1_mha/attention_output",
            "enc2_mha/query", "enc2_mha/key", "enc2_mha/value", "enc2_mha/attention_output",
            "block1/conv", "out"]


def expected_key(variable):
    # For this model Keras's variable path is the layer path plus the variable's
    # name, and `lstm_cell` for a recurrent layer's cell.
    return variable.path.rsplit("/", 1)[0].replace("/lstm_cell", "")


def test_every_layer_has_its_own_path_in_the_model():
    model = recurrent_attention_model()
    keys = _layer_paths.variable_keys(model)
    assert [keys[id(v)] for v in model.trainable_variables] == [expected_key(v) for v in model.trainable_variables]
    assert sorted(set(keys.values())) == sorted(EXPECTED)


def test_gradient_norm_logger_logs_each_layer_under_its_path():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 4)).astype("float32")
    y = rng.integers(0, 3, 8)
    model = recurrent_attention_model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.01, clipnorm=1.0), loss)
    grads = model_grads(model, x, y, loss)
    logger = GradientNormLogger(every_n_steps=1)
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
    assert logger.history["layers"] == EXPECTED
    squares = {}
    for g, v in zip(grads, model.trainable_variables):
        squares[expected_key(v)] = squares.get(expected_key(v), 0.0) + float(np.sum(np.square(g, dtype="float64")))
    scale = np.sqrt(sum(squares.values()))
    for name in EXPECTED:
        # Norms before clipnorm: the gradient the autodiff gives, unclipped. The
        # attention keys' bias has a gradient of ~0 (softmax ignores a shift):
        # compared to float32 round-off of the whole gradient, not relatively.
        np.testing.assert_allclose(history.history[f"grad_norm/{name}"][0], np.sqrt(squares[name]), rtol=1e-4,
                                   atol=1e-6 * scale)


def test_two_layers_with_one_name_under_one_parent_get_distinct_keys():
    class Pair(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.a = keras.layers.Dense(2, name="proj")
            self.b = keras.layers.Dense(2, name="proj")

        def call(self, x):
            return self.a(x) + self.b(x)

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Pair(name="pair")(inputs))
    keys = _layer_paths.variable_keys(model)
    assert sorted(set(keys.values())) == ["pair/proj", "pair/proj#2"]


def test_a_shared_layer_keeps_one_key():
    shared = keras.layers.Dense(2, name="shared")
    a, b = keras.Input((2,), name="a"), keras.Input((2,), name="b")
    model = keras.Model([a, b], [shared(a), shared(b)])
    assert set(_layer_paths.variable_keys(model).values()) == {"shared"}
    assert _layer_paths.registered_key(shared.kernel) == "shared"
