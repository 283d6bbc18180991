"""Repairs: each prescription as a change to a fresh copy of the user's model.

A repair returns `(model, words, code)`: a new compiled model with the change
made (never the user's model), what was changed in words, and the code a user
would write. Repairs that change activations or initialisers start from fresh
weights (the old ones were drawn for the old activation); the others start
from the user's own weights.
"""

import keras

from keras_actkit.activation_info import describe_activation
from keras_actkit.diagnosis.linear_stack import KERNEL_LAYERS, activation_name
from keras_actkit.diagnosis.static import is_graph, loss_spec, output_layers
from keras_actkit.diagnosis.trial import copy_model, learning_rate

_SATURATING = ("sigmoid", "tanh", "hard_sigmoid", "hard_tanh", "softsign")
_RELU = ("relu", "relu6", "leaky_relu6")
CLIPNORM = 1.0
_LOSS_CLASSES = {
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
}


def _activation_of(layer):
    if hasattr(layer, "activation"):
        info = describe_activation(getattr(layer, "activation"))
        return None if info is None else info.name
    return None


def _compiled(model, source, optimizer_edit=None, loss=None):
    config = source.get_compile_config()
    if optimizer_edit is not None:
        config = dict(config)
        config["optimizer"] = optimizer_edit(config["optimizer"])
    if loss is not None:
        config = dict(config, loss=loss)
    model.compile_from_config(config)
    return model


def _with_activations(model, names, activation, initializer, keep_weights=False):
    """A copy whose layers `names` get `activation` (and `initializer` for their kernels)."""

    def clone(layer):
        config = layer.get_config()
        if layer.name in names:
            config["activation"] = activation
            if initializer and "kernel_initializer" in config:
                config["kernel_initializer"] = initializer
                if "bias_initializer" in config:
                    config["bias_initializer"] = "zeros"  # a re-initialised layer starts from zero biases too
        return layer.__class__.from_config(config)

    new = keras.models.clone_model(model, clone_function=clone)
    if keep_weights:
        new.set_weights(model.get_weights())
    return new


def _hidden(model, wanted):
    out = {layer.name for layer in output_layers(model)}
    return [layer.name for layer in model.layers if layer.name not in out and _activation_of(layer) in wanted]


def _span(names):
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


def swap_activation(wanted, activation, initializer, label, culprits_of=None):
    """A repair giving the hidden layers with an activation in `wanted` another one (with its initialiser);
    with `culprits_of`, only the layers the problem of that kind names."""
    def repair(model, context):
        names = _hidden(model, wanted)
        if culprits_of is not None:
            named = set(context.get("culprits", {}).get(culprits_of, ()))
            names = [name for name in names if name in named]
        if not names:
            return None
        new = _compiled(_with_activations(model, names, activation, initializer), model)
        words = (f"replaced the {'/'.join(sorted({_activation_of(model.get_layer(n)) for n in names}))} "
                 f"activations of {_span(names)} with {label}")
        code = (f"# for {', '.join(names)}:\nkeras.layers.Dense(units, activation={activation!r}, "
                f"kernel_initializer={initializer!r}, bias_initializer='zeros')")
        return new, words, code
    return repair


def _optimizer_change(model, key, value, words, code):
    new = _compiled(copy_model(model), model, lambda c: dict(c, config=dict(c["config"], **{key: value})))
    return new, words, code


def lower_lr(model, context):
    lr = learning_rate(model)
    if lr is None:
        return None
    target = context.get("lr_suggestion")
    target = target if target and target < lr else lr / 10
    return _optimizer_change(model, "learning_rate", target, f"lowered the learning rate from {lr:.3g} to {target:.3g}",
                             f"model.optimizer.learning_rate = {target:.3g}")


def raise_lr(model, context):
    lr = learning_rate(model)
    if lr is None:
        return None
    target = context.get("lr_suggestion")
    target = target if target and target > lr else lr * 10
    return _optimizer_change(model, "learning_rate", target, f"raised the learning rate from {lr:.3g} to {target:.3g}",
                             f"model.optimizer.learning_rate = {target:.3g}")


def clipnorm(model, context):
    return _optimizer_change(model, "clipnorm", CLIPNORM, f"clipped each gradient's norm at {CLIPNORM:g}",
                             f"optimizer = keras.optimizers.{model.optimizer.__class__.__name__}(..., "
                             f"clipnorm={CLIPNORM:g})")


