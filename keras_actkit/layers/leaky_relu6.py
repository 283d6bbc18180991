import keras

from keras_actkit import activations


@keras.saving.register_keras_serializable(package=activations.PACKAGE)
class LeakyReLU6(keras.layers.Layer):
    """Leaky ReLU capped at 6.

    Formula:
    ```python
    f(x) = min(max(negative_slope * x, x), 6)
    ```
    i.e. `negative_slope * x` for `x < 0`, `x` for `0 <= x < 6`, and `6` above.
    The cap keeps activations bounded like ReLU6 (MobileNet); the leak keeps a
    non-zero gradient for negative inputs, so units cannot die like ReLU units.

    Args:
        negative_slope: Slope for `x < 0`, a float in [0, 1). `0` gives
            ReLU6. Defaults to `0.01`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Example:
    ```python
    layer = keras_actkit.layers.LeakyReLU6(negative_slope=0.1)
    layer(np.array([-10.0, -1.0, 0.0, 3.0, 10.0]))
    # [-1. , -0.1,  0. ,  3. ,  6. ]
    ```
    """

    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = activations.check_negative_slope(negative_slope)
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        return activations.leaky_relu6(inputs, self.negative_slope)

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "negative_slope": self.negative_slope}

    def compute_output_shape(self, input_shape):
        return input_shape
