"""experiments/wheel/reproduce.py keeps its denominator: Uniform's saved seeds survive a rerun with
fewer seeds, so --from-runs can still normalise every other row's saved trials."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "wheel" / "reproduce.py"


def _run(tmp_path, *extra):
    cmd = [sys.executable, str(SCRIPT), "--rows", "Uniform", "--deltas", "0.5", "--horizon", "50",
           "--jobs", "1", "--out", str(tmp_path / "runs"), "--plot", "", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_rerun_with_fewer_seeds_keeps_uniforms_saved_seeds(tmp_path):
    _run(tmp_path, "--cheap-seeds", "3")
    _run(tmp_path, "--cheap-seeds", "1")
    results = pd.read_csv(tmp_path / "runs" / "delta=0.5" / "Uniform" / "results.csv")
    assert sorted(results["seed"].unique()) == [0, 1, 2]
    table = _run(tmp_path, "--from-runs")
    assert "| Uniform | 100.00 ± 0.00 (3) |" in table
