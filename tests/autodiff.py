"""Gradients from each backend's own autodiff, as an independent reference."""

import functools

import keras
import numpy as np


def grad_of_sum(fn, *args):
    """Gradient of `sum(fn(*args))` with respect to every argument, as numpy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            total = tf.reduce_sum(fn(*tensors))
        return [g.numpy() for g in tape.gradient(total, tensors)]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        grads = jax.grad(
            lambda *a: jnp.sum(fn(*a)), argnums=tuple(range(len(args)))
        )(*[jnp.asarray(a) for a in args])
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        fn(*tensors).sum().backward()
        return [t.grad.numpy() for t in tensors]
    raise NotImplementedError(backend)


def model_grads(model, x, y, loss_fn):
    """Gradient of `loss_fn(y, model(x, training=True))` w.r.t. `model.trainable_variables`, as numpy.

    Uses each backend's own autodiff (`tf.GradientTape`, `jax.grad` over
    `stateless_call`, torch autograd), independently of Keras's train step.
    """
    if keras.backend.backend() == "torch":
        import torch

        y = torch.as_tensor(y)
    return trainable_gradients(model, x, lambda y_pred, weights: loss_fn(y, y_pred))


def loss_gradients(model, x, y, sample_weight=None):
    """The gradient the train step hands the optimizer (loss scaling undone), by the backend's own autodiff.

    The loss is Keras's `compute_loss` (compiled losses, `loss_weights`, sample
    weights), the differentiation `tf.GradientTape` / `jax.grad` / torch
    autograd, outside Keras's train step. Under a `LossScaleOptimizer` the loss
    is scaled as the train step scales it and the gradient divided back.
    """
    scale = float(keras.ops.convert_to_numpy(model.optimizer.scale_loss(keras.ops.ones(()))))
    if keras.backend.backend() == "torch":
        import torch

        convert = functools.partial(keras.tree.map_structure, lambda a: None if a is None else torch.as_tensor(a))
        y, sample_weight = convert(y), convert(sample_weight)

    def loss_of(y_pred, weights):
        if weights is None:
            loss = model.compute_loss(x, y, y_pred, sample_weight, training=True)
        else:  # JAX, stateless as its train step
            non_trainable = [v.value for v in model.non_trainable_variables]
            metrics = [v.value for v in model.metrics_variables]
            loss, _ = model.stateless_compute_loss(weights, non_trainable, metrics, x, y, y_pred, sample_weight,
                                                   training=True)
        return loss * scale

    return [g / scale for g in trainable_gradients(model, x, loss_of)]


def trainable_gradients(model, x, loss_of):
    """Gradient of `loss_of(model(x, training=True), weights)` w.r.t. `model.trainable_variables`, as numpy.

    `weights` are the trainable values JAX differentiates (`stateless_call`);
    None on TensorFlow and torch, which read the variables in place.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(model(x, training=True), None)
        grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
        # An Embedding's gradient is sparse (IndexedSlices): densified, repeated rows summed.
        return [tf.convert_to_tensor(g).numpy() for g in grads]
    if backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_of_weights(weights):
            y_pred, _ = model.stateless_call(weights, non_trainable, x, training=True)
            return loss_of(y_pred, weights)

        # One compiled program: cheaper than JAX's op-by-op dispatch of a whole model.
        return [np.asarray(g) for g in jax.jit(jax.grad(loss_of_weights))([v.value for v in model.trainable_variables])]
    if backend == "torch":
        for v in model.trainable_variables:
            v.value.grad = None
        loss_of(model(x, training=True), None).backward()
        grads = [v.value.grad.detach().cpu().numpy() for v in model.trainable_variables]
        for v in model.trainable_variables:
            v.value.grad = None
        return grads
    raise NotImplementedError(backend)


def layer_path(model, variable):
    """The variable's layer path in the model: its path without the model's name and its own name."""
    parts = variable.path.split("/")[:-1]
    if parts and parts[0] == model.name:
        parts = parts[1:]
    return "/".join(parts)


def norms_by_key(model, keys, grads):
    """Per logged key, the L2 norm of the gradients of the variables under that layer path.

    Also checks the keys partition the trainable variables: every variable is
    under exactly one key (no two layers merged, none left out).
    """
    paths = [layer_path(model, v) for v in model.trainable_variables]
    owners = [[k for k in keys if p == k or p.startswith(k + "/")] for p in paths]
    unclaimed = [p for p, o in zip(paths, owners) if not o]
    shared = [(p, o) for p, o in zip(paths, owners) if len(o) > 1]
    assert not unclaimed and not shared, f"keys {keys} do not partition the layers: unclaimed {unclaimed}, " \
                                         f"claimed twice {shared}"
    sums = dict.fromkeys(keys, 0.0)
    for owner, grad in zip(owners, grads):
        sums[owner[0]] += float(np.sum(np.square(grad.astype("float64"))))
    return {k: np.sqrt(s) for k, s in sums.items()}
