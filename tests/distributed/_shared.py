"""Shared by the two-device scripts."""

import json
import warnings

import numpy as np

import keras_actkit as ak


def find_lr_report(model, x, y):
    """Run a short range test; report its length and whether the model came back bit for bit."""
    before = [w.copy() for w in model.get_weights()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ak.find_lr(model, x, y, batch_size=16, num_steps=20)
    return {"lr_points": len(result.lrs),
            "lr_restored": all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))}


def report(out):
    print("RESULT " + json.dumps(out))
