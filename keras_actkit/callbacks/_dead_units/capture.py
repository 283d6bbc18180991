"""The probe batch, taken from the samples training itself draws (no second pass over the data)."""

import keras
import numpy as np

from keras_actkit import _backend

# The default probe: at most this many samples, and at most 1/PROBE_SHARE of
# an epoch's samples, but at least PROBE_MIN.
PROBE_SIZE, PROBE_SHARE, PROBE_MIN = 256, 16, 64


def default_probe_size(batch, steps):
    """Samples to capture by default, given the first batch's size and the steps per epoch (or None)."""
    if not steps:
        return PROBE_SIZE
    return min(PROBE_SIZE, max(PROBE_MIN, steps * batch // PROBE_SHARE))


def _numpy(x):
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), x)


def _shapes(x):
    return [a.shape[1:] for a in keras.tree.flatten(x)]


class ProbeCapture:
    """Wraps `model.train_function` until `size(first batch size)` samples have been seen
    (or `limit` batches: the steps of an epoch, when known).

    `install()` at the first batch (after every callback's `on_train_begin`:
    the gradient tap may replace the function there); `finish()` unwraps and
    returns the captured samples (None if none), also after an exception in
    the step (the step is never left wrapped).
    """

    def __init__(self, model, size, limit=None):
        self.model, self.size, self.limit = model, size, limit
        self.captured, self.target, self.probe = [], None, None
        self._unwrap = None

    @property
    def pending(self):
        """Not installed yet, and no sample captured."""
        return self._unwrap is None and self.target is None

    def install(self):
        model, original = self.model, self.model.train_function
        while getattr(original, "_actkit_original", None) is not None:  # left by an interrupted fit
            original = original._actkit_original
        capture = self

        def record(data):
            inputs = _numpy(keras.utils.unpack_x_y_sample_weight(data)[0])
            if capture.captured and _shapes(inputs) != _shapes(capture.captured[0]):
                return True  # e.g. sequences padded per batch: the probe is the batches of the first shape
            capture.captured.append(inputs)
            rows = [len(keras.tree.flatten(c)[0]) for c in capture.captured]
            if capture.target is None:
                capture.target = capture.size(rows[0])
            return sum(rows) >= capture.target

        recording = _backend.recording_train_function(model, original, record, self.limit)

        def guarded(*args):
            try:
                outputs = recording(*args)
            except BaseException:
                capture.finish()  # an error inside fit: never leave the step wrapped
                raise
            if recording.finished:
                capture.finish()
            return outputs

        guarded._actkit_original = original
        self._unwrap = lambda: setattr(model, "train_function", original)
        model.train_function = guarded

    def finish(self):
        """Unwrap the step; the probe: the samples captured so far, up to the target size."""
        if self._unwrap is not None:
            self._unwrap()
            self._unwrap = None
        if self.probe is None and self.captured:
            self.probe = keras.tree.map_structure(lambda *parts: np.concatenate(parts)[: self.target],
                                                  *self.captured)
            self.captured = []
        return self.probe
