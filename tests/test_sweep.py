"""Backends: local processes and a local Ray instance return the same results as a serial run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.runner import run_experiment
from banditrec.sweep import execute_trials


def _config(jobs: int = 1) -> ExperimentConfig:
    return ExperimentConfig(
        name="sweep",
        horizon=400,
        batch_size=8,
        seeds=(0, 1),
        environment=EnvironmentSpec(id="banditrec/Linear-v0", params={"n_items": 8, "context_dim": 4}),
        policies=(
            PolicySpec("random", "Random"),
            PolicySpec("linucb[alpha=0.5]", "LinUCB", {"alpha": 0.5}),
            PolicySpec("linucb[alpha=1.0]", "LinUCB", {"alpha": 1.0}),
        ),
        n_checkpoints=10,
        jobs=jobs,
    )


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown backend 'slurm'"):
        list(execute_trials(_config(), [(None, 0, "")], backend="slurm"))
    with pytest.raises(ValueError, match="address is only meaningful"):
        list(execute_trials(_config(), [(None, 0, "")], address="auto"))


def test_ray_and_local_backends_give_identical_tables(tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    serial = run_experiment(_config(), None, progress=False).results
    ray_run = run_experiment(_config(jobs=2), tmp_path / "ray", progress=False, backend="ray")
    pd.testing.assert_frame_equal(serial, ray_run.results)
    assert ray_run.trials_run == 6
    again = run_experiment(_config(jobs=2), tmp_path / "ray", progress=False, backend="ray")
    assert again.trials_run == 0 and again.trials_reused == 6


def _two_seed_config(folder, horizon: int, batch_size: int, environment: str, policy_type: str):
    """A TOML experiment file for the CLI: two seeds over two jobs, one policy."""
    cfg = folder / "c.toml"
    cfg.write_text(
        f'[experiment]\nname = "c"\nhorizon = {horizon}\nbatch_size = {batch_size}\nseeds = 2\njobs = 2\n'
        f'[environment]\n{environment}\n[policies.p]\ntype = "{policy_type}"\n'
    )
    return cfg


def test_cli_runs_on_the_ray_backend(tmp_path, capsys):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from banditrec.cli import main

    cfg = _two_seed_config(tmp_path, 200, 8, 'id = "banditrec/Linear-v0"\nn_items = 5\ncontext_dim = 3', "Random")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--backend", "ray"]) == 0
    assert "2 trial(s) run" in capsys.readouterr().out


def test_a_failing_trial_names_itself_in_one_line_on_every_backend(tmp_path, capsys):
    # Ray printed the worker's whole traceback after "banditrec: error:"; now every backend prints
    # the trial's own one-line message. With two trials over two jobs the first to fail is
    # whichever finishes first, so the message names its trial, and equals what running that
    # trial alone, in this process, prints.
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from banditrec.cli import main

    cfg = _two_seed_config(tmp_path, 40, 4, 'id = "banditrec/Wheel-v0"', "BernoulliTS")

    def error(config, out, *extra):
        assert main(["run", str(config), "--out", str(tmp_path / out), "--quiet", *extra]) != 0
        err = capsys.readouterr().err
        ours = [line for line in err.splitlines() if line.startswith("banditrec:")]  # not Ray's own log lines
        assert len(ours) == 1, err
        assert ours[0].startswith("banditrec: error: BernoulliTS.update: rewards must lie in [0, 1]"), err
        assert "Traceback" not in err and "ray::" not in err, err
        return ours[0]

    for backend in ("local", "ray"):  # local with jobs = 2: worker processes
        message = error(cfg, backend, "--backend", backend)
        found = re.search(r" \(in trial 'p', seed (\d), step \d+ of 10\)$", message)
        assert found, message
        alone = tmp_path / f"alone-{backend}.toml"
        alone.write_text(cfg.read_text().replace("seeds = 2\njobs = 2", f"seeds = [{found.group(1)}]\njobs = 1"))
        assert error(alone, f"alone-{backend}") == message


SLOW = """
[experiment]
name = "slow"
horizon = 150000
batch_size = 10
seeds = 4
jobs = 2

[environment]
id = "banditrec/Linear-v0"
n_items = 20
context_dim = 16

