"""The base of the tap's clients: what the tap asks of a callback's in-graph part."""

import numpy as np


class TapClient:
    """Base for tap users. Subclasses set `signature`, `guards` and the hooks."""

    guards = False
    may_idle = False  # whether `idle_next_call` can say True
    may_idle_beside_guard = False  # ... also next to a guard (going by calls, not optimizer steps)
    host_decides = False  # set by the tap: calls this client takes part in are its working calls
    variables = ()
    signature = None

    def variable_specs(self):
        return []

    def initial_values(self):
        return [np.zeros(shape, dtype=dtype) for shape, dtype, _ in self.variable_specs()]

    def idle_next_call(self):
        """Host side, once before each call of the train function: True when
        this client has no work in that call's step(s). The call then runs a
        variant of the step traced without it (each variant is traced once), so
        a client that works every n-th step costs nothing in-graph on the others.
        Asked only when `host_decides` is set, and then final: the step traced
        with this client must do its work on every call it runs in."""
        return False

    def before_apply(self, context):
        pass

    def after_apply(self, context):
        pass

    def skip_work(self, context):
        """Whether `on_skipped` has work this step (asked while the step is built)."""
        return False

    def on_skipped(self, context):
        """Runs in place of the update when a guard skips the step (TensorFlow and torch)."""

    def step_patches(self, model):
        """(object, attribute, function) to shadow while a call of the train function runs."""
        return []

    def abort(self):
        """Called when the fit ends by an exception, before the tap is removed."""
