"""Finding the watched activations (keras_actkit/callbacks/_dead_units/sites.py), without a fit.

`watched_sites(model)` on hand-built functional models: which layers are sites,
fused or standalone, dead or saturated, revivable or why not, and their
per-unit margins, checked against a numpy forward pass (or a plain Keras
sub-model for convolutions). DeadNeuronMonitor's counts on top of these are in
test_dead_neurons.py.
"""

import keras
import numpy as np
import pytest

import keras_actkit as ak
from keras_actkit.callbacks._dead_units.sites import watched_sites

import helpers

relu = lambda h: np.maximum(h, 0.0)  # noqa: E731
sigmoid = lambda h: 1.0 / (1.0 + np.exp(-h))  # noqa: E731


def dense(model, name, h):
    layer = model.get_layer(name)
    return h @ helpers.value(layer.kernel) + helpers.value(layer.bias)


def margins_of(model, x):
    root, sites, _ = watched_sites(model)
    out = []
    root.margins(keras.ops.convert_to_tensor(x), out)
    assert len(out) == len(sites)
    return {site.name: np.asarray(keras.ops.convert_to_numpy(m)) for site, m in zip(sites, out)}


def describe(sites):
    return {s.name: (s.kind, s.fused, s.kernel_layer and s.kernel_layer.name, sorted(c.name for c in s.consumers),
                     s.why_not_revivable) for s in sites}


# ---------------------------------------------------------------- a chain of every kind of site


def chain():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(5, activation="relu", name="fused")(inputs)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    h = keras.layers.Dense(4, name="lin")(h)
    h = keras.layers.Dropout(0.5, name="drop2")(h)  # between a kernel and its activation: still revivable
    h = keras.layers.Activation("relu", name="act")(h)
    h = keras.layers.Dense(4, name="lin_bn")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu_bn")(h)
    h = keras.layers.Dense(3, activation="tanh", name="tanh")(h)
    h = keras.layers.Dense(3, activation="gelu", name="gelu")(h)  # neither ReLU family nor saturating
    h = keras.layers.Dense(3, name="lin_sig")(h)
    h = keras.layers.Activation("sigmoid", name="sig")(h)
    h = keras.layers.Dense(4, activation="relu", name="twice")(h)
    h = ak.layers.LeakyReLU6(name="lr6")(h)  # behind a kernel that has its own activation
    outputs = keras.layers.Dense(2, activation="relu", name="out")(h)
    return keras.Model(inputs, outputs, name="chain")


@pytest.fixture(scope="module")
def chain_model():
    # Built once: its probe (compiled on first use) is cached with it.
    return chain()


def test_every_relu_family_and_saturating_activation_is_a_site_with_its_kernel(chain_model):
    model = chain_model
    _, sites, notes = watched_sites(model)
    assert notes == []
    assert describe(sites) == {
        "fused": ("dead", True, "fused", ["lin"], None),  # read through the Dropout
        "act": ("dead", False, "lin", ["lin_bn"], None),
        "relu_bn": ("dead", False, None, [], "BatchNormalization 'bn' sits between the kernel and the activation"),
        "tanh": ("saturated", True, "tanh", ["gelu"], None),
        "sig": ("saturated", False, "lin_sig", ["twice"], None),
        "twice": ("dead", True, None, [], "its output goes to LeakyReLU6 'lr6'"),
        "lr6": ("dead", False, None, [], "twice has its own activation in front of it"),
        # A model output has no outgoing weights to zero: new incoming weights would change the model.
        "out": ("dead", True, None, [], "it is an output of the model"),
    }
    assert [s.name for s in sites] == ["fused", "act", "relu_bn", "tanh", "sig", "twice", "lr6", "out"]
    assert all(s.channel_axis == -1 for s in sites)


