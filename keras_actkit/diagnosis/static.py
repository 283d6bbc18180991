"""Static checks: what is wrong with a model before it trains (`check_model`), and with its inputs."""

import re

import keras
import numpy as np

from keras_actkit import _validation
from keras_actkit.activation_info import describe_activation
from keras_actkit.diagnosis.linear_stack import KERNEL_LAYERS, activation_name, linear_feeds
from keras_actkit.diagnosis.problems import Diagnosis, Problem

_CROSSENTROPY = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
                 "categorical_focal_crossentropy", "binary_focal_crossentropy")
# He initialisation keeps fan_in * Var(w) = 2; ten times that grows the signal ~3x per layer.
INIT_TOO_LARGE = 20.0
# Inputs: Glorot/He assume unit-scale inputs; a feature of RMS > 20 drives the
# first layer's pre-activations 20x past that scale.
INPUT_RMS = 20.0
_NORMALIZING = (keras.layers.Normalization, keras.layers.Rescaling, keras.layers.BatchNormalization,
                keras.layers.LayerNormalization, keras.layers.Embedding)


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def loss_spec(model):
    """(loss name, from_logits) of a single-loss compiled model, from its public compile config."""
    try:
        loss = model.get_compile_config().get("loss")
    except Exception:  # not compiled, or a loss that does not serialise
        return None, False
    if isinstance(loss, str):
        return loss, False
    if isinstance(loss, dict):
        config = loss.get("config")
        if isinstance(config, str):  # a plain function
            return config, False
        if isinstance(config, dict):
            name = config.get("name") or _snake(loss.get("class_name", ""))
            return name, bool(config.get("from_logits", False))
    return None, False


def is_graph(model):
    """True for Sequential and Functional models: their layers and outputs can be read without running them."""
    return isinstance(model, keras.Sequential) or bool(getattr(model, "outputs", None))


def chance_loss(model):
    """The loss of guessing for a single-output cross-entropy: log(classes) (binary: log 2 per unit), else None."""
    loss, _ = loss_spec(model)
    if loss is None or not is_graph(model) or len(model.outputs) != 1:
        return None
    units = model.outputs[0].shape[-1]
    if loss.startswith("binary"):
        return float(np.log(2.0))
    if loss.startswith(("sparse_categorical", "categorical")) and units and units > 1:
        return float(np.log(units))
    return None


def output_layers(model):
    """The layers producing the model's outputs (none known for a subclassed model)."""
    if not is_graph(model):
        return []
    names = getattr(model, "output_names", None)
    if isinstance(model, keras.Sequential) or not names:
        return [model.layers[-1]] if model.layers else []
    return [model.get_layer(name) for name in names]


def _output_problem(model):
    if not is_graph(model):
        return None
    outputs = output_layers(model)
    if len(outputs) != 1 or len(model.outputs) != 1:
        return None
    layer, units = outputs[0], model.outputs[0].shape[-1]
    while isinstance(layer, keras.Model) and is_graph(layer) and len(output_layers(layer)) == 1:
        layer = output_layers(layer)[0]  # a nested model: its own output layer
    activation = activation_name(layer)
    loss, logits = loss_spec(model)
    name = layer.name
    if activation == "softmax" and units == 1:
        return Problem("output_loss_mismatch", [name],
                       "softmax over a single unit always outputs 1: the loss and its gradients are constant",
                       f"use Dense(1, activation='sigmoid') with binary_crossentropy for {name}, or one unit "
                       "per class with softmax")
    if loss not in _CROSSENTROPY:
        return None
    if logits and activation in ("softmax", "sigmoid"):
        return Problem("output_loss_mismatch", [name],
                       f"{name} outputs probabilities ({activation}) into a loss with from_logits=True",
                       f"drop the {activation} of {name} (logits) or use from_logits=False")
    if activation == "relu":
        return Problem("output_loss_mismatch", [name], f"{name} has a ReLU output for {loss}",
                       "use softmax (one unit per class) or sigmoid (binary) on the output layer")
    if not logits and activation in ("linear", None):
        return Problem("output_loss_mismatch", [name],
                       f"{name} outputs unbounded values (no activation) into {loss} with from_logits=False",
                       f"compile with {loss}(from_logits=True), or add the "
                       f"{'sigmoid' if loss.startswith('binary') else 'softmax'} activation to {name}")
    if loss.startswith(("sparse_categorical", "categorical")) and activation == "sigmoid" and units > 1:
        return Problem("output_loss_mismatch", [name], f"sigmoid outputs into {loss} (classes do not sum to 1)",
                       f"use softmax on {name}")
    if loss.startswith("sparse_categorical") and units == 1:
        return Problem("output_loss_mismatch", [name], f"{loss} needs one output unit per class; {name} has 1",
                       "one unit per class with softmax, or sigmoid with binary_crossentropy for two classes")
    return None


