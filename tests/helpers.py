"""Shared test helpers: data, tiny models, a quiet fit, state snapshots, "no trace left".

Gradient references (each backend's own autodiff) are in `autodiff.py`.

Data comes from scikit-learn's digits (shipped with the package, nothing is
downloaded). Every model is tiny so a fit costs a trace and a few steps.
"""

import functools
import warnings

import keras
import numpy as np

from keras_actkit import layers as ak_layers

# ---------------------------------------------------------------- data


@functools.lru_cache(maxsize=None)
def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data.astype("float32"), digits.target.astype("int32")


def digits(n=48, classes=10):
    """`n` digits (64 pixels scaled to [0, 1]) whose label is below `classes`, as `(x, y)`."""
    x, y = _digits()
    keep = np.flatnonzero(y < classes)[:n]
    return x[keep] / 16.0, y[keep]


def digit_tokens(n=48):
    """The digits' pixel intensities 0..16 as token ids (0 = blank = padding), shape (n, 64)."""
    x, y = _digits()
    return x[:n].astype("int32"), y[:n]


def digit_images(n=48):
    """Digits as 8x8x1 images in [0, 1]."""
    x, y = digits(n)
    return x.reshape(-1, 8, 8, 1), y


def digit_sequences(n=48):
    """Digits as sequences of 8 rows of 8 pixels."""
    x, y = digits(n)
    return x.reshape(-1, 8, 8), y


def random_classification(n=32, d=6, classes=3, seed=0):
    """`n` standard-normal rows of `d` features with uniformly drawn labels below `classes` (int32)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, rng.integers(0, classes, size=n).astype("int32")


def random_regression(n=64, d=4, noise=0.0, seed=0):
    """`n` standard-normal rows of `d` features and a linear target (plus `noise` times normal noise), float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = x @ rng.normal(size=(d, 1))
    if noise:
        y = y + noise * rng.normal(size=(n, 1))
    return x, y.astype("float32")


def separable(n=128, direction=(1.0, 0.5), seed=0, d=6):
    """`n` standard-normal rows of `d` features, labelled 1 where `x[:, :k] @ direction > 0` (k = len(direction))."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    score = sum(np.float32(w) * x[:, i] for i, w in enumerate(direction) if w)
    return x, (score > 0).astype("int32")


# ---------------------------------------------------------------- fitting and state


def quiet_fit(model, *args, **kwargs):
    """`model.fit` without progress bars and (unless asked) without shuffling."""
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("shuffle", False)
    return model.fit(*args, **kwargs)


def fit_and_warnings(model, *args, said_by="", **kwargs):
    """`quiet_fit`, recording every warning: `(history, messages)`, the messages that contain `said_by`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = quiet_fit(model, *args, **kwargs)
    return history, messages(caught, said_by)


def messages(caught, containing=""):
    """The text of recorded warnings that contain `containing`."""
    return [str(w.message) for w in caught if containing in str(w.message)]


def value(variable):
    """A copy of a variable's (or tensor's) value, as a numpy array."""
    return np.array(keras.ops.convert_to_numpy(getattr(variable, "value", variable)))


def all_finite(model):
    """Whether every weight of the model is finite."""
    return all(np.all(np.isfinite(v)) for v in values(model.weights))


def values(variables):
    """Copies of the variables' values, as numpy arrays."""
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


def state(model):
    """Every model and optimizer variable's value (the optimizer is built first if needed)."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return {"model": values(model.variables), "optimizer": values(optimizer.variables)}


def set_state(model, snapshot):
    for variable, value in zip(model.variables, snapshot["model"]):
        variable.assign(value)
    for variable, value in zip(model.optimizer.variables, snapshot["optimizer"]):
        variable.assign(value)


def assert_same_values(actual, expected, what="values"):
    """Bit-for-bit equality of two lists of arrays (NaN equal to NaN)."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} arrays, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, f"{what}[{i}]: shape {a.shape}, expected {e.shape}"
        np.testing.assert_array_equal(a, e, err_msg=f"{what}[{i}] differs")


def footprint(model):
    """What a callback could leave behind: variable paths, and instance attributes that shadow methods."""
    optimizer = getattr(model, "optimizer", None)
    objects = {"model": model, "optimizer": optimizer}
    inner = optimizer
    while getattr(inner, "inner_optimizer", None) is not None:
        inner = inner.inner_optimizer
        objects["inner_optimizer"] = inner
    tracker = getattr(model, "_loss_tracker", None)
    if tracker is not None:
        objects["loss_tracker"] = tracker

    def patched(obj):
        own = getattr(obj, "__dict__", {})
        return sorted(k for k in own if "actkit" in k or callable(getattr(type(obj), k, None)) and callable(own[k]))

    return {
        "model_variables": [v.path for v in model.variables],
        "optimizer_variables": [] if optimizer is None else [v.path for v in optimizer.variables],
        "optimizer_variable_ids": [] if optimizer is None else [id(v) for v in optimizer.variables],
        "patched": {name: patched(obj) for name, obj in objects.items() if obj is not None},
    }


def assert_no_trace(model, before):
    """Nothing of a callback is left in `model` compared with `footprint(model)` taken before it ran."""
    after = footprint(model)
    assert after["model_variables"] == before["model_variables"], "model variables changed"
    assert after["optimizer_variables"] == before["optimizer_variables"], "optimizer variables changed"
    assert after["optimizer_variable_ids"] == before["optimizer_variable_ids"], "optimizer variables replaced"
    assert after["patched"] == before["patched"], "methods left patched on the model or optimizer"


