"""The one naming rule for layers in every callback: a layer's path in the model.

A layer's key is the names of the layers from the model down to it, joined by
`/`: `lstm_a`, `bilstm/forward_lstm`, `enc1_mha/query`, `block1/conv` for a
layer of a nested model. A recurrent layer's cell is part of its layer (the
LSTM's variables are `lstm_a`'s, not `lstm_a/lstm_cell`'s). A variable belongs
to the deepest layer that holds it; a shared layer keeps the path where the
walk meets it first. Two layers never share a key: when two distinct layers
under one parent have the same name, the later ones get `#2`, `#3`, ...

`GradientNormLogger`, `DeadNeuronMonitor` and `NaNGuard` all name layers
through `layer_paths` / `variable_keys`.
"""

import weakref

import keras

from keras_actkit import _keras_internals

# id(variable) -> (weak reference to it, key): lets `registered_key` name a
# variable met inside a step (where the model is not at hand).
_REGISTRY = {}


def _children(layer):
    if isinstance(layer, keras.Model):
        children = list(layer.layers)
    else:
        children = _keras_internals.direct_sublayers(layer)
    return [c for c in children if not isinstance(c, keras.layers.InputLayer)]


def walk(model):
    """[(layer, path)] for every layer inside `model` (the model itself excluded), parents first."""
    found, seen, taken = [], set(), set()

    def visit(layer, prefix):
        cell = getattr(layer, "cell", None) if isinstance(layer, keras.layers.RNN) else None
        for child in _children(layer):
            if id(child) in seen:
                continue  # a shared layer: its first path
            seen.add(id(child))
            if child is cell:
                path = prefix.rstrip("/")  # the cell is part of its RNN
            else:
                path = _unique(prefix + child.name, taken)
            found.append((child, path))
            visit(child, path + "/")

    visit(model, "")
    return found


def layer_paths(model):
    """{id(layer): path} for every layer inside `model` (the model itself excluded)."""
    return {id(layer): path for layer, path in walk(model)}


def _unique(path, taken):
    candidate, n = path, 1
    while candidate in taken:
        n += 1
        candidate = f"{path}#{n}"
    taken.add(candidate)
    return candidate


def variable_keys(model):
    """{id(variable): key} for every variable of `model`: the path of the deepest layer holding it.

    Also registers the keys for `registered_key`.
    """
    paths = layer_paths(model)
    keys = {}

    def visit(layer):
        for child in _children(layer):
            visit_once(child)
        key = paths.get(id(layer), model.name)
        for variable in layer.weights:
            keys.setdefault(id(variable), key)

    seen = set()

    def visit_once(layer):
        if id(layer) not in seen:
            seen.add(id(layer))
            visit(layer)

    visit_once(model)
    for variable in model.weights:
        if id(variable) in keys:
            _REGISTRY[id(variable)] = (weakref.ref(variable), keys[id(variable)])
    return keys


def fallback_key(variable):
    """For a variable of no walked model: its path without its first part and its own name.

    Right for a Sequential's layers (`sequential/dense/kernel`), not for a
    Functional model's (whose paths do not start with the model's name): call
    `variable_keys(model)` first, which registers the right keys.
    """
    parts = variable.path.split("/")
    return "/".join(parts[1:-1]) if len(parts) > 2 else parts[0]


def registered_key(variable):
    """The key `variable_keys` gave `variable` (for any model walked so far), else `fallback_key`."""
    entry = _REGISTRY.get(id(variable))
    if entry is not None and entry[0]() is variable:
        return entry[1]
    return fallback_key(variable)
