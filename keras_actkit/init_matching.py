"""`match_initializers`: re-draw each kernel for the activation that acts on it.

The walk follows the Keras graph (Sequential, Functional, models nested in
either) from each kernel-bearing layer to the first activation applied to its
output: the layer's own `activation`, else the first activation layer reached
through layers that keep each value in place (normalisation, dropout, noise,
reshaping). A kernel that reaches an activation by several paths that
disagree is left alone and reported.

A kernel that reads the model's input directly (through value-preserving or
input-preprocessing layers only) gets `n·Var[w] = 1` (LeCun) rather than the
ReLU or computed gain, as He et al. 2015 derive for the first layer: its input
is the data, whose second moment is not the activation's.
"""

import collections
import dataclasses
import warnings

import keras
import numpy as np

from keras_actkit.activation_info import describe_activation
from keras_actkit.initializers import initializer_for_info

# Activations whose rule already ignores what feeds the kernel (Glorot, LeCun).
INPUT_LAYER_KEEPS = frozenset({"tanh", "sigmoid", "softmax", "log_softmax", "linear", "selu", "elu"})

# Layers between a kernel and its activation that leave the pre-activation's
# role intact: they normalise, drop, perturb or move values, never mix them.
# Of those, the ones that also keep every unit in its place, unscaled by
# statistics: drop, noise, identity.
UNIT_PRESERVING = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
PASS_THROUGH = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    *UNIT_PRESERVING,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
)
# Input preprocessing: a kernel behind these still reads raw data.
INPUT_PREPROCESSING = (keras.layers.Normalization, keras.layers.Rescaling)
# (layer class, attribute of the kernel(s) whose output the activation sees,
# attribute of its initializer). A separable conv's depthwise kernel feeds its
# pointwise kernel linearly, so only the pointwise one is matched.
KERNELS = (
    (keras.layers.SeparableConv1D, "pointwise_kernel", "pointwise_initializer"),
    (keras.layers.SeparableConv2D, "pointwise_kernel", "pointwise_initializer"),
    (keras.layers.DepthwiseConv1D, "kernel", "depthwise_initializer"),
    (keras.layers.DepthwiseConv2D, "kernel", "depthwise_initializer"),
    (keras.layers.Dense, "kernel", "kernel_initializer"),
    (keras.layers.EinsumDense, "kernel", "kernel_initializer"),
    (keras.layers.Conv1D, "kernel", "kernel_initializer"),
    (keras.layers.Conv2D, "kernel", "kernel_initializer"),
    (keras.layers.Conv3D, "kernel", "kernel_initializer"),
    (keras.layers.Conv1DTranspose, "kernel", "kernel_initializer"),
    (keras.layers.Conv2DTranspose, "kernel", "kernel_initializer"),
    (keras.layers.Conv3DTranspose, "kernel", "kernel_initializer"),
)
# What Keras gives when the user says nothing.
_DEFAULT_INITIALIZER = keras.initializers.GlorotUniform


@dataclasses.dataclass
class MatchEntry:
    """One kernel: what acts on it, and what `match_initializers` did."""

    layer: str
    activation: str
    old: str
    new: str
    action: str  # "matched" | "kept (user-set)" | "kept (ambiguous: ...)"
    calibration: float = None  # kernel multiplier found by calibration, if any


@dataclasses.dataclass
class MatchReport:
    """The result of `match_initializers`: one entry per kernel-bearing layer."""

    entries: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)

    @property
    def matched(self):
        return [e for e in self.entries if e.action == "matched"]

    def __str__(self):
        rows = [("layer", "activation", "initializer", "action")]
        for e in self.entries:
            change = e.old if e.action != "matched" else f"{e.old} -> {e.new}"
            action = e.action if e.calibration is None else f"{e.action}, calibrated x{e.calibration:.3g}"
            rows.append((e.layer, e.activation, change, action))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        if self.skipped:
            lines.append("not walked (subclassed model): " + ", ".join(self.skipped))
        return "\n".join(lines)


def describe_initializer(init):
    if isinstance(init, keras.initializers.VarianceScaling) and type(init) is keras.initializers.VarianceScaling:
        return f"VarianceScaling({init.scale:.4g}, {init.mode}, {init.distribution})"
    return type(init).__name__


def _kernel_spec(layer):
    for cls, kernel_attr, init_attr in KERNELS:
        if isinstance(layer, cls):
            return kernel_attr, init_attr
    return None


def _is_user_set(init):
    # Keras resolves a missing seed to a random one; the config keeps the None.
    return not (type(init) is _DEFAULT_INITIALIZER and init.get_config().get("seed") is None)


