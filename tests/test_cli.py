"""The banditrec command line: run, plot, envs, policies, and clean errors."""

from __future__ import annotations

import re

import pandas as pd
import pytest

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


def test_policies_named_like_missing_values_are_reused_and_plotted(tmp_path, capsys):
    # pandas read "None" and "NA" as missing: `plot` failed with "holds policy nan ... more than
    # once", and the stored trials never matched their policy, so every rerun ran them again
    cfg = tmp_path / "na.toml"
    cfg.write_text(CONFIG.replace("[policies.random]", "[policies.None]").replace("[policies.linucb]", "[policies.NA]"))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert "0 trial(s) run, 4 reused" in capsys.readouterr().out
    assert main(["plot", str(out)]) == 0
    from banditrec.results import load_results

    assert load_results(out)["policy"].unique().tolist() == ["None", "NA"]


PLUG_IN = """
from banditrec.policies import Random


def failing(seed=None, error="RuntimeError('the plug-in broke')"):
    policy = Random(seed=seed)

    def update(obs, actions, rewards):
        raise eval(error)

    policy.update = update
    return policy
"""


def test_any_error_inside_a_trial_is_one_line_naming_the_trial(tmp_path, capsys, monkeypatch):
    # a plug-in policy's RuntimeError, a KeyError or a MemoryError printed a whole traceback: only
    # the types main() listed were one line, though the runner names the trial of every error
    (tmp_path / "cli_plug_in.py").write_text(PLUG_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "plug.toml"
    for error, expected in [
        ("RuntimeError('the plug-in broke')", "RuntimeError: the plug-in broke"),
        ("KeyError('user')", "KeyError: 'user'"),
        ("MemoryError()", "MemoryError"),
    ]:
        cfg.write_text(CONFIG.replace('type = "LinUCB"', f'type = "cli_plug_in:failing"\nerror = "{error}"'))
        assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--seeds", "1"]) == 2
        err = capsys.readouterr().err
        assert err == f"banditrec: error: {expected} (in trial 'linucb', seed 0, step 1 of 50)\n", err
    # the traceback on request, for debugging
    with pytest.raises(MemoryError):
        main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--seeds", "1", "--traceback"])
    # an error outside any trial is banditrec's own bug: its traceback stays
    import banditrec.results

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(banditrec.results, "summarise", broken)
    cfg.write_text(CONFIG)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["run", str(cfg), "--out", str(tmp_path / "o2"), "--quiet"])


def test_a_horizon_too_long_to_hold_is_one_line(tmp_path, capsys):
    # numpy's MemoryError traceback, from the per-step sums of the first trial
    cfg = tmp_path / "long.toml"
    cfg.write_text(CONFIG.replace("horizon = 400", "horizon = 100000000000000000"))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"banditrec: error: {cfg}: [experiment] horizon 100,000,000,000,000,000 is "
                          "12,500,000,000,000,000 steps of 8 "), err
    assert "GiB, more than this machine can allocate; lower horizon" in err and err.count("\n") == 1
    cfg.write_text(CONFIG)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--horizon", str(10**17)]) == 2
    err = capsys.readouterr().err
    # the value is the option's, not the file's
    assert err.startswith(f"banditrec: error: {cfg} with --horizon {10**17}: [experiment] horizon "), err
    assert "more than this machine can allocate" in err
    assert not (tmp_path / "o" / "trials").exists()


def test_a_no_plot_rerun_removes_the_plots_it_does_not_redraw(tmp_path, capsys):
    # a rerun that reused every trial rewrote the tables but left the old plots looking current,
    # here of three seeds beside a two-seed summary
    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--seeds", "3"]) == 0
    assert (out / "regret.png").is_file() and (out / "regret.pdf").is_file()
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert "0 trial(s) run, 4 reused" in capsys.readouterr().out
    assert not (out / "regret.png").exists() and not (out / "regret.pdf").exists()
    assert pd.read_csv(out / "results.csv")["seed"].nunique() == 2


