import importlib.util

import keras
import numpy as np
import pytest

from keras_actkit import activations, layers
from autodiff import grad_of_sum

HAS_TORCH = importlib.util.find_spec("torch") is not None


def images(shape=(2, 5, 7, 3), seed=0):
    return np.random.default_rng(seed).normal(0, 2, size=shape).astype("float32")


def test_slopes_start_at_025_unlike_keras_prelu():
    ours = layers.PReLU()
    ours.build((None, 4))
    np.testing.assert_array_equal(ours.get_weights()[0], np.full((4,), 0.25, "float32"))
    theirs = keras.layers.PReLU()
    theirs.build((None, 4))
    np.testing.assert_array_equal(theirs.get_weights()[0], np.zeros((4,), "float32"))


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_per_channel_slopes_match_torch_prelu():
    import torch

    x = images()
    layer = layers.PReLU(shared_axes=[1, 2])
    layer.build(x.shape)
    alpha = np.array([0.1, -0.3, 0.7], "float32").reshape(1, 1, 3)
    layer.set_weights([alpha])
    # torch.nn.functional.prelu puts channels on axis 1.
    expected = torch.nn.functional.prelu(
        torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(alpha.ravel())
    ).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-6, atol=1e-7)


def test_negative_shared_axes_equal_positive_ones():
    x = images()
    pos, neg = layers.PReLU(shared_axes=[1, 2]), layers.PReLU(shared_axes=[-3, -2])
    pos.build(x.shape)
    neg.build(x.shape)
    assert tuple(neg.alpha.shape) == tuple(pos.alpha.shape) == (1, 1, 3)
    alpha = np.array([0.5, 0.2, 0.9], "float32").reshape(1, 1, 3)
    pos.set_weights([alpha])
    neg.set_weights([alpha])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(neg(x)), keras.ops.convert_to_numpy(pos(x)))


def test_images_of_any_size_with_shared_spatial_axes():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, layers.PReLU(shared_axes=[1, 2])(inputs))
    for shape in [(2, 8, 8, 3), (1, 5, 7, 3)]:
        x = images(shape)
        np.testing.assert_allclose(model.predict(x, verbose=0), np.where(x < 0, 0.25 * x, x), rtol=1e-6)


def test_gradients_match_closed_form():
    x = images((4, 6, 3)).astype("float32")
    x[np.abs(x) < 1e-3] = 0.5  # away from the kink
    alpha = np.array([0.1, 0.25, 0.6], "float32").reshape(1, 1, 3)
    gx, galpha = grad_of_sum(activations.prelu, x, alpha)
    np.testing.assert_allclose(gx, np.where(x < 0, alpha, 1.0) * np.ones_like(x), rtol=1e-6)
    # d/d alpha of sum(alpha * min(x, 0)), summed over the shared axes.
    np.testing.assert_allclose(
        galpha, np.minimum(x, 0).sum(axis=(0, 1), keepdims=True), rtol=1e-5
    )


@pytest.mark.parametrize("shared_axes, error", [
    (0, ValueError), ([1, 0], ValueError),
    # Not integers (bool is not one): a TypeError, under the package's one policy.
    (True, TypeError), ("1", TypeError), (1.5, TypeError), ([None], TypeError),
])
def test_invalid_shared_axes_are_rejected_at_construction(shared_axes, error):
    with pytest.raises(error, match=r"shared_axes.*received shared_axes="):
        layers.PReLU(shared_axes=shared_axes)


def test_numpy_integer_shared_axes_are_accepted():
    layer = layers.PReLU(shared_axes=[np.int64(1), np.int32(2)])
    assert layer.shared_axes == [1, 2] and all(type(a) is int for a in layer.shared_axes)


@pytest.mark.parametrize("shared_axes", [[3], [-3], [1, 4]])
def test_shared_axes_out_of_range_for_the_input_rank(shared_axes):
    with pytest.raises(ValueError, match=r"shared_axes.*out of range.*1\.\.2"):
        layers.PReLU(shared_axes=shared_axes).build((None, 4, 5))


def test_rank_one_input_is_rejected():
    with pytest.raises(ValueError, match="rank >= 2"):
        layers.PReLU().build((5,))


@pytest.mark.parametrize("slope, error", [
    (-0.1, ValueError), (1.0, ValueError), (2.0, ValueError),
    # Not numbers: a TypeError, under the package's one policy.
    (None, TypeError), ("x", TypeError), (True, TypeError),
])
def test_leaky_relu6_layer_rejects_bad_slopes(slope, error):
    with pytest.raises(error, match=r"negative_slope.*\[0, 1\).*received"):
        layers.LeakyReLU6(negative_slope=slope)
