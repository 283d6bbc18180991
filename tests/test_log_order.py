"""Which callbacks the kit's callbacks move ahead of (`_log_order.reads_epoch_logs`), on Keras's own callbacks."""

import keras
import pytest

import keras_actkit as ak
from keras_actkit.callbacks import _log_order


class OwnEpochEnd(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        pass


class OnlyBatchEnd(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


@pytest.mark.parametrize("callback,reads", [
    (keras.callbacks.CSVLogger("unused.csv"), True),
    (keras.callbacks.ModelCheckpoint("unused.keras"), True),
    (keras.callbacks.EarlyStopping(), True),
    (keras.callbacks.History(), True),
    (keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: None), True),
    (OwnEpochEnd(), True),
    (keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: None), False),
    (OnlyBatchEnd(), False),
    (keras.callbacks.Callback(), False),
], ids=lambda value: type(value).__name__ if not isinstance(value, bool) else str(value))
def test_a_callback_reads_the_epoch_logs_when_it_has_its_own_on_epoch_end(callback, reads):
    assert _log_order.reads_epoch_logs(callback) is reads


@pytest.mark.parametrize("make", [ak.callbacks.NaNGuard, ak.callbacks.GradientNormLogger,
                                  ak.callbacks.DeadNeuronMonitor])
def test_the_kits_own_callbacks_keep_their_order_among_themselves(make):
    # They only add keys: none has to run before another, so none is moved past another.
    assert _log_order.reads_epoch_logs(make()) is False
