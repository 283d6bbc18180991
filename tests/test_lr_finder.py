import importlib.util
import warnings

import keras
import numpy as np
import pytest

import keras_actkit as ak
from keras_actkit import _keras_internals, _training_state
from keras_actkit.callbacks.lr_finder import lr_ladder
from conftest import only_backends

import helpers

HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None


def data(n=128):
    return helpers.separable(n, direction=(1.0, 0.5))


def classifier(optimizer=None):
    return helpers.batchnorm_classifier(16, ak.layers.LeakyReLU6(), optimizer or keras.optimizers.Adam(1e-3))


def assert_same_state(before, model):
    after = helpers.state(model)
    for part in ("model", "optimizer"):
        helpers.assert_same_values(after[part], before[part], f"{part} variables")


def test_recorded_lrs_are_the_ones_used_and_losses_are_per_batch():
    """loss = w with gradient 1: SGD lowers the loss by exactly the LR used."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    model.compile(keras.optimizers.SGD(0.1), loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    x = np.ones((16, 1), "float32")
    result = ak.find_lr(model, x, x, batch_size=8, start_lr=1e-3, end_lr=1.0, num_steps=20, diverge_threshold=None)
    assert len(result.losses) == 20  # 2 batches an epoch, repeated over 10 epochs
    steps = result.losses[:-1] - result.losses[1:]
    # Keras's running mean is float32 and undoing it multiplies its rounding
    # by the batch index (<= 2 here): ~4 ulp of 1.0 (4.8e-7). Neighbouring
    # rungs differ by 44%, so an off-by-one step cannot pass.
    np.testing.assert_allclose(steps, result.lrs[:-1], rtol=1e-6, atol=5e-7)
    np.testing.assert_array_equal(result.lrs, lr_ladder(1e-3, 1.0, 20, "exponential").astype("float64"))
    assert result.losses[-1] < 0  # the loss went negative without a false divergence stop
    np.testing.assert_array_equal(model.get_weights()[0], [[1.0]])  # restored


def test_bitwise_restore_and_reproducible_fit_afterwards():
    x, y = data()
    keras.utils.set_random_seed(7)
    reference = classifier()
    weights = reference.get_weights()
    reference_history = reference.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]

    keras.utils.set_random_seed(7)
    model = classifier()
    model.set_weights(weights)
    before = [w.copy() for w in model.get_weights()]
    result = ak.find_lr(model, x, y, batch_size=16, num_steps=30)
    assert result.stop_reason in ("diverged", "end reached", "non-finite loss")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert not model.stop_training
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(history, reference_history, rtol=1e-6)


class Boom(keras.callbacks.Callback):
    """Another callback raising in the middle of the range test."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.at:
            raise RuntimeError("interrupted")


def test_restore_after_training_state_and_when_interrupted():
    x, y = data()
    model = classifier(keras.optimizers.SGD(0.01, momentum=0.9))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # non-zero moments and BN statistics
    before = helpers.state(model)

    with pytest.raises(RuntimeError, match="interrupted"):
        ak.find_lr(model, x, y, batch_size=16, num_steps=30, callbacks=[Boom(4)])
    assert_same_state(before, model)
    ak.find_lr(model, x, y, batch_size=16, num_steps=30)
    assert_same_state(before, model)


def test_divergence_stops_early_and_leaves_finite_weights():
    x, y = data()
    model = classifier(keras.optimizers.SGD(0.01))
    result = ak.find_lr(model, x, y * 1, batch_size=16, start_lr=1e-2, end_lr=1e6, num_steps=60)
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert len(result.losses) < 60
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_schedule_is_restored_and_apply_says_why_it_cannot_set_it():
    x, y = data()
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.9)
    model = classifier(keras.optimizers.SGD(schedule))
    result = ak.find_lr(model, x, y, batch_size=16, num_steps=20)
    assert model.optimizer._learning_rate is schedule
    with pytest.raises(ValueError, match="schedule"):
        result.apply(model)


def test_apply_and_plot():
    x, y = data()
    model = classifier()
    result = ak.find_lr(model, x, y, batch_size=16, num_steps=30)
    lr = result.apply(model, rule="minimum/10")
    assert float(model.optimizer.learning_rate) == pytest.approx(lr)
    figure = result.plot()
    assert figure.axes[0].get_xscale() == "log"
    assert set(result.to_dict()) >= {"lrs", "losses", "smoothed_losses", "suggestion", "suggestions", "stop_reason"}


def test_never_compiled_model_is_a_clear_error():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="compile"):
        ak.find_lr(model, *data())