def test_margins_match_a_numpy_forward_pass(rng, chain_model):
    model = chain_model
    x = rng.normal(size=(16, 6)).astype("float32")
    bn = model.get_layer("bn")
    gamma, beta, mean, var = (helpers.value(w) for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))

    fused = relu(dense(model, "fused", x))  # Dropout: identity at inference
    act_in = dense(model, "lin", fused)
    bn_in = (dense(model, "lin_bn", relu(act_in)) - mean) / np.sqrt(var + bn.epsilon) * gamma + beta
    tanh = np.tanh(dense(model, "tanh", relu(bn_in)))
    gelu = keras.ops.convert_to_numpy(keras.activations.gelu(dense(model, "gelu", tanh)))
    sig = sigmoid(dense(model, "lin_sig", gelu))
    twice_pre = dense(model, "twice", sig)
    twice = relu(twice_pre)
    lr6 = np.minimum(np.where(twice > 0, twice, 0.01 * twice), 6.0)
    expected = {
        # Fused: the largest output (> 0 exactly where the pre-activation is); standalone: the largest input.
        "fused": fused.max(0), "act": act_in.max(0), "relu_bn": bn_in.max(0), "twice": twice.max(0),
        "lr6": twice.max(0), "out": relu(dense(model, "out", lr6)).max(0),
        # Saturating: the largest distance of the output from its nearest bound.
        "tanh": (1.0 - np.abs(tanh)).max(0), "sig": np.minimum(sig, 1.0 - sig).max(0),
    }
    found = margins_of(model, x)
    assert set(found) == set(expected)
    for name, margin in expected.items():
        np.testing.assert_allclose(found[name], margin, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("data_format, axis", [("channels_last", -1), ("channels_first", 1)])
def test_convolution_margins_are_per_channel_over_samples_and_positions(rng, data_format, axis):
    shape = (6, 6, 2) if data_format == "channels_last" else (2, 6, 6)
    inputs = keras.Input(shape)
    conv = keras.layers.Conv2D(3, 3, activation="relu", data_format=data_format, name="conv")(inputs)
    pre = keras.layers.Conv2D(4, 1, data_format=data_format, name="pre")(conv)
    act = keras.layers.ReLU(name="act")(pre)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, data_format=data_format, name="head")(act))
    x = rng.normal(size=(5, *shape)).astype("float32")
    _, sites, _ = watched_sites(model)
    assert describe(sites) == {"conv": ("dead", True, "conv", ["pre"], None), "act": ("dead", False, "pre", ["head"], None)}
    assert [s.channel_axis for s in sites] == [axis, axis]
    # Reference: the layers' own outputs from a plain Keras model, reduced over all but the channel axis.
    plain = keras.Model(inputs, [conv, pre])
    conv_out, pre_out = (np.asarray(keras.ops.convert_to_numpy(t)) for t in plain(x))
    others = tuple(a for a in range(4) if a != axis % 4)
    found = margins_of(model, x)
    np.testing.assert_allclose(found["conv"], conv_out.max(axis=others), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found["act"], pre_out.max(axis=others), rtol=1e-5, atol=1e-6)


def test_channels_first_is_found_through_normalisation_for_standalone_activations(rng):
    # Regression: a standalone activation with no revivable kernel right in front (BatchNorm between,
    # or a saturating one) was read along the last axis: a channels_first Conv-BN-ReLU counted columns.
    inputs = keras.Input((3, 6, 5))
    conv = keras.layers.Conv2D(4, 3, data_format="channels_first", name="conv")(inputs)
    normed = keras.layers.BatchNormalization(axis=1, name="bn")(conv)
    normed = keras.layers.MaxPooling2D(2, data_format="channels_first", name="pool")(normed)
    h = keras.layers.ReLU(name="relu")(normed)
    pre = keras.layers.Conv2D(2, 1, data_format="channels_first", name="pre")(h)
    h = keras.layers.Activation("tanh", name="tanh")(pre)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, data_format="channels_first", name="head")(h))
    x = rng.normal(size=(3, 3, 6, 5)).astype("float32")
    _, sites, _ = watched_sites(model)
    assert [(s.name, s.channel_axis) for s in sites] == [("relu", 1), ("tanh", 1)]
    assert describe(sites)["tanh"][2:] == ("pre", ["head"], None)  # looked up from the activation's input
    normed_out, pre_out = (np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.Model(inputs, [normed, pre])(x))
    found = margins_of(model, x)
    np.testing.assert_allclose(found["relu"], normed_out.max(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found["tanh"], (1 - np.abs(np.tanh(pre_out))).max(axis=(0, 2, 3)), rtol=1e-5,
                               atol=1e-6)


# ---------------------------------------------------------------- shared layers


def test_a_shared_layer_is_one_site_dead_only_where_dead_on_every_call(rng):
    # Regression: each call of a shared layer was a site of its own under the same name,
    # so the monitor logged two fractions per check under one key, counting each call alone.
    left, right = keras.Input((5,), name="left"), keras.Input((5,), name="right")
    shared = keras.layers.Dense(6, activation="relu", name="shared")
    a, b = shared(left), shared(right)
    a = keras.layers.Dense(3, name="read_a")(a)
    b = keras.layers.Dense(3, name="read_b")(b)
    model = keras.Model([left, right], keras.layers.Add(name="add")([a, b]))
    xl = rng.normal(size=(8, 5)).astype("float32")
    xr = rng.normal(size=(8, 5)).astype("float32") - 2.0
    bias = helpers.value(shared.bias)
    bias[[0, 1, 2]] = -50.0  # dead on both calls
    bias[3] = 0.0
    shared.bias.assign(bias)
    kernel = helpers.value(shared.kernel)
    kernel[:, 3] = 0.0  # unit 3: zero on both calls too
    shared.kernel.assign(kernel)

    _, sites, _ = watched_sites(model)
    assert describe(sites) == {"shared": ("dead", True, "shared", ["read_a", "read_b"], None)}
    assert len(sites) == 1
    root, _, _ = watched_sites(model)
    out = []
    root.margins([keras.ops.convert_to_tensor(xl), keras.ops.convert_to_tensor(xr)], out)
    expected = np.maximum(relu(dense(model, "shared", xl)).max(0), relu(dense(model, "shared", xr)).max(0))
    assert len(out) == 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out[0]), expected, rtol=1e-5, atol=1e-6)
    assert (expected <= 0).tolist() == [True, True, True, True, False, False]


