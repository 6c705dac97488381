"""The runner: tidy results, determinism, resume after interruption, clear errors before running."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from banditrec.config import ConfigError, EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.runner import RESULT_COLUMNS, run_experiment, run_trial


def _config(**changes):
    cfg = ExperimentConfig(
        name="t",
        horizon=600,
        batch_size=8,
        seeds=(0, 1, 2),
        environment=EnvironmentSpec(id="banditrec/Linear-v0", params={"n_items": 10, "context_dim": 6}),
        policies=(PolicySpec("random", "Random"), PolicySpec("linucb", "LinUCB", {"alpha": 1.0})),
        n_checkpoints=20,
    )
    return cfg.replace(**changes)


def test_outputs_are_tidy_and_complete(tmp_path):
    result = run_experiment(_config(), tmp_path, progress=False)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.columns) == RESULT_COLUMNS
    assert set(table["policy"]) == {"random", "linucb"} and set(table["seed"]) == {0, 1, 2}
    last = table.groupby(["policy", "seed"]).tail(1)
    assert (last["step"] == 600).all()
    # per-window means add back up to the cumulative sums
    for _, g in table.groupby(["policy", "seed"]):
        windows = np.diff(np.concatenate([[0], g["step"].to_numpy()]))
        assert np.allclose(np.cumsum(g["regret"] * windows), g["cumulative_regret"])
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("policy")
    assert {"final_cumulative_regret", "regret_ci_low", "regret_ci_high", "decisions_per_s"} <= set(summary.columns)
    assert summary.loc["linucb", "final_cumulative_regret"] < summary.loc["random", "final_cumulative_regret"]
    assert (summary["regret_ci_low"] <= summary["final_cumulative_regret"]).all()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1, 2] and "numpy" in manifest["versions"]
    assert (tmp_path / "regret.png").is_file() and (tmp_path / "regret.pdf").is_file()
    assert result.trials_run == 6 and result.trials_reused == 0


def test_same_config_and_seed_give_identical_numbers():
    cfg = _config()
    a = run_trial(cfg, cfg.policies[1], seed=3).table
    b = run_trial(cfg, cfg.policies[1], seed=3).table
    pd.testing.assert_frame_equal(a, b)
    c = run_trial(cfg, cfg.policies[1], seed=4).table
    assert not a["cumulative_reward"].equals(c["cumulative_reward"])


def test_rerun_reuses_finished_trials_and_resumes_interrupted_runs(tmp_path, monkeypatch):
    cfg = _config()
    full = run_experiment(cfg, tmp_path / "full", progress=False).results

    from banditrec import runner

    calls = {"n": 0}
    original = runner.run_trial

    def crash_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "run_trial", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "resumed", progress=False)
    assert len(list((tmp_path / "resumed" / "trials").glob("*.json"))) == 2
    monkeypatch.setattr(runner, "run_trial", original)
    resumed = run_experiment(cfg, tmp_path / "resumed", progress=False)
    assert resumed.trials_reused == 2 and resumed.trials_run == 4
    pd.testing.assert_frame_equal(resumed.results, full)
    again = run_experiment(cfg, tmp_path / "resumed", progress=False)
    assert again.trials_run == 0 and again.trials_reused == 6


def test_a_failing_trial_names_itself_and_keeps_the_finished_ones(tmp_path):
    wheel = EnvironmentSpec(id="banditrec/Wheel-v0")
    cfg = _config(environment=wheel, seeds=(0, 1),
                  policies=(PolicySpec("random", "Random"), PolicySpec("bts", "BernoulliTS")))  # rewards up to 50
    with pytest.raises(ValueError, match=r"rewards must lie in \[0, 1\]") as info:
        run_experiment(cfg, tmp_path, progress=False)
    assert info.value.__notes__ == ["in trial 'bts', seed 0, step 1 of 75"]
    assert len(list((tmp_path / "trials").glob("*.json"))) == 2  # both Random trials ran first and stay
    fixed = run_experiment(cfg.replace(policies=cfg.policies[:1]), tmp_path, progress=False)
    assert fixed.trials_reused == 2 and fixed.trials_run == 0


def test_changed_settings_are_not_reused(tmp_path):
    run_experiment(_config(), tmp_path, progress=False)
    changed = run_experiment(_config(horizon=800), tmp_path, progress=False)
    assert changed.trials_run == 6


def test_parallel_processes_give_the_same_results(tmp_path):
    serial = run_experiment(_config(), None, progress=False).results
    parallel = run_experiment(_config(jobs=2), None, progress=False).results
    pd.testing.assert_frame_equal(serial, parallel)


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"environment": EnvironmentSpec(id="banditrec/Nope-v0")}, ValueError, "unknown environment id.*Linear-v0"),
        ({"policies": (PolicySpec("x", "LinUCBB"),)}, ConfigError, "unknown policy type 'LinUCBB'.*LinUCB"),
        ({"policies": (PolicySpec("x", "LinUCB", {"alpah": 1}),)}, ConfigError, r"unknown parameter\(s\) \['alpah'\]"),
        ({"policies": (PolicySpec("x", "LinUCB", {"alpha": -1}),)}, ConfigError, "alpha must be >= 0"),
        ({"environment": EnvironmentSpec(simulator="no_such_module:World")}, ImportError, "no_such_module"),
        ({"environment": EnvironmentSpec(id="banditrec/Linear-v0", params={"n_itemz": 3})}, TypeError, "n_itemz"),
    ],
)
def test_bad_experiments_fail_before_running(changes, error, match):
    with pytest.raises(error, match=match):
        run_experiment(_config(**changes), None, progress=False)


def test_a_feedback_log_is_reused_only_with_the_trial_it_records(tmp_path):
    from banditrec.ope.feedback import LoggedFeedback

    cfg = _config(seeds=(0,), policies=(PolicySpec("random", "Random"),))
    run_experiment(cfg.replace(horizon=96), tmp_path, progress=False, plot=False, log_feedback=True)
    (log,) = (tmp_path / "feedback").glob("*.npz")
    assert LoggedFeedback.load(log).n_rounds == 96
    # Rerun under other settings without logging: the old log is not this trial's and goes.
    assert run_experiment(cfg.replace(horizon=200), tmp_path, progress=False, plot=False).trials_run == 1
    assert not log.exists()
    # Asking for logs now reruns the trial rather than trusting a log it did not write.
    again = run_experiment(cfg.replace(horizon=200), tmp_path, progress=False, plot=False, log_feedback=True)
    assert (again.trials_run, again.trials_reused) == (1, 0)
    fb = LoggedFeedback.load(log)
    assert fb.n_rounds == 200 and len(fb.metadata["fingerprint"]) == 16
    # ... and reuses the trial once its log is there.
    assert run_experiment(cfg.replace(horizon=200), tmp_path, progress=False, plot=False, log_feedback=True).trials_reused == 1


def test_logged_feedback_matches_the_run(tmp_path):
    from banditrec.ope.feedback import LoggedFeedback

    cfg = _config(environment=EnvironmentSpec(id="banditrec/Linear-v0",
                                              params={"n_items": 10, "context_dim": 6, "min_candidates": 4}))
    result = run_experiment(cfg, tmp_path, progress=False, log_feedback=True)
    files = sorted((tmp_path / "feedback").glob("*.npz"))
    assert len(files) == 6
    final = result.results.groupby(["policy", "seed"]).tail(1).set_index(["policy", "seed"])
    for f in files:
        fb = LoggedFeedback.load(f)
        assert fb.n_rounds == 600
        assert fb.rewards.sum() == pytest.approx(final.loc[(fb.metadata["policy"], fb.metadata["seed"]), "cumulative_reward"])
        assert np.all(fb.mask[np.arange(600), fb.actions])
        if fb.metadata["policy"] == "random":  # exact propensities: 1 / number of valid candidates
            np.testing.assert_allclose(fb.propensities, 1.0 / fb.mask.sum(axis=1))
        truth = fb.expected_rewards[np.arange(600), fb.actions]
        assert np.all((truth >= 0) & (truth <= 1))


_SIMULATOR = '''
import numpy as np
from banditrec.environments import Observation, UserSimulator

OFFSET = {offset}


class Shop(UserSimulator):
    n_items, n_candidates, user_dim, item_dim = 12, 4, 2, 2

    def sample_users(self, batch_size, rng):
        ids = np.argsort(rng.random((batch_size, self.n_items)), axis=1)[:, : self.n_candidates]
        items = np.stack([np.cos(ids), np.sin(ids)], axis=-1)
        return Observation(rng.normal(size=(batch_size, 2)), items, ids, np.ones(ids.shape, bool), np.full(batch_size, -1))

    def expected_rewards(self, obs):
        return 1 / (1 + np.exp(-(np.einsum("bd,bkd->bk", obs.user_features, obs.item_features) + OFFSET)))

    def sample_rewards(self, obs, actions, expected, rng):
        return (rng.random(expected.shape) < expected).astype(float)
'''


def test_editing_a_plug_in_simulator_makes_its_stored_trials_stale(tmp_path, monkeypatch):
    # the fingerprint held the config only: after an edit of the simulator a rerun reused every
    # trial and reported the old world's regret
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "edited_shop.py"
    config = ExperimentConfig.from_dict({
        "experiment": {"name": "edited", "horizon": 80, "batch_size": 8, "seeds": 2},
        "environment": {"simulator": "edited_shop:Shop"},
        "policies": {"random": {"type": "Random"}},
    })

    def run(offset: float):
        module.write_text(_SIMULATOR.format(offset=offset))
        sys.modules.pop("edited_shop", None)  # a new process, as a rerun of `banditrec run` is
        return run_experiment(config, tmp_path / "out", progress=False, plot=False)

    _an_edit_makes_the_trials_stale(run)
    sys.modules.pop("edited_shop", None)


def _an_edit_makes_the_trials_stale(run) -> None:
    """``run(offset)`` writes the world's code with that offset and runs two trials."""
    first = run(-5.0)
    assert (first.trials_run, first.trials_reused) == (2, 0)
    edited = run(0.7)
    assert (edited.trials_run, edited.trials_reused) == (2, 0)
    assert edited.summary["final_cumulative_regret"].iloc[0] != first.summary["final_cumulative_regret"].iloc[0]
    again = run(0.7)
    assert (again.trials_run, again.trials_reused) == (0, 2)


