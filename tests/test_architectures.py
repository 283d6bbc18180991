"""The kit on the architectures Keras users train (issue 17's Evidence), on every backend, at tiny sizes.

For each architecture: `match_initializers` reports every kernel; `find_lr`
restores the model and optimizer bit for bit; a fit with NaNGuard,
GradientNormLogger and DeadNeuronMonitor (nothing skipped) ends with the
same weights, bit for bit, and the same logs (plus the added keys) as a plain
fit from the same state; the logged gradient norms equal the backend's own
autodiff per layer; a `ModelCheckpoint` written during that fit reloads with
the optimizer's exact state.

Each case is built and fitted once (a module-level cache), so the file costs
about three traces per architecture.
"""

import contextlib
import dataclasses
import math
import warnings

import keras
import numpy as np
import pytest
from conftest import BACKEND

import autodiff
import helpers
import keras_actkit as ak

EPOCHS, BATCH = 2, 16  # 48 samples: 3 steps per epoch
STEPS = EPOCHS * 3
# The machine epsilon of the type the gradients are computed in (float16: 2**-10, bfloat16: 2**-7).
RTOL = {"float32": 1e-5, "mixed_float16": 2.0**-10, "mixed_bfloat16": 2.0**-7}
ADDED = ("grad_norm/", "update_ratio/", "dead_fraction/", "saturated_fraction/", "nan_guard/")


