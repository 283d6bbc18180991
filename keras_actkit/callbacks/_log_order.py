"""The kit's callbacks write into the epoch `logs` before the callbacks that read them.

Keras calls callbacks in list order with one shared `logs` dict: a `CSVLogger`
or `TensorBoard` placed before a callback that adds keys has already written
its row without them (and `CSVLogger` fixes its columns at its first row); a
user's callback placed before `NaNGuard` would read Keras's 0.0 for an epoch
whose every step was skipped, where the guard writes NaN.
`run_before_loggers(self)`, called first thing in `on_train_begin`, moves the
calling callback just ahead of the first one listed before it that acts on
the epoch logs, so the order a user gives does not matter.
"""

import warnings

import keras

from keras_actkit import _keras_internals


def reads_epoch_logs(callback):
    """Whether `callback` has an `on_epoch_end` of its own (it may read, record or act on the epoch logs):
    Keras's loggers, checkpoints, early stopping, a `LambdaCallback` given one, a user's subclass.

    The kit's own callbacks only add keys: their order among themselves is left as given.
    """
    if type(callback).__module__.startswith("keras_actkit."):
        return False
    hook = callback.on_epoch_end
    return getattr(hook, "__func__", hook) is not keras.callbacks.Callback.on_epoch_end


_warned = set()


def run_before_loggers(callback):
    """Move `callback` ahead of the callbacks listed before it that read the epoch logs (`reads_epoch_logs`).

    Safe inside `CallbackList.on_train_begin`'s loop: the callbacks between the
    logger and `callback` have had their `on_train_begin` already, and after
    the move the loop goes on with the one that followed `callback`. Returns
    True when it moved `callback`. When the running list cannot be found (a
    changed Keras), warns once naming the fix.
    """
    listing = _keras_internals.running_callback_list(callback, depth=4)
    if listing is None:
        # `params` is set by the CallbackList of a fit (not when hooks are called by hand).
        if "not found" not in _warned and getattr(callback, "params", None):
            _warned.add("not found")
            warnings.warn(f"{type(callback).__name__}: could not check the order of the callbacks; place "
                          "CSVLogger/TensorBoard after the keras_actkit callbacks in `callbacks=[...]`, or they "
                          "miss the columns these add.", stacklevel=3)
        return False
    callbacks = listing.callbacks
    mine = next(i for i, c in enumerate(callbacks) if c is callback)
    first = next((i for i, c in enumerate(callbacks[:mine]) if reads_epoch_logs(c)), None)
    if first is None:
        return False
    callbacks.insert(first, callbacks.pop(mine))
    return True

