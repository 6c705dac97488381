"""Estimators against the exact truth of a known world, averaged over seeded replications."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from banditrec.ope import (
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    Replay,
    SelfNormalizedDR,
    fit_reward_model,
)

N_ROUNDS = 2000


def replicate(world, estimator, reps, n=N_ROUNDS, q_hat=None):
    values = []
    for seed in range(reps):
        feedback, action_dist = world.sample(n, seed=seed)
        q = q_hat(feedback) if q_hat is not None else None
        values.append(estimator.estimate_policy_value(feedback, action_dist, estimated_rewards=q))
    return np.array(values)


def test_world_is_not_trivial(world):
    # The target is much better than the logger, so an estimator that returns the logged mean fails.
    assert world.true_value - world.value_of(world.pi_b) > 0.05


@pytest.mark.parametrize("estimator", [IPS(), SNIPS()], ids=["ips", "snips"])
def test_weighting_estimators_are_centred_on_the_truth(world, estimator):
    values = replicate(world, estimator, reps=200)
    # IPS is unbiased and SNIPS nearly so at n=2000: the mean over 200 reps sits within
    # 4 standard errors (~0.005 here) of the truth.
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - world.true_value) < 4 * se + 1e-3


def test_dr_is_unbiased_even_with_a_wrong_reward_model(world):
    constant = replicate(world, DoublyRobust(), reps=200, q_hat=lambda fb: np.full((fb.n_rounds, 5), 0.5))
    se = constant.std(ddof=1) / np.sqrt(constant.size)
    assert abs(constant.mean() - world.true_value) < 4 * se + 1e-3
    # ...while DM with the same model is plainly biased.
    dm = replicate(world, DirectMethod(), reps=3, q_hat=lambda fb: np.full((fb.n_rounds, 5), 0.5))
    assert abs(dm.mean() - world.true_value) > 0.05


def test_dr_with_cross_fitted_ridge_is_accurate_and_beats_ips(world):
    dr = replicate(world, DoublyRobust(), reps=30, q_hat=lambda fb: fit_reward_model(fb, n_folds=3))
    ips = replicate(world, IPS(), reps=30)
    assert abs(dr.mean() - world.true_value) < 0.01
    assert np.mean((dr - world.true_value) ** 2) < np.mean((ips - world.true_value) ** 2)


def test_dr_with_the_true_reward_model_has_low_error(world):
    values = replicate(world, SelfNormalizedDR(), reps=20, q_hat=lambda fb: fb.expected_rewards)
    assert np.abs(values - world.true_value).max() < 0.03


def test_estimators_are_consistent_on_a_large_log(world):
    feedback, action_dist = world.sample(100_000, seed=99)
    for est in (IPS(), SNIPS()):
        assert est.estimate_policy_value(feedback, action_dist) == pytest.approx(world.true_value, abs=0.01)


def test_replay_recovers_the_on_policy_value_on_uniform_logs(uniform_world):
    values = replicate(uniform_world, Replay(), reps=50)
    assert abs(values.mean() - uniform_world.true_value) < 0.005
    # and with a deterministic target (the classic Li et al. setting)
    greedy = np.eye(5)[uniform_world.q.argmax(axis=1)]
    truth = uniform_world.value_of(greedy)
    estimates = []
    for seed in range(50):
        feedback, _ = uniform_world.sample(N_ROUNDS, seed=seed)
        estimates.append(Replay().estimate_policy_value(feedback, greedy[feedback.user_ids]))
    assert abs(np.mean(estimates) - truth) < 0.01


def test_replay_is_biased_on_non_uniform_logs_where_ips_is_not(world):
    # Documented limitation: Replay ignores propensities. With a logger that prefers bad actions,
    # Replay converges to E[sum_a pi_b pi_e q] / E[sum_a pi_b pi_e], well below the truth.
    z = np.exp(-4.0 * world.q)
    tilted = dataclasses.replace(world, pi_b=z / z.sum(axis=1, keepdims=True))
    limit = (tilted.pi_b * tilted.pi_e * tilted.q).sum() / (tilted.pi_b * tilted.pi_e).sum()
    assert tilted.true_value - limit > 0.03
    replay = replicate(tilted, Replay(), reps=50)
    ips = replicate(tilted, IPS(), reps=50)
    assert abs(replay.mean() - limit) < 0.01
    assert abs(ips.mean() - tilted.true_value) < 0.01


def coverage(world, estimator, method, reps, n, **kwargs):
    hits = 0
    for seed in range(reps):
        feedback, action_dist = world.sample(n, seed=1000 + seed)
        ci = estimator.estimate_interval(feedback, action_dist, 0.05, method=method, seed=seed, **kwargs)
        assert ci.low <= ci.estimate <= ci.high
        hits += ci.low <= world.true_value <= ci.high
    return hits / reps


def test_ips_normal_interval_has_nominal_coverage(world):
    assert coverage(world, IPS(), "normal", reps=100, n=1000) >= 0.85


def test_snips_bootstrap_interval_has_nominal_coverage(world):
    assert coverage(world, SNIPS(), "bootstrap", reps=100, n=1000, n_bootstrap=200) >= 0.85


def test_snips_normal_interval_uses_the_delta_method(world):
    assert coverage(world, SNIPS(), "normal", reps=100, n=1000) >= 0.85


def test_bootstrap_is_reproducible_and_seed_dependent(world):
    feedback, action_dist = world.sample(500, seed=1)
    a = IPS().estimate_interval(feedback, action_dist, seed=7, n_bootstrap=300)
    b = IPS().estimate_interval(feedback, action_dist, seed=7, n_bootstrap=300)
    c = IPS().estimate_interval(feedback, action_dist, seed=8, n_bootstrap=300)
    assert a == b
    assert a != c
    assert a.method == "bootstrap"
    # the point estimate is the full-log value, not a bootstrap mean
    assert a.estimate == IPS().estimate_policy_value(feedback, action_dist)


def test_bootstrap_and_normal_intervals_roughly_agree(world):
    feedback, action_dist = world.sample(3000, seed=2)
    boot = IPS().estimate_interval(feedback, action_dist, n_bootstrap=2000)
    norm = IPS().estimate_interval(feedback, action_dist, method="normal")
    width_b, width_n = boot.high - boot.low, norm.high - norm.low
    assert width_b == pytest.approx(width_n, rel=0.15)


def test_wider_confidence_gives_wider_interval(world):
    feedback, action_dist = world.sample(1000, seed=4)
    narrow = IPS().estimate_interval(feedback, action_dist, alpha=0.2, method="normal")
    wide = IPS().estimate_interval(feedback, action_dist, alpha=0.01, method="normal")
    assert wide.low < narrow.low < narrow.high < wide.high
