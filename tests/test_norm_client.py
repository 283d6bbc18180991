"""GradientNormLogger's norm arithmetic (per-layer norms in the step, the record put together on the host for
eager torch steps, its reading), against numpy."""

import keras
import numpy as np
import pytest

from keras_actkit import _backend
from keras_actkit.callbacks._norm_client import ROWS, NormRecords, layer_norms, norm_record


def test_norm_record_sums_variables_per_layer():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=s).astype("float32") for s in [(3, 4), (4,), (4, 2), (2,)]]
    before = [rng.normal(size=g.shape).astype("float32") for g in grads]
    after = [b - 0.1 * g for b, g in zip(before, grads)]
    layer_of = [0, 0, 1, 1]  # kernel and bias of two Dense layers
    sq = lambda arrays: np.array([np.sum(np.square(a.astype("float64"))) for a in arrays])  # noqa: E731
    row = norm_record(5.0, 12, sq(grads), sq([a - b for a, b in zip(after, before)]), sq(before), layer_of, 2)
    layer_grad = [np.sqrt(np.sum(np.square(np.concatenate([grads[i].ravel() for i in (k, k + 1)])))) for k in (0, 2)]
    ratio = [np.linalg.norm(np.concatenate([(after[i] - before[i]).ravel() for i in (k, k + 1)]))
             / np.linalg.norm(np.concatenate([before[i].ravel() for i in (k, k + 1)])) for k in (0, 2)]
    np.testing.assert_allclose(row, [5.0, 12, *layer_grad, *ratio], rtol=1e-5)
    assert row.dtype == np.float32


def test_norm_record_ratio_of_a_zero_layer_is_zero_and_nan_gradients_stay_nan():
    row = norm_record(1.0, 0, np.array([np.nan, 4.0]), np.array([0.0, 1.0]), np.array([0.0, 4.0]), [0, 1], 2)
    assert np.isnan(row[2])  # layer 0's norm
    np.testing.assert_allclose(row[3:], [2.0, 0.0, 0.5])


def test_records_read_in_order_with_the_global_norm_in_float64():
    # Per-layer norms of 1e20 are float32 numbers; their squares (1e40) are not.
    buffer = np.zeros((ROWS + 1, 2 + 2 * 3), "float32")
    norms = np.array([[1e20, 1e20, 1e20], [3.0, 4.0, 0.0], [np.nan, 1.0, 1.0]], "float32")
    for count, (row, layer_norms) in enumerate(zip([5, 3, 4], norms), start=1):  # ring order is not time order
        buffer[row] = [count, 10 * count, *layer_norms, 0.5, 0.25, 0.0]
    buffer[0] = 3
    records = NormRecords.from_buffer(buffer, seen=1, layers=3)
    np.testing.assert_array_equal(records.step, [20, 30])
    np.testing.assert_array_equal(records.norms, norms[1:].astype("float64"))
    np.testing.assert_array_equal(records.update_ratios, [[0.5, 0.25, 0.0]] * 2)
    assert records.global_norm[0] == 5.0 and np.isnan(records.global_norm[1])
    first = NormRecords.from_buffer(buffer, seen=0, layers=3).global_norm[0]
    np.testing.assert_allclose(first, np.sqrt(3 * np.float64(np.float32(1e20)) ** 2), rtol=1e-12)


def test_layer_norms_from_scaled_squares_match_numpy_in_float64():
    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=(3, 4)) * 1e25, rng.normal(size=4) * 1e24,  # layer 0: squares past float32
        rng.normal(size=(4, 2)) * 1e-30, np.zeros(2),  # layer 1: tiny, beside a zero bias
        np.zeros((2, 2)), np.zeros(2),  # layer 2: all zero
        rng.normal(size=5), np.array([1.0, np.inf]),  # layer 3: an infinite entry
        np.array([np.nan, 1.0]), rng.normal(size=3),  # layer 4: a NaN
    ]
    arrays = [a.astype("float32") for a in arrays]
    layer_of = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    parts = [_backend.scaled_squares(keras.ops.convert_to_tensor(a)) for a in arrays]
    norms = keras.ops.convert_to_numpy(layer_norms(parts, layer_of, 5))
    expected = [np.linalg.norm(np.concatenate([arrays[i].astype("float64").ravel() for i in (k, k + 1)]))
                for k in range(0, 10, 2)]
    np.testing.assert_allclose(norms[:3], expected[:3], rtol=1e-5)
    assert norms[2] == 0.0 and norms[3] == np.inf and np.isnan(norms[4])


@pytest.mark.parametrize("scale", [1.0, 1e25])
def test_the_host_record_squares_the_parts_in_float64(scale):
    # torch's record: per-variable c²·s in float64 into norm_record, equal to the in-graph layer_norms.
    rng = np.random.default_rng(1)
    arrays = [(rng.normal(size=s) * scale).astype("float32") for s in [(3, 4), (4,), (4, 2), (2,)]]
    parts = [_backend.scaled_squares(keras.ops.convert_to_tensor(a)) for a in arrays]
    squares = np.array([float(keras.ops.convert_to_numpy(c)) ** 2 * float(keras.ops.convert_to_numpy(s))
                        for c, s in parts])
    row = norm_record(1.0, 0, squares, squares, squares, [0, 0, 1, 1], 2)
    in_graph = keras.ops.convert_to_numpy(layer_norms(parts, [0, 0, 1, 1], 2))
    np.testing.assert_allclose(row[2:4], in_graph, rtol=1e-6)
    expected = [np.linalg.norm(np.concatenate([arrays[i].astype("float64").ravel() for i in (k, k + 1)]))
                for k in (0, 2)]
    np.testing.assert_allclose(row[2:4], expected, rtol=1e-5)
