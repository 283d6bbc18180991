"""What the tap's clients see of one `apply` call: the gradients, the step, whether they are finite."""

import keras

from keras_actkit import _backend, _keras_internals, _layer_paths


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
