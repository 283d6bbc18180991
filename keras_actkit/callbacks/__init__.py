"""Callbacks for `model.fit()` that watch and protect training."""

from keras_actkit.callbacks.auto_init import AutoInit
from keras_actkit.callbacks.dead_neurons import DeadNeuronMonitor
from keras_actkit.callbacks.gradient_norms import GradientNormLogger
from keras_actkit.callbacks.lr_finder import LRFinder
from keras_actkit.callbacks.lr_finder import LRFinderResult
from keras_actkit.callbacks.nan_guard import NaNGuard

__all__ = ["AutoInit", "DeadNeuronMonitor", "GradientNormLogger", "LRFinder", "LRFinderResult", "NaNGuard"]
