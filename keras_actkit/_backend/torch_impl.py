"""torch: eager, so the condition is a Python branch (one scalar read per step)."""

from keras_actkit._backend._common import read_values, write_values

__all__ = ["apply_if", "read_values", "write_values"]


def apply_if(condition, apply_fn, variables):
    if bool(condition):
        apply_fn()
