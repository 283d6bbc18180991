"""The gradient tap: one wrapper around the optimizer's `apply`, shared by callbacks.

Every Keras 3 trainer sends each step's gradients through the optimizer's
`apply()` (JAX through `stateless_apply`, which calls `apply` inside a stateless
scope). For the length of one `fit`, the tap replaces `apply` on the innermost
optimizer (inside a `LossScaleOptimizer`, so gradients arrive unscaled) with a
wrapper that hands the gradients to its clients (`GradientNormLogger`,
`NaNGuard`) before and after the real update, in-graph. Clients keep their
results in variables of the tap's own, made by that optimizer but never among
its variables: on JAX, whose step is a pure function of the training state,
the train function carries them beside the optimizer's (appended to its list
only while the step is built), so a checkpoint written during `fit` holds the
optimizer's state and nothing else. A callback reads a few numbers from them
when it needs to.

The wrapped `apply`, the train step and the clients' own patches (NaNGuard's
loss-tracker filter) are in place only while a call of the train function
runs, and taken out when it returns or raises: one clean-up path, and an
exception outside a step (another callback, the data) leaves none of them
behind. The train function itself stays the tap's for the fit; a tap left by
a fit that raised is removed at the next call or attach (each fit has its own
`History`). Under a TensorFlow `tf.distribute` strategy the clients run
once, in cross-replica context, on the gradients summed over the replicas
(`_backend.global_apply`). The wrapped train function is kept per optimizer
and set of clients, so a later `fit` with the same callbacks does not trace
again, and the model's own train function is put back for plain fits.

A client that works only on some steps (`GradientNormLogger`, every n-th)
says so on the host before each call (`idle_next_call`); the call then runs a
variant of the step traced without that client, so the other steps carry none
of its in-graph cost. The host's word is then final (`host_decides`): the
client's traced step works on every call it takes part in. Next to a guard,
whose skipped steps do not advance the optimizer's counter, only clients that
can count calls instead of steps idle (`may_idle_beside_guard`).

Modules: `tap` (the `_Tap` of an optimizer, its clients and its train-function
variants; `attach`), `step` (what runs in one call: the dispatcher, the train
step, the wrapped `apply`), `context` (`StepContext`, what a client sees of
one `apply`), `client` (`TapClient`, the base of the clients).
"""

from keras_actkit._training_state import innermost_optimizer as innermost
from keras_actkit.callbacks._tap.client import TapClient
from keras_actkit.callbacks._tap.context import StepContext, layer_key
from keras_actkit.callbacks._tap.tap import attach

__all__ = ["StepContext", "TapClient", "attach", "innermost", "layer_key"]
