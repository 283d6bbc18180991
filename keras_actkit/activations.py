"""Activation functions written on `keras.ops`, usable as `activation=`.

Every function here is registered for serialization under the package name
`keras_actkit`, so `keras.layers.Dense(8, activation=leaky_relu6)` saves to
`.keras` and loads back with `safe_mode=True` once `keras_actkit` is imported.
"""

import keras
from keras import ops

from keras_actkit import _validation

PACKAGE = "keras_actkit"

RELU6_CAP = 6.0


def check_negative_slope(negative_slope):
    """Return `negative_slope` as a float, or raise if it is not a number in [0, 1).

    A slope of 1 or more turns the function into the identity (or into an
    amplifier of negative inputs): it is no longer a leaky ReLU.
    """
    accepted = "a finite number in [0, 1) (0 gives ReLU6, values close to 1 approach the identity)"
    return _validation.number("negative_slope", negative_slope, minimum=0, maximum=1, max_inclusive=False,
                              accepted=accepted)


@keras.saving.register_keras_serializable(package=PACKAGE)
def leaky_relu6(x, negative_slope=0.01):
    """Leaky ReLU capped at 6: `min(max(negative_slope * x, x), 6)`.

    ReLU6 keeps activations bounded (no blow-up in low precision); the leak
    keeps a gradient of `negative_slope` for negative inputs, so units cannot
    die the way plain ReLU units do.

    Args:
        x: Input tensor.
        negative_slope: Slope for `x < 0`, a float in [0, 1). Defaults to
            `0.01`.

    Returns:
        A tensor of the same shape and dtype as `x`.

    Example:
    ```python
    keras_actkit.activations.leaky_relu6(np.array([-10.0, 3.0, 10.0]), negative_slope=0.1)
    # [-1.,  3.,  6.]
    keras.layers.Dense(64, activation=keras_actkit.activations.leaky_relu6)
    ```
    """
    negative_slope = check_negative_slope(negative_slope)
    x = ops.convert_to_tensor(x)
    # Each backend's fused leaky-ReLU kernel, then the cap as a select. Forward
    # +backward on 4096x4096 (benchmarks/bench_layers.py) the literal
    # min(max(a*x, x), 6) was 1.8-2.5x slower on TF and torch (max's gradient
    # walks both branches) and min(leaky_relu, 6) 1.2-1.6x slower than Keras's
    # relu(max_value=6, negative_slope=a) under jax.jit (min's gradient splits
    # ties); this route was never slower than the built-in. Same values bit
    # for bit; NaN stays NaN (NaN > 6 is false).
    return ops.where(x > RELU6_CAP, RELU6_CAP, ops.leaky_relu(x, negative_slope))


@keras.saving.register_keras_serializable(package=PACKAGE)
def hard_swish(x):
    """Hard swish (MobileNetV3): `x * relu6(x + 3) / 6`.

    `0` for `x <= -3`, `x` for `x >= 3`, and `x * (x + 3) / 6` between: swish
    (`x * sigmoid(x)`) without the exponential.

    Args:
        x: Input tensor.

    Returns:
        A tensor of the same shape and dtype as `x`.

    Example:
    ```python
    keras_actkit.activations.hard_swish(np.array([-4.0, -1.0, 0.0, 1.0, 4.0]))
    # [-0.        , -0.33333334,  0.        ,  0.6666667 ,  4.        ]
    keras.layers.Dense(64, activation=keras_actkit.activations.hard_swish)
    ```
    """
    # keras.ops.hard_swish calls each backend's fused kernel
    # (torch.nn.functional.hardswish, jax.nn.hard_swish); the same formula
    # spelled out in keras.ops was measured about 4x slower on torch and JAX.
    return ops.hard_swish(ops.convert_to_tensor(x))


def prelu(x, alpha):
    """Parametric ReLU: `x` for `x >= 0`, `alpha * x` otherwise.

    The function behind `keras_actkit.layers.PReLU`, whose slopes are learned.

    Args:
        x: Input tensor.
        alpha: The slopes for `x < 0`, a tensor that broadcasts against `x`.

    Returns:
        A tensor of the same shape and dtype as `x`.

    Example:
    ```python
    keras_actkit.activations.prelu(np.array([-4.0, 2.0]), np.array([0.25, 0.25]))
    # [-1.,  2.]
    ```
    """
    x = ops.convert_to_tensor(x)
    # relu(-x) is -x exactly where x < 0, so this is a*x there and x elsewhere.
    # Measured against max(x,0) + a*min(x,0) and where(x < 0, a*x, x), this
    # composition (keras.layers.PReLU's) was the only route never slower.
    # Negating the small slope tensor rather than subtracting the product
    # matters: torch's backward of `a - b` allocates a full-size -grad.
    return ops.relu(x) + ops.negative(alpha) * ops.relu(-x)
