"""explain(): per candidate, the estimated mean, the exploration term and the probability."""

from __future__ import annotations

import numpy as np
import pytest

from banditrec.environments import make_vector_env
from banditrec.policies import POLICIES, make_policy


def _trained(name):
    env = make_vector_env("banditrec/Linear-v0", num_envs=8, n_items=10, context_dim=4, min_candidates=6)
    env.reset(seed=0)
    policy = make_policy(name, seed=0)
    for _ in range(20):
        obs = env.observation
        actions, _ = policy.act(obs)
        _, rewards, _, _ = env.step_batch(actions)
        policy.update(obs, actions, rewards)
    return policy, env.observation


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_explain_shapes_and_probabilities(name):
    policy, obs = _trained(name)
    why = policy.explain(obs)
    B, K = obs.item_ids.shape
    assert why["probability"].shape == (B, K)
    np.testing.assert_allclose(why["probability"].sum(axis=1), 1.0)
    assert np.all(why["probability"][~obs.mask] == 0)
    if name != "Random":
        assert why["mean"].shape == (B, K) and why["exploration"].shape == (B, K)
        assert np.all(np.isfinite(why["mean"][obs.mask]))
        # no estimate for an unavailable candidate: an argmax of mean used to be able to pick one
        assert np.isnan(why["mean"][~obs.mask]).all()


def test_linucb_explanation_adds_up():
    policy, obs = _trained("LinUCB")
    why = policy.explain(obs)
    # the bonus is alpha * width >= 0, and the per-feature contributions sum to the mean
    assert np.all(why["exploration"][obs.mask] >= 0) and np.isnan(why["exploration"][~obs.mask]).all()
    np.testing.assert_allclose(why["contributions"].sum(axis=-1), why["mean"], atol=1e-10)
    chosen = np.where(obs.mask, why["mean"] + why["exploration"], -np.inf).argmax(axis=1)
    np.testing.assert_array_equal(why["probability"][np.arange(len(chosen)), chosen], 1.0)


def test_epsilon_greedy_explanation_is_the_epsilon_share():
    policy, obs = _trained("LinEpsilonGreedy")
    why = policy.explain(obs)
    n_valid = obs.mask.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(why["exploration"], np.where(obs.mask, 0.1 / n_valid, 0.0))


@pytest.mark.parametrize("name", ["BernoulliTS", "LinTS"])
def test_thompson_exploration_averages_zero_around_the_mean(name):
    # BernoulliTS reported the empirical click rate as its mean (0 for an untried item) while its
    # draws centre on the Beta posterior mean: "exploration" averaged +0.5 on untried items.
    policy, obs = _trained(name)
    draws = np.stack([policy.explain(obs)["exploration"] for _ in range(400)])
    mean_exploration = draws.mean(axis=0)[obs.mask]
    spread = draws.std(axis=0)[obs.mask] / np.sqrt(len(draws))
    assert np.all(np.abs(mean_exploration) < 5 * spread + 1e-9), np.abs(mean_exploration / spread).max()
    if name == "BernoulliTS":
        stats = policy.estimator
        n, s = stats.counts_[obs.item_ids], stats.sums_[obs.item_ids]
        np.testing.assert_allclose(policy.explain(obs)["mean"][obs.mask], ((1 + s) / (2 + n))[obs.mask])
