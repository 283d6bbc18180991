"""DeadNeuronMonitor's parts, one concern each.

- `sites`: finding the watched activations in a model's graph (and what a revive may touch);
- `capture`: taking the probe batch from the training data as `fit` draws it;
- `counting`: pure functions from per-unit margins to dead / saturated units and fractions;
- `redo`: recycling dead units (ReDo): new incoming weights, zeroed outgoing ones, optimizer slots.
"""
