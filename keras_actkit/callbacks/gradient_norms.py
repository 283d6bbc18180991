"""GradientNormLogger: the real step's gradient norms per layer, in `logs`."""

import logging
import warnings

import keras
import numpy as np

from keras_actkit import _backend, _layer_paths, _validation
from keras_actkit.activation_info import describe_activation
from keras_actkit.callbacks import _log_order, _norm_rules, _norm_summaries, _tap
from keras_actkit.callbacks._norm_client import ROWS, NormRecords, _NormClient, layer_groups

logger = logging.getLogger("keras_actkit")


def _has_saturating_activation(model):
    """Whether any layer of `model` uses a saturating activation (sigmoid, tanh, ...)."""
    for layer, _ in _layer_paths.walk(model):
        info = describe_activation(layer)
        if info is None:
            activation = getattr(layer, "activation", None)
            info = describe_activation(activation) if callable(activation) or isinstance(activation, str) else None
        if info is not None and info.is_saturating:
            return True
    return False


class GradientNormLogger(keras.callbacks.Callback):
    """Per-layer gradient norms and update ratios of the real training step.

    The gradients are read where the optimizer receives them (a tap on its
    `apply`, inside the traced step; unscaled under `LossScaleOptimizer`, the
    window mean under `gradient_accumulation_steps`; under JAX's
    `DataParallel` or a TensorFlow `tf.distribute` strategy, the whole batch's
    gradient, summed over the replicas as the update sums it), so nothing is
    computed twice. Every `every_n_steps` optimizer steps the tap records, per layer,
    the L2 norm of the gradient and the update ratio ‖Δw‖/‖w‖ of that step, and
    the global norm, into an in-graph ring buffer; the host reads it every
    32 records and at each epoch's end, so no training step waits for it.
    Next to `NaNGuard`, whose skipped steps do not advance the optimizer's
    step, it records every n-th batch counted from the step at the epoch's
    start (a record keeps the step it was made at), so that the batches in
    between run without it.
    Every record is in `.history` with its optimizer step; the epoch `logs`
    get the epoch's mean (so `History`, `CSVLogger` and `TensorBoard` record
    them): `grad_norm/<layer>`, `grad_norm/global`, `update_ratio/<layer>`,
    whatever the order of the callbacks (the logger runs before `CSVLogger`
    and `TensorBoard`). `.layer_sizes` holds the weights per layer.

    The norms are those of the gradient the optimizer receives, before its
    `clipnorm` / `clipvalue` / `global_clipnorm` (the update itself is
    clipped). A layer is named by its path in the model (`lstm_a`,
    `bilstm/forward_lstm`, `enc1_mha/query`, `block1/conv`), the same key in
    every callback of the kit.

    One warning each for vanishing gradients (the RMS gradient of the first
    third of the layers below `vanishing_ratio` times that of the last third;
    a layer whose gradient is exactly 0 is reported as dead units, not as
    vanishing) and exploding ones (the global L2 norm of the unclipped
    gradient non-finite or above `exploding_factor` times the median of its
    last `window` records), naming the layers. All state is reset at each
    `fit`'s start.

    Args:
        every_n_steps: Record every n-th optimizer step (next to NaNGuard:
            every n-th batch), >= 1. Defaults to 10.
        vanishing_ratio: In (0, 1). Defaults to 1e-3.
        exploding_factor: > 1. Defaults to 10.
        window: Records the exploding test compares with, >= 2. Defaults to 20.
        log_dir: A directory that exists or can be created. If set, also write every record to this TensorBoard log
            directory: each `grad_norm/*` and `update_ratio/*` value as a
            scalar at its optimizer step, and the log10 gradient norms of all
            layers as one histogram per record (`grad_norm/log10_layers`).
            Needs TensorFlow and TensorBoard installed (it writes with
            `tf.summary`; `pip install 'keras_actkit[tensorboard]'`), on any
            Keras backend.
        verbose: Log each record at INFO level on the "keras_actkit" logger.

    Example:
    ```python
    norms = keras_actkit.callbacks.GradientNormLogger(every_n_steps=5)
    model.fit(x, y, epochs=5, callbacks=[norms])
    norms.history["norms"]               # (records, layers) array
    norms.plot().savefig("grad_norms.png")
    ```
    """

    def __init__(self, every_n_steps=10, vanishing_ratio=1e-3, exploding_factor=10.0, window=20, log_dir=None,
                 verbose=False):
        super().__init__()
        self.every_n_steps = _validation.integer("every_n_steps", every_n_steps, minimum=1)
        self.vanishing_ratio = _validation.number("vanishing_ratio", vanishing_ratio, 0, 1, False, False)
        self.exploding_factor = _validation.number("exploding_factor", exploding_factor, 1, min_inclusive=False)
        self.window = _validation.integer("window", window, minimum=2)
        self.verbose = _validation.boolean("verbose", verbose)
        log_dir = _validation.writable_directory("log_dir", log_dir, allow_none=True)
        if log_dir is not None:
            try:
                import tensorboard  # noqa: F401
                import tensorflow  # noqa: F401
            except ImportError:
                raise ValueError("`log_dir` writes TensorBoard events with tf.summary and needs TensorFlow and "
                                 "TensorBoard installed (pip install 'keras_actkit[tensorboard]'); received "
                                 f"log_dir={log_dir!r}.") from None
        self.log_dir = None if log_dir is None else str(log_dir)
        self._writer = None
        self._reset([])
        self._client = None
        self._tap = None

    def _reset(self, layers):
        self.layers = list(layers)
        self.layer_sizes = np.zeros(len(layers))  # weights per layer, in the order of `layers`
        self._records = NormRecords.empty(len(layers))
        self._epoch_start = 0
        self._warned = set()

    # -- fit hooks ------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        _log_order.run_before_loggers(self)
        model = self._model
        variables = list(model.trainable_variables)
        self._client = None
        if not variables:
            self._reset([])
            warnings.warn("GradientNormLogger: the model has no trainable variables; nothing to log.", stacklevel=2)
            return
        if getattr(model, "optimizer", None) is None:
            raise ValueError("GradientNormLogger needs a compiled model (model.optimizer is None).")
        layers, layer_by_variable, sizes = layer_groups(variables, _layer_paths.variable_keys(model))
        self._reset(layers)
        self.layer_sizes = sizes
        self._writer = None if self.log_dir is None else _norm_summaries.SummaryWriter(self.log_dir, layers)
        self._saturating = _has_saturating_activation(model)
        optimizer = _tap.innermost(model.optimizer)
        self._clipping = _norm_rules.clipping_note(optimizer.clipnorm, optimizer.clipvalue, optimizer.global_clipnorm)
        self._client = _NormClient(self.every_n_steps, layers, layer_by_variable, model)
        self._tap = _tap.attach(model, self._client)
        # Again at each epoch's start; this one serves steps run before any epoch
        # (train_on_batch with the callback started by hand, as benchmarks/bench_step_cost.py does).
        self._client.sync(model)
        self._seen, self._calls, self._lost_warned = 0, 0, False
        self._read_every = max(1, ROWS // 2 * self.every_n_steps)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = len(self._records)
        if self._client is not None:
            self._client.sync(self._model)  # before the epoch's first step: its counter, once per epoch

    # Reads happen before a step, never after one: a batch-end hook would make
    # Keras give up asynchronous dispatch for every callback (costly on JAX).
    def on_train_batch_begin(self, batch, logs=None):
        if self._client is None:
            return
        self._calls += 1
        if self._calls % self._read_every == 0:
            self._read()

    def on_epoch_end(self, epoch, logs=None):
        if self._client is None:
            return
        self._read()
        if logs is not None:
            # Mean over the epoch's records (NaN columns when every_n_steps is longer than the epoch).
            logs.update(_norm_summaries.as_logs(self.layers, *self._records.since(self._epoch_start).mean()))

    def on_train_end(self, logs=None):
        if self._client is not None:
            self._read()
        self._detach()
        if self._writer is not None:
            self._writer.close()

    def _detach(self):
        if self._tap is not None and self._client is not None:
            self._tap.detach(self._client)
        self._tap = None

    # -- reading -----------------------------------------------------------------------
    def _read(self):
        (buffer,) = _backend.read_values(self._model, self._client.variables)
        count = int(buffer[0, 0])
        if count <= self._seen:
            return
        if count - self._seen > ROWS and not self._lost_warned:
            self._lost_warned = True
            warnings.warn(f"GradientNormLogger: {count - self._seen - ROWS} record(s) were overwritten before "
                          "they were read (steps_per_execution much larger than every_n_steps?).", stacklevel=2)
        # All new records at once: one block of numpy operations per read, not one per record.
        fresh = NormRecords.from_buffer(buffer, self._seen, len(self.layers))
        start = len(self._records)
        self._records.extend(fresh)
        self._diagnose(start)
        if self.verbose:
            for step, value in zip(fresh.step, fresh.global_norm):
                logger.info("GradientNormLogger step %d: global %.3g", int(step), value)
        self._seen = count
        if self._writer is not None and len(fresh):
            self._writer.write(fresh)

    def _diagnose(self, start):
        """Check the records from index `start` on; warn once at the first that explodes or vanishes."""
        if len(self._warned) == 2 or start >= len(self._records):
            return
        records, found = self._records, []
        if "exploding" not in self._warned:
            lo = max(0, start - self.window)
            index = _norm_rules.first_exploding(records.global_norm[lo:], start - lo, self.window,
                                                self.exploding_factor)
            if index is not None:
                found.append((lo + index, "exploding", None))
        if "vanishing" not in self._warned:
            hit = _norm_rules.first_vanishing(records.norms[start:], self.layer_sizes, self.vanishing_ratio)
            if hit is not None:
                found.append((start + hit[0], "vanishing", hit[1]))
        for index, kind, ratio in sorted(found, key=lambda item: item[0]):
            self._warned.add(kind)
            self._warn_exploding(index) if kind == "exploding" else self._warn_vanishing(index, ratio)

    def _warn_exploding(self, index):
        records = self._records
        before = slice(max(0, index - self.window), index)
        reference = float(np.median(records.global_norm[before]))
        order, jumps = _norm_rules.largest_jumps(records.norms[index], records.norms[before])
        named = ", ".join(f"{self.layers[i]!r} ({records.norms[index, i]:.3g}, {jump:.3g}x)"
                          for i, jump in zip(order, jumps))
        warnings.warn(
            f"GradientNormLogger: exploding gradients at step {int(records.step[index])}: the global L2 norm of "
            f"the gradient is {records.global_norm[index]:.3g}, {self.exploding_factor:g}x above its recent "
            f"median {reference:.3g}. Largest jumps: {named}. {self._clipping} Remedies: a lower learning rate "
            "(keras_actkit.find_lr), gradient clipping (clipnorm=), keras_actkit.callbacks.NaNGuard, "
            "BatchNormalization.", stacklevel=3)

    def _warn_vanishing(self, index, ratio):
        n = len(self.layers)
        third = max(1, n // 3)
        names = ", ".join(repr(self.layers[i]) for i in range(third))
        tail = ", ".join(repr(self.layers[n - third + i]) for i in range(third))
        remedies = _norm_rules.vanishing_remedies(self._records.norms[index, :third], self._saturating)
        warnings.warn(
            f"GradientNormLogger: vanishing gradients at step {int(self._records.step[index])}: the RMS gradient "
            f"of the first layers ({names}) is {ratio:.2g} times that of the last layers ({tail}). {remedies}",
            stacklevel=3)

    # -- results -------------------------------------------------------------------------
    @property
    def history(self):
        """Records so far: `step` (n,), `global` (n,), `norms` and `update_ratios` (n, layers), `layers`."""
        records = self._records
        return {"layers": list(self.layers), "step": records.step.copy(), "global": records.global_norm.copy(),
                "norms": records.norms.copy(), "update_ratios": records.update_ratios.copy()}

    def plot(self, ax=None):
        """Heatmap of log10 gradient norm, layers x recorded steps; returns the figure."""
        from keras_actkit.plotting import get_axes

        figure, ax = get_axes(ax, figsize=(7.0, 0.6 + 0.35 * max(len(self.layers), 4)))
        history = self.history
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.log10(history["norms"].T)
        steps = history["step"]
        extent = None
        if len(steps):
            half = (steps[1] - steps[0]) / 2 if len(steps) > 1 else 0.5
            extent = (steps[0] - half, steps[-1] + half, len(self.layers) - 0.5, -0.5)
        image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", cmap="viridis", interpolation="nearest",
                          extent=extent)
        ax.set_yticks(range(len(self.layers)))
        ax.set_yticklabels(self.layers, fontsize="small")
        ax.set_xlabel("training step")
        ax.set_title("GradientNormLogger: log10 ‖gradient‖ per layer")
        figure.colorbar(image, ax=ax, label="log10 norm")
        return figure
