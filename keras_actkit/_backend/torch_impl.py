"""torch: eager, so the condition is a Python branch (one scalar read per step)."""

import torch

from keras_actkit._backend._common import global_apply, read_values, write_values

__all__ = ["all_finite", "apply_if", "global_apply", "read_values", "write_values"]


def all_finite(tensors):
    """A Python bool: one concatenation and one check instead of two ops per tensor."""
    return bool(torch.isfinite(torch.cat([t.reshape(-1) for t in tensors])).all())


def apply_if(condition, apply_fn, variables, otherwise=None):
    if bool(condition):
        apply_fn()
    elif otherwise is not None:
        otherwise()
