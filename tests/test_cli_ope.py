"""`banditrec ope`: offline comparison of policies on a simulator log, end to end, and its errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditrec.cli import main
from banditrec.config import ExperimentConfig
from banditrec.runner import run_experiment

RUN = {
    "experiment": {"name": "ope-cli", "horizon": 1500, "batch_size": 50, "seeds": 1},
    "environment": {"id": "banditrec/Linear-v0", "n_items": 6, "context_dim": 3},
    "policies": {"logger": {"type": "LinEpsilonGreedy", "epsilon": 0.3}},
}

TARGETS = """
# Same schema as experiment configs; a list value makes a grid.
[policies.linucb]
type = "LinUCB"
alpha = [0.0, 1.0]

[policies.random]
type = "Random"

[ope]
n_bootstrap = 100
estimators = ["ips", "snips", "dm", "dr"]
"""


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run_experiment(ExperimentConfig.from_dict(RUN), out, progress=False, plot=False, log_feedback=True)
    (path,) = sorted((out / "feedback").glob("*.npz"))
    return path


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_ope_end_to_end(log_file, tmp_path, capsys):
    config = write(tmp_path, "targets.toml", TARGETS)
    out = tmp_path / "ope"
    args = ["ope", str(log_file), "--config", config, "--out", str(out), "--train-fraction", "0.4",
            "--alpha", "0.1", "--seed", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1500 logged rounds: 600 to train the targets, 900 to evaluate them; 90% bootstrap intervals" in printed
    assert "linucb[alpha=1.0]" in printed and "on_policy" in printed
    df = pd.read_csv(out / "ope.csv")
    assert list(df.columns) == ["policy", "estimator", "estimate", "low", "high", "true_value", "error"]
    assert df["policy"].unique().tolist() == ["linucb[alpha=0.0]", "linucb[alpha=1.0]", "random", "logging"]
    assert df.groupby("policy").size().drop("logging").eq(4).all()
    assert ((df["low"] <= df["estimate"]) & (df["estimate"] <= df["high"])).all()
    assert np.isfinite(df["true_value"]).all()
    # The greedy linear policy beats uniform play in the linear world, and the estimates say so.
    truth = df.groupby("policy")["true_value"].first()
    dr = df[df["estimator"] == "dr"].set_index("policy")["estimate"]
    assert truth["linucb[alpha=0.0]"] > truth["random"] + 0.1
    assert dr["linucb[alpha=0.0]"] > dr["random"] + 0.1
    assert (out / "ope.png").stat().st_size > 0
    # Same seed, same numbers.
    assert main(args) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "ope.csv"), df)


def test_an_experiment_config_can_name_the_targets(log_file, tmp_path, capsys):
    import json

    toml = """
