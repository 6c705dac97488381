"""experiments/wheel/reproduce.py: it keeps its denominator (Uniform's saved seeds survive a rerun
with fewer seeds, so --from-runs can still normalise every other row's saved trials), and its
LinFullPost row is the paper's linear baseline (per-arm planes with an intercept find the
quadrants)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "wheel" / "reproduce.py"


def _run(tmp_path, *extra, rows=("Uniform",), horizon=50, delta="0.5"):
    cmd = [sys.executable, str(SCRIPT), "--rows", *rows, "--deltas", delta, "--horizon", str(horizon),
           "--jobs", "1", "--out", str(tmp_path / "runs"), "--plot", "", *extra]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_rerun_with_fewer_seeds_keeps_uniforms_saved_seeds(tmp_path):
    _run(tmp_path, "--cheap-seeds", "3")
    _run(tmp_path, "--cheap-seeds", "1")
    results = pd.read_csv(tmp_path / "runs" / "delta=0.5" / "Uniform" / "results.csv")
    assert sorted(results["seed"].unique()) == [0, 1, 2]
    table = _run(tmp_path, "--from-runs")
    assert "| Uniform | 100.00 ± 0.00 (3) |" in table


def test_linfullpost_row_fits_planes_with_an_intercept(tmp_path):
    # The paper's LinFullPost regresses each arm's reward on (x, y, 1); four such planes rank the
    # quadrant arms by quadrant. At δ = 0.9 over 3,000 contexts the row's seeds 0-3 average 15.4
    # (17.6 ± 2.1 over seeds 0-9, none above 31.4); the row without the intercept (our row before
    # the seventh session) gives 62.0 ± 12.0 over seeds 0-9, up to 124.
    _run(tmp_path, "--cheap-seeds", "4", rows=("Uniform", "LinFullPost"), horizon=3000, delta="0.9")
    folder = tmp_path / "runs" / "delta=0.9"

    def final(row):
        results = pd.read_csv(folder / row / "results.csv")
        return results.groupby("seed")["cumulative_regret"].last()

    normalised = 100 * final("LinFullPost") / final("Uniform")
    assert list(normalised.index) == [0, 1, 2, 3]
    assert normalised.mean() < 25, normalised.round(2).to_dict()


def test_from_runs_refuses_to_divide_regrets_of_different_horizons(tmp_path):
    # Before: a row saved at 200 contexts was divided by Uniform's regret over 4,000 and printed
    # under "after 80,000 contexts" (the --horizon default), a plausible-looking 1.34.
    _run(tmp_path, "--cheap-seeds", "2", rows=("Uniform", "LinFullPost"), horizon=200)
    assert "after 200 contexts" in _run(tmp_path, "--from-runs", rows=("Uniform", "LinFullPost"))
    _run(tmp_path, "--cheap-seeds", "2", rows=("Uniform",), horizon=4000)
    cmd = [sys.executable, str(SCRIPT), "--rows", "Uniform", "LinFullPost", "--deltas", "0.5", "--out",
           str(tmp_path / "runs"), "--plot", "", "--from-runs"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "ran another number of contexts than Uniform's" in done.stderr and "200 against 4,000" in done.stderr


def test_from_runs_without_runs_and_out_of_range_arguments_are_one_line(tmp_path):
    # --from-runs over an empty folder was a pandas traceback ("No objects to concatenate"), and
    # --deltas 1.5 or --jobs 0 a traceback from inside the worker pool.
    cases = [(["--from-runs"], "no finished runs under"),
             (["--deltas", "1.5", "--jobs", "0"], "δ must lie in (0, 1) and counts be >= 1; got --deltas 1.5, --jobs 0")]
    for extra, message in cases:
        cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path / "none"), "--plot", "", *extra]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_every_row_builds_its_policy(monkeypatch):
    """A typo in a row's hyperparameters fails here, not an hour into a run."""
    import importlib.util

    from banditrec.policies import make_policy

    spec = importlib.util.spec_from_file_location("wheel_reproduce", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    for row, (kind, params, _) in module.ROWS.items():
        policy = make_policy(kind, seed=0, **params)
        assert policy is not None, row
