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

`--split N` separates what a callback costs per `fit` call from what it
costs per epoch: every variant is also timed at N epochs in each round, and
time(epochs) = call + epochs * epoch gives both (solved per round, medians
over rounds). Its table has, per cell, the per-epoch ratio to a plain fit's
epoch and the milliseconds added per call (set-up and tear-down, once per
`fit`, whatever its length); searches that call `fit` many times pay the
second each time.

`--hooks` adds, per cell, the time spent inside the callbacks' own hooks
(each hook a callback overrides, timed by a thin proxy), median over rounds,
as a share of the plain fit: the host side of the cost, measured directly
rather than as a difference of two noisy fits. The rest of a cell's cost is
in-graph (see `bench_step_cost.py`) or Keras's own handling of callbacks.

    python benchmarks/bench_callbacks.py [--rounds 40] [--seconds 0.25] [--only MLP] [--spread] [--hooks] [--split 4]
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
        self.inner, self.clock = inner, clock
        for name in HOOKS:
            method = getattr(inner, name)
            if getattr(method, "_is_default", False):
                continue

            def timed(*args, _method=method, **kwargs):
                start = time.perf_counter()
                try:
                    return _method(*args, **kwargs)
                finally:
                    self.clock[0] += time.perf_counter() - start

            setattr(self, name, timed)

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)


def timed_fit(model, x, y, callbacks, epochs):
    # As timeit does: collect first, no garbage collection while timing (a
    # collection landing in one variant's fit is noise, not its cost).
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=callbacks)
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
            clock = [0.0]
            callbacks = variants[variant]()
            if hooks:
                callbacks = [HookTimer(callback, clock) for callback in callbacks]
            times[variant, epochs].append(timed_fit(models[variant], data, labels, callbacks, epochs))
            if epochs == epochs_list[0]:
                hook_times[variant].append(clock[0])
    return times, hook_times


def ratio_cell(times, plain, hook_times, spread):
    ratios = sorted(t / p for t, p in zip(times, plain))
    cell = f"{statistics.median(ratios):.3f}"
    if spread:
        quartiles = statistics.quantiles(ratios, n=4)
        cell += f" ({quartiles[0]:.2f}-{quartiles[2]:.2f})"
    if hook_times is not None:
        cell += f" [hooks {statistics.median(h / p for h, p in zip(hook_times, plain)):.1%}]"
    return cell


def split_cell(short, long, plain_short, plain_long, epochs):
    """Per-epoch ratio and ms added per call, from fits of 1 and `epochs` epochs in the same rounds."""
    per_epoch = [(lg - sh) / (epochs - 1) for sh, lg in zip(short, long)]
    plain_epoch = [(lg - sh) / (epochs - 1) for sh, lg in zip(plain_short, plain_long)]
    ratio = statistics.median(e / p for e, p in zip(per_epoch, plain_epoch))
    added = statistics.median((sh - e) - (psh - pe) for sh, e, psh, pe in zip(short, per_epoch, plain_short,
                                                                                plain_epoch))
    return f"{ratio:.3f} / {1000 * added:+.0f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=0.25, help="target length of a plain fit")
    parser.add_argument("--only", default=None, help="run only workloads whose name contains this")
    parser.add_argument("--spread", action="store_true", help="also print the quartiles of the ratios")
    parser.add_argument("--hooks", action="store_true", help="also print the time inside the callbacks' hooks")
    parser.add_argument("--split", type=int, default=None, metavar="N",
                        help="separate the per-call and per-epoch cost, with fits of 1 and N epochs")
    args = parser.parse_args()
    (x, y), _ = load_digits_split(0)
    if args.split:
        print(f"### {keras.backend.backend()}: per-epoch time / plain, and ms added per fit call, from fits of "
              f"1 and {args.split} epochs, median of {args.rounds} interleaved rounds after a warm-up\n")
        print("| model | plain epoch (s) | plain call (ms) | " + " | ".join(CALLBACKS) + " |")
    else:
        print(f"### {keras.backend.backend()}: fit time / plain fit, median of {args.rounds} interleaved rounds "
              "after a warm-up\n")
        print("| model | epochs of 1348 | plain fit (s) | " + " | ".join(CALLBACKS) + " |")
    print("|---" * (len(CALLBACKS) + 3) + "|")
    for name, build, data in workloads(x, args.only):
        if args.split:
            times, _ = measure(build, data, y, [1, args.split], args.rounds, hooks=False)
            cells = [split_cell(times[v, 1], times[v, args.split], times["plain", 1], times["plain", args.split],
                                args.split) for v in CALLBACKS]
            epoch = [(lg - sh) / (args.split - 1) for sh, lg in zip(times["plain", 1], times["plain", args.split])]
            call = [sh - e for sh, e in zip(times["plain", 1], epoch)]
            print(f"| {name} | {statistics.median(epoch):.3f} | {1000 * statistics.median(call):.0f} | "
                  + " | ".join(cells) + " |")
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
