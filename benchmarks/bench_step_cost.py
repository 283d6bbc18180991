"""In-graph cost per training step of GradientNormLogger and NaNGuard, in microseconds.

`bench_callbacks.py` measures whole fits, where this machine's noise (10-20%
from one fit to the next) is about the size of the targets. This one isolates
what the gradient tap adds to each step: two identical models (the MLP and
CNN of `bench_callbacks.py`), one with the callback's tap attached (its
`on_train_begin` run by hand, so its host checks never run), called one
`train_on_batch` each, alternately, thousands of times; the figure is the
median of the paired differences (callback step - plain step), with the
median plain step for scale. Pairing neighbouring calls cancels the slow
drifts that dominate whole-fit timings. `train_on_batch` adds Keras's
per-call overhead to both sides, not to the difference.

The last column is the reference for NaNGuard's skip: the same plain model
compiled with Keras's own `LossScaleOptimizer` around the same Adam (at
float32), whose update also runs inside a conditional on the gradients'
finiteness.

    python benchmarks/bench_step_cost.py [--pairs 1000] [--only MLP]
"""

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _common import load_digits_split  # noqa: E402
from bench_callbacks import workloads  # noqa: E402

VARIANTS = {
    "GradientNormLogger()": lambda: [ak.callbacks.GradientNormLogger()],
    "NaNGuard()": lambda: [ak.callbacks.NaNGuard()],
    "both": lambda: [ak.callbacks.GradientNormLogger(), ak.callbacks.NaNGuard()],
}


def compiled(build, x, y, optimizer="adam"):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer, "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return model


def sync(logs):
    # The step's result on the host: the call has finished, also where dispatch is asynchronous.
    return float(keras.ops.convert_to_numpy(logs["loss"] if isinstance(logs, dict) else logs))


def paired(plain, other, batches, pairs):
    differences, plain_times = [], []
    for i in range(pairs):
        x, y = batches[i % len(batches)]
        order = (plain, other) if i % 2 else (other, plain)  # alternate who goes first
        times = {}
        for model in order:
            start = time.perf_counter()
            sync(model.train_on_batch(x, y, return_dict=True))
            times[id(model)] = time.perf_counter() - start
        differences.append(times[id(other)] - times[id(plain)])
        plain_times.append(times[id(plain)])
    return statistics.median(differences) * 1e6, statistics.median(plain_times) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--only", default=None, help="run only workloads whose name contains this")
    args = parser.parse_args()
    (x, y), _ = load_digits_split(0)
    print(f"### {keras.backend.backend()}: extra time per training step (median of {args.pairs} paired "
          "train_on_batch calls), microseconds\n")
    print("| model | plain step (µs) | " + " | ".join(VARIANTS) + " | Keras's LossScaleOptimizer |")
    print("|---" * (len(VARIANTS) + 3) + "|")
    for name, build, data in workloads(x, args.only):
        batches = [(data[i:i + 32], y[i:i + 32]) for i in range(0, 32 * 40, 32)]
        plain = compiled(build, data, y)
        cells, plain_step = [], []
        for variant, make in VARIANTS.items():
            other = compiled(build, data, y)
            callbacks = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for callback in callbacks:
                    callback.set_model(other)
                    callback.on_train_begin()
                paired(plain, other, batches, 50)  # warm-up: trace the tapped step
                extra, step = paired(plain, other, batches, args.pairs)
                for callback in callbacks:
                    callback.on_train_end()
            cells.append(f"{extra:+.0f} ({extra / step:+.1%})")
            plain_step.append(step)
        # The reference: Keras's own conditional update, a LossScaleOptimizer around the same Adam (float32).
        other = compiled(build, data, y, keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()))
        paired(plain, other, batches, 50)
        extra, step = paired(plain, other, batches, args.pairs)
        cells.append(f"{extra:+.0f} ({extra / step:+.1%})")
        print(f"| {name} | {statistics.median(plain_step):.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
