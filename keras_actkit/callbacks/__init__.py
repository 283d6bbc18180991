"""Callbacks for `model.fit()` that watch and protect training."""

from keras_actkit.callbacks.auto_init import AutoInit
from keras_actkit.callbacks.dead_neurons import DeadNeuronMonitor
from keras_actkit.callbacks.lr_finder import LRFinder
from keras_actkit.callbacks.lr_finder import LRFinderResult

__all__ = ["AutoInit", "DeadNeuronMonitor", "LRFinder", "LRFinderResult"]
