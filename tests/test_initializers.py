import math

import keras
import numpy as np
import pytest

import keras_actkit as ak
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
