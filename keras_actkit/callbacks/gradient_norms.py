"""GradientNormLogger: the real step's gradient norms per layer, in `logs`."""

import logging
import math
import statistics
import warnings

import keras
import numpy as np

from keras_actkit import _backend
from keras_actkit.callbacks import _tap

logger = logging.getLogger("keras_actkit")


ROWS = 64  # records the in-graph ring buffer holds between two reads


class _NormClient(_tap.TapClient):
    """In-graph part: on recorded steps, per-layer ‖g‖ and ‖Δw‖/‖w‖ into a ring buffer.

    Buffer layout, (ROWS + 1, 3 + 2·layers) float32: row 0 holds the number of
    records written so far; each record row holds [sequence number, optimizer
    step, global norm, per-layer norms, per-layer update ratios]. The host reads
    the buffer every ROWS/2 records and at the end of each epoch, so no step
    waits for the host.
    """

    def __init__(self, every_n_steps, layers, layer_by_variable, model):
        self.every_n_steps = every_n_steps
        optimizer = _tap.innermost(model.optimizer)
        # The host picks the recorded calls (see `idle_next_call`) when every
        # call makes one step: not with several steps per call, nor inside a
        # LossScaleOptimizer, which skips steps of its own. Next to NaNGuard,
        # whose skipped steps do not advance the optimizer's counter, it counts
        # calls (the record keeps the optimizer step it was made at); not under
        # gradient accumulation, whose update steps a skip would shift.
        self.may_idle = getattr(model, "steps_per_execution", 1) == 1 and optimizer is model.optimizer
        self.may_idle_beside_guard = self.may_idle and not optimizer.gradient_accumulation_steps
        self.layers = layers
        self.layer_by_variable = layer_by_variable  # id(variable) -> layer index
        self.signature = ("grad_norms", every_n_steps, tuple(layers), tuple(sorted(layer_by_variable.items())))
        self.width = 3 + 2 * len(layers)
        self._pending = None
        self.schedule = None  # (next micro-step, accumulation steps) when the host can tell recorded steps

    def sync(self, model):
        """Count steps on the host from the optimizer's counter (read now, between steps)."""
        if not self.may_idle:
            return
        optimizer = _tap.innermost(model.optimizer)
        (iterations,) = _backend.read_values(model, [optimizer._iterations])
        self.schedule = [int(iterations), optimizer.gradient_accumulation_steps or 0]

    def idle_next_call(self):
        # Every call is one step, counted from the optimizer's counter at the
        # epoch's start (without a guard the count is exact; next to one, a
        # skipped step still counts as a call).
        micro, accumulation = self.schedule
        self.schedule[0] += 1
        if accumulation:
            if (micro + 1) % accumulation:
                return True
            micro //= accumulation
        return micro % self.every_n_steps != 0

    def variable_specs(self):
        return [((ROWS + 1, self.width), "float32", "keras_actkit_grad_norms")]

    def before_apply(self, context):
        ops = keras.ops
        if self.host_decides:
            # The host chose this call (under accumulation, checked to be an update step).
            is_log = context.is_update
        elif context.eager:
            is_log = context.is_update and context.step % self.every_n_steps == 0
        else:
            is_log = ops.logical_and(context.is_update, ops.equal(context.step % self.every_n_steps, 0))
        if context.eager and not is_log:
            self._pending = None
            return
        # Reads that happen now, before the update (tf.identity / a torch clone;
        # free in JAX): the weights, and the accumulators the update resets.
        before = [ops.copy(v.value) for v in context.variables]
        self._pending = (is_log, before, context.accumulated())

    def after_apply(self, context):
        if self._pending is None:
            return
        ops = keras.ops
        is_log, before, accumulated = self._pending
        self._pending = None
        n = len(self.layers)
        layer_of = [self.layer_by_variable[id(v)] for v in context.variables]

        def per_layer(values):
            sums = [ops.sum(ops.square(ops.cast(v, "float32"))) for v in values]
            zero = ops.convert_to_tensor(0.0, "float32")
            return ops.stack([sum((s for s, i in zip(sums, layer_of) if i == k), zero) for k in range(n)])

        buffer = self.variables[0]
        old = buffer.value
        step = context.step

        def updated():
            grad_sq = per_layer(context.effective_grads(accumulated))
            delta = per_layer([v.value - b for v, b in zip(context.variables, before)])
            size = per_layer(before)
            ratios = ops.sqrt(ops.divide_no_nan(delta, size))
            count = old[0, 0]
            record = ops.concatenate([
                ops.reshape(count + 1.0, (1,)),
                ops.reshape(ops.cast(ops.convert_to_tensor(step), "float32"), (1,)),
                ops.reshape(ops.sqrt(ops.sum(grad_sq)), (1,)),
                ops.sqrt(grad_sq),
                ratios,
            ])
            row = 1 + ops.mod(ops.cast(count, "int32"), ROWS)
            target = ops.reshape(ops.equal(ops.arange(ROWS + 1), row), (ROWS + 1, 1))
            header = ops.reshape(ops.equal(ops.arange(ROWS + 1), 0), (ROWS + 1, 1))
            new = ops.where(target, ops.reshape(record, (1, self.width)), old)
            return ops.where(header, ops.full((ROWS + 1, self.width), count + 1.0), new)

        # Only on recorded steps (a conditional in the compiled step, unless
        # the host chose the call): a reduction per variable, and every op on
        # TensorFlow's CPU graph executor, costs more in dispatch than in arithmetic.
        buffer.assign(updated() if context.eager or is_log is True else ops.cond(is_log, updated, lambda: old))


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
    them): `grad_norm/<layer>`, `grad_norm/global`, `update_ratio/<layer>`.

    One warning each for vanishing gradients (the RMS gradient of the first
    third of the layers below `vanishing_ratio` times that of the last third)
    and exploding ones (the global norm non-finite or above `exploding_factor`
    times the median of its last `window` records), naming the layers.

    Args:
        every_n_steps: Record every n-th optimizer step (next to NaNGuard:
            every n-th batch), >= 1. Defaults to 10.
        vanishing_ratio: In (0, 1). Defaults to 1e-3.
        exploding_factor: > 1. Defaults to 10.
        window: Records the exploding test compares with, >= 2. Defaults to 20.
        log_dir: If set, also write every record to this TensorBoard log
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
        if not (isinstance(every_n_steps, int) and not isinstance(every_n_steps, bool) and every_n_steps >= 1):
            raise ValueError(f"`every_n_steps` must be an integer >= 1. Received: every_n_steps={every_n_steps!r}")
        if not (isinstance(vanishing_ratio, (int, float)) and 0 < vanishing_ratio < 1):
            raise ValueError(f"`vanishing_ratio` must lie in (0, 1). Received: vanishing_ratio={vanishing_ratio!r}")
        if not (isinstance(exploding_factor, (int, float)) and exploding_factor > 1):
            raise ValueError(f"`exploding_factor` must be > 1. Received: exploding_factor={exploding_factor!r}")
        if not (isinstance(window, int) and not isinstance(window, bool) and window >= 2):
            raise ValueError(f"`window` must be an integer >= 2. Received: window={window!r}")
        self.every_n_steps = every_n_steps
        self.vanishing_ratio, self.exploding_factor, self.window = vanishing_ratio, exploding_factor, window
        self.verbose = verbose
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
        self.layers, self.layer_sizes = [], np.zeros(0)
        self._records, self._epoch_records = [], []
        self._warned = set()
        self._client = None
        self._tap = None

    # -- fit hooks ------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        variables = list(self._model.trainable_variables)
        if not variables:
            warnings.warn("GradientNormLogger: the model has no trainable variables; nothing to log.", stacklevel=2)
            return
        layers, layer_by_variable, sizes = [], {}, {}
        for variable in variables:
            key = _tap.layer_key(variable)
            if key not in sizes:
                layers.append(key)
                sizes[key] = 0
            sizes[key] += int(np.prod(variable.shape))
            layer_by_variable[id(variable)] = layers.index(key)
        if layers != self.layers:
            self._records = []
        self.layers = layers
        self.layer_sizes = np.array([sizes[k] for k in layers], "float64")
        if getattr(self._model, "optimizer", None) is None:
            raise ValueError("GradientNormLogger needs a compiled model (model.optimizer is None).")
        self._client = _NormClient(self.every_n_steps, layers, layer_by_variable, self._model)
        self._tap = _tap.attach(self._model, self._client)
        # Again at each epoch's start; this one serves steps run before any epoch
        # (train_on_batch with the callback started by hand, as benchmarks/bench_step_cost.py does).
        self._client.sync(self._model)
        self._seen, self._calls, self._lost_warned = 0, 0, False
        self._read_every = max(1, ROWS // 2 * self.every_n_steps)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_records = []
        self._epoch = epoch
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
        if logs is None:
            return
        if self._epoch_records:
            # Mean over the epoch's records; a NaN record (a step NaNGuard skipped) is left out.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                logs.update(self._as_logs(np.nanmean(np.stack(self._epoch_records), axis=0)))
        else:  # every_n_steps longer than the epoch: keep the columns
            logs.update(self._as_logs(np.full(1 + 2 * len(self.layers), np.nan)))

    def on_train_end(self, logs=None):
        if self._client is not None:
            self._read()
        self._detach()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

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
        rows = buffer[1:]
        fresh = rows[rows[:, 0] > self._seen]
        # All new records at once: one block of numpy operations per read, not
        # one per record (a read at an epoch's end took ~0.4 ms for 4 records
        # on the JAX MLP, most of it per-record numpy calls).
        block = fresh[np.argsort(fresh[:, 0])][:, 1:].astype("float64")  # [step, global, norms, ratios]
        start = len(self._records)
        self._records.extend(block)
        self._epoch_records.extend(block[:, 1:])
        self._diagnose(start, block)
        if self.verbose:
            for row in block:
                logger.info("GradientNormLogger step %d: global %.3g", int(row[0]), row[1])
        self._seen = count
        if self.log_dir is not None and len(block):
            self._write_summaries(self._records[start:])

    def _write_summaries(self, records):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        n = len(self.layers)
        with self._writer.as_default():
            for row in records:
                step = int(row[0])
                for name, value in self._as_logs(row[1:]).items():
                    tf.summary.scalar(name, value, step=step)
                norms = row[2: 2 + n]
                finite = norms[np.isfinite(norms) & (norms > 0)]
                if finite.size:
                    tf.summary.histogram("grad_norm/log10_layers", np.log10(finite), step=step)
        self._writer.flush()

    def _as_logs(self, record):
        n = len(self.layers)
        out = {"grad_norm/global": float(record[0])}
        for i, name in enumerate(self.layers):
            out[f"grad_norm/{name}"] = float(record[1 + i])
        for i, name in enumerate(self.layers):
            out[f"update_ratio/{name}"] = float(record[1 + n + i])
        return out

    def _diagnose(self, start, fresh):
        """Check the new records `fresh` (from index `start` of the records on); warn at the first
        that explodes or vanishes.

        Per read, not per record, and plain Python where the arrays are tiny:
        on a small model a numpy call costs more than its arithmetic.
        """
        if len(self._warned) == 2 or not len(fresh):
            return
        found = []
        if "exploding" not in self._warned:
            index = self._first_exploding(start)
            if index is not None:
                found.append((index, 0, "exploding"))
        n = len(self.layers)
        if "vanishing" not in self._warned and n >= 2:
            third = max(1, n // 3)
            rms = fresh[:, 2: 2 + n] / np.sqrt(self.layer_sizes)
            with np.errstate(divide="ignore", invalid="ignore"):
                logs = np.log(np.maximum(rms, 1e-300))
                log_ratio = logs[:, :third].mean(axis=1) - logs[:, -third:].mean(axis=1)
            valid = np.isfinite(rms).all(axis=1) & (rms[:, -third:] > 0).all(axis=1)
            hits = np.flatnonzero(valid & (log_ratio < math.log(self.vanishing_ratio)))
            if hits.size:
                found.append((start + int(hits[0]), 1, "vanishing"))
        for index, _, kind in sorted(found):
            self._warned.add(kind)
            if kind == "exploding":
                self._warn_exploding(index)
            else:
                self._warn_vanishing(index, float(np.exp(log_ratio[index - start])))

    def _first_exploding(self, start):
        """Index of the first record from `start` on that is non-finite or above
        `exploding_factor` times the median of the (up to `window`) records before it."""
        lo = max(0, start - self.window)
        norms = [float(row[1]) for row in self._records[lo:]]
        enough = min(5, self.window)
        for index in range(start, len(self._records)):
            position = index - lo
            history = norms[max(0, position - self.window): position]
            if len(history) < enough:
                continue
            value = norms[position]
            if not math.isfinite(value) or value > self.exploding_factor * statistics.median(history):
                return index
        return None

    def _warn_exploding(self, index):
        n = len(self.layers)
        row = self._records[index]
        step, record = int(row[0]), row[1:]
        norms = record[1: 1 + n]
        before = np.stack(self._records[max(0, index - self.window): index])
        reference = float(np.median(before[:, 1]))
        past = np.median(before[:, 2: 2 + n], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            jump = np.where(past > 0, norms / past, np.inf)
        jump = np.where(np.isfinite(norms), jump, np.inf)
        order = np.argsort(-jump)[:3]
        named = ", ".join(f"{self.layers[i]!r} ({norms[i]:.3g}, {jump[i]:.3g}x)" for i in order)
        warnings.warn(
            f"GradientNormLogger: exploding gradients at step {step}: the global norm is {record[0]:.3g}, "
            f"{self.exploding_factor:g}x above its recent median {reference:.3g}. Largest jumps: {named}. "
            "Remedies: a lower learning rate (keras_actkit.find_lr), gradient clipping "
            "(clipnorm=), keras_actkit.callbacks.NaNGuard, BatchNormalization.", stacklevel=3)

    def _warn_vanishing(self, index, ratio):
        row = self._records[index]
        n = len(self.layers)
        third = max(1, n // 3)
        names = ", ".join(repr(self.layers[i]) for i in range(third))
        tail = ", ".join(repr(self.layers[n - third + i]) for i in range(third))
        warnings.warn(
            f"GradientNormLogger: vanishing gradients at step {int(row[0])}: the RMS gradient of the first "
            f"layers ({names}) is {ratio:.2g} times that of the last layers ({tail}). Remedies: "
            "ReLU-family activations (keras_actkit.layers.LeakyReLU6, PReLU) with matched "
            "initialisation (keras_actkit.match_initializers), BatchNormalization, residual "
            "connections.", stacklevel=3)

    # -- results -------------------------------------------------------------------------
    @property
    def history(self):
        """Records so far: `step` (n,), `global` (n,), `norms` and `update_ratios` (n, layers), `layers`."""
        n = len(self.layers)
        rows = np.stack(self._records) if self._records else np.zeros((0, 2 + 2 * n))
        return {"layers": list(self.layers), "step": rows[:, 0].astype(int), "global": rows[:, 1],
                "norms": rows[:, 2: 2 + n], "update_ratios": rows[:, 2 + n:]}

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
