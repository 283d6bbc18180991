"""Bad arguments over the whole public API (issue 17, "Bad input").

One policy for the package (keras_actkit/_validation.py): every argument is
checked when the object is built or the function called, before anything
runs; a value of the wrong type is a TypeError (strings are never converted,
`bool` is not a number), a value of the right type out of range a ValueError;
numbers must be finite; numpy scalars are accepted; the message names the
argument and the value received.
"""

import os

import keras
import numpy as np
import pytest

import keras_actkit as ak
from keras_actkit import lr_suggestions
from keras_actkit.callbacks import AutoInit, DeadNeuronMonitor, GradientNormLogger, LRFinder, NaNGuard
from keras_actkit.callbacks.lr_finder import LRFinderResult

import helpers

NAN_ROWS = np.full((4, 6), np.nan, "float32")
NO_ROWS = np.zeros((0, 6), "float32")
LRS = np.geomspace(1e-5, 1.0, 20)
LOSSES = np.linspace(2.0, 1.0, 20)
MISSING_DIR = os.path.join("no_such_directory_here", "deeper")


def _model():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _find_lr(**kwargs):
    x, y = helpers.random_classification(64, 6, 2)
    return ak.find_lr(_model(), x, y, num_steps=5, **kwargs)


def _match(**kwargs):
    return ak.match_initializers(_model(), **kwargs)


def _result():
    return LRFinderResult(LRS, LOSSES, LOSSES, 1e-3, {"max(onset, valley)": 1e-3}, "diverged")


def _unwritable_dir():
    return "/proc/keras_actkit_logs"  # /proc takes no new directories, even as root


