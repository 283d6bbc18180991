import importlib.util

import keras
import numpy as np
import pytest

from keras_actkit import activations
from autodiff import grad_of_sum

HAS_TORCH = importlib.util.find_spec("torch") is not None
# JAX keeps float64 off unless x64 is enabled; gradients are then checked in
# float32 with float32 tolerances.
WIDE = keras.backend.standardize_dtype(keras.ops.convert_to_tensor(np.zeros(1)).dtype)
GRAD_TOL = {"float64": dict(rtol=1e-6, atol=1e-8), "float32": dict(rtol=1e-5, atol=1e-6)}[WIDE]


def np_leaky_relu6(x, a):
    return np.where(x < 0, np.asarray(a, x.dtype) * x, np.minimum(x, x.dtype.type(6)))


def np_hard_swish(x):
    return x * np.clip(x + 3, 0, 6) / 6


def away_from(points, size, rng, margin=1e-2, dtype="float64"):
    """Samples in [-9, 9] at least `margin` away from every kink in `points`."""
    x = rng.uniform(-9, 9, size=size)
    for p in points:
        close = np.abs(x - p) < margin
        x[close] = p + np.where(x[close] >= p, margin, -margin) * 2
    return x.astype(dtype)


EDGES = np.array(
    [-1e4, -6.0, -3.0, -1.0, -1e-7, -0.0, 0.0, 1e-7, 2.5, 3.0, 5.999, 6.0, 6.001, 1e4],
    "float32",
)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 0.999])
def test_leaky_relu6_matches_numpy_formula(slope, rng):
    x = np.concatenate([EDGES, rng.normal(0, 5, 1000).astype("float32")])
    out = keras.ops.convert_to_numpy(activations.leaky_relu6(x, slope))
    np.testing.assert_array_equal(out, np_leaky_relu6(x, slope))


def test_non_finite_inputs_follow_the_formula():
    """NaN must stay visible (NaNGuard relies on it); infinities follow the formula."""
    x = np.array([np.nan, -np.inf, np.inf, -2.0], "float32")
    leaky = keras.ops.convert_to_numpy(activations.leaky_relu6(x, 0.1))
    np.testing.assert_array_equal(leaky, [np.nan, -np.inf, 6.0, np.float32(0.1) * np.float32(-2.0)])
    prelu = keras.ops.convert_to_numpy(activations.prelu(x, np.float32(0.25)))
    np.testing.assert_array_equal(prelu, [np.nan, -np.inf, np.inf, -0.5])
    assert np.isnan(keras.ops.convert_to_numpy(activations.hard_swish(x))[0])


def test_leaky_relu6_default_slope_is_001():
    x = np.array([-100.0, 100.0], "float32")
    out = keras.ops.convert_to_numpy(activations.leaky_relu6(x))
    np.testing.assert_array_equal(out, [-1.0, 6.0])


def test_hard_swish_matches_numpy_formula(rng):
    x = np.concatenate([EDGES, rng.normal(0, 4, 1000).astype("float32")])
    out = keras.ops.convert_to_numpy(activations.hard_swish(x))
    np.testing.assert_allclose(out, np_hard_swish(x.astype("float64")), rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_hard_swish_matches_torch_reference(rng):
    import torch

    x = np.concatenate([EDGES, rng.normal(0, 4, 1000).astype("float32")])
    expected = torch.nn.functional.hardswish(torch.from_numpy(x)).numpy()
    out = keras.ops.convert_to_numpy(activations.hard_swish(x))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


# float64 is left out: Keras's own promotion (`result_type("float64", float)`)
# gives float32 on the torch backend, for Keras's built-ins too.
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_functions_keep_the_input_dtype(dtype):
    x = keras.ops.cast(np.linspace(-8, 8, 33), dtype)
    for fn in (activations.leaky_relu6, activations.hard_swish):
        assert keras.backend.standardize_dtype(fn(x).dtype) == dtype


@pytest.mark.parametrize("slope", [0.0, 0.1, 0.5])
def test_leaky_relu6_gradient_matches_finite_differences(slope, rng):
    x = away_from([0.0, 6.0], 400, rng, dtype=WIDE)
    (grad,) = grad_of_sum(lambda t: activations.leaky_relu6(t, slope), x)
    x, h = x.astype("float64"), 1e-6
    fd = (np_leaky_relu6(x + h, slope) - np_leaky_relu6(x - h, slope)) / (2 * h)
    np.testing.assert_allclose(grad, fd, **GRAD_TOL)


def test_hard_swish_gradient_matches_finite_differences(rng):
    x = away_from([-3.0, 3.0], 400, rng, dtype=WIDE)
    (grad,) = grad_of_sum(activations.hard_swish, x)
    x, h = x.astype("float64"), 1e-6
    fd = (np_hard_swish(x + h) - np_hard_swish(x - h)) / (2 * h)
    np.testing.assert_allclose(grad, fd, **GRAD_TOL)


@pytest.mark.parametrize("slope, error", [
    (-0.01, ValueError), (1.0, ValueError), (1.5, ValueError), (float("nan"), ValueError),
    # Not numbers: a TypeError, under the package's one policy.
    ("0.1x", TypeError), (None, TypeError),
])
def test_leaky_relu6_rejects_slopes_outside_unit_interval(slope, error):
    with pytest.raises(error, match=r"negative_slope.*\[0, 1\)"):
        activations.leaky_relu6(np.ones(3, "float32"), slope)
