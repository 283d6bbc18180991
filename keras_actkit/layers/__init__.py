"""Activation layers, registered for `.keras` serialization."""

from keras_actkit.layers.hard_swish import HardSwish
from keras_actkit.layers.leaky_relu6 import LeakyReLU6
from keras_actkit.layers.prelu import PReLU

__all__ = ["HardSwish", "LeakyReLU6", "PReLU"]
