"""The few things a callback must do in a backend's own way, one module per backend.

Every function here has the same signature on every backend; callers import this
package and never branch on the backend themselves.

- `apply_if(condition, apply_fn, variables, otherwise=None)`: run `apply_fn()`
  (which assigns `variables`) only when the scalar boolean tensor `condition`
  is true, inside the traced training step; else `otherwise()` if given
  (TensorFlow and torch only: on JAX the skip branch is pure).
- `read_values(model, variables)`: current values of model or optimizer
  variables as numpy arrays, also in the middle of a JAX epoch (where the values
  live in the trainer's state, not in the variables).
- `write_values(model, variables, values)`: assign them so that the next step
  of a running `fit` starts from them.
- `request_values(model, variables)`: a fetch, a function returning the
  variables' values as numpy arrays when called. On JAX, whose steps run
  asynchronously, the request starts a copy of the running values and returns
  without waiting, and the fetch, called a few steps later, returns the values
  of the request's time, finding the copy done instead of waiting for the
  running step (which drains the pipeline of dispatched steps); elsewhere the
  fetch reads the variables when it is called.
- `all_finite(tensors)`: one scalar boolean tensor, true when every element of
  every tensor is finite, from one reduction per tensor and no copy (on torch
  a Python bool: the step runs eagerly).
- `global_apply(body, apply, grads, variables)`: call `body(seen, update)`
  where `seen` are the gradients the update uses and `update()` runs
  `apply(grads, variables)`. Directly, except under a TensorFlow
  `tf.distribute` strategy with several replicas: there the optimizer gets
  each replica's local gradient and all-reduces it inside its update, so the
  body runs once in cross-replica context with the gradients summed over the
  replicas, and `update()` runs the real update on every replica (how Keras's
  `LossScaleOptimizer` makes one skip decision for all replicas); the body is
  then called with `replicated=True`.
- `make_train_function(model, optimizer=None, carried=())`: a newly traced
  train function for `model` (`model.make_train_function(force=True)`),
  returned; `model.train_function` is left as it was. It calls
  `model.train_step` as it is when the step is traced. On JAX its state
  carries the variables `carried` after `optimizer`'s (see below).
- `call_train_function(function, args, carried)`: call such a function with
  the arguments `fit` gives the train function. On JAX the values of
  `carried` (variables the optimizer does not hold) go in after the
  optimizer's and come out into the variables, and `fit` sees its own state;
  elsewhere the state lives in the variables and this is `function(*args)`.
- `guarded_train_step(step, args, optimizer, carried, tap)`: run the train
  step `step(*args)` so that a step whose update the tap skips leaves
  `tap.restored` (state the forward pass writes: BatchNormalization's moving
  statistics) as it was: on TensorFlow and torch their values when the step
  begins go to `tap.state_before` (the tap's skip branch puts them back); on
  JAX the step's input values are kept where `tap.decision` says the update
  was skipped, and `carried` count among `optimizer`'s variables while the
  step is traced.
- `finite_terms(tensors)`, `finite_of(terms)`: per tensor a float32 scalar,
  0 when every element is finite and NaN otherwise (a TensorFlow
  `IndexedSlices` gradient by its values); one boolean from them.
- `compiles_random_per_shape()`: whether each new shape given to a random op
  is a compilation (JAX), so that many shapes are better drawn as pieces of one.
- `eager_steps()`: whether training steps run eagerly (torch): clients may
  then decide in Python.
- `loss_tracked_after_apply()`: whether Keras's train step updates the loss
  tracker after the optimizer's `apply` (JAX) rather than before it.
- `bookkeeping_in_skip_branch()`: whether a guard writes a bad step's
  counters inside the skip branch of `apply_if` (TensorFlow, where a
  conditional of its own costs a function call per step).
- `scaled_squares(tensor)`: (c, s), float32 scalars whose c·√s is a
  gradient's L2 norm without overflow past ~1.8e19 (c its largest |entry|,
  kept within [2^-100, 2^100]), also for a sparse one (a TensorFlow
  `IndexedSlices` of an `Embedding`: repeated ids' rows are summed first).
- `recording_train_function(model, function, record, limit=None)`: a train
  function that calls `record(batch)` with the batches `function` (the
  current train function) takes and runs `function`'s step on each
  unchanged, until `record` returns True (enough) or `limit` batches are
  recorded. Its attribute `finished` turns True when it is no longer needed:
  the caller then puts `function` back.
- `variable_scope(model)`: a context in which variables made for `model` land
  where its training puts them: a TensorFlow model's `tf.distribute` strategy
  scope; elsewhere a scope that does nothing.
- `inference_function(model)`: `model`'s forward pass in inference mode,
  compiled once (`jax.jit`, `tf.function`; torch eager under `no_grad`):
  `fn(x)` returns the flattened outputs as numpy arrays, for `x` a structure
  of tensors made by `keras.ops.convert_to_tensor`. It reads the variables'
  values when called (on JAX: sync a running fit's state first). Cheaper than
  `predict_on_batch`, which on JAX writes every variable back after the call.
"""

import importlib

import keras

_MODULES = {"tensorflow": "tensorflow_impl", "jax": "jax_impl", "torch": "torch_impl"}


_LOADED = {}


def _impl():
    # Called several times per step (every step, on torch's eager step): a
    # dict lookup, where importlib.import_module costs ~5 us a call.
    backend = keras.backend.backend()
    module = _LOADED.get(backend)
    if module is None:
        if backend not in _MODULES:
            raise ValueError(f"keras_actkit callbacks support the tensorflow, jax and torch backends; got {backend!r}.")
        module = _LOADED[backend] = importlib.import_module(f"keras_actkit._backend.{_MODULES[backend]}")
    return module


# Each name is the current backend's function of that name (what each does: the list above).
API = ("all_finite", "apply_if", "bookkeeping_in_skip_branch", "call_train_function", "compiles_random_per_shape",
       "eager_steps", "finite_of", "finite_terms", "global_apply", "guarded_train_step", "inference_function",
       "loss_tracked_after_apply", "make_train_function", "read_values", "recording_train_function",
       "request_values", "scaled_squares", "variable_scope", "write_values")


def __getattr__(name):
    # Looked up at each use, as a forwarding function would be (PEP 562).
    if name in API:
        return getattr(_impl(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(API))
