"""Initialisers matched to the activation that follows a kernel.

Every rule is a `keras.initializers.VarianceScaling(scale, mode, distribution)`
(so a matched initialiser serializes like any Keras initializer):

| activation | rule | scale | mode |
| --- | --- | --- | --- |
| ReLU, ReLU6, leaky ReLU (slope `a`), LeakyReLU6, PReLU (initial slope `a`) | He | `2 / (1 + a²)` | fan_in |
| SELU, ELU | LeCun | `1` | fan_in |
| tanh, sigmoid, softmax, linear / None | Glorot | `1` | fan_avg |
| anything else acting elementwise (hard-swish, swish, GELU, mish, your own) | computed | `1 / E[f(z)²]`, `z ~ N(0, 1)` | fan_in |

The computed scale keeps the second moment of the pre-activations at 1 from
layer to layer (He et al.'s argument, with `E[f(z)²]` in place of ReLU's 1/2);
it is found by Gauss–Hermite quadrature in numpy and cached per function.
"""

import functools
import math
import random

import keras
import numpy as np

from keras_actkit import _backend, _validation
from keras_actkit.activation_info import describe

DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")
HE, LECUN, GLOROT, COMPUTED = "he", "lecun", "glorot", "computed"

_LECUN_NAMES = frozenset({"selu", "elu"})
_GLOROT_NAMES = frozenset({"tanh", "sigmoid", "softmax", "log_softmax", "linear"})
_QUADRATURE_POINTS = 160


def rule_for(info):
    """`(rule, scale, mode)` for an `ActivationInfo`: the gain table above."""
    if info.is_relu_family:
        return HE, 2.0 / (1.0 + info.negative_slope**2), "fan_in"
    if info.name in _LECUN_NAMES:
        return LECUN, 1.0, "fan_in"
    if info.name in _GLOROT_NAMES:
        return GLOROT, 1.0, "fan_avg"
    if info.fn is None:
        raise ValueError(
            f"Cannot compute a gain for activation {info.name!r}: no elementwise "
            "function is known for it. Pass the function itself, or set the "
            "kernel initializer explicitly."
        )
    return COMPUTED, computed_scale(info.fn), "fan_in"


def second_moment(fn, points=_QUADRATURE_POINTS):
    """`E[f(z)²]` for `z ~ N(0, 1)` by Gauss–Hermite quadrature.

    With the physicists' weight `exp(-t²)`, `E[g(z)] = Σ wᵢ g(√2 tᵢ) / √π`.
    """
    nodes, weights = np.polynomial.hermite.hermgauss(points)
    z = (math.sqrt(2.0) * nodes).astype("float32")
    values = _evaluate_elementwise(fn, z)
    return float(np.sum(weights * values.astype("float64") ** 2) / math.sqrt(math.pi))


def _evaluate_elementwise(fn, z):
    def call(part):
        return np.asarray(keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(part))))

    try:
        values = call(z)
        # An elementwise function gives the same values on any part of its
        # input: softmax, normalisations and the like do not.
        half = len(z) // 2
        parts = np.concatenate([call(z[:half]), call(z[half:])])
    except Exception as error:
        raise ValueError(
            f"Cannot compute a gain for {fn!r}: calling it on a float32 vector "
            f"failed with {type(error).__name__}: {error}"
        ) from error
    if values.shape != z.shape or parts.shape != z.shape or not np.allclose(parts, values, rtol=1e-5, atol=1e-6):
        raise ValueError(
            f"Cannot compute a gain for {fn!r}: it does not act elementwise "
            "(its output on a vector is not the same shape, or depends on the "
            "order of the elements). Set the kernel initializer explicitly."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"Cannot compute a gain for {fn!r}: it returned non-finite values on N(0, 1) inputs.")
    return values


@functools.lru_cache(maxsize=256)
def computed_scale(fn):
    """`1 / E[f(z)²]`, cached per function."""
    moment = second_moment(fn)
    if moment <= 1e-12:
        raise ValueError(f"Cannot compute a gain for {fn!r}: it is (almost) zero on N(0, 1) inputs.")
    return 1.0 / moment