[policies.lints]
type = "LinTS"
"""


def _children(pid: int) -> list[int]:
    import os

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_run_stopped_by_a_signal_leaves_no_worker_behind(tmp_path, signame):
    # Before: SIGTERM to the main process alone ended it at once and left both workers idle
    # forever; SIGINT to it alone waited for the trials in flight, then threw them away.
    config = tmp_path / "slow.toml"
    config.write_text(SLOW)
    run = subprocess.Popen([sys.executable, "-m", "banditrec.cli", "run", str(config), "--out", str(tmp_path / "out"),
                            "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_children(run.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(run.pid)
    assert len(workers) == 2, "the run did not start its two workers"
    time.sleep(1.0)
    signalled = time.monotonic()
    run.send_signal(getattr(signal, signame))
    _, err = run.communicate(timeout=60)
    if signame != "SIGKILL":
        assert run.returncode == 130 and "interrupted: finished trials are saved" in err, (run.returncode, err)
        # at once, not after the trials in flight (each is about a minute here)
        assert time.monotonic() - signalled < 15
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "worker processes outlived the run"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("gap", [0.01, 0.3])
def test_a_second_ctrl_c_while_shutting_down_ends_quietly(tmp_path, gap):
    # A terminal's Ctrl-C goes to the whole process group. Before: a second one soon after the
    # first printed a KeyboardInterrupt traceback from an exit callback (at ~0.01 s), or killed
    # the process by SIGINT, exit status -2 (at ~0.2-0.5 s, late in the interpreter's shutdown).
    config = tmp_path / "slow.toml"
    config.write_text(SLOW)
    run = subprocess.Popen([sys.executable, "-m", "banditrec.cli", "run", str(config), "--out", str(tmp_path / "out"),
                            "--quiet"], stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(_children(run.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_children(run.pid)) == 2, "the run did not start its two workers"
    time.sleep(1.0)
    os.killpg(run.pid, signal.SIGINT)
    time.sleep(gap)
    try:
        os.killpg(run.pid, signal.SIGINT)
    except ProcessLookupError:  # already gone: nothing left to interrupt
        pass
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, (run.returncode, err)
    assert "interrupted: finished trials are saved" in err and "Traceback" not in err, err


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_backend_arguments_are_checked_before_the_output_folder_is_touched(tmp_path, monkeypatch):
    # execute_trials checked them when first iterated: after a rerun had deleted the finished
    # run's results.csv, summary.csv and plots
    import importlib.util

    run_experiment(_config(), tmp_path, progress=False)
    kept = {name: (tmp_path / name).read_bytes() for name in ("results.csv", "summary.csv", "regret.png")}
    more_seeds = _config().replace(seeds=(0, 1, 2))  # a trial to run: the old tables would go
    with pytest.raises(ValueError, match="address is only meaningful with backend='ray'"):
        run_experiment(more_seeds, tmp_path, progress=False, address="auto")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "ray" else find_spec(name, *args))
    with pytest.raises(ImportError, match=r"the ray backend needs Ray: pip install 'banditrec\[ray\]'"):
        run_experiment(more_seeds, tmp_path, progress=False, backend="ray")
    assert {name: (tmp_path / name).read_bytes() for name in kept} == kept


def test_a_local_ray_run_leaves_no_session_folder_behind(tmp_path, monkeypatch):
    # ray.shutdown() leaves /tmp/ray/session_<date>_<pid> (logs, sockets, about 200 KB) behind:
    # one more folder per run, never removed. A finished run, and one stopped by a trial's own
    # error, remove the Ray they started; another session's folder stays.
    pytest.importorskip("ray", reason="the ray extra is not installed")
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="br-", dir="/tmp"))  # short: Ray's socket paths hold at most 107 characters
    try:
        monkeypatch.setenv("RAY_TMPDIR", str(root))
        other = root / "ray" / "session_of_another_run"
        other.mkdir(parents=True)
        cfg = _config(jobs=2).replace(seeds=(0,), policies=_config().policies[:2])
        assert run_experiment(cfg, tmp_path / "ok", progress=False, backend="ray").trials_run == 2
        failing = cfg.replace(environment=EnvironmentSpec(id="banditrec/Wheel-v0"),
                              policies=(PolicySpec("bts", "BernoulliTS"),), horizon=40)  # rewards up to 50
        with pytest.raises(ValueError, match=r"rewards must lie in \[0, 1\]"):
            run_experiment(failing, tmp_path / "failing", progress=False, backend="ray")
        assert sorted(p.name for p in (root / "ray").iterdir()) == ["session_of_another_run"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    "ray_address, address, passed",
    [
        # Ray joins the cluster RAY_ADDRESS names when no address is given, and refused the
        # num_cpus we passed: "When connecting to an existing cluster, num_cpus and num_gpus must
        # not be provided" (a Ray job has RAY_ADDRESS set, so no sweep could run inside one).
        ("127.0.0.1:1", None, {"address": None}),
        ("127.0.0.1:1", "local", {"address": "local", "num_cpus": 2}),
        ("127.0.0.1:1", "auto", {"address": "auto"}),
        (None, None, {"address": "local", "num_cpus": 2}),
    ],
)
def test_ray_is_asked_for_num_cpus_only_when_a_local_instance_starts(monkeypatch, ray_address, address, passed):
    # ray.init is replaced: a real join of a bogus address waits minutes for the cluster to answer.
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    import warnings

    if ray_address is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", ray_address)
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        raise ConnectionError("no cluster in this test")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    cfg = _config(jobs=2)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ConnectionError, match="no cluster"):
        warnings.simplefilter("always")
        list(execute_trials(cfg, [(cfg.policies[0], 0, "")], backend="ray", address=address))
    assert calls == [{"include_dashboard": False, "log_to_driver": False, **passed}]
    messages = [str(w.message) for w in caught]
    if "num_cpus" in passed or address is not None:
        assert messages == []
    else:
        expected = (f"RAY_ADDRESS is set: the trials run on the Ray cluster at {ray_address!r}, on its CPUs "
                    "(jobs = 2 applies only to a local Ray instance: unset RAY_ADDRESS or pass address 'local' for one)")
        assert messages == [expected]


def test_a_local_ray_run_starts_its_own_instance_beside_a_ray_start_cluster(tmp_path, monkeypatch):
    # With no address Ray joins the cluster `ray start` recorded in <RAY_TMPDIR>/ray/ray_current_cluster,
    # where it refused our num_cpus; a run with no address starts the local instance it documents.
    pytest.importorskip("ray", reason="the ray extra is not installed")
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="br-", dir="/tmp"))  # short: Ray's socket paths hold at most 107 characters
    try:
        monkeypatch.setenv("RAY_TMPDIR", str(root))
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        (root / "ray").mkdir()
        (root / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")  # as `ray start` leaves it
        cfg = _config(jobs=2).replace(seeds=(0,), policies=_config().policies[:1])
        assert run_experiment(cfg, tmp_path / "out", progress=False, backend="ray").trials_run == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


KILLER = '''
import multiprocessing
import os
import signal

from banditrec.policies import make_policy


def factory(seed=None, die_on=-1):
    """LinUCB, except that a worker process building the trial of seed `die_on` kills itself
    (as the out-of-memory killer would); the runner passes the trial's seed as the first entry
    of the policy's SeedSequence."""
    entropy = getattr(seed, "entropy", None)
    if isinstance(entropy, list) and entropy[0] == die_on and multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return make_policy("LinUCB", seed=seed)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a worker killed by SIGKILL")
