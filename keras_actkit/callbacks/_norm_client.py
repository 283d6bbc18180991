"""GradientNormLogger's in-graph part: a client of the gradient tap that records norms in-graph."""

import dataclasses
import math
import warnings

import keras
import numpy as np

from keras_actkit import _backend, _keras_internals, _layer_paths
from keras_actkit.callbacks import _tap

ROWS = 64  # records the in-graph ring buffer holds between two reads


def layer_groups(variables, keys):
    """The layers of `variables` in order of first appearance, each variable's layer index, and the
    number of weights per layer (float64 array), with `keys` mapping id(variable) to its layer's key."""
    layers, layer_by_variable, sizes = [], {}, {}
    for variable in variables:
        key = keys.get(id(variable)) or _layer_paths.fallback_key(variable)
        if key not in sizes:
            layers.append(key)
            sizes[key] = 0
        sizes[key] += int(np.prod(variable.shape))
        layer_by_variable[id(variable)] = layers.index(key)
    return layers, layer_by_variable, np.array([sizes[k] for k in layers], "float64")


class _NormClient(_tap.TapClient):
    """In-graph part: on recorded steps, per-layer ‖g‖ and ‖Δw‖/‖w‖ into a ring buffer.

    Buffer layout, (ROWS + 1, 2 + 2·layers) float32: row 0 holds the number of
    records written so far; each record row holds [sequence number, optimizer
    step, per-layer norms, per-layer update ratios]. The host reads the buffer
    every ROWS/2 records and at the end of each epoch, so no step waits for the
    host; it works out the global norm from the per-layer ones (`NormRecords`).
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
        self.width = 2 + 2 * len(layers)
        self._pending = None
        self.schedule = None  # (next micro-step, accumulation steps) when the host can tell recorded steps

    def sync(self, model):
        """Count steps on the host from the optimizer's counter (read now, between steps)."""
        if not self.may_idle:
            return
        optimizer = _tap.innermost(model.optimizer)
        (iterations,) = _backend.read_values(model, [_keras_internals.iterations_variable(optimizer)])
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
        if context.eager:
            self._record_on_host(context, before, accumulated, layer_of)
            return

        def per_layer(values):
            # Sparse gradients (an Embedding's IndexedSlices on TensorFlow) sum their repeated rows first.
            return layer_norms([_backend.scaled_squares(v) for v in values], layer_of, n)

        buffer = self.variables[0]
        old = buffer.value
        step = context.step

        def updated():
            grad = per_layer(context.effective_grads(accumulated))
            delta = per_layer([v.value - b for v, b in zip(context.variables, before)])
            size = per_layer(before)
            count = old[0, 0]
            record = ops.concatenate([
                ops.reshape(count + 1.0, (1,)),
                ops.reshape(ops.cast(ops.convert_to_tensor(step), "float32"), (1,)),
                grad,
                ops.divide_no_nan(delta, size),
            ])
            row = 1 + ops.mod(ops.cast(count, "int32"), ROWS)
            target = ops.reshape(ops.equal(ops.arange(ROWS + 1), row), (ROWS + 1, 1))
            header = ops.reshape(ops.equal(ops.arange(ROWS + 1), 0), (ROWS + 1, 1))
            new = ops.where(target, ops.reshape(record, (1, self.width)), old)
            return ops.where(header, ops.full((ROWS + 1, self.width), count + 1.0), new)

        # Only on recorded steps (a conditional in the compiled step, unless
        # the host chose the call): a reduction per variable, and every op on
        # TensorFlow's CPU graph executor, costs more in dispatch than in arithmetic.
        buffer.assign(updated() if is_log is True else ops.cond(is_log, updated, lambda: old))

    def _record_on_host(self, context, before, accumulated, layer_of):
        """The same record for an eager step (torch), put together on the host from one transfer of
        the per-variable sums: the per-layer sums and the ring buffer's row in numpy, where a dozen
        small tensor ops per layer cost ~1400 Python calls per record."""
        ops = keras.ops
        grads = context.effective_grads(accumulated)
        parts = [_backend.scaled_squares(g) for g in grads]
        parts += [_backend.scaled_squares(v.value - b) for v, b in zip(context.variables, before)]
        parts += [_backend.scaled_squares(b) for b in before]
        # One stack and one transfer, the scales then the sums (a stack per variable was 3 per layer more
        # eager ops, ~5 us each).
        flat = ops.convert_to_numpy(ops.stack([c for c, _ in parts] + [s for _, s in parts]))
        scales, sums = flat.astype("float64").reshape(2, -1)
        # Squared norms c²·s in float64, where they cannot overflow.
        grad_sq, delta, size = (np.square(scales) * sums).reshape(3, -1)
        state = np.array(ops.convert_to_numpy(self.variables[0].value))
        state[1 + int(state[0, 0]) % ROWS] = norm_record(state[0, 0] + 1, context.step, grad_sq, delta, size,
                                                         layer_of, len(self.layers))
        state[0] = state[0, 0] + 1
        self.variables[0].assign(state)


