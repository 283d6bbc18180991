import keras

from keras_actkit import activations


@keras.saving.register_keras_serializable(package=activations.PACKAGE)
class HardSwish(keras.layers.Layer):
    """Hard swish activation (MobileNetV3).

    Formula:
    ```python
    f(x) = x * relu6(x + 3) / 6
    ```
    i.e. `0` for `x <= -3`, `x` for `x >= 3`, and `x * (x + 3) / 6` between:
    a piecewise-quadratic approximation of swish (`x * sigmoid(x)`) with no
    exponential.

    Args:
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Example:
    ```python
    layer = keras_actkit.layers.HardSwish()
    layer(np.array([-4.0, -1.0, 0.0, 1.0, 4.0]))
    # [-0.        , -0.33333334,  0.        ,  0.6666667 ,  4.        ]
    ```
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        return activations.hard_swish(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape
