"""The gradient tap: one wrapper around the optimizer's `apply`, shared by callbacks.

Every Keras 3 trainer sends each step's gradients through the optimizer's
`apply()` (JAX through `stateless_apply`, which calls `apply` inside a stateless
scope). For the length of one `fit`, the tap replaces `apply` on the innermost
optimizer (inside a `LossScaleOptimizer`, so gradients arrive unscaled) with a
wrapper that hands the gradients to its clients (`GradientNormLogger`,
`NaNGuard`) before and after the real update, in-graph. Clients keep their
results in variables added to that optimizer, so they travel with JAX's state
and survive `steps_per_execution > 1`; a callback reads a few numbers from them
when it needs to.

When the last client leaves (`on_train_end`, or an exception inside a step),
the tap removes its variables and the wrapper: a model saved after `fit` holds
nothing of it. Under a TensorFlow `tf.distribute` strategy the clients run
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
"""

import sys
import weakref

import keras
import numpy as np

from keras_actkit import _backend, _layer_paths
from keras_actkit._backend._common import finite_of, finite_terms

_TAPS = weakref.WeakKeyDictionary()  # innermost optimizer -> _Tap
_MARK = "_keras_actkit_tap"


def innermost(optimizer):
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    return optimizer


def layer_key(variable):
    """Name of the layer owning `variable`: its path in the model (see keras_actkit._layer_paths)."""
    return _layer_paths.registered_key(variable)


class StepContext:
    """What the clients see of one `apply` call: tensors in a traced step; on
    torch, whose step runs eagerly, Python numbers where that saves ops
    (`eager` tells which)."""

    def __init__(self, optimizer, grads, variables, replicated=False):
        self.optimizer = optimizer
        # In cross-replica context under a tf.distribute strategy (gradients summed over replicas).
        self.replicated = replicated
        self.grads = grads  # list, None filtered out
        self.variables = variables  # matching trainable variables
        self.eager = keras.backend.backend() == "torch"
        if self.eager:
            self.raw_iteration = int(optimizer._iterations.value)
        else:
            # Micro-steps before this call, read now (before apply increments it).
            self.raw_iteration = keras.ops.copy(optimizer._iterations.value)
        self.accumulation = optimizer.gradient_accumulation_steps or 0
        self._finite = None
        self._terms = None

    @property
    def finite(self):
        """Whether every gradient is finite (a scalar tensor; a bool when eager)."""
        if self._finite is None:
            if not self.grads:
                self._finite = True if self.eager else keras.ops.convert_to_tensor(True)
            elif self.eager:
                self._finite = _backend.all_finite(self.grads)
            else:
                self._finite = finite_of(self._finite_terms())
        return self._finite

    def _finite_terms(self):
        # One reduction per gradient, shared by `finite` and `first_non_finite` (traced steps).
        if self._terms is None:
            self._terms = finite_terms(self.grads)
        return self._terms

    @property
    def first_non_finite(self):
        """Index of the first non-finite gradient (0 when all are finite); an int when eager."""
        ops = keras.ops
        if self.eager:
            if self.finite:
                return 0
            return next(i for i, g in enumerate(self.grads) if not bool(ops.all(ops.isfinite(g))))
        if not self.grads:
            return ops.convert_to_tensor(0, "int32")
        return ops.argmin(ops.cast(ops.isfinite(ops.stack(self._finite_terms())), "int32"))

    @property
    def is_update(self):
        """True on calls that change the weights: a Python True on every call without gradient accumulation."""
        if not self.accumulation:
            return True
        if self.eager:
            return (self.raw_iteration + 1) % self.accumulation == 0
        return keras.ops.equal((self.raw_iteration + 1) % self.accumulation, 0)

    @property
    def step(self):
        """Index of the weight update this call makes (`optimizer.iterations` before it)."""
        if not self.accumulation:
            return self.raw_iteration
        return self.raw_iteration // self.accumulation

    def accumulated(self):
        """Under accumulation, the accumulators' values now (before apply resets them); else None."""
        if not self.accumulation:
            return None
        opt = self.optimizer
        accs = [opt._accumulated_gradients[opt._get_variable_index(v)] for v in self.variables]
        return [keras.ops.copy(a.value) for a in accs]

    def effective_grads(self, accumulated):
        """The gradient the update uses: under accumulation, the mean over the window."""
        if accumulated is None:
            return self.grads
        return [(g + a) / self.accumulation for g, a in zip(self.grads, accumulated)]


