"""Finding the watched activations of a functional model, and what a revive of their units may touch."""

import dataclasses
import weakref

import keras
import numpy as np

from keras_actkit import _backend, _keras_internals, _layer_paths
from keras_actkit.activation_info import describe_activation
from keras_actkit._graph import JOINS, UNIT_PRESERVING, Graph, kernel_spec

# Between a kernel and its activation only unit-preserving layers are allowed
# for revival (no mixing, no reshaping), so a unit's incoming weights are the
# kernel's column for it. Normalisation is left out: behind BatchNorm a dead
# unit is dead through its shift, and new incoming weights would not change that.
_UNIT_PRESERVING = UNIT_PRESERVING
REVIVABLE = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
# Layers that keep the channel axis where it is: walked through to find the
# data format an activation's input is in.
_SAME_LAYOUT = (*UNIT_PRESERVING, *JOINS, keras.layers.BatchNormalization, keras.layers.LayerNormalization,
                keras.layers.GroupNormalization)


@dataclasses.dataclass
class Site:
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
    source: object = None  # the layer whose output the activation acts on (itself when fused)
    join: str = None  # a layer called more than once: "max" (the same units) or "concatenate"


def _channel_axis(layer):
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _channel_axis_behind(tensor):
    """The channel axis of `tensor`: the data format of the nearest layer in front of it that has one
    (a convolution, a pooling), through normalisation, drop, joins and activations; -1 otherwise."""
    for _ in range(100):
        op, node = _keras_internals.producer(tensor)
        if op is None or node is None or hasattr(op, "data_format") or kernel_spec(op) is not None:
            return -1 if op is None else _channel_axis(op)
        if not (isinstance(op, _SAME_LAYOUT) or describe_activation(op) is not None) or not node.input_tensors:
            return -1
        tensor = node.input_tensors[0]
    return -1


def _kernel_behind(tensor):
    """The Dense/Conv whose output reaches `tensor` unit by unit, or a reason."""
    for _ in range(100):
        op, node = _keras_internals.producer(tensor)
        if op is None or node is None:
            return None, "no kernel layer in front of it"
        if isinstance(op, REVIVABLE):
            if describe_activation(getattr(op, "activation", None)).name != "linear":
                return None, f"{op.name} has its own activation in front of it"
            return op, None
        if isinstance(op, _UNIT_PRESERVING):
            tensor = node.input_tensors[0]
            continue
        return None, f"{type(op).__name__} {op.name!r} sits between the kernel and the activation"
    return None, "graph too deep"


def _readers(graph, tensor, outputs, seen=None):
    """Dense/Conv layers that read `tensor` unit by unit, or a reason they don't all."""
    seen = set() if seen is None else seen
    found = []
    for node, _ in graph.consumers.get(id(tensor), []):
        op = node.operation
        if id(op) in seen:
            continue
        seen.add(id(op))
        if isinstance(op, REVIVABLE):
            found.append(op)
        elif isinstance(op, _UNIT_PRESERVING):
            more, reason = _readers(graph, node.output_tensors[0], outputs, seen)
            if reason:
                return None, reason
            found += more
        else:
            return None, f"its output goes to {type(op).__name__} {op.name!r}"
    if graph.exits.get(id(tensor)):
        return None, "its output leaves a nested model"
    if id(tensor) in outputs:
        # No outgoing weights to zero: new incoming weights would change what the model computes.
        return None, "it is an output of the model"
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


