"""Wall time of `fit` with each callback at its defaults, against plain `fit`.

A small MLP and a small CNN on scikit-learn digits (1348 training images per
epoch, batch 32: per-epoch checks run every 43 steps, as often as they get).
The number of epochs is set per backend and model so that a plain fit lasts
about `--seconds`. Every variant gets its own model, compiled and warmed up
with one fit first (tracing and compilation excluded, as for the plain fit;
the callbacks keep their traced step between fits); then the variants are
timed in `--rounds` interleaved rounds, and each ratio is the median over
rounds of (time with the callback / plain time in the same round). Each
timed fit uses new callback instances, as a user would: their set-up counts.

This 2-core machine's timing noise is about the size of the targets (one fit
varies by 10-20% from run to run, and a fixed order of the variants biased
identical fits by 3-4% by their position in the round). So the defaults are
many short rounds, the order rotates from round to round, garbage collection
is off while a fit is timed (as in timeit), the no-op callback (an empty
`keras.callbacks.Callback`) shows the noise floor, and `--spread` adds the
quartiles of the per-round ratios.

`--per-call N` measures what a callback costs per `fit` call (set-up,
tear-down, the probe capture: once per `fit`, whatever its length; searches
that call `fit` many times pay it each time): every variant is timed on fits
of one epoch over the first N batches, where that fixed cost is most of the
fit, and each cell is the median over rounds of the milliseconds added to
the plain fit of the same round, then the ratio, then the time inside the
callbacks' `on_train_begin` and `on_train_end`. (Solving time = call +
epochs * epoch from fits of two lengths left both unknowns below this
machine's noise.)

`--long` times the longer fits the structure issue measured: a CNN of two
3x3 convolutions and Dense 128 on every digit tiled 4x (113 steps of batch
64 per epoch), 2-epoch fits, plain, with a no-op callback and with all three,
the callback instances made once and reused by every fit; the whole fit and
its median epoch against the plain fit's.

`--hooks` adds, per cell, the time spent inside the callbacks' own hooks
(each hook a callback overrides, timed by a thin proxy), median over rounds,
as a share of the plain fit: the host side of the cost, measured directly
rather than as a difference of two noisy fits. The rest of a cell's cost is
in-graph (see `bench_step_cost.py`) or Keras's own handling of callbacks.

    python benchmarks/bench_callbacks.py [--rounds 40] [--seconds 0.25] [--only MLP] [--spread] [--hooks] [--per-call 8]
    python benchmarks/bench_callbacks.py --long [--rounds 20]
"""

import argparse
import gc
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_actkit as ak  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _common import load_digits_split  # noqa: E402

CALLBACKS = {
    "no-op callback": lambda: [keras.callbacks.Callback()],
    "DeadNeuronMonitor()": lambda: [ak.callbacks.DeadNeuronMonitor()],
    "GradientNormLogger()": lambda: [ak.callbacks.GradientNormLogger()],
    "NaNGuard()": lambda: [ak.callbacks.NaNGuard()],
    "GradientNormLogger() + NaNGuard()": lambda: [ak.callbacks.GradientNormLogger(), ak.callbacks.NaNGuard()],
    "all three": lambda: [ak.callbacks.DeadNeuronMonitor(), ak.callbacks.GradientNormLogger(),
                          ak.callbacks.NaNGuard()],
}


def mlp():
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


def cnn():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, activation="softmax"),
    ])


def workloads(x, only=None):
    """(name, model builder, inputs) of each benchmarked model whose name contains `only`."""
    for name, build in (("MLP 64-128-128-10", mlp), ("CNN 3 conv", cnn)):
        if only is None or only in name:
            yield name, build, (x if build is mlp else x.reshape(-1, 8, 8, 1))


HOOKS = [name for name in dir(keras.callbacks.Callback) if name.startswith("on_")]