@dataclasses.dataclass
class Case:
    build_model: object  # () -> uncompiled model
    optimizer: object  # () -> optimizer
    arrays: object  # () -> (x, y) numpy
    feed: str = "arrays"  # arrays | tf_data | pydataset | generator
    policy: str = "float32"
    loss_weights: dict = None
    class_weight: dict = None
    backends: tuple = ("tensorflow", "jax", "torch")

    @contextlib.contextmanager
    def global_policy(self):
        """The case's dtype policy as the global one, as a user sets it for the whole program."""
        keras.config.set_dtype_policy(self.policy)
        try:
            yield
        finally:
            keras.config.set_dtype_policy("float32")

    def build(self):
        with self.global_policy():
            return self.build_model()

    def compiled(self):
        model = self.build()
        loss = "sparse_categorical_crossentropy"
        if self.loss_weights is not None:
            loss = {output: loss for output in self.loss_weights}
        model.compile(self.optimizer(), loss, loss_weights=self.loss_weights)
        return model

    def sample_weight(self):
        """Per-sample weights the data carries (tf.data and generator feeds), else None."""
        if self.feed in ("tf_data", "generator"):
            return np.linspace(0.5, 1.5, len(self.arrays()[1])).astype("float32")
        return None

    def first_batch(self):
        """`(x, y, sample_weight)` of the first step, class weights folded into the sample weights."""
        x, y = self.arrays()
        take = lambda a: a[:BATCH]  # noqa: E731
        weight = self.sample_weight()
        weight = None if weight is None else take(weight)
        if self.class_weight is not None:
            weight = np.array([self.class_weight[int(c)] for c in take(y)], "float32")
        return keras.tree.map_structure(take, x), keras.tree.map_structure(take, y), weight

    def fit_kwargs(self):
        """Fresh data for one `fit` (or `find_lr`) call: `x` first, then keyword arguments."""
        x, y = self.arrays()
        extra = {} if self.class_weight is None else {"class_weight": self.class_weight}
        if self.feed == "arrays":
            return dict(x=x, y=y, batch_size=BATCH, **extra)
        if self.feed == "tf_data":
            import tensorflow as tf

            return dict(x=tf.data.Dataset.from_tensor_slices((x, y, self.sample_weight())).batch(BATCH), **extra)
        if self.feed == "pydataset":
            return dict(x=Batches(x, y), **extra)
        if self.feed == "generator":
            return dict(x=batches_forever(x, y, self.sample_weight()), steps_per_epoch=len(y) // BATCH, **extra)
        raise ValueError(self.feed)


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y = x, y

    def __len__(self):
        return math.ceil(len(self.y) / BATCH)

    def __getitem__(self, index):
        part = slice(index * BATCH, (index + 1) * BATCH)
        return self.x[part], self.y[part]


def batches_forever(x, y, weight):
    while True:
        for start in range(0, len(y), BATCH):
            part = slice(start, start + BATCH)
            yield x[part], y[part], weight[part]


def _multi_io_arrays():
    x, y = helpers.digits()
    return [x[:, :32], x[:, 32:]], {"a": y, "b": (y + 1) % 10}


def _adam():
    return keras.optimizers.Adam(1e-3)


CASES = {
    "resnet": Case(helpers.resnet_block, _adam, helpers.digit_images),
    "recurrent_clipnorm": Case(helpers.recurrent, lambda: keras.optimizers.Adam(1e-3, clipnorm=1.0),
                               helpers.digit_sequences),
    "transformer": Case(helpers.transformer, _adam, helpers.digit_sequences),
    "subclassed": Case(helpers.subclassed, lambda: keras.optimizers.SGD(0.05, momentum=0.9), helpers.digits),
    "multi_io": Case(helpers.multi_io, _adam, _multi_io_arrays, loss_weights={"a": 1.0, "b": 0.5}),
    "embedding": Case(helpers.embedding, _adam, helpers.digit_tokens),
    "mixed_float16": Case(helpers.mlp, _adam, helpers.digits, policy="mixed_float16",
                          class_weight={c: 1.0 + c / 10 for c in range(10)}),
    "mixed_bfloat16": Case(helpers.mlp, _adam, helpers.digits, policy="mixed_bfloat16"),
    # Keras takes class weights or per-sample weights, not both: tf.data and the
    # generator carry sample weights, the PyDataset and the float16 arrays class weights.
    "tf_data": Case(helpers.mlp, _adam, helpers.digits, feed="tf_data", backends=("tensorflow",)),
    "pydataset": Case(helpers.mlp, _adam, helpers.digits, feed="pydataset",
                      class_weight={c: 2.0 if c % 2 else 1.0 for c in range(10)}),
    "generator": Case(helpers.mlp, _adam, helpers.digits, feed="generator"),
}

# (test, case, backend) -> reason; "*" matches every backend. The lead removes
# an entry when the fix of the item named merges.
XFAIL = {}


def cases(test):
    """The cases of `test` on this backend, each with its xfail marker when a known defect breaks it."""
    params = []
    for name, case in CASES.items():
        if BACKEND not in case.backends:
            continue
        reason = XFAIL.get((test, name, BACKEND)) or XFAIL.get((test, name, "*"))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


# ---------------------------------------------------------------- one plain and one instrumented fit per case


class Run:
    """A compiled case, its state before and after a plain fit, and the instrumented fit (made on first use)."""

    def __init__(self, name, directory):
        self.name, self.case, self.directory = name, CASES[name], directory
        self.model = self.case.compiled()
        self.start = helpers.state(self.model)
        data = self.case.fit_kwargs()
        self.plain_logs = helpers.quiet_fit(self.model, epochs=EPOCHS, **data).history
        self.plain_end = helpers.state(self.model)
        self.footprint = helpers.footprint(self.model)
        self._instrumented = None

    def reset(self):
        helpers.set_state(self.model, self.start)

    def instrumented(self):
        if self._instrumented is None:
            self._instrumented = self._fit_with_callbacks()
        if isinstance(self._instrumented, BaseException):
            raise self._instrumented
        return self._instrumented

    def _fit_with_callbacks(self):
        self.reset()
        grads = autodiff.loss_gradients(self.model, *self.case.first_batch())
        self.reset()
        guard = ak.callbacks.NaNGuard()
        norms = ak.callbacks.GradientNormLogger(every_n_steps=1)
        dead = ak.callbacks.DeadNeuronMonitor()
        path = self.directory / f"{self.name}.keras"
        checkpoint = keras.callbacks.ModelCheckpoint(path, save_freq="epoch")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the monitor's and logger's advice on a 6-step run
                logs = helpers.quiet_fit(self.model, epochs=EPOCHS, callbacks=[guard, norms, dead, checkpoint],
                                         **self.case.fit_kwargs()).history
        except Exception as error:  # noqa: BLE001 - re-raised by each test that needs the fit
            return error
        return dict(grads=grads, guard=guard, norms=norms, logs=logs, path=path, end=helpers.state(self.model))


_RUNS = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("architectures")

    def get(name):
        if name not in _RUNS:
            _RUNS[name] = Run(name, directory)
        return _RUNS[name]

    yield get
    _RUNS.clear()


# ---------------------------------------------------------------- the checks


@pytest.mark.parametrize("name", cases("match"))
def test_match_initializers_reports_every_kernel(name):
    model = CASES[name].build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the subclassed model's "cannot walk" warning
        report = ak.match_initializers(model)
    rows = [e.layer for e in report.entries] + list(report.skipped)
    assert sorted(rows) == sorted(helpers.kernel_layers(model))
    assert all(e.action for e in report.entries)


@pytest.mark.parametrize("name", cases("find_lr"))
def test_find_lr_restores_bit_for_bit(name):
    # As a user runs it: on a model just compiled, its optimizer not built yet.
    case = CASES[name]
    model = case.compiled()
    start = helpers.values(model.variables)
    fresh = case.compiled()  # what the optimizer holds before any step, built apart
    fresh.optimizer.build(fresh.trainable_variables)
    before = helpers.footprint(model)
    data = case.fit_kwargs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "never diverged" on a 5-step ladder
        ak.find_lr(model, data.pop("x"), data.pop("y", None), num_steps=5, **data)
    helpers.assert_same_values(helpers.values(model.variables), start, "model variables")
    helpers.assert_same_values(helpers.values(model.optimizer.variables), helpers.values(fresh.optimizer.variables),
                               "optimizer variables")
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == float(
        keras.ops.convert_to_numpy(fresh.optimizer.learning_rate))
    after = helpers.footprint(model)
    assert after["patched"] == before["patched"] and after["model_variables"] == before["model_variables"]


@pytest.mark.parametrize("name", cases("same_fit"))
def test_callbacks_leave_weights_and_logs_as_a_plain_fit(runs, name):
    run = runs(name)
    result = run.instrumented()
    assert result["guard"].skipped == 0
    helpers.assert_same_values(result["end"]["model"], run.plain_end["model"], "model variables")
    helpers.assert_same_values(result["end"]["optimizer"], run.plain_end["optimizer"], "optimizer variables")
    logs = result["logs"]
    for key, expected in run.plain_logs.items():
        assert logs[key] == expected, key
    added = sorted(set(logs) - set(run.plain_logs))
    assert added and all(key.startswith(ADDED) for key in added), added
    helpers.assert_no_trace(run.model, run.footprint)


@pytest.mark.parametrize("name", cases("norms"))
def test_logged_norms_equal_autodiff(runs, name):
    run = runs(name)
    result = run.instrumented()
    history = result["norms"].history
    assert history["step"][0] == 0
    expected = autodiff.norms_by_key(run.model, history["layers"], result["grads"])
    # Float32 steps agree to float32 rounding; mixed-precision ones, whose
    # gradients are computed in float16/bfloat16, to that type's precision
    # (a loss scale left in would be off by a factor of thousands).
    rtol = RTOL[run.case.policy]
    np.testing.assert_allclose(history["norms"][0], [expected[k] for k in history["layers"]], rtol=rtol)
    total = np.sqrt(sum(float(np.sum(np.square(g.astype("float64")))) for g in result["grads"]))
    np.testing.assert_allclose(history["global"][0], total, rtol=rtol)


@pytest.mark.parametrize("name", cases("checkpoint"))
def test_checkpoint_written_mid_fit_reloads_the_optimizer_exactly(runs, name):
    run = runs(name)
    result = run.instrumented()
    # Loaded under the policy it was trained under: Keras saves a LossScaleOptimizer's
    # state but compiles the loaded model with a bare one unless mixed_float16 is the
    # global policy, and then refuses the state, with or without this kit's callbacks.
    with warnings.catch_warnings(), run.case.global_policy():
        warnings.simplefilter("error")  # "Skipping variable loading for optimizer" must not happen
        loaded = keras.saving.load_model(result["path"])
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == STEPS
    helpers.assert_same_values(helpers.values(loaded.optimizer.variables), result["end"]["optimizer"],
                               "reloaded optimizer variables")
    # Weights, not variables: Keras saves no random-seed state.
    helpers.assert_same_values(helpers.values(loaded.weights), helpers.values(run.model.weights), "reloaded weights")