# _SIMULATOR with its offset from a helper module, imported at the top or inside expected_rewards
_HELPED = (
    _SIMULATOR.replace("OFFSET = {offset}", "{import_line}")
    .replace("    def expected_rewards(self, obs):\n", "    def expected_rewards(self, obs):\n        {lazy_import}\n")
    .replace(" + OFFSET)", " + offset())")
)


@pytest.mark.parametrize("layout", ["module", "package_relative", "lazy_in_a_function"])
def test_editing_user_code_a_plug_in_imports_makes_its_stored_trials_stale(tmp_path, monkeypatch, layout):
    # Only the file defining the simulator was hashed: after an edit of a helper module it imports
    # (here the world's offset), a rerun reused every trial and reported the old world's regret.
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    if layout == "module":  # shop_sim.py imports shop_helper.py beside it
        names, sim, helper = ("shop_sim", "shop_helper"), tmp_path / "shop_sim.py", tmp_path / "shop_helper.py"
        lines = {"import_line": "from shop_helper import offset", "lazy_import": "pass"}
        target = "shop_sim:Shop"
    else:  # a package: shop_pkg/sim.py imports shop_pkg/helper.py, relatively (at the top or when first called)
        (tmp_path / "shop_pkg").mkdir()
        (tmp_path / "shop_pkg" / "__init__.py").write_text("")
        names = ("shop_pkg", "shop_pkg.sim", "shop_pkg.helper")
        sim, helper = tmp_path / "shop_pkg" / "sim.py", tmp_path / "shop_pkg" / "helper.py"
        lines = ({"import_line": "from .helper import offset", "lazy_import": "pass"} if layout == "package_relative"
                 else {"import_line": "", "lazy_import": "from .helper import offset"})
        target = "shop_pkg.sim:Shop"
    sim.write_text(_HELPED.format(**lines))
    config = ExperimentConfig.from_dict({
        "experiment": {"name": "helped", "horizon": 80, "batch_size": 8, "seeds": 2},
        "environment": {"simulator": target},
        "policies": {"random": {"type": "Random"}},
    })

    def run(offset: float):
        helper.write_text(f"def offset():\n    return {offset}\n")
        for name in names:  # a new process, as a rerun of `banditrec run` is
            sys.modules.pop(name, None)
        return run_experiment(config, tmp_path / "out", progress=False, plot=False)

    try:
        _an_edit_makes_the_trials_stale(run)
    finally:
        for name in names:
            sys.modules.pop(name, None)


