"""How well does `ak.diagnose` find and repair known problems, and how often does it cry wolf?

A table of cases, each a model with a known problem or a healthy one, on data
from scikit-learn. Per case: what `diagnose` found, when (share of the
budget), the repaired validation accuracy vs the healthy twin's, and the time
of `diagnose` (alone, and with `repair=True`) relative to one plain `fit` of
the same model and settings. The figures:

- recall: buggy cases where a problem of the expected kinds was found;
- false alarms: healthy cases where any problem was reported;
- repair rate: buggy cases whose repaired validation accuracy is within 0.05
  of their healthy twin's plain fit;
- time ratios: median over cases, wall-clock and this process's CPU time
  (on a shared machine the wall-clock ratio of one case moves with the
  others' load between the plain fit and `diagnose`; the CPU-time ratio
  much less), and the largest ratio with repair with its case.

Includes AUTOTRAINER's two public demos in Keras 3 (circles: eight
Dense(5, sigmoid), He-uniform, Adam 1e-3, batch 128 -> vanishing gradient;
blobs: Dense(50, relu) + softmax, SGD 0.01 momentum 0.9, batch 1 ->
oscillating loss), the single-unit softmax of Stack Overflow 31880720, and
healthy twins.

    KERAS_BACKEND=jax python benchmarks/diagnose_cases.py [--cases a,b] [--no-repair] [--quick]
"""

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import datasets  # noqa: E402

import keras_actkit as ak  # noqa: E402

L = keras.layers


def _split(x, y, seed=0):
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype("float32"), y[order]
    cut = int(0.8 * len(x))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def circles():
    return _split(*datasets.make_circles(1000, noise=0.1, random_state=1))


def blobs():
    return _split(*datasets.make_blobs(1000, centers=3, cluster_std=2, random_state=2))


def moons():
    return _split(*datasets.make_moons(1000, noise=0.2, random_state=0))


def digits():
    x, y = datasets.load_digits(return_X_y=True)
    return _split(x / 16.0, y)


def digits_raw():
    x, y = datasets.load_digits(return_X_y=True)
    return _split(x * 16.0, y)  # 0..256: image-like pixel values, never scaled


def classification():
    x, y = datasets.make_classification(1000, n_features=10, n_informative=6, random_state=0)
    return _split(x, y)


def mlp(inputs, hidden, out_units, out_activation, optimizer, loss, **dense):
    layers = [keras.Input((inputs,))] + [L.Dense(units, **kw) for units, kw in hidden]
    layers.append(L.Dense(out_units, activation=out_activation, **dense))
    model = keras.Sequential(layers)
    model.compile(optimizer, loss, metrics=["accuracy"])
    return model


BCE, SCE = "binary_crossentropy", "sparse_categorical_crossentropy"


def _relu(units, **kw):
    return units, dict(activation="relu", kernel_initializer="he_normal", **kw)


# name: (data, build, epochs, batch_size, expected kinds (empty: healthy), healthy twin)
CASES = {
    # AUTOTRAINER demo 1 and its twin.
    "circles_vanishing": (circles, lambda: mlp(2, [(5, dict(activation="sigmoid", kernel_initializer="he_uniform"))] * 8,
                                               1, "sigmoid", keras.optimizers.Adam(1e-3), BCE), 30, 128,
                          {"vanishing_gradient", "saturated_activation"}, "circles_healthy"),
    "circles_healthy": (circles, lambda: mlp(2, [_relu(32)] * 2, 1, "sigmoid", keras.optimizers.Adam(1e-2), BCE),
                        30, 32, set(), None),
    # AUTOTRAINER demo 2 and its twin.
    "blobs_oscillating": (blobs, lambda: mlp(2, [(50, dict(activation="relu"))], 3, "softmax",
                                             keras.optimizers.SGD(0.01, momentum=0.9), SCE), 8, 1,
                          {"oscillating_loss", "lr_too_high", "non_finite", "exploding_gradient", "dead_relu"},
                          "blobs_healthy"),
    "blobs_healthy": (blobs, lambda: mlp(2, [(50, dict(activation="relu"))], 3, "softmax",
                                         keras.optimizers.Adam(1e-3), SCE), 8, 32, set(), None),
    # Stack Overflow 31880720: a single-unit softmax.
    "single_unit_softmax": (moons, lambda: mlp(2, [_relu(16)] * 2, 1, "softmax", keras.optimizers.Adam(1e-2), BCE),
                            20, 32, {"output_loss_mismatch"}, "moons_sigmoid"),
    "moons_sigmoid": (moons, lambda: mlp(2, [_relu(16)] * 2, 1, "sigmoid", keras.optimizers.Adam(1e-2), BCE),
                      20, 32, set(), None),
    # One case per remaining kind the trial can show.
    "nan_sgd_lr": (classification, lambda: mlp(10, [_relu(32)] * 2, 1, "sigmoid", keras.optimizers.SGD(1e4), BCE),
                   10, 32, {"non_finite", "lr_too_high", "exploding_gradient"}, "classification_healthy"),
    "dead_negative_bias": (classification, lambda: mlp(10, [_relu(32, bias_initializer=keras.initializers.Constant(-10.0))] * 2,
                                                       1, "sigmoid", keras.optimizers.Adam(1e-3), BCE),
                           10, 32, {"dead_relu"}, "classification_healthy"),
    "lr_tiny": (classification, lambda: mlp(10, [_relu(32)] * 2, 1, "sigmoid", keras.optimizers.SGD(1e-6), BCE),
                10, 32, {"lr_too_low", "not_learning"}, "classification_healthy"),
    "unscaled_digits": (digits_raw, lambda: mlp(64, [(64, dict(activation="tanh"))] * 2, 10, "softmax",
                                                keras.optimizers.Adam(1e-3), SCE),
                        10, 32, {"unscaled_input"}, "digits_healthy"),
    "linear_stack": (circles, lambda: mlp(2, [(32, {})] * 3, 1, "sigmoid", keras.optimizers.Adam(1e-2), BCE), 30, 32,
                     {"missing_nonlinearity"}, "circles_healthy"),
    "hidden_softmax": (digits, lambda: mlp(64, [(64, dict(activation="softmax"))] * 2, 10, "softmax",
                                           keras.optimizers.Adam(1e-3), SCE), 10, 32, {"hidden_softmax"},
                       "digits_healthy"),
    "zero_init": (classification, lambda: mlp(10, [(32, dict(activation="tanh", kernel_initializer="zeros"))] * 2,
                                               1, "sigmoid", keras.optimizers.Adam(1e-3), BCE), 10, 32,
                  {"bad_initialization"}, "classification_healthy"),
    "logits_into_ce": (digits, lambda: mlp(64, [_relu(64)], 10, None, keras.optimizers.Adam(1e-3), SCE), 10, 32,
                       {"output_loss_mismatch"}, "digits_healthy"),
    # Healthy runs that must not be flagged.
    "classification_healthy": (classification, lambda: mlp(10, [_relu(32)] * 2, 1, "sigmoid",
                                                           keras.optimizers.Adam(1e-3), BCE), 10, 32, set(), None),
    "digits_healthy": (digits, lambda: mlp(64, [_relu(64)] * 2, 10, "softmax", keras.optimizers.Adam(1e-3), SCE),
                       10, 32, set(), None),
    "digits_some_dead": (digits, lambda: mlp(64, [_relu(256)] * 2, 10, "softmax", keras.optimizers.Adam(1e-2), SCE),
                         10, 32, set(), None),
    "digits_small_lr": (digits, lambda: mlp(64, [_relu(64)] * 2, 10, "softmax", keras.optimizers.SGD(3e-3), SCE),
                        10, 32, set(), None),
    "digits_batch8": (digits, lambda: mlp(64, [_relu(64)] * 2, 10, "softmax", keras.optimizers.SGD(0.05, momentum=0.9),
                                          SCE), 10, 8, set(), None),
    "moons_tanh": (moons, lambda: mlp(2, [(32, dict(activation="tanh"))] * 3, 1, "sigmoid", keras.optimizers.Adam(1e-2),
                                      BCE), 20, 32, set(), None),
}


def _clocks():
    """Wall-clock and this process's CPU time: on a shared machine the second moves less with others' load."""
    return np.array([time.perf_counter(), time.process_time()])


def plain_fit(case, seed=0):
    data, build, epochs, batch_size = CASES[case][:4]
    (x, y), val = data()
    keras.utils.set_random_seed(seed)
    model = build()
    start = _clocks()
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=val, verbose=0)
    return _clocks() - start, history.history["val_accuracy"][-1]


