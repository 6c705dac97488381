"""Every estimator against a hand-computed number on a four-round log (OBP's formulas)."""

from __future__ import annotations

import numpy as np
import pytest

from banditrec.ope import (
    IPS,
    SNIPS,
    ClippedIPS,
    DirectMethod,
    DoublyRobust,
    DRos,
    LoggedFeedback,
    Replay,
    SelfNormalizedDR,
    SwitchDR,
    default_estimators,
)

# The tiny fixture, by hand:
#   logged actions a = [0, 1, 2, 1], rewards r = [1, 0, 0.5, 1], propensities p = [.25, .5, .5, .4]
#   pi(a_i|x_i) = [0.5, 0.0, 1.0, 0.2]  ->  w = pi / p = [2.0, 0.0, 2.0, 0.5]
#   q̂(x_i, pi) = [.5*.6 + .25*.2 + .25*.4, .5, .8, .8*.5 + .2*.5] = [0.45, 0.5, 0.8, 0.5]
#   q̂(x_i, a_i) = [0.6, 0.3, 0.8, 0.5]  ->  r - q̂ = [0.4, -0.3, -0.3, 0.5]
W = [2.0, 0.0, 2.0, 0.5]
R = [1.0, 0.0, 0.5, 1.0]
Q_PI = [0.45, 0.5, 0.8, 0.5]
RESID = [0.4, -0.3, -0.3, 0.5]

HAND = {
    "ips": (2.0 * 1.0 + 0.0 * 0.0 + 2.0 * 0.5 + 0.5 * 1.0) / 4,
    "snips": (2.0 * 1.0 + 0.0 * 0.0 + 2.0 * 0.5 + 0.5 * 1.0) / (2.0 + 0.0 + 2.0 + 0.5),
    "clipped_ips": (1.5 * 1.0 + 0.0 * 0.0 + 1.5 * 0.5 + 0.5 * 1.0) / 4,  # lambda_ = 1.5
    "replay": (0.5 * 1.0 + 0.0 * 0.0 + 1.0 * 0.5 + 0.2 * 1.0) / (0.5 + 0.0 + 1.0 + 0.2),
    "dm": (0.45 + 0.5 + 0.8 + 0.5) / 4,
    "dr": ((0.45 + 2.0 * 0.4) + (0.5 + 0.0) + (0.8 + 2.0 * -0.3) + (0.5 + 0.5 * 0.5)) / 4,
    "sndr": (0.45 + 0.5 + 0.8 + 0.5) / 4
    + (2.0 * 0.4 + 0.0 + 2.0 * -0.3 + 0.5 * 0.5) / (2.0 + 0.0 + 2.0 + 0.5),
    # tau = 1: rounds with w > 1 (rows 0 and 2) fall back to DM.
    "switch_dr": (0.45 + (0.5 + 0.0) + 0.8 + (0.5 + 0.5 * 0.5)) / 4,
    # lambda_ = 2: w_hat = 2w / (w^2 + 2) = [4/6, 0, 4/6, 1/2.25]
    "dros": ((0.45 + 4 / 6 * 0.4) + 0.5 + (0.8 + 4 / 6 * -0.3) + (0.5 + 1 / 2.25 * 0.5)) / 4,
}

ESTIMATORS = {
    "ips": IPS(),
    "snips": SNIPS(),
    "clipped_ips": ClippedIPS(lambda_=1.5),
    "replay": Replay(),
    "dm": DirectMethod(),
    "dr": DoublyRobust(),
    "sndr": SelfNormalizedDR(),
    "switch_dr": SwitchDR(tau=1.0),
    "dros": DRos(lambda_=2.0),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_estimate_matches_hand_computation(tiny, name):
    feedback, action_dist, q_hat = tiny
    value = ESTIMATORS[name].estimate_policy_value(feedback, action_dist, estimated_rewards=q_hat)
    assert value == pytest.approx(HAND[name], abs=1e-12)


@pytest.mark.parametrize("name", sorted(HAND))
def test_round_rewards_average_to_the_estimate(tiny, name):
    feedback, action_dist, q_hat = tiny
    est = ESTIMATORS[name]
    rounds = est.estimate_round_rewards(feedback, action_dist, estimated_rewards=q_hat)
    assert rounds.shape == (4,)
    assert rounds.mean() == pytest.approx(
        est.estimate_policy_value(feedback, action_dist, estimated_rewards=q_hat)
    )


def test_ips_round_rewards_are_weighted_rewards(tiny):
    feedback, action_dist, _ = tiny
    np.testing.assert_allclose(IPS().estimate_round_rewards(feedback, action_dist), np.multiply(W, R))


def test_dr_round_rewards_follow_obp(tiny):
    feedback, action_dist, q_hat = tiny
    got = DoublyRobust().estimate_round_rewards(feedback, action_dist, estimated_rewards=q_hat)
    np.testing.assert_allclose(got, np.add(Q_PI, np.multiply(W, RESID)))


def test_limits_of_the_hyperparameters(tiny):
    feedback, action_dist, q_hat = tiny

    def value(est):
        return est.estimate_policy_value(feedback, action_dist, estimated_rewards=q_hat)

    assert value(ClippedIPS(lambda_=np.inf)) == pytest.approx(value(IPS()))
    assert value(SwitchDR(tau=np.inf)) == pytest.approx(value(DoublyRobust()))
    assert value(SwitchDR(tau=0.0)) == pytest.approx(value(DirectMethod()))
    assert value(DRos(lambda_=np.inf)) == pytest.approx(value(DoublyRobust()))
    assert value(DRos(lambda_=0.0)) == pytest.approx(value(DirectMethod()))


def test_replay_with_a_deterministic_target_is_the_matched_mean():
    # Li et al. 2011: keep the rounds where the target's choice equals the logged action.
    actions = np.array([0, 1, 1, 2, 0, 2])
    rewards = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    feedback = LoggedFeedback.from_arrays(actions, rewards, np.full(6, 1 / 3), n_candidates=3)
    choice = np.array([0, 1, 2, 2, 1, 2])
    value = Replay().estimate_policy_value(feedback, np.eye(3)[choice])
    matched = actions == choice  # rows 0, 1, 3, 5
    assert value == pytest.approx(rewards[matched].mean())
    assert value == pytest.approx((1.0 + 0.0 + 1.0 + 0.0) / 4)


def test_replay_equals_snips_on_uniform_logs(uniform_world):
    feedback, action_dist = uniform_world.sample(500, seed=3)
    assert Replay().estimate_policy_value(feedback, action_dist) == pytest.approx(
        SNIPS().estimate_policy_value(feedback, action_dist)
    )


def test_estimators_ignore_masked_slots_of_the_reward_model(tiny):
    feedback, action_dist, q_hat = tiny
    other = q_hat.copy()
    other[3, 2] = 1e6  # masked slot: pi puts no mass there
    for est in (DirectMethod(), DoublyRobust()):
        assert est.estimate_policy_value(feedback, action_dist, estimated_rewards=other) == pytest.approx(
            est.estimate_policy_value(feedback, action_dist, estimated_rewards=q_hat)
        )


def test_default_estimators_have_unique_names():
    names = [est.name for est in default_estimators()]
    assert len(names) == len(set(names)) == 9


def test_estimators_are_frozen():
    with pytest.raises(AttributeError):
        ClippedIPS().lambda_ = 3.0  # type: ignore[misc]
