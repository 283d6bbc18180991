"""keras_actkit: safe activation choices for Keras 3 on every backend."""

from keras_actkit import activations
from keras_actkit import callbacks
from keras_actkit import initializers
from keras_actkit import layers
from keras_actkit.activation_info import ActivationInfo
from keras_actkit.activation_info import describe_activation
from keras_actkit.callbacks.lr_finder import find_lr
from keras_actkit.diagnosis import check_model
from keras_actkit.diagnosis import diagnose
from keras_actkit.init_matching import MatchReport
from keras_actkit.init_matching import match_initializers

__version__ = "0.1.0"

__all__ = [
    "ActivationInfo",
    "MatchReport",
    "activations",
    "callbacks",
    "check_model",
    "describe_activation",
    "diagnose",
    "find_lr",
    "initializers",
    "layers",
    "match_initializers",
]
