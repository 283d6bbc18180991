"""DeadNeuronMonitor: find dead ReLU units during `fit`, and optionally revive them."""

import dataclasses
import warnings
import weakref

import keras
import numpy as np

from keras_actkit import _backend
from keras_actkit.activation_info import describe_activation
from keras_actkit.init_matching import UNIT_PRESERVING, _Graph, _kernel_spec
from keras_actkit.initializers import initializer_for_info

# Between a kernel and its activation only unit-preserving layers are allowed
# for revival (no mixing, no reshaping), so a unit's incoming weights are the
# kernel's column for it. Normalisation is left out: behind BatchNorm a dead
# unit is dead through its shift, and new incoming weights would not change that.
_UNIT_PRESERVING = UNIT_PRESERVING
_REVIVABLE = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


# The default probe: at most this many samples, and at most 1/_PROBE_SHARE of
# an epoch's samples, but at least _PROBE_MIN.
_PROBE_SIZE, _PROBE_SHARE, _PROBE_MIN = 256, 16, 64

# model -> (probe tree, sites, notes): a model's graph never changes once built,
# so every monitor (and every fit) on it shares one probe and its compiled step.
_PROBES = weakref.WeakKeyDictionary()


@dataclasses.dataclass
class _Site:
    """One activation whose units are watched."""

    name: str
    layer: object  # the activation layer (standalone) or the kernel layer (fused)
    kind: str  # "dead" (ReLU family) or "saturated" (sigmoid, tanh, ...)
    info: object
    tensor: object  # symbolic: pre-activation (standalone) or output (fused)
    fused: bool
    channel_axis: int = -1
    kernel_layer: object = None  # for revive: the Dense/Conv producing the units
    consumers: tuple = ()  # for revive: Dense/Conv layers reading the units directly
    why_not_revivable: str = None


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None
    op = history.operation
    nodes = getattr(op, "_inbound_nodes", [])
    return op, (nodes[history.node_index] if history.node_index < len(nodes) else None)


def _channel_axis(layer):
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _kernel_behind(tensor):
    """The Dense/Conv whose output reaches `tensor` unit by unit, or a reason."""
    for _ in range(100):
        op, node = _producer(tensor)
        if op is None or node is None:
            return None, "no kernel layer in front of it"
        if isinstance(op, _REVIVABLE):
            if describe_activation(getattr(op, "activation", None)).name != "linear":
                return None, f"{op.name} has its own activation in front of it"
            return op, None
        if isinstance(op, _UNIT_PRESERVING):
            tensor = node.input_tensors[0]
            continue
        return None, f"{type(op).__name__} {op.name!r} sits between the kernel and the activation"
    return None, "graph too deep"


def _readers(graph, tensor, seen=None):
    """Dense/Conv layers that read `tensor` unit by unit, or a reason they don't all."""
    seen = set() if seen is None else seen
    found = []
    for node, _ in graph.consumers.get(id(tensor), []):
        op = node.operation
        if id(op) in seen:
            continue
        seen.add(id(op))
        if isinstance(op, _REVIVABLE):
            found.append(op)
        elif isinstance(op, _UNIT_PRESERVING):
            more, reason = _readers(graph, node.output_tensors[0], seen)
            if reason:
                return None, reason
            found += more
        else:
            return None, f"its output goes to {type(op).__name__} {op.name!r}"
    if graph.exits.get(id(tensor)):
        return None, "its output leaves a nested model"
    return found, None


def _margin(kind, info, tensor, axis):
    """Per unit, how far from dead (<= 0) or saturated (<= 0) the unit is.

    ReLU family: the largest pre-activation over every sample and position;
    saturating: the largest distance of the output from its bounds.
    """
    ops = keras.ops
    rank = len(tensor.shape)
    axis = axis % rank
    reduce = tuple(a for a in range(rank) if a != axis)
    x = ops.cast(tensor, "float32")
    if kind == "saturated":
        if info.name in ("sigmoid", "hard_sigmoid"):
            x = ops.minimum(x, 1.0 - x)
        else:  # tanh, hard_tanh, softsign: bounds at +-1
            x = 1.0 - ops.abs(x)
    return ops.max(x, axis=reduce)