@pytest.mark.parametrize("kwargs, name", [
    (dict(start_lr=0), "start_lr"), (dict(end_lr=1e-8), "end_lr"), (dict(num_steps=2), "num_steps"),
    (dict(mode="cosine"), "mode"), (dict(beta=1.0), "beta"), (dict(diverge_threshold=0.5), "diverge_threshold"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ak.callbacks.LRFinder(**kwargs)


def batches(x, y, size=16):
    for i in range(0, len(x), size):
        yield x[i:i + size], y[i:i + size]


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 16

    def __getitem__(self, i):
        return self.x[i * 16:(i + 1) * 16], self.y[i * 16:(i + 1) * 16]


def endless(x, y):
    while True:
        yield from batches(x, y)


def make_input(kind, x, y):
    if kind == "tf.data":
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    if kind == "PyDataset":
        return Batches(x, y)
    if kind == "generator":
        return endless(x, y)
    if kind == "DataLoader":
        import torch

        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y.astype("int64"))), batch_size=16)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", [
    pytest.param("tf.data", marks=pytest.mark.skipif(not HAS_TF, reason="tensorflow not installed")),
    "PyDataset",
    "generator",
    pytest.param("DataLoader", marks=pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")),
])
def test_input_types_repeat_short_data_and_stop_at_num_steps(kind):
    x, y = data(64)  # 4 batches: the finder must repeat them
    model = classifier()
    before = [w.copy() for w in model.get_weights()]
    result = ak.find_lr(model, make_input(kind, x, y), num_steps=10, diverge_threshold=None)
    assert len(result.losses) == 10 and result.stop_reason == "end reached"
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- issue 17 regressions ---------------------------------------------------------

def mlp(optimizer=None, with_input=True):
    layers = [keras.Input((64,))] if with_input else []
    model = keras.Sequential(layers + [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer or keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_mixed_float16_restores_bitwise_and_the_next_fit_matches_a_plain_one():
    """Item 2: the LossScaleOptimizer's variables used to appear during the test and the positional
    restore failed (TensorFlow), leaving the ladder in the optimizer."""
    keras.config.set_dtype_policy("mixed_float16")
    x, y = helpers.digits(256)
    keras.utils.set_random_seed(5)
    reference = mlp()
    weights = reference.get_weights()
    reference.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)

    keras.utils.set_random_seed(5)
    model = mlp()
    model.set_weights(weights)
    learning_rate = _keras_internals.learning_rate_object(_training_state.innermost_optimizer(model.optimizer))
    ak.find_lr(model, x, y, batch_size=32, num_steps=12)
    assert _keras_internals.learning_rate_object(_training_state.innermost_optimizer(model.optimizer)) is learning_rate
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(reference.get_weights() + [keras.ops.convert_to_numpy(v) for v in reference.optimizer.variables],
                    model.get_weights() + [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]):
        np.testing.assert_array_equal(a, b)


def test_schedule_is_restored_even_when_restoring_the_variables_fails(monkeypatch):
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.9)
    model = classifier(keras.optimizers.SGD(schedule))

    def broken(self, keep=()):
        raise RuntimeError("restore failed")

    monkeypatch.setattr(_training_state.Snapshot, "restore", broken)
    with pytest.raises(RuntimeError, match="restore failed"):
        ak.find_lr(model, *data(), batch_size=16, num_steps=6)
    assert _keras_internals.learning_rate_object(model.optimizer) is schedule


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)

    def call(self, x):
        return self.out(self.hidden(x))


@pytest.mark.parametrize("kind", ["Sequential without Input", "subclassed"])
def test_unbuilt_model_is_built_first_and_the_next_fit_matches(kind):
    """Item 3: the optimizer used to be built with no variables; the user's fit then failed (TensorFlow)."""
    x, y = helpers.digits(256)

    def build():
        keras.utils.set_random_seed(11)
        model = mlp(with_input=False) if kind != "subclassed" else Subclassed()
        if kind == "subclassed":
            model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    reference = build()
    reference(x[:1])  # built by hand, as the user would
    reference.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    model = build()
    ak.find_lr(model, x, y, batch_size=32, num_steps=8, shuffle=False)
    assert len(model.optimizer.variables) == 2 + 2 * len(model.trainable_variables)  # iterations, lr, m, v
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_sample_weight_is_trimmed_like_x_and_y():
    """Item 9: 128 + 5 samples, batch 16: x and y were cut to 128, sample_weight was not."""
    x, y = data(133)
    results = []
    for weights in (None, np.ones(133, "float32")):
        keras.utils.set_random_seed(2)
        model = classifier()
        extra = {} if weights is None else {"sample_weight": weights}
        results.append(ak.find_lr(model, x, y, batch_size=16, num_steps=8, shuffle=False, **extra).losses)
    np.testing.assert_array_equal(results[0], results[1])  # unit weights change nothing


def test_nan_row_stops_the_test_and_says_the_data_may_hold_nan():
    """Item 14: on TensorFlow the loss of a NaN batch stayed finite while the kernel turned NaN; the
    test ran to the end, warned "never diverged" and suggested the top of the range."""
    x, y = helpers.digits(256)
    x[37] = np.nan
    model = mlp(keras.optimizers.SGD(0.01))
    before = model.get_weights()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ak.find_lr(model, x, y, batch_size=32, num_steps=40, shuffle=False)
    assert result.stop_reason in ("non-finite loss", "non-finite weights")
    assert len(result.losses) == 2  # the NaN row is in the second batch
    assert not any("never diverged" in m for m in helpers.messages(caught))
    assert any("NaN or Inf" in m for m in helpers.messages(caught))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def moving_average(values, width=9):
    return np.convolve(values, np.ones(width) / width, mode="valid")


