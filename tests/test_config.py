"""Config files: valid ones parse; every malformed one is rejected with the key it concerns."""

from __future__ import annotations

import re

import pytest
import tomllib

from banditrec.config import ConfigError, ExperimentConfig, load_config

VALID = {
    "experiment": {"name": "t", "horizon": 100, "batch_size": 4, "seeds": 2},
    "environment": {"id": "banditrec/Linear-v0", "n_items": 5},
    "policies": {"linucb": {"type": "LinUCB", "alpha": 1.0}, "random": {"type": "Random"}},
}


def _with(section, key, value):
    raw = {k: dict(v) for k, v in VALID.items()}
    if value is None:
        del raw[section][key]
    else:
        raw[section][key] = value
    return raw


def test_valid_config_parses():
    cfg = ExperimentConfig.from_dict(VALID)
    assert cfg.seeds == (0, 1) and cfg.n_steps == 25
    assert [p.name for p in cfg.policies] == ["linucb", "random"]
    assert cfg.environment.params == {"n_items": 5}


def test_parameter_lists_expand_into_a_grid():
    raw = _with("policies", "linucb", {"type": "LinUCB", "alpha": [0.1, 1.0], "lam": [1.0, 2.0]})
    names = [p.name for p in ExperimentConfig.from_dict(raw).policies]
    assert "linucb[alpha=0.1,lam=2.0]" in names and len(names) == 5


def test_a_one_value_list_is_a_setting_that_keeps_the_policy_name():
    # hidden = [[16, 16]] (the README's way to give one network) used to rename the policy
    # 'neural[hidden=[16, 16]]' in every table; only parameters that vary label a grid.
    raw = _with("policies", "neural", {"type": "NeuralEpsilonGreedy", "hidden": [[16, 16]], "epsilon": [0.05, 0.1]})
    names = {p.name: p.params for p in ExperimentConfig.from_dict(raw).policies}
    assert names["neural[epsilon=0.05]"] == {"hidden": [16, 16], "epsilon": 0.05} and "neural[epsilon=0.1]" in names
    raw = _with("policies", "neural", {"type": "NeuralEpsilonGreedy", "hidden": [[16, 16]]})
    assert "neural" in [p.name for p in ExperimentConfig.from_dict(raw).policies]


@pytest.mark.parametrize(
    "raw, match",
    [
        (_with("experiment", "horizon", None), "missing required key 'horizon'"),
        (_with("experiment", "horizn", 5), r"unknown key\(s\) \['horizn'\]"),
        (_with("experiment", "horizon", "100"), "horizon must be a positive integer"),
        (_with("experiment", "batch_size", 0), "batch_size must be a positive integer"),
        (_with("experiment", "seeds", [1, 1]), "duplicates"),
        (_with("experiment", "seeds", "3"), "seeds must be"),
        (_with("environment", "id", None), "exactly one of 'id'"),
        (_with("policies", "linucb", {"alpha": 1.0}), r"\[policies.linucb\] needs a string 'type'"),
        ({"experiment": VALID["experiment"], "policies": VALID["policies"]}, r"missing \[environment\]"),
        ({**VALID, "extra": {}}, "unknown key"),
    ],
)
def test_malformed_configs_name_the_problem(raw, match):
    with pytest.raises(ConfigError, match=match):
        ExperimentConfig.from_dict(raw)


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_config_that_is_not_utf8_names_the_file(tmp_path):
    """Used to be the bare "'utf-8' codec can't decode byte 0xff in position 0", without the file."""
    path = tmp_path / "utf16.toml"
    path.write_bytes("[experiment]\nname = 'x'\n".encode("utf-16"))  # starts with the BOM b"\xff\xfe"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not a text (TOML) file") and "must be UTF-8 encoded TOML" in msg


@pytest.mark.parametrize(
    "section, key, value, match",
    [
        # these used to surface as "make_policy() got multiple values for keyword argument 'seed'",
        # pandas' "No objects to concatenate", or a silent grid of one-layer networks
        ("policies", "net", {"type": "LinUCB", "seed": 5}, r"\[policies.net\] seed is set per trial"),
        ("environment", "num_envs", 8, r"num_envs is the batch size; set \[experiment\] batch_size"),
        ("policies", "net", {"type": "LinUCB", "alpha": []}, r"alpha = \[\] is an empty grid"),
        ("policies", "net", {"type": "NeuralEpsilonGreedy", "hidden": [16, 32]},
         r"hidden takes a list: write hidden = \[\[16, 32\]\] for one value"),
    ],
)
def test_reserved_keys_empty_grids_and_flat_lists_are_rejected(section, key, value, match):
    with pytest.raises(ConfigError, match=match):
        ExperimentConfig.from_dict(_with(section, key, value))


