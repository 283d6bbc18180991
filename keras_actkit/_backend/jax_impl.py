"""JAX: the step is a pure function of the trainer's state.

`apply_if` runs the update inside a `lax.cond` (an update followed by a
per-variable select of new or old values, what Keras's own JAX optimizer does
for gradient accumulation, measured slower: XLA then keeps copies of the old
values). Inside a `fit` epoch the values live in `model._jax_state`, not in the
variables; reads take them from there, writes sync the state back first so the
next step picks up the new values.
"""

import functools
import weakref

import keras
import numpy as np

__all__ = ["all_finite", "apply_if", "bookkeeping_in_skip_branch", "call_train_function", "compiles_random_per_shape",
           "eager_steps", "finite_of", "finite_terms", "global_apply", "guarded_train_step", "inference_function",
           "loss_tracked_after_apply", "make_train_function", "read_values", "recording_train_function",
           "request_values", "scaled_squares", "variable_scope", "write_values"]

from keras_actkit import _keras_internals  # noqa: E402
from keras_actkit._backend import _common  # noqa: E402
from keras_actkit._backend._common import (all_finite, bookkeeping_in_skip_branch, eager_steps, finite_of,  # noqa: E402
                                           finite_terms, global_apply, variable_scope)


def compiles_random_per_shape():
    """Each new shape given to a random op is an XLA compilation (about a second for a truncated normal)."""
    return True


def loss_tracked_after_apply():
    return True  # Keras's JAX train_step updates its metrics after stateless_apply


def make_train_function(model, optimizer=None, carried=()):
    """`_common.make_train_function`, with `carried` among the optimizer's variables while the function
    is made (its output layout under a distribution is worked out then)."""
    with _keras_internals.carried_by(optimizer, carried):
        return _common.make_train_function(model)


def call_train_function(function, args, carried):
    """Call a train function made with `carried`: their values go in after the optimizer's and come out
    into the variables (no wait: an assignment of the step's output arrays)."""
    if not carried:
        return function(*args)
    (trainable, non_trainable, optimizer_values, metrics), data = args
    state = (trainable, non_trainable, list(optimizer_values) + [v.value for v in carried], metrics)
    logs, (trainable, non_trainable, optimizer_values, metrics) = function(state, data)
    own = len(optimizer_values) - len(carried)
    for variable, value in zip(carried, optimizer_values[own:]):
        variable.assign(value)
    return logs, (trainable, non_trainable, optimizer_values[:own], metrics)


def guarded_train_step(step, args, optimizer, carried, tap):
    """The traced step with `carried` among the optimizer's variables; after a skipped update the
    forward pass's state (`tap.restored`, e.g. BatchNormalization's moving statistics) is the step's input."""

    (trainable, non_trainable, optimizer_values, metrics), data = args
    with _keras_internals.carried_by(optimizer, carried):
        logs, (trainable, new_non_trainable, optimizer_values, metrics) = step(*args)
    if tap.restored and tap.decision is not None:
        import jax

        restored = {id(v) for v in tap.restored}
        variables = tap.model().non_trainable_variables
        positions = [i for i, v in enumerate(variables) if id(v) in restored]
        # A conditional, not a select: the new values stay whole outputs of the
        # step's computation, so a step that is not skipped rounds exactly as a
        # plain one (a select let XLA fuse BatchNormalization's moving-average
        # update differently: 1 ulp off a plain fit).
        kept = jax.lax.cond(tap.decision, lambda new, old: new, lambda new, old: old,
                            [new_non_trainable[i] for i in positions], [non_trainable[i] for i in positions])
        new_non_trainable = list(new_non_trainable)
        for i, value in zip(positions, kept):
            new_non_trainable[i] = value
    return logs, (trainable, new_non_trainable, optimizer_values, metrics)


