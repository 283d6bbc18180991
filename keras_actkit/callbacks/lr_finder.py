"""LRFinder and find_lr: the learning-rate range test, which leaves the model exactly as it was."""

import logging
import math
import warnings

import keras
import numpy as np

from keras_actkit import _backend, _keras_internals, _training_state, _validation, lr_suggestions
from keras_actkit.callbacks._lr_finder_result import DEFAULT_RULE, LRFinderResult

logger = logging.getLogger(__name__)

MODES = ("exponential", "linear")


def lr_ladder(start_lr, end_lr, num_steps, mode):
    """The LRs tried, as float32 (what the optimizer will actually use)."""
    if mode == "exponential":
        lrs = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / max(num_steps - 1, 1))
    else:
        lrs = np.linspace(start_lr, end_lr, num_steps)
    return lrs.astype("float32")


class LRFinder(keras.callbacks.Callback):
    """Learning-rate range test (Smith 2017) that leaves no trace.

    Raises the learning rate from `start_lr` to `end_lr` over `num_steps`
    training steps (exponentially by default), records the loss of every
    batch, and stops when the loss diverges or a loss or weight turns
    non-finite. When training ends, every model variable (BatchNorm
    statistics included), every optimizer variable (iterations, moments, a
    loss scale), the learning rate or schedule and `stop_training` are
    restored bit for bit; the result is in `.result`.

    Use `keras_actkit.find_lr(model, x, y)`, which also builds an unbuilt
    model and restores when interrupted; used directly in `model.fit`,
    restoring happens in `on_train_end`, which Keras skips when `fit` raises
    — call `.restore()` in your own `finally` then.

    Args:
        start_lr: First learning rate, > 0. Defaults to 1e-7.
        end_lr: Last learning rate, > `start_lr`. Defaults to 10.
        num_steps: Number of steps (LRs) to try, >= 5. Defaults to 100.
        mode: `"exponential"` (default) or `"linear"` spacing.
        beta: Smoothing of the loss curve the divergence stop watches, in
            [0, 1). Defaults to 0.9 (about 10 steps: fastai's 0.98 lags so
            far behind a 100-step ladder that it rarely sees divergence).
        diverge_threshold: Stop when the smoothed loss exceeds its best by
            this factor (on the loss's scale above its running minimum, so
            negative losses work too); `None` disables. Defaults to 4.
            A non-finite loss or weight always stops.
        verbose: Log progress and the suggestion. Defaults to False.

    Example:
    ```python
    finder = keras_actkit.callbacks.LRFinder()
    model.fit(x, y, epochs=5, callbacks=[finder])
    finder.result.suggestion
    ```
    """

    def __init__(self, start_lr=1e-7, end_lr=10.0, num_steps=100, mode="exponential",
                 beta=0.9, diverge_threshold=4.0, verbose=False):
        super().__init__()
        self.start_lr = _validation.number("start_lr", start_lr, minimum=0.0, min_inclusive=False)
        self.end_lr = _validation.number("end_lr", end_lr, minimum=self.start_lr, min_inclusive=False)
        self.num_steps = _validation.integer("num_steps", num_steps, minimum=5)
        self.mode = _validation.one_of("mode", mode, MODES)
        self.beta = _validation.number("beta", beta, minimum=0.0, maximum=1.0, max_inclusive=False)
        self.diverge_threshold = _validation.number("diverge_threshold", diverge_threshold, minimum=1.0,
                                                    min_inclusive=False, allow_none=True)
        self.verbose = _validation.boolean("verbose", verbose)
        self.result = None
        self._saved = None

    # -- state ---------------------------------------------------------------
    def _save(self):
        model = self.model
        optimizer = _training_state.compiled_optimizer(model, "LRFinder")
        if not _keras_internals.model_fully_built(model):
            raise ValueError(
                "LRFinder: the model is not built yet, so there is no state to restore. Use "
                "keras_actkit.find_lr(model, x, y), which builds it from a batch, or call the model on a batch first.")
        if not optimizer.built:
            # The outer optimizer: a LossScaleOptimizer's own variables too, so
            # none is created during the test.
            optimizer.build(model.trainable_variables)
        self._saved = (_training_state.Snapshot(model), _training_state.LearningRate(model), model.stop_training)

    def restore(self):
        """Put back everything the range test changed. Safe to call twice."""
        if self._saved is None:
            return
        (variables, learning_rate, stop_training), self._saved = self._saved, None
        try:
            variables.restore()
        finally:  # the schedule too when the variables fail: the ladder must never stay
            learning_rate.restore()
            self.model.stop_training = stop_training
            # The traced step holds the ladder: the next fit traces again.
            self.model.train_function = None

    # -- callback hooks ----------------------------------------------------
    def on_train_begin(self, logs=None):
        self.result = None
        self._save()
        model = self.model
        self._lrs = lr_ladder(self.start_lr, self.end_lr, self.num_steps, self.mode)
        iterations = _training_state.innermost_optimizer(model.optimizer).iterations
        (first_step,) = _backend.read_values(model, [iterations])
        self._saved[1].replace(_training_state.StepSchedule(self._lrs, int(first_step)))
        # A trace of its own (on JAX a forced remake may reuse an earlier trace, without the ladder).
        model.train_function = _backend.make_train_function(model)
        self._losses, self._step = [], 0
        self._stop_reason = None
        self._best = math.inf

    def on_epoch_begin(self, epoch, logs=None):
        # Keras's logs["loss"] is the running mean over the epoch's batches.
        self._seen, self._previous_mean = 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        if self._stop_reason is not None or logs is None or "loss" not in logs:
            return
        mean = float(logs["loss"])
        seen = self._seen + 1
        loss = seen * mean - self._seen * self._previous_mean  # undo the running mean
        self._seen, self._previous_mean = seen, mean
        self._losses.append(loss)
        self._step += 1
        if not math.isfinite(loss):
            return self._stop("non-finite loss")
        # TensorFlow's crossentropy clips a NaN probability: the loss of a NaN
        # batch can be finite while the update left NaN weights.
        if not _training_state.all_finite(self.model, self.model.trainable_variables):
            return self._stop("non-finite weights")
        smoothed = lr_suggestions.smooth(self._losses, self.beta)[-1]
        self._best = min(self._best, smoothed)
        if self.diverge_threshold is not None and self._step > 1 and self._diverged(smoothed):
            return self._stop("diverged")
        if self._step >= self.num_steps:
            return self._stop("end reached")

    def _diverged(self, smoothed):
        if self._best > 0:
            return smoothed > self.diverge_threshold * self._best
        # A best loss <= 0 (e.g. a negative log-likelihood): measure the rise
        # against the distance fallen from the first loss instead.
        scale = max(abs(self._best), abs(self._losses[0] - self._best), 1e-12)
        return smoothed - self._best > (self.diverge_threshold - 1.0) * scale

    def _stop(self, reason):
        self._stop_reason = reason
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        reason = self._stop_reason or "data exhausted"
        self.restore()
        losses = np.asarray(self._losses, dtype="float64")
        lrs = self._lrs[: len(losses)].astype("float64")
        smoothed = lr_suggestions.smooth(losses, self.beta) if len(losses) else losses
        suggestions = lr_suggestions.all_suggestions(lrs, losses) if len(losses) >= 3 else {
            name: None for name in lr_suggestions.RULES}
        self.result = LRFinderResult(lrs, losses, smoothed, suggestions[DEFAULT_RULE], suggestions, reason)
        _warn_about(self.result)
        if self.verbose:
            logger.warning("LRFinder: %s after %d steps; suggestion %s", reason, len(losses), self.result.suggestion)


