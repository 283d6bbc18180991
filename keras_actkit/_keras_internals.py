"""Every access to a private Keras attribute, one function each.

Keras keeps no public API for a few things the callbacks need (a layer's own
sublayers, the graph of a functional model, an optimizer's per-variable slots,
the list of callbacks a `fit` runs). Each access lives here, with a docstring
naming the Keras attribute it touches, so a Keras release that changes one
breaks one function, and `tests/test_keras_internals_monitors.py` names it.
"""

import sys

import keras


class KerasInternalsChanged(RuntimeError):
    """A private Keras attribute the kit relies on is gone or changed shape."""


def _missing(owner, attribute):
    return KerasInternalsChanged(
        f"keras_actkit relies on the private Keras attribute `{type(owner).__name__}.{attribute}`, which this Keras "
        f"({keras.__version__}) does not have. Please report it with your Keras version."
    )


def direct_sublayers(layer):
    """The layers `layer` tracks directly (not their own sublayers).

    Touches `Layer._flatten_layers(include_self=False, recursive=False)`.
    """
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        raise _missing(layer, "_flatten_layers")
    return list(flatten(include_self=False, recursive=False))


def functional_of(model):
    """The functional graph behind `model` (itself, or a Sequential's), or None for a subclassed model.

    Touches `Sequential._functional` and `Functional._nodes_by_depth`.
    """
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if graph is None or not hasattr(graph, "_nodes_by_depth"):
        return None
    return graph


def nodes_inputs_first(functional):
    """The nodes of a functional graph, inputs first.

    Touches `Functional._nodes_by_depth`.
    """
    by_depth = getattr(functional, "_nodes_by_depth", None)
    if by_depth is None:
        raise _missing(functional, "_nodes_by_depth")
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def producer(tensor):
    """(operation, node) that produced a symbolic tensor, or (None, None) for a model input.

    Touches `KerasTensor._keras_history` and `Operation._inbound_nodes`.
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None
    op = history.operation
    nodes = getattr(op, "_inbound_nodes", [])
    return op, (nodes[history.node_index] if history.node_index < len(nodes) else None)


def optimizer_slots(optimizer, variable):
    """The per-variable slot variables (momentum, Adam moments, ...) the optimizer keeps for `variable`.

    Touches `Optimizer._get_variable_index` and `Optimizer._trainable_variables`:
    every list attribute of the optimizer as long as its variable list and made
    of variables is a slot list, indexed like the variables.
    """
    try:
        position = optimizer._get_variable_index(variable)
    except (KeyError, AttributeError, ValueError):
        return []
    watched = optimizer._trainable_variables
    found = []
    for slots in vars(optimizer).values():
        if isinstance(slots, (list, tuple)) and slots is not watched and len(slots) == len(watched) \
                and all(isinstance(s, keras.Variable) or s is None for s in slots):
            slot = slots[position]
            if slot is not None and slot is not variable and tuple(slot.shape) == tuple(variable.shape):
                found.append(slot)
    return found


def running_callback_list(callback, depth=8):
    """The `CallbackList` whose hook is calling `callback` right now, or None.

    A callback is not told which list runs it. Called from a hook, this looks
    at the few frames above for a `keras.callbacks.CallbackList` (its `self`)
    holding `callback` in `CallbackList.callbacks`, the list `fit` iterates.
    """
    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList):
            listed = getattr(owner, "callbacks", None)
            if isinstance(listed, list) and any(c is callback for c in listed):
                return owner
        frame = frame.f_back
    return None
