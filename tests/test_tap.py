"""The gradient tap: nothing of it in an optimizer, a model or a checkpoint, also after an exception."""

import warnings

import keras
import numpy as np
import pytest

from keras_actkit.callbacks import GradientNormLogger, NaNGuard

import helpers


def _model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _kit(name):
    return {"guard": lambda: [NaNGuard()], "norms": lambda: [GradientNormLogger(every_n_steps=1)],
            "both": lambda: [GradientNormLogger(every_n_steps=1), NaNGuard()]}[name]()


class _SnapshotOptimizer(keras.callbacks.Callback):
    """Keeps the optimizer's values at each epoch's end (after the checkpoint callbacks listed before it)."""

    def __init__(self, raise_at_epoch=None):
        super().__init__()
        self.raise_at_epoch, self.values = raise_at_epoch, None

    def on_epoch_end(self, epoch, logs=None):
        self.values = helpers.values(self.model.optimizer.variables)
        if epoch == self.raise_at_epoch:
            raise RuntimeError("stop here")


@pytest.mark.parametrize("kit", ["guard", "norms"])
def test_model_checkpoint_mid_fit_reloads_the_optimizers_exact_state(tmp_path, kit):
    x, y = helpers.random_regression()
    model = _model()
    path = str(tmp_path / "c.keras")
    snapshot = _SnapshotOptimizer()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
              callbacks=_kit(kit) + [keras.callbacks.ModelCheckpoint(path), snapshot])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Skipping variable loading for optimizer"
        reloaded = keras.models.load_model(path)
    assert len(reloaded.optimizer.variables) == len(snapshot.values)
    assert int(keras.ops.convert_to_numpy(reloaded.optimizer.iterations)) == 8
    for ours, saved in zip(snapshot.values, helpers.values(reloaded.optimizer.variables)):
        np.testing.assert_array_equal(ours, saved)


@pytest.mark.parametrize("kit", ["guard", "both"])
def test_backup_and_restore_mid_fit_holds_the_optimizers_exact_state(tmp_path, kit):
    x, y = helpers.random_regression()
    model = _model()
    model.fit(x[:16], y[:16], epochs=1, verbose=0)  # builds the optimizer
    before = helpers.footprint(model)
    snapshot = _SnapshotOptimizer(raise_at_epoch=1)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="stop here"):
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False,
                  callbacks=_kit(kit) + [backup, snapshot])
    helpers.assert_no_trace(model, before)
    # The backup of epoch 1, as BackupAndRestore itself reads it into a new model at its next fit.
    restored = _model()
    restored.fit(x[:16], y[:16], epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored.load_weights(str(tmp_path / "backup" / "latest.weights.h5"))
    assert len(restored.optimizer.variables) == len(snapshot.values)
    for ours, saved in zip(snapshot.values, helpers.values(restored.optimizer.variables)):
        np.testing.assert_array_equal(ours, saved)


class _Raiser(keras.callbacks.Callback):
    def __init__(self, where):
        super().__init__()
        self.where = where

    def on_train_begin(self, logs=None):
        if self.where == "train_begin":
            raise RuntimeError("raised by another callback")

    def on_epoch_end(self, epoch, logs=None):
        if self.where == "epoch_end":
            raise RuntimeError("raised by another callback")


@pytest.mark.parametrize("where", ["train_begin", "epoch_end", "data"])
def test_an_exception_anywhere_in_fit_leaves_nothing_behind(where):
    x, y = helpers.random_regression()
    model, reference = _model(), _model()
    reference.set_weights(model.get_weights())
    for m in (model, reference):
        m.fit(x[:16], y[:16], epochs=1, verbose=0, shuffle=False)  # builds the optimizers alike
    before = helpers.footprint(model)

    def data():
        for i in range(3):
            yield x[8 * i: 8 * i + 8], y[8 * i: 8 * i + 8]
        raise RuntimeError("raised by the data")

    source = {"x": data()} if where == "data" else {"x": x, "y": y, "batch_size": 16}
    with pytest.raises(Exception, match="raised by"):  # TensorFlow wraps the data's error
        model.fit(**source, epochs=2, verbose=0, shuffle=False, callbacks=_kit("both") + [_Raiser(where)])
    helpers.assert_no_trace(model, before)
    # evaluate reads Keras's own loss: NaN labels give NaN, not the guard's filtered 0.0.
    assert np.isnan(model.evaluate(x, np.full_like(y, np.nan), verbose=0))
    # A plain fit afterwards trains as on a model that never met the kit.
    reference.set_weights(model.get_weights())
    for r, value in zip(reference.optimizer.variables, helpers.values(model.optimizer.variables)):
        r.assign(value)
    for m in (model, reference):
        m.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for ours, theirs in zip(helpers.values(model.weights), helpers.values(reference.weights)):
        np.testing.assert_array_equal(ours, theirs)
    helpers.assert_no_trace(model, before)
