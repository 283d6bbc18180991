"""Each private Keras access of keras_actkit._keras_internals used by the monitors still works
on this Keras; a failure names the Keras attribute that changed."""

import keras
import numpy as np

from keras_actkit import _keras_internals


def test_direct_sublayers_Layer__flatten_layers():
    mha = keras.layers.MultiHeadAttention(2, 3, name="mha")
    mha(np.zeros((1, 2, 4), "float32"), np.zeros((1, 2, 4), "float32"))
    names = [layer.name for layer in _keras_internals.direct_sublayers(mha)]
    assert {"query", "key", "value", "attention_output"} <= set(names), "Layer._flatten_layers changed"


def test_functional_graph_Sequential__functional_and__nodes_by_depth():
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