def test_list_valued_parameters_take_a_list_of_lists():
    one = ExperimentConfig.from_dict(_with("policies", "net", {"type": "NeuralEpsilonGreedy", "hidden": [[16, 32]]}))
    assert [p.params["hidden"] for p in one.policies if p.type == "NeuralEpsilonGreedy"] == [[16, 32]]
    grid = ExperimentConfig.from_dict(_with("policies", "net", {"type": "NeuralEpsilonGreedy", "hidden": [[16], [32]]}))
    assert [p.params["hidden"] for p in grid.policies if p.type == "NeuralEpsilonGreedy"] == [[16], [32]]


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"seeds": 3.5}, "seeds must be a count or a non-empty list of non-negative ints, got 3.5"),
        ({"seeds": ()}, "seeds must be a count or a non-empty list"),
        ({"seeds": (-1,)}, "seeds must be a count or a non-empty list"),
        ({"seeds": (1, 1)}, r"seeds has duplicates: \[1, 1\]"),
        ({"horizon": 0}, "horizon must be a positive integer, got 0"),
        ({"n_checkpoints": 0}, "n_checkpoints must be a positive integer, got 0"),
        ({"jobs": 0}, "jobs must be a positive integer, got 0"),
        ({"batch_size": True}, "batch_size must be a positive integer, got True"),
        ({"name": ""}, "name must be a non-empty name without path separators"),
        ({"name": "../../escape"}, "name must be a non-empty name without path separators"),
        ({"name": "a/b"}, "name must be a non-empty name without path separators"),
        # a NUL was "embedded null byte", a newline a folder whose name spans two lines
        ({"name": "a\x00b"}, r"name must be a non-empty name without path separators or control characters.*'a\\x00b'"),
        ({"name": "a\nb"}, "name must be a non-empty name without path separators or control characters"),
        ({"policies": ("LinUCB",)}, "policies must be a sequence of PolicySpec"),
    ],
)
def test_a_config_changed_in_code_is_checked_as_a_file_is(changes, match):
    cfg = ExperimentConfig.from_dict(VALID)
    with pytest.raises(ConfigError, match=match):
        cfg.replace(**changes)


def test_replace_takes_a_seed_count_as_a_file_does():
    assert ExperimentConfig.from_dict(VALID).replace(seeds=3).seeds == (0, 1, 2)


def test_an_experiment_name_that_is_a_path_is_refused_in_a_file(tmp_path):
    with pytest.raises(ConfigError, match=r"\[experiment\] name must be a non-empty name without path separators"):
        ExperimentConfig.from_dict(_with("experiment", "name", "../out"))


def test_an_experiment_without_policies_fails_before_running():
    from banditrec.runner import run_experiment

    with pytest.raises(ConfigError, match="the experiment has no policies to run"):
        run_experiment(ExperimentConfig.from_dict(VALID).replace(policies=()), None, progress=False)


def test_a_typo_in_model_options_fails_before_any_trial_runs():
    # It used to surface only when the trial built its network from the first batch, after the
    # trials before it in the sweep had run.
    from banditrec.runner import run_experiment

    raw = _with("policies", "neural", {"type": "NeuralLinear", "model": "multi_output", "model_options": {"n_itmes": 5}})
    with pytest.raises(ConfigError, match=r"\[policies.neural\]: unknown option\(s\) \['n_itmes'\] for model 'multi_output'"):
        run_experiment(ExperimentConfig.from_dict(raw), None, progress=False)


def test_a_grid_too_large_to_build_is_refused_with_its_size():
    # two 1,000-value lists built a million policies (85 s, 1.3 GB) before any trial, without a word
    raw = _with("policies", "eg", {"type": "EpsilonGreedy", "epsilon": [i / 1000 for i in range(1000)],
                                   "decay": list(range(1000))})
    with pytest.raises(ConfigError, match=r"\[policies.eg\] expands to 1,000,000 policies \(1000 epsilon × 1000 decay\); .*at most 100,000"):
        ExperimentConfig.from_dict(raw)