class HookTimer(keras.callbacks.Callback):
    """Forwards to `inner` the hooks it overrides (only those: Keras turns off
    asynchronous dispatch for a callback with a batch-end hook), adding up the
    time spent in them."""

    def __init__(self, inner, clock):
        super().__init__()
        self.inner, self.clock = inner, clock  # clock: [every hook, on_train_begin and on_train_end]
        for name in HOOKS:
            method = getattr(inner, name)
            if getattr(method, "_is_default", False):
                continue

            def timed(*args, _method=method, _per_call=name in ("on_train_begin", "on_train_end"), **kwargs):
                start = time.perf_counter()
                try:
                    return _method(*args, **kwargs)
                finally:
                    self.clock[0] += time.perf_counter() - start
                    if _per_call:
                        self.clock[1] += time.perf_counter() - start

            setattr(self, name, timed)

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)


def timed_fit(model, x, y, callbacks, epochs, batch_size=32):
    # As timeit does: collect first, no garbage collection while timing (a
    # collection landing in one variant's fit is noise, not its cost).
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks)
        return time.perf_counter() - start
    finally:
        gc.enable()


def measure(build, data, labels, epochs_list, rounds, hooks):
    """Times of every variant (plain first) at each number of epochs: {(variant, epochs): [seconds per round]},
    and the time inside the callbacks' hooks of the first entry of `epochs_list`."""
    variants = {"plain": lambda: []} | CALLBACKS
    models = {}
    for variant, make in variants.items():
        keras.utils.set_random_seed(0)
        models[variant] = build()
        models[variant].compile("adam", "sparse_categorical_crossentropy")
        timed_fit(models[variant], data, labels, make(), 1)  # warm-up: trace and compile
    times = {(variant, epochs): [] for variant in variants for epochs in epochs_list}
    hook_times = {variant: [] for variant in variants}
    order = [(variant, epochs) for variant in variants for epochs in epochs_list]
    for round_ in range(rounds):
        # The order rotates every round: on this machine a fixed order
        # biased identical fits by 3-4% by their position in the round.
        shift = round_ % len(order)
        for variant, epochs in order[shift:] + order[:shift]:
            clock = [0.0, 0.0]
            callbacks = variants[variant]()
            if hooks:
                callbacks = [HookTimer(callback, clock) for callback in callbacks]
            times[variant, epochs].append(timed_fit(models[variant], data, labels, callbacks, epochs))
            if epochs == epochs_list[0]:
                hook_times[variant].append(clock)
    return times, hook_times


def ratio_cell(times, plain, hook_times, spread):
    ratios = sorted(t / p for t, p in zip(times, plain))
    cell = f"{statistics.median(ratios):.3f}"
    if spread:
        quartiles = statistics.quantiles(ratios, n=4)
        cell += f" ({quartiles[0]:.2f}-{quartiles[2]:.2f})"
    if hook_times is not None:
        cell += f" [hooks {statistics.median(h[0] / p for h, p in zip(hook_times, plain)):.1%}]"
    return cell


def per_call_cell(times, plain, hook_times):
    """ms added to the plain fit of the same round, the ratio, and ms inside on_train_begin/end (medians)."""
    added = statistics.median(t - p for t, p in zip(times, plain))
    ratio = statistics.median(t / p for t, p in zip(times, plain))
    set_up = statistics.median(h[1] for h in hook_times)
    return f"{1000 * added:+.1f} ms, {ratio:.3f} [begin+end {1000 * set_up:.1f} ms]"


def long_cnn():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


class EpochClock(keras.callbacks.Callback):
    """Wall time of each epoch (epoch hooks only: Keras keeps its asynchronous dispatch)."""

    def __init__(self):
        super().__init__()
        self.epochs, self._start = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self._start)


