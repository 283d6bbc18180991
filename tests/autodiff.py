"""Gradients from each backend's own autodiff, as an independent reference."""

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
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
        # An Embedding's gradient is sparse (IndexedSlices): densified, repeated rows summed.
        return [tf.convert_to_tensor(g).numpy() for g in grads]
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_of(weights):
            y_pred, _ = model.stateless_call(weights, non_trainable, x, training=True)
            return loss_fn(y, y_pred)

        return [np.asarray(g) for g in jax.grad(loss_of)(trainable)]
    if backend == "torch":
        import torch

        for v in model.trainable_variables:
            v.value.grad = None
        loss = loss_fn(torch.as_tensor(y), model(x, training=True))
        loss.backward()
        return [v.value.grad.detach().cpu().numpy() for v in model.trainable_variables]
    raise NotImplementedError(backend)
