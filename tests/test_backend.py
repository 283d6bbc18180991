"""keras_actkit._backend: the few backend-specific helpers, against numpy."""

import keras
import numpy as np
import pytest

from keras_actkit import _backend, _keras_internals
from conftest import only_backends


@pytest.mark.parametrize("poison", [None, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 1])
def test_all_finite_and_finite_terms_match_numpy(poison, where):
    arrays = [np.arange(6, dtype="float32").reshape(2, 3), np.full(4, 3e38, "float32")]  # large: no overflow
    if poison is not None:
        arrays[where].flat[1] = poison
    expected = all(np.all(np.isfinite(a)) for a in arrays)
    tensors = [keras.ops.convert_to_tensor(a) for a in arrays]
    assert bool(keras.ops.convert_to_numpy(_backend.all_finite(tensors))) is expected
    terms = [float(keras.ops.convert_to_numpy(t)) for t in _backend.finite_terms(tensors)]
    assert [np.isfinite(t) for t in terms] == [bool(np.all(np.isfinite(a))) for a in arrays]
    assert bool(keras.ops.convert_to_numpy(_backend.finite_of(_backend.finite_terms(tensors)))) is expected


@pytest.mark.parametrize("value", [1.5, -3e38, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_all_finite_of_one_number_matches_numpy(value, shape):
    # A loss: one number, read directly on torch.
    tensor = keras.ops.convert_to_tensor(np.full(shape, value, "float32"))
    assert bool(keras.ops.convert_to_numpy(_backend.all_finite([tensor]))) is bool(np.isfinite(value))


@only_backends("tensorflow")
def test_a_sparse_gradient_is_checked_by_its_values():
    # Only TensorFlow hands an Embedding's gradient over as IndexedSlices; JAX and torch give dense arrays.
    import tensorflow as tf

    values = np.ones((2, 4), "float32")
    good = tf.IndexedSlices(tf.constant(values), tf.constant([0, 3]), tf.constant([5, 4]))
    values[1, 2] = np.nan
    bad = tf.IndexedSlices(tf.constant(values), tf.constant([0, 3]), tf.constant([5, 4]))
    assert bool(_backend.all_finite([good])) and not bool(_backend.all_finite([good, bad]))


def _norm_from_parts(parts):
    scale, total = (float(keras.ops.convert_to_numpy(p)) for p in parts)
    return np.float64(scale) * np.sqrt(np.float64(total))


@pytest.mark.parametrize("values", [
    np.random.default_rng(0).normal(size=(5, 7)),
    np.full((3, 4), 4e20),  # squares past float32: a plain sum of squares is inf
    np.array([3e38, -3e38, 1.0]),  # the norm itself past float32: inf is the float32 answer
    np.random.default_rng(1).normal(size=50) * 1e-30,  # tiny: no underflow to 0
    np.zeros((2, 3)),
    np.zeros((0, 4)),
])
def test_scaled_squares_give_the_l2_norm_in_float64(values):
    values = values.astype("float32")
    norm = _norm_from_parts(_backend.scaled_squares(keras.ops.convert_to_tensor(values)))
    expected = np.linalg.norm(values.astype("float64").ravel())
    if expected > np.finfo("float32").max:
        assert np.float32(norm) == np.inf
    else:
        np.testing.assert_allclose(norm, expected, rtol=1e-6)


@pytest.mark.parametrize("poison, expected", [(np.inf, np.inf), (-np.inf, np.inf), (np.nan, np.nan)])
def test_scaled_squares_of_a_non_finite_entry_give_a_non_finite_norm(poison, expected):
    values = np.full(6, 2e25, "float32")
    values[3] = poison
    norm = _norm_from_parts(_backend.scaled_squares(keras.ops.convert_to_tensor(values)))
    np.testing.assert_equal(norm, expected)


@only_backends("tensorflow")
def test_scaled_squares_of_a_sparse_gradient_sum_its_repeated_rows():
    import tensorflow as tf

    values = np.array([[1e20, 2.0], [3e20, 4.0], [5.0, 6.0]], "float32")
    sparse = tf.IndexedSlices(tf.constant(values), tf.constant([2, 0, 2]), tf.constant([4, 2]))
    dense = np.zeros((4, 2))
    np.add.at(dense, [2, 0, 2], values.astype("float64"))
    np.testing.assert_allclose(_norm_from_parts(_backend.scaled_squares(sparse)), np.linalg.norm(dense), rtol=1e-6)


def test_make_train_function_calls_the_train_step_in_place_when_the_step_runs():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    model.fit(x, y, verbose=0)
    plain = model.train_function
    function = _backend.make_train_function(model, model.optimizer, [])
    assert model.train_function is plain and "train_step" not in model.__dict__
    seen = []
    step = type(model).train_step.__get__(model)

    def counted(*args):
        seen.append(1)
        return step(*args)

    model.train_function = function
    with _keras_internals.patched([(model, "train_step", counted)]):
        model.train_on_batch(x, y)
    assert seen and "train_step" not in model.__dict__


def test_patched_puts_everything_back_when_the_block_raises():
    class Owner:
        def method(self):
            return "class"

    owner = Owner()
    owner.own = "instance"
    with pytest.raises(RuntimeError):
        with _keras_internals.patched([(owner, "method", lambda: "patched"), (owner, "own", "patched")]):
            assert owner.method() == "patched" and owner.own == "patched"
            raise RuntimeError
    assert owner.method() == "class" and owner.own == "instance" and "method" not in owner.__dict__


def test_read_values_are_copies_of_every_dtype_and_write_values_casts():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=(4, 3)).astype("float32")),
                 keras.Variable(np.float16(2.5)),
                 keras.Variable(np.arange(5, dtype="int64"), trainable=False)]
    expected = [keras.ops.convert_to_numpy(v.value) for v in variables]
    read = _backend.read_values(model, variables)
    for got, want, variable in zip(read, expected, variables):
        assert got.dtype == np.dtype(variable.dtype) and got.shape == tuple(variable.shape)
        np.testing.assert_array_equal(got, want)
    # A copy: writing the variable later does not change what was read.
    _backend.write_values(model, variables, [np.zeros((4, 3)), 7.0, np.full(5, 9)])  # float64 / int64 in
    np.testing.assert_array_equal(read[0], expected[0])
    now = [keras.ops.convert_to_numpy(v.value) for v in variables]
    assert [a.dtype for a in now] == [a.dtype for a in expected]  # the variable's dtype, not the value's
    np.testing.assert_array_equal(now[0], np.zeros((4, 3)))
    assert now[1] == np.float16(7.0)
    np.testing.assert_array_equal(now[2], np.full(5, 9))


def test_write_values_refuses_a_value_of_another_shape():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    variable = keras.Variable(np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match="shape"):
        _backend.write_values(model, [variable], [np.zeros((3, 2), "float32")])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable.value), np.ones((2, 3)))


def test_every_backend_function_is_dispatched_and_nothing_else():
    # The package forwards exactly its documented API to the backend's module (PEP 562 __getattr__).
    module = _backend._impl()
    assert sorted(module.__all__) == sorted(_backend.API)
    for name in _backend.API:
        assert callable(getattr(module, name)), name
        assert getattr(_backend, name) is getattr(module, name)
        assert f"`{name}(" in _backend.__doc__, f"{name} is not described in keras_actkit._backend's docstring"
    with pytest.raises(AttributeError, match="no_such_function"):
        _backend.no_such_function
