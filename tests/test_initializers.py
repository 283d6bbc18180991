import math

import keras
import numpy as np
import pytest

import keras_actkit as ak
from conftest import BACKEND
from keras_actkit import initializers


def scale_mode(activation):
    init = initializers.for_activation(activation)
    return init.scale, init.mode


@pytest.mark.parametrize("activation", ["relu", "relu6", keras.layers.ReLU(max_value=6.0)])
def test_relu_is_he(activation):
    assert scale_mode(activation) == (2.0, "fan_in")


@pytest.mark.parametrize("slope", [0.01, 0.1, 0.3, 0.5])
def test_leaky_is_he_with_the_leak(slope):
    expected = 2.0 / (1.0 + slope**2)
    for activation in (keras.layers.LeakyReLU(negative_slope=slope), ak.layers.LeakyReLU6(negative_slope=slope)):
        scale, mode = scale_mode(activation)
        assert mode == "fan_in" and scale == pytest.approx(expected, rel=1e-12)


def test_prelu_uses_its_initial_slope():
    assert scale_mode(ak.layers.PReLU())[0] == pytest.approx(2.0 / (1.0 + 0.25**2))
    assert scale_mode(keras.layers.PReLU())[0] == pytest.approx(2.0)  # Keras starts at 0


@pytest.mark.parametrize("activation", ["selu", "elu", keras.layers.ELU()])
def test_selu_elu_are_lecun(activation):
    assert scale_mode(activation) == (1.0, "fan_in")


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softmax", "linear", None])
def test_saturating_and_linear_are_glorot(activation):
    assert scale_mode(activation) == (1.0, "fan_avg")


def np_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


MONTE_CARLO = {
    "hard_swish": (ak.activations.hard_swish, lambda x: x * np.clip(x + 3, 0, 6) / 6),
    "swish": (keras.activations.swish, lambda x: x / (1.0 + np.exp(-x))),
    "gelu": (keras.activations.gelu, np_gelu),
    "mish": (keras.activations.mish, lambda x: x * np.tanh(np.log1p(np.exp(x)))),
}


@pytest.mark.parametrize("name", sorted(MONTE_CARLO))
def test_computed_scale_matches_monte_carlo(name):
    fn, np_fn = MONTE_CARLO[name]
    z = np.random.default_rng(0).standard_normal(400_000)
    if name == "gelu":
        z = z[:50_000]  # math.erf is slow when vectorized
    estimate = 1.0 / np.mean(np_fn(z) ** 2)
    stderr = np.std(np_fn(z) ** 2) / np.sqrt(z.size) / np.mean(np_fn(z) ** 2)
    assert initializers.for_activation(fn).scale == pytest.approx(estimate, rel=5 * stderr)


def test_computed_scale_closed_forms_for_custom_functions():
    # E[relu(z)^2] = 1/2 and E[z^2] = 1: custom callables go through quadrature.
    assert initializers.for_activation(lambda x: keras.ops.relu(x)).scale == pytest.approx(2.0, rel=2e-3)
    # The function is evaluated in float32, so float32 precision bounds the result.
    assert initializers.for_activation(lambda x: x).scale == pytest.approx(1.0, rel=1e-6)
    assert initializers.for_activation(lambda x: 3.0 * x).scale == pytest.approx(1.0 / 9.0, rel=1e-6)


def test_drawn_kernel_has_the_matched_variance():
    init = initializers.for_activation("relu")
    kernel = keras.ops.convert_to_numpy(init((512, 256)))
    assert np.var(kernel) == pytest.approx(2.0 / 512, rel=0.03)


def test_bad_distribution():
    with pytest.raises(ValueError, match="distribution.*truncated_normal.*received distribution='normal'"):
        initializers.for_activation("relu", distribution="normal")


def test_function_that_is_not_elementwise():
    with pytest.raises(ValueError, match="elementwise"):
        initializers.for_activation(lambda x: x - keras.ops.mean(x))


def test_function_that_is_zero():
    with pytest.raises(ValueError, match="zero"):
        initializers.for_activation(lambda x: 0.0 * x)


def test_not_an_activation():
    with pytest.raises(ValueError, match="not an activation"):
        initializers.for_activation(keras.layers.Dense(2))


