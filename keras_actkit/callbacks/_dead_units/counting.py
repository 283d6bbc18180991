"""Dead and saturated units from per-unit margins: pure functions over arrays."""

import dataclasses

import numpy as np


def bad_units(margin, kind, saturation):
    """Boolean mask of the units that are dead (`kind="dead"`: margin <= 0) or saturated
    (`kind="saturated"`: margin <= `saturation`), from each unit's margin over the probe."""
    margin = np.asarray(margin)
    return margin <= 0 if kind == "dead" else margin <= saturation


def fraction(mask):
    """Fraction of True units (0.0 for a layer without units)."""
    mask = np.asarray(mask)
    return np.count_nonzero(mask) / mask.size if mask.size else 0.0


def still_dead(mask, previous):
    """Units dead now and at the previous check (none at a first check)."""
    return mask & previous if previous is not None else np.zeros_like(mask)


def probe_problem(margins):
    """Why the probe's margins cannot be counted (NaN from a NaN probe or weights), or None."""
    for margin in margins:
        if np.asarray(margin).size and not np.all(np.isfinite(margin)):
            return "the probe's forward pass is not finite (NaN inputs or NaN weights)"
    return None


def fresh_slot_value(slot_value, index, axis):
    """What a recycled unit's optimizer slot starts from.

    Signed slots (momentum, Adam's first moment) start at 0. A non-negative
    slot is a running mean of squared gradients (Adam's and RMSprop's second
    moment, Adagrad's sum): a dead unit's has decayed to about 0, and Adam's
    first step divides by its root, so at 0 the fresh weights would take steps
    of ~3x the learning rate on every entry. It starts at the mean of the live
    units' entries instead, so the first updates have the size the rest of the
    layer has.
    """
    if slot_value.size == 0 or np.any(slot_value < 0):
        return 0.0
    live = np.ones(slot_value.shape[axis], bool)
    live[index[axis]] = False
    if not live.any():
        return 0.0
    return float(np.take(slot_value, np.flatnonzero(live), axis=axis).mean())


@dataclasses.dataclass
class LayerCheck:
    """One layer at one check."""

    name: str
    kind: str  # "dead" or "saturated"
    fraction: float
    mask: np.ndarray  # per unit: dead (saturated)
    still_dead: int = 0  # units dead at this check and the one before
    revived: int = 0


def finite_samples(probe):
    """The probe without the samples holding a NaN or an infinity (in any of its input arrays),
    and how many were dropped. A NaN sample makes every unit's margin NaN (read as 0% dead on
    JAX and torch, 100% on TensorFlow): it cannot count."""
    import keras

    leaves = [np.asarray(leaf) for leaf in keras.tree.flatten(probe)]
    keep = np.ones(len(leaves[0]), bool)
    for leaf in leaves:
        if np.issubdtype(leaf.dtype, np.number):
            keep &= np.isfinite(leaf.reshape(len(leaf), -1)).all(axis=1)
    if keep.all():
        return probe, 0
    return keras.tree.map_structure(lambda leaf: np.asarray(leaf)[keep], probe), int((~keep).sum())


def advice(name, kind, activation, fraction):
    """The warning for a layer whose dead (`kind="dead"`) or saturated fraction passed the threshold."""
    if kind == "dead":
        return (f"DeadNeuronMonitor: {fraction:.0%} of the units of {name!r} ({activation}) are dead "
                "(pre-activation <= 0 on every probe sample). Remedies: a leaky activation "
                "(keras_actkit.layers.LeakyReLU6 or PReLU), a lower learning rate "
                "(keras_actkit.find_lr), He initialisation (keras_actkit.match_initializers), "
                "or DeadNeuronMonitor(revive=True).")
    return (f"DeadNeuronMonitor: {fraction:.0%} of the units of {name!r} ({activation}) are "
            "saturated on every probe sample: their gradients vanish. Remedies: a ReLU-family "
            "activation in hidden layers, BatchNormalization before the activation, "
            "Glorot initialisation (keras_actkit.match_initializers), a lower learning rate.")