class _Level:
    """The watched sites of one functional model, and its nested models."""

    def __init__(self, model, graph, prefix, notes):
        functional = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
        inputs = functional.inputs
        self.inputs = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
        self.sites, self.children = [], []
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                op = node.operation
                if node.is_input:
                    continue
                if isinstance(op, keras.Model):
                    inner = getattr(op, "_functional", None) if isinstance(op, keras.Sequential) else op
                    if inner is None or not hasattr(inner, "_nodes_by_depth"):
                        notes.append(f"{op.name}: a subclassed model, not looked into")
                        continue
                    self.children.append((node.input_tensors, _Level(op, graph, f"{prefix}{op.name}/", notes)))
                    continue
                site = self._site(op, node, graph, prefix)
                if site is not None:
                    self.sites.append(site)

    @staticmethod
    def _site(op, node, graph, prefix):
        standalone = describe_activation(op) if isinstance(op, keras.layers.Layer) else None
        if standalone is not None and not isinstance(op, keras.Model):
            info, tensor, fused = standalone, node.input_tensors[0], False
        elif _kernel_spec(op) is not None:
            info = describe_activation(getattr(op, "activation", None))
            tensor, fused = node.output_tensors[0], True
        else:
            return None
        if info.is_relu_family:
            # Standalone: the layer's input is the pre-activation. Fused: Keras's
            # ReLU-family functions have a slope >= 0, so the output is <= 0
            # exactly where the pre-activation is.
            kind = "dead"
        elif info.is_saturating:
            kind, tensor = "saturated", node.output_tensors[0]  # saturation is read on the output
        else:
            return None
        site = _Site(prefix + op.name, op, kind, info, tensor, fused)
        if fused:
            site.channel_axis = _channel_axis(op)
            kernel, reason = (op, None) if isinstance(op, _REVIVABLE) else (None, f"{type(op).__name__} is not Dense/Conv")
        else:
            kernel, reason = _kernel_behind(tensor)
            if kernel is not None:
                site.channel_axis = _channel_axis(kernel)
        if kernel is not None:
            readers, reason = _readers(graph, node.output_tensors[0])
            if readers is not None:
                bad = [r.name for r in readers if _channel_axis(r) != _channel_axis(kernel) and isinstance(r, _CONV)]
                if bad:
                    kernel, reason = None, f"{bad[0]} reads it in another data format"
                site.consumers = tuple(readers)
            else:
                kernel = None
        site.kernel_layer = kernel
        site.why_not_revivable = reason if kernel is None else None
        return site

    def build_probe(self):
        # Each site's margins, then the inputs of each nested model (probed by its own probe).
        outputs = [_margin(s.kind, s.info, s.tensor, s.channel_axis) for s in self.sites]
        outputs += [t for tensors, _ in self.children for t in tensors]
        self.probe = keras.Model(self.inputs, outputs) if outputs else None
        # Compiled once per model (probes are cached): 2-4x faster than an eager
        # call on JAX and TensorFlow, and cheaper than predict_on_batch.
        self.forward = _backend.inference_function(self.probe) if outputs else None
        for _, child in self.children:
            child.build_probe()

    def margins(self, x, out):
        """Append the margins of every site, this level's and the nested ones', in `walk()` order."""
        if self.probe is None:
            return
        values = self.forward(x)
        out += values[: len(self.sites)]
        values = values[len(self.sites):]
        for tensors, child in self.children:
            inner, values = values[: len(tensors)], values[len(tensors):]
            inner = [keras.ops.convert_to_tensor(value) for value in inner]
            child.margins(keras.tree.pack_sequence_as(child.inputs, inner), out)

    def walk(self):
        """The sites in the order `margins` reports them."""
        return list(self.sites) + [site for _, child in self.children for site in child.walk()]


