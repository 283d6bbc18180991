"""Shared test setup: quiet logs, fixed seeds, a clean Keras state per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()

# Modules whose tests share one fitted model per parameter (a module-level
# cache keyed by the case): under pytest-xdist all tests of one case go to one
# worker, or each worker would compile and fit the case again.
SHARED_PER_CASE = ("tests/test_architectures.py",)


def only_backends(*names):
    """Mark a test to run only under the named Keras backends."""
    return pytest.mark.skipif(
        BACKEND not in names, reason=f"needs backend {names}, running {BACKEND}"
    )


@pytest.fixture(autouse=True)
def _clean_keras_state():
    keras.config.set_dtype_policy("float32")
    # Names, global state and seeds as in a fresh program. Not the full garbage
    # collection `free_memory` adds: ~0.7 s a test once the heap holds a few
    # hundred compiled functions (40% of the JAX suite's time); Python's own
    # collector still runs on its thresholds.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _scope(nodeid):
    """The xdist work unit of a test: its case in a SHARED_PER_CASE module, else the test alone."""
    module, _, rest = nodeid.partition("::")
    if module in SHARED_PER_CASE and rest.endswith("]"):
        return module + "[" + rest.rsplit("[", 1)[1]
    return nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n 2` (xdist's default `--dist load`): tests spread one by one, those sharing a case's fit kept together."""
    if config.getvalue("dist") != "load":
        return None  # a mode asked for explicitly is left as it is
    from xdist.scheduler import LoadScopeScheduling

    class ByCase(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return _scope(nodeid)

    return ByCase(config, log)
