"""keras_actkit: safe activation choices for Keras 3 on every backend."""

from keras_actkit import activations
from keras_actkit import callbacks
from keras_actkit import layers

__version__ = "0.1.0"

__all__ = ["activations", "callbacks", "layers"]
