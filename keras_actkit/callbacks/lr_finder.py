import dataclasses
import logging
import math
import warnings

import keras
import numpy as np

from keras_actkit import lr_suggestions

logger = logging.getLogger(__name__)

DEFAULT_RULE = "max(onset, valley)"
MODES = ("exponential", "linear")


def _base_optimizer(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError("LRFinder needs a compiled model: call model.compile(optimizer, loss) first.")
    # LossScaleOptimizer (mixed precision) keeps the learning rate inside.
    return getattr(optimizer, "inner_optimizer", optimizer)


class _Ladder(keras.optimizers.schedules.LearningRateSchedule):
    """The range test's LRs, indexed by the optimizer's step counter in-graph,
    so every backend uses exactly the recorded float32 values."""

    def __init__(self, lrs, first_step):
        self.lrs = np.asarray(lrs, dtype="float32")
        self.first_step = int(first_step)

    def __call__(self, step):
        index = keras.ops.clip(keras.ops.cast(step, "int32") - self.first_step, 0, len(self.lrs) - 1)
        return keras.ops.take(keras.ops.convert_to_tensor(self.lrs), index)

    def get_config(self):
        return {"lrs": self.lrs.tolist(), "first_step": self.first_step}


def lr_ladder(start_lr, end_lr, num_steps, mode):
    """The LRs tried, as float32 (what the optimizer will actually use)."""
    if mode == "exponential":
        lrs = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / max(num_steps - 1, 1))
    else:
        lrs = np.linspace(start_lr, end_lr, num_steps)
    return lrs.astype("float32")


@dataclasses.dataclass
class LRFinderResult:
    """What a learning-rate range test found.

    Attributes:
        lrs: The learning rates used, one per step (float32 values, exact).
        losses: The per-batch training loss at each step.
        smoothed_losses: Bias-corrected exponential moving average of
            `losses` (what the divergence stop watches).
        suggestion: The default rule's suggestion (`"max(onset, valley)"`),
            or None.
        suggestions: Every rule's suggestion by name (`"max(onset, valley)"`,
            `"onset"`, `"minimum/10"`, `"valley"`, `"steepest"`; see
            `keras_actkit.lr_suggestions`).
        stop_reason: `"diverged"`, `"non-finite loss"`, `"end reached"` or
            `"data exhausted"`.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggestion: float
    suggestions: dict
    stop_reason: str

    def to_dict(self):
        return {
            "lrs": self.lrs.tolist(),
            "losses": self.losses.tolist(),
            "smoothed_losses": self.smoothed_losses.tolist(),
            "suggestion": self.suggestion,
            "suggestions": dict(self.suggestions),
            "stop_reason": self.stop_reason,
        }

    def apply(self, model, rule=None):
        """Set `model`'s optimizer learning rate to a suggestion; returns it."""
        lr = self.suggestion if rule is None else self.suggestions[rule]
        if lr is None:
            raise ValueError(f"No suggestion to apply (rule {rule or DEFAULT_RULE!r} found none).")
        optimizer = _base_optimizer(model)
        if not isinstance(optimizer._learning_rate, keras.Variable):
            raise ValueError(
                "The optimizer's learning rate is a schedule, not a settable value; build the "
                f"schedule around the suggestion ({lr:.3g}) yourself."
            )
        optimizer.learning_rate = lr
        return lr

    def plot(self, ax=None):
        """Loss vs learning rate (log x), raw and smoothed, suggestions marked.

        Returns the matplotlib figure; never opens a window (save it with
        `figure.savefig(path)`).
        """
        from keras_actkit.plotting import get_axes

        figure, ax = get_axes(ax)
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="batch loss")
        ax.plot(self.lrs, self.smoothed_losses, color="C0", lw=2, label="smoothed")
        for i, (name, lr) in enumerate(sorted(self.suggestions.items())):
            if lr is not None:
                style = "-" if name == DEFAULT_RULE else ":"
                ax.axvline(lr, color=f"C{i + 1}", ls=style, label=f"{name}: {lr:.2g}")
        finite = self.smoothed_losses[np.isfinite(self.smoothed_losses)]
        raw = self.losses[np.isfinite(self.losses)]
        if finite.size:
            low, high = min(finite.min(), raw.min()), finite[0]
            ax.set_ylim(low - 0.1 * abs(high - low), high + 0.5 * abs(high - low) + 1e-12)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title(f"LR range test ({self.stop_reason})")
        ax.legend(fontsize="small")
        return figure


