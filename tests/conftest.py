"""Shared test setup: quiet logs, fixed seeds, a clean Keras state per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def only_backends(*names):
    """Mark a test to run only under the named Keras backends."""
    return pytest.mark.skipif(
        BACKEND not in names, reason=f"needs backend {names}, running {BACKEND}"
    )


@pytest.fixture(autouse=True)
def _clean_keras_state():
    keras.config.set_dtype_policy("float32")
    keras.utils.clear_session()
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
