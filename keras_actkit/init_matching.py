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

import dataclasses
import warnings

import keras
import numpy as np

from keras_actkit import _validation
from keras_actkit._graph import Graph as _Graph  # noqa: N814
from keras_actkit._graph import has_kernel
from keras_actkit._graph import kernel_spec as _kernel_spec
from keras_actkit.activation_info import describe_activation
from keras_actkit.initializers import DISTRIBUTIONS, draw
from keras_actkit.initializers import initializer_for_info

# Activations whose rule already ignores what feeds the kernel (Glorot, LeCun).
INPUT_LAYER_KEEPS = frozenset({"tanh", "sigmoid", "softmax", "log_softmax", "linear", "selu", "elu"})
# What Keras gives when the user says nothing.
_DEFAULT_INITIALIZER = keras.initializers.GlorotUniform
# Why the kernels of layers without a rule are left as Keras draws them.
_RECURRENT = "recurrent: the gates' sigmoid/tanh suit Keras's glorot/orthogonal defaults"
_NOT_MATCHED = (
    (keras.layers.Bidirectional, _RECURRENT),
    (keras.layers.RNN, _RECURRENT),
    (keras.layers.MultiHeadAttention, "attention: the projections feed a softmax of scores"),
    (keras.layers.Embedding, "embedding: a lookup table, no activation acts on it"),
)


@dataclasses.dataclass
class MatchEntry:
    """One kernel: what acts on it, and what `match_initializers` did."""

    layer: str
    activation: str
    old: str
    new: str
    action: str  # "matched" | "kept (user-set)" | "kept (ambiguous)" | "kept (no rule: <reason>)"
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


def _is_user_set(init):
    # Keras resolves a missing seed to a random one; the config keeps the None.
    return not (type(init) is _DEFAULT_INITIALIZER and init.get_config().get("seed") is None)


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
    only_defaults, distribution, seed, calibration_data, tolerance = _check_arguments(
        model, only_defaults, distribution, seed, calibration_data, tolerance)
    graph = _Graph(model)
    report = MatchReport(skipped=_unwalkable_kernel_layers(graph))
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
        if _kernel_spec(layer) is None:
            report.entries.append(_not_matched(layer))
            continue
        entry = _match(layer, node, graph, only_defaults, distribution, seed)
        report.entries.append(entry)
        if entry.action == "matched":
            matched.append((layer, node, entry))
    if calibration_data is not None:
        _calibrate(model, matched, calibration_data, tolerance)
    return report


def _check_arguments(model, only_defaults, distribution, seed, calibration_data, tolerance):
    _validation.model("model", model)
    if not model.built:
        raise ValueError("`model` must be built (give it an Input or call it once) before its kernels can be matched.")
    tolerance = _validation.number("tolerance", tolerance)
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"`tolerance` must be a finite number in (0, 1); received tolerance={tolerance!r}.")
    return (
        _validation.boolean("only_defaults", only_defaults),
        _validation.one_of("distribution", distribution, DISTRIBUTIONS),
        _validation.seed("seed", seed),
        _validation.finite_array("calibration_data", calibration_data, allow_none=True),
        tolerance,
    )


def _unwalkable_kernel_layers(graph):
    """Names of the kernel layers inside models that cannot be walked (subclassed)."""
    names = []
    for unwalkable in graph.unwalkable:
        found = [layer.name for layer in _own_layers(unwalkable) if has_kernel(layer)]
        names += found or [unwalkable.name]
    return names


def _own_layers(model):
    """The layers a model tracks, nested models opened, other layers' own sublayers not."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _own_layers(layer)
        else:
            yield layer


def _not_matched(layer):
    reason = next((why for cls, why in _NOT_MATCHED if isinstance(layer, cls)),
                  f"no initializer rule for {type(layer).__name__} layers")
    init = getattr(layer, "kernel_initializer", getattr(layer, "embeddings_initializer", None))
    old = "-" if init is None else describe_initializer(init)
    return MatchEntry(layer.name, "-", old, old, f"kept (no rule: {reason})")


def _match(layer, node, graph, only_defaults, distribution, seed):
    """Re-draw one kernel for its activation; its report row."""
    kernel_attr, init_attr = _kernel_spec(layer)
    old_init = getattr(layer, init_attr)
    info, label = _activation_for(layer, graph, node.output_tensors[0])
    old = describe_initializer(old_init)
    if info is None:
        return MatchEntry(layer.name, label, old, old, "kept (ambiguous)")
    if only_defaults and _is_user_set(old_init):
        return MatchEntry(layer.name, label, old, old, "kept (user-set)")
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
    kernel.assign(draw(new_init, kernel.shape, kernel.dtype))
    setattr(layer, init_attr, new_init)
    return MatchEntry(layer.name, label, old, describe_initializer(new_init), "matched")


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