def adam(model, context):
    new = copy_model(model)
    config = model.get_compile_config()
    config = dict(config, optimizer=keras.optimizers.serialize(keras.optimizers.Adam(1e-3)))
    new.compile_from_config(config)
    return new, "switched the optimizer to Adam(learning_rate=1e-3)", \
        "model.compile(keras.optimizers.Adam(1e-3), loss=..., metrics=...)"


def fix_output(model, context):
    """Make the output layer and the loss agree (the static check says how they disagree)."""
    (layer,) = output_layers(model)
    activation = _activation_of(layer)
    loss, logits = loss_spec(model)
    units = model.outputs[0].shape[-1]
    if activation == "softmax" and units == 1 or (activation == "relu" and units == 1):
        new = _with_activations(model, [layer.name], "sigmoid", None, keep_weights=True)
        new_loss = "binary_crossentropy" if (loss or "").startswith(("sparse", "categorical")) else None
        new = _compiled(new, model, loss=new_loss)
        return new, f"gave {layer.name} a sigmoid instead of {activation}" + (
            " and the loss binary_crossentropy" if new_loss else ""), \
            f"keras.layers.Dense(1, activation='sigmoid', name={layer.name!r})"
    if logits and activation in ("softmax", "sigmoid"):
        new = _compiled(_with_activations(model, [layer.name], "linear", None, keep_weights=True), model)
        return new, f"removed the {activation} of {layer.name} (the loss takes logits)", \
            f"keras.layers.Dense(units, name={layer.name!r})  # logits"
    if activation in ("relu", "sigmoid") and units > 1:
        new = _compiled(_with_activations(model, [layer.name], "softmax", None, keep_weights=True), model)
        return new, f"gave {layer.name} a softmax instead of {activation}", \
            f"keras.layers.Dense(units, activation='softmax', name={layer.name!r})"
    if activation == "linear" and loss in _LOSS_CLASSES and not logits:
        cls = _LOSS_CLASSES[loss]
        new = _compiled(copy_model(model), model, loss=keras.losses.serialize(cls(from_logits=True)))
        return new, f"compiled with {cls.__name__}(from_logits=True): {layer.name} outputs logits", \
            f"loss=keras.losses.{cls.__name__}(from_logits=True)"
    return None


def normalize_input(model, context):
    x = context.get("x")
    if x is None or not hasattr(x, "shape"):
        return None
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(x)
    inner = copy_model(model)
    new = keras.Sequential([keras.Input(x.shape[1:]), norm, inner])
    _compiled(new, model)
    return new, "standardised the inputs with a keras.layers.Normalization adapted on x, in front of the model", \
        "norm = keras.layers.Normalization(); norm.adapt(x)\nmodel = keras.Sequential([keras.Input(x.shape[1:]), norm, model])"


def match_init(model, context):
    from keras_actkit.initializers import for_activation

    def clone(layer):
        config = layer.get_config()
        if "kernel_initializer" in config and hasattr(layer, "activation"):
            config["kernel_initializer"] = keras.initializers.serialize(for_activation(layer.activation))
            if "bias_initializer" in config:
                config["bias_initializer"] = "zeros"
        return layer.__class__.from_config(config)

    new = _compiled(keras.models.clone_model(model, clone_function=clone), model)
    return new, "re-initialised every kernel with the initialiser matched to its activation (He/Glorot/LeCun)", \
        "keras_actkit.match_initializers(model)"


def _with_batchnorm(layer):
    """`layer` (a kernel layer with an activation) as kernel, BatchNormalization, activation, under its name."""
    config = layer.get_config()
    activation = config["activation"]
    config.update(activation="linear", name=f"{layer.name}_kernel")
    parts = [layer.__class__.from_config(config), keras.layers.BatchNormalization(name=f"{layer.name}_bn"),
             keras.layers.Activation(activation, name=f"{layer.name}_activation")]
    return keras.Sequential(parts, name=layer.name)