def _hidden_softmax(model):
    if not is_graph(model):
        return None  # which layer is the output is not known
    out = {layer.name for layer in output_layers(model)}
    hidden = [layer.name for layer in model.layers if layer.name not in out and activation_name(layer) == "softmax"]
    if not hidden:
        return None
    return Problem("hidden_softmax", hidden, f"softmax on hidden layer(s) {', '.join(hidden)}: their units compete "
                   "for a total of 1 and their gradients shrink with the layer's width",
                   f"use ReLU (with He initialisation) on {', '.join(hidden)}")


def _missing_nonlinearity(model):
    """A kernel layer without activation feeding another through linear layers only (Sequential, Functional)."""
    pairs = linear_feeds(model)
    if not pairs:
        return None
    return Problem("missing_nonlinearity", pairs,
                   f"{', '.join(pairs)} have no activation and feed another kernel layer directly: "
                   "stacked linear maps collapse into one",
                   f"add activation='relu' (with He initialisation) to {', '.join(pairs)}")


def _bad_initialization(model):
    if not is_graph(model):
        return None
    out = {layer.name for layer in output_layers(model)}
    symmetric, large = [], []
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if not isinstance(layer, KERNEL_LAYERS) or kernel is None:
            continue
        w = keras.ops.convert_to_numpy(kernel).astype("float64")
        fan_in = int(np.prod(w.shape[:-1]))
        if layer.name not in out and w.shape[-1] > 1 and np.ptp(w) == 0:
            symmetric.append(layer.name)
        elif fan_in * w.var() > INIT_TOO_LARGE:
            large.append(f"{layer.name} ({fan_in * w.var():.3g})")
    if not symmetric and not large:
        return None
    parts = []
    if symmetric:
        parts.append(f"every weight of {', '.join(symmetric)} is equal: its units stay identical")
    if large:
        parts.append(f"fan_in x Var(w) = {', '.join(large)}, above {INIT_TOO_LARGE:g} (He keeps 2)")
    layers = symmetric + [item.split(" ")[0] for item in large]
    return Problem("bad_initialization", layers, "; ".join(parts),
                   "re-initialise with the initialiser matched to each activation: "
                   "keras_actkit.match_initializers(model) (He for ReLU, Glorot for sigmoid/tanh)")


def static_problems(model):
    """The problems `check_model` finds, root causes first."""
    checks = (_output_problem, _hidden_softmax, _missing_nonlinearity, _bad_initialization)
    return [p for p in (check(model) for check in checks) if p is not None]


def check_model(model):
    """Check a model without training it: the problems its structure shows.

    Looks for an output layer that does not fit the loss (a single-unit
    softmax, probabilities into `from_logits=True`, a ReLU or unbounded output
    for a cross-entropy), softmax on hidden layers, stacked layers without a
    non-linearity between them, and initial weights that
    are all equal or far too large.

    Args:
        model: A built Keras model (compiled, for the output/loss checks).

    Returns:
        A `Diagnosis` whose `problems` are the `Problem`s found.

    Example:
    ```python
    report = keras_actkit.check_model(model)
    print(report)
    ```
    """
    _validation.model("model", model)
    if not model.built:
        raise ValueError("`model` must be built: give it an Input (or call it once) before check_model.")
    return Diagnosis(static_problems(model), static_notes(model))


def static_notes(model):
    """What the static checks could not look at."""
    if is_graph(model):
        return []
    return [f"{type(model).__name__} is a subclassed model: the output/loss, hidden softmax, linear stack and "
            "initialisation checks need a Functional or Sequential model and were skipped"]


def input_problems(model, x):
    """`non_finite` when `x` holds NaN/inf; `unscaled_input` when a float feature of `x` has an RMS above
    `INPUT_RMS` and nothing normalises it."""
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating) or x.ndim < 2:
        return []
    first = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)][:1]
    if first and isinstance(first[0], _NORMALIZING):
        return []
    sample = x[: 4096].reshape(min(len(x), 4096), -1).astype("float64")
    bad = int(np.size(sample) - np.count_nonzero(np.isfinite(sample)))
    if bad:
        return [Problem("non_finite", [], f"x holds {bad} non-finite value(s) in its first {len(sample)} samples",
                        "remove or impute them (np.nan_to_num, or drop the rows) before training")]
    rms = np.sqrt(np.mean(np.square(sample), axis=0))
    worst = int(np.argmax(rms))
    if not rms[worst] > INPUT_RMS:
        return []
    count = int(np.sum(rms > INPUT_RMS))
    return [Problem("unscaled_input", [first[0].name] if first else [],
                    f"{count} input feature(s) have an RMS above {INPUT_RMS:g} (largest {rms[worst]:.3g}, feature "
                    f"{worst})",
                    "standardise the inputs: put keras.layers.Normalization() adapted on x "
                    "(norm.adapt(x)) in front of the model, or x = (x - mean) / std")]
