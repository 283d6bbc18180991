import os
import subprocess
import sys
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, out):
    """Run an example in quick mode, on the active backend, in a fresh process."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend()},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_quickstart_runs_and_reloads_identically(tmp_path):
    result = run_example("quickstart.py", tmp_path)
    assert "identical predictions: True" in result.stdout
    assert (tmp_path / "quickstart.keras").is_file()


def test_dead_relu_example_reports_and_plots(tmp_path):
    result = run_example("dead_relu.py", tmp_path)
    for label in ("| ReLU |", "| ReLU + revive=True |", "| LeakyReLU6 + matched init |"):
        assert label in result.stdout
    assert (tmp_path / "dead_relu.png").stat().st_size > 10_000