def run_case(case, repair, seed=0):
    data, build, epochs, batch_size, expected, twin = CASES[case]
    (x, y), val = data()
    fit_times, plain_acc = plain_fit(case, seed)
    fit_time = fit_times[0]
    keras.utils.set_random_seed(seed)
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = _clocks()
        d = ak.diagnose(model, x, y, validation_data=val, epochs=epochs, batch_size=batch_size)
        detect_times = _clocks() - start
        row = dict(case=case, expected=expected, found=[p.kind for p in d.problems], fit_time=fit_time,
                   detect_ratio=detect_times[0] / fit_time, detect_cpu_ratio=detect_times[1] / fit_times[1],
                   plain_acc=plain_acc,
                   fraction=min([p.fraction for p in d.problems if p.fraction is not None], default=None))
        if repair and expected:
            keras.utils.set_random_seed(seed)
            model = build()
            start = _clocks()
            r = ak.diagnose(model, x, y, validation_data=val, epochs=epochs, batch_size=batch_size, repair=True)
            repair_times = _clocks() - start
            row["repair_ratio"], row["repair_cpu_ratio"] = repair_times / fit_times
            row["repair"] = r.repair["name"] if r.repair else None
            row["repaired_acc"] = r.repair["score"] if r.repair else r.score
            row["attempts"] = [(a.name, round(a.score, 3), a.problems, a.given_up) for a in r.attempts]
            row["twin_acc"] = plain_fit(twin, seed)[1]
    return row


def _extremes(rows, repaired):
    """The median CPU-time ratios, and the largest repair ratio (wall-clock and CPU) with its case."""
    if not repaired:
        return f"CPU time: diagnose / plain fit median {statistics.median(r['detect_cpu_ratio'] for r in rows):.2f}"
    wall = max(repaired, key=lambda r: r["repair_ratio"])
    cpu = max(repaired, key=lambda r: r["repair_cpu_ratio"])
    return (f"CPU time: diagnose / plain fit median {statistics.median(r['detect_cpu_ratio'] for r in rows):.2f}; "
            f"with repair median {statistics.median(r['repair_cpu_ratio'] for r in repaired):.2f}; largest with "
            f"repair: {wall['repair_ratio']:.2f} wall-clock ({wall['case']}), {cpu['repair_cpu_ratio']:.2f} CPU "
            f"({cpu['case']})")


def summarise(rows):
    buggy = [r for r in rows if r["expected"]]
    healthy = [r for r in rows if not r["expected"]]
    lines = ["| case | expected | found | detected at | val acc (plain) | repair | repaired acc | twin acc | "
             "diagnose / fit | with repair / fit |", "|" + " --- |" * 10]
    for r in rows:
        at = "" if r["fraction"] is None else f"{r['fraction']:.0%}"
        lines.append(
            f"| {r['case']} | {', '.join(sorted(r['expected'])) or 'healthy'} | {', '.join(r['found']) or 'healthy'} "
            f"| {at} | {r['plain_acc']:.3f} | {r.get('repair') or ''} | "
            f"{'' if 'repaired_acc' not in r else format(r['repaired_acc'], '.3f')} | "
            f"{'' if 'twin_acc' not in r else format(r['twin_acc'], '.3f')} | {r['detect_ratio']:.2f} | "
            f"{'' if 'repair_ratio' not in r else format(r['repair_ratio'], '.2f')} |")
    recall = np.mean([bool(set(r["found"]) & r["expected"]) for r in buggy]) if buggy else float("nan")
    false_alarms = np.mean([bool(r["found"]) for r in healthy]) if healthy else float("nan")
    repaired = [r for r in buggy if "twin_acc" in r]
    rate = np.mean([r["repaired_acc"] >= r["twin_acc"] - 0.05 for r in repaired]) if repaired else float("nan")
    fractions = [r["fraction"] for r in buggy if r["fraction"] is not None and r["fraction"] > 0]
    lines += ["", f"recall {recall:.2f} ({len(buggy)} buggy cases), false alarms {false_alarms:.2f} "
              f"({len(healthy)} healthy), repair rate {rate:.2f} ({len(repaired)})",
              f"diagnose / plain fit: median {statistics.median(r['detect_ratio'] for r in rows):.2f}; "
              f"with repair: median {statistics.median([r['repair_ratio'] for r in repaired] or [float('nan')]):.2f}; "
              f"detected (dynamic findings) at median {statistics.median(fractions or [float('nan')]):.0%} of the budget",
              _extremes(rows, repaired),
              f"backend {keras.backend.backend()}"]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-repair", action="store_true")
    args = parser.parse_args()
    # One-time costs (imports Keras's serialisation pulls in, first compilations) out of the timings.
    run_case("moons_sigmoid", repair=False)
    rows = []
    for case in args.cases.split(","):
        row = run_case(case, not args.no_repair)
        print(row, flush=True)
        rows.append(row)
    print(summarise(rows))


if __name__ == "__main__":
    main()
