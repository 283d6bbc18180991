"""keras_actkit._graph: the one walk of a model's graph, against the layers the model was built from."""

import keras

from keras_actkit._graph import Graph


def test_nodes_of_every_walked_model_and_none_for_a_subclassed_one():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(3, name="inner_dense")(inner_in), name="inner")

    class Sub(keras.Model):
        def call(self, x):
            return x

    sub = Sub(name="sub")
    x = keras.Input((4,))
    h = keras.layers.Dense(4, name="first")(x)
    outputs = keras.layers.Dense(2, name="last")(sub(inner(h)))
    model = keras.Model(x, outputs)
    graph = Graph(model)
    names = [node.operation.name for node in graph.nodes_of(model) if not node.is_input]
    assert names == ["first", "inner", "sub", "last"]  # inputs first, in call order
    assert [node.operation.name for node in graph.nodes_of(inner) if not node.is_input] == ["inner_dense"]
    assert graph.nodes_of(sub) is None and graph.unwalkable == [sub]