def test_a_plug_in_importing_no_user_code_keeps_its_fingerprint(tmp_path, monkeypatch):
    # Trials stored before imports were followed stay valid when there is nothing to follow: the
    # digest of a file importing only the standard library, installed packages and banditrec is
    # still that of its own source.
    import hashlib
    import importlib
    import sys

    from banditrec.runner import _source_digest

    monkeypatch.syspath_prepend(str(tmp_path))
    source = _SIMULATOR.format(offset=0.0) + "\nimport json, os.path\nimport pandas as pd\nfrom banditrec import policies\n"
    (tmp_path / "plain_shop.py").write_text(source)
    try:
        module = importlib.import_module("plain_shop")
        assert _source_digest(module.Shop) == hashlib.sha256(source.encode()).hexdigest()[:16]
    finally:
        sys.modules.pop("plain_shop", None)


def test_a_simulator_failing_at_the_first_users_names_the_trial(tmp_path, monkeypatch):
    # a failure in the first reset came without the "(in trial ..., seed ...)" that later ones carry
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "nan_shop.py").write_text(
        _SIMULATOR.format(offset=0.0) + "\n\nclass NaNShop(Shop):\n"
        "    def expected_rewards(self, obs):\n        return np.full(obs.item_ids.shape, np.nan)\n"
    )
    config = ExperimentConfig.from_dict({
        "experiment": {"name": "nan", "horizon": 80, "batch_size": 8, "seeds": 1},
        "environment": {"simulator": "nan_shop:NaNShop"},
        "policies": {"random": {"type": "Random"}},
    })
    with pytest.raises(ValueError, match=r"NaNShop\.expected_rewards\(\) returned NaN") as info:
        run_experiment(config, tmp_path / "out", progress=False, plot=False)
    assert info.value.__notes__ == ["in trial 'random', seed 0, at the first reset (before step 1 of 10)"]


