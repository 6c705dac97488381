"""Silent wrong answers and deep-stack errors an audit of the estimators found (nineteenth session)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from banditrec.ope import (
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    LoggedFeedback,
    LogisticRegression,
    LogisticRegressionCV,
    Replay,
    ReplayBiasWarning,
    RidgeRegression,
    RidgeRegressionCV,
    SupportWarning,
    action_dist_from_policy,
    compare_policies,
    fit_reward_model,
    train_offline,
    true_policy_value,
)
from banditrec.policies import EpsilonGreedyPolicy, LinUCB


def _log_without_support(n: int = 20_000):
    """A logger that never plays slot 2 (probability 0 in its recorded distribution)."""
    rng = np.random.default_rng(0)
    q, logger = np.array([0.2, 0.3, 0.9]), np.array([0.5, 0.5, 0.0])
    actions = rng.choice(3, size=n, p=logger)
    rewards = (rng.random(n) < q[actions]).astype(float)
    return LoggedFeedback.from_arrays(actions, rewards, logger[actions], 3, logging_action_dist=np.tile(logger, (n, 1)),
                                      expected_rewards=np.tile(q, (n, 1))), q


def test_a_target_acting_where_the_logger_never_does_is_warned_about():
    # IPS said 0.098 [0.094, 0.103] for a true 0.55, with no warning, though the log records the gap
    feedback, q = _log_without_support()
    target = np.tile([0.5, 0.0, 0.5], (feedback.n_rounds, 1))
    assert true_policy_value(feedback, target) == pytest.approx(0.55)
    for estimator in (IPS(), SNIPS(), DoublyRobust()):
        with pytest.warns(SupportWarning, match=r"on 20000 of 20000 rounds \(0.5 of its mass"):
            estimator.estimate_policy_value(feedback, target, estimated_rewards=np.tile(q, (feedback.n_rounds, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # DM does not weight rounds; a supported target warns nothing
        assert DirectMethod().estimate_policy_value(
            feedback, target, estimated_rewards=np.tile(q, (feedback.n_rounds, 1))) == pytest.approx(0.55)
        IPS().estimate_policy_value(feedback, np.tile([0.5, 0.5, 0.0], (feedback.n_rounds, 1)))


def test_replay_on_a_log_that_is_not_uniformly_random_is_warned_about():
    feedback, _ = _log_without_support(1000)  # propensity 0.5 with 3 valid candidates
    with pytest.warns(ReplayBiasWarning, match=r"propensity is not 1/\(valid candidates\)"):
        Replay().estimate_policy_value(feedback, np.tile([0.5, 0.5, 0.0], (feedback.n_rounds, 1)))
    rng = np.random.default_rng(1)
    uniform = LoggedFeedback.from_arrays(rng.integers(0, 3, 500), rng.random(500), np.full(500, 1 / 3), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Replay().estimate_policy_value(uniform, np.tile([1.0, 0.0, 0.0], (500, 1)))


def _context_log(n: int = 600, k: int = 5, seed: int = 0) -> LoggedFeedback:
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(k, 3))
    users = rng.normal(size=(n, 3))
    q = 1 / (1 + np.exp(-3 * users @ theta.T))
    actions = rng.integers(0, k, n)
    rewards = (rng.random(n) < q[np.arange(n), actions]).astype(float)
    return LoggedFeedback.from_arrays(actions, rewards, np.full(n, 1 / k), k, user_features=users, expected_rewards=q)


def test_a_target_trained_offline_is_past_its_round_robin_start_and_its_answer_does_not_depend_on_batch_size():
    # n_decisions_ stayed 0 after train_offline: a target with initial_pulls still played round-robin,
    # restarted in every 4096-row chunk (true value 0.941 scored in chunks of 4096, 0.496 in chunks of 10)
    feedback = _context_log()
    train, test = feedback[:300], feedback[300:]
    target = train_offline({"t": ("LinUCB", {"alpha": 0.0, "initial_pulls": 2})}, train)["t"]
    assert target.n_decisions_ == 300
    plain = train_offline({"t": ("LinUCB", {"alpha": 0.0})}, train)["t"]
    values = [true_policy_value(test, action_dist_from_policy(target, test, batch_size=b)) for b in (4096, 10)]
    assert values[0] == values[1] == true_policy_value(test, action_dist_from_policy(plain, test))


def test_a_target_still_in_its_round_robin_start_is_refused_rather_than_scored_by_row_position():
    feedback = _context_log(100)
    with pytest.raises(ValueError, match=r"LinUCB is still in its round-robin start \(initial_pulls=2: 10 forced"):
        action_dist_from_policy(LinUCB(alpha=0.0, initial_pulls=2, seed=0), feedback)


def test_a_decaying_epsilon_has_decayed_after_training_offline():
    feedback = _context_log(500, k=2)
    target = train_offline({"t": EpsilonGreedyPolicy(epsilon=1.0, decay=1000.0, seed=0)}, feedback)["t"]
    dist = action_dist_from_policy(target, feedback[:1])
    assert dist.max() > 0.99  # ε = 1 / (1 + 500) after 500 rounds; uniform (0.5, 0.5) before


@pytest.mark.parametrize("model", [RidgeRegression(), RidgeRegressionCV(), LogisticRegression(), LogisticRegressionCV()])
def test_reward_models_refuse_nan_inputs_with_the_row(model):
    X = np.random.default_rng(0).normal(size=(20, 2))
    y = np.random.default_rng(1).random(20)
    y[3] = np.nan
    with pytest.raises(ValueError, match=r"y must be finite; y has NaN or inf in row 3"):
        model.fit(X, y)  # ridge predicted NaN; the CV model failed with numpy's "argmax of an empty sequence"
    X[5, 1], y[3] = np.inf, 0.5
    with pytest.raises(ValueError, match=r"X must be finite; X has NaN or inf in row 5"):
        model.fit(X, y)


def test_predicting_with_another_number_of_features_is_named():
    model = RidgeRegression().fit(np.zeros((3, 2)), np.arange(3.0))
    with pytest.raises(ValueError, match=r"RidgeRegression was fitted on 2 features, predict got X with 3"):
        model.predict(np.zeros((2, 3)))
    assert RidgeRegression(alpha=np.float32(2.0)).alpha == 2.0  # numpy scalars are numbers too


def test_a_logistic_fit_stopped_before_converging_warns():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.warns(RuntimeWarning, match=r"stopped after max_iter=1 iterations without converging"):
        LogisticRegression(max_iter=1).fit(X, (X[:, 0] > 0).astype(float))


def test_weighted_rewards_that_overflow_are_an_error_not_an_infinite_estimate():
    actions = np.array([0, 1, 2, 0, 1, 2])
    feedback = LoggedFeedback.from_arrays(actions, [1e308, 0, 1e308, 0, 1e308, 1e308], np.full(6, 1 / 3), 3)
    with pytest.raises(ValueError, match=r"importance-weighted rewards overflow float64"):
        IPS().estimate_interval(feedback, np.full((6, 3), 1 / 3))


def test_small_input_gaps_get_named_errors():
    feedback = _context_log(50)
    with pytest.raises(ValueError, match=r"feedback has no rounds: there is nothing to fit a reward model on"):
        fit_reward_model(feedback[:0], n_folds=1)
    with pytest.raises(ValueError, match=r"the log has no rounds: OBP's bandit_feedback needs at least one"):
        feedback[:0].to_obp_bandit_feedback()
    with pytest.raises(TypeError, match=r"got the class RidgeRegression: pass RidgeRegression\(\)"):
        fit_reward_model(feedback, RidgeRegression)
    with pytest.raises(ValueError, match=r"estimators is empty"):
        compare_policies(feedback, {"uniform": np.full((50, 5), 0.2)}, estimators=[])
    # a tensor that requires grad is taken by its values; -1e-17 from 1 - sum(others) is rounding
    pi = torch.full((50, 5), 0.2, requires_grad=True)
    assert IPS().estimate_policy_value(feedback, pi) == pytest.approx(IPS().estimate_policy_value(feedback, np.full((50, 5), 0.2)))
    table = np.full((50, 5), 0.25)
    table[:, 4] = 1.0 - table[:, :4].sum(axis=1) - 1e-17
    IPS().estimate_policy_value(feedback, table)


def test_a_policy_returning_no_numbers_is_named():
    class Strings:
        def action_distribution(self, obs):
            return np.full(obs.item_ids.shape, "high")

    with pytest.raises(TypeError, match=r"Strings.action_distribution\(obs\) must return an array of shape \(B, K\), got array\(\[\['high'"):
        action_dist_from_policy(Strings(), _context_log(20))


def test_a_log_file_that_opens_but_holds_an_invalid_log_names_the_file(tmp_path):
    feedback = _context_log(20)
    path = feedback.save(tmp_path / "log.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    arrays["rewards"] = arrays["rewards"].copy()
    arrays["rewards"][5] = np.nan
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad.npz: .*rewards must be finite"):
        LoggedFeedback.load(tmp_path / "bad.npz")