[experiment]
name = "x"
horizon = 10
[environment]
id = "banditrec/Linear-v0"
[policies.eg]
type = "EpsilonGreedy"
epsilon = 0.1
[ope]
n_bootstrap = 50
train_fraction = 0.2
"""
    out = tmp_path / "o"
    assert main(["ope", str(log_file), "--config", write(tmp_path, "exp.toml", toml), "--out", str(out)]) == 0
    assert "300 to train the targets" in capsys.readouterr().out
    df = pd.read_csv(out / "ope.csv")
    assert df["policy"].unique().tolist() == ["eg", "logging"]
    assert len(df) == 9 + 1  # every default estimator, and the logging row
    assert json.dumps(df.to_dict())  # plain values only


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, log: ["ope", str(d / "none.npz"), "--config", "{cfg}"], "logged feedback file not found"),
        (lambda d, log: ["ope", str(d), "--config", "{cfg}"], "is a folder, not a LoggedFeedback .npz file"),
        (lambda d, log: ["ope", "{cfg}", "--config", "{cfg}"], "is not a banditrec LoggedFeedback file"),
        (lambda d, log: ["ope", "{arr}", "--config", "{cfg}"], "is not a banditrec LoggedFeedback file"),
        (lambda d, log: ["ope", log, "--config", str(d / "none.toml")], "config file not found"),
        (lambda d, log: ["ope", log, "--config", "{bad_toml}"], "not valid TOML"),
        (lambda d, log: ["ope", log, "--config", "{unknown_type}"], "[policies.a]: unknown policy type 'LinUBC'"),
        (lambda d, log: ["ope", log, "--config", "{unknown_param}"], "[policies.a]: unknown parameter(s) ['alhpa']"),
        (lambda d, log: ["ope", log, "--config", "{unknown_key}"], "unknown key(s) ['alpah'] in [ope]"),
        (lambda d, log: ["ope", log, "--config", "{bad_estimator}"], "[ope] estimators must name some of"),
        (lambda d, log: ["ope", log, "--config", "{no_policies}"], "missing [policies] section"),
        (lambda d, log: ["ope", log, "--config", "{reserved}"], "[policies.logging] is reserved"),
        # used to be a FileExistsError traceback from mkdir, after the whole evaluation
        (lambda d, log: ["ope", log, "--config", "{cfg}", "--out", "{cfg}"], "is a file, not a folder"),
    ],
)
def test_errors_are_one_line(log_file, tmp_path, capsys, make, message):
    files = {
        "cfg": write(tmp_path, "ok.toml", '[policies.a]\ntype = "Random"\n'),
        "bad_toml": write(tmp_path, "bad.toml", "x = \n"),
        "unknown_type": write(tmp_path, "t.toml", '[policies.a]\ntype = "LinUBC"\n'),
        "unknown_param": write(tmp_path, "p.toml", '[policies.a]\ntype = "LinUCB"\nalhpa = 1.0\n'),
        "unknown_key": write(tmp_path, "k.toml", '[policies.a]\ntype = "Random"\n[ope]\nalpah = 0.1\n'),
        "bad_estimator": write(tmp_path, "e.toml", '[policies.a]\ntype = "Random"\n[ope]\nestimators = ["ipw"]\n'),
        "no_policies": write(tmp_path, "n.toml", "[ope]\nalpha = 0.1\n"),
        "reserved": write(tmp_path, "r.toml", '[policies.logging]\ntype = "Random"\n'),
    }
    arr = tmp_path / "arr.npz"
    np.savez(arr, a=np.zeros(3))
    files["arr"] = str(arr)
    argv = [a.format(**files) for a in make(tmp_path, str(log_file))]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("banditrec: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--train-fraction", "1", "expected a number in [0, 1), got 1"),
    ("--train-fraction", "-0.1", "expected a number in [0, 1), got -0.1"),
    ("--alpha", "1.5", "expected a number in (0, 1), got 1.5"),
    ("--alpha", "nan", "expected a number in (0, 1), got nan"),  # was the estimators' line, no option named
    ("--alpha", "0", "expected a number in (0, 1), got 0"),
    ("--seed", "-1", "expected an integer >= 0, got -1"),
])
def test_ope_options_are_checked_naming_the_option_before_anything_runs(log_file, tmp_path, capsys, flag, value, message):
    config = write(tmp_path, "ok.toml", '[policies.a]\ntype = "Random"\n')
    with pytest.raises(SystemExit) as exit_:  # argparse refuses the value before the log is read
        main(["ope", str(log_file), "--config", config, "--out", str(tmp_path / "out"), flag, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flag}: {message}" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("ope", "message"),
    [
        # "unhashable type: 'list'", "batch_size must be ..." (not the key written), and value
        # errors that named neither the file nor [ope] while type errors did
        ('estimators = [["ips"]]', "[ope] estimators must be a list of names (strings), got ['ips'] in it"),
        ('pretrained = [["a"]]', "[ope] pretrained must be a list of names (strings), got ['a'] in it"),
        ("train_batch_size = 0", "[ope] train_batch_size must be a positive integer, got 0"),
        ("alpha = 1.5", "[ope] alpha must be a number in (0, 1), got 1.5"),
        ("n_bootstrap = 0", "[ope] n_bootstrap must be a positive integer, got 0"),
        ('method = "bogus"', "[ope] method must be 'bootstrap' or 'normal', got 'bogus'"),
        ("n_folds = 0", "[ope] n_folds must be a positive integer, got 0"),
        ("train_fraction = 1", "[ope] train_fraction must be a number in [0, 1), got 1"),
        ("seed = -1", "[ope] seed must be a non-negative integer, got -1"),
        ('reward_model = "forest"', "[ope] reward_model must be one of ['logistic', 'logistic_cv', 'ridge', 'ridge_cv'], got 'forest'"),
    ],
)
def test_ope_option_errors_name_the_file_and_the_key(log_file, tmp_path, capsys, ope, message):
    config = write(tmp_path, "o.toml", f'[policies.a]\ntype = "Random"\n[ope]\n{ope}\n')
    assert main(["ope", str(log_file), "--config", config, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"banditrec: error: {config}: {message}\n"
    assert not (tmp_path / "out").exists()


def test_targets_file_is_read_as_an_experiment_config_is(tmp_path):
    # a UTF-8 byte-order mark was "not valid TOML", a non-ASCII name depended on the locale, and a
    # folder was "config file not found"
    from banditrec.config import ConfigError
    from banditrec.ope import load_offline_targets

    path = tmp_path / "t.toml"
    path.write_bytes('\ufeff[policies."ε-greedy"]\ntype = "EpsilonGreedy"\n'.encode("utf-8"))
    assert [spec.name for spec in load_offline_targets(path).policies] == ["ε-greedy"]
    with pytest.raises(ConfigError, match=rf"^{tmp_path} is a folder, not a config file"):
        load_offline_targets(tmp_path)


def test_evaluate_offline_names_train_batch_size_as_its_caller_wrote_it():
    from banditrec.ope import evaluate_offline

    with pytest.raises(ValueError, match=r"^train_batch_size must be a positive integer, got 0$"):
        evaluate_offline(None, {"a": "Random"}, train_batch_size=0)


PLUG_IN = """
from banditrec.policies import Random


