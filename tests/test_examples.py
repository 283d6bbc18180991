import contextlib
import importlib
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, out, fresh_process=False):
    """Run an example in quick mode, on the active backend, as `python examples/<name> --quick --out <out>`.

    In this process by default: its `main()` with that command line, stdout
    captured (the backend's import is paid once for all the examples). In a
    fresh process where the example must set up devices before any backend
    starts (`fresh_process=True`).
    """
    path = ROOT / "examples" / name
    argv = [str(path), "--quick", "--out", str(out)]
    if fresh_process:
        result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "KERAS_BACKEND": keras.backend.backend()})
        assert result.returncode == 0, result.stderr[-3000:]
        return result
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    stdout, old_argv = io.StringIO(), sys.argv
    sys.path.insert(0, str(path.parent))  # the examples import their `_common` from beside them
    try:
        sys.argv = argv
        with contextlib.redirect_stdout(stdout):
            spec.loader.exec_module(module)
            module.main()
    finally:
        sys.argv = old_argv
        sys.path.remove(str(path.parent))
    return subprocess.CompletedProcess(argv, 0, stdout.getvalue(), "")


def test_quickstart_runs_and_reloads_identically(tmp_path):
    result = run_example("quickstart.py", tmp_path)
    assert "identical predictions: True" in result.stdout
    assert "non-finite steps skipped 0, rollbacks 0" in result.stdout
    assert (tmp_path / "quickstart.keras").is_file()


def test_dead_relu_example_reports_and_plots(tmp_path):
    result = run_example("dead_relu.py", tmp_path)
    for label in ("| ReLU |", "| ReLU + revive=True |", "| LeakyReLU6 + matched init |"):
        assert label in result.stdout
    assert (tmp_path / "dead_relu.png").stat().st_size > 10_000


def test_nan_recovery_example_guard_finishes_where_terminate_on_nan_stops(tmp_path):
    result = run_example("nan_recovery.py", tmp_path)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in result.stdout.splitlines() if line.startswith("| ") and "run |" not in line}
    assert rows["NaN row + TerminateOnNaN"][1] != "0%"  # the poisoned weights stay NaN
    assert rows["NaN row + NaNGuard"][1] == "0%" and rows["NaN row + NaNGuard"][0].startswith("3 of")
    assert rows["LR spike + NaNGuard"][1] == "0%" and rows["LR spike + NaNGuard"][0].startswith("3 of")
    assert (tmp_path / "nan_recovery.png").stat().st_size > 10_000


def test_lr_finder_example_leaves_the_model_untouched(tmp_path):
    result = run_example("lr_finder.py", tmp_path)
    assert "model untouched afterwards: True" in result.stdout
    assert (tmp_path / "lr_finder.png").stat().st_size > 10_000


def test_gradient_health_example_plots_both_heatmaps(tmp_path):
    result = run_example("gradient_health.py", tmp_path)
    assert "| sigmoid |" in result.stdout and "| LeakyReLU6 + matched init |" in result.stdout
    assert (tmp_path / "gradient_health.png").stat().st_size > 10_000


def test_activation_zoo_example_covers_all_seven(tmp_path):
    result = run_example("activation_zoo.py", tmp_path)
    for name in ("sigmoid", "tanh", "ReLU", "LeakyReLU6", "PReLU", "hard-swish", "swish"):
        assert f"| {name} |" in result.stdout
    assert (tmp_path / "activation_zoo.png").stat().st_size > 10_000


def test_distributed_example_matches_one_device(tmp_path):
    result = run_example("distributed.py", tmp_path, fresh_process=True)  # two devices, set before JAX starts
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| run |")]
    if keras.backend.backend() == "torch":
        assert "two devices: not available on this backend" in result.stdout and len(rows) == 1
    else:
        assert len(rows) == 2
        one, two = rows
        assert one[1] == two[1] == "2"  # the poisoned step skipped once per epoch, on both
        assert float(two[3]) < 1e-4  # layer norms equal the one-device run's up to rounding
        assert two[-1] == "True"
    assert (tmp_path / "distributed.png").stat().st_size > 10_000


def test_diagnose_example_finds_repairs_and_plots(tmp_path, monkeypatch, capsys):
    # In this process, on the example's quick budget (4 epochs, 256 samples), with one repair
    # attempt instead of four: a fresh process and three more trials cost ~20 s on JAX.
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    example = importlib.import_module("diagnose")
    from _common import load_digits_split

    monkeypatch.setattr(importlib.import_module("keras_actkit.diagnosis.diagnose"), "MAX_ATTEMPTS", 1)
    (x, y), (x_val, y_val) = load_digits_split()
    result = example.run(((x[:256], y[:256]), (x_val[:64], y_val[:64])), 4, tmp_path)
    printed = capsys.readouterr().out
    assert [p.kind for p in result.problems][:1] in (["vanishing_gradient"], ["saturated_activation"])
    assert result.repair is not None and result.repair["score"] > result.score
    assert "repair kept: replaced the sigmoid activations" in printed and "the change, as code:" in printed
    assert (tmp_path / "diagnose.png").stat().st_size > 10_000
