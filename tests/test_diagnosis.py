"""ak.diagnose and ak.check_model on tiny models, one per kind, on every backend.

Each dynamic case is trained once per module (cached) and shared by its tests;
the static kinds are checked with `check_model` (no training).
"""

import functools

import keras
import numpy as np
import pytest

import keras_actkit as ak
from keras_actkit.diagnosis.static import input_problems

L = keras.layers
N, FEATURES, BATCH, EPOCHS = 128, 4, 32, 6


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    return x, (x[:, 0] - x[:, 1] > 0).astype("float32")


def mlp(hidden, out_activation="sigmoid", optimizer=None, loss="binary_crossentropy", out_units=1, **dense):
    model = keras.Sequential([keras.Input((FEATURES,))] + [L.Dense(u, **kw) for u, kw in hidden]
                             + [L.Dense(out_units, activation=out_activation, **dense)])
    model.compile(optimizer or keras.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
    return model


def relu(units=16, **kw):
    return units, dict(activation="relu", kernel_initializer="he_normal", **kw)


def regression(lr):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    y = (x @ rng.normal(size=(FEATURES, 1))).astype("float32")
    model = keras.Sequential([keras.Input((FEATURES,)), L.Dense(1)])
    model.compile(keras.optimizers.SGD(lr), "mse")
    return model, x, y


def _classify(build):
    def make():
        x, y = data()
        return build(), x, y
    return make


CASES = {
    "healthy": _classify(lambda: mlp([relu(), relu()])),
    # SGD far past the stability limit of a linear regression: float32 overflows within a few steps.
    "non_finite": lambda: regression(1e10),
    # SGD at twice the stability limit (~1 for unit-variance inputs): the error grows ~3x a step.
    "exploding_gradient": lambda: regression(2.0),
    "vanishing_gradient": _classify(lambda: mlp([(4, dict(activation="sigmoid", kernel_initializer="he_uniform"))] * 8,
                                                optimizer=keras.optimizers.Adam(1e-3))),
    "dead_relu": _classify(lambda: mlp([relu(bias_initializer=keras.initializers.Constant(-20.0))] * 2)),
    "saturated_activation": _classify(lambda: mlp([(16, dict(activation="tanh",
                                                             bias_initializer=keras.initializers.Constant(20.0)))] * 2)),
    "not_learning": _classify(lambda: mlp([relu()], optimizer=keras.optimizers.SGD(0.0))),
    "lr_too_low": _classify(lambda: mlp([relu()], optimizer=keras.optimizers.SGD(1e-4))),
}


@functools.lru_cache(maxsize=None)
def diagnosed(case):
    # Layer names ("dense", "dense_1", ...) count the layers made before in
    # this process, which depends on which tests a pytest-xdist worker ran first.
    keras.backend.clear_session()
    keras.utils.set_random_seed(3)
    model, x, y = CASES[case]()
    return ak.diagnose(model, x, y, epochs=EPOCHS, batch_size=BATCH)


def kinds(d):
    return [p.kind for p in d.problems]


def test_a_healthy_model_is_healthy():
    d = diagnosed("healthy")
    assert d.healthy, str(d)
    assert "Healthy" in str(d)


@pytest.mark.parametrize("case", [c for c in CASES if c != "healthy"])
def test_each_kind_is_found_on_a_model_that_has_it(case):
    d = diagnosed(case)
    assert case in kinds(d), str(d)
    problem = next(p for p in d.problems if p.kind == case)
    assert problem.evidence and problem.prescription
    assert 1 <= problem.epoch <= EPOCHS and problem.step == problem.epoch * (N // BATCH)


def test_lr_too_high_alongside_the_exploding_gradient():
    # The diverging regression: the loss ends far above its start.
    assert "lr_too_high" in kinds(diagnosed("exploding_gradient"))


def test_the_culprit_layers_are_named():
    assert set(next(p for p in diagnosed("dead_relu").problems).layers) == {"dense", "dense_1"}
    assert diagnosed("vanishing_gradient").problems[0].layers[0] == "dense"


def test_a_certain_problem_stops_the_trial_early():
    d = diagnosed("dead_relu")
    # Two epochs of a stalled loss, then two confirming checks: stopped before the budget.
    assert len(d.record.loss) < EPOCHS
    assert d.problems[0].fraction == d.problems[0].epoch / EPOCHS


def state(model):
    values = [keras.ops.convert_to_numpy(v.value).copy() for v in model.variables]
    return values + [keras.ops.convert_to_numpy(v.value).copy() for v in model.optimizer.variables]


def test_repair_fixes_a_single_unit_softmax_and_leaves_the_users_model_bit_for_bit():
    x, y = data()
    model = mlp([relu(), (8, dict(activation="sigmoid"))], out_activation="softmax",
                optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)  # momentum slots and step count are non-trivial
    before, config = state(model), model.get_compile_config()
    r = ak.diagnose(model, x, y, validation_data=data(1), epochs=EPOCHS, batch_size=BATCH, repair=True)
    after = state(model)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert model.get_compile_config() == config
    assert model.layers[-1].get_config()["activation"] == "softmax"

    assert kinds(r)[0] == "output_loss_mismatch"
    assert r.repair is not None and r.repair["name"] == "fix_output"
    assert "sigmoid" in r.repair["code"]
    best = next(a for a in r.attempts if a.name == r.repair["name"])
    assert best.score == max(a.score for a in r.attempts) > r.score and not best.problems
    assert r.repaired_model.layers[-1].get_config()["activation"] == "sigmoid"
    # The kept model is the trained one: its score is what it gets on the validation data.
    xv, yv = data(1)
    assert r.repaired_model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"] == pytest.approx(best.score)


def test_unscaled_inputs_are_found_from_the_data():
    x, y = data()
    model = mlp([relu()])
    assert input_problems(model, x) == []
    x_nan = x.copy()
    x_nan[3, 1] = np.nan
    assert [p.kind for p in input_problems(model, x_nan)] == ["non_finite"]
    (problem,) = input_problems(model, x * 1000)
    assert problem.kind == "unscaled_input" and problem.layers == ("dense",)
    normalised = keras.Sequential([keras.Input((FEATURES,)), L.Normalization(), L.Dense(1)])
    assert input_problems(normalised, x * 1000) == []


@pytest.mark.parametrize("build, kind, layers", [
    (lambda: mlp([relu()], out_activation="softmax"), "output_loss_mismatch", ("dense_1",)),
    (lambda: mlp([relu()], out_activation="sigmoid", loss=keras.losses.BinaryCrossentropy(from_logits=True)),
     "output_loss_mismatch", ("dense_1",)),
    (lambda: mlp([relu()], out_activation="relu"), "output_loss_mismatch", ("dense_1",)),
    (lambda: mlp([relu()], out_activation="sigmoid", out_units=3, loss="sparse_categorical_crossentropy"),
     "output_loss_mismatch", ("dense_1",)),
    (lambda: mlp([relu()], out_activation=None), "output_loss_mismatch", ("dense_1",)),
    (lambda: mlp([(16, dict(activation="softmax")), relu()]), "hidden_softmax", ("dense",)),
    (lambda: mlp([(16, {}), (16, {}), relu()]), "missing_nonlinearity", ("dense", "dense_1")),
    (lambda: mlp([(16, dict(activation="tanh", kernel_initializer="zeros")), relu()]), "bad_initialization",
     ("dense",)),
    (lambda: mlp([(16, dict(activation="relu", kernel_initializer=keras.initializers.RandomNormal(stddev=5.0)))]),
     "bad_initialization", ("dense",)),
])
def test_check_model_finds_each_static_kind(build, kind, layers):
    d = ak.check_model(build())
    assert [p.kind for p in d.problems] == [kind]
    assert d.problems[0].layers == layers
    assert d.problems[0].epoch is None


@pytest.mark.parametrize("build", [
    lambda: mlp([relu(), relu()]),
    lambda: mlp([relu()], out_activation=None, loss=keras.losses.BinaryCrossentropy(from_logits=True)),
    lambda: mlp([relu()], out_activation="softmax", out_units=3, loss="sparse_categorical_crossentropy"),
    lambda: mlp([(16, dict(activation="tanh"))], out_activation=None, loss="mse"),  # linear regression output
    lambda: mlp([relu()], out_activation="sigmoid", kernel_initializer="zeros"),  # zero-init output layer
    lambda: keras.Sequential([keras.Input((FEATURES,)), L.Dense(16), L.BatchNormalization(), L.Activation("relu"),
                              L.Dense(1, activation="sigmoid")]),  # linear kernel, then BN and the activation
])
def test_check_model_passes_sound_models(build):
    assert ak.check_model(build()).healthy


def test_bad_arguments_are_named():
    model = mlp([relu()])
    x, y = data()
    with pytest.raises(ValueError, match="epochs"):
        ak.diagnose(model, x, y, epochs=0)
    with pytest.raises(TypeError, match="batch_size"):
        ak.diagnose(model, x, y, batch_size=True)
    with pytest.raises(ValueError, match="compiled"):
        ak.diagnose(keras.Sequential([keras.Input((FEATURES,)), L.Dense(1)]), x, y)
    with pytest.raises(TypeError, match="`model` must be a keras.Model; received model='model'"):
        ak.check_model("model")
    with pytest.raises(TypeError, match="`model` must be a keras.Model; received model='model'"):
        ak.diagnose("model", x, y)


def test_plot_saves_one_figure(tmp_path):
    d = diagnosed("vanishing_gradient")
    path = tmp_path / "diagnosis.png"
    figure = d.plot(path)
    assert path.stat().st_size > 0
    assert len(figure.axes) == 3
    assert figure.axes[1].get_yscale() == "log" and len(figure.axes[1].lines) == len(d.record.grad_layers)


@keras.saving.register_keras_serializable("test_diagnosis")
class SubclassedNet(keras.Model):
    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = L.Dense(units, activation="relu")
        self.out = L.Dense(1, activation="sigmoid")

    def call(self, x):
        return self.out(self.hidden(x))

    def get_config(self):
        return {"units": self.units, **super().get_config()}


def test_a_subclassed_model_is_judged_on_what_can_be_measured_and_says_what_cannot():
    x, y = data()
    model = SubclassedNet()
    model(x[:2])
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    d = ak.diagnose(model, x, y, epochs=2, batch_size=BATCH)
    assert any("dead and saturated units were not measured" in note for note in d.notes)
    assert any("checks need a Functional or Sequential model" in note for note in d.notes)
    assert len(d.record.grad_layers) == 2 and d.record.dead == {}


def test_an_activation_repair_reinitialises_the_swapped_layers_only():
    from keras_actkit.diagnosis.repairs import REPAIRS

    model = mlp([relu(bias_initializer=keras.initializers.Constant(-10.0))] * 2)
    new, words, code = REPAIRS["leaky_relu_he"](model, {})
    for name in ("dense", "dense_1"):
        config = new.get_layer(name).get_config()
        assert config["activation"] == "leaky_relu" and config["kernel_initializer"]["class_name"] == "HeNormal"
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(new.get_layer(name).bias), 0.0)
    assert new.get_layer("dense_2").get_config()["activation"] == "sigmoid"  # the output is left alone
    assert "dense..dense_1" in words and "leaky_relu" in code
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("dense").bias), -10.0)


