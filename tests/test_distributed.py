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
    assert out["dead_checks"] == 2
    assert out["lr_points"] > 0 and out["lr_restored"]


@only_backends("tensorflow")
def test_tf_mirrored_strategy_says_what_it_reports():
    out = _run("tf_mirrored.py")
    # GradientNormLogger runs and says it sees one replica's local gradient;
    # NaNGuard refuses clearly; DeadNeuronMonitor (probe_data) and find_lr work.
    assert out["norm_records"] == 4 and out["norms_finite"] and out["warned_local"]
    assert out["guard"].startswith("NaNGuard does not support tf.distribute strategies yet")
    assert out["dead_checks"] == 1
    assert out["lr_points"] > 0 and out["lr_restored"]