def _damage(kind: str, trials):
    """Damage the random policy's seed-0 trial as a crash, a disk or a hand would."""
    target = next(trials.glob("random-*__seed0.csv"))
    text = target.read_text()
    if kind == "cut_at_line_end":
        target.write_text("".join(text.splitlines(keepends=True)[:3]))
    elif kind == "cut_mid_line":
        target.write_text(text[:250])
    elif kind == "copied_from_another_seed":
        target.write_text(next(trials.glob("random-*__seed1.csv")).read_text())
    elif kind == "edited_value":  # same rows and steps, one number changed
        lines = text.splitlines(keepends=True)
        fields = lines[5].split(",")
        fields[3] = "0.123"
        lines[5] = ",".join(fields)
        target.write_text("".join(lines))


@pytest.mark.parametrize("kind", ["cut_at_line_end", "cut_mid_line", "copied_from_another_seed", "edited_value"])
def test_a_damaged_trial_is_recomputed(tmp_path, kind):
    # each was reused: results.csv held 2 rows (or a NaN row) for seed 0, or seed 1 twice, and the
    # summary reported 20 decisions instead of 600, or NaN
    first = run_experiment(_config(), tmp_path, progress=False, plot=False)
    _damage(kind, tmp_path / "trials")
    again = run_experiment(_config(), tmp_path, progress=False, plot=False)
    assert (again.trials_run, again.trials_reused) == (1, 5)
    pd.testing.assert_frame_equal(again.results, first.results)


def test_trials_from_another_banditrec_version_are_recomputed(tmp_path):
    run_experiment(_config(), tmp_path, progress=False, plot=False)
    meta_path = next((tmp_path / "trials").glob("linucb-*__seed2.json"))
    meta = json.loads(meta_path.read_text())
    meta["banditrec"] = "0.0.1"
    meta_path.write_text(json.dumps(meta))
    again = run_experiment(_config(), tmp_path, progress=False, plot=False)
    assert (again.trials_run, again.trials_reused) == (1, 5)


def test_trials_stored_under_the_earlier_file_names_are_still_reused(tmp_path):
    from banditrec.runner import _legacy_trial_stem, _trial_stem

    run_experiment(_config(), tmp_path, progress=False, plot=False)
    for spec in _config().policies:
        for seed in (0, 1, 2):
            for ext in ("csv", "json"):
                new = tmp_path / "trials" / f"{_trial_stem(spec.name, seed)}.{ext}"
                new.rename(tmp_path / "trials" / f"{_legacy_trial_stem(spec.name, seed)}.{ext}")
    again = run_experiment(_config(), tmp_path, progress=False, plot=False)
    assert (again.trials_run, again.trials_reused) == (0, 6)


