"""NaNGuard: a non-finite step never reaches the weights; rollback, lower LR, stop with a report."""

import keras
import numpy as np
import pytest

from keras_actkit.callbacks import GradientNormLogger, NaNGuard

import helpers


def _regression(n=64):
    return helpers.random_regression(n, noise=0.1)


def _mlp(d=4, bn_first=False):
    layers = [keras.Input((d,))]
    if bn_first:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    layers += [keras.layers.Dense(8, activation="relu", name="hidden"), keras.layers.Dense(1, name="out")]
    return keras.Sequential(layers)


def _values(model):
    return helpers.values(model.weights)


def _quiet_fit(model, *args, **kwargs):
    return helpers.fit_and_warnings(model, *args, said_by="NaNGuard", **kwargs)


def _classification(n=64, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = np.argmax(x[:, :3] + 0.3 * rng.normal(size=(n, 3)), axis=1).astype("int32")
    return x, y


def _classifier(d=4):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(8, activation="relu", name="hidden"),
                             keras.layers.Dense(3, activation="softmax", name="out")])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("poison", ["nan_input", "inf_target", "nan_input_crossentropy"])
def test_skipped_step_is_exactly_a_step_that_never_happened(optimizer, poison):
    # With crossentropy on TensorFlow the NaN row's loss is finite (Keras clips the
    # probabilities) while its gradients are not: the step's decision, not the
    # loss, must keep the batch out of logs["loss"].
    classify = poison == "nan_input_crossentropy"
    x, y = _classification() if classify else _regression()
    build, loss = (_classifier, "sparse_categorical_crossentropy") if classify else (_mlp, "mse")
    initial = build().get_weights()
    bad_x, bad_y = x.copy(), y.copy()
    if poison == "inf_target":
        bad_y[17, 0] = np.inf
    else:
        bad_x[17, 2] = np.nan  # batch 2 of 8
    guarded = build()
    guarded.set_weights(initial)
    guarded.compile(keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": 0.01}}), loss)
    guard = NaNGuard()
    history, said = _quiet_fit(guarded, bad_x, bad_y, batch_size=8, epochs=3, callbacks=[guard])
    assert guard.skipped == 3 and guard.rollbacks == 0 and said == []
    assert history.history["nan_guard/skipped"] == [1, 2, 3]

    # Reference: the same training with that batch removed from the data.
    keep = np.r_[0:16, 24:64]
    reference = build()
    reference.set_weights(initial)
    reference.compile(keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": 0.01}}), loss)
    clean = reference.fit(x[keep], y[keep], batch_size=8, epochs=3, verbose=0, shuffle=False)
    for ours, theirs in zip(_values(guarded), _values(reference)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert int(keras.ops.convert_to_numpy(guarded.optimizer.iterations)) == 21
    # Keras's running-mean loss leaves the skipped batch out instead of reading
    # NaN all epoch: it is the clean run's loss, epoch by epoch.
    np.testing.assert_allclose(history.history["loss"], clean.history["loss"], rtol=1e-5)


def test_skipped_step_under_gradient_accumulation_is_a_batch_that_never_happened():
    # The skipped micro-step leaves the accumulators and the step counter as
    # they were: the next batch takes its place in the window.
    x, y = _regression()
    bad_x = x.copy()
    bad_x[17, 2] = np.nan  # batch 2 of 8
    initial = _mlp().get_weights()

    def compiled():
        model = _mlp()
        model.set_weights(initial)
        model.compile(keras.optimizers.Adam(0.01, gradient_accumulation_steps=2), "mse")
        return model

    guarded, guard = compiled(), NaNGuard()
    _, said = _quiet_fit(guarded, bad_x, y, batch_size=8, epochs=3, callbacks=[guard])
    assert guard.skipped == 3 and guard.rollbacks == 0 and said == []
    keep = np.r_[0:16, 24:64]
    reference = compiled()
    reference.fit(x[keep], y[keep], batch_size=8, epochs=3, verbose=0, shuffle=False)
    ours = _values(guarded) + [keras.ops.convert_to_numpy(v.value) for v in guarded.optimizer.variables]
    theirs = _values(reference) + [keras.ops.convert_to_numpy(v.value) for v in reference.optimizer.variables]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_skipped_step_with_batchnorm_leaves_every_variable_as_it_was():
    # The NaN row reaches BatchNormalization's moving statistics in the forward
    # pass, before the update is skipped: the skipped step puts them back too,
    # so the run is training without that batch, moving statistics included.
    x, y = _regression()
    bad = x.copy()
    bad[17, 2] = np.nan  # batch 2 of 8
    initial = _mlp(bn_first=True).get_weights()

    def compiled():
        model = _mlp(bn_first=True)
        model.set_weights(initial)
        model.compile(keras.optimizers.SGD(0.01), "mse")
        return model

    guarded, guard = compiled(), NaNGuard()
    _, said = _quiet_fit(guarded, bad, y, batch_size=8, epochs=2, callbacks=[guard])
    assert guard.skipped == 2 and guard.rollbacks == 0 and said == []
    assert guard.report["cause"] == "data"
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(guarded.optimizer.learning_rate)), 0.01, rtol=1e-7)
    reference = compiled()
    keep = np.r_[0:16, 24:64]
    reference.fit(x[keep], y[keep], batch_size=8, epochs=2, verbose=0, shuffle=False)
    assert len(guarded.non_trainable_weights) == 2  # moving mean and variance, compared below
    for ours, theirs in zip(_values(guarded), _values(reference)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_one_nan_row_with_batchnorm_costs_one_batch_on_digits():
    # The set-up: digits, a BatchNormalization MLP, one NaN row.
    x, y = helpers.digits(n=None)
    layers = [keras.Input((64,)), keras.layers.Dense(32), keras.layers.BatchNormalization(),
              keras.layers.Activation("relu"), keras.layers.Dense(10, activation="softmax")]
    initial = keras.Sequential(layers).get_weights()

    def trained(data, callbacks):
        model = keras.Sequential([layer.__class__.from_config(layer.get_config()) for layer in layers[1:]])
        model.build((None, 64))
        model.set_weights(initial)
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
        _quiet_fit(model, data, y, batch_size=64, epochs=3, callbacks=callbacks)
        return model

    bad = x.copy()
    bad[100, 5] = np.nan
    guard = NaNGuard()
    guarded, clean = trained(bad, [guard]), trained(x, [])
    assert guard.skipped == 3 and guard.rollbacks == 0  # one batch per epoch
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(guarded.optimizer.learning_rate)), 0.01, rtol=1e-7)
    ours, theirs = guarded.evaluate(x, y, verbose=0)[1], clean.evaluate(x, y, verbose=0)[1]
    assert theirs > 0.9 and abs(ours - theirs) <= 0.02, (ours, theirs)