def _warn_about(result):
    """Say when the curve cannot be trusted: it never rose, or it ended in NaN before it rose."""
    lrs, losses, reason = result.lrs, result.losses, result.stop_reason
    if reason == "diverged" or (len(losses) >= 3 and lr_suggestions.rose(lrs, losses)):
        return
    last = f"{lrs[-1]:.3g}" if len(lrs) else "nan"
    if reason.startswith("non-finite"):
        message = (f"LRFinder: {reason} at LR {last} (step {len(losses)}) before the loss rose: either that LR "
                   "is already far too high or the data hold NaN or Inf (check with np.isfinite); the suggestions "
                   "come from the steps before it.")
    else:
        message = (f"LRFinder: the loss never diverged ({reason} after {len(losses)} steps, last LR {last}); "
                   "suggestions may be too low. Raise `end_lr` or `num_steps`, or give more data.")
    warnings.warn(message, stacklevel=3)


def _is_arrays(x, y):
    return isinstance(x, np.ndarray) or (isinstance(x, (list, tuple, dict)) and y is not None)


def _cut(data, keep):
    return None if data is None else keras.tree.map_structure(lambda a: a[:keep], data)


def _first_batch(x, y, sample_weight, batch_size):
    """One batch of the data, and the data to fit on (a generator gets its first batch back)."""
    if batch_size is not None:  # arrays
        return (_cut(x, batch_size), _cut(y, batch_size), _cut(sample_weight, batch_size)), x
    if isinstance(x, keras.utils.PyDataset):
        return x[0], x
    if iter(x) is x:  # a generator: what is read is gone, so put it back in front
        first = next(x)
        return first, _chain(first, x)
    return next(iter(x)), x  # tf.data, torch DataLoader: iterable again


