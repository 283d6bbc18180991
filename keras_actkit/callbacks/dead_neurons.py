"""DeadNeuronMonitor: find dead ReLU units during `fit`, and optionally revive them.

The parts live in `keras_actkit.callbacks._dead_units`: finding the watched
activations (`sites`), capturing the probe (`capture`), counting (`counting`,
pure functions) and ReDo (`redo`); this module decides when to check and what
to say.
"""

import warnings

import keras
import numpy as np

from keras_actkit import _backend, _validation
from keras_actkit.callbacks import _log_order
from keras_actkit.callbacks._dead_units import counting, redo
from keras_actkit.callbacks._dead_units.capture import ProbeCapture, default_probe_size
from keras_actkit.callbacks._dead_units.sites import watched_sites


class DeadNeuronMonitor(keras.callbacks.Callback):
    """Find dead ReLU units (and saturated sigmoid/tanh units) while training.

    A unit — a channel for convolutions — is dead when its pre-activation is
    <= 0 on every probe sample (and every position): it outputs a constant,
    gets no gradient through the ReLU and does not learn again. Every
    ReLU-family activation is watched, fused (`Dense(..., activation="relu")`,
    convolutions) or standalone (`ReLU`, `Activation("relu")`, `LeakyReLU`,
    `LeakyReLU6`, `PReLU`), also inside nested models; for sigmoid, tanh and
    other bounded activations the fraction of units saturated (within
    `saturation` of a bound on every sample) is reported instead.

    Each check is one forward pass of a probe model (sharing the model's
    weights) over a fixed probe batch: `probe_data`, or the first
    `probe_size` samples the training itself draws (no second pass through
    the data). By default that is 256 samples, or a sixteenth of an epoch's
    samples when that is fewer (at least 64): a forward pass costs about a
    third of a training step per sample, so a check per epoch then costs at
    most ~2% of the epoch's compute. A smaller probe sees fewer inputs: a
    unit active on a few inputs only is more often taken for dead.

    Writes `dead_fraction/<layer>` (or `saturated_fraction/<layer>`) into
    `logs` (before `CSVLogger` and `TensorBoard` read them, whatever the
    order of the callbacks), warns once per layer when a fraction exceeds `threshold`,
    naming the remedy, and keeps `.history`: per layer the fraction at each
    check, `still_dead` (units dead at this check and the one before) and
    `revived`; `.dead_units` holds the last check's boolean mask per layer.

    Layers are named by their path in the model (`block1/conv` inside a
    nested model), the same key in every callback of the kit. A layer called
    more than once (shared) is one layer: a unit is dead when it is dead on
    every call. A subclassed
    model has no graph to probe layer by layer: the monitor then says so once
    per fit and adds nothing to `logs`. Probe samples holding a NaN or an
    infinity are left out (their margins are NaN and cannot count). All
    state, `history` included, is reset at each `fit`'s start.

    With `revive=True`, units dead on two checks in a row are recycled as in
    ReDo (Sokar et al. 2023): incoming weights redrawn with the initializer
    matched to the activation, bias reset to 0, outgoing weights zeroed (so
    the network's function is unchanged), and those entries of the optimizer's
    slots restarted: signed ones (momentum, first moments) at 0, second
    moments at the mean of the live units' entries. Counted in
    `logs["revived/<layer>"]`.

    Args:
        probe_data: Inputs to probe with (array, list/dict of arrays, or an
            `(x, y)` tuple whose `x` is used), non-empty and finite. Defaults
            to None: capture from training.
        every_n_epochs: Check at the end of every n-th epoch. Defaults to 1.
        every_n_steps: If set, check every n training steps instead.
        threshold: Warn when a layer's dead (saturated) fraction exceeds this,
            in (0, 1]. Defaults to 0.25.
        revive: Recycle units dead on two checks in a row. Defaults to False.
        probe_size: Samples to capture when `probe_data` is None, >= 1.
            Defaults to None: 256, or a sixteenth of an epoch's samples when
            that is fewer, but at least 64.
        saturation: Distance from a bound that counts as saturated, in
            (0, 0.5). Defaults to 0.01.
        seed: Seed for the revived weights: None or an integer >= 0. With a
            seed, a fit's revivals are reproducible and each draws new weights.

    Example:
    ```python
    monitor = keras_actkit.callbacks.DeadNeuronMonitor()
    model.fit(x, y, epochs=10, callbacks=[monitor])
    monitor.history["dead_fraction"]        # {layer: [fraction per check]}
    monitor.plot().savefig("dead.png")
    ```
    """

    def __init__(self, probe_data=None, every_n_epochs=1, every_n_steps=None, threshold=0.25,
                 revive=False, probe_size=None, saturation=0.01, seed=None):
        super().__init__()
        if isinstance(probe_data, tuple) and len(probe_data) in (2, 3):
            probe_data = probe_data[0]
        self.probe_data = _validation.finite_array("probe_data", probe_data, allow_none=True)
        self.every_n_epochs = _validation.integer("every_n_epochs", every_n_epochs, minimum=1)
        self.every_n_steps = _validation.integer("every_n_steps", every_n_steps, minimum=1, allow_none=True)
        self.threshold = _validation.number("threshold", threshold, 0, 1, min_inclusive=False)
        self.revive = _validation.boolean("revive", revive)
        self.probe_size = _validation.integer("probe_size", probe_size, minimum=1, allow_none=True)
        self.saturation = _validation.number("saturation", saturation, 0, 0.5, False, False)
        self.seed = _validation.seed("seed", seed)
        if self.every_n_steps is not None:
            self.on_train_batch_end = self._on_step
        self._root, self._capture, self._probe, self._converted = None, None, None, None
        self._reset()

    def _reset(self):
        """Per-fit state, as at a fit's start."""
        self.history = {"step": [], "epoch": [], "dead_fraction": {}, "saturated_fraction": {},
                        "still_dead": {}, "revived": {}}
        self.dead_units = {}  # layer -> boolean mask of the last check
        self.sites = []
        self._warned, self._previous, self._steps, self._epoch = set(), {}, 0, None
        self._revivals = 0  # revivals so far: each draws with its own seed (`redo.revival_seed`)

    # -- set-up ----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        _log_order.run_before_loggers(self)
        self._reset()
        self._probe = self.probe_data
        self._capture = None
        if self._find_sites(self.model) and self._probe is None:
            # Wrapped at the first batch, after every callback's on_train_begin
            # (the gradient tap may replace the train function there).
            # At most one epoch of batches: the probe is fixed when the first epoch ends.
            self._capture = ProbeCapture(self.model, self._target_size, (self.params or {}).get("steps"))

    def _find_sites(self, model):
        """Find the watched activations of `model`; False (said once) when there is nothing to check."""
        if isinstance(model, keras.Sequential) and not model.built:
            raise ValueError("DeadNeuronMonitor needs a built model: give the Sequential an `Input`.")
        found = watched_sites(model)
        if found is None:
            self._root, self.sites = None, []
            self._warn_once("subclassed", f"DeadNeuronMonitor: {type(model).__name__} {model.name!r} is a subclassed "
                            "model, whose activations cannot be probed layer by layer: nothing is monitored and no "
                            "dead_fraction/* key is logged. Build the model with the Functional API or "
                            "keras.Sequential (a subclassed model may wrap a functional one) to monitor it.")
            return False
        self._root, self.sites, notes = found[0], list(found[1]), found[2]
        for note in notes:
            self._warn_once(note, f"DeadNeuronMonitor: {note}.")
        if not self.sites:
            self._warn_once("no sites", "DeadNeuronMonitor: the model has no ReLU-family or saturating activation "
                            "(relu, leaky_relu, LeakyReLU6, PReLU, sigmoid, tanh, ...); nothing to monitor.")
        return bool(self.sites)

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _target_size(self, batch):
        """How many samples to capture, given the first batch's size."""
        if self.probe_size is not None:
            return self.probe_size
        return default_probe_size(batch, (self.params or {}).get("steps"))

    def on_train_batch_begin(self, batch, logs=None):
        if self._capture is not None and self._capture.pending:
            self._capture.install()

    def _finish_capture(self):
        if self._capture is not None:
            probe = self._capture.finish()
            self._capture = None
            if probe is not None:
                self._probe = probe

    # -- checks ----------------------------------------------------------------
    def _on_step(self, batch, logs=None):
        # Installed as on_train_batch_end only with every_n_steps: any batch hook
        # makes Keras turn off asynchronous dispatch, which on JAX alone costs
        # more than every check of a fit.
        self._steps += 1
        if self._steps % self.every_n_steps == 0 and self._probe is not None:
            self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch
        self._finish_capture()  # data smaller than probe_size: probe with what one epoch gave
        if self.every_n_steps is None and (epoch + 1) % self.every_n_epochs == 0:
            self._check(logs)

    def on_train_end(self, logs=None):
        self._finish_capture()

    def check(self, x=None):
        """Run one check now, on `x` (finite inputs) or the probe batch; returns {layer: fraction}.

        Outside `fit`, give the model first (`monitor.set_model(model)`) and `x`.
        """
        x = _validation.finite_array("x", x, allow_none=True)
        if self.model is None:
            raise ValueError("DeadNeuronMonitor.check() needs a model: call it inside `fit`, or call "
                             "`monitor.set_model(model)` first.")
        if self._root is None or self._root is not (watched_sites(self.model) or (None,))[0]:
            self._find_sites(self.model)
        if x is not None:
            self._probe = x
        if self._probe is None:
            raise ValueError("DeadNeuronMonitor.check() needs inputs to probe: pass `x`, or `probe_data=` "
                             "to the constructor.")
        return self._check(None)

    def _check(self, logs):
        if self._root is None or not self.sites or self._probe is None:
            return {}
        model = self.model  # on JAX, a running fit's state goes back into the variables
        optimizer = getattr(model, "optimizer", None)
        # The step is read before the probe runs: right after it, the same read
        # took ~100 us instead of ~10 (JAX MLP, inside fit).
        step = self._steps if optimizer is None else int(_backend.read_values(model, [optimizer.iterations])[0])
        inputs, margins = self._probe_inputs(), []
        if inputs is None:
            self._warn_once("not finite", "DeadNeuronMonitor: no probe sample is finite; no check.")
            return {}
        self._root.margins(inputs, margins)
        problem = counting.probe_problem(margins)
        if problem is not None:
            self._warn_once("not finite", f"DeadNeuronMonitor: no check at step {step}: {problem}.")
            return {}
        self.history["step"].append(step)
        self.history["epoch"].append(self._epoch)
        records = [self._count(site, margin) for site, margin in zip(self.sites, margins)]
        for record in records:
            self._publish(record, logs)
        if logs is not None and self.revive:
            logs["revived/total"] = sum(r.revived for r in records)
        return {r.name: r.fraction for r in records}

    def _count(self, site, margin):
        mask = counting.bad_units(margin, site.kind, self.saturation)
        record = counting.LayerCheck(site.name, site.kind, counting.fraction(mask), mask)
        if site.kind == "dead":
            still = counting.still_dead(mask, self._previous.get(site.name))
            record.still_dead = int(np.count_nonzero(still))
            if self.revive:
                units = np.flatnonzero(still)
                if units.size and site.kernel_layer is None:
                    self._warn_once(("revive", site.name),
                                    f"DeadNeuronMonitor: cannot revive {site.name!r}: {site.why_not_revivable}.")
                self._revivals += 1
                record.revived = redo.revive(self.model, site, units, redo.revival_seed(self.seed, self._revivals))
                if record.revived:
                    mask = mask.copy()
                    mask[units] = False
            self._previous[site.name] = mask
            self.dead_units[site.name] = mask
        return record

    def _publish(self, record, logs):
        key = f"{record.kind}_fraction"
        self.history[key].setdefault(record.name, []).append(record.fraction)
        if logs is not None:
            logs[f"{key}/{record.name}"] = record.fraction
        if record.kind == "dead":
            self.history["still_dead"].setdefault(record.name, []).append(record.still_dead)
            if self.revive:
                self.history["revived"].setdefault(record.name, []).append(record.revived)
                if logs is not None:
                    logs[f"revived/{record.name}"] = record.revived
        if record.fraction > self.threshold:
            site = next(s for s in self.sites if s.name == record.name)
            self._warn_once(("threshold", record.name),
                            counting.advice(site.name, site.kind, site.info.name, record.fraction))

    def _probe_inputs(self):
        # The probe as backend tensors, converted once per probe (it is fixed
        # for the fit) instead of at every check.
        if self._converted is None or self._converted[0] is not self._probe:
            # Samples with a NaN (captured from bad training data) cannot count: left out.
            finite, dropped = counting.finite_samples(self._probe)
            if dropped:
                self._warn_once("nan probe", f"DeadNeuronMonitor: {dropped} probe sample(s) hold a NaN or an "
                                "infinity and are left out of the checks.")
            empty = not len(keras.tree.flatten(finite)[0])
            self._converted = (self._probe, None if empty else keras.tree.map_structure(
                keras.ops.convert_to_tensor, finite))
        return self._converted[1]

    # -- results -----------------------------------------------------------------
    def plot(self, ax=None):
        """Dead (and saturated) fraction per layer over the checks; returns the figure."""
        from keras_actkit.plotting import get_axes

        figure, ax = get_axes(ax)
        x = self.history["step"]
        for key, style in (("dead_fraction", "-"), ("saturated_fraction", "--")):
            for name, values in self.history[key].items():
                ax.plot(x[: len(values)], values, style, marker="o", ms=3,
                        label=f"{name} ({'dead' if key == 'dead_fraction' else 'saturated'})")
        ax.axhline(self.threshold, color="0.6", ls=":", lw=1, label=f"threshold {self.threshold:g}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training step")
        ax.set_ylabel("fraction of units")
        ax.set_title("DeadNeuronMonitor")
        if self.history["dead_fraction"] or self.history["saturated_fraction"]:
            ax.legend(fontsize="small")
        return figure

