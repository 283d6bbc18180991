"""GradientNormLogger's record, as put together on the host for eager (torch) steps, against numpy."""

import numpy as np

from keras_actkit.callbacks._norm_client import norm_record


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
    global_norm = np.sqrt(sum(np.sum(np.square(g)) for g in grads))
    np.testing.assert_allclose(row, [5.0, 12, global_norm, *layer_grad, *ratio], rtol=1e-5)
    assert row.dtype == np.float32


def test_norm_record_ratio_of_a_zero_layer_is_zero_and_nan_gradients_stay_nan():
    row = norm_record(1.0, 0, np.array([np.nan, 4.0]), np.array([0.0, 1.0]), np.array([0.0, 4.0]), [0, 1], 2)
    assert np.isnan(row[2]) and np.isnan(row[3])  # global and layer 0 norms
    np.testing.assert_allclose(row[4:], [2.0, 0.0, 0.5])