# (id, call, error class, argument named in the message, value shown in the message or None)
CASES = [
    # layers
    ("LeakyReLU6-slope-str", lambda: ak.layers.LeakyReLU6("0.1"), TypeError, "negative_slope", "'0.1'"),
    ("LeakyReLU6-slope-bool", lambda: ak.layers.LeakyReLU6(True), TypeError, "negative_slope", "True"),
    ("LeakyReLU6-slope-1", lambda: ak.layers.LeakyReLU6(1.0), ValueError, "negative_slope", "1.0"),
    ("LeakyReLU6-slope-nan", lambda: ak.layers.LeakyReLU6(float("nan")), ValueError, "negative_slope", "nan"),
    ("LeakyReLU6-slope-huge", lambda: ak.layers.LeakyReLU6(10 ** 400), ValueError, "negative_slope", "1000"),
    ("PReLU-axes-0", lambda: ak.layers.PReLU(shared_axes=0), ValueError, "shared_axes", "0"),
    ("PReLU-axes-str", lambda: ak.layers.PReLU(shared_axes="1"), TypeError, "shared_axes", "'1'"),
    ("PReLU-axes-bool", lambda: ak.layers.PReLU(shared_axes=[True]), TypeError, "shared_axes", "True"),
    ("PReLU-initializer", lambda: ak.layers.PReLU(alpha_initializer="bogus"), ValueError, "alpha_initializer",
     "'bogus'"),
    ("PReLU-initializer-int", lambda: ak.layers.PReLU(alpha_initializer=42), TypeError, "alpha_initializer",
     "42"),
    ("PReLU-regularizer", lambda: ak.layers.PReLU(alpha_regularizer="bogus"), ValueError, "alpha_regularizer",
     "'bogus'"),
    # activations, initializers, describe_activation
    ("leaky_relu6-slope", lambda: ak.activations.leaky_relu6(np.ones(2, "float32"), 2.0), ValueError,
     "negative_slope", "2.0"),
    ("leaky_relu6-slope-str", lambda: ak.activations.leaky_relu6(np.ones(2, "float32"), "x"), TypeError,
     "negative_slope", "'x'"),
    ("for_activation-distribution", lambda: ak.initializers.for_activation("relu", distribution="normal"),
     ValueError, "distribution", "'normal'"),
    ("for_activation-seed-str", lambda: ak.initializers.for_activation("relu", seed="abc"), TypeError, "seed",
     "'abc'"),
    ("for_activation-seed-bool", lambda: ak.initializers.for_activation("relu", seed=True), TypeError, "seed",
     "True"),
    ("for_activation-not-activation", lambda: ak.initializers.for_activation(keras.layers.Dense(2)), ValueError,
     "activation", None),
    ("for_activation-unknown-name", lambda: ak.initializers.for_activation("bogus"), ValueError, "bogus", "'bogus'"),
    # A value that cannot be an activation at all is of the wrong type: a TypeError (the policy).
    ("describe_activation-int", lambda: ak.describe_activation(42), TypeError, "`obj`", "42"),
    ("describe_activation-list", lambda: ak.describe_activation([1]), TypeError, "`obj`", "[1]"),
    ("for_activation-int", lambda: ak.initializers.for_activation(1.5), TypeError, "`activation`", "1.5"),
    ("describe_activation-name", lambda: ak.describe_activation("bogus"), ValueError, "obj", "'bogus'"),
    # match_initializers and AutoInit
    ("match-model", lambda: ak.match_initializers("model"), TypeError, "model", "'model'"),
    ("match-tolerance-0", lambda: _match(tolerance=0.0), ValueError, "tolerance", "0.0"),
    ("match-tolerance-str", lambda: _match(tolerance="0.1"), TypeError, "tolerance", "'0.1'"),
    ("match-only_defaults", lambda: _match(only_defaults="yes"), TypeError, "only_defaults", "'yes'"),
    ("match-distribution", lambda: _match(distribution="normal"), ValueError, "distribution", "'normal'"),
    ("match-seed-str", lambda: _match(seed="abc"), TypeError, "seed", "'abc'"),
    ("match-seed-bool", lambda: _match(seed=True), TypeError, "seed", "True"),
    ("match-calibration-empty", lambda: _match(calibration_data=NO_ROWS), ValueError, "calibration_data", None),
    ("match-calibration-nan", lambda: _match(calibration_data=NAN_ROWS), ValueError, "calibration_data", None),
    ("AutoInit-seed", lambda: AutoInit(seed="abc"), TypeError, "seed", "'abc'"),
    ("AutoInit-distribution", lambda: AutoInit(distribution="gaussian"), ValueError, "distribution", "'gaussian'"),
    ("AutoInit-only_defaults", lambda: AutoInit(only_defaults=1), TypeError, "only_defaults", "1"),
    ("AutoInit-calibration-nan", lambda: AutoInit(calibration_data=NAN_ROWS), ValueError, "calibration_data", None),
    # NaNGuard
    ("NaNGuard-patience-0", lambda: NaNGuard(patience=0), ValueError, "patience", "0"),
    ("NaNGuard-patience-bool", lambda: NaNGuard(patience=True), TypeError, "patience", "True"),
    ("NaNGuard-patience-str", lambda: NaNGuard(patience="3"), TypeError, "patience", "'3'"),
    ("NaNGuard-lr_factor-0", lambda: NaNGuard(lr_factor=0.0), ValueError, "lr_factor", "0.0"),
    ("NaNGuard-lr_factor-str", lambda: NaNGuard(lr_factor="0.5"), TypeError, "lr_factor", "'0.5'"),
    ("NaNGuard-lr_factor-nan", lambda: NaNGuard(lr_factor=float("nan")), ValueError, "lr_factor", "nan"),
    ("NaNGuard-max_retries", lambda: NaNGuard(max_retries=-1), ValueError, "max_retries", "-1"),
    ("NaNGuard-check_every", lambda: NaNGuard(check_every_n_steps=1.5), TypeError, "check_every_n_steps", "1.5"),
    ("NaNGuard-snapshot_every", lambda: NaNGuard(snapshot_every_n_steps=0), ValueError, "snapshot_every_n_steps",
     "0"),
    ("NaNGuard-snapshot-missing-dir", lambda: NaNGuard(snapshot_path=os.path.join(MISSING_DIR, "s.npz")), ValueError,
     "snapshot_path", None),
    ("NaNGuard-snapshot-not-npz", lambda: NaNGuard(snapshot_path="s.txt"), ValueError, "snapshot_path", "'s.txt'"),
    ("NaNGuard-verbose", lambda: NaNGuard(verbose="yes"), TypeError, "verbose", "'yes'"),
    # GradientNormLogger
    ("GNL-every-0", lambda: GradientNormLogger(every_n_steps=0), ValueError, "every_n_steps", "0"),
    ("GNL-every-bool", lambda: GradientNormLogger(every_n_steps=True), TypeError, "every_n_steps", "True"),
    ("GNL-vanishing", lambda: GradientNormLogger(vanishing_ratio=1.0), ValueError, "vanishing_ratio", "1.0"),
    ("GNL-vanishing-str", lambda: GradientNormLogger(vanishing_ratio="0.001"), TypeError, "vanishing_ratio",
     "'0.001'"),
    ("GNL-exploding", lambda: GradientNormLogger(exploding_factor=1.0), ValueError, "exploding_factor", "1.0"),
    ("GNL-window", lambda: GradientNormLogger(window=1), ValueError, "window", "1"),
    ("GNL-window-str", lambda: GradientNormLogger(window="20"), TypeError, "window", "'20'"),
    ("GNL-log_dir-unwritable", lambda: GradientNormLogger(log_dir=_unwritable_dir()), ValueError, "log_dir", None),
    ("GNL-verbose", lambda: GradientNormLogger(verbose="no"), TypeError, "verbose", "'no'"),
    # DeadNeuronMonitor
    ("DNM-probe-nan", lambda: DeadNeuronMonitor(probe_data=NAN_ROWS), ValueError, "probe_data", None),
    ("DNM-probe-empty", lambda: DeadNeuronMonitor(probe_data=NO_ROWS), ValueError, "probe_data", None),
    ("DNM-every_epochs-0", lambda: DeadNeuronMonitor(every_n_epochs=0), ValueError, "every_n_epochs", "0"),
    ("DNM-every_epochs-bool", lambda: DeadNeuronMonitor(every_n_epochs=True), TypeError, "every_n_epochs", "True"),
    ("DNM-every_steps-0", lambda: DeadNeuronMonitor(every_n_steps=0), ValueError, "every_n_steps", "0"),
    ("DNM-threshold-0", lambda: DeadNeuronMonitor(threshold=0.0), ValueError, "threshold", "0.0"),
    ("DNM-threshold-str", lambda: DeadNeuronMonitor(threshold="0.3"), TypeError, "threshold", "'0.3'"),
    ("DNM-probe_size-0", lambda: DeadNeuronMonitor(probe_size=0), ValueError, "probe_size", "0"),
    ("DNM-saturation", lambda: DeadNeuronMonitor(saturation=0.5), ValueError, "saturation", "0.5"),
    ("DNM-seed", lambda: DeadNeuronMonitor(seed="abc"), TypeError, "seed", "'abc'"),
    ("DNM-revive", lambda: DeadNeuronMonitor(revive="yes"), TypeError, "revive", "'yes'"),
    ("DNM-check-outside-fit", lambda: DeadNeuronMonitor().check(np.ones((4, 6), "float32")),
     (ValueError, RuntimeError), "fit", None),
    # LRFinder, find_lr, LRFinderResult
    ("LRFinder-start-0", lambda: LRFinder(start_lr=0.0), ValueError, "start_lr", "0.0"),
    ("LRFinder-start-str", lambda: LRFinder(start_lr="1e-5"), TypeError, "start_lr", "'1e-5'"),
    ("LRFinder-end-below-start", lambda: LRFinder(start_lr=1e-3, end_lr=1e-4), ValueError, "end_lr", "0.0001"),
    ("LRFinder-num_steps-4", lambda: LRFinder(num_steps=4), ValueError, "num_steps", "4"),
    ("LRFinder-num_steps-bool", lambda: LRFinder(num_steps=True), TypeError, "num_steps", "True"),
    ("LRFinder-num_steps-float", lambda: LRFinder(num_steps=10.0), TypeError, "num_steps", "10.0"),
    ("LRFinder-mode", lambda: LRFinder(mode="bogus"), ValueError, "mode", "'bogus'"),
    ("LRFinder-beta-1", lambda: LRFinder(beta=1.0), ValueError, "beta", "1.0"),
    ("LRFinder-beta-str", lambda: LRFinder(beta="0.9"), TypeError, "beta", "'0.9'"),
    ("LRFinder-diverge", lambda: LRFinder(diverge_threshold=1.0), ValueError, "diverge_threshold", "1.0"),
    ("LRFinder-verbose", lambda: LRFinder(verbose="yes"), TypeError, "verbose", "'yes'"),
    ("find_lr-model", lambda: ak.find_lr("model", NAN_ROWS, NAN_ROWS), TypeError, "`model`", "'model'"),
    ("find_lr-batch-0", lambda: _find_lr(batch_size=0), ValueError, "batch_size", "0"),
    ("find_lr-batch-negative", lambda: _find_lr(batch_size=-1), ValueError, "batch_size", "-1"),
    ("find_lr-batch-bool", lambda: _find_lr(batch_size=True), TypeError, "batch_size", "True"),
    ("find_lr-batch-str", lambda: _find_lr(batch_size="32"), TypeError, "batch_size", "'32'"),
    ("find_lr-uncompiled", lambda: ak.find_lr(keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)]),
                                              *helpers.random_classification(64, 6, 2)), ValueError, "compile", None),
    ("result-apply-rule", lambda: _result().apply(_model(), rule="bogus"), ValueError, "rule", "'bogus'"),
    # lr_suggestions
    ("minimum_over-divisor-0", lambda: lr_suggestions.minimum_over(LRS, LOSSES, divisor=0), ValueError, "divisor",
     "0"),
    ("minimum_over-decreasing", lambda: lr_suggestions.minimum_over(LRS[::-1], LOSSES), ValueError, "lrs", None),
    ("steepest-decreasing", lambda: lr_suggestions.steepest(LRS[::-1], LOSSES), ValueError, "lrs", None),
    ("valley-lengths", lambda: lr_suggestions.valley(LRS, LOSSES[:-1]), ValueError, "losses", None),
    ("smooth-beta", lambda: lr_suggestions.smooth(LOSSES, beta=1.0), ValueError, "beta", "1.0"),
    ("onset-fraction", lambda: lr_suggestions.onset(LRS, LOSSES, fraction=-0.5), ValueError, "fraction", "-0.5"),
    ("running_median-half_width", lambda: lr_suggestions.running_median(LRS, LOSSES, half_width="x"), TypeError,
     "half_width", "'x'"),
]