def test_matched_initializer_serializes():
    init = initializers.for_activation(ak.layers.LeakyReLU6(0.1), distribution="uniform")
    again = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert again.get_config() == init.get_config()


# ---------------------------------------------------------------- draw: one random-op shape for every kernel

DRAW_CASES = [
    ((3, 3, 32, 48), "fan_in", "truncated_normal"),
    ((3, 3, 32, 48), "fan_out", "uniform"),
    ((240, 130), "fan_avg", "untruncated_normal"),
    ((240, 130), "fan_avg", "truncated_normal"),
    ((30000,), "fan_in", "uniform"),
]


def keras_stddev(init, shape):
    """The standard deviation Keras's own draw of `shape` has: the sample one of a large draw."""
    return float(np.std(keras.ops.convert_to_numpy(init(shape, dtype="float32")).astype("float64")))


@pytest.mark.parametrize("shape,mode,distribution", DRAW_CASES)
def test_draw_has_the_distribution_keras_gives_the_shape(shape, mode, distribution):
    init = keras.initializers.VarianceScaling(1.7, mode, distribution, seed=3)
    values = initializers.draw(init, shape, chunk=10007, in_pieces=True)  # several pieces, one not filled
    assert values.shape == shape and values.dtype == np.float32
    n = values.size
    # The std of a draw of n values is within 6 standard errors (about 1/sqrt(2n) relative) of the truth.
    np.testing.assert_allclose(np.std(values.astype("float64")), keras_stddev(init, shape), rtol=6 * math.sqrt(2 / n))
    fan_in = math.prod(shape[:-1]) if len(shape) > 1 else shape[0]
    fan_out = math.prod(shape[:-2]) * shape[-1] if len(shape) > 1 else shape[0]
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    bound = {"truncated_normal": 2 * math.sqrt(1.7 / fan) / 0.87962566103423978,
             "uniform": math.sqrt(3 * 1.7 / fan), "untruncated_normal": math.inf}[distribution]
    assert np.abs(values).max() <= bound * (1 + 1e-6)
    assert abs(float(np.mean(values))) < 6 * np.std(values) / math.sqrt(n)


@pytest.mark.parametrize("seed", [11, None])
def test_draw_pieces_are_not_copies_of_one_another(seed):
    init = keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal", seed=seed)
    pieces = initializers.draw(init, (40, 50), chunk=500, in_pieces=True).reshape(4, 500)
    for i in range(4):
        for j in range(i + 1, 4):
            assert abs(np.corrcoef(pieces[i], pieces[j])[0, 1]) < 0.2  # independent: |r| ~ 0.045


def test_draw_with_a_seed_repeats_and_another_seed_differs():
    init = keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal", seed=11)
    values = initializers.draw(init, (40, 50), chunk=500, in_pieces=True).ravel()
    np.testing.assert_array_equal(initializers.draw(init, (40, 50), chunk=500, in_pieces=True).ravel(), values)
    other = keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal", seed=12)
    assert not np.array_equal(initializers.draw(other, (40, 50), chunk=500, in_pieces=True).ravel(), values)


def test_draw_without_a_seed_is_new_each_time_and_follows_the_global_seed():
    init = keras.initializers.VarianceScaling(2.0, "fan_in", "uniform")
    keras.utils.set_random_seed(5)
    first, second = initializers.draw(init, (20, 30), in_pieces=True), initializers.draw(init, (20, 30), in_pieces=True)
    keras.utils.set_random_seed(5)
    again = initializers.draw(init, (20, 30), in_pieces=True)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)


def test_draw_calls_other_initializers_as_they_are():
    init = keras.initializers.Orthogonal(seed=4)
    expected = keras.ops.convert_to_numpy(init((6, 6), dtype="float32"))
    np.testing.assert_array_equal(initializers.draw(init, (6, 6), in_pieces=True), expected)


def test_draw_is_kerass_own_call_except_on_jax():
    # Only JAX compiles a random op per shape: elsewhere the exact stream Keras gives the shape.
    init = keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal", seed=9)
    expected = keras.ops.convert_to_numpy(init((30, 20), dtype="float32"))
    assert np.array_equal(initializers.draw(init, (30, 20)), expected) is (BACKEND != "jax")
