"""Every access to a private Keras attribute, one function each.

A Keras release that renames one of these breaks one function here, and its
test in `tests/` says which attribute moved.
"""


def learning_rate_object(optimizer):
    """`optimizer._learning_rate`: the learning-rate `keras.Variable`, or the schedule (or callable).

    The public `optimizer.learning_rate` evaluates a schedule; callers that
    must restore exactly what was there need the object itself.
    """
    return optimizer._learning_rate


def put_learning_rate_object(optimizer, value):
    """Set `optimizer._learning_rate` directly.

    The public setter untracks the learning-rate variable when a schedule
    replaces it, which changes `optimizer.variables` (the list a checkpoint and
    JAX's training state are built from); a temporary schedule must not.
    """
    optimizer._learning_rate = value


def model_fully_built(model):
    """Whether every layer of `model` is built (`model._flatten_layers()`), as Keras's own `fit` decides."""
    return all(layer.built for layer in model._flatten_layers())


def symbolic_build(model, data_batch):
    """`model._symbolic_build(data_batch=...)`: build the model, its compiled loss and metrics and its
    optimizer from one `(x, y[, sample_weight])` batch, without running a step (what `fit` does on
    JAX and torch before `on_train_begin`; TensorFlow defers it to the first traced step)."""
    model._symbolic_build(data_batch=data_batch)