def apply_if(condition, apply_fn, variables, otherwise=None):
    if otherwise is not None:
        raise NotImplementedError("apply_if(otherwise=...) on JAX: the skip branch of a traced step must be pure.")
    import jax

    # The step's other values (the optimizer's stateless_apply maps every
    # optimizer variable, the tap's too), readable inside the branch: under
    # gradient accumulation Keras's JAX optimizer reads all its variables.
    # Only `variables` come out of the branch.
    outer = _keras_internals.stateless_scope()
    others = {} if outer is None else dict(outer.state_mapping)

    def run(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            for key, value in others.items():
                scope.state_mapping.setdefault(key, value)
            apply_fn()
        out = []
        for variable, value in zip(variables, values):
            new = scope.get_current_value(variable)
            out.append(value if new is None else new)
        return out

    new_values = jax.lax.cond(condition, run, lambda values: list(values), [v.value for v in variables])
    for variable, value in zip(variables, new_values):
        variable.assign(value)


_GROUPS = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")
_POSITIONS = weakref.WeakKeyDictionary()  # model -> (History of the fit, optimizer variables, {id: (group, index)})


def _owners(model):
    optimizer = model.optimizer
    return (model.trainable_variables, model.non_trainable_variables,
            optimizer.variables if optimizer else [], model.metrics_variables)


def _positions(model):
    """Where each variable's value sits in the trainer's state; worked out once per fit.

    A callback reads a few variables every few steps. Listing the model's
    variables walks every layer (~50 us on a small model, more than the read
    itself), so the map is kept for the fit (its `History` object) and the
    number of optimizer variables, which changes when a tap client joins or
    leaves. Reads only ask mid-epoch, when every client of the fit has attached.
    """
    optimizer = model.optimizer
    fit, count = getattr(model, "history", None), len(optimizer.variables) if optimizer else 0
    cached = _POSITIONS.get(model)
    if cached is not None and cached[0] is fit and cached[1] == count:
        return cached[2]
    positions = {}
    for key, owner in zip(_GROUPS, _owners(model)):
        for index, variable in enumerate(owner):
            positions[id(variable)] = (key, index)
    _POSITIONS[model] = (fit, count, positions)
    return positions


def _live_values(model, variables):
    """The running values of `variables` inside a JAX epoch (None for each one not in the state)."""
    state = _keras_internals.running_jax_state(model)
    if state is None:
        return [None] * len(variables)
    positions = _positions(model)
    out = []
    for variable in variables:
        key, index = positions.get(id(variable), (None, None))
        values = state.get(key) if key is not None else None
        out.append(values[index] if values and index < len(values) else None)
    return out


@functools.cache
def _copy():
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda values: [jnp.copy(v) for v in values])


def request_values(model, variables):
    """Start copying the running values; the fetch waits only for that copy.

    The running values themselves cannot be kept for later: the next step
    consumes them (Keras donates the state to its jitted step). A copy
    dispatched now runs right after the step that produces them, so a fetch
    a few steps later finds it done, where reading the newest values waits
    for the step still running and drains the pipeline of dispatched steps.
    """
    values = [variable.value if value is None else value
              for variable, value in zip(variables, _live_values(model, variables))]
    copies = _copy()(values)
    return lambda: [np.array(c) for c in copies]


def read_values(model, variables):
    return [np.array(variable.value if value is None else value)
            for variable, value in zip(variables, _live_values(model, variables))]


def write_values(model, variables, values):
    # Put the running state back into the variables; with `_jax_state_synced`
    # set, the trainer gathers the state from the variables before its next step.
    model.jax_state_sync()
    for variable, value in zip(variables, values):
        variable.assign(value)


def inference_function(model):
    """A jitted forward pass taking the variables' values as arguments.

    Inside `jax.jit` a variable's value would be a constant of the trace; under
    a `StatelessScope` mapping each variable to an argument the trace reads the
    values given at each call (as `stateless_call` does, without the
    trainable/non-trainable split, which a user may change between fits).
    """
    import jax

    variables = list(model.variables)

    @jax.jit
    def run(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return keras.tree.flatten(model(x, training=False))

    return lambda x: [np.asarray(out) for out in run([v.value for v in variables], x)]



def scaled_squares(tensor):
    # JAX gradients are dense.
    return _common.scaled_squares(tensor)


def recording_train_function(model, function, record, limit=None):
    """`function` (a train function) with `record(batch)` called on each batch it takes, before its step,
    until `record` returns True (enough) or `limit` batches are recorded; then `wrapped.finished` is True.

    The batches are read from the iterator the trainer passes; the step runs unchanged.
    """

    def recorded(data):
        if not wrapped.finished:
            wrapped.recorded += 1
            wrapped.finished = bool(record(data)) or (limit is not None and wrapped.recorded >= limit)
        return data

    def wrapped(state, iterator):
        return function(state, map(recorded, iterator))

    wrapped.finished, wrapped.recorded = False, 0
    return wrapped

