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
"""

import weakref

import keras
import numpy as np

from keras_actkit import _backend, _keras_internals, _layer_paths

_TAPS = weakref.WeakKeyDictionary()  # innermost optimizer -> _Tap


def innermost(optimizer):
    from keras_actkit._training_state import innermost_optimizer

    return innermost_optimizer(optimizer)


def layer_key(variable):
    """Name of the layer owning `variable`: its path in the model (see keras_actkit._layer_paths)."""
    return _layer_paths.registered_key(variable)


class StepContext:
    """What the clients see of one `apply` call: tensors in a traced step; on
    torch, whose step runs eagerly, Python numbers where that saves ops
    (`eager` tells which)."""

    def __init__(self, optimizer, grads, variables, replicated=False, data=None):
        self.optimizer = optimizer
        self.data = data  # the step's batch (x, y, sample_weight), when the tap saw it
        # In cross-replica context under a tf.distribute strategy (gradients summed over replicas).
        self.replicated = replicated
        self.grads = grads  # list, None filtered out
        self.variables = variables  # matching trainable variables
        self.eager = _backend.eager_steps()
        iterations = _keras_internals.iterations_variable(optimizer)
        if self.eager:
            self.raw_iteration = int(iterations.value)
        else:
            # Micro-steps before this call, read now (before apply increments it).
            self.raw_iteration = keras.ops.copy(iterations.value)
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
                self._finite = _backend.finite_of(self._finite_terms())
        return self._finite

    def _finite_terms(self):
        # One reduction per gradient, shared by `finite` and `first_non_finite` (traced steps).
        if self._terms is None:
            self._terms = _backend.finite_terms(self.grads)
        return self._terms

    def data_finite(self):
        """Whether every floating value of the step's batch is finite (True when unknown)."""
        leaves = [t for t in keras.tree.flatten(self.data) if t is not None and "float" in str(t.dtype)]
        return _backend.all_finite(leaves) if leaves else True

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
        accs = _keras_internals.gradient_accumulators(self.optimizer, self.variables)
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
        self.original_apply = type(optimizer).apply.__get__(optimizer)
        self.fit_token = None
        self.carried = []  # the clients' variables, in order
        self._idle = ()  # positions of the clients the current call leaves out
        self.decision = None  # the step's skip decision where the whole step can use it (set while traced)
        self.restored = []  # state a skipped step puts back besides the update's: the forward pass's
        self.state_before = None  # their values when the step began (TensorFlow and torch)
        self.step_data = None  # the batch of the step being traced or run

    # -- clients -----------------------------------------------------------------
    def attach(self, client):
        model = self.model()
        if not self.clients:
            current = model.train_function
            if current is not self.last_plain:
                self.functions.clear()  # recompiled since: traced functions are stale
            self.plain_function = current
            self.fit_token = getattr(model, "history", None)
        variables = self.slots.get(client.signature)
        if variables is None:
            variables = _keras_internals.untracked_optimizer_variables(self.optimizer, client.variable_specs())
            self.slots[client.signature] = variables
        for variable, value in zip(variables, client.initial_values()):
            variable.assign(value)
        client.variables = variables
        self.clients.append(client)
        self._select_function()

    def detach(self, client):
        if client not in self.clients:
            return
        self.clients.remove(client)
        model = self.model()
        if self.clients:
            self._select_function()
            return
        if model is not None and model.train_function in self.functions.values():
            model.train_function = self.plain_function
        self.last_plain, self.plain_function, self.fit_token = self.plain_function, None, None

    def without_tap(self, variables):
        """`variables` without the tap's own (what a skipped step or a rollback must leave as it was)."""
        tap_ids = {id(v) for v in self.carried}
        return [v for v in variables if id(v) not in tap_ids]

    def _select_function(self):
        # Worked out once per set of clients, not in the (per-step on torch) wrapped apply.
        self._guards = any(client.guards for client in self.clients)
        self.carried = [v for client in self.clients for v in client.variables]
        self._optimizer_state = self.without_tap(self.optimizer.variables)
        model = self.model()
        # A skipped step leaves every variable as it was: also the state the
        # forward pass wrote before the decision (BatchNormalization's moving
        # statistics). Not inside a LossScaleOptimizer, which skips the
        # non-finite steps itself (and whose own skips keep that state, as in Keras).
        nested = innermost(model.optimizer) is not model.optimizer
        self.restored = [] if not self._guards or nested else _floating(model.non_trainable_variables)
        self._idle = ()
        # Clients that may sit out a call. Next to a guard, whose skipped steps
        # leave the optimizer's step counter behind the host's count of calls,
        # only those that can go by the count of calls.
        self._may_idle = [i for i, c in enumerate(self.clients)
                          if c.may_idle and (not self._guards or c.may_idle_beside_guard)]
        for i, client in enumerate(self.clients):
            client.host_decides = i in self._may_idle  # read when the step is traced
        key = tuple((c.signature, c.host_decides) for c in self.clients) + (len(self.restored),)
        function = self.functions.get(key)
        if function is None:
            # Every variant is built now, before fit hands the variables' values
            # to its own state (a JAX train function cannot be built mid-epoch);
            # each is traced on its first call.
            variants = {idle: _backend.make_train_function(model, self.optimizer, self.carried)
                        for idle in _subsets(self._may_idle)}
            function = self.functions[key] = self._dispatcher(variants, list(self.carried))
        model.train_function = function
        self._call_patches = self._patches(model)

    def abort_all(self):
        """Remove every client: the fit they belong to ended by an exception."""
        for client in list(self.clients):
            try:
                client.abort()
            finally:
                self.detach(client)

    def _dispatcher(self, variants, carried):
        tap = self

        def tapped(*args):
            model = tap.model()
            if not tap.clients or tap.fit_token is not getattr(model, "history", None):
                # Left installed by a fit that an exception ended outside a step
                # (another callback, the data on torch): this is a new fit, without the tap.
                tap.abort_all()
                return model.train_function(*args)
            # Clients with nothing to do in this call (known on the host) are
            # left out of it: a variant of the step traced without them runs.
            tap._idle = tuple(i for i in tap._may_idle if tap.clients[i].idle_next_call())
            try:
                with _keras_internals.patched(tap._call_patches):
                    return _backend.call_train_function(variants[tap._idle], args, carried)
            except BaseException:
                tap.abort_all()  # an error inside fit skips on_train_end
                raise

        return tapped

    def _patches(self, model):
        """What is shadowed while one call of the train function runs (and only then)."""
        patches = [(self.optimizer, "apply", self._apply), (model, "train_step", self._train_step(model))]
        for client in self.clients:
            patches += client.step_patches(model)
        return patches

    def _train_step(self, model):
        step = model.__dict__.get("train_step") or type(model).train_step.__get__(model)

        def train_step(*args):
            # Read while the step is traced (each variant once), or on every eager step.
            self.decision, self.state_before, self.step_data = None, None, args[-1]
            return _backend.guarded_train_step(step, args, self.optimizer, self.carried, self)

        return train_step

    # -- the wrapped apply --------------------------------------------------------
    def _apply(self, grads, trainable_variables=None):
        optimizer = self.optimizer
        if trainable_variables is None:
            trainable_variables = _keras_internals.default_trainable_variables(optimizer)
        grads, trainable_variables = list(grads), list(trainable_variables)

        def body(seen, update, replicated=False):
            # `seen`: the gradients the update uses (summed over replicas under a
            # tf.distribute strategy, where this runs in cross-replica context).
            clients = [c for i, c in enumerate(self.clients) if i not in self._idle]
            if not clients and not self._guards:
                update()  # every client sits this call out (torch: ~25 us of bookkeeping per step saved)
                return
            pairs = [(g, v) for g, v in zip(seen, trainable_variables) if g is not None]
            context = StepContext(optimizer, [g for g, _ in pairs], [v for _, v in pairs], replicated,
                                  self.step_data)
            for client in clients:
                client.before_apply(context)
            if self._guards:
                skips = [c.on_skipped for c in clients if c.skip_work(context)]
                if self.state_before is not None:
                    skips.append(self._put_back_state)
                otherwise = (lambda: [skip(context) for skip in skips]) if skips else None
                _backend.apply_if(context.finite, update, trainable_variables + self._optimizer_state, otherwise)
                if not replicated and self.model().optimizer is optimizer:
                    self.decision = context.finite  # for the rest of the step (JAX: state and loss tracker)
            else:
                update()
            for client in clients:
                client.after_apply(context)

        _backend.global_apply(body, self.original_apply, grads, trainable_variables)

    def _put_back_state(self, context):
        for variable, value in zip(self.restored, self.state_before):
            variable.assign(value)


def _floating(variables):
    return [v for v in variables if "float" in str(v.dtype)]


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
    tap = _TAPS.get(inner)
    if tap is not None and tap.clients and tap.fit_token is not getattr(model, "history", None):
        # Left over by a fit interrupted outside a step (e.g. in a callback):
        # each fit has its own History object.
        tap.abort_all()
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

    def step_patches(self, model):
        """(object, attribute, function) to shadow while a call of the train function runs."""
        return []

    def abort(self):
        """Called when the fit ends by an exception, before the tap is removed."""
