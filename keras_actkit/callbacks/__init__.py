"""Callbacks for `model.fit()` that watch and protect training."""

from keras_actkit.callbacks.auto_init import AutoInit

__all__ = ["AutoInit"]
