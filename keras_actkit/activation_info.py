"""Recognise an activation, whatever form it is given in.

`describe_activation` turns a name, a Keras activation function, one of this
package's functions or layers, or a Keras activation layer into one
`ActivationInfo`: a canonical name, the leak of the ReLU family, and an
elementwise callable when there is one. Initialiser matching and dead-unit
monitoring both start from it.
"""

import dataclasses
import functools

import keras

from keras_actkit import activations as ak_activations

RELU_FAMILY = frozenset({"relu", "relu6", "leaky_relu", "leaky_relu6", "prelu"})
SATURATING = frozenset({"sigmoid", "tanh", "hard_sigmoid", "hard_tanh", "softsign"})

# Keras's activation functions by identity, with their canonical names. silu
# and swish are one function in Keras 3; so are hard_silu and hard_swish.
_KERAS_FUNCTIONS = {
    keras.activations.relu: "relu",
    keras.activations.relu6: "relu6",
    keras.activations.leaky_relu: "leaky_relu",
    keras.activations.elu: "elu",
    keras.activations.selu: "selu",
    keras.activations.celu: "celu",
    keras.activations.tanh: "tanh",
    keras.activations.sigmoid: "sigmoid",
    keras.activations.hard_sigmoid: "hard_sigmoid",
    keras.activations.hard_tanh: "hard_tanh",
    keras.activations.softsign: "softsign",
    keras.activations.softmax: "softmax",
    keras.activations.log_softmax: "log_softmax",
    keras.activations.linear: "linear",
    keras.activations.hard_swish: "hard_swish",
    keras.activations.hard_silu: "hard_swish",
    keras.activations.swish: "swish",
    keras.activations.silu: "swish",
    keras.activations.gelu: "gelu",
    keras.activations.mish: "mish",
    keras.activations.softplus: "softplus",
    keras.activations.exponential: "exponential",
    ak_activations.leaky_relu6: "leaky_relu6",
    ak_activations.hard_swish: "hard_swish",
}
# Keras's leaky_relu defaults to a slope of 0.2; ours to 0.01.
_DEFAULT_SLOPES = {"leaky_relu": 0.2, "leaky_relu6": 0.01}
# Not elementwise: no per-unit gain can be computed for these.
_NOT_ELEMENTWISE = frozenset({"softmax", "log_softmax"})


@dataclasses.dataclass(frozen=True)
class ActivationInfo:
    """What is known of an activation.

    Attributes:
        name: Canonical lower-case name (`"relu"`, `"leaky_relu6"`, `"prelu"`,
            `"selu"`, `"tanh"`, `"linear"`, `"hard_swish"`, ...), or
            `"custom"` for a user callable.
        negative_slope: The leak `a` of the ReLU family (PReLU: its initial
            slope); 0.0 for everything else.
        fn: An elementwise callable (numpy or Keras tensors in, same out) when
            one is known, else None. Used for the numerically computed gain.
    """

    name: str
    negative_slope: float = 0.0
    fn: object = dataclasses.field(default=None, compare=False)

    @property
    def is_relu_family(self):
        """Units can die: output <= 0 exactly when input <= 0."""
        return self.name in RELU_FAMILY

    @property
    def is_saturating(self):
        """Bounded on both sides: units saturate rather than die."""
        return self.name in SATURATING


def _constant_value(initializer, default):
    """The value of a Constant / Zeros / Ones initializer, else `default`."""
    if isinstance(initializer, keras.initializers.Zeros):
        return 0.0
    if isinstance(initializer, keras.initializers.Ones):
        return 1.0
    if isinstance(initializer, keras.initializers.Constant):
        value = keras.ops.convert_to_numpy(initializer.value)
        if value.size == 1:
            return float(value)
    return default


def _from_function(fn):
    partial_kwargs = {}
    if isinstance(fn, functools.partial):
        partial_kwargs = dict(fn.keywords)
        fn = fn.func
    name = _KERAS_FUNCTIONS.get(fn)
    if name is None:
        return ActivationInfo("custom", fn=fn)
    slope = float(partial_kwargs.get("negative_slope", _DEFAULT_SLOPES.get(name, 0.0)))
    if name == "relu" and slope > 0:
        name = "leaky_relu"
    elementwise = None if name in _NOT_ELEMENTWISE else (
        functools.partial(fn, **partial_kwargs) if partial_kwargs else fn
    )
    return ActivationInfo(name, slope, elementwise)