def test_one_checkpoint_keeps_the_last_step(tmp_path):
    # n_checkpoints = 1 kept step 0: the summary called the first batch of 8 users "final"
    one = run_experiment(_config(n_checkpoints=1), None, progress=False, plot=False)
    full = run_experiment(_config(n_checkpoints=1000), None, progress=False, plot=False)
    assert set(one.results["step"]) == {600}
    pd.testing.assert_frame_equal(
        one.summary[["policy", "final_cumulative_regret"]], full.summary[["policy", "final_cumulative_regret"]]
    )


def test_the_summary_holds_each_policys_type_and_parameters_as_columns():
    # grid values lived only inside names such as 'eg[epsilon=0.2,decay=0.1]'
    config = ExperimentConfig.from_dict({
        "experiment": {"name": "grid", "horizon": 80, "batch_size": 8, "seeds": 1},
        "environment": {"id": "banditrec/Linear-v0", "n_items": 6, "context_dim": 3},
        "policies": {"eg": {"type": "EpsilonGreedy", "epsilon": [0.1, 0.3], "decay": 1.0},
                     "neural": {"type": "NeuralEpsilonGreedy", "hidden": [[8, 8]], "train_every": 4},
                     "random": {"type": "Random"}},
    })
    summary = run_experiment(config, None, progress=False, plot=False).summary.set_index("policy")
    assert summary.loc["eg[epsilon=0.3]", ["type", "param_epsilon", "param_decay"]].tolist() == ["EpsilonGreedy", 0.3, 1.0]
    assert summary.loc["neural", "param_hidden"] == "[8, 8]" and summary.loc["neural", "type"] == "NeuralEpsilonGreedy"
    assert summary.loc["random", ["param_epsilon", "param_hidden"]].isna().all()


def test_a_feedback_log_overwritten_by_a_stopped_run_is_not_reused(tmp_path):
    # a rerun under other settings, stopped after writing the log but before the trial's table,
    # left a log of 800 decisions beside the stored 600-decision trial, and it was reused
    config = _config(policies=(PolicySpec("random", "Random"),), seeds=(0,))
    run_experiment(config, tmp_path / "a", progress=False, plot=False, log_feedback=True)
    run_experiment(config.replace(horizon=800), tmp_path / "b", progress=False, plot=False, log_feedback=True)
    (log_b,) = (tmp_path / "b" / "feedback").glob("*.npz")
    (log_a,) = (tmp_path / "a" / "feedback").glob("*.npz")
    log_a.write_bytes(log_b.read_bytes())
    again = run_experiment(config, tmp_path / "a", progress=False, plot=False, log_feedback=True)
    assert (again.trials_run, again.trials_reused) == (1, 0)
    from banditrec.ope import LoggedFeedback

    assert LoggedFeedback.load(log_a).n_rounds == 600


@pytest.mark.parametrize("jobs", [1, 2])
def test_keep_going_runs_every_other_trial_and_lists_the_failures(tmp_path, jobs):
    # one failing configuration stopped a whole sweep at its first trial: the policies after it
    # never ran
    wheel = EnvironmentSpec(id="banditrec/Wheel-v0")
    cfg = _config(environment=wheel, seeds=(0, 1), jobs=jobs,
                  policies=(PolicySpec("bts", "BernoulliTS"), PolicySpec("random", "Random"),
                            PolicySpec("linucb", "LinUCB")))  # BernoulliTS refuses rewards of 50
    from banditrec.runner import TrialsFailed

    with pytest.raises(TrialsFailed, match=r"^2 of 6 trial\(s\) failed, the other 4 finished and are saved .*"
                                           r"ValueError: .*rewards must lie in \[0, 1\].*\(in trial 'bts', seed \d"):
        run_experiment(cfg, tmp_path, progress=False, plot=False, keep_going=True)
    assert len(list((tmp_path / "trials").glob("*.json"))) == 4
    assert not (tmp_path / "summary.csv").exists()
    fixed = run_experiment(cfg.replace(policies=cfg.policies[1:]), tmp_path, progress=False, plot=False)
    assert (fixed.trials_run, fixed.trials_reused) == (0, 4)


