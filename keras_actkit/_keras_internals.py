"""Every access to a private Keras attribute, one function each, named after what it reads.

When a Keras release renames one of these, the failure is here, with the
attribute's name, not deep in a callback.
"""

import keras


def functional_graph(model):
    """The Functional graph behind `model` (Sequential: its `_functional`), or None for a subclassed model.

    Touches `keras.Sequential._functional` and `Functional._nodes_by_depth`.
    """
    functional = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if functional is None or not hasattr(functional, "_nodes_by_depth"):
        return None
    return functional


def nodes_inputs_first(functional):
    """The operation nodes of a Functional graph, inputs first (Input nodes left out).

    Touches `Functional._nodes_by_depth` and `Node.is_input`.
    """
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if not node.is_input:
                yield node


def inbound_node(layer, index):
    """The node of `layer`'s `index`-th call (a symbolic tensor's `_keras_history.node_index`).

    Touches `Layer._inbound_nodes`.
    """
    return layer._inbound_nodes[index]
