"""ProbeCapture on its own (keras_actkit/callbacks/_dead_units/capture.py), driven by a bare callback.

The capture wraps `model.train_function` at the first batch and takes the
batches training draws until it has `size(first batch size)` samples, `limit`
batches, or a batch of another shape; it unwraps itself then. Here the driver is
a five-line callback, not DeadNeuronMonitor (whose use of it is in
test_dead_neurons.py), so the probe, the moment of unwrapping and the size asked
for are all visible. `default_probe_size` is in test_dead_units_counting.py.
"""

import keras
import numpy as np
import pytest

from keras_actkit.callbacks._dead_units.capture import ProbeCapture

import helpers


class Driver(keras.callbacks.Callback):
    """Installs the capture at the first batch, finishes it when training ends, and records after each
    batch whether the model's own train function is back."""

    def __init__(self, capture):
        super().__init__()
        self.capture, self.unwrapped, self.probe = capture, [], None

    def on_train_batch_begin(self, batch, logs=None):
        if self.capture.pending:
            self.original = self.model.train_function
            self.capture.install()

    def on_train_batch_end(self, batch, logs=None):
        self.unwrapped.append(self.model.train_function is self.original)

    def on_train_end(self, logs=None):
        self.probe = self.capture.finish()


@pytest.fixture(scope="module")
def dense_model():
    # One compiled model for the module: each fit reuses its train function.
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def capture_fit(model, x, y, size, limit=None, **kwargs):
    asked = []

    def target(batch):
        asked.append(batch)
        return size

    driver = Driver(ProbeCapture(model, target, limit))
    helpers.quiet_fit(model, x, y, callbacks=[driver], **kwargs)
    return driver, asked


@pytest.mark.parametrize("size", [20, 24])
def test_the_probe_is_the_first_samples_and_the_step_is_unwrapped_once_it_has_them(dense_model, size):
    x, y = helpers.random_classification(64, 5, 2, seed=1)
    driver, asked = capture_fit(dense_model, x, y, size=size, batch_size=8)
    np.testing.assert_array_equal(driver.probe, x[:size])  # 3 batches of 8 taken (cut to 20)
    assert asked == [8]  # the size is asked once, from the first batch's size
    assert driver.unwrapped == [False, False] + [True] * 6  # back after the third step, mid-epoch
    assert dense_model.train_function is driver.original


def test_the_probe_stops_at_the_batch_limit(dense_model):
    x, y = helpers.random_classification(64, 5, 2, seed=2)
    driver, _ = capture_fit(dense_model, x, y, size=1000, limit=2, batch_size=8)
    np.testing.assert_array_equal(driver.probe, x[:16])
    assert driver.unwrapped == [False, True] + [True] * 6


def test_data_shorter_than_the_probe_gives_what_there_is(dense_model):
    x, y = helpers.random_classification(20, 5, 2, seed=3)
    driver, _ = capture_fit(dense_model, x, y, size=1000, batch_size=8)
    np.testing.assert_array_equal(driver.probe, x)  # 8 + 8 + 4 samples, the last batch smaller
    assert driver.capture.finish() is driver.probe  # finishing again changes nothing


def test_a_batch_of_another_shape_ends_the_probe():
    # Sequences padded per batch (lengths alternate: TensorFlow fixes a length seen twice at the start).
    rng = np.random.default_rng(4)
    batches = [(rng.normal(size=(4, n, 3)).astype("float32"), rng.integers(0, 2, 4)) for n in (5, 3, 5, 3)]
    inputs = keras.Input((None, 3))
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(4, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    driver = Driver(ProbeCapture(model, lambda batch: 100))
    model.fit((b for b in batches), steps_per_epoch=4, epochs=1, verbose=0, shuffle=False, callbacks=[driver])
    np.testing.assert_array_equal(driver.probe, batches[0][0])  # the batches of the first shape
    assert driver.unwrapped == [False, True, True, True]  # the second batch ended it (and still trained)


def test_structured_inputs_are_captured_leaf_by_leaf():
    x = {"a": np.arange(48, dtype="float32").reshape(12, 4), "b": np.linspace(0, 1, 24, dtype="float32").reshape(12, 2)}
    y = np.arange(12) % 2
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    model = keras.Model({"a": a, "b": b}, keras.layers.Dense(2)(joined))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    driver, _ = capture_fit(model, x, y, size=7, batch_size=4)
    assert set(driver.probe) == {"a", "b"}
    np.testing.assert_array_equal(driver.probe["a"], x["a"][:7])
    np.testing.assert_array_equal(driver.probe["b"], x["b"][:7])


def test_install_unwraps_a_step_left_wrapped_by_an_interrupted_fit(dense_model):
    dense_model.make_train_function()
    original = dense_model.train_function

    def leftover(*args):
        raise AssertionError("a leftover wrapper must not run")

    leftover._actkit_original = original
    dense_model.train_function = leftover
    capture = ProbeCapture(dense_model, lambda batch: 4)
    assert capture.pending
    capture.install()
    assert not capture.pending and dense_model.train_function._actkit_original is original
    assert capture.finish() is None  # nothing captured: no probe
    assert dense_model.train_function is original  # the leftover is gone too
    assert capture.pending  # nothing captured: it may be installed again