def test_no_never_diverged_warning_on_a_curve_that_rose():
    """An Adam MLP on digits up to LR 1: the curve falls from ~2.4, bottoms out and climbs 27-265%
    above its lowest point (by backend), without reaching 4x its best; it used to get "the loss never
    diverged" on every backend."""
    x, y = helpers.digits(n=None)
    keras.utils.set_random_seed(0)
    model = mlp(keras.optimizers.Adam(1e-3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ak.find_lr(model, x, y, batch_size=32, end_lr=1.0, num_steps=60)
    assert result.stop_reason == "end reached"
    curve = moving_average(result.losses)
    assert curve[-1] > 1.2 * curve.min()  # an independent look: it clearly rose
    assert not any("never diverged" in m for m in helpers.messages(caught))
    # The same model over a range that stays low does get the warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ak.find_lr(model, x, y, batch_size=32, start_lr=1e-7, end_lr=1e-5, num_steps=20)
    curve = moving_average(result.losses)
    assert curve[-1] <= curve.min() * 1.01
    assert any("never diverged" in m for m in helpers.messages(caught))


def test_interrupted_by_another_callback_restores_schedule_and_state_exactly():
    x, y = data()
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, 10, 0.9)
    model = classifier(keras.optimizers.SGD(schedule, momentum=0.9))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # moments, BN statistics, iterations
    before = helpers.state(model)
    with pytest.raises(RuntimeError, match="interrupted"):
        ak.find_lr(model, x, y, batch_size=16, num_steps=30, callbacks=[Boom(3)])
    assert_same_state(before, model)
    assert _keras_internals.learning_rate_object(model.optimizer) is schedule
    assert not model.stop_training


# -- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error", [
    (dict(batch_size=0), ValueError), (dict(batch_size=-1), ValueError), (dict(batch_size=True), TypeError),
    (dict(batch_size="32"), TypeError), (dict(batch_size=16.0), TypeError), (dict(start_lr="1e-3"), TypeError),
    (dict(num_steps=True), TypeError), (dict(num_steps="100"), TypeError), (dict(end_lr=float("inf")), ValueError),
    (dict(beta="0.9"), TypeError), (dict(diverge_threshold="4"), TypeError), (dict(verbose="yes"), TypeError),
])
def test_find_lr_bad_arguments_name_the_argument_and_the_value(kwargs, error):
    (name, value), = kwargs.items()
    with pytest.raises(error, match=f"`{name}`.*{name}={value!r}".replace("(", r"\(").replace(")", r"\)")):
        ak.find_lr(classifier(), *data(), **kwargs)


def test_numpy_scalars_are_accepted():
    finder = ak.callbacks.LRFinder(np.float32(1e-5), np.float64(1.0), np.int64(10), beta=np.float32(0.5),
                                   diverge_threshold=np.int32(3))
    assert (finder.start_lr, finder.num_steps, finder.diverge_threshold) == (float(np.float32(1e-5)), 10, 3.0)
    result = ak.find_lr(classifier(), *data(), batch_size=np.int64(16), num_steps=np.int64(6))
    assert len(result.losses) == 6


def test_apply_an_unknown_rule_names_it_and_the_accepted_ones():
    model = classifier()
    result = ak.find_lr(model, *data(), batch_size=16, num_steps=10)
    with pytest.raises(ValueError, match=r"`rule`.*'max\(onset, valley\)'.*'steepest'.*rule='bogus'"):
        result.apply(model, rule="bogus")


def test_unbuilt_model_fed_by_a_generator_loses_no_batch_to_the_build():
    """The batch read to build the model is the first one trained on: the first loss recorded is
    that batch's loss at the initial weights (which the restore puts back)."""
    x, y = data(96)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ak.find_lr(model, batches(x, y), num_steps=6)
    assert len(model.optimizer.variables) == 2 + len(model.trainable_variables)  # iterations, lr, momenta
    first, second = (model.evaluate(x[i:i + 16], y[i:i + 16], verbose=0) for i in (0, 16))
    assert abs(first - second) > 1e-3  # the two batches are told apart
    np.testing.assert_allclose(result.losses[0], first, rtol=1e-5)


@only_backends("tensorflow")
def test_callback_on_a_model_tensorflow_has_not_built_says_to_use_find_lr():
    """TensorFlow builds a model without `Input` only in its first traced step, after `on_train_begin`:
    there is nothing to snapshot then, so the callback refuses instead of restoring nothing."""
    x, y = data(32)
    model = keras.Sequential([keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="not built.*find_lr"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ak.callbacks.LRFinder(num_steps=5)])
