import functools

import keras
import pytest

import keras_actkit as ak
from keras_actkit.activation_info import describe_activation

CASES = [
    ("relu", "relu", 0.0),
    (keras.activations.relu, "relu", 0.0),
    (lambda: keras.layers.ReLU(), "relu", 0.0),
    (lambda: keras.layers.ReLU(max_value=6.0), "relu6", 0.0),
    (lambda: keras.layers.ReLU(negative_slope=0.1), "leaky_relu", 0.1),
    (lambda: keras.layers.ReLU(max_value=6.0, negative_slope=0.1), "leaky_relu6", 0.1),
    (lambda: keras.layers.LeakyReLU(negative_slope=0.3), "leaky_relu", 0.3),
    ("leaky_relu", "leaky_relu", 0.2),
    (lambda: keras.layers.PReLU(), "prelu", 0.0),
    (lambda: keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.1)), "prelu", 0.1),
    (lambda: ak.layers.PReLU(), "prelu", 0.25),
    (lambda: ak.layers.LeakyReLU6(negative_slope=0.2), "leaky_relu6", 0.2),
    (ak.activations.leaky_relu6, "leaky_relu6", 0.01),
    (functools.partial(ak.activations.leaky_relu6, negative_slope=0.3), "leaky_relu6", 0.3),
    ("leaky_relu6", "leaky_relu6", 0.01),
    (lambda: ak.layers.HardSwish(), "hard_swish", 0.0),
    (ak.activations.hard_swish, "hard_swish", 0.0),
    (keras.activations.hard_swish, "hard_swish", 0.0),
    (lambda: keras.layers.Activation("selu"), "selu", 0.0),
    (lambda: keras.layers.ELU(), "elu", 0.0),
    (lambda: keras.layers.Softmax(), "softmax", 0.0),
    ("silu", "swish", 0.0),
    ("gelu", "gelu", 0.0),
    (None, "linear", 0.0),
    ("tanh", "tanh", 0.0),
]


def _resolve(obj):
    # Layers are built inside the test (after the conftest reset), not at import.
    return obj() if callable(obj) and getattr(obj, "__name__", "") == "<lambda>" else obj


@pytest.mark.parametrize("obj, name, slope", CASES)
def test_recognised(obj, name, slope):
    info = describe_activation(_resolve(obj))
    assert (info.name, info.negative_slope) == (name, pytest.approx(slope))


def test_families():
    assert describe_activation("relu").is_relu_family
    assert describe_activation(ak.layers.PReLU()).is_relu_family
    assert not describe_activation("elu").is_relu_family
    assert describe_activation("sigmoid").is_saturating
    assert describe_activation("tanh").is_saturating
    assert not describe_activation("relu").is_saturating


def test_user_callable_is_custom_and_kept():
    def my_act(x):
        return x * 2.0

    info = describe_activation(my_act)
    assert info.name == "custom" and info.fn is my_act


def test_non_activation_layer_is_none():
    assert describe_activation(keras.layers.Dense(3)) is None


# An unknown name is a bad value (ValueError); something that is no name, layer or callable is the
# wrong type (TypeError), as the package's policy (keras_actkit/_validation.py) says.
@pytest.mark.parametrize("bad, error", [("not_an_activation", ValueError), (42, TypeError)])
def test_bad_input_is_a_clear_error(bad, error):
    with pytest.raises(error, match="activation"):
        describe_activation(bad)
