"""The banditrec command line: run, plot, envs, policies, and clean errors."""

from __future__ import annotations

import pandas as pd

from banditrec.cli import main

CONFIG = """
[experiment]
name = "cli"
horizon = 400
batch_size = 8
seeds = 2

[environment]
id = "banditrec/Linear-v0"
n_items = 8
context_dim = 4

[policies.random]
type = "Random"

[policies.linucb]
type = "LinUCB"
"""


def test_run_then_plot(tmp_path, capsys):
    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--seeds", "3"]) == 0
    printed = capsys.readouterr().out
    assert "linucb" in printed and "6 trial(s) run" in printed
    assert pd.read_csv(out / "results.csv")["seed"].nunique() == 3
    (out / "regret.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "regret.png").is_file()


def test_listings(capsys):
    assert main(["envs"]) == 0
    assert "banditrec/Wheel-v0" in capsys.readouterr().out
    assert main(["policies"]) == 0
    listing = capsys.readouterr().out
    assert "LinUCB" in listing and "alpha=1.0" in listing


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace('type = "LinUCB"', 'type = "LinUBC"'))
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert "unknown policy type 'LinUBC'" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
