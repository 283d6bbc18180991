"""The stacked-linear check: a kernel layer without activation that feeds another kernel layer.

A product of linear maps is one linear map, so two kernels with nothing
non-linear between them cost the parameters of two layers for the capacity of
one (NeuraLint's rule). The walk follows the model graph of `_graph.Graph`
(Sequential and Functional models, and models nested in them) from each
linear kernel's output through the layers that keep it linear; it does not go
through joins (`Add`, `Concatenate`): a residual branch that ends linear is
the usual design (a transformer's feed-forward output), not a collapse.
"""

import keras

from keras_actkit._graph import Graph
from keras_actkit.activation_info import describe_activation

KERNEL_LAYERS = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Conv1D, keras.layers.Conv2D,
                 keras.layers.Conv3D)
# Layers that keep a chain of kernels linear (BatchNormalization is affine at inference).
LINEAR_BETWEEN = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.Flatten, keras.layers.Reshape,
                  keras.layers.Permute, keras.layers.BatchNormalization, keras.layers.Identity)


def activation_name(layer):
    """The name of `layer`'s activation (its `activation` argument, or what an activation layer computes)."""
    info = describe_activation(getattr(layer, "activation", None)) if hasattr(layer, "activation") \
        else describe_activation(layer)
    return None if info is None else info.name


def _keeps_linear(layer):
    if isinstance(layer, LINEAR_BETWEEN):
        return True
    return not hasattr(layer, "activation") and activation_name(layer) == "linear"  # Activation("linear")


def _reaches_kernel(graph, tensor, seen):
    """True if `tensor` meets a kernel layer through linear layers only (into and out of nested models)."""
    if id(tensor) in seen:
        return False
    seen.add(id(tensor))
    if any(_reaches_kernel(graph, outer, seen) for outer in graph.exits.get(id(tensor), [])):
        return True
    for node, position in graph.consumers.get(id(tensor), []):
        op = node.operation
        if isinstance(op, keras.Model):
            inner = graph.entries.get((id(op), position))
            if inner is not None and _reaches_kernel(graph, inner, seen):
                return True
        elif isinstance(op, KERNEL_LAYERS):
            return True
        elif isinstance(op, keras.layers.Layer) and _keeps_linear(op):
            if any(_reaches_kernel(graph, out, seen) for out in node.output_tensors):
                return True
    return False


def linear_feeds(model):
    """Names of the kernel layers of `model` without activation whose output reaches another kernel layer
    through linear layers only, in graph order; [] for a model without a graph (subclassed)."""
    graph = Graph(model)
    names = []
    for layer, node in graph.kernel_nodes:
        if not isinstance(layer, KERNEL_LAYERS) or activation_name(layer) != "linear" or layer.name in names:
            continue
        if any(_reaches_kernel(graph, out, set()) for out in node.output_tensors):
            names.append(layer.name)
    return names
