"""The tap of one optimizer: its clients, their variables, the train-function variants made for them."""

import weakref

from keras_actkit import _backend, _keras_internals
from keras_actkit._training_state import innermost_optimizer
from keras_actkit.callbacks._tap import step

_TAPS = weakref.WeakKeyDictionary()  # innermost optimizer -> _Tap


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
        self.idle = ()  # positions of the clients the current call leaves out
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
        _backend.write_values(model, variables, client.initial_values())
        client.variables = variables
        self.clients.append(client)
        self.select_function()

    def detach(self, client):
        if client not in self.clients:
            return
        self.clients.remove(client)
        model = self.model()
        if self.clients:
            self.select_function()
            return
        if model is not None and model.train_function in self.functions.values():
            model.train_function = self.plain_function
        self.last_plain, self.plain_function, self.fit_token = self.plain_function, None, None

    def abort_all(self):
        """Remove every client: the fit they belong to ended by an exception."""
        for client in list(self.clients):
            try:
                client.abort()
            finally:
                self.detach(client)

    def without_tap(self, variables):
        """`variables` without the tap's own (what a skipped step or a rollback must leave as it was)."""
        tap_ids = {id(v) for v in self.carried}
        return [v for v in variables if id(v) not in tap_ids]

    def retrace(self, install=True):
        """Forget the traced variants (a constant of the traced step changed); with `install`, make and
        install new ones for the current clients now (else at the next attach or detach)."""
        self.functions.clear()
        if install and self.clients:
            self.select_function()

    # -- the train function -------------------------------------------------------
    def select_function(self):
        """Install the train function for the current clients (made once per set of clients)."""
        # Worked out once per set of clients, not in the (per-step on torch) wrapped apply.
        self.guards = any(client.guards for client in self.clients)
        self.carried = [v for client in self.clients for v in client.variables]
        self.optimizer_state = self.without_tap(self.optimizer.variables)
        model = self.model()
        # A skipped step leaves every variable as it was: also the state the
        # forward pass wrote before the decision (BatchNormalization's moving
        # statistics). Not inside a LossScaleOptimizer, which skips the
        # non-finite steps itself (and whose own skips keep that state, as in Keras).
        nested = innermost_optimizer(model.optimizer) is not model.optimizer
        self.restored = [] if not self.guards or nested else _floating(model.non_trainable_variables)
        self.idle = ()
        # Clients that may sit out a call. Next to a guard, whose skipped steps
        # leave the optimizer's step counter behind the host's count of calls,
        # only those that can go by the count of calls.
        self.may_idle = [i for i, c in enumerate(self.clients)
                         if c.may_idle and (not self.guards or c.may_idle_beside_guard)]
        for i, client in enumerate(self.clients):
            client.host_decides = i in self.may_idle  # read when the step is traced
        key = tuple((c.signature, c.host_decides) for c in self.clients) + (len(self.restored),)
        function = self.functions.get(key)
        if function is None:
            # Every variant is built now, before fit hands the variables' values
            # to its own state (a JAX train function cannot be built mid-epoch);
            # each is traced on its first call.
            variants = {idle: _backend.make_train_function(model, self.optimizer, self.carried)
                        for idle in _subsets(self.may_idle)}
            function = self.functions[key] = step.dispatcher(self, variants, list(self.carried))
        model.train_function = function
        self.call_patches = self._patches(model)

    def _patches(self, model):
        """What is shadowed while one call of the train function runs (and only then)."""
        patches = [(self.optimizer, "apply", step.tapped_apply(self)),
                   (model, "train_step", step.train_step(self, model))]
        for client in self.clients:
            patches += client.step_patches(model)
        return patches


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
    inner = innermost_optimizer(optimizer)
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
