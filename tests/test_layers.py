"""Checks every activation layer goes through; one `LAYERS` line per layer."""

import keras
import numpy as np
import pytest

from keras_actkit import layers
from tests.test_activations import np_hard_swish, np_leaky_relu6


def np_prelu(x, alpha):
    return np.where(x < 0, alpha * x, x)


# name -> (factory, numpy reference of the freshly built layer)
LAYERS = {
    "LeakyReLU6": (lambda: layers.LeakyReLU6(negative_slope=0.1), lambda x: np_leaky_relu6(x, 0.1)),
    "LeakyReLU6-default": (layers.LeakyReLU6, lambda x: np_leaky_relu6(x, 0.01)),
    "HardSwish": (layers.HardSwish, np_hard_swish),
    "PReLU": (layers.PReLU, lambda x: np_prelu(x, 0.25)),
    "PReLU-shared": (lambda: layers.PReLU(shared_axes=[1]), lambda x: np_prelu(x, 0.25)),
}
# float16 resolution near 6 is 2**-8; bf16 keeps 8 bits of mantissa.
POLICY_TOL = {"mixed_float16": 4e-3, "mixed_bfloat16": 3e-2}


def sample(shape=(4, 7, 5), seed=0):
    x = np.random.default_rng(seed).normal(0, 4, size=shape).astype("float32")
    x.flat[:4] = [-3.0, 3.0, 6.0, 0.0]
    return x


@pytest.fixture(params=sorted(LAYERS))
def spec(request):
    return LAYERS[request.param]


def test_numerics_match_numpy(spec):
    make, ref = spec
    x = sample()
    out = keras.ops.convert_to_numpy(make()(x))
    np.testing.assert_allclose(out, ref(x), rtol=1e-6, atol=1e-7)


def test_unknown_dimensions_and_output_shape(spec):
    make, _ = spec
    layer = make()
    inputs = keras.Input((None, 5))
    if isinstance(layer, layers.PReLU) and not layer.shared_axes:
        # One slope per position needs the axis size: a clear error instead.
        with pytest.raises(ValueError, match=r"axis 1 .* unknown.*shared_axes"):
            layer(inputs)
        return
    outputs = layer(inputs)
    assert tuple(outputs.shape) == (None, None, 5)
    assert layer.compute_output_shape((None, None, 5)) == (None, None, 5)
    model = keras.Model(inputs, outputs)
    for steps in (3, 11):
        x = sample((2, steps, 5))
        assert model.predict(x, verbose=0).shape == (2, steps, 5)


def test_config_round_trip(spec):
    make, _ = spec
    layer = make()
    x = sample()
    expected = keras.ops.convert_to_numpy(layer(x))
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), expected)


@pytest.mark.parametrize("policy", sorted(POLICY_TOL))
def test_mixed_precision(spec, policy):
    make, ref = spec
    keras.config.set_dtype_policy(policy)
    layer = make()
    x = sample()
    out = layer(x)
    compute = keras.config.dtype_policy().compute_dtype
    assert keras.backend.standardize_dtype(out.dtype) == compute
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in layer.weights)
    # A low-precision input stays low precision: no silent upcast.
    low = keras.ops.cast(x, compute)
    assert keras.backend.standardize_dtype(layer(low).dtype) == compute
    x_low = keras.ops.convert_to_numpy(keras.ops.cast(low, "float32"))
    out32 = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
    tol = POLICY_TOL[policy]
    np.testing.assert_allclose(out32, ref(x_low), rtol=tol, atol=tol)


def test_mask_is_passed_through(spec):
    make, ref = spec
    x = sample((3, 6, 5))
    x[0, 4:] = 0.0  # padded steps, masked by Masking(0.0)
    x[2, 1:] = 0.0
    inputs = keras.Input((6, 5))
    h = make()(keras.layers.Masking(0.0)(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(h))
    keep = np.any(x != 0.0, axis=-1)
    expected = (ref(x) * keep[..., None]).sum(1) / keep.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_fit_with_jit_compile_matches_numpy_forward_pass():
    """One model with all three layers, compiled with XLA / torch.compile."""
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            layers.PReLU(),
            keras.layers.Dense(8),
            layers.LeakyReLU6(negative_slope=0.2),
            keras.layers.Dense(8),
            layers.HardSwish(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    alpha_before = model.layers[1].get_weights()[0].copy()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert not np.array_equal(model.layers[1].get_weights()[0], alpha_before)

    (k1, b1), (alpha,), (k2, b2), (k3, b3), (k4, b4) = (
        layer.get_weights() for layer in model.layers if layer.weights
    )
    h = np_prelu(x @ k1 + b1, alpha)
    h = np_leaky_relu6(h @ k2 + b2, 0.2)
    h = np_hard_swish(h @ k3 + b3)
    expected = h @ k4 + b4
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