def test_a_data_fault_never_changes_the_learning_rate():
    x, y = _regression()
    x[8:32] = np.inf  # batches 1-3: three non-finite steps in a row, weights finite
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    guard = NaNGuard(patience=2, check_every_n_steps=1)
    _, said = _quiet_fit(model, x, y, batch_size=8, epochs=2, callbacks=[guard])
    assert guard.rollbacks >= 1 and guard.skipped == 6
    assert [event["cause"] for event in guard.events] == ["data"] * guard.rollbacks
    assert all(event["lr_factor"] == 1.0 for event in guard.events) and "kept the learning rate" in said[0]
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == np.float32(0.01)
    assert guard.report["cause"] == "data" and guard.report["skipped_on_bad_data"] == 6
    assert helpers.all_finite(model)


def test_embedding_model_skipped_step_is_a_step_that_never_happened():
    # TensorFlow hands an Embedding's gradient over as sparse IndexedSlices.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, size=(64, 5)).astype("int32")
    y = rng.normal(size=(64, 1)).astype("float32")
    bad_y = y.copy()
    bad_y[17, 0] = np.nan  # batch 2 of 8

    def compiled():
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(20, 4, name="embed"),
                                  keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, name="out")])
        model.compile(keras.optimizers.Adam(0.01), "mse")
        return model

    guarded, guard = compiled(), NaNGuard()
    _quiet_fit(guarded, ids, bad_y, batch_size=8, epochs=2, callbacks=[guard])
    assert guard.skipped == 2 and guard.rollbacks == 0
    reference = compiled()
    keep = np.r_[0:16, 24:64]
    reference.fit(ids[keep], y[keep], batch_size=8, epochs=2, verbose=0, shuffle=False)
    for ours, theirs in zip(_values(guarded), _values(reference)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_an_epoch_whose_every_step_was_skipped_logs_nan_loss(tmp_path):
    x, y = _regression()
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    best = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss", save_best_only=True)
    guard = NaNGuard(patience=100)

    def batches():  # the second epoch's labels are all NaN
        for labels in (y, np.full_like(y, np.nan)):
            for i in range(8):
                yield x[8 * i: 8 * i + 8], labels[8 * i: 8 * i + 8]

    # A user's callback listed before the guard sees the epoch's NaN too, not Keras's empty mean 0.0.
    seen = []
    before = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs["loss"]))
    history, _ = _quiet_fit(model, batches(), steps_per_epoch=8, epochs=2, callbacks=[before, guard, best])
    assert guard.skipped == 8
    first, second = history.history["loss"]
    assert np.isfinite(first) and np.isnan(second)
    assert best.best == first  # save_best_only kept the first epoch, not the one without a loss
    assert seen[0] == first and np.isnan(seen[1])