def layer_norms(parts, layer_of, layers):
    """Per-layer L2 norms (float32 vector) from each variable's `scaled_squares` (c, s) and its layer index.

    A layer's norm is C·√Σ s·(c/C)², C the layer's largest c: no squared norm
    is formed, so it overflows only past the float32 range. A term small
    enough to underflow is below float32's precision of the total anyway.
    """
    ops = keras.ops
    scales, sums = ops.stack([c for c, _ in parts]), ops.stack([s for _, s in parts])
    ids = ops.convert_to_tensor(np.asarray(layer_of, "int32"))
    top = ops.segment_max(scales, ids, num_segments=layers)  # >= 2^-100: never 0
    total = ops.segment_sum(sums * ops.square(scales / ops.take(top, ids)), ids, num_segments=layers)
    return top * ops.sqrt(total)


def norm_record(count, step, grad_sq, delta_sq, size_sq, layer_of, layers):
    """One row of the ring buffer from per-variable squared norms (of the gradient, of the update
    and of the weights before it) and each variable's layer: [count, step, per-layer gradient norms,
    per-layer update ratios ‖Δw‖/‖w‖ (0 for a layer of zero weights)], float32."""
    # In float64 up to the norms: the squares of float32 norms past ~1.8e19 are not float32 numbers.
    grad, delta, size = (np.bincount(layer_of, weights=np.asarray(values, "float64"), minlength=layers)
                         for values in (grad_sq, delta_sq, size_sq))
    ratios = np.sqrt(np.divide(delta, size, out=np.zeros_like(delta), where=size != 0))
    return np.concatenate([[count, step], np.sqrt(grad), ratios]).astype("float32")


@dataclasses.dataclass
class NormRecords:
    """Records of the logger, one entry per recorded step, in order."""

    step: np.ndarray  # (n,) optimizer step of each record
    global_norm: np.ndarray  # (n,) L2 norm of the whole gradient
    norms: np.ndarray  # (n, layers) L2 norm of each layer's gradient
    update_ratios: np.ndarray  # (n, layers) ‖Δw‖/‖w‖ of each layer's update

    @classmethod
    def empty(cls, layers):
        return cls(np.zeros(0, int), np.zeros(0), np.zeros((0, layers)), np.zeros((0, layers)))

    @classmethod
    def from_buffer(cls, buffer, seen, layers):
        """The buffer's records newer than the `seen`-th, in order (buffer layout: see `_NormClient`).

        The global norm is the per-layer norms' root sum of squares, in float64
        on the host: in float32 (in the step) layers whose squared norms are
        each finite could sum past the float32 range (norms ~1e19) to inf.
        """
        rows = buffer[1:]
        fresh = rows[rows[:, 0] > seen]
        block = fresh[np.argsort(fresh[:, 0])][:, 1:].astype("float64")
        norms = block[:, 1: 1 + layers]
        return cls(block[:, 0].astype(int), np.sqrt(np.sum(np.square(norms), axis=1)), norms, block[:, 1 + layers:])

    def __len__(self):
        return len(self.step)

    def extend(self, other):
        for field in dataclasses.fields(self):
            setattr(self, field.name, np.concatenate([getattr(self, field.name), getattr(other, field.name)]))

    def since(self, start):
        """The records from index `start` on."""
        return NormRecords(*(getattr(self, f.name)[start:] for f in dataclasses.fields(self)))

    def mean(self):
        """(global, norms, ratios) means over the records, a NaN record (a step NaNGuard skipped) left out."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (float(np.nanmean(self.global_norm)) if len(self) else math.nan,
                    np.nanmean(self.norms, axis=0) if len(self) else np.full(self.norms.shape[1], np.nan),
                    np.nanmean(self.update_ratios, axis=0) if len(self) else np.full(self.norms.shape[1], np.nan))