# ---------------------------------------------------------------- tiny models


def resnet_block(classes=10):
    """Conv-BN-ReLU, Conv-BN + a 1x1 shortcut, Add, ReLU, PReLU(shared_axes=[1, 2]), GlobalAveragePooling2D."""
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    h = keras.layers.ReLU(name="stem_relu")(keras.layers.BatchNormalization(name="stem_bn")(h))
    r = keras.layers.Conv2D(4, 3, padding="same", name="res_conv1")(h)
    r = keras.layers.ReLU(name="res_relu1")(keras.layers.BatchNormalization(name="res_bn1")(r))
    r = keras.layers.Conv2D(4, 3, padding="same", name="res_conv2")(r)
    r = keras.layers.BatchNormalization(name="res_bn2")(r)
    s = keras.layers.BatchNormalization(name="short_bn")(keras.layers.Conv2D(4, 1, name="shortcut")(h))
    h = keras.layers.ReLU(name="res_relu2")(keras.layers.Add(name="add")([r, s]))
    h = keras.layers.Conv2D(4, 3, padding="same", name="head_conv")(h)
    h = ak_layers.PReLU(shared_axes=[1, 2], name="head_prelu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="out")(h), name="resnet")


def recurrent(classes=10):
    """An LSTM and a Bidirectional GRU over 8 rows of 8 pixels."""
    inputs = keras.Input((8, 8))
    h = keras.layers.LSTM(4, return_sequences=True, name="lstm_a")(inputs)
    h = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True), name="bigru")(h)
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="out")(h), name="recurrent")


def _encoder_block(h, name, width=8):
    # Seeded dropout draws its masks from a seed generator whose state the tests restore;
    # unseeded, torch draws from its global generator, and two fits from one state differ.
    attended = keras.layers.MultiHeadAttention(2, 4, name=f"{name}_mha")(h, h)
    attended = keras.layers.Dropout(0.1, seed=1, name=f"{name}_drop1")(attended)
    h = keras.layers.LayerNormalization(name=f"{name}_ln1")(keras.layers.Add(name=f"{name}_add1")([h, attended]))
    f = keras.layers.Dense(16, activation="gelu", name=f"{name}_ff1")(h)
    f = keras.layers.Dropout(0.1, seed=2, name=f"{name}_drop2")(keras.layers.Dense(width, name=f"{name}_ff2")(f))
    return keras.layers.LayerNormalization(name=f"{name}_ln2")(keras.layers.Add(name=f"{name}_add2")([h, f]))


def transformer(classes=10):
    """An encoder block (MultiHeadAttention, LayerNormalization, GELU, Dropout) over 8 rows of 8 pixels."""
    inputs = keras.Input((8, 8))
    h = _encoder_block(inputs, "enc1")
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="out")(h), name="transformer")


@keras.saving.register_keras_serializable(package="keras_actkit_tests")
class Subclassed(keras.Model):
    """A subclassed model: Dense-ReLU, Dense-LeakyReLU6, softmax."""

    def __init__(self, classes=10, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")
        self.second = keras.layers.Dense(16, name="second")
        self.leaky = ak_layers.LeakyReLU6(name="leaky")
        self.out = keras.layers.Dense(classes, activation="softmax", name="out")

    def call(self, x, training=None):
        return self.out(self.leaky(self.second(self.hidden(x))))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def subclassed(classes=10):
    model = Subclassed(classes, name="subclassed")
    model(np.zeros((1, 64), "float32"))
    return model


def multi_io(classes=10):
    """Two inputs through one shared Dense, two softmax outputs `a` and `b`."""
    left, right = keras.Input((32,), name="left"), keras.Input((32,), name="right")
    shared = keras.layers.Dense(8, activation="relu", name="shared")
    joined = keras.layers.Concatenate(name="join")([shared(left), shared(right)])
    a = keras.layers.Dense(classes, activation="softmax", name="a")(joined)
    b = keras.layers.Dense(classes, activation="softmax", name="b")(keras.layers.Dense(8, name="b_hidden")(joined))
    return keras.Model([left, right], {"a": a, "b": b}, name="multi_io")


def embedding(classes=10, vocabulary=17):
    """Embedding(mask_zero=True) of the pixel intensities, masked average, Dense-ReLU."""
    inputs = keras.Input((64,), dtype="int32")
    h = keras.layers.Embedding(vocabulary, 4, mask_zero=True, name="embed")(inputs)
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    h = keras.layers.Dense(8, activation="relu", name="hidden")(h)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="out")(h), name="embedding")


def batchnorm_classifier(units, activation, optimizer, features=6):
    """Dense-BatchNorm-`activation`-Dense(2) on `features` inputs, compiled with logits crossentropy:
    trainable, non-trainable and optimizer state, all in four layers."""
    model = keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(units),
        keras.layers.BatchNormalization(),
        activation,
        keras.layers.Dense(2),
    ])
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def mlp(classes=10, name="mlp"):
    """Dense-ReLU, Dense-HardSwish, softmax on 64 pixels."""
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(16, name="second"),
        ak_layers.HardSwish(name="hswish"),
        keras.layers.Dense(classes, activation="softmax", name="out"),
    ], name=name)


def kernel_layers(model):
    """Every layer of the model's graph (nested models walked) owning a kernel, recurrent kernel or embedding."""
    names = ("kernel", "recurrent_kernel", "embeddings", "pointwise_kernel", "depthwise_kernel")
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += kernel_layers(layer)
        elif any(w.path.split("/")[-1] in names for w in layer.weights):
            found.append(layer.name)
    return found