def test_one_instance_serves_several_fits():
    x, y = _regression()
    bad = x.copy()
    bad[17, 2] = np.nan
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    guard = NaNGuard()
    _quiet_fit(model, bad, y, batch_size=8, epochs=1, callbacks=[guard])
    assert guard.skipped == 1 and guard.report is not None
    history, _ = _quiet_fit(model, x, y, batch_size=8, epochs=1, callbacks=[guard])
    assert (guard.skipped, guard.rollbacks, guard.report, guard.events) == (0, 0, None, [])
    assert history.history["nan_guard/skipped"] == [0]


def test_overflowing_learning_rate_rolls_back_and_lowers_it():
    x, y = _regression(n=128)
    initial = _mlp().get_weights()
    model = _mlp()
    model.set_weights(initial)
    model.compile(keras.optimizers.SGD(100.0), "mse")
    guard = NaNGuard(lr_factor=0.1, max_retries=4)
    history, said = _quiet_fit(model, x, y, batch_size=16, epochs=20, callbacks=[guard])
    assert len(history.history["loss"]) == 20  # reached the last epoch
    assert 1 <= guard.rollbacks <= 4 and model.stop_training is False
    # Finite batches whose steps overflow: the weights diverged, not the data.
    assert [event["cause"] for event in guard.events] == ["divergence"] * guard.rollbacks
    assert guard.report["cause"] == "divergence"
    assert helpers.all_finite(model)
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    np.testing.assert_allclose(lr, 100.0 * 0.1 ** guard.rollbacks, rtol=1e-5)
    # A clean run at the learning rate the guard arrived at, from the same start.
    clean = _mlp()
    clean.set_weights(initial)
    clean.compile(keras.optimizers.SGD(lr), "mse")
    clean.fit(x, y, batch_size=16, epochs=20, verbose=0, shuffle=False)
    ours, theirs = model.evaluate(x, y, verbose=0), clean.evaluate(x, y, verbose=0)
    assert ours < 2 * theirs + 0.02, (ours, theirs)


def test_patience_then_max_retries_stops_with_a_report():
    x, y = _regression()
    x[8:] = np.nan  # every batch after the first is non-finite
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    guard = NaNGuard(patience=2, max_retries=1, check_every_n_steps=1)
    history, said = _quiet_fit(model, x, y, batch_size=8, epochs=5, callbacks=[guard])
    assert model.stop_training is True or len(history.history.get("loss", [])) < 5
    assert guard.rollbacks == 1
    assert guard.report is not None and guard.report["epoch"] == 0
    assert guard.report["first_nonfinite_gradient"] == "hidden"
    assert "in a row" in guard.report["reason"]
    assert "training stopped" in said[-1]
    assert helpers.all_finite(model)


def test_schedule_is_scaled_during_fit_and_restored_after():
    x, y = _regression(n=128)
    schedule = keras.optimizers.schedules.ExponentialDecay(100.0, decay_steps=1000, decay_rate=0.9)
    model = _mlp()
    model.compile(keras.optimizers.SGD(schedule), "mse")
    guard = NaNGuard(lr_factor=0.1, max_retries=4)
    _quiet_fit(model, x, y, batch_size=16, epochs=10, callbacks=[guard])
    assert guard.rollbacks >= 1
    assert guard.events[-1]["lr_factor"] == pytest.approx(0.1 ** guard.rollbacks)
    assert model.optimizer._learning_rate is schedule
    assert helpers.all_finite(model)


