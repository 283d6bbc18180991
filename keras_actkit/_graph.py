"""The model graph: who consumes each symbolic tensor, across nested models.

Used by `match_initializers` (which activation acts on a kernel) and
`DeadNeuronMonitor` (where the activations are). Sequential and Functional
models, and models nested in either, are walked; a subclassed model has no
graph to walk and is listed in `Graph.unwalkable`.
"""

import collections

import keras

from keras_actkit import _keras_internals
from keras_actkit.activation_info import describe_activation

# Layers between a kernel and its activation that leave the pre-activation's
# role intact: they normalise, drop, perturb or move values, never mix them.
# Of those, the ones that also keep every unit in its place, unscaled by
# statistics: drop, noise, identity.
UNIT_PRESERVING = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
PASS_THROUGH = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    *UNIT_PRESERVING,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
)
# Joins whose every output unit is one input unit, or a sum of the inputs'
# units at the same place (a residual `Add`): the activation after the join
# acts on each kernel that feeds it.
JOINS = (keras.layers.Add, keras.layers.Subtract, keras.layers.Average, keras.layers.Concatenate)
# Input preprocessing: a kernel behind these still reads raw data.
INPUT_PREPROCESSING = (keras.layers.Normalization, keras.layers.Rescaling)
# (layer class, attribute of the kernel(s) whose output the activation sees,
# attribute of its initializer). A separable conv's depthwise kernel feeds its
# pointwise kernel linearly, so only the pointwise one is matched.
KERNELS = (
    (keras.layers.SeparableConv1D, "pointwise_kernel", "pointwise_initializer"),
    (keras.layers.SeparableConv2D, "pointwise_kernel", "pointwise_initializer"),
    (keras.layers.DepthwiseConv1D, "kernel", "depthwise_initializer"),
    (keras.layers.DepthwiseConv2D, "kernel", "depthwise_initializer"),
    *((cls, "kernel", "kernel_initializer") for cls in (
        keras.layers.Dense, keras.layers.EinsumDense,
        keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
        keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose,
    )),
)
# Names Keras gives the weight matrices of its layers (biases, scales and
# statistics excluded): a layer owning one of these has a kernel.
KERNEL_NAMES = frozenset({"kernel", "recurrent_kernel", "embeddings", "pointwise_kernel", "depthwise_kernel"})


def kernel_spec(layer):
    """`(kernel attribute, initializer attribute)` of a layer whose kernel can be matched, else None."""
    for cls, kernel_attr, init_attr in KERNELS:
        if isinstance(layer, cls):
            return kernel_attr, init_attr
    return None


def has_kernel(layer):
    """True if `layer` (or a layer inside it) owns a weight matrix: a kernel, recurrent kernel or embedding."""
    return any(weight.path.split("/")[-1] in KERNEL_NAMES for weight in layer.weights)


class Graph:
    """The consumers of every symbolic tensor, across nested functional models.

    The one walk of a model's graph: `nodes_of` gives each walked model's
    nodes (inputs first) to callers that look at every layer call.
    """

    def __init__(self, model):
        self.consumers = collections.defaultdict(list)  # id(tensor) -> [(node, position)]
        self.exits = {}  # id(inner output tensor) -> [outer output tensor]
        self.entries = {}  # (id(model), position) -> inner input tensor
        self.kernel_nodes = []  # (layer, node) of every layer owning a kernel, in graph order
        self.inner_inputs = {}  # id(nested model's input tensor) -> outer tensor
        self.unwalkable = []
        self._nodes = {}  # id(functional or Sequential model) -> its nodes, inputs first
        self._add(model)

    def nodes_of(self, model):
        """The nodes of `model` (the walked model or one nested in it), inputs first; None when it has
        no graph (a subclassed model)."""
        return self._nodes.get(id(model))

    def _add(self, model):
        functional = _keras_internals.functional_of(model)
        if functional is None:
            self.unwalkable.append(model)
            return
        nodes = self._nodes[id(model)] = _keras_internals.nodes_inputs_first(functional)
        for node in nodes:
            for position, tensor in enumerate(node.input_tensors):
                self.consumers[id(tensor)].append((node, position))
            op = node.operation
            if isinstance(op, keras.Model):
                self._add_nested(op, node)
            elif kernel_spec(op) is not None or isinstance(op, keras.layers.Layer) and has_kernel(op):
                self.kernel_nodes.append((op, node))

    def _add_nested(self, inner, node):
        self._add(inner)
        inner_fn = _keras_internals.functional_of(inner)
        if inner_fn is None:
            return
        for position, tensor in enumerate(keras.tree.flatten(inner_fn.inputs)):
            self.entries[(id(inner), position)] = tensor
            if position < len(node.input_tensors):
                self.inner_inputs[id(tensor)] = node.input_tensors[position]
        for inner_out, outer_out in zip(keras.tree.flatten(inner_fn.outputs), node.output_tensors):
            self.exits.setdefault(id(inner_out), []).append(outer_out)

    def reads_model_input(self, tensor):
        """True if `tensor` is the model's input, up to value-preserving or preprocessing layers."""
        for _ in range(10_000):
            op, node = _keras_internals.producer(tensor)
            if op is None or isinstance(op, keras.layers.InputLayer):
                outer = self.inner_inputs.get(id(tensor))
                if outer is None:
                    return True
                tensor = outer
            elif isinstance(op, PASS_THROUGH + INPUT_PREPROCESSING):
                tensor = node.input_tensors[0]
            else:
                return False
        return False

    def activations_after(self, tensor, seen=None):
        """The first activation reached from `tensor`, one per path (through normalisation, drop, joins)."""
        seen = set() if seen is None else seen
        if id(tensor) in seen:
            return []
        seen.add(id(tensor))
        found = []
        for outer in self.exits.get(id(tensor), []):
            found += self.activations_after(outer, seen)
        for node, position in self.consumers.get(id(tensor), []):
            op = node.operation
            info = describe_activation(op) if isinstance(op, keras.layers.Layer) else None
            if info is not None:
                found.append(info)
            elif isinstance(op, keras.Model):
                inner = self.entries.get((id(op), position))
                if inner is not None:
                    found += self.activations_after(inner, seen)
            elif isinstance(op, PASS_THROUGH + JOINS):
                found += self.activations_after(node.output_tensors[0], seen)
            else:
                found.append(describe_activation(None))  # mixed linearly: no activation
        return found

