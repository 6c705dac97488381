"""evaluate_offline: train targets on the start of a log, freeze them, score them on the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditrec.config import ExperimentConfig, PolicySpec
from banditrec.environments.simulator import Observation
from banditrec.ope import (
    IPS,
    SNIPS,
    DoublyRobust,
    LoggedFeedback,
    evaluate_offline,
    split_by_time,
    train_offline,
    true_policy_value,
)
from banditrec.policies import Policy, make_policy
from banditrec.policies.base import Decision
from banditrec.runner import run_trial

# Rounds every Recorder was asked about, across copies (evaluate_offline copies its targets).
EVALUATED: list[int] = []


class Recorder(Policy):
    """Fixed distribution pi(k | x) proportional to exp(x_0 * k); records what it is given.

    Every ``update`` appends the user ids it was trained on to ``trained_on``; every
    ``action_distribution`` the user ids it was asked about to ``EVALUATED``. The logs' user ids
    are the round numbers, so the records say exactly which rounds trained and which evaluated.
    """

    def __init__(self, seed=None):
        super().__init__(seed)
        self.trained_on: list[int] = []

    def _distribution(self, obs: Observation) -> np.ndarray:
        EVALUATED.extend(obs.user_ids.tolist())
        k = obs.mask.shape[1]
        z = np.exp(obs.user_features[:, :1] * np.arange(k)[None, :])
        z = np.where(obs.mask, z, 0.0)
        return z / z.sum(axis=1, keepdims=True)

    def _act(self, obs: Observation) -> Decision:  # pragma: no cover - never acts offline
        raise AssertionError("an offline target must not act")

    def _learn(self, obs, actions, rewards) -> None:
        self.trained_on.extend(obs.user_ids.tolist())


def recorder_factory(seed=None):
    return Recorder(seed)


def simple_log(n: int, k: int = 3, seed: int = 0, truth: bool = True, timestamps=None) -> LoggedFeedback:
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, k, size=n)
    return LoggedFeedback(
        user_features=rng.normal(size=(n, 2)),
        item_features=np.zeros((n, k, 0)),
        item_ids=np.broadcast_to(np.arange(k), (n, k)),
        mask=np.ones((n, k), dtype=bool),
        user_ids=np.arange(n),
        actions=actions,
        rewards=rng.integers(0, 2, size=n).astype(float),
        propensities=np.full(n, 1.0 / k),
        timestamps=timestamps,
        expected_rewards=rng.uniform(size=(n, k)) if truth else None,
        logging_action_dist=np.full((n, k), 1.0 / k),
    )


@pytest.fixture(autouse=True)
def _register_recorder():
    from banditrec.policies.registry import POLICIES

    POLICIES["TestRecorder"] = recorder_factory
    EVALUATED.clear()
    yield
    POLICIES.pop("TestRecorder", None)


# ---------------------------------------------------------------------- the split
def test_targets_train_on_the_earliest_rounds_and_are_evaluated_on_the_rest():
    n = 40
    # Time order differs from row order: the earliest rounds are the last rows.
    timestamps = np.arange(n)[::-1].copy()
    log = simple_log(n, timestamps=timestamps)
    train, evaluation = split_by_time(log, 0.25)
    assert sorted(train.user_ids.tolist()) == list(range(30, 40))
    assert train.user_ids.tolist() == list(range(39, 29, -1))  # in time order
    assert sorted(evaluation.user_ids.tolist()) == list(range(30))

    trained = train_offline({"rec": "TestRecorder"}, train, batch_size=3)
    assert trained["rec"].trained_on == list(range(39, 29, -1))

    EVALUATED.clear()
    df = evaluate_offline(log, {"rec": "TestRecorder"}, train_fraction=0.25, n_bootstrap=50)
    assert sorted(EVALUATED) == list(range(30))
    assert df.attrs["n_train"] == 10 and df.attrs["n_eval"] == 30


def test_a_policy_object_is_copied_not_trained_in_place_and_pretrained_ones_are_not_updated():
    log = simple_log(20, truth=False)
    mine = Recorder(seed=0)
    trained = train_offline({"a": mine, "b": Recorder(seed=1)}, log, pretrained=("b",), batch_size=7)
    assert mine.trained_on == []
    assert trained["a"] is not mine and trained["a"].trained_on == list(range(20))
    assert trained["b"].trained_on == []


def test_no_training_rounds_when_train_fraction_is_zero():
    log = simple_log(10)
    df = evaluate_offline(log, {"rec": Recorder()}, train_fraction=0.0, n_bootstrap=20)
    assert df.attrs["n_train"] == 0 and df.attrs["n_eval"] == 10


# ---------------------------------------------------------------------- the truth
def test_true_value_and_logging_row_match_a_hand_computation():
    # Four rounds, two candidates; the first two train, the last two evaluate.
    q = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.6], [0.5, 0.4]])
    pi_b = np.array([[0.5, 0.5], [0.5, 0.5], [0.25, 0.75], [0.6, 0.4]])
    log = LoggedFeedback(
        user_features=np.array([[0.0], [0.0], [0.0], [np.log(3.0)]]),
        item_features=np.zeros((4, 2, 0)),
        item_ids=np.broadcast_to(np.arange(2), (4, 2)),
        mask=np.ones((4, 2), dtype=bool),
        user_ids=np.arange(4),
        actions=np.array([0, 1, 1, 0]),
        rewards=np.array([0.0, 1.0, 1.0, 0.0]),
        propensities=np.array([0.5, 0.5, 0.75, 0.6]),
        expected_rewards=q,
        logging_action_dist=pi_b,
    )
    # Recorder's pi(k|x) ∝ exp(x0 * k): round 2 (x0 = 0) is (1/2, 1/2), round 3 (x0 = ln 3) is (1/4, 3/4).
    expected_target = ((0.5 * 0.3 + 0.5 * 0.6) + (0.25 * 0.5 + 0.75 * 0.4)) / 2
    expected_logging = ((0.25 * 0.3 + 0.75 * 0.6) + (0.6 * 0.5 + 0.4 * 0.4)) / 2
    df = evaluate_offline(log, {"rec": Recorder()}, train_fraction=0.5, estimators=[IPS()], n_bootstrap=50)
    target = df[df["policy"] == "rec"].iloc[0]
    assert target["true_value"] == pytest.approx(expected_target)
    # IPS by hand: w * r = (0.5 / 0.75) * 1 and (0.25 / 0.6) * 0.
    assert target["estimate"] == pytest.approx((0.5 / 0.75 * 1.0 + 0.0) / 2)
    assert target["error"] == pytest.approx(target["estimate"] - expected_target)
    logging = df[df["policy"] == "logging"].iloc[0]
    assert logging["estimator"] == "on_policy"
    assert logging["estimate"] == pytest.approx(0.5)  # mean reward of rounds 2 and 3
    assert logging["true_value"] == pytest.approx(expected_logging)


def test_true_policy_value_needs_known_expected_rewards():
    log = simple_log(5, truth=False)
    with pytest.raises(ValueError, match="only known for simulator logs"):
        true_policy_value(log, np.full((5, 3), 1 / 3))


def test_real_logs_get_no_truth_columns():
    df = evaluate_offline(simple_log(30, truth=False), {"rec": Recorder()}, n_bootstrap=20)
    assert list(df.columns) == ["policy", "estimator", "estimate", "low", "high"]
    assert df["policy"].iloc[-1] == "logging"


def test_partly_known_truth_warns_and_reports_none():
    log = simple_log(10)
    q = log.expected_rewards.copy()
    q[7, 1] = np.nan
    partial = LoggedFeedback(**{**{f: getattr(log, f) for f in log.__dataclass_fields__}, "expected_rewards": q})
    with pytest.warns(UserWarning, match="only some rounds"):
        df = evaluate_offline(partial, {"rec": Recorder()}, n_bootstrap=20)
    assert "true_value" not in df.columns


# ---------------------------------------------------------------------- a simulated world
def uniform_log(n_rounds: int, seed: int = 0) -> LoggedFeedback:
    config = ExperimentConfig.from_dict(
        {
            "experiment": {"name": "ope-test", "horizon": n_rounds, "batch_size": 100, "seeds": [seed]},
            "environment": {"id": "banditrec/Linear-v0", "n_items": 8, "context_dim": 4},
            "policies": {"uniform": {"type": "Random"}},
        }
    )
    return run_trial(config, config.policies[0], seed, log_feedback=True).feedback


def test_estimators_are_close_to_the_truth_on_a_uniform_log():
    # One fixed log. Over log seeds 0-7 the worst |error| / interval width of the consistent
    # estimators was <= 0.73 on seven of them; seed 0 reached 2.1 (the matched rounds of the
    # deterministic target happened to click 3 standard deviations above their expectation).
    log = uniform_log(4000, seed=3)
    targets = {"linucb": ("LinUCB", {"alpha": 1.0}), "egreedy": ("EpsilonGreedy", {"epsilon": 0.2})}
    df = evaluate_offline(log, targets, n_bootstrap=300, seed=1)
    assert set(df["policy"]) == {"linucb", "egreedy", "logging"}
    truth = df.groupby("policy")["true_value"].first()
    # LinUCB learns the linear world from 2000 uniform rounds: far better than the item-only policy.
    assert truth["linucb"] > truth["egreedy"] + 0.1
    consistent = df[df["estimator"].isin(["replay", "ips", "snips", "dr", "sndr", "switch_dr", "dros"])]
    assert (consistent["error"].abs() <= consistent["high"] - consistent["low"]).all(), consistent
    covered = (consistent["low"] <= consistent["true_value"]) & (consistent["true_value"] <= consistent["high"])
    assert covered.mean() >= 0.7
    assert df["error"].abs().max() < 0.06


def test_specs_and_objects_give_the_same_table():
    log = uniform_log(1200, seed=3)
    estimators = [IPS(), SNIPS(), DoublyRobust()]
    forms = {
        "tuple": ("LinUCB", {"alpha": 0.5}),
        "spec": PolicySpec("x", "LinUCB", {"alpha": 0.5}),
        "dict": {"type": "LinUCB", "alpha": 0.5},
        "object": make_policy("LinUCB", seed=0, alpha=0.5),
    }
    untrained = forms["object"]
    tables = {
        form: evaluate_offline(log, {"linucb": target}, estimators=estimators, n_bootstrap=100)
        for form, target in forms.items()
    }
    assert untrained.estimator.d_ is None  # the caller's object was not trained
    reference = tables["tuple"]
    for form, table in tables.items():
        pd.testing.assert_frame_equal(table, reference, obj=form)
    plain = evaluate_offline(log, {"random": "Random"}, estimators=estimators, n_bootstrap=100)
    assert plain["policy"].tolist() == ["random"] * 3 + ["logging"]


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"policies": {"logging": "Random"}}, ValueError, "reserved"),
        ({"policies": {}}, ValueError, "non-empty dict"),
        ({"policies": {"a": "NoSuchPolicy"}}, ValueError, "policy 'a': unknown policy type 'NoSuchPolicy'"),
        ({"policies": {"a": ("LinUCB", {"alhpa": 1})}}, ValueError, r"policy 'a': unknown parameter\(s\) \['alhpa'\]"),
        ({"policies": {"a": 3}}, TypeError, "policy 'a' must be a banditrec Policy"),
        ({"train_fraction": 1.0}, ValueError, r"train_fraction must be a number in \[0, 1\)"),
        ({"train_fraction": 0.95}, ValueError, "at least 2 are needed"),
        ({"feedback": simple_log(60), "train_fraction": 0.95}, ValueError,
         r"leaves 3 rounds for evaluation, fewer than n_folds=5 for cross-fitting the reward model"),
        ({"pretrained": ("zzz",)}, ValueError, "pretrained names policies that are not given"),
        ({"alpha": 0.0}, ValueError, "alpha must be"),
        ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
        ({"method": "exact"}, ValueError, "method must be"),
        ({"estimators": []}, ValueError, "estimators is empty"),  # used to return only the logging row
    ],
)
def test_bad_arguments_are_rejected_with_a_message(kwargs, error, match):
    call = {"feedback": simple_log(20), "policies": {"rec": Recorder()}, **kwargs}
    with pytest.raises(error, match=match):
        evaluate_offline(**call)


def test_a_module_given_in_a_targets_params_is_copied_not_trained_in_place():
    # ("NeuralEpsilonGreedy", {"model": module}) trained the caller's module, which a policy
    # object given as the target never is
    import torch

    from banditrec.models import build_model

    log = simple_log(64, truth=False)
    module = build_model("mlp", 2, 0, hidden=(8,), seed=0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trained = train_offline({"n": ("NeuralEpsilonGreedy", {"model": module, "train_every": 8})}, log, batch_size=16)
    assert trained["n"].estimator.model_ is not module
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
