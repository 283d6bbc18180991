"""Each private Keras access of keras_actkit._keras_internals still works on this Keras; a failure
names the Keras attribute that changed. `test_every_access_point_has_a_test` keeps it that way."""

import inspect
import pathlib

import keras
import numpy as np
import pytest

from keras_actkit import _keras_internals


def _compiled(optimizer="adam", **compile_kwargs):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    model.compile(optimizer, "mse", **compile_kwargs)
    model.optimizer.build(model.trainable_variables)
    return model


def test_every_access_point_has_a_test():
    """A new function in _keras_internals needs a test here (or in test_training_state) naming it."""
    here = pathlib.Path(__file__).parent
    text = (here / "test_keras_internals.py").read_text() + (here / "test_training_state.py").read_text()
    public = [name for name, value in vars(_keras_internals).items()
              if inspect.isfunction(value) and not name.startswith("_") and value.__module__ == _keras_internals.__name__]
    untested = [name for name in public if f"_keras_internals.{name}(" not in text]
    assert not untested, f"access points without a test: {untested}"


def test_optimizer_variable_list_Optimizer__variables():
    model = _compiled()
    optimizer = model.optimizer
    before = len(optimizer.variables)
    extra = _keras_internals.untracked_optimizer_variables(optimizer, [((2,), "float32", "extra")])
    assert len(extra) == 1 and tuple(extra[0].shape) == (2,)
    assert len(optimizer.variables) == before, "Optimizer.add_variable / Optimizer._variables changed"
    with _keras_internals.carried_by(optimizer, extra):
        assert any(v is extra[0] for v in optimizer.variables), "Optimizer._variables no longer backs .variables"
    assert len(optimizer.variables) == before


def test_iterations_and_default_variables_Optimizer__iterations__trainable_variables():
    model = _compiled()
    optimizer = model.optimizer
    assert _keras_internals.iterations_variable(optimizer) is optimizer.iterations, "Optimizer._iterations changed"
    assert [id(v) for v in _keras_internals.default_trainable_variables(optimizer)] == \
        [id(v) for v in model.trainable_variables], "Optimizer._trainable_variables changed"


def test_gradient_accumulators_Optimizer__accumulated_gradients():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(gradient_accumulation_steps=2), "mse")
    model.optimizer.build(model.trainable_variables)
    slots = _keras_internals.gradient_accumulators(model.optimizer, model.trainable_variables)
    assert [tuple(s.shape) for s in slots] == [tuple(v.shape) for v in model.trainable_variables], \
        "Optimizer._accumulated_gradients / _get_variable_index changed"


def test_loss_tracker_Model__loss_tracker():
    model = _compiled()
    tracker = _keras_internals.loss_tracker(model)
    assert isinstance(tracker, keras.metrics.Mean), "Model._loss_tracker changed"
    assert _keras_internals.loss_tracker(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])) is None


def test_stateless_scope_get_stateless_scope():
    assert _keras_internals.stateless_scope() is None
    with keras.StatelessScope() as scope:
        assert _keras_internals.stateless_scope() is scope, \
            "keras.src.backend.common.stateless_scope.get_stateless_scope changed"


def test_patched_leaves_each_object_as_it_was():
    model = _compiled()
    optimizer = model.optimizer
    optimizer.__dict__["marker"] = "before"
    with pytest.raises(RuntimeError):
        with _keras_internals.patched([(optimizer, "apply", lambda *a: None), (optimizer, "marker", "during")]):
            assert optimizer.marker == "during"
            raise RuntimeError("boom")
    assert "apply" not in optimizer.__dict__ and optimizer.marker == "before"


def test_build_state_Layer__flatten_layers_Model__symbolic_build():
    model = keras.Sequential([keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    assert not _keras_internals.model_fully_built(model)
    x, y = np.zeros((4, 3), "float32"), np.zeros((4, 1), "float32")
    _keras_internals.symbolic_build(model, (x, y))
    assert _keras_internals.model_fully_built(model), "Model._symbolic_build / Layer._flatten_layers changed"
    assert model.optimizer.built


def test_direct_sublayers_Layer__flatten_layers():
    mha = keras.layers.MultiHeadAttention(2, 3, name="mha")
    mha(np.zeros((1, 2, 4), "float32"), np.zeros((1, 2, 4), "float32"))
    names = [layer.name for layer in _keras_internals.direct_sublayers(mha)]
    assert {"query", "key", "value", "attention_output"} <= set(names), "Layer._flatten_layers changed"


def test_functional_of_Sequential__functional_and__nodes_by_depth():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    graph = _keras_internals.functional_of(model)
    assert graph is not None, "Sequential._functional / Functional._nodes_by_depth changed"
    ops = [node.operation.name for node in _keras_internals.nodes_inputs_first(graph) if not node.is_input]
    assert ops == ["d"], "Functional._nodes_by_depth changed"

    class Sub(keras.Model):
        def call(self, x):
            return x

    assert _keras_internals.functional_of(Sub()) is None


def test_producer_KerasTensor__keras_history():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2)
    op, node = _keras_internals.producer(dense(inputs))
    assert op is dense and node is not None, "KerasTensor._keras_history / Operation._inbound_nodes changed"
    assert _keras_internals.producer(inputs)[0] is not dense


def test_optimizer_slots_Optimizer__get_variable_index():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    slots = _keras_internals.optimizer_slots(optimizer, model.trainable_variables[0])
    assert len(slots) == 2, "Optimizer._get_variable_index / _trainable_variables / slot lists changed"
    assert all(tuple(s.shape) == (3, 2) for s in slots)


def test_running_callback_list_CallbackList_callbacks():
    found = []

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            found.append(_keras_internals.running_callback_list(self))

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    probe = Probe()
    model.fit(np.zeros((4, 3)), np.zeros((4, 1)), verbose=0, callbacks=[probe])
    assert found[0] is not None, "the CallbackList running a fit is no longer found (CallbackList.callbacks)"
    assert any(c is probe for c in found[0].callbacks)


def test_running_jax_state_Model__jax_state():
    model = _compiled("sgd")
    assert _keras_internals.running_jax_state(model) is None  # no fit running
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            # `self._model`: reading `Callback.model` syncs the JAX state back.
            seen.append(_keras_internals.running_jax_state(self._model))

    model.fit(np.zeros((8, 3), "float32"), np.zeros((8, 2), "float32"), batch_size=4, epochs=1, verbose=0,
              callbacks=[Probe()])
    if keras.backend.backend() == "jax":
        assert seen[0] is None and seen[1] is not None and "trainable_variables" in seen[1], \
            "Keras's JAX trainer no longer keeps model._jax_state / _jax_state_synced during fit"
    else:
        assert seen == [None, None]