def failing(seed=None, where="update"):
    policy = Random(seed=seed)

    def broken(*args, **kwargs):
        raise RuntimeError("the plug-in broke")

    setattr(policy, where, broken)
    return policy
"""


@pytest.mark.parametrize("where, stage", [
    ("update", r"training on logged rounds 0 to \d+"),
    ("action_distribution", r"scoring the \d+ evaluation rounds"),
])
def test_a_target_policys_own_error_is_one_line_naming_it(log_file, tmp_path, capsys, monkeypatch, where, stage):
    # A plug-in target's RuntimeError printed a whole traceback, without saying which target.
    (tmp_path / "ope_plug_in.py").write_text(PLUG_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = write(tmp_path, "t.toml", f'[policies.mine]\ntype = "ope_plug_in:failing"\nwhere = "{where}"\n'
                                       '[ope]\nn_bootstrap = 20\n')
    assert main(["ope", str(log_file), "--config", config, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert __import__("re").fullmatch(
        rf"banditrec: error: RuntimeError: the plug-in broke \(in target policy 'mine', {stage}\)\n", err), err
    with pytest.raises(RuntimeError, match="the plug-in broke"):
        main(["ope", str(log_file), "--config", config, "--out", str(tmp_path / "o"), "--traceback"])


def test_the_reward_model_is_chosen_by_name_in_the_targets_file(log_file, tmp_path, capsys):
    base = '[policies.random]\ntype = "Random"\n[ope]\nn_bootstrap = 20\nestimators = ["dm"]\n'
    dms = {}
    for model in ("ridge", "logistic"):
        config = write(tmp_path, f"{model}.toml", base + f'reward_model = "{model}"\n')
        assert main(["ope", str(log_file), "--config", config, "--out", str(tmp_path / model)]) == 0
        capsys.readouterr()
        df = pd.read_csv(tmp_path / model / "ope.csv")
        dms[model] = df.loc[df["policy"] == "random", "estimate"].item()
    assert dms["ridge"] != dms["logistic"] and 0 < dms["logistic"] < 1