def test_the_monitor_logs_one_fraction_per_check_for_a_shared_layer(rng):
    # What the duplicate sites did to the logs: two values per check under one key (4 after 2 epochs).
    model = helpers.multi_io(3)
    model.compile("sgd", {"a": "sparse_categorical_crossentropy", "b": "sparse_categorical_crossentropy"})
    x = [rng.normal(size=(16, 32)).astype("float32"), rng.normal(size=(16, 32)).astype("float32") - 1.0]
    monitor = ak.callbacks.DeadNeuronMonitor(probe_data=x)
    history = helpers.quiet_fit(model, x, {"a": np.zeros(16), "b": np.zeros(16)}, epochs=2, callbacks=[monitor])
    assert len(monitor.history["dead_fraction"]["shared"]) == 2 == len(history.history["dead_fraction/shared"])
    units = [relu(dense(model, "shared", xs)).max(0) for xs in x]
    assert monitor.dead_units["shared"].tolist() == (np.maximum(*units) <= 0).tolist()


def test_an_activation_layer_reused_after_different_kernels_counts_each_call_s_units(rng):
    inputs = keras.Input((5,))
    act = keras.layers.ReLU(name="act")
    a = act(keras.layers.Dense(3, name="k3")(inputs))
    b = act(keras.layers.Dense(4, name="k4")(inputs))
    model = keras.Model(inputs, keras.layers.Concatenate(name="join")([a, b]))
    x = rng.normal(size=(8, 5)).astype("float32")
    _, sites, _ = watched_sites(model)
    assert len(sites) == 1 and sites[0].name == "act" and sites[0].kernel_layer is None
    assert "more than one" in sites[0].why_not_revivable
    # Different units on each call: side by side, 3 + 4 of them.
    expected = np.concatenate([dense(model, "k3", x).max(0), dense(model, "k4", x).max(0)])
    np.testing.assert_allclose(margins_of(model, x)["act"], expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- nested models


def encoder():
    inputs = keras.Input((5,))
    h = keras.layers.Dense(4, activation="relu", name="enc_relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="tanh", name="enc_tanh")(h), name="encoder")


class Opaque(keras.Model):
    def __init__(self):
        super().__init__(name="opaque")
        self.inner = keras.layers.Dense(3, activation="relu")

    def call(self, x):
        return self.inner(x)


def test_nested_models_are_walked_and_a_subclassed_one_is_noted(rng):
    inputs = keras.Input((5,))
    h = keras.layers.Dense(5, activation="relu", name="outer")(inputs)
    h = encoder()(h)
    h = Opaque()(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h))
    x = rng.normal(size=(8, 5)).astype("float32")
    _, sites, notes = watched_sites(model)
    assert notes == ["opaque: a subclassed model, not looked into"]
    assert describe(sites) == {
        "outer": ("dead", True, None, [], "its output goes to Functional 'encoder'"),
        "encoder/enc_relu": ("dead", True, "enc_relu", ["enc_tanh"], None),
        "encoder/enc_tanh": ("saturated", True, None, [], "its output leaves a nested model"),
    }
    inner = model.get_layer("encoder")
    outer = relu(dense(model, "outer", x))
    enc_relu = relu(dense(inner, "enc_relu", outer))
    enc_tanh = np.tanh(dense(inner, "enc_tanh", enc_relu))
    found = margins_of(model, x)
    for name, margin in (("outer", outer.max(0)), ("encoder/enc_relu", enc_relu.max(0)),
                         ("encoder/enc_tanh", (1 - np.abs(enc_tanh)).max(0))):
        np.testing.assert_allclose(found[name], margin, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_nested_model_called_twice_is_watched_once_over_both_calls(rng):
    left, right = keras.Input((5,)), keras.Input((5,))
    shared = encoder()
    model = keras.Model([left, right], keras.layers.Subtract(name="diff")([shared(left), shared(right)]))
    xl = rng.normal(size=(8, 5)).astype("float32")
    xr = rng.normal(size=(8, 5)).astype("float32") + 1.0
    root, sites, _ = watched_sites(model)
    assert [s.name for s in sites] == ["encoder/enc_relu", "encoder/enc_tanh"]
    out = []
    root.margins([keras.ops.convert_to_tensor(xl), keras.ops.convert_to_tensor(xr)], out)
    on = {side: relu(dense(shared, "enc_relu", xs)) for side, xs in (("l", xl), ("r", xr))}
    tanh = {side: np.tanh(dense(shared, "enc_tanh", h)) for side, h in on.items()}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out[0]), np.maximum(on["l"].max(0), on["r"].max(0)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out[1]),
                               np.maximum((1 - np.abs(tanh["l"])).max(0), (1 - np.abs(tanh["r"])).max(0)),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- what has no sites


def test_sequential_is_walked_subclassed_is_not_and_the_walk_is_cached():
    model = helpers.mlp(3)
    found = watched_sites(model)
    assert [(s.name, s.kind) for s in found[1]] == [("hidden", "dead")]  # HardSwish: neither; softmax: neither
    assert watched_sites(model) is found  # one probe per model, shared by every monitor and fit
    assert watched_sites(Opaque()) is None