def test_repeated_policy_names_are_named_briefly_and_before_any_policy_is_built():
    # 3,001 grid values with one repeated printed every name, in a 71 KB line
    values = [i / 3000 for i in range(3000)] + [0.5]
    raw = _with("policies", "eg", {"type": "EpsilonGreedy", "epsilon": values})
    with pytest.raises(ConfigError, match=r"^config: \[policies\.eg\] epsilon = .* lists one value twice \(0\.5 and 0\.5\)") as info:
        ExperimentConfig.from_dict(raw)
    assert len(str(info.value)) < 300
    # a table named as one of the grid's points: the names collide, named as briefly
    raw = _with("policies", "eg", {"type": "EpsilonGreedy", "epsilon": values[:-1]})
    raw["policies"]["eg[epsilon=0.5]"] = {"type": "EpsilonGreedy"}
    with pytest.raises(ConfigError, match=r"^config: \[policies\] names must be unique; 1 name\(s\) repeat: 'eg\[epsilon=0.5\]' \(") as info:
        ExperimentConfig.from_dict(raw)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    "key, value",
    [("vector_kwargs", {}), ("wrappers", []), ("vectorization_mode", "sync"), ("validate", False),
     ("vector_kwargs", {"copy": False})],
)
def test_make_vec_arguments_are_reserved_keys_of_environment(key, value):
    # passed through to gymnasium.make_vec: gymnasium's error, "got multiple values for keyword
    # argument", or (vector_kwargs = {}, wrappers = []) silently accepted
    with pytest.raises(ConfigError, match=rf"^config: \[environment\] reserved key\(s\) \['{key}'\]: arguments of "
                                          r"gymnasium.make_vec or of the registration of 'banditrec/Linear-v0'"):
        ExperimentConfig.from_dict(_with("environment", key, value))
    # a simulator given by import path receives its keys itself
    raw = _with("environment", key, value)
    del raw["environment"]["id"]
    raw["environment"]["simulator"] = "my_shop:Shop"
    assert ExperimentConfig.from_dict(raw).environment.params[key] == value


def test_make_vec_arguments_are_refused_in_a_config_built_in_code():
    from banditrec.config import EnvironmentSpec
    from banditrec.runner import run_experiment

    config = ExperimentConfig.from_dict(VALID).replace(environment=EnvironmentSpec("banditrec/Linear-v0", None, {"wrappers": []}))
    with pytest.raises(ConfigError, match=r"^\[environment\] reserved key\(s\) \['wrappers'\]"):
        run_experiment(config, None, progress=False)


def test_environment_errors_name_the_section_and_unknown_keys_list_the_valid_ones():
    from banditrec.runner import run_experiment

    for params, error, match in [
        ({"n_items": "5"}, ConfigError, r"^\[environment\] n_items must be a positive int, got '5'$"),
        ({"n_itemz": 5}, TypeError, (r"^\[environment\] unknown key\(s\) \['n_itemz'\] for banditrec/Linear-v0 "
                                    r"\(did you mean 'n_items'\?\); expected among \['context_dim', 'min_candidates', .*'n_items', .*'world_seed'\]$")),
    ]:
        raw = {**VALID, "environment": {"id": "banditrec/Linear-v0", **params}}
        with pytest.raises(error, match=match):
            run_experiment(ExperimentConfig.from_dict(raw), None, progress=False)


def test_a_config_path_that_is_a_folder_or_starts_with_a_bom_is_read_as_meant(tmp_path):
    # a folder was "config file not found" (it exists); a UTF-8 file with a byte-order mark, as
    # some Windows editors save it, was "not valid TOML: Invalid statement (at line 1, column 1)"
    with pytest.raises(ConfigError, match=rf"^{tmp_path} is a folder, not a config file"):
        load_config(tmp_path)
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbf[experiment]\nname = "bom"\nhorizon = 10\n[environment]\nid = "banditrec/Linear-v0"\n'
                     b'[policies.r]\ntype = "Random"\n')
    assert load_config(path).name == "bom"


def test_multi_output_without_n_items_fails_before_any_trial_and_says_how_in_toml():
    # it failed only when its trial built the network, after the trials before it had run, and
    # spelled the fix in Python only
    from banditrec.runner import run_experiment

    raw = _with("policies", "neural", {"type": "NeuralLinear", "model": "multi_output"})
    with pytest.raises(ConfigError, match=r"\[policies.neural\]: model 'multi_output' has one output per item: .*"
                                          r"\(in a config file: model_options = \{n_items = 5\}\)"):
        run_experiment(ExperimentConfig.from_dict(raw), None, progress=False)


def test_a_list_for_a_table_parameter_is_reported_as_written():
    # model_options = [1] became a one-point grid, reported as "model_options must be a dict or None, got int"
    raw = _with("policies", "neural", {"type": "NeuralLinear", "model": "multi_output", "model_options": [1]})
    with pytest.raises(ConfigError, match=r"^config: \[policies.neural\] model_options takes a table, got "
                                          r"model_options = \[1\]: write model_options = \{name = value\}"):
        ExperimentConfig.from_dict(raw)
    grid = _with("policies", "neural", {"type": "NeuralLinear", "model": "multi_output",
                                        "model_options": [{"n_items": 5}, {"n_items": 6}]})
    assert len(ExperimentConfig.from_dict(grid).policies) == 2 + 2