class LRFinder(keras.callbacks.Callback):
    """Learning-rate range test (Smith 2017) that leaves no trace.

    Raises the learning rate from `start_lr` to `end_lr` over `num_steps`
    training steps (exponentially by default), records the loss of every
    batch, and stops when the loss diverges. When training ends, every model
    variable (BatchNorm statistics included), every optimizer variable
    (iterations, moments), the learning rate or schedule and `stop_training`
    are restored bit for bit; the result is in `.result`.

    Use `keras_actkit.find_lr(model, x, y)`, which also restores when
    interrupted; used directly in `model.fit`, restoring happens in
    `on_train_end`, which Keras skips when `fit` raises — call `.restore()`
    in your own `finally` then.

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
            A non-finite loss always stops.
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
        if not (isinstance(start_lr, (int, float)) and start_lr > 0 and math.isfinite(start_lr)):
            raise ValueError(f"`start_lr` must be a finite number > 0. Received: start_lr={start_lr!r}")
        if not (isinstance(end_lr, (int, float)) and math.isfinite(end_lr) and end_lr > start_lr):
            raise ValueError(f"`end_lr` must be a finite number > start_lr ({start_lr}). Received: end_lr={end_lr!r}")
        if not (isinstance(num_steps, int) and num_steps >= 5):
            raise ValueError(f"`num_steps` must be an integer >= 5. Received: num_steps={num_steps!r}")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"`beta` must lie in [0, 1). Received: beta={beta!r}")
        if diverge_threshold is not None and not diverge_threshold > 1.0:
            raise ValueError(f"`diverge_threshold` must be > 1 or None. Received: diverge_threshold={diverge_threshold!r}")
        self.start_lr, self.end_lr, self.num_steps = float(start_lr), float(end_lr), num_steps
        self.mode, self.beta, self.diverge_threshold, self.verbose = mode, beta, diverge_threshold, verbose
        self.result = None
        self._snapshot = None

    # -- state ---------------------------------------------------------------
    def _take_snapshot(self):
        model = self.model
        optimizer = _base_optimizer(model)
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        self._snapshot = {
            "model": [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.variables],
            "outer_optimizer": [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.optimizer.variables],
            "learning_rate": optimizer._learning_rate,
            "stop_training": model.stop_training,
        }

    def restore(self):
        """Put back everything the range test changed. Safe to call twice."""
        if self._snapshot is None:
            return
        model, snapshot = self.model, self._snapshot
        sync = getattr(model, "jax_state_sync", None)  # JAX keeps state outside variables mid-fit
        if sync is not None:
            sync()
        for variable, value in zip(model.variables, snapshot["model"]):
            variable.assign(value)
        for variable, value in zip(model.optimizer.variables, snapshot["outer_optimizer"]):
            variable.assign(value)
        _base_optimizer(model)._learning_rate = snapshot["learning_rate"]
        model.stop_training = snapshot["stop_training"]
        # The traced step reads the ladder: drop it so the next fit retraces.
        model.train_function = None
        if hasattr(model, "_jax_state"):
            model._jax_state = None
        self._snapshot = None

    # -- callback hooks ----------------------------------------------------
    def on_train_begin(self, logs=None):
        self.result = None
        self._take_snapshot()
        optimizer = _base_optimizer(self.model)
        self._lrs = lr_ladder(self.start_lr, self.end_lr, self.num_steps, self.mode)
        first_step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        optimizer._learning_rate = _Ladder(self._lrs, first_step)
        self.model.make_train_function(force=True)
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
        if reason in ("end reached", "data exhausted"):
            warnings.warn(
                f"LRFinder: the loss never diverged ({reason} after {len(losses)} steps, last LR "
                f"{lrs[-1] if len(lrs) else float('nan'):.3g}); suggestions may be too low. Raise "
                "`end_lr` or `num_steps`, or give more data.",
                stacklevel=2,
            )
        if self.verbose:
            logger.warning("LRFinder: %s after %d steps; suggestion %s", reason, len(losses), self.result.suggestion)


def find_lr(model, x, y=None, *, batch_size=None, start_lr=1e-7, end_lr=10.0, num_steps=100,
            mode="exponential", beta=0.9, diverge_threshold=4.0, verbose=False, **fit_kwargs):
    """Run a learning-rate range test on `model` and return its `LRFinderResult`.

    The model and its optimizer are left exactly as they were (bit for bit),
    also when the test is interrupted. Short data sets are repeated; endless
    ones stop after `num_steps`. `x`/`y` take whatever `model.fit` takes:
    numpy arrays, `tf.data.Dataset`, `keras.utils.PyDataset`, generators,
    torch `DataLoader`.

    Args:
        model: A compiled Keras model.
        x, y: Training data, as for `model.fit`.
        batch_size: For array inputs. Defaults to 32. Arrays are cut to a
            multiple of it, so every batch's loss is exact.
        start_lr, end_lr, num_steps, mode, beta, diverge_threshold, verbose:
            As for `LRFinder`.
        **fit_kwargs: Passed on to `model.fit` (e.g. `class_weight`).

    Example:
    ```python
    result = keras_actkit.find_lr(model, x, y)
    result.apply(model)        # set the optimizer's LR to the suggestion
    result.plot().savefig("lr_find.png")
    ```
    """
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise ValueError("find_lr needs a compiled model: call model.compile(optimizer, loss) first.")
    finder = LRFinder(start_lr, end_lr, num_steps, mode, beta, diverge_threshold, verbose)
    arrays = isinstance(x, np.ndarray) or (isinstance(x, (list, tuple, dict)) and y is not None)
    kwargs = dict(fit_kwargs)
    if arrays:
        batch_size = batch_size or 32
        n = len(keras.tree.flatten(x)[0])
        if n < batch_size:
            raise ValueError(f"find_lr needs at least one full batch: got {n} samples for batch_size={batch_size}.")
        keep = n - n % batch_size
        x = keras.tree.map_structure(lambda a: a[:keep], x)
        y = None if y is None else keras.tree.map_structure(lambda a: a[:keep], y)
        epochs = math.ceil(num_steps / (keep // batch_size))
        kwargs.update(batch_size=batch_size, shuffle=kwargs.get("shuffle", True))
    else:
        # Generators and other endless inputs stop at num_steps by themselves;
        # finite ones are repeated by running more epochs.
        epochs = num_steps
    callbacks = [finder] + list(kwargs.pop("callbacks", None) or [])
    try:
        model.fit(x, y, epochs=epochs, verbose=1 if verbose else 0, callbacks=callbacks, **kwargs)
    finally:
        finder.restore()
    return finder.result