@pytest.mark.parametrize(
    "edit",
    [
        lambda meta: meta.pop("wall_time"),
        lambda meta: meta.update(wall_time=None),
        lambda meta: meta.update(wall_time="fast"),
        lambda meta: meta.update(wall_time=-1.0),
        lambda meta: meta.pop("decisions"),
        lambda meta: meta.update(decisions=float("inf")),
        lambda meta: meta.update(decisions=20),
    ],
)
def test_a_trial_with_damaged_timings_is_recomputed(tmp_path, edit):
    # a trial JSON without "wall_time" was a KeyError traceback, with null "float() argument must be
    # ... not 'NoneType'", and the run could not go on
    first = run_experiment(_config(), tmp_path, progress=False, plot=False)
    meta_path = next((tmp_path / "trials").glob("linucb-*__seed1.json"))
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    again = run_experiment(_config(), tmp_path, progress=False, plot=False)
    assert (again.trials_run, again.trials_reused) == (1, 5)
    pd.testing.assert_frame_equal(again.results, first.results)


def test_keep_going_names_every_failed_trial(tmp_path):
    # only three failures were shown, then "and 2 more": the others could not be found
    from banditrec.runner import TrialsFailed

    cfg = _config(environment=EnvironmentSpec(id="banditrec/Wheel-v0"), seeds=(0, 1, 2, 3, 4),
                  policies=(PolicySpec("bts", "BernoulliTS"), PolicySpec("random", "Random")))
    with pytest.raises(TrialsFailed) as info:
        run_experiment(cfg, tmp_path, progress=False, plot=False, keep_going=True)
    message = str(info.value)
    assert message.startswith("5 of 10 trial(s) failed, the other 5 finished and are saved (a rerun retries only the "
                              "failed ones): 'bts' (seeds 0, 1, 2, 3, 4); the first 3 errors: ValueError: "), message
    assert message.count("ValueError: ") == 3 and "more" not in message


def test_an_import_path_policy_that_cannot_be_imported_names_its_table():
    with pytest.raises(ConfigError, match=r"^\[policies.x\]: cannot import module 'no_such_module'"):
        run_experiment(_config(policies=(PolicySpec("x", "no_such_module:Policy"),)), None, progress=False)


def test_a_module_in_a_policy_spec_is_copied_for_each_trial():
    # A neural policy trains the module it is given in place: one module in a spec made every
    # seed's trial start from the weights the previous trial left (so the numbers depended on the
    # trial order and on jobs), and the caller's pretrained module came back trained.
    import torch

    from banditrec.models import build_model

    module = build_model("mlp", 8, 8, hidden=(16,), seed=0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    config = ExperimentConfig(
        name="m", horizon=200, batch_size=10, seeds=(0, 1),
        environment=EnvironmentSpec(id="banditrec/Nonlinear-v0", params={"n_items": 20, "n_candidates": 5}),
        policies=(PolicySpec("nl", "NeuralEpsilonGreedy", {"model": module, "train_every": 10}),),
    )
    first = run_trial(config, config.policies[0], seed=1).table
    run_trial(config, config.policies[0], seed=0)
    again = run_trial(config, config.policies[0], seed=1).table
    pd.testing.assert_frame_equal(first, again)  # seed 1 the same after seed 0 ran
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


@pytest.mark.parametrize("name", ["NA", "None", "1", 'a,b "c"', "naïve/ε=0.1", "nan"])
def test_a_stored_trial_reads_back_as_pandas_would(tmp_path, name):
    # the trials are parsed with the csv module (pd.read_csv's fixed cost was most of a resume):
    # the same table, dtypes and float bits as read_table gives
    from banditrec.results import read_table
    from banditrec.runner import _parse_trial_table

    config = _config(policies=(PolicySpec(name, "LinUCB"),), seeds=(0,))
    run_experiment(config, tmp_path, progress=False, plot=False)
    (csv_path,) = (tmp_path / "trials").glob("*.csv")
    data = csv_path.read_bytes()
    ours, theirs = _parse_trial_table(data), read_table(data)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert (ours["policy"] == name).all()


def test_summary_keeps_integer_parameters_integer_beside_blanks(tmp_path):
    # an int column with blanks (a parameter one policy does not set) was written as 0.0
    config = _config(policies=(PolicySpec("lin", "LinUCB", {"initial_pulls": 0}), PolicySpec("random", "Random")))
    run_experiment(config, tmp_path, progress=False, plot=False)
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert lines[0].endswith(",param_initial_pulls") and lines[1].endswith(",0") and lines[2].endswith(",")