def test_the_output_check_looks_inside_a_nested_model():
    inner = mlp([relu()])
    wrapped = keras.Sequential([keras.Input((FEATURES,)), L.Normalization(), inner])
    wrapped.compile("adam", "binary_crossentropy")
    assert ak.check_model(wrapped).healthy
    inner_bad = mlp([relu()], out_activation="softmax")
    wrapped = keras.Sequential([keras.Input((FEATURES,)), inner_bad])
    wrapped.compile("adam", "binary_crossentropy")
    assert [p.kind for p in ak.check_model(wrapped).problems] == ["output_loss_mismatch"]


def functional_with_a_linear_stack():
    """f1 (no activation) feeds f2 through BatchNormalization: a collapse. f3 (no activation) ends a
    residual branch and l1 feeds a nested Sequential's kernel: by design and a collapse, respectively."""
    inputs = keras.Input((FEATURES,))
    h = L.BatchNormalization()(L.Dense(8, name="f1")(inputs))
    h = L.Dense(8, activation="relu", name="f2")(h)
    h = L.Add()([L.Dense(8, name="f3")(h), h])
    inner = keras.Sequential([keras.Input((8,)), L.Dense(8, activation="relu", name="inner")], name="block")
    h = inner(L.Dropout(0.1)(L.Dense(8, name="l1")(h)))
    model = keras.Model(inputs, L.Dense(1, activation="sigmoid", name="out")(h))
    model.compile("adam", "binary_crossentropy")
    return model