def long_fits(rounds, epochs=2):
    """Whole fits and their epochs, plain / with all three callbacks, on a longer fit: every digit
    (1797) tiled 4x, two 3x3 convolutions of 32 and Dense 128, batch 64 (113 steps per epoch),
    `epochs`-epoch fits; the callback instances are made once and reused by every fit, as in a
    script that calls `fit` in a loop. Each variant also carries an `EpochClock`."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = np.tile((x / 16.0).astype("float32").reshape(-1, 8, 8, 1), (4, 1, 1, 1))
    y = np.tile(y.astype("int32"), 4)
    variants = {"plain": [], "no-op callback": [keras.callbacks.Callback()],
                "all three": CALLBACKS["all three"]()}
    models, fits, epoch_times = {}, {v: [] for v in variants}, {v: [] for v in variants}
    for variant, callbacks in variants.items():
        keras.utils.set_random_seed(0)
        models[variant] = long_cnn()
        models[variant].compile("adam", "sparse_categorical_crossentropy")
        models[variant].fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=callbacks)  # warm-up
    order = list(variants)
    for round_ in range(rounds):
        shift = round_ % len(order)
        for variant in order[shift:] + order[:shift]:
            clock = EpochClock()
            fits[variant].append(timed_fit(models[variant], x, y, variants[variant] + [clock], epochs, 64))
            epoch_times[variant].append(statistics.median(clock.epochs))
    print(f"### {keras.backend.backend()}: {epochs}-epoch fits of 113 steps (CNN, 7188 samples, batch 64), "
          f"callbacks reused across fits; median of {rounds} interleaved rounds\n")
    print("| variant | fit (s) | fit / plain | epoch (s) | epoch / plain |")
    print("|---|---|---|---|---|")
    for variant in variants:
        cells = []
        for times in (fits, epoch_times):
            ratios = [t / p for t, p in zip(times[variant], times["plain"])]
            quartiles = statistics.quantiles(ratios, n=4)
            cells += [f"{statistics.median(times[variant]):.3f}",
                      f"{statistics.median(ratios):.3f} ({quartiles[0]:.2f}-{quartiles[2]:.2f})"]
        print(f"| {variant} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=0.25, help="target length of a plain fit")
    parser.add_argument("--only", default=None, help="run only workloads whose name contains this")
    parser.add_argument("--spread", action="store_true", help="also print the quartiles of the ratios")
    parser.add_argument("--hooks", action="store_true", help="also print the time inside the callbacks' hooks")
    parser.add_argument("--per-call", type=int, default=None, metavar="N",
                        help="the cost per fit call, from fits of one epoch over the first N batches")
    parser.add_argument("--long", action="store_true",
                        help="2-epoch fits of 113 steps with the same callback instances reused (whole fit and epoch)")
    args = parser.parse_args()
    if args.long:
        return long_fits(args.rounds)
    (x, y), _ = load_digits_split(0)
    if args.per_call:
        print(f"### {keras.backend.backend()}: ms added per fit call (one epoch of {args.per_call} batches) and "
              f"ratio to the plain fit, median of {args.rounds} interleaved rounds after a warm-up\n")
        print("| model | plain fit (ms) | " + " | ".join(CALLBACKS) + " |")
        print("|---" * (len(CALLBACKS) + 2) + "|")
    else:
        print(f"### {keras.backend.backend()}: fit time / plain fit, median of {args.rounds} interleaved rounds "
              "after a warm-up\n")
        print("| model | epochs of 1348 | plain fit (s) | " + " | ".join(CALLBACKS) + " |")
        print("|---" * (len(CALLBACKS) + 3) + "|")
    for name, build, data in workloads(x, args.only):
        if args.per_call:
            rows = 32 * args.per_call
            times, hook_times = measure(build, data[:rows], y[:rows], [1], args.rounds, hooks=True)
            cells = [per_call_cell(times[v, 1], times["plain", 1], hook_times[v]) for v in CALLBACKS]
            print(f"| {name} | {1000 * statistics.median(times['plain', 1]):.0f} | " + " | ".join(cells) + " |")
            continue
        keras.utils.set_random_seed(0)
        probe = build()
        probe.compile("adam", "sparse_categorical_crossentropy")
        timed_fit(probe, data, y, [], 1)
        epochs = max(1, round(args.seconds / (timed_fit(probe, data, y, [], 3) / 3)))
        times, hook_times = measure(build, data, y, [epochs], args.rounds, args.hooks)
        cells = [ratio_cell(times[v, epochs], times["plain", epochs], hook_times[v] if args.hooks else None,
                            args.spread) for v in CALLBACKS]
        print(f"| {name} | {epochs} | {statistics.median(times['plain', epochs]):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
