"""The callbacks and find_lr on two devices, each in a fresh process (devices are set before the backend starts)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import only_backends

HERE = Path(__file__).resolve().parent / "distributed"


def _run(script):
    result = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(HERE.parents[1])})
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@only_backends("jax")
def test_jax_data_parallel_logs_the_global_gradient_and_guards():
    out = _run("jax_data_parallel.py")
    assert out["devices"] == 2
    # The tap sees the gradient of the whole (sharded) batch: equal to jax.grad on the full batch.
    np.testing.assert_allclose(out["logged_step0"], out["expected_step0"], rtol=1e-5)
    assert out["skipped"] == 2 and out["finite"]
    # The skipped steps changed nothing, and logs["loss"] is the run's without the bad batch.
    assert out["max_diff_vs_clean"] < 1e-6
    np.testing.assert_allclose(out["loss"], out["clean_loss"], rtol=1e-5)
    assert out["dead_checks"] == 2
    assert out["lr_points"] > 0 and out["lr_restored"]


@only_backends("tensorflow")
def test_tf_mirrored_strategy_logs_the_all_reduced_gradient_and_guards():
    out = _run("tf_mirrored.py")
    assert out["replicas"] == 2
    # The tap sees the gradient summed over the replicas: tf.GradientTape on the whole batch, one device.
    np.testing.assert_allclose(out["logged_step0"], out["expected_step0"], rtol=1e-5)
    # One NaN row on the first replica: the whole step is skipped on both, and the weights are bit for
    # bit those of a run without that batch.
    assert out["skipped"] == 1 and out["finite"] and out["max_diff_vs_clean"] == 0.0
    assert out["logged_steps"] == [0, 1, 1, 2]  # the skipped step is recorded (NaN norm), the counter kept
    assert out["dead_checks"] == 1 and out["probe_is_first_rows"]
    assert out["lr_points"] > 0 and out["lr_restored"]
