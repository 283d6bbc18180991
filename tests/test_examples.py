import os
import subprocess
import sys
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_and_reloads_identically(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend()},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "identical predictions: True" in result.stdout
    assert (tmp_path / "quickstart.keras").is_file()
