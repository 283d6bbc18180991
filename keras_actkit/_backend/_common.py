"""Variable reads and writes shared by the TensorFlow and torch backends (state lives in the variables)."""

import contextlib

import keras
import numpy as np


def read_values(model, variables):
    # `numpy()` also reads a tf.distribute SyncOnRead variable (a metric's
    # total under a strategy: the sum over replicas), which `.value` cannot.
    return [np.array(v.numpy()) for v in variables]


def write_values(model, variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


def request_values(model, variables):
    # Steps run synchronously here: the fetch reads the values current then,
    # with the running backend's own read (TensorFlow's bare read op).
    from keras_actkit import _backend

    return lambda: _backend.read_values(model, variables)


def finite_terms(tensors):
    """Per tensor, a float32 scalar: 0 when every element is finite, NaN when one is not.

    x * 0 is 0 for every finite x and NaN for NaN and +-inf, so the sum of those
    products is 0 exactly when every element is finite (no overflow: every term
    is 0). One fused multiply-reduce per tensor, no copy: on the TensorFlow MLP
    step a concatenation of all gradients followed by one is_finite cost 140 us,
    this 28 us (paired train_on_batch calls).
    """
    return [keras.ops.cast(keras.ops.sum(t * 0), "float32") for t in tensors]


def finite_of(terms):
    """One scalar boolean tensor from `finite_terms`: true when every tensor was finite."""
    total = None
    for term in terms:
        total = term if total is None else total + term
    return keras.ops.convert_to_tensor(True) if total is None else keras.ops.isfinite(total)


def all_finite(tensors):
    return finite_of(finite_terms(tensors))


def global_apply(body, apply, grads, variables):
    # One process sees every gradient: nothing to gather.
    return body(grads, lambda: apply(grads, variables))


def make_train_function(model, optimizer=None, carried=()):
    """A new train function calling `model.train_step` as it is when the step is traced (or run).

    Keras binds `model.train_step` when it makes the function (TensorFlow,
    JAX): a step function of its own looks the method up at each call, so
    the tap can shadow it while one call runs. On JAX it also gets its own
    trace (`jax.jit` shares its cache between jit objects of one bound method:
    measured, a second fit with another `every_n_steps` recorded at the first
    one's). Here the step state lives in the variables: nothing is carried.
    """
    own = model.__dict__.get("train_step")
    current = model.train_function
    model.train_step = lambda *args: model.train_step(*args)
    try:
        model.make_train_function(force=True)
    finally:
        if own is not None:
            model.train_step = own
        else:
            del model.train_step
    function, model.train_function = model.train_function, current
    return function


def call_train_function(function, args, carried):
    return function(*args)


def guarded_train_step(step, args, optimizer, carried, tap):
    # The state the forward pass writes (BatchNormalization's moving
    # statistics), as the step begins: a skipped step puts it back.
    # tf.function orders these reads before the layer's writes (same resource).
    if tap.restored:
        tap.state_before = [keras.ops.copy(v.value) for v in tap.restored]
    return step(*args)


def eager_steps():
    return False


def compiles_random_per_shape():
    return False  # random ops run eagerly, any shape at the same cost


def loss_tracked_after_apply():
    """Whether the train step updates the loss tracker after the optimizer's apply (JAX) or before it."""
    return False


def bookkeeping_in_skip_branch():
    """Whether a guard writes a bad step's counters in the skip branch of the update's conditional.

    On TensorFlow each conditional of its own is a function call per step; on
    JAX the skip branch must be pure, and on torch the step is eager.
    """
    return False


def scaled_squares(tensor):
    """(c, s), float32 scalars with c·√s the tensor's L2 norm: s is the sum of the squares of the entries / c.

    A plain sum of squares overflows float32 once the norm passes ~1.8e19 (a
    finite, exploding gradient read as infinite) and loses gradients below
    ~1e-19 to underflow; c·√s overflows only past the float32 range itself.
    c is the largest |entry| kept within [2^-100, 2^100], so that 1/c is a
    normal number (XLA on CPU flushes subnormal ones to 0: dividing by 3e38
    gave 0). An infinite or NaN entry makes s, and the norm, inf or NaN.
    """
    ops = keras.ops
    tensor = ops.cast(tensor, "float32")
    scale = ops.clip(ops.max(ops.abs(tensor), initial=0.0), 2.0 ** -100, 2.0 ** 100)
    return scale, ops.sum(ops.square(tensor / scale))


def variable_scope(model):
    return contextlib.nullcontext()