class DeadNeuronMonitor(keras.callbacks.Callback):
    """Find dead ReLU units (and saturated sigmoid/tanh units) while training.

    A unit — a channel for convolutions — is dead when its pre-activation is
    <= 0 on every probe sample (and every position): it outputs a constant,
    gets no gradient through the ReLU and does not learn again. Every
    ReLU-family activation is watched, fused (`Dense(..., activation="relu")`,
    convolutions) or standalone (`ReLU`, `Activation("relu")`, `LeakyReLU`,
    `LeakyReLU6`, `PReLU`), also inside nested models; for sigmoid, tanh and
    other bounded activations the fraction of units saturated (within
    `saturation` of a bound on every sample) is reported instead.

    Each check is one forward pass of a probe model (sharing the model's
    weights) over a fixed probe batch: `probe_data`, or the first
    `probe_size` samples the training itself draws (no second pass through
    the data). By default that is 256 samples, or a sixteenth of an epoch's
    samples when that is fewer (at least 64): a forward pass costs about a
    third of a training step per sample, so a check per epoch then costs at
    most ~2% of the epoch's compute. A smaller probe sees fewer inputs: a
    unit active on a few inputs only is more often taken for dead.

    Writes `dead_fraction/<layer>` (or `saturated_fraction/<layer>`) into
    `logs`, warns once per layer when a fraction exceeds `threshold`,
    naming the remedy, and keeps `.history`: per layer the fraction at each
    check, `still_dead` (units dead at this check and the one before) and
    `revived`; `.dead_units` holds the last check's boolean mask per layer.

    With `revive=True`, units dead on two checks in a row are recycled as in
    ReDo (Sokar et al. 2023): incoming weights redrawn with the initializer
    matched to the activation, bias reset to 0, outgoing weights zeroed (so
    the network's function is unchanged), and those entries of the optimizer's
    slots restarted: signed ones (momentum, first moments) at 0, second
    moments at the mean of the live units' entries. Counted in
    `logs["revived/<layer>"]`.

    Args:
        probe_data: Inputs to probe with (array, list/dict of arrays, or an
            `(x, y)` tuple whose `x` is used). Defaults to None: capture from
            training.
        every_n_epochs: Check at the end of every n-th epoch. Defaults to 1.
        every_n_steps: If set, check every n training steps instead.
        threshold: Warn when a layer's dead (saturated) fraction exceeds this,
            in (0, 1]. Defaults to 0.25.
        revive: Recycle units dead on two checks in a row. Defaults to False.
        probe_size: Samples to capture when `probe_data` is None, >= 1.
            Defaults to None: 256, or a sixteenth of an epoch's samples when
            that is fewer, but at least 64.
        saturation: Distance from a bound that counts as saturated, in
            (0, 0.5). Defaults to 0.01.
        seed: Seed for the revived weights.

    Example:
    ```python
    monitor = keras_actkit.callbacks.DeadNeuronMonitor()
    model.fit(x, y, epochs=10, callbacks=[monitor])
    monitor.history["dead_fraction"]        # {layer: [fraction per check]}
    monitor.plot().savefig("dead.png")
    ```
    """

    def __init__(self, probe_data=None, every_n_epochs=1, every_n_steps=None, threshold=0.25,
                 revive=False, probe_size=None, saturation=0.01, seed=None):
        super().__init__()
        if not (isinstance(every_n_epochs, int) and every_n_epochs >= 1):
            raise ValueError(f"`every_n_epochs` must be an integer >= 1. Received: every_n_epochs={every_n_epochs!r}")
        if every_n_steps is not None and not (isinstance(every_n_steps, int) and every_n_steps >= 1):
            raise ValueError(f"`every_n_steps` must be None or an integer >= 1. Received: every_n_steps={every_n_steps!r}")
        if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
            raise ValueError(f"`threshold` must lie in (0, 1]. Received: threshold={threshold!r}")
        if probe_size is not None and not (isinstance(probe_size, int) and probe_size >= 1):
            raise ValueError(f"`probe_size` must be None or an integer >= 1. Received: probe_size={probe_size!r}")
        if not (isinstance(saturation, (int, float)) and 0 < saturation < 0.5):
            raise ValueError(f"`saturation` must lie in (0, 0.5). Received: saturation={saturation!r}")
        if isinstance(probe_data, tuple) and len(probe_data) in (2, 3):
            probe_data = probe_data[0]
        self.probe_data = probe_data
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.threshold, self.revive, self.probe_size = threshold, revive, probe_size
        self.saturation, self.seed = saturation, seed
        if every_n_steps is not None:
            self.on_train_batch_end = self._on_step
        self.history = {"step": [], "epoch": [], "dead_fraction": {}, "saturated_fraction": {},
                        "still_dead": {}, "revived": {}}
        self.dead_units = {}  # layer -> boolean mask of the last check
        self.sites = []
        self._warned = set()
        self._unwrap = None
        self._captured = []
        self._capture_pending = False
        self._size = None  # samples to capture, set at the first captured batch
        self._converted = None

    # -- set-up ----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        model = self.model
        if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is None:
            raise ValueError("DeadNeuronMonitor needs a built model: give the Sequential an `Input`.")
        if not hasattr(model, "_nodes_by_depth") and not isinstance(model, keras.Sequential):
            warnings.warn("DeadNeuronMonitor: subclassed models cannot be probed layer by layer; "
                          "nothing will be monitored.", stacklevel=2)
            self._root = None
            return
        cached = _PROBES.get(model)
        if cached is None:
            notes = []
            root = _Level(model, _Graph(model), "", notes)
            root.build_probe()
            cached = _PROBES[model] = (root, root.walk(), notes)
        self._root, self.sites, notes = cached[0], list(cached[1]), cached[2]
        for note in notes:
            warnings.warn(f"DeadNeuronMonitor: {note}.", stacklevel=2)
        if not self.sites:
            warnings.warn(
                "DeadNeuronMonitor: the model has no ReLU-family or saturating activation "
                "(relu, leaky_relu, LeakyReLU6, PReLU, sigmoid, tanh, ...); nothing to monitor.",
                stacklevel=2,
            )
        self._steps, self._previous, self._captured, self._size = 0, {}, [], None
        self._probe = None if self.probe_data is None else self.probe_data
        # The capture wraps the train function at the first batch, after every
        # callback's on_train_begin (the gradient tap may replace the function there).
        self._capture_pending = self._probe is None and bool(self.sites)

    def on_train_batch_begin(self, batch, logs=None):
        if self._capture_pending:
            self._capture_pending = False
            self._install_capture()

    def _target_size(self, batch):
        """How many samples to capture, given the first batch's size."""
        if self.probe_size is not None:
            return self.probe_size
        steps = (self.params or {}).get("steps")
        if not steps:
            return _PROBE_SIZE
        return min(_PROBE_SIZE, max(_PROBE_MIN, steps * batch // _PROBE_SHARE))

    def _install_capture(self):
        model, original = self.model, self.model.train_function
        while getattr(original, "_actkit_original", None) is not None:  # left by an interrupted fit
            original = original._actkit_original
        captured, backend = [], keras.backend.backend()
        monitor = self

        def record(data):
            x = keras.utils.unpack_x_y_sample_weight(data)[0]
            captured.append(keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), x))
            rows = [len(keras.tree.flatten(c)[0]) for c in captured]
            if monitor._size is None:
                monitor._size = monitor._target_size(rows[0])
            if sum(rows) >= monitor._size:
                monitor._finish_capture()

        if backend == "jax":
            class Recording:
                def __init__(self, iterator):
                    self.iterator = iterator

                def __iter__(self):
                    return self

                def __next__(self):
                    data = next(self.iterator)
                    record(data)
                    return data

            def wrapped(state, iterator):
                return original(state, Recording(iterator))
        elif backend == "torch":
            def wrapped(data):
                record(data[0])
                return original(data)
        elif backend == "tensorflow":
            import tensorflow as tf

            if model.steps_per_execution != 1:
                raise ValueError(
                    "DeadNeuronMonitor cannot capture probe samples from training with steps_per_execution > 1 "
                    "on TensorFlow (one call takes several batches from the iterator); pass `probe_data=` "
                    "(a batch of inputs)."
                )
            strategy = model.distribute_strategy
            replicas = strategy.num_replicas_in_sync

            if replicas == 1:
                def wrapped(iterator):
                    data = next(iterator)
                    record(data)
                    # Keras's train function runs its traced one-batch step on each
                    # element of a non-tf.data iterable: the batch goes straight in,
                    # through the step fit has already traced.
                    return original([data])
            else:
                def wrapped(iterator):
                    # Each replica's share of the batch, in order: the whole batch again.
                    data = tf.nest.map_structure(
                        lambda v: tf.concat(strategy.experimental_local_results(v), axis=0), next(iterator))
                    record(data)
                    # The step needs a distributed iterator: the same batch again, with
                    # the element spec of fit's own (batch dimension None), so the
                    # traced step is reused.
                    size = keras.tree.flatten(data)[0].shape[0]
                    dataset = tf.data.Dataset.from_tensors(data).unbatch().batch(size)
                    return original(iter(strategy.experimental_distribute_dataset(dataset)))
        else:  # pragma: no cover
            raise ValueError(f"DeadNeuronMonitor: unsupported backend {backend!r}; pass `probe_data=`.")
        def guarded(*args):
            try:
                return wrapped(*args)
            except BaseException:
                monitor._finish_capture()  # an error inside fit: never leave the step wrapped
                raise

        guarded._actkit_original = original
        self._captured = captured
        self._unwrap = lambda: setattr(model, "train_function", original)
        model.train_function = guarded

    def _finish_capture(self):
        if self._unwrap is not None:
            self._unwrap()
            self._unwrap = None
        if self._probe is None and self._captured:
            joined = keras.tree.map_structure(lambda *parts: np.concatenate(parts)[: self._size],
                                              *self._captured)
            self._probe = joined
            self._captured = []

    # -- checks ----------------------------------------------------------------
    def _on_step(self, batch, logs=None):
        # Installed as on_train_batch_end only with every_n_steps: any batch hook
        # makes Keras turn off asynchronous dispatch, which on JAX alone costs
        # more than every check of a fit.
        self._steps += 1
        if self._steps % self.every_n_steps == 0 and self._probe is not None:
            self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch
        self._finish_capture()  # data smaller than probe_size: probe with what one epoch gave
        if self.every_n_steps is None and (epoch + 1) % self.every_n_epochs == 0:
            self._check(logs)

    def on_train_end(self, logs=None):
        self._capture_pending = False
        self._finish_capture()

    def check(self, x=None):
        """Run one check now (on `x`, or the probe batch); returns {layer: fraction}."""
        if x is not None:
            self._probe = x
        return self._check(None)

    def _check(self, logs):
        if self._root is None or not self.sites or self._probe is None:
            return {}
        model = self.model  # on JAX, a running fit's state goes back into the variables
        optimizer = getattr(model, "optimizer", None)
        # The step is read before the probe runs: right after it, the same read
        # took ~100 us instead of ~10 (JAX MLP, inside fit).
        step = self._steps if optimizer is None else int(_backend.read_values(model, [optimizer.iterations])[0])
        margins = []
        self._root.margins(self._probe_inputs(), margins)
        fractions, revived_total = {}, 0
        self.history["step"].append(step)
        self.history["epoch"].append(getattr(self, "_epoch", None))
        for site, margin in zip(self.sites, margins):
            bad = margin <= 0 if site.kind == "dead" else margin <= self.saturation
            fraction = np.count_nonzero(bad) / bad.size if bad.size else 0.0
            key = f"{site.kind}_fraction"
            fractions[site.name] = fraction
            self.history[key].setdefault(site.name, []).append(fraction)
            if logs is not None:
                logs[f"{key}/{site.name}"] = fraction
            if site.kind == "dead":
                previous = self._previous.get(site.name)
                still = bad & previous if previous is not None else np.zeros_like(bad)  # dead at the last check too
                self.history["still_dead"].setdefault(site.name, []).append(int(np.count_nonzero(still)))
                if self.revive:
                    count = self._revive(site, still)
                    revived_total += count
                    self.history["revived"].setdefault(site.name, []).append(count)
                    if logs is not None:
                        logs[f"revived/{site.name}"] = count
                    if count:
                        bad = bad.copy()
                        bad[self._last_revived] = False
                self._previous[site.name] = bad
                self.dead_units[site.name] = bad
            if fraction > self.threshold and site.name not in self._warned:
                self._warned.add(site.name)
                warnings.warn(self._advice(site, fraction), stacklevel=2)
        if logs is not None and self.revive:
            logs["revived/total"] = revived_total
        return fractions

    def _probe_inputs(self):
        # The probe as backend tensors, converted once per probe (it is fixed
        # for the fit) instead of at every check.
        if self._converted is None or self._converted[0] is not self._probe:
            self._converted = (self._probe, keras.tree.map_structure(keras.ops.convert_to_tensor, self._probe))
        return self._converted[1]

    def _advice(self, site, fraction):
        if site.kind == "dead":
            return (f"DeadNeuronMonitor: {fraction:.0%} of the units of {site.name!r} ({site.info.name}) are dead "
                    "(pre-activation <= 0 on every probe sample). Remedies: a leaky activation "
                    "(keras_actkit.layers.LeakyReLU6 or PReLU), a lower learning rate "
                    "(keras_actkit.find_lr), He initialisation (keras_actkit.match_initializers), "
                    "or DeadNeuronMonitor(revive=True).")
        return (f"DeadNeuronMonitor: {fraction:.0%} of the units of {site.name!r} ({site.info.name}) are "
                "saturated on every probe sample: their gradients vanish. Remedies: a ReLU-family "
                "activation in hidden layers, BatchNormalization before the activation, "
                "Glorot initialisation (keras_actkit.match_initializers), a lower learning rate.")

    # -- revive (ReDo) -----------------------------------------------------------
    def _revive(self, site, mask):
        self._last_revived = np.flatnonzero(mask)
        units = self._last_revived
        if units.size == 0:
            return 0
        kernel_layer = site.kernel_layer
        if kernel_layer is None:
            key = ("revive", site.name)
            if key not in self._warned:
                self._warned.add(key)
                warnings.warn(f"DeadNeuronMonitor: cannot revive {site.name!r}: {site.why_not_revivable}.",
                              stacklevel=3)
            self._last_revived = np.array([], dtype=int)
            return 0
        initializer = initializer_for_info(site.info, seed=self.seed)
        kernel = kernel_layer.kernel
        fresh = np.asarray(keras.ops.convert_to_numpy(initializer(kernel.shape, dtype="float32")))
        self._set_units(kernel, units, axis=-1, source=fresh)
        if getattr(kernel_layer, "bias", None) is not None:
            self._set_units(kernel_layer.bias, units, axis=-1, source=None)
        for reader in site.consumers:
            # Dense kernel (in, out): rows; Conv kernel (..., in, out): axis -2.
            self._set_units(reader.kernel, units, axis=-2, source=None)
        return int(units.size)

    def _set_units(self, variable, units, axis, source):
        value = np.array(keras.ops.convert_to_numpy(variable.value))
        index = [slice(None)] * value.ndim
        index[axis] = units
        value[tuple(index)] = 0.0 if source is None else source[tuple(index)]
        variable.assign(value.astype(value.dtype))
        # Reset this variable's optimizer slots (momentum, Adam moments) for these units.
        optimizer = getattr(self.model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        if optimizer is None or not optimizer.built:
            return
        try:
            position = optimizer._get_variable_index(variable)
        except (KeyError, AttributeError, ValueError):
            return
        watched = optimizer._trainable_variables
        for slots in vars(optimizer).values():
            # Per-variable slot lists (momentums, velocities, ...) are as long as
            # the optimizer's variable list and hold variables of matching shape.
            if isinstance(slots, (list, tuple)) and slots is not watched and len(slots) == len(watched) \
                    and all(isinstance(s, keras.Variable) or s is None for s in slots):
                slot = slots[position]
                if slot is not None and slot is not variable and tuple(slot.shape) == tuple(variable.shape):
                    slot_value = np.array(keras.ops.convert_to_numpy(slot.value))
                    slot_value[tuple(index)] = self._fresh_slot_value(slot_value, index, axis)
                    slot.assign(slot_value)

    @staticmethod
    def _fresh_slot_value(slot_value, index, axis):
        """What a recycled unit's optimizer slot starts from.

        Signed slots (momentum, Adam's first moment) start at 0. A
        non-negative slot is a running mean of squared gradients (Adam's and
        RMSprop's second moment, Adagrad's sum): a dead unit's has decayed to
        about 0, and Adam's first step divides by its root, so at 0 the fresh
        weights would take steps of ~3x the learning rate on every entry. It
        starts at the mean of the live units' entries instead, so the first
        updates have the size the rest of the layer has.
        """
        if slot_value.size == 0 or np.any(slot_value < 0):
            return 0.0
        live = np.ones(slot_value.shape[axis], bool)
        live[index[axis]] = False
        if not live.any():
            return 0.0
        return float(np.take(slot_value, np.flatnonzero(live), axis=axis).mean())

    # -- results -----------------------------------------------------------------
    def plot(self, ax=None):
        """Dead (and saturated) fraction per layer over the checks; returns the figure."""
        from keras_actkit.plotting import get_axes

        figure, ax = get_axes(ax)
        x = self.history["step"]
        for key, style in (("dead_fraction", "-"), ("saturated_fraction", "--")):
            for name, values in self.history[key].items():
                ax.plot(x[: len(values)], values, style, marker="o", ms=3,
                        label=f"{name} ({'dead' if key == 'dead_fraction' else 'saturated'})")
        ax.axhline(self.threshold, color="0.6", ls=":", lw=1, label=f"threshold {self.threshold:g}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training step")
        ax.set_ylabel("fraction of units")
        ax.set_title("DeadNeuronMonitor")
        if self.history["dead_fraction"] or self.history["saturated_fraction"]:
            ax.legend(fontsize="small")
        return figure