class _Graph:
    """The consumers of every symbolic tensor, across nested functional models."""

    def __init__(self, model):
        self.consumers = collections.defaultdict(list)  # id(tensor) -> [(node, position)]
        self.exits = {}  # id(inner output tensor) -> [outer output tensor]
        self.entries = {}  # (id(model), position) -> inner input tensor
        self.kernel_nodes = []  # (layer, node)
        self.inner_inputs = {}  # id(nested model's input tensor) -> outer tensor
        self.unwalkable = []
        self._add(model)

    def _add(self, model):
        functional = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
        if functional is None or not hasattr(functional, "_nodes_by_depth"):
            self.unwalkable.append(model)
            return
        for depth in sorted(functional._nodes_by_depth, reverse=True):  # inputs first
            for node in functional._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                for position, tensor in enumerate(node.input_tensors):
                    self.consumers[id(tensor)].append((node, position))
                op = node.operation
                if isinstance(op, keras.Model):
                    self._add_nested(op, node)
                elif _kernel_spec(op) is not None:
                    self.kernel_nodes.append((op, node))

    def _add_nested(self, inner, node):
        self._add(inner)
        inner_fn = getattr(inner, "_functional", None) if isinstance(inner, keras.Sequential) else inner
        if inner_fn is None:
            return
        for position, tensor in enumerate(keras.tree.flatten(inner_fn.inputs)):
            self.entries[(id(inner), position)] = tensor
            if position < len(node.input_tensors):
                self.inner_inputs[id(tensor)] = node.input_tensors[position]
        for inner_out, outer_out in zip(keras.tree.flatten(inner_fn.outputs), node.output_tensors):
            self.exits.setdefault(id(inner_out), []).append(outer_out)

    def reads_model_input(self, tensor):
        """True if `tensor` is the model's input, up to value-preserving layers."""
        for _ in range(10_000):
            history = getattr(tensor, "_keras_history", None)
            op = None if history is None else history.operation
            if op is None or isinstance(op, keras.layers.InputLayer):
                outer = self.inner_inputs.get(id(tensor))
                if outer is None:
                    return True
                tensor = outer
            elif isinstance(op, PASS_THROUGH + INPUT_PREPROCESSING):
                tensor = op._inbound_nodes[history.node_index].input_tensors[0]
            else:
                return False
        return False

    def activations_after(self, tensor, seen=None):
        """The first activation reached from `tensor`, one per path."""
        seen = set() if seen is None else seen
        if id(tensor) in seen:
            return []
        seen.add(id(tensor))
        found = []
        for outer in self.exits.get(id(tensor), []):
            found += self.activations_after(outer, seen)
        for node, position in self.consumers.get(id(tensor), []):
            op = node.operation
            info = describe_activation(op) if isinstance(op, keras.layers.Layer) else None
            if info is not None:
                found.append(info)
            elif isinstance(op, keras.Model):
                inner = self.entries.get((id(op), position))
                if inner is not None:
                    found += self.activations_after(inner, seen)
            elif isinstance(op, PASS_THROUGH):
                found += self.activations_after(node.output_tensors[0], seen)
            else:
                found.append(describe_activation(None))  # mixed linearly: no activation
        return found


def _activation_for(layer, graph, tensor):
    own = describe_activation(getattr(layer, "activation", None))
    if own.name != "linear":
        return own, _label(own)
    found = graph.activations_after(tensor) or [own]
    names = sorted({_label(info) for info in found})
    if len(names) > 1:
        return None, "ambiguous: " + ", ".join(names)
    return found[0], names[0]


def _label(info):
    return info.name + (f"({info.negative_slope:g})" if info.negative_slope else "")


