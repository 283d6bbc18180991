"""ReDo (Sokar et al. 2023): recycle dead units without changing the network's function.

Incoming weights redrawn with the initializer matched to the activation, bias
reset to 0, outgoing weights zeroed, and those entries of the optimizer's
slots restarted (see `counting.fresh_slot_value`).
"""

import keras
import numpy as np

from keras_actkit import _keras_internals
from keras_actkit.callbacks._dead_units.counting import fresh_slot_value
from keras_actkit.callbacks._tap import innermost
from keras_actkit.initializers import draw, initializer_for_info


def revive(model, site, units, seed):
    """Recycle `units` (indices) of `site`; returns how many were revived (0 when the site cannot be)."""
    kernel_layer = site.kernel_layer
    if units.size == 0 or kernel_layer is None:
        return 0
    initializer = initializer_for_info(site.info, seed=seed)
    kernel = kernel_layer.kernel
    fresh = draw(initializer, kernel.shape)
    set_units(model, kernel, units, axis=-1, source=fresh)
    if getattr(kernel_layer, "bias", None) is not None:
        set_units(model, kernel_layer.bias, units, axis=-1, source=None)
    for reader in site.consumers:
        # Dense kernel (in, out): rows; Conv kernel (..., in, out): axis -2.
        set_units(model, reader.kernel, units, axis=-2, source=None)
    return int(units.size)


def revival_seed(seed, count):
    """None without `seed`; else the seed of a fit's `count`-th revival, derived from `seed`.

    An initializer given one integer seed draws the same values at every call:
    each revival would put the same weights into every layer of one shape, and
    into the same units each time they are revived again.
    """
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, count]).generate_state(1)[0] >> 1)


def set_units(model, variable, units, axis, source):
    """Set `units` along `axis` of `variable` to `source`'s entries (0 when None), and restart
    those entries of the variable's optimizer slots (momentum, Adam moments)."""
    value = np.array(keras.ops.convert_to_numpy(variable.value))
    index = [slice(None)] * value.ndim
    index[axis] = units
    value[tuple(index)] = 0.0 if source is None else source[tuple(index)]
    variable.assign(value.astype(value.dtype))
    optimizer = getattr(model, "optimizer", None)
    optimizer = None if optimizer is None else innermost(optimizer)
    if optimizer is None or not optimizer.built:
        return
    for slot in _keras_internals.optimizer_slots(optimizer, variable):
        slot_value = np.array(keras.ops.convert_to_numpy(slot.value))
        slot_value[tuple(index)] = fresh_slot_value(slot_value, index, axis)
        slot.assign(slot_value)
