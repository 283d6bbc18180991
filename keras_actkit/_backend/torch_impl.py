"""torch: eager, so the condition is a Python branch (one scalar read per step)."""

import math

import keras
import torch

from keras_actkit._backend import _common
from keras_actkit._backend._common import (bookkeeping_in_skip_branch, call_train_function, compiles_random_per_shape,
                                           finite_of, finite_terms, global_apply, guarded_train_step,
                                           loss_tracked_after_apply, make_train_function, read_values, request_values,
                                           variable_scope, write_values)

__all__ = ["all_finite", "apply_if", "bookkeeping_in_skip_branch", "call_train_function", "compiles_random_per_shape",
           "eager_steps", "finite_of", "finite_terms", "global_apply", "guarded_train_step", "inference_function",
           "loss_tracked_after_apply", "make_train_function", "read_values", "recording_train_function",
           "request_values", "scaled_squares", "variable_scope", "write_values"]


def eager_steps():
    """The step runs eagerly: the clients may branch in Python."""
    return True


def all_finite(tensors):
    """A Python bool: the sum of every element, in float64, is finite exactly when every element is.

    NaN and +-inf propagate through a sum; float32 (or narrower) values cannot
    overflow a float64 sum. One reduction per tensor, no copy, and one read on
    the host for all of them (a read per tensor was 8 host syncs a step on the
    benchmark CNN, 10 on the MLP).
    """
    if len(tensors) == 1 and tensors[0].numel() == 1:
        # One number (the loss, every step): read it, ~1 us against ~20 for a reduction and a read.
        return math.isfinite(tensors[0].item())
    # detach: the loss arrives with its graph (reading it must not warn or keep the graph); a
    # gradient has none, and a detach per gradient is one more op a step.
    sums = [(t.detach() if t.requires_grad else t).sum(dtype=torch.float64) for t in tensors]
    if not sums:
        return True
    total = sums[0] if len(sums) == 1 else torch.stack(sums).sum()
    return math.isfinite(total.item())


def apply_if(condition, apply_fn, variables, otherwise=None):
    if bool(condition):
        apply_fn()
    elif otherwise is not None:
        otherwise()


def inference_function(model):
    def run(x):
        with torch.no_grad():
            outputs = keras.tree.flatten(model(x, training=False))
        return [out.detach().cpu().numpy() for out in outputs]

    return run


def scaled_squares(tensor):
    """As `_common.scaled_squares`; a sparse torch tensor is coalesced (repeated rows summed) first."""
    if getattr(tensor, "is_sparse", False):
        tensor = tensor.coalesce().values()
    return _common.scaled_squares(tensor)


def recording_train_function(model, function, record, limit=None):
    """`function` (a train function) with `record(batch)` called on its batch, before its step, until
    `record` returns True (enough) or `limit` batches are recorded; then `wrapped.finished` is True."""

    def wrapped(data):
        if not wrapped.finished:
            wrapped.recorded += 1
            # torch's trainer passes a list of one batch
            wrapped.finished = bool(record(data[0])) or (limit is not None and wrapped.recorded >= limit)
        return function(data)

    wrapped.finished, wrapped.recorded = False, 0
    return wrapped