def test_address_without_ray_is_refused_before_the_output_folder_is_touched(tmp_path, capsys):
    # the check ran on the first trial, after the finished run's tables and plots were deleted
    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG.replace("seeds = 2", "seeds = 1"))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--seeds", "2", "--address", "auto"]) == 2
    assert "address is only meaningful with backend='ray'" in capsys.readouterr().err
    assert all((out / name).is_file() for name in ("results.csv", "summary.csv", "regret.png", "regret.pdf"))


def test_environment_and_policy_errors_name_the_file_and_section(tmp_path, capsys):
    # "banditrec: error: n_items must be a positive int, got '5'": no file, no section; an unknown
    # key did not list the valid ones; an import path's error lost its [policies.NAME]
    cfg = tmp_path / "env.toml"
    world = 'id = "banditrec/Linear-v0"\nn_items = 8\ncontext_dim = 4'
    for section, replacement, message in [
        (world, 'id = "banditrec/Linear-v0"\nn_items = "5"', "[environment] n_items must be a positive int, got '5'"),
        (world, 'id = "banditrec/Linear-v0"\nn_itemz = 5',
         ("[environment] unknown key(s) ['n_itemz'] for banditrec/Linear-v0 (did you mean 'n_items'?); expected "
         "among ['context_dim', 'min_candidates', 'n_candidates', 'n_items', ")),
        (world, 'simulator = "banditrec.environments.linear:LinearWorld"\nn_itemz = 5',
         ("[environment] unknown key(s) ['n_itemz'] for banditrec.environments.linear:LinearWorld (did you mean 'n_items'?); expected among "
         "['context_dim', 'min_candidates', ")),
        (world, 'id = "Linear-v0"', "[environment] unknown environment id 'Linear-v0'; registered banditrec environments: "),
        ('type = "LinUCB"', 'type = "no_such_module:Policy"', "[policies.linucb]: cannot import module 'no_such_module'"),
        # an ImportError's message is its .msg: the file's name was added to its args only
        (world, 'simulator = "no_such_module:World"', "[environment] cannot import module 'no_such_module'"),
        # numpy's MemoryError traceback, from building a world too large to hold
        (world, 'id = "banditrec/Linear-v0"\nn_items = 1000000000000000\ncontext_dim = 4',
         "[environment] banditrec/Linear-v0 with batch_size 8 needs more memory than this machine can allocate ("),
        (world, world + "\nmax_episode_steps = 5", "[environment] max_episode_steps has no effect in an experiment"),
    ]:
        cfg.write_text(CONFIG.replace(section, replacement))
        assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"banditrec: error: {cfg}: {message}") and err.count("\n") == 1, err


def test_plot_of_a_file_says_it_is_not_a_folder(tmp_path, capsys):
    afile = tmp_path / "README.md"
    afile.write_text("x")
    assert main(["plot", str(afile)]) == 2
    assert capsys.readouterr().err == f"banditrec: error: {afile} is a file, not a run folder: give the folder that holds results.csv\n"


def test_the_readme_synopsis_shows_every_option_of_run():
    # --no-plot was missing from it
    from pathlib import Path

    from banditrec.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    synopsis = readme[readme.index("Commands: `banditrec run CONFIG"):]
    synopsis = " ".join(synopsis[:synopsis.index("`banditrec plot")].split())
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    options = [o for action in run._actions for o in action.option_strings if o.startswith("--") and o != "--help"]
    assert options and [o for o in options if f"[{o}" not in synopsis] == []


def test_a_seeds_option_too_large_names_the_option_and_fails_at_once(tmp_path, capsys):
    # --seeds 10**11 first listed 10**11 seeds (minutes, gigabytes), and a refused override named
    # neither the file nor the option
    import time

    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG)
    start = time.perf_counter()
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--seeds", str(10**11)]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert err.startswith(f"banditrec: error: {cfg} with --seeds {10**11}: seeds = {10**11} with 2 policy(ies) makes "
                          "200,000,000,000 trials; a config may hold at most 1,000,000"), err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


