"""NaNGuard's parts, one concern each.

- `counters`: the layout of the guard's counter vector and its updates (numpy on the host, `keras.ops` in-graph);
- `client`: the tap client, the in-graph part: the skip decision's bookkeeping;
- `loss`: Keras's loss tracker: the filter that leaves a skipped batch out of it, the running loss;
- `decisions`: pure functions: whether a snapshot may be taken, when to roll back, the cause, the report, the messages.
"""
