"""Forward+backward time and peak memory: keras_actkit layers vs Keras built-ins.

On the active backend (`KERAS_BACKEND`), each candidate runs `sum(layer(x))`
and its gradient with respect to `x` and the layer's weights, on a
4096x4096 float32 tensor. Times are the median of interleaved repetitions
after a warm-up, eager and compiled (tf.function / jax.jit; torch eager only,
since `torch.compile` is what `jit_compile=True` means there and is measured
by the test suite, not here). Peak memory is the rise of the resident set
during one step (after compilation, for compiled mode), in a fresh child
process per candidate and mode; for JAX compiled it is XLA's own
`memory_analysis()` (temporaries + outputs), since XLA reuses buffers.

Besides our layers and the nearest built-ins, "route" rows time alternative
formulas, which is how each layer's implementation was chosen:

    python benchmarks/bench_layers.py            # full run, markdown table
    python benchmarks/bench_layers.py --quick    # smoke test
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_actkit as ak  # noqa: E402

SLOPE = 0.1


class Route(keras.layers.Layer):
    """An alternative formula as a layer, with an optional per-feature slope."""

    def __init__(self, fn, with_alpha=False, **kwargs):
        super().__init__(**kwargs)
        self.fn, self.with_alpha = fn, with_alpha

    def build(self, input_shape):
        if self.with_alpha:
            self.alpha = self.add_weight(
                shape=input_shape[1:], initializer=keras.initializers.Constant(0.25)
            )

    def call(self, x):
        return self.fn(x, self.alpha) if self.with_alpha else self.fn(x)


def candidates():
    """name -> (group, role, factory). role: ours | built-in | route."""
    return {
        "LeakyReLU6": ("LeakyReLU6", "ours", lambda: ak.layers.LeakyReLU6(SLOPE)),
        "ReLU(max_value=6, negative_slope=a)": (
            "LeakyReLU6", "built-in",
            lambda: keras.layers.ReLU(max_value=6.0, negative_slope=SLOPE),
        ),
        "min(max(a*x, x), 6) (the formula, literally)": (
            "LeakyReLU6", "route",
            lambda: Route(lambda x: ops.minimum(ops.maximum(x * SLOPE, x), 6.0)),
        ),
        "where(x<0, a*x, min(x, 6))": (
            "LeakyReLU6", "route",
            lambda: Route(lambda x: ops.where(x < 0, x * SLOPE, ops.minimum(x, 6.0))),
        ),
        "min(leaky_relu(x, a), 6)": (
            "LeakyReLU6", "route",
            lambda: Route(lambda x: ops.minimum(ops.leaky_relu(x, SLOPE), 6.0)),
        ),
        "HardSwish": ("HardSwish", "ours", ak.layers.HardSwish),
        'Activation("hard_swish")': (
            "HardSwish", "built-in", lambda: keras.layers.Activation("hard_swish")
        ),
        "x*relu6(x+3)/6 in keras.ops": (
            "HardSwish", "route",
            lambda: Route(lambda x: x * ops.relu6(x + 3.0) / 6.0),
        ),
        "PReLU": ("PReLU", "ours", ak.layers.PReLU),
        "keras.layers.PReLU": (
            "PReLU", "built-in",
            lambda: keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25)),
        ),
        "max(x, 0) + a*min(x, 0)": (
            "PReLU", "route",
            lambda: Route(lambda x, a: ops.maximum(x, 0.0) + a * ops.minimum(x, 0.0), with_alpha=True),
        ),
        "where(x<0, a*x, x)": (
            "PReLU", "route",
            lambda: Route(lambda x, a: ops.where(x < 0, a * x, x), with_alpha=True),
        ),
    }


def step_fn(layer, x, compiled):
    """A zero-argument callable running one forward+backward pass, synchronised."""
    backend = keras.backend.backend()
    layer.build(x.shape)
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)

        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                total = tf.reduce_sum(layer(x))
            return tape.gradient(total, [x] + layer.trainable_variables)

        run = tf.function(step) if compiled else step
        return lambda: [g.numpy() for g in run()]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(x)
        params = [v.value for v in layer.trainable_variables]

        def total(params, x):
            out, _ = layer.stateless_call(params, [], x)
            return jnp.sum(out)

        grad = jax.grad(total, argnums=(0, 1))
        run = jax.jit(grad) if compiled else grad
        return lambda: jax.block_until_ready(run(params, x))
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)

        def step():
            x.grad = None
            for v in layer.trainable_variables:
                v.value.grad = None
            layer(x).sum().backward()
            return x.grad

        return step
    raise NotImplementedError(backend)


def time_all(table, x, reps, modes):
    """Median seconds per (name, mode), interleaving candidates on every rep."""
    names = list(table)
    steps = {}
    for mode in modes:
        for name in names:
            fn = step_fn(table[name][2](), x, compiled=(mode == "compiled"))
            fn()  # warm-up: tracing, compilation, allocator growth
            fn()
            steps[name, mode] = fn
    samples = {key: [] for key in steps}
    for _ in range(reps):
        for key, fn in steps.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    return {key: statistics.median(v) for key, v in samples.items()}


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def memory_child(name, size, compiled):
    """Runs in a fresh process: peak RSS rise (MiB) during one step."""
    x = np.random.default_rng(0).normal(size=(size, size)).astype("float32")
    layer = candidates()[name][2]()
    if compiled and keras.backend.backend() == "jax":
        # XLA reuses the warm-up's buffers, so RSS shows nothing; ask XLA for
        # the compiled program's temporaries and outputs instead (exact).
        return print(json.dumps({"peak_mib": jax_compiled_bytes(layer, x) / 2**20}))
    fn = step_fn(layer, x, compiled=compiled)
    if compiled:
        fn()  # trace and compile outside the measured step
    # Reset the high-water mark (Linux >= 4.0) so it covers only the step.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kib("VmRSS")
    fn()
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - base) / 1024}))


def jax_compiled_bytes(layer, x):
    import jax
    import jax.numpy as jnp

    layer.build(x.shape)
    params = [v.value for v in layer.trainable_variables]

    def total(params, x):
        return jnp.sum(layer.stateless_call(params, [], x)[0])

    stats = jax.jit(jax.grad(total, argnums=(0, 1))).lower(params, jnp.asarray(x)).compile()
    stats = stats.memory_analysis()
    return stats.temp_size_in_bytes + stats.output_size_in_bytes


def measure_memory(name, size, mode):
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, "--size", str(size)]
        + (["--compiled"] if mode == "compiled" else []),
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small tensor, 2 reps")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--only", help="time only this layer group, e.g. LeakyReLU6")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.size, args.compiled)
    if args.quick:
        args.size, args.reps = 256, 2

    backend = keras.backend.backend()
    modes = ["eager"] if backend == "torch" else ["eager", "compiled"]
    table = candidates()
    if args.only:
        table = {n: c for n, c in table.items() if c[0] == args.only}
    x = np.random.default_rng(0).normal(0, 4, size=(args.size, args.size)).astype("float32")
    times = time_all(table, x, args.reps, modes)
    memory = {(n, m): measure_memory(n, args.size, m) for n in table for m in modes}

    print(f"\n### {backend}: {args.size}x{args.size} float32, forward+backward, "
          f"median of {args.reps} interleaved reps (load {os.getloadavg()[0]:.1f})\n")
    header = "| layer | compared with | " + " | ".join(f"time ratio ({m})" for m in modes)
    header += " | " + " | ".join(f"peak MiB ours / theirs ({m})" for m in modes)
    print(header + " |")
    print("|---" * (2 + 2 * len(modes)) + "|")
    for group in dict.fromkeys(g for g, _, _ in table.values()):
        ours = next(n for n, (g, r, _) in table.items() if g == group and r == "ours")
        for other, (g, role, _) in table.items():
            if g != group or role == "ours":
                continue
            ratios = " | ".join(f"{times[ours, m] / times[other, m]:.2f}" for m in modes)
            mems = " | ".join(f"{memory[ours, m]:.0f} / {memory[other, m]:.0f}" for m in modes)
            label = other if role == "built-in" else f"route: {other}"
            print(f"| {ours} | {label} | {ratios} | {mems} |")
    print("\nAbsolute medians (ms): " + ", ".join(
        f"{n} {m} {t * 1e3:.1f}" for (n, m), t in times.items()))


if __name__ == "__main__":
    main()
