"""What runs in one call of the tapped train function: the dispatcher, the train step, the wrapped `apply`."""

from keras_actkit import _backend, _keras_internals
from keras_actkit.callbacks._tap.context import StepContext


def dispatcher(tap, variants, carried):
    """The train function installed for a set of clients: picks the variant for this call, patches, runs."""

    def tapped(*args):
        model = tap.model()
        if not tap.clients or tap.fit_token is not getattr(model, "history", None):
            # Left installed by a fit that an exception ended outside a step
            # (another callback, the data on torch): this is a new fit, without the tap.
            tap.abort_all()
            return model.train_function(*args)
        # Clients with nothing to do in this call (known on the host) are
        # left out of it: a variant of the step traced without them runs.
        tap.idle = tuple(i for i in tap.may_idle if tap.clients[i].idle_next_call())
        try:
            with _keras_internals.patched(tap.call_patches):
                return _backend.call_train_function(variants[tap.idle], args, carried)
        except BaseException:
            tap.abort_all()  # an error inside fit skips on_train_end
            raise

    return tapped


def train_step(tap, model):
    """The model's train step, recording the batch and keeping the state a skipped step puts back."""
    step = model.__dict__.get("train_step") or type(model).train_step.__get__(model)

    def tapped_step(*args):
        # Read while the step is traced (each variant once), or on every eager step.
        tap.decision, tap.state_before, tap.step_data = None, None, args[-1]
        return _backend.guarded_train_step(step, args, tap.optimizer, tap.carried, tap)

    return tapped_step


def tapped_apply(tap):
    """The optimizer's `apply` handing the gradients to the clients working this call."""
    optimizer = tap.optimizer

    def apply(grads, trainable_variables=None):
        if trainable_variables is None:
            trainable_variables = _keras_internals.default_trainable_variables(optimizer)
        grads, trainable_variables = list(grads), list(trainable_variables)

        def body(seen, update, replicated=False):
            # `seen`: the gradients the update uses (summed over replicas under a
            # tf.distribute strategy, where this runs in cross-replica context).
            clients = [c for i, c in enumerate(tap.clients) if i not in tap.idle]
            if not clients and not tap.guards:
                update()  # every client sits this call out (torch: ~25 us of bookkeeping per step saved)
                return
            pairs = [(g, v) for g, v in zip(seen, trainable_variables) if g is not None]
            context = StepContext(optimizer, [g for g, _ in pairs], [v for _, v in pairs], replicated,
                                  tap.step_data)
            for client in clients:
                client.before_apply(context)
            if tap.guards:
                _guarded_update(tap, clients, context, update, trainable_variables)
            else:
                update()
            for client in clients:
                client.after_apply(context)

        _backend.global_apply(body, tap.original_apply, grads, trainable_variables)

    return apply


def _guarded_update(tap, clients, context, update, trainable_variables):
    """The update only when every gradient is finite; else the clients' and the tap's skip work."""
    skips = [c.on_skipped for c in clients if c.skip_work(context)]
    if tap.state_before is not None:
        skips.append(_put_back_state(tap))
    otherwise = (lambda: [skip(context) for skip in skips]) if skips else None
    _backend.apply_if(context.finite, update, trainable_variables + tap.optimizer_state, otherwise)
    if not context.replicated and tap.model().optimizer is tap.optimizer:
        tap.decision = context.finite  # for the rest of the step (JAX: state and loss tracker)


def _put_back_state(tap):
    def put_back(context):
        for variable, value in zip(tap.restored, tap.state_before):
            variable.assign(value)

    return put_back