def test_mixed_precision_non_finite_steps_are_the_loss_scale_optimizers():
    keras.config.set_dtype_policy("mixed_float16")
    x, y = _regression()
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    scale = model.optimizer.initial_scale
    bad = x.copy()
    bad[17, 2] = np.nan
    guard = NaNGuard()
    _quiet_fit(model, bad, y, batch_size=8, epochs=2, callbacks=[guard])
    # The LossScaleOptimizer skips a step whose scaled gradients are not finite
    # before the (inner) optimizer sees it: it cannot tell a NaN batch from a
    # loss-scale overflow, and halves its scale. The guard sees unscaled,
    # finite gradients only, and the weights stay finite.
    assert guard.skipped == 0
    assert float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale)) <= scale / 4  # >= 2 halvings
    assert helpers.all_finite(model)
    assert "apply" not in model.optimizer.inner_optimizer.__dict__


def test_with_gradient_norm_logger_and_snapshot_file(tmp_path):
    x, y = _regression()
    x[17, 2] = np.nan
    model = _mlp()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    path = tmp_path / "good.npz"
    guard, norms = NaNGuard(snapshot_path=str(path), snapshot_every_n_steps=4), GradientNormLogger(every_n_steps=1)
    history, _ = _quiet_fit(model, x, y, batch_size=8, epochs=2, callbacks=[norms, guard])
    assert guard.skipped == 2
    global_norms = norms.history["global"]
    # The skipped step is recorded (NaN) and does not advance the optimizer step: batch 3 is step 2 again.
    np.testing.assert_array_equal(norms.history["step"][:4], [0, 1, 2, 2])
    assert np.isnan(global_norms[2]) and np.isnan(global_norms[10])
    assert np.all(np.isfinite(np.delete(global_norms, [2, 10])))
    assert np.all(np.isfinite(history.history["grad_norm/global"]))  # epoch means leave the NaN record out
    saved = np.load(path)
    assert len(saved.files) == len(model.trainable_variables) + len(model.non_trainable_variables) + len(
        model.optimizer.variables)


def test_refuses_to_start_from_non_finite_weights():
    x, y = _regression()
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    weights = model.get_weights()
    weights[0][0, 0] = np.nan
    model.set_weights(weights)
    with pytest.raises(ValueError, match="already not finite"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[NaNGuard()])
    assert "apply" not in model.optimizer.__dict__


def test_exception_inside_fit_restores_everything():
    x, y = _regression()
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    tracker = model._loss_tracker

    def data():
        for i in range(3):
            yield x[8 * i: 8 * i + 8], y[8 * i: 8 * i + 8]
        raise RuntimeError("bad data")

    with pytest.raises(Exception, match="bad data"):
        model.fit(data(), epochs=1, verbose=0, callbacks=[NaNGuard()])
    model.fit(x, y, epochs=1, verbose=0)  # torch fetches data outside the step: cleaned up here at the latest
    assert "apply" not in model.optimizer.__dict__
    assert "update_state" not in tracker.__dict__


@pytest.mark.parametrize("kwargs, name", [
    ({"patience": 0}, "patience"), ({"lr_factor": 0}, "lr_factor"), ({"lr_factor": 1.5}, "lr_factor"),
    ({"max_retries": -1}, "max_retries"), ({"snapshot_every_n_steps": 0}, "snapshot_every_n_steps"),
    ({"snapshot_path": "x.h5"}, "snapshot_path"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        NaNGuard(**kwargs)


@pytest.mark.parametrize("kwargs, error", [
    ({"patience": True}, TypeError), ({"patience": "3"}, TypeError), ({"patience": 2.0}, TypeError),
    ({"lr_factor": float("nan")}, ValueError), ({"lr_factor": "0.5"}, TypeError),
    ({"max_retries": None}, TypeError), ({"check_every_n_steps": 0}, ValueError),
    ({"check_every_n_steps": np.int64(0)}, ValueError), ({"snapshot_every_n_steps": False}, TypeError),
    ({"snapshot_path": "missing/dir/s.npz"}, ValueError), ({"snapshot_path": 3}, TypeError),
    ({"verbose": "yes"}, TypeError),
])
def test_bad_arguments_fail_at_construction_naming_argument_and_value(kwargs, error):
    ((name, value),) = kwargs.items()
    with pytest.raises(error, match=f"`{name}`") as raised:
        NaNGuard(**kwargs)
    assert f"{name}=" in str(raised.value) and "must be" in str(raised.value)


def test_numpy_scalars_are_accepted(tmp_path):
    guard = NaNGuard(patience=np.int64(2), lr_factor=np.float32(0.25), snapshot_path=tmp_path / "s.npz")
    assert (guard.patience, guard.lr_factor) == (2, 0.25) and type(guard.patience) is int