def test_num_threads_zero_in_a_config_leaves_torchs_setting():
    # TOML has no null, so num_threads = None could not be written in a config; 0 now means it.
    import torch

    from banditrec.policies import make_policy

    config = ExperimentConfig.from_dict({
        "experiment": {"name": "threads", "horizon": 20, "batch_size": 4, "seeds": 1},
        "environment": {"id": "banditrec/Linear-v0", "n_items": 5, "context_dim": 3},
        "policies": {"eg": {"type": "NeuralEpsilonGreedy", "num_threads": 0, "hidden": [[4]]}},
    })
    spec = config.policies[0]
    policy = make_policy(spec.type, seed=0, **dict(spec.params))
    assert policy.estimator.num_threads == 0
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        from banditrec.runner import run_trial

        run_trial(config, spec, seed=0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_sweep_of_absurdly_many_trials_is_refused_before_its_seeds_are_listed():
    # seeds = 10**11 (a typo) made a list of 10**11 seeds: minutes and gigabytes, then a kill
    import time

    from banditrec.config import MAX_TRIALS

    start = time.perf_counter()
    with pytest.raises(ConfigError, match=(r"^config: \[experiment\] seeds = 100000000000 with 2 policy\(ies\) makes "
                                           r"200,000,000,000 trials; a config may hold at most 1,000,000: split")):
        ExperimentConfig.from_dict(_with("experiment", "seeds", 10**11))
    with pytest.raises(ConfigError, match=r"^seeds = 10000000000 with 2 policy\(ies\) makes 20,000,000,000 trials"):
        ExperimentConfig.from_dict(VALID).replace(seeds=10**10)
    assert time.perf_counter() - start < 5
    with pytest.raises(ConfigError, match=r"seeds = a list of 500,001 with 2 policy\(ies\) makes 1,000,002 trials"):
        ExperimentConfig.from_dict(VALID).replace(seeds=list(range(MAX_TRIALS // 2 + 1)))
    assert len(ExperimentConfig.from_dict(VALID).replace(seeds=MAX_TRIALS // 2).seeds) == MAX_TRIALS // 2


def test_max_episode_steps_which_a_trial_ignores_is_refused():
    # accepted and listed among the valid keys, it changed nothing: a trial never resets its world
    from banditrec.config import EnvironmentSpec
    from banditrec.runner import run_experiment

    with pytest.raises(ConfigError, match=r"^config: \[environment\] max_episode_steps has no effect in an experiment"):
        ExperimentConfig.from_dict(_with("environment", "max_episode_steps", 10))
    config = ExperimentConfig.from_dict(VALID).replace(
        environment=EnvironmentSpec("banditrec/Linear-v0", None, {"max_episode_steps": 10}))
    with pytest.raises(ConfigError, match=r"^\[environment\] max_episode_steps has no effect"):
        run_experiment(config, None, progress=False)


@pytest.mark.parametrize(
    "section, key, value, match",
    [
        ("experiment", "batchsize", 3, r"unknown key\(s\) \['batchsize'\] in \[experiment\] \(did you mean 'batch_size'\?\); "),
        ("policies", "x", {"type": "LinUBC"}, r"unknown policy type 'LinUBC' \(did you mean 'LinUCB'\?\); known types: "),
        ("policies", "x", {"type": "linucb"}, r"unknown policy type 'linucb' \(did you mean 'LinUCB'\?\)"),
        ("policies", "x", {"type": "LinUCB", "alhpa": 1.0},
         r"unknown parameter\(s\) \['alhpa'\] for policy 'LinUCB' \(did you mean 'alpha'\?\); valid: "),
        ("environment", "n_itmes", 3,
         r"unknown key\(s\) \['n_itmes'\] for banditrec/Linear-v0 \(did you mean 'n_items'\?\); expected among "),
    ],
)
def test_a_near_miss_of_a_key_or_policy_type_names_the_likely_one(section, key, value, match):
    from banditrec.runner import run_experiment

    with pytest.raises((ConfigError, TypeError), match=match):
        run_experiment(ExperimentConfig.from_dict(_with(section, key, value)), None, progress=False)


@pytest.mark.parametrize(("values", "shown"), [("[1, 1.0]", "(1 and 1.0)"), ("[0.1, 0.5, 0.1]", "(0.1 and 0.1)")])
def test_a_grid_listing_one_value_twice_is_refused(values, shown):
    # alpha = [1, 1.0] made two identical policies, a[alpha=1] and a[alpha=1.0], each run and plotted
    text = f"""
[experiment]
name = "g"
horizon = 100
batch_size = 10
[environment]
id = "banditrec/Linear-v0"
[policies.a]
type = "LinUCB"
alpha = {values}
"""
    with pytest.raises(ConfigError, match=r"\[policies\.a\] alpha = .* lists one value twice " + re.escape(shown)):
        ExperimentConfig.from_dict(tomllib.loads(text))
