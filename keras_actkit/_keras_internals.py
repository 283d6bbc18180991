"""Every access to a private Keras attribute, one function each.

Keras keeps no public API for a few things the kit needs (an optimizer's
variable list and learning-rate object, a functional model's graph, a layer's
own sublayers, the list of callbacks a `fit` runs, the loss tracker). Each
access lives here, with a docstring naming the Keras attribute it touches, so
a Keras release that changes one breaks one function, and
`tests/test_keras_internals.py` names it. Monkeypatches of Keras objects
(instance attributes that shadow a method for a while) are made here too.
"""

import contextlib
import sys

import keras


def learning_rate_object(optimizer):
    """`optimizer._learning_rate`: the learning-rate `keras.Variable`, or the schedule (or callable).

    The public `optimizer.learning_rate` evaluates a schedule; callers that
    must restore exactly what was there need the object itself.
    """
    return optimizer._learning_rate


def put_learning_rate_object(optimizer, value):
    """Set `optimizer._learning_rate` directly.

    The public setter untracks the learning-rate variable when a schedule
    replaces it, which changes `optimizer.variables` (the list a checkpoint and
    JAX's training state are built from); a temporary schedule must not.
    """
    optimizer._learning_rate = value


def model_fully_built(model):
    """Whether every layer of `model` is built (`model._flatten_layers()`), as Keras's own `fit` decides."""
    return all(layer.built for layer in model._flatten_layers())


def symbolic_build(model, data_batch):
    """`model._symbolic_build(data_batch=...)`: build the model, its compiled loss and metrics and its
    optimizer from one `(x, y[, sample_weight])` batch, without running a step (what `fit` does on
    JAX and torch before `on_train_begin`; TensorFlow defers it to the first traced step)."""
    model._symbolic_build(data_batch=data_batch)


def untracked_optimizer_variables(optimizer, specs):
    """New variables made by `optimizer.add_variable` (its name scope, dtype policy and distribution
    strategy), taken out of `optimizer._variables` again: the optimizer does not hold them."""
    variables = [optimizer.add_variable(shape, initializer="zeros", dtype=dtype, name=name)
                 for shape, dtype, name in specs]
    _remove(optimizer._variables, variables)
    return variables


def _remove(tracked, variables):
    ids = {id(v) for v in variables}
    for index in reversed(range(len(tracked))):  # a tracking list wrapper on TensorFlow: delete in place
        if id(tracked[index]) in ids:
            del tracked[index]


@contextlib.contextmanager
def carried_by(optimizer, variables):
    """Append `variables` to `optimizer._variables` for the length of the block, then take them out.

    JAX's step threads the optimizer's variables through `stateless_apply` (and
    `LossScaleOptimizer`'s conditional returns exactly those): variables the
    tap's clients write inside `apply` must be among them while the step is
    traced and while its output layout is worked out; nowhere else.
    """
    if not variables:
        yield
        return
    optimizer._variables.extend(variables)
    try:
        yield
    finally:
        _remove(optimizer._variables, variables)


def iterations_variable(optimizer):
    """`optimizer._iterations`: the raw step counter (micro-steps under gradient accumulation)."""
    return optimizer._iterations


def default_trainable_variables(optimizer):
    """`optimizer._trainable_variables`: what `apply(grads)` updates when given no variables."""
    return optimizer._trainable_variables


def gradient_accumulators(optimizer, variables):
    """`optimizer._accumulated_gradients[optimizer._get_variable_index(v)]` for each of `variables`."""
    return [optimizer._accumulated_gradients[optimizer._get_variable_index(v)] for v in variables]


def loss_tracker(model):
    """`model._loss_tracker`: the `Mean` behind `logs["loss"]` (None before `compile`)."""
    return getattr(model, "_loss_tracker", None)


def stateless_scope():
    """The innermost active `keras.StatelessScope` (`keras.src.backend.common.stateless_scope`), or None."""
    from keras.src.backend.common.stateless_scope import get_stateless_scope

    return get_stateless_scope()


@contextlib.contextmanager
def patched(patches):
    """Shadow methods with instance attributes for the length of the block: `patches` is a list of
    (object, attribute name, function). Whatever ends the block, each object is left as it was (an
    instance attribute it had before is put back)."""
    saved = []
    try:
        for owner, name, function in patches:
            saved.append((owner, name, owner.__dict__.get(name, _ABSENT)))
            # Straight into the instance's dict: no attribute tracking (Keras
            # layers and optimizers track what is set on them), ~1 us a call.
            owner.__dict__[name] = function
        yield
    finally:
        for owner, name, before in reversed(saved):
            if before is _ABSENT:
                owner.__dict__.pop(name, None)
            else:
                owner.__dict__[name] = before


_ABSENT = object()


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


def running_jax_state(model):
    """`model._jax_state` while a JAX `fit` runs and has not synced it back (`model._jax_state_synced`
    false): the trainer's own values of every variable, newer than the variables'; else None."""
    state = getattr(model, "_jax_state", None)
    if not state or getattr(model, "_jax_state_synced", True):
        return None
    return state