def _chain(first, rest):
    yield first
    yield from rest


def _build(model, x, y, sample_weight, batch_size):
    """Build an unbuilt model (and its optimizer) from a batch, so the snapshot holds every variable."""
    with _backend.variable_scope(model):  # a tf.distribute strategy's variables are made in its scope
        if not _keras_internals.model_fully_built(model):
            batch, x = _first_batch(x, y, sample_weight, batch_size)
            _keras_internals.symbolic_build(model, batch if isinstance(batch, (tuple, list)) else (batch,))
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    return x


def find_lr(model, x, y=None, *, batch_size=None, start_lr=1e-7, end_lr=10.0, num_steps=100,
            mode="exponential", beta=0.9, diverge_threshold=4.0, verbose=False, **fit_kwargs):
    """Run a learning-rate range test on `model` and return its `LRFinderResult`.

    The model and its optimizer are left exactly as they were (bit for bit),
    also when the test is interrupted; a model not built yet is built from
    the first batch first. Short data sets are repeated; endless ones stop
    after `num_steps`. `x`/`y` take whatever `model.fit` takes: numpy arrays,
    `tf.data.Dataset`, `keras.utils.PyDataset`, generators, torch `DataLoader`.

    Args:
        model: A compiled Keras model.
        x: Training inputs, as for `model.fit`.
        y: Training targets, as for `model.fit` (None when `x` yields them).
        batch_size: For array inputs, an integer >= 1. Defaults to 32.
            Arrays (and `sample_weight`) are cut to a multiple of it, so
            every batch's loss is exact.
        start_lr: As for `LRFinder`.
        end_lr: As for `LRFinder`.
        num_steps: As for `LRFinder`.
        mode: As for `LRFinder`.
        beta: As for `LRFinder`.
        diverge_threshold: As for `LRFinder`.
        verbose: As for `LRFinder`.
        **fit_kwargs: Passed on to `model.fit` (e.g. `sample_weight`,
            `class_weight`).

    Example:
    ```python
    result = keras_actkit.find_lr(model, x, y)
    result.apply(model)        # set the optimizer's LR to the suggestion
    result.plot().savefig("lr_find.png")
    ```
    """
    _training_state.compiled_optimizer(_validation.model("model", model), "find_lr")
    finder = LRFinder(start_lr, end_lr, num_steps, mode, beta, diverge_threshold, verbose)
    batch_size = _validation.integer("batch_size", batch_size, minimum=1, allow_none=True)
    kwargs = dict(fit_kwargs)
    sample_weight = kwargs.pop("sample_weight", None)
    if _is_arrays(x, y):
        batch_size = batch_size or 32
        n = len(keras.tree.flatten(x)[0])
        if n < batch_size:
            raise ValueError(f"find_lr needs at least one full batch: got {n} samples for batch_size={batch_size}.")
        keep = n - n % batch_size
        x, y, sample_weight = _cut(x, keep), _cut(y, keep), _cut(sample_weight, keep)
        epochs = math.ceil(finder.num_steps / (keep // batch_size))
        kwargs.update(batch_size=batch_size, shuffle=kwargs.get("shuffle", True))
    else:
        # Generators and other endless inputs stop at num_steps by themselves;
        # finite ones are repeated by running more epochs.
        batch_size, epochs = None, finder.num_steps
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
    x = _build(model, x, y, sample_weight, batch_size)
    callbacks = [finder] + list(kwargs.pop("callbacks", None) or [])
    try:
        model.fit(x, y, epochs=epochs, verbose=1 if finder.verbose else 0, callbacks=callbacks, **kwargs)
    finally:
        finder.restore()
    return finder.result
