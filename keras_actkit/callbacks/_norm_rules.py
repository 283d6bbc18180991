"""GradientNormLogger's tests, as pure functions over arrays of recorded norms.

The records are per optimizer step: the global L2 norm of the gradient and the
L2 norm of each layer's gradient, both taken before the optimizer's
`clipnorm` / `clipvalue` / `global_clipnorm` (the tap sees the gradients the
optimizer receives).
"""

import math
import statistics

import numpy as np

# Records the exploding test needs before a step (at most `window`).
MIN_HISTORY = 5


def first_exploding(global_norms, start, window, factor):
    """Index of the first value from `start` on that is non-finite or above `factor` times the
    median of the (up to `window`) values before it; None if there is none.

    A value needs min(5, window) values before it to be judged. Plain Python:
    the arrays are a few dozen values, where a numpy call costs more than its arithmetic.
    """
    norms = [float(v) for v in global_norms]
    enough = min(MIN_HISTORY, window)
    for index in range(start, len(norms)):
        history = norms[max(0, index - window): index]
        if len(history) < enough:
            continue
        value = norms[index]
        if not math.isfinite(value) or value > factor * statistics.median(history):
            return index
    return None


def largest_jumps(norms, past_norms, count=3):
    """Indices of the `count` layers whose norm grew most over their median in `past_norms`
    (rows: earlier records), with the growth factors (inf for a non-finite norm or a zero past)."""
    norms = np.asarray(norms, "float64")
    past = np.median(np.asarray(past_norms, "float64"), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = np.where(past > 0, norms / past, np.inf)
    jump = np.where(np.isfinite(norms), jump, np.inf)
    order = np.argsort(-jump)[:count]
    return order, jump[order]


def first_vanishing(norms, sizes, ratio):
    """First record whose first layers' RMS gradient is below `ratio` times the last layers'.

    `norms` is (records, layers) of per-layer L2 norms, `sizes` the number of
    weights per layer (RMS = norm / sqrt(size)); the first and last thirds of
    the layers are compared by the mean of their log RMS. Returns (index, the
    ratio found) or None. Records with a non-finite norm, or a zero gradient
    in the last third, are not judged.
    """
    norms = np.asarray(norms, "float64")
    layers = norms.shape[1] if norms.ndim == 2 else 0
    if layers < 2 or not len(norms):
        return None
    third = max(1, layers // 3)
    rms = norms / np.sqrt(np.asarray(sizes, "float64"))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.maximum(rms, 1e-300))
        log_ratio = logs[:, :third].mean(axis=1) - logs[:, -third:].mean(axis=1)
    valid = np.isfinite(rms).all(axis=1) & (rms[:, -third:] > 0).all(axis=1)
    hits = np.flatnonzero(valid & (log_ratio < math.log(ratio)))
    if not hits.size:
        return None
    return int(hits[0]), float(np.exp(log_ratio[hits[0]]))


def clipping_note(clipnorm=None, clipvalue=None, global_clipnorm=None):
    """What to say about the optimizer's clipping next to a norm the logger reports."""
    set_ = [f"{name}={value:g}" for name, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                                     ("global_clipnorm", global_clipnorm)) if value is not None]
    if not set_:
        return "Norms are of the gradient the optimizer receives (before any clipnorm/clipvalue)."
    return (f"Norms are of the gradient before the optimizer's clipping ({', '.join(set_)}): the update "
            "itself is clipped.")


def vanishing_remedies(first_norms, saturating_model):
    """Remedies for vanishing gradients, given the first layers' norms and whether the model
    has saturating activations (sigmoid, tanh, ...)."""
    first_norms = np.asarray(first_norms, "float64")
    if first_norms.size and np.any(first_norms == 0):
        return ("A layer's gradient is exactly 0: its units are likely dead (ReLU units with a pre-activation "
                "<= 0 on every sample), not saturated; check with keras_actkit.callbacks.DeadNeuronMonitor. "
                "Remedies: a lower learning rate (keras_actkit.find_lr), a leaky activation "
                "(keras_actkit.layers.LeakyReLU6, PReLU), He initialisation (keras_actkit.match_initializers), "
                "DeadNeuronMonitor(revive=True).")
    if saturating_model:
        return ("Remedies: ReLU-family activations (keras_actkit.layers.LeakyReLU6, PReLU) with matched "
                "initialisation (keras_actkit.match_initializers), BatchNormalization, residual connections.")
    return ("Remedies: initialisation matched to the activations (keras_actkit.match_initializers), "
            "BatchNormalization, residual connections, fewer layers.")