def match_initializers(
    model,
    only_defaults=True,
    distribution="truncated_normal",
    seed=None,
    calibration_data=None,
    tolerance=0.05,
):
    """Re-draw every kernel with the initializer matched to its activation.

    Args:
        model: A built Sequential or Functional model (nested models are
            walked). Subclassed models cannot be walked: their kernel layers
            are listed in one warning and left alone.
        only_defaults: If True (default), a kernel whose initializer the user
            set is left alone; Keras's default `glorot_uniform` without a seed
            counts as not set. If False, every kernel is re-drawn.
        distribution: Passed to `keras_actkit.initializers.for_activation`.
        seed: Optional seed for the new initializers.
        calibration_data: Optional batch of real inputs (what `model.predict`
            takes). After matching, each matched kernel of the top-level graph
            is rescaled in order, input side first, until its pre-activation
            has unit standard deviation on this batch (layer-sequential unit
            variance, Mishkin & Matas 2016). Needed for deep stacks of swish,
            GELU or hard-swish: for them the variance-preserving gain is a
            repelling fixed point, so a fixed gain drifts away with depth.
            The initializer's recorded scale is updated to match.
        tolerance: Calibration stops when `|std - 1| <= tolerance`, a float in
            (0, 1). Defaults to 0.05.

    Returns:
        A `MatchReport` whose `str` is a table: layer, activation found,
        old -> new initializer, action. Biases are never touched.

    Example:
    ```python
    report = keras_actkit.match_initializers(model)
    print(report)
    ```
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    if not model.built:
        raise ValueError("`model` must be built (give it an Input or call it once) before its kernels can be matched.")
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"`tolerance` must lie in (0, 1). Received: tolerance={tolerance!r}")
    graph = _Graph(model)
    report = MatchReport()
    for unwalkable in graph.unwalkable:
        names = [l.name for l in unwalkable._flatten_layers(include_self=False) if _kernel_spec(l)]
        report.skipped += names or [unwalkable.name]
    if report.skipped:
        warnings.warn(
            "match_initializers cannot walk subclassed models; these kernel layers were left as "
            f"they are: {', '.join(report.skipped)}. Set their initializers with "
            "keras_actkit.initializers.for_activation(...).",
            stacklevel=2,
        )
    done, matched = set(), []
    for layer, node in graph.kernel_nodes:
        if id(layer) in done:
            continue  # a shared layer is matched on its first call
        done.add(id(layer))
        kernel_attr, init_attr = _kernel_spec(layer)
        old_init = getattr(layer, init_attr)
        info, label = _activation_for(layer, graph, node.output_tensors[0])
        old = describe_initializer(old_init)
        if info is None:
            report.entries.append(MatchEntry(layer.name, label, old, old, "kept (ambiguous)"))
            continue
        if only_defaults and _is_user_set(old_init):
            report.entries.append(MatchEntry(layer.name, label, old, old, "kept (user-set)"))
            continue
        if info.name not in INPUT_LAYER_KEEPS and graph.reads_model_input(node.input_tensors[0]):
            # He et al. 2015: the first layer's input is the data, not an
            # activation's output, so its weights want n*Var[w] = 1. For ReLU
            # the gain there only rescales everything by sqrt(2); for
            # activations whose variance map is unstable (swish, GELU,
            # hard-swish) it starts the signal off its fixed point.
            new_init = keras.initializers.VarianceScaling(1.0, "fan_in", distribution, seed=seed)
            label += " (input layer: LeCun)"
        else:
            new_init = initializer_for_info(info, distribution, seed)
        kernel = getattr(layer, kernel_attr)
        kernel.assign(new_init(kernel.shape, dtype=kernel.dtype))
        setattr(layer, init_attr, new_init)
        report.entries.append(MatchEntry(layer.name, label, old, describe_initializer(new_init), "matched"))
        matched.append((layer, node, report.entries[-1]))
    if calibration_data is not None:
        _calibrate(model, matched, calibration_data, tolerance)
    return report


def _calibrate(model, matched, data, tolerance, max_iterations=10):
    """Rescale each kernel until its pre-activation has unit std on `data`."""
    for layer, node, entry in matched:
        try:
            probe = keras.Model(model.inputs, node.input_tensors[0])
        except ValueError:
            entry.action += " (not calibrated: inside a nested model)"
            continue
        layer_input = probe.predict(data, verbose=0)
        kernel_attr, init_attr = _kernel_spec(layer)
        kernel = getattr(layer, kernel_attr)
        fused = getattr(layer, "activation", None)
        factor = 1.0
        try:
            if fused is not None:
                layer.activation = keras.activations.linear  # read the pre-activation
            for _ in range(max_iterations):
                std = float(np.std(keras.ops.convert_to_numpy(layer(layer_input))))
                if not np.isfinite(std) or std == 0.0 or abs(std - 1.0) <= tolerance:
                    break
                kernel.assign(kernel * (1.0 / std))
                factor /= std
        finally:
            if fused is not None:
                layer.activation = fused
        init = getattr(layer, init_attr)
        setattr(layer, init_attr, keras.initializers.VarianceScaling(
            init.scale * factor**2, init.mode, init.distribution, seed=init.get_config()["seed"]))
        entry.new = describe_initializer(getattr(layer, init_attr))
        entry.calibration = factor