def test_a_killed_worker_is_one_line_and_keep_going_runs_the_other_trials(tmp_path, monkeypatch, capsys):
    # a worker killed from outside (the out-of-memory killer) gave BrokenProcessPool's traceback,
    # named no trial, and --keep-going abandoned every trial still to run
    from banditrec.cli import main

    (tmp_path / "killer_plugin.py").write_text(KILLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "k.toml"
    config.write_text(
        '[experiment]\nname = "k"\nhorizon = 400\nbatch_size = 8\nseeds = 4\njobs = 2\n\n'
        '[environment]\nid = "banditrec/Linear-v0"\nn_items = 8\ncontext_dim = 4\n\n'
        '[policies.p]\ntype = "killer_plugin:factory"\ndie_on = 2\n'
    )
    assert main(["run", str(config), "--out", str(tmp_path / "a"), "--quiet", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("banditrec: error: a worker process died"), err
    assert "finished trials are saved" in err

    assert main(["run", str(config), "--out", str(tmp_path / "b"), "--quiet", "--no-plot", "--keep-going"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "'p', seed 2" in err and "worker process died" in err, err
    saved = pd.read_csv(tmp_path / "b" / "results.csv") if (tmp_path / "b" / "results.csv").exists() else None
    trials = sorted(p.name for p in (tmp_path / "b" / "trials").glob("*.csv"))
    assert len(trials) == 3 and not any("seed2" in name for name in trials), trials  # seeds 0, 1, 3 ran
    assert saved is None or set(saved["seed"]) <= {0, 1, 3}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a worker killed by SIGKILL")
def test_keep_going_isolates_only_the_trials_a_dead_worker_may_have_run(tmp_path, monkeypatch):
    # every unfinished trial ran in a process of its own after a worker died (6-10x slower for a
    # large sweep, and Ctrl-C landed in a fork often); now the started ones do, the rest share a pool
    from banditrec.sweep import TrialsFailed

    (tmp_path / "killer_plugin.py").write_text(KILLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    from banditrec import sweep

    isolated = []
    original = sweep._isolated
    monkeypatch.setattr(sweep, "_isolated", lambda config, todo, *a: (isolated.append(len(todo)), original(config, todo, *a))[1])
    config = ExperimentConfig(
        name="k", horizon=400, batch_size=8, seeds=tuple(range(12)), jobs=2,
        environment=EnvironmentSpec(id="banditrec/Linear-v0", params={"n_items": 8, "context_dim": 4}),
        policies=(PolicySpec("p", "killer_plugin:factory", {"die_on": 7}),),
    )
    with pytest.raises(TrialsFailed, match=r"1 of 12 trial\(s\) failed.*'p' \(seed 7\).*WorkerDied"):
        run_experiment(config, tmp_path / "out", progress=False, plot=False, keep_going=True)
    assert isolated == [3]  # two workers and one queued trial: at most three were started
    assert len(list((tmp_path / "out" / "trials").glob("*.csv"))) == 11
