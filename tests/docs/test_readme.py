"""The README's Python example runs as written and LinUCB learns in it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_runs():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (the README's own example, run as written)
    regret = float(re.search(r"decisions: ([0-9.]+)", out.getvalue()).group(1))
    # uniform play would cost about 0.45 per decision here; LinUCB must do far better
    assert 0 < regret < 0.15 * 6400


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'
    assert test_command in text and test_command in ci


def _run_example(index: int, folder, monkeypatch) -> str:
    """Run the README's ``index``-th Python block as written, in ``folder``; what it printed."""
    code = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)[index]
    monkeypatch.chdir(folder)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (the README's own example, run as written)
    return out.getvalue()


def test_readme_experiment_example_runs(tmp_path, monkeypatch):
    # The second example: policies x seeds from Python, written where the README says.
    printed = _run_example(1, tmp_path, monkeypatch)
    run = tmp_path / "runs" / "two-policies"
    assert (run / "regret.png").is_file() and (run / "summary.csv").is_file()
    assert "linucb" in printed and "neural" in printed and "final_cumulative_regret" in printed


def test_readme_neural_example_runs(tmp_path, monkeypatch):
    # The third example: pretrain on logs, hand the model to NeuralLinear, explain, save and resume
    # (the example itself asserts that the resumed policy decides as the original).
    lines = _run_example(2, tmp_path, monkeypatch).splitlines()
    assert (tmp_path / "runs" / "neural-linear.pt").is_file()
    assert lines[0].startswith("test MSE ") and float(lines[0].split()[2]) < 0.25
    probabilities = np.array(lines[3].strip("[]").split(), dtype=float)
    assert probabilities.shape == (10,) and abs(probabilities.sum() - 1) <= 0.05  # each printed to 2 decimals