class Level:
    """The watched sites of one functional model, and its nested models."""

    def __init__(self, model, graph, paths, notes):
        functional = _keras_internals.functional_of(model)
        inputs = functional.inputs
        self.inputs = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
        outputs = {id(t) for t in keras.tree.flatten(functional.outputs)}
        self.sites, self.children, self.calls, self._merged = [], [], None, None
        for node in graph.nodes_of(model):
            op = node.operation
            if node.is_input:
                continue
            if isinstance(op, keras.Model):
                if graph.nodes_of(op) is None:
                    notes.append(f"{paths.get(id(op), op.name)}: a subclassed model, not looked into")
                    continue
                self.children.append((node.input_tensors, Level(op, graph, paths, notes)))
                continue
            site = self._site(op, node, graph, paths.get(id(op), op.name), outputs)
            if site is not None:
                self.sites.append(site)

    @staticmethod
    def _site(op, node, graph, name, outputs):
        standalone = describe_activation(op) if isinstance(op, keras.layers.Layer) else None
        if standalone is not None and not isinstance(op, keras.Model):
            info, tensor, fused = standalone, node.input_tensors[0], False
        elif kernel_spec(op) is not None:
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
        site = Site(name, op, kind, info, tensor, fused)
        if fused:
            site.channel_axis, site.source = _channel_axis(op), op
            kernel, reason = (op, None) if isinstance(op, REVIVABLE) else (None, f"{type(op).__name__} is not Dense/Conv")
        else:
            # The activation's input, also for a saturating one (whose margin is read on its output).
            site.channel_axis = _channel_axis_behind(node.input_tensors[0])
            site.source = _keras_internals.producer(node.input_tensors[0])[0]
            kernel, reason = _kernel_behind(node.input_tensors[0])
        if kernel is not None:
            readers, reason = _readers(graph, node.output_tensors[0], outputs)
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
        """Append the margins of every watched site (`watched_sites`' list), in its order."""
        if self.calls is None:
            return self._call_margins(x, out)
        per_call = []
        self._call_margins(x, per_call)
        for site, calls in zip(self._merged, self.calls):
            if len(calls) == 1:
                out.append(per_call[calls[0]])
            else:
                values = [np.asarray(keras.ops.convert_to_numpy(per_call[i])) for i in calls]
                out.append(np.max(values, axis=0) if site.join == "max" else np.concatenate(values))

    def _call_margins(self, x, out):
        """Append the margins of each layer call, this level's and the nested ones', in `walk()` order."""
        if self.probe is None:
            return
        values = self.forward(x)
        out += values[: len(self.sites)]
        values = values[len(self.sites):]
        for tensors, child in self.children:
            inner, values = values[: len(tensors)], values[len(tensors):]
            inner = [keras.ops.convert_to_tensor(value) for value in inner]
            child._call_margins(keras.tree.pack_sequence_as(child.inputs, inner), out)

    def walk(self):
        """The sites of every layer call, in the order `_call_margins` reports them."""
        return list(self.sites) + [site for _, child in self.children for site in child.walk()]

    def merge_calls(self):
        """One site per layer: a layer called more than once (shared, or in a nested model called more
        than once) is one layer under one name. Returns the sites in the order `margins` reports them.

        When every call acts on the same layer's output, the calls see the same units, and a unit is
        dead (saturated) only when it is on every call: the margins' maximum. An activation layer reused
        after different layers sees different units on each call: they are counted side by side.
        """
        calls = {}
        for position, site in enumerate(self.walk()):
            calls.setdefault(id(site.layer), []).append((position, site))
        merged = [_merge([site for _, site in group]) for group in calls.values()]
        self.calls = [[position for position, _ in group] for group in calls.values()]
        if all(len(c) == 1 for c in self.calls):
            self.calls = None
        self._merged = merged
        return merged


def _merge(sites):
    """One site for the calls `sites` of one layer (see `Level.merge_calls`); revivable when every call is."""
    first = sites[0]
    if len(sites) == 1:
        return first
    same_units = all(s.source is first.source for s in sites)
    site = dataclasses.replace(first, join="max" if same_units else "concatenate")
    reasons = [s.why_not_revivable for s in sites if s.kernel_layer is None]
    if not same_units:
        reasons.insert(0, "it is called on the outputs of more than one layer")
    if reasons:
        site.kernel_layer, site.consumers, site.why_not_revivable = None, (), reasons[0]
    else:  # one kernel (the same units): the readers of every call
        site.consumers = tuple({id(r): r for s in sites for r in s.consumers}.values())
    return site


# model -> (root level, sites, notes): a model's graph never changes once built,
# so every monitor (and every fit) on it shares one probe and its compiled step.
_PROBES = weakref.WeakKeyDictionary()


def watched_sites(model):
    """(root Level, [Site], [note]) for a functional or Sequential model, or None for a subclassed one.

    Sites are named by their layer's path in the model (keras_actkit._layer_paths).
    """
    if _keras_internals.functional_of(model) is None:
        return None
    cached = _PROBES.get(model)
    if cached is None:
        notes = []
        root = Level(model, Graph(model), _layer_paths.layer_paths(model), notes)
        root.build_probe()
        cached = _PROBES[model] = (root, root.merge_calls(), notes)
    return cached