# ------------------------------------------------------------ found by an audit (nineteenth session)
@pytest.mark.parametrize(("module", "source", "message"), [
    ("badf", "def factory(seed=None):\n    raise RuntimeError('cannot reach feature store')\n",
     r"\[policies.bad\]: badf:factory failed: RuntimeError: cannot reach feature store"),
    ("badsyntax", "def factory(seed=None) return 1\n", r"\[policies.bad\]: badsyntax:factory failed: SyntaxError"),
])
def test_a_plug_in_factory_failing_while_built_is_one_line(tmp_path, capsys, monkeypatch, module, source, message):
    # the pre-flight check turned TypeError/ValueError/ImportError into one line, and printed any
    # other error of a user's factory (or of its module's import) as a traceback
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[experiment]\nhorizon = 100\nbatch_size = 10\n[environment]\nid = "banditrec/Linear-v0"\n'
                   f'[policies.bad]\ntype = "{module}:factory"\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err


def test_a_plug_in_simulator_failing_while_built_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "badsim.py").write_text(
        "from banditrec.environments import UserSimulator\n"
        "class Sim(UserSimulator):\n"
        "    n_items, n_candidates, user_dim, item_dim = 4, 2, 2, 2\n"
        "    def __init__(self):\n        raise RuntimeError('no catalogue')\n"
        "    def sample_users(self, batch_size, rng): ...\n"
        "    def expected_rewards(self, obs): ...\n"
        "    def sample_rewards(self, obs, actions, expected, rng): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "s.toml"
    cfg.write_text('[experiment]\nhorizon = 100\nbatch_size = 10\n[environment]\nsimulator = "badsim:Sim"\n'
                   '[policies.r]\ntype = "Random"\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "[environment] badsim:Sim failed to build: RuntimeError: no catalogue" in err, err


def test_an_empty_out_is_refused_not_replaced_by_runs_name(tmp_path, capsys, monkeypatch):
    # an unset $OUT in a script wrote to ./runs/<name> without a word
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cli.toml"
    cfg.write_text(CONFIG)
    assert main(["run", str(cfg), "--out", "", "--quiet"]) == 2
    assert "--out is empty" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "c\u0000d"])
def test_policy_names_are_checked_like_the_experiment_name(tmp_path, capsys, name):
    # an empty name was an empty (NaN) cell in results.csv; a newline or NUL broke its rows
    cfg = tmp_path / "n.toml"
    escaped = name.replace("\n", "\\n").replace("\u0000", "\\u0000")
    cfg.write_text(CONFIG.replace("[policies.random]", f'[policies."{escaped}"]'))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "policy names must be non-empty, without control characters" in capsys.readouterr().err


def test_logs_left_in_the_folder_by_another_config_are_warned_about(tmp_path, capsys):
    # `banditrec ope OUT/feedback/*.npz` would have mixed two worlds' logs without a word
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text(CONFIG)
    second.write_text(CONFIG.replace('[policies.random]\ntype = "Random"\n\n', "").replace("context_dim = 4", "context_dim = 5"))
    out = tmp_path / "o"
    assert main(["run", str(first), "--out", str(out), "--quiet", "--no-plot", "--log-feedback"]) == 0
    with pytest.warns(UserWarning, match=r"holds 2 log\(s\) of trials that are not part of this run \(random-"):
        assert main(["run", str(second), "--out", str(out), "--quiet", "--no-plot", "--log-feedback"]) == 0


def test_a_full_disk_names_the_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno

    from banditrec import runner

    def full(path):
        path.write_bytes(b"")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left on device") as caught:
        runner._atomic_write(tmp_path / "results.csv", full)
    assert caught.value.filename == str(tmp_path / "results.csv")
    assert list(tmp_path.iterdir()) == []