class _Tap:
    def __init__(self, model, optimizer):
        self.model = weakref.ref(model)
        self.optimizer = optimizer
        self.clients = []
        self.slots = {}  # client signature -> its variables, reused by every fit
        self.functions = {}  # tuple of signatures -> installed train function (picks a traced variant per call)
        self.plain_function = None
        self.last_plain = None
        self.original_apply = None
        self.fit_token = None
        self.aborting = False
        self._idle = ()  # positions of the clients the current call leaves out
        # JAX threads optimizer variables through its stateless step, so the
        # tap's variables must be among them; elsewhere they stay outside the
        # optimizer, and nothing of them can reach a saved model.
        self.in_optimizer = keras.backend.backend() == "jax"

    # -- clients -----------------------------------------------------------------
    def attach(self, client):
        model = self.model()
        if not self.clients:
            current = model.train_function
            if current is not self.last_plain:
                self.functions.clear()  # recompiled since: traced functions are stale
            self.plain_function = current
            self.fit_token = getattr(model, "history", None)
            if self.in_optimizer:
                self._watch_jax_exit(model)
            self.original_apply = type(self.optimizer).apply.__get__(self.optimizer)
            setattr(self.optimizer, "apply", self._apply)
            setattr(self.optimizer, _MARK, self)
        variables = self.slots.get(client.signature)
        if variables is None:
            variables = [self.optimizer.add_variable(shape, initializer="zeros", dtype=dtype, name=name)
                         for shape, dtype, name in client.variable_specs()]
            # add_variable appended them; they are put back on each attach.
            self._remove_variables(variables)
            self.slots[client.signature] = variables
        for variable, value in zip(variables, client.initial_values()):
            variable.assign(value)
        if self.in_optimizer:
            self.optimizer._variables.extend(variables)
        client.variables = variables
        self.clients.append(client)
        self._select_function()

    def detach(self, client):
        if client not in self.clients:
            return
        self.clients.remove(client)
        if self.in_optimizer:
            self._remove_variables(client.variables)
        model = self.model()
        if self.clients:
            self._select_function()
            return
        self.optimizer.__dict__.pop("apply", None)
        self.optimizer.__dict__.pop(_MARK, None)
        if model is not None:
            model.train_function = self.plain_function
            model.__dict__.pop("jax_state_sync", None)
        self.last_plain, self.plain_function, self.fit_token = self.plain_function, None, None

    def _remove_variables(self, variables):
        ids = {id(v) for v in variables}
        tracked = self.optimizer._variables  # a tracking list wrapper on TensorFlow: delete in place
        for index in reversed(range(len(tracked))):
            if id(tracked[index]) in ids:
                del tracked[index]

    def without_tap(self, variables):
        """`variables` without the tap's own (what a skipped step or a rollback must leave as it was)."""
        tap_ids = {id(v) for c in self.clients for v in c.variables}
        return [v for v in variables if id(v) not in tap_ids]

    def _select_function(self):
        # Worked out once per set of clients, not in the (per-step on torch) wrapped apply.
        self._guards = any(client.guards for client in self.clients)
        self._optimizer_state = self.without_tap(self.optimizer.variables)
        self._idle = ()
        # Clients that may sit out a call. Next to a guard, whose skipped steps
        # leave the optimizer's step counter behind the host's count of calls,
        # only those that can go by the count of calls.
        self._may_idle = [i for i, c in enumerate(self.clients)
                          if c.may_idle and (not self._guards or c.may_idle_beside_guard)]
        for i, client in enumerate(self.clients):
            client.host_decides = i in self._may_idle  # read when the step is traced
        model = self.model()
        key = tuple((c.signature, c.host_decides) for c in self.clients)
        function = self.functions.get(key)
        if function is None:
            # Every variant is built now, before fit hands the variables' values
            # to its own state (a JAX train function cannot be built mid-epoch);
            # each is traced on its first call.
            variants = {idle: _backend.make_train_function(model) for idle in _subsets(self._may_idle)}
            function = self.functions[key] = self._dispatcher(variants)
        model.train_function = function

    def abort_all(self):
        """Remove every client: the fit they belong to ended by an exception."""
        clients, self.aborting = list(self.clients), True
        try:
            for client in clients:
                client.abort()
                self.detach(client)
        finally:
            self.aborting = False

    def _dispatcher(self, variants):
        tap = self

        def guarded(*args):
            model = tap.model()
            if not tap.clients or tap.fit_token is not getattr(model, "history", None):
                # Left installed by a fit that an exception ended outside a step
                # (torch fetches data outside it; another callback may raise):
                # this is a new fit, without the tap.
                tap.abort_all()
                return model.train_function(*args)
            # Clients with nothing to do in this call (known on the host) are
            # left out of it: a variant of the step traced without them runs.
            tap._idle = tuple(i for i in tap._may_idle if tap.clients[i].idle_next_call())
            try:
                return variants[tap._idle](*args)
            except BaseException:
                # An error inside fit skips on_train_end: never leave the optimizer wrapped.
                tap.abort_all()
                raise

        return guarded

    def _watch_jax_exit(self, model):
        """JAX's fit syncs its state in a `finally`: if an exception is on its way out, remove the tap."""
        original = type(model).jax_state_sync.__get__(model)
        ambient = sys.exc_info()[1]  # fit may itself run inside an `except` block
        tap = self

        def jax_state_sync():
            original()
            error = sys.exc_info()[1]
            if error is not None and error is not ambient and tap.clients and not tap.aborting:
                tap.abort_all()

        model.jax_state_sync = jax_state_sync

    # -- the wrapped apply --------------------------------------------------------
    def _apply(self, grads, trainable_variables=None):
        optimizer = self.optimizer
        if trainable_variables is None:
            trainable_variables = optimizer._trainable_variables
        grads, trainable_variables = list(grads), list(trainable_variables)

        def body(seen, update, replicated=False):
            # `seen`: the gradients the update uses (summed over replicas under a
            # tf.distribute strategy, where this runs in cross-replica context).
            # Read while the step is traced (each variant of the step once), or on every eager step.
            clients = [c for i, c in enumerate(self.clients) if i not in self._idle]
            if not clients and not self._guards:
                update()  # every client sits this call out (torch: ~25 us of bookkeeping per step saved)
                return
            pairs = [(g, v) for g, v in zip(seen, trainable_variables) if g is not None]
            context = StepContext(optimizer, [g for g, _ in pairs], [v for _, v in pairs], replicated)
            for client in clients:
                client.before_apply(context)
            if self._guards:
                skips = [c.on_skipped for c in clients if c.skip_work(context)]
                otherwise = (lambda: [skip(context) for skip in skips]) if skips else None
                _backend.apply_if(context.finite, update, trainable_variables + self._optimizer_state, otherwise)
            else:
                update()
            for client in clients:
                client.after_apply(context)

        _backend.global_apply(body, self.original_apply, grads, trainable_variables)


def _subsets(positions):
    """Every subset of `positions`, as sorted tuples (the empty one first)."""
    subsets = [()]
    for position in positions:
        subsets += [subset + (position,) for subset in subsets]
    return subsets


def attach(model, client):
    """Attach `client` to the tap on `model`'s optimizer for this fit; returns the tap."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"{type(client).__name__} needs a compiled model (model.optimizer is None).")
    inner = innermost(optimizer)
    if not inner.built:
        optimizer.build(model.trainable_variables)
    stale = inner.__dict__.get(_MARK)
    if stale is not None and stale.fit_token is not getattr(model, "history", None):
        # Left over by a fit interrupted outside a step (e.g. in a callback):
        # each fit has its own History object.
        stale.abort_all()
    tap = _TAPS.get(inner)
    if tap is None or tap.model() is not model:
        tap = _TAPS[inner] = _Tap(model, inner)
    tap.attach(client)
    return tap


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

    def abort(self):
        """Called when the fit ends by an exception, before the tap is removed."""
