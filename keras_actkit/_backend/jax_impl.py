"""JAX: the step is a pure function of the trainer's state.

`apply_if` runs the update and then selects, per variable, the new or the old
value (what Keras's own JAX optimizer does for gradient accumulation). Inside a
`fit` epoch the values live in `model._jax_state`, not in the variables; reads
take them from there, writes sync the state back first so the next step picks
up the new values.
"""

import jax.numpy as jnp
import numpy as np

__all__ = ["all_finite", "apply_if", "global_apply", "read_values", "ready", "write_values"]

from keras_actkit._backend._common import all_finite, global_apply  # noqa: E402


def apply_if(condition, apply_fn, variables, otherwise=None):
    if otherwise is not None:
        raise NotImplementedError("apply_if(otherwise=...) on JAX: the skip branch of a traced step must be pure.")
    import jax
    from keras.src.backend.common.stateless_scope import StatelessScope

    def run(values):
        with StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            apply_fn()
        out = []
        for variable, value in zip(variables, values):
            new = scope.get_current_value(variable)
            out.append(value if new is None else new)
        return out

    new_values = jax.lax.cond(condition, run, lambda values: list(values), [v.value for v in variables])
    for variable, value in zip(variables, new_values):
        variable.assign(value)


def _live_state(model):
    state = getattr(model, "_jax_state", None)
    if not state or getattr(model, "_jax_state_synced", True):
        return None
    groups = {}
    for key, owner in (("trainable_variables", model.trainable_variables),
                       ("non_trainable_variables", model.non_trainable_variables),
                       ("optimizer_variables", model.optimizer.variables if model.optimizer else []),
                       ("metrics_variables", model.metrics_variables)):
        values = state.get(key)
        if values:
            for variable, value in zip(owner, values):
                groups[id(variable)] = value
    return groups


def ready(model, variables):
    live = _live_state(model)
    if live is None:
        return True
    values = (live.get(id(variable)) for variable in variables)
    return all(value is None or not hasattr(value, "is_ready") or value.is_ready() for value in values)


def read_values(model, variables):
    live = _live_state(model)
    out = []
    for variable in variables:
        value = live.get(id(variable)) if live is not None else None
        out.append(np.array(variable.value if value is None else value))
    return out


def write_values(model, variables, values):
    # Put the running state back into the variables; with `_jax_state_synced`
    # set, the trainer gathers the state from the variables before its next step.
    model.jax_state_sync()
    for variable, value in zip(variables, values):
        variable.assign(value)
