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


def test_run_then_plot(tmp_path, capsys, monkeypatch):
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
    # A renamed (or '.') run folder is still titled with its experiment's name.
    import banditrec.plots

    titles = []
    original = banditrec.plots.plot_results
    monkeypatch.setattr(banditrec.plots, "plot_results",
                        lambda results, path, title: titles.append(title) or original(results, path, title=title))
    assert main(["plot", str(out.rename(tmp_path / "copy-of-run"))]) == 0
    assert titles == ["cli"]


def test_listings(capsys):
    assert main(["envs"]) == 0
    envs = capsys.readouterr().out
    assert "banditrec/Wheel-v0: The wheel bandit." in envs
    # each world's parameters, so a config can be written without reading the source
    assert "n_items=20, n_candidates=None, context_dim=32" in envs and "delta=0.5" in envs
    assert main(["policies"]) == 0
    listing = capsys.readouterr().out
    assert "LinUCB" in listing and "alpha=1.0" in listing
    assert "on the last hidden layer, refitted whenever the network retrains." in listing  # whole first paragraph


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace('type = "LinUCB"', 'type = "LinUBC"'))
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert "unknown policy type 'LinUBC'" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    (tmp_path / "results.csv").write_text("")  # a run folder whose table was emptied
    assert main(["plot", str(tmp_path)]) == 2
    assert f"{tmp_path / 'results.csv'} is not a readable results table" in capsys.readouterr().err


def test_a_numerical_failure_in_a_trial_is_one_line_naming_the_trial(tmp_path, capsys):
    # A ridge penalty too small for the features: the policy refuses the update with a
    # FloatingPointError, which the CLI printed as a traceback.
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[experiment]\nname = "tiny"\nhorizon = 512\nbatch_size = 64\nseeds = 1\n'
                   '[environment]\nid = "banditrec/Nonlinear-v0"\n[policies.tiny]\ntype = "LinUCB"\nlam = 1e-16\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("banditrec: error: the ridge penalty lam=1e-16 is too small for these features")
    assert err.rstrip().endswith("(in trial 'tiny', seed 0, step 1 of 8)")


def test_count_overrides_are_checked_like_the_config_file(tmp_path, capsys):
    # --seeds 0 used to reach pandas ("No objects to concatenate") and --horizon 0 an IndexError.
    cfg = tmp_path / "ok.toml"
    cfg.write_text(CONFIG)
    for flag, value in (("--seeds", "0"), ("--horizon", "0"), ("--horizon", "-5"), ("--jobs", "0"), ("--seeds", "x")):
        try:
            code = main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "runs"), flag, value])
        except SystemExit as exit_:  # argparse rejects the value before anything runs
            code = exit_.code
        assert code == 2, (flag, value)
        assert "expected a positive integer" in capsys.readouterr().err, (flag, value)
    assert not (tmp_path / "runs").exists()


def test_missing_data_is_an_error_line_not_a_traceback(tmp_path, capsys):
    cfg = tmp_path / "ml.toml"
    cfg.write_text(CONFIG.replace('id = "banditrec/Linear-v0"\nn_items = 8\ncontext_dim = 4',
                                  f'id = "banditrec/MovieLens100k-v0"\npath = "{tmp_path / "no_such_ml100k"}"'))
    assert main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("banditrec: error:") and "no_such_ml100k" in err


def test_out_that_is_a_file_is_an_error_line(tmp_path, capsys):
    """Used to be a NotADirectoryError traceback from ``mkdir`` of OUT/trials."""
    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG)
    afile = tmp_path / "afile"
    afile.write_text("x")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "trials").write_text("x")
    for out, message in [
        (afile, f"output path {afile} is a file, not a folder"),
        (afile / "sub", f"output path {afile / 'sub'} lies inside {afile}, which is a file"),
        (taken, f"output folder {taken} holds a file 'trials' where its trials/ folder goes"),
    ]:
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("banditrec: error: ") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert afile.read_text() == "x"


def test_an_output_folder_it_may_not_write_is_an_error_line(tmp_path, capsys, monkeypatch):
    """Used to be a PermissionError traceback (a folder of another user's, a read-only disk)."""
    import errno
    from pathlib import Path

    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "locked"

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # as root, a real chmod would not stop it
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"banditrec: error: cannot use {out / 'trials'}: Permission denied\n", err


def test_run_without_a_plot_then_a_failing_rerun_leaves_no_stale_tables(tmp_path, capsys):
    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert "(results.csv, summary.csv)" in capsys.readouterr().out
    assert (out / "summary.csv").is_file() and not (out / "regret.png").exists()
    # a rerun with more seeds that fails: the 2-seed summary would have looked like its result
    cfg.write_text(CONFIG.replace('type = "LinUCB"', 'type = "LinUCB"\nlam = 1e-300'))
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--seeds", "3"]) == 2
    assert not (out / "summary.csv").exists() and not (out / "results.csv").exists()


def test_keep_going_from_the_command_line(tmp_path, capsys):
    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG.replace('type = "LinUCB"', 'type = "LinUCB"\nlam = 1e-300'))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--keep-going"]) == 2
    err = capsys.readouterr().err
    assert "banditrec: error: 2 of 4 trial(s) failed, the other 2 finished and are saved" in err
    assert "FloatingPointError: the ridge penalty lam=1e-300 is too small" in err and "(in trial 'linucb', seed 0" in err
    assert len(list((out / "trials").glob("random-*.json"))) == 2
