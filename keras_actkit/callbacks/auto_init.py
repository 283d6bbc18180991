import logging
import warnings

import keras

from keras_actkit import _validation
from keras_actkit.init_matching import match_initializers
from keras_actkit.initializers import DISTRIBUTIONS

logger = logging.getLogger(__name__)


class AutoInit(keras.callbacks.Callback):
    """Match every kernel's initializer to its activation when `fit` starts.

    Runs `keras_actkit.match_initializers` in `on_train_begin`, but only while
    no training step has run yet (`optimizer.iterations == 0`): re-drawing
    weights that have already learned would throw that learning away, so on a
    second `fit` it warns once and changes nothing.

    Args:
        only_defaults: Leave kernels whose initializer the user set. Defaults
            to True.
        distribution: `"truncated_normal"` (default), `"untruncated_normal"`
            or `"uniform"`.
        seed: Optional seed for the new initializers.
        calibration_data: Optional batch of real inputs; see
            `keras_actkit.match_initializers`. Recommended for deep stacks of
            swish, GELU or hard-swish.

    Attributes:
        report: The `MatchReport` of the last run, or None if it did nothing.

    Example:
    ```python
    model.fit(x, y, callbacks=[keras_actkit.callbacks.AutoInit()])
    ```
    """

    def __init__(self, only_defaults=True, distribution="truncated_normal", seed=None, calibration_data=None):
        super().__init__()
        self.only_defaults = _validation.boolean("only_defaults", only_defaults)
        self.distribution = _validation.one_of("distribution", distribution, DISTRIBUTIONS)
        self.seed = _validation.seed("seed", seed)
        self.calibration_data = _validation.finite_array("calibration_data", calibration_data, allow_none=True)
        self.report = None

    def on_train_begin(self, logs=None):
        self.report = None
        optimizer = getattr(self.model, "optimizer", None)
        steps = 0 if optimizer is None else int(keras.ops.convert_to_numpy(optimizer.iterations))
        if steps > 0:
            warnings.warn(
                f"AutoInit: the model has already trained for {steps} step(s); re-drawing its "
                "kernels would discard what it learned, so nothing was changed. Use AutoInit on "
                "the first fit, or call keras_actkit.match_initializers(model) yourself.",
                stacklevel=2,
            )
            return
        self.report = match_initializers(
            self.model,
            only_defaults=self.only_defaults,
            distribution=self.distribution,
            seed=self.seed,
            calibration_data=self.calibration_data,
        )
        logger.info("AutoInit matched %d kernel(s):\n%s", len(self.report.matched), self.report)
