"""Backends: local processes and a local Ray instance return the same results as a serial run."""

from __future__ import annotations

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


def test_a_failing_trial_on_ray_raises_its_own_error(tmp_path, capsys):
    # It printed the Ray worker's whole traceback after "banditrec: error:"; the local backend
    # prints the one-line message, and so does Ray now.
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from banditrec.cli import main

    cfg = _two_seed_config(tmp_path, 40, 4, 'id = "banditrec/Wheel-v0"', "BernoulliTS")
    messages = {}
    for backend in ("local", "ray"):
        assert main(["run", str(cfg), "--out", str(tmp_path / backend), "--quiet", "--backend", backend]) != 0
        err = capsys.readouterr().err
        ours = [line for line in err.splitlines() if line.startswith("banditrec:")]  # not Ray's own log lines
        assert len(ours) == 1 and ours[0].startswith("banditrec: error:"), err
        assert "Traceback" not in err and "ray::" not in err, err
        messages[backend] = ours[0]
    assert messages["ray"] == messages["local"]
