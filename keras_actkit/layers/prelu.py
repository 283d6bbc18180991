import keras

from keras_actkit import _validation
from keras_actkit import activations

#: He et al. 2015 ("Delving Deep into Rectifiers") start every slope at 0.25.
DEFAULT_ALPHA = 0.25


def _check_shared_axes(shared_axes):
    if shared_axes is None:
        return None
    accepted = ("None, a non-zero integer axis or a list of them (negative values count from the last axis; "
                "axis 0 is the batch and cannot be shared)")
    axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
    for axis in axes:
        if not _validation.is_integer(axis):
            _validation._fail(TypeError, "shared_axes", shared_axes, accepted)
        if axis == 0:
            _validation._fail(ValueError, "shared_axes", shared_axes, accepted)
    return [int(axis) for axis in axes]


def _get(name, getter, identifier, what):
    """`getter(identifier)` (keras.initializers.get and the like) with an error naming the argument."""
    try:
        return getter(identifier)
    except (ValueError, TypeError) as error:
        # Keras's getters take None, a name, a config or a callable: anything else is the wrong type.
        wrong_type = not (identifier is None or isinstance(identifier, (str, dict)) or callable(identifier))
        raise (TypeError if wrong_type else ValueError)(
            f"`{name}` must be {what}; received {name}={identifier!r} ({error})."
        ) from None


@keras.saving.register_keras_serializable(package=activations.PACKAGE)
class PReLU(keras.layers.Layer):
    """Parametric ReLU with a learned slope, started at 0.25 (He et al. 2015).

    Formula:
    ```python
    f(x) = x           for x >= 0
    f(x) = alpha * x   for x < 0
    ```
    where `alpha` is learned, with one value per position of the non-shared
    axes. Unlike `keras.layers.PReLU` (which starts at 0, i.e. as a plain ReLU
    that can die), the slope starts at 0.25 as in the paper that introduced it.

    Args:
        alpha_initializer: Initializer for the slopes. Defaults to
            `Constant(0.25)`.
        alpha_regularizer: Regularizer for the slopes. Defaults to `None`.
        alpha_constraint: Constraint for the slopes. Defaults to `None`.
        shared_axes: Axes along which one slope is shared, as an int or a list
            of ints; negative values count from the last axis. For feature
            maps of shape `(batch, height, width, channels)`,
            `shared_axes=[1, 2]` (or `[-3, -2]`) learns one slope per channel
            and accepts images of any size. Axes of unknown size must be
            shared. Defaults to `None` (one slope per feature).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Example:
    ```python
    layer = keras_actkit.layers.PReLU()
    layer(np.array([[-4.0, -1.0, 0.0, 2.0]]))
    # [[-1.  , -0.25,  0.  ,  2.  ]]
    ```
    """

    def __init__(
        self,
        alpha_initializer=None,
        alpha_regularizer=None,
        alpha_constraint=None,
        shared_axes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if alpha_initializer is None:
            alpha_initializer = keras.initializers.Constant(DEFAULT_ALPHA)
        self.alpha_initializer = _get("alpha_initializer", keras.initializers.get, alpha_initializer,
                                      "a Keras initializer, its name or its config")
        self.alpha_regularizer = _get("alpha_regularizer", keras.regularizers.get, alpha_regularizer,
                                      "None, a Keras regularizer, its name or its config")
        self.alpha_constraint = _get("alpha_constraint", keras.constraints.get, alpha_constraint,
                                     "None, a Keras constraint, its name or its config")
        self.shared_axes = _check_shared_axes(shared_axes)
        self.supports_masking = True

    def _normalized_shared_axes(self, ndim):
        axes = set()
        for axis in self.shared_axes or ():
            positive = axis + ndim if axis < 0 else axis
            if not 1 <= positive < ndim:
                raise ValueError(
                    f"`shared_axes` entry {axis} is out of range for an input "
                    f"of rank {ndim}: accepted axes are 1..{ndim - 1} or "
                    f"-{ndim - 1}..-1. Received: shared_axes={self.shared_axes}"
                )
            axes.add(positive)
        return axes

    def build(self, input_shape):
        ndim = len(input_shape)
        if ndim < 2:
            raise ValueError(
                "PReLU expects inputs of rank >= 2 (a batch axis and at least "
                f"one feature axis). Received input_shape={input_shape}"
            )
        shared = self._normalized_shared_axes(ndim)
        param_shape = []
        for axis in range(1, ndim):
            if axis in shared:
                param_shape.append(1)
            elif input_shape[axis] is None:
                raise ValueError(
                    f"PReLU needs a known size for every axis it does not "
                    f"share, but axis {axis} of input_shape={input_shape} is "
                    f"unknown. Add it to `shared_axes` (e.g. shared_axes="
                    f"{sorted(shared | {axis})})."
                )
            else:
                param_shape.append(input_shape[axis])
        self.alpha = self.add_weight(
            shape=tuple(param_shape),
            name="alpha",
            initializer=self.alpha_initializer,
            regularizer=self.alpha_regularizer,
            constraint=self.alpha_constraint,
        )
        self.input_spec = keras.layers.InputSpec(
            ndim=ndim,
            axes={a: input_shape[a] for a in range(1, ndim) if a not in shared},
        )

    def call(self, inputs):
        return activations.prelu(inputs, self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha_initializer": keras.initializers.serialize(
                    self.alpha_initializer
                ),
                "alpha_regularizer": keras.regularizers.serialize(
                    self.alpha_regularizer
                ),
                "alpha_constraint": keras.constraints.serialize(
                    self.alpha_constraint
                ),
                "shared_axes": self.shared_axes,
            }
        )
        return config
