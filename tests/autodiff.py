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