def _relu_layer(layer):
    """keras.layers.ReLU(max_value, negative_slope, threshold)."""
    slope, cap = float(layer.negative_slope), layer.max_value
    name = "leaky_relu" if slope > 0 else "relu"
    if cap is not None and float(cap) == 6.0:
        name = "leaky_relu6" if slope > 0 else "relu6"
    return ActivationInfo(name, slope, layer)


def _from_layer(layer):
    from keras_actkit import layers as ak_layers

    if isinstance(layer, ak_layers.LeakyReLU6):
        return ActivationInfo("leaky_relu6", layer.negative_slope, layer)
    if isinstance(layer, ak_layers.HardSwish):
        return ActivationInfo("hard_swish", 0.0, layer)
    if isinstance(layer, ak_layers.PReLU):
        slope = _constant_value(layer.alpha_initializer, ak_layers.prelu.DEFAULT_ALPHA)
        return ActivationInfo("prelu", slope, None)
    if isinstance(layer, keras.layers.PReLU):
        return ActivationInfo("prelu", _constant_value(layer.alpha_initializer, 0.0), None)
    if isinstance(layer, keras.layers.ReLU):
        return _relu_layer(layer)
    if isinstance(layer, keras.layers.LeakyReLU):
        return ActivationInfo("leaky_relu", float(layer.negative_slope), layer)
    if isinstance(layer, keras.layers.ELU):
        return ActivationInfo("elu", 0.0, layer)
    if isinstance(layer, keras.layers.Softmax):
        return ActivationInfo("softmax")
    if isinstance(layer, keras.layers.Activation):
        return describe_activation(layer.activation)
    return None


def describe_activation(obj):
    """Recognise `obj` as an activation.

    Args:
        obj: `None` (linear), a name (`"relu"`, `"leaky_relu6"`, ...), a Keras
            activation function, one of `keras_actkit.activations`' functions
            (also as a `functools.partial` with `negative_slope`), a Keras
            activation layer (`ReLU` with its arguments, `LeakyReLU`, `PReLU`,
            `ELU`, `Softmax`, `Activation`), this package's layers, or any
            callable (reported as `"custom"`).

    Returns:
        An `ActivationInfo`, or `None` when `obj` is a layer that is not an
        activation.

    Example:
    ```python
    describe_activation(keras.layers.ReLU(max_value=6, negative_slope=0.1))
    # ActivationInfo(name='leaky_relu6', negative_slope=0.1)
    ```
    """
    return describe(obj, "obj")


def describe(obj, argument):
    """`describe_activation(obj)`, its errors naming `obj` as the caller's argument `argument`."""
    if obj is None:
        return ActivationInfo("linear", fn=keras.activations.linear)
    if isinstance(obj, str):
        key = obj.lower()
        if key in ("leaky_relu6", "hard_swish", "prelu"):
            fn = {"leaky_relu6": ak_activations.leaky_relu6,
                  "hard_swish": ak_activations.hard_swish}.get(key)
            if fn is None:
                from keras_actkit.layers.prelu import DEFAULT_ALPHA

                return ActivationInfo("prelu", DEFAULT_ALPHA)
            return _from_function(fn)
        try:
            return _from_function(keras.activations.get(key))
        except ValueError:
            raise ValueError(
                f"`{argument}` must be a known activation name: one of Keras's (keras.activations) or "
                f"'leaky_relu6', 'hard_swish', 'prelu'; received {argument}={obj!r}."
            ) from None
    if isinstance(obj, keras.layers.Layer):
        return _from_layer(obj)
    if callable(obj):
        return _from_function(obj)
    # Neither a name, a layer nor a callable: the wrong type (the package's policy).
    raise TypeError(
        f"`{argument}` must be an activation: None, a name, a function or an activation layer; "
        f"received {argument}={obj!r} of type {type(obj).__name__}."
    )