def add_batchnorm(model, context):
    """BatchNormalization between the kernel and the activation of every hidden kernel layer (fresh weights).

    The graph is rebuilt by `clone_model` (Sequential and Functional models):
    each such layer becomes a small Sequential of the same name. It keeps the
    pre-activations of every layer at unit scale, so a deep sigmoid or tanh
    stack neither saturates nor shrinks its gradients layer after layer
    (Ioffe & Szegedy 2015; AUTOTRAINER's `BN` repair, tried after the
    activation changes).
    """
    if not is_graph(model):
        return None
    out = {layer.name for layer in output_layers(model)}
    names = [layer.name for layer in model.layers if isinstance(layer, KERNEL_LAYERS) and layer.name not in out
             and activation_name(layer) not in ("linear", None)]
    if not names:
        return None

    def clone(layer):
        return _with_batchnorm(layer) if layer.name in names else layer.__class__.from_config(layer.get_config())

    new = _compiled(keras.models.clone_model(model, clone_function=clone), model)
    activation = activation_name(model.get_layer(names[0]))
    return new, f"added BatchNormalization between the kernel and the activation of {_span(names)}", \
        (f"# for {', '.join(names)}:\nkeras.layers.Dense(units), keras.layers.BatchNormalization(), "
         f"keras.layers.Activation({activation!r})")


def then(first, second):
    """Two repairs in turn: `second` applied to `first`'s (untrained) model."""
    def repair(model, context):
        built = REPAIRS[first](model, context)
        if built is None:
            return None
        more = REPAIRS[second](built[0], context)
        if more is None:
            return None
        return more[0], f"{built[1]}, and {more[1]}", f"{built[2]}\n{more[2]}"
    return repair


REPAIRS = {
    "relu_he": swap_activation(_SATURATING, "relu", "he_normal", "ReLU and He-normal initialisation"),
    "selu_lecun": swap_activation(_SATURATING, "selu", "lecun_normal", "SELU and LeCun-normal initialisation"),
    "leaky_relu_he": swap_activation(_RELU, "leaky_relu", "he_normal", "leaky ReLU and He-normal initialisation"),
    "hidden_relu": swap_activation(("softmax",), "relu", "he_normal", "ReLU and He-normal initialisation"),
    # Only the layers found feeding another kernel: a linear layer elsewhere (a residual branch's end, a
    # projection before an activation layer) is linear by design.
    "add_relu": swap_activation(("linear",), "relu", "he_normal", "ReLU and He-normal initialisation",
                                culprits_of="missing_nonlinearity"),
    "lower_lr": lower_lr, "raise_lr": raise_lr, "clipnorm": clipnorm, "adam": adam,
    "fix_output": fix_output, "normalize_input": normalize_input, "match_init": match_init,
    "batchnorm": add_batchnorm,
}
# A deep net the activation fix has revived may still be too slow for the budget at the old LR.
REPAIRS["selu_lecun+raise_lr"] = then("selu_lecun", "raise_lr")

# Per kind, the fixes to try, cheapest and most likely first (AUTOTRAINER's
# repair.py order for the gradient problems: SELU+LeCun, then ReLU+He, structural
# BatchNormalization last; narrow deep ReLU stacks die where SELU keeps its units alive).
PLAN = {
    "output_loss_mismatch": ("fix_output",),
    "unscaled_input": ("normalize_input",),
    "hidden_softmax": ("hidden_relu",),
    "missing_nonlinearity": ("add_relu",),
    "bad_initialization": ("match_init",),
    "non_finite": ("lower_lr", "clipnorm"),
    "exploding_gradient": ("clipnorm", "lower_lr"),
    "vanishing_gradient": ("selu_lecun", "relu_he", "selu_lecun+raise_lr", "batchnorm"),
    "saturated_activation": ("selu_lecun", "relu_he", "selu_lecun+raise_lr", "batchnorm"),
    "dead_relu": ("leaky_relu_he", "lower_lr"),
    "lr_too_high": ("lower_lr", "clipnorm"),
    "oscillating_loss": ("lower_lr", "clipnorm"),
    "lr_too_low": ("raise_lr", "adam"),
    "not_learning": ("raise_lr", "adam"),
}


def plan(problems, limit):
    """The fixes to try for `problems` (root causes first), without repeats, at most `limit` (None: all)."""
    names = []
    for problem in problems:
        for name in PLAN.get(problem.kind, ()):
            if name not in names:
                names.append(name)
    return names[:limit]
