"""Variable reads and writes shared by the TensorFlow and torch backends (state lives in the variables)."""

import keras
import numpy as np


def read_values(model, variables):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


def write_values(model, variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)