# id -> why it fails today. Each names the issue item and the engineer fixing it
# in parallel; the lead removes the entry when the fix merges.
# Cases that fail today: none. An entry 'case id' -> reason (or (reason, backends)) marks one xfail(strict).
XFAIL = {}


def _xfail(reason):
    """An xfail marker for `reason`, or `(reason, backends)`: then only on those backends."""
    reason, backends = reason if isinstance(reason, tuple) else (reason, None)
    if backends is not None and keras.backend.backend() not in backends:
        return []
    return [pytest.mark.xfail(strict=True, reason=reason)]


def _params():
    for case_id, call, error, name, shown in CASES:
        marks = _xfail(XFAIL[case_id]) if case_id in XFAIL else []
        yield pytest.param(call, error, name, shown, id=case_id, marks=marks)


@pytest.mark.parametrize("call, error, name, shown", list(_params()))
def test_bad_argument_is_refused_naming_it(call, error, name, shown, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a call accepted by mistake writes goes here
    with pytest.raises(Exception) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, error), f"{type(info.value).__name__}: {message}"
    assert name in message, message
    assert shown is None or shown in message, message


# Numpy scalars are numbers: accepted wherever Python numbers are.
ACCEPTED = [
    ("LeakyReLU6", lambda: ak.layers.LeakyReLU6(np.float32(0.1))),
    ("PReLU", lambda: ak.layers.PReLU(shared_axes=[np.int64(1)])),
    ("for_activation", lambda: ak.initializers.for_activation("relu", seed=np.int64(3))),
    ("match", lambda: _match(tolerance=np.float32(0.1), seed=np.int64(1))),
    ("AutoInit", lambda: AutoInit(seed=np.int64(1), only_defaults=np.bool_(True))),
    ("NaNGuard", lambda: NaNGuard(patience=np.int64(3), lr_factor=np.float32(0.5), max_retries=np.int32(2))),
    ("GNL", lambda: GradientNormLogger(every_n_steps=np.int64(2), vanishing_ratio=np.float32(1e-3))),
    ("DNM", lambda: DeadNeuronMonitor(threshold=np.float32(0.3), every_n_epochs=np.int64(2))),
    ("LRFinder", lambda: LRFinder(start_lr=np.float32(1e-5), end_lr=np.float64(1.0), num_steps=np.int64(10))),
    ("minimum_over", lambda: lr_suggestions.minimum_over(LRS, LOSSES, divisor=np.float32(10.0))),
]
ACCEPTED_XFAIL = {}


def _accepted_params():
    for case_id, call in ACCEPTED:
        marks = _xfail(ACCEPTED_XFAIL[case_id]) if case_id in ACCEPTED_XFAIL else []
        yield pytest.param(call, id=case_id, marks=marks)


@pytest.mark.parametrize("call", list(_accepted_params()))
def test_numpy_scalars_are_accepted(call):
    call()
