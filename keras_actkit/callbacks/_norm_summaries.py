"""GradientNormLogger's TensorBoard output: its records as `tf.summary` scalars and histograms."""


import numpy as np


def as_logs(layers, global_norm, norms, ratios):
    """One record (or the epoch's means) as `logs` keys: `grad_norm/global`, `grad_norm/<layer>`,
    `update_ratio/<layer>`."""
    out = {"grad_norm/global": float(global_norm)}
    out.update({f"grad_norm/{name}": float(value) for name, value in zip(layers, norms)})
    out.update({f"update_ratio/{name}": float(value) for name, value in zip(layers, ratios)})
    return out


class SummaryWriter:
    """Writes records to a TensorBoard log directory with `tf.summary` (TensorFlow imported on first write).

    Each value of `as_logs` is a scalar at the record's optimizer step; the
    log10 gradient norms of all layers are one histogram per record
    (`grad_norm/log10_layers`).
    """

    def __init__(self, log_dir, layers):
        self.log_dir, self.layers = log_dir, layers
        self._writer = None

    def write(self, records):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for k, step in enumerate(records.step):
                step = int(step)
                logs = as_logs(self.layers, records.global_norm[k], records.norms[k], records.update_ratios[k])
                for name, value in logs.items():
                    tf.summary.scalar(name, value, step=step)
                norms = records.norms[k]
                finite = norms[np.isfinite(norms) & (norms > 0)]
                if finite.size:
                    tf.summary.histogram("grad_norm/log10_layers", np.log10(finite), step=step)
        self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