def for_activation(activation, distribution="truncated_normal", seed=None):
    """The Keras initializer matched to `activation`.

    Args:
        activation: A name, a Keras or `keras_actkit` activation function, or
            an activation layer (anything `describe_activation` accepts).
        distribution: `"truncated_normal"` (default), `"untruncated_normal"`
            or `"uniform"`, as in `keras.initializers.VarianceScaling`.
        seed: Optional seed, passed to the initializer.

    Returns:
        A `keras.initializers.VarianceScaling`.

    Example:
    ```python
    init = keras_actkit.initializers.for_activation("relu")
    init.scale, init.mode   # (2.0, 'fan_in'): He
    ```
    """
    seed = _validation.seed("seed", seed)
    info = describe(activation, "activation")
    if info is None:
        raise ValueError(
            f"`activation` must be an activation: a name, an activation function or an activation "
            f"layer; received activation={activation!r}, a layer that is not an activation."
        )
    return initializer_for_info(info, distribution, seed)


def initializer_for_info(info, distribution="truncated_normal", seed=None):
    """`for_activation` for an already described `ActivationInfo`."""
    _validation.one_of("distribution", distribution, DISTRIBUTIONS)
    _, scale, mode = rule_for(info)
    return keras.initializers.VarianceScaling(scale=scale, mode=mode, distribution=distribution, seed=seed)


# On JAX, kernels are drawn as pieces of this one shape: each new shape given
# to a random op is a new XLA compilation (about a second for a truncated
# normal), paid once here instead of once per kernel shape in the model.
DRAW_CHUNK = 1 << 18


def draw(initializer, shape, dtype="float32", chunk=DRAW_CHUNK, in_pieces=None):
    """Fresh values for a variable of `shape`, distributed as `initializer(shape, dtype)`.

    Where random ops compile once per shape (JAX; `in_pieces=None` asks the
    backend), a `VarianceScaling` initializer (every rule of this module) is
    drawn in pieces of `chunk` values, all of one shape, with the standard
    deviation or limit Keras gives `shape`. The values then follow the
    initializer's distribution, not its exact random stream: an integer seed
    gives the same values on every call (as in Keras), no seed new ones
    (reproducible under `keras.utils.set_random_seed`). Elsewhere, and for any
    other initializer, this is `initializer(shape, dtype)`.

    Returns:
        A numpy array of `shape`.
    """
    shape = tuple(int(d) for d in shape)
    seed = initializer.get_config().get("seed")
    if in_pieces is None:
        in_pieces = _backend.compiles_random_per_shape()
    if not (in_pieces and _drawn_in_pieces(initializer, seed)):
        return np.asarray(keras.ops.convert_to_numpy(initializer(shape, dtype=dtype)))
    fan_in, fan_out = _fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[initializer.mode]
    size = math.prod(shape)
    pieces = []
    for seed in _piece_seeds(seed, max(1, -(-size // chunk))):
        # On `(chunk,)` Keras divides the scale by `chunk`; this gives it `fan`'s.
        piece = keras.initializers.VarianceScaling(
            initializer.scale * chunk / max(1.0, fan), "fan_in", initializer.distribution, seed=seed)
        pieces.append(np.asarray(keras.ops.convert_to_numpy(piece((chunk,), dtype=dtype))))
    return np.concatenate(pieces)[:size].reshape(shape)


def _drawn_in_pieces(initializer, seed):
    """Keras's own `VarianceScaling` draw, fans from the whole shape, an integer seed or none."""
    return (isinstance(initializer, keras.initializers.VarianceScaling)
            and type(initializer).__call__ is keras.initializers.VarianceScaling.__call__
            and getattr(initializer, "input_axes", None) is None and getattr(initializer, "output_axes", None) is None
            and (seed is None or isinstance(seed, int)))


def _fans(shape):
    """Keras's fan-in and fan-out: the last two axes times the receptive field (the others)."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _piece_seeds(seed, count):
    """One seed per piece: derived from an integer seed, else Keras's default rule (Python's `random`)."""
    if seed is None:
        return [random.randint(1, int(1e9)) for _ in range(count)]
    return [int(s) % (2**31 - 1) for s in np.random.SeedSequence(int(seed)).generate_state(count)]