def test_missing_nonlinearity_is_found_in_a_functional_model_and_repaired_there_only():
    from keras_actkit.diagnosis.repairs import REPAIRS

    model = functional_with_a_linear_stack()
    (problem,) = ak.check_model(model).problems
    assert problem.kind == "missing_nonlinearity" and problem.layers == ("f1", "l1")
    new, words, _ = REPAIRS["add_relu"](model, {"culprits": {problem.kind: list(problem.layers)}})
    activations = {name: new.get_layer(name).get_config()["activation"] for name in ("f1", "l1", "f3", "out")}
    assert activations == {"f1": "relu", "l1": "relu", "f3": "linear", "out": "sigmoid"}
    assert ak.check_model(new).healthy


@pytest.mark.parametrize("functional", [False, True])
def test_the_batchnorm_repair_puts_batchnorm_before_each_hidden_activation(functional):
    from keras_actkit.diagnosis.repairs import REPAIRS

    keras.backend.clear_session()
    model = mlp([(8, dict(activation="sigmoid"))] * 2)
    if functional:
        inputs = keras.Input((FEATURES,))
        model = keras.Model(inputs, model.layers[2](model.layers[1](model.layers[0](inputs))))
        model.compile("adam", "binary_crossentropy")
    new, words, code = REPAIRS["batchnorm"](model, {})
    for name in ("dense", "dense_1"):
        parts = new.get_layer(name).layers
        assert [type(p).__name__ for p in parts] == ["Dense", "BatchNormalization", "Activation"]
        assert parts[0].get_config()["activation"] == "linear" and parts[2].get_config()["activation"] == "sigmoid"
    assert new.get_layer("dense_2").get_config()["activation"] == "sigmoid"  # the output left as it was
    assert "dense..dense_1" in words and "BatchNormalization()" in code
    # The rebuilt graph computes kernel -> BN -> sigmoid: checked against numpy at inference.
    x, _ = data()
    h = x
    for name in ("dense", "dense_1"):
        dense, bn, _ = new.get_layer(name).layers
        z = h @ keras.ops.convert_to_numpy(dense.kernel) + keras.ops.convert_to_numpy(dense.bias)
        z = (z - keras.ops.convert_to_numpy(bn.moving_mean)) / np.sqrt(keras.ops.convert_to_numpy(bn.moving_variance)
                                                                     + bn.epsilon)
        h = 1 / (1 + np.exp(-(z * keras.ops.convert_to_numpy(bn.gamma) + keras.ops.convert_to_numpy(bn.beta))))
    out = new.get_layer("dense_2")
    expected = 1 / (1 + np.exp(-(h @ keras.ops.convert_to_numpy(out.kernel) + keras.ops.convert_to_numpy(out.bias))))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(new(x, training=False)), expected, rtol=1e-4, atol=1e-5)
    assert new.optimizer is not None and ak.check_model(new).healthy
