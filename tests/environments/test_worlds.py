"""The built-in worlds against their known ground truth: the wheel's regret formula, the linear
world's optimum, candidate masks, and constructor validation."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from banditrec.environments import make_vector_env
from banditrec.policies import Random


# ------------------------------------------------------------------------------------------ wheel
@pytest.mark.parametrize("delta", [0.2, 0.5, 0.9])
def test_wheel_uniform_regret_matches_formula(delta):
    env = make_vector_env("banditrec/Wheel-v0", num_envs=20_000, delta=delta)
    policy = Random(seed=1)
    env.reset(seed=2)
    obs, regrets = env.observation, []
    for _ in range(5):
        decision = policy.act(obs)
        obs, _, _, info = env.step_batch(decision.actions)
        regrets.append(info["regret"])
    regret = np.concatenate(regrets)
    truth = 0.16 * delta**2 + 39.16 * (1 - delta**2)
    se = regret.std() / np.sqrt(regret.size)
    assert abs(regret.mean() - truth) < 5 * se, (regret.mean(), truth, se)


def test_wheel_regions_and_rewards():
    delta = 0.5
    env = make_vector_env("banditrec/Wheel-v0", num_envs=40_000, delta=delta)
    _, info = env.reset(seed=0)
    x, mu = env.observation.user_features, info["expected_rewards"]
    r = np.linalg.norm(x, axis=1)
    inner = r <= delta
    assert r.max() <= 1.0
    # Uniform on the disc: P(r <= delta) = delta^2.
    assert abs(inner.mean() - delta**2) < 5 * np.sqrt(delta**2 * (1 - delta**2) / r.size)
    np.testing.assert_array_equal(mu[inner], np.tile([1.2, 1.0, 1.0, 1.0, 1.0], (inner.sum(), 1)))
    outer = ~inner
    assert np.all(mu[outer, 0] == 1.2) and np.all(mu[outer].max(axis=1) == 50.0)
    assert np.all((mu[outer] == 50.0).sum(axis=1) == 1)
    # Each quadrant has its own lucrative arm among 1..4.
    quadrant = (x[outer, 0] >= 0).astype(int) * 2 + (x[outer, 1] >= 0)
    arm = mu[outer].argmax(axis=1)
    lucrative = {q: set(arm[quadrant == q].tolist()) for q in range(4)}
    assert all(len(arms) == 1 for arms in lucrative.values()), lucrative
    assert sorted(a for arms in lucrative.values() for a in arms) == [1, 2, 3, 4]
    # Rewards are Gaussian around the means with sd 0.01.
    best = mu.argmax(axis=1)
    _, reward, _, step_info = env.step_batch(best)
    np.testing.assert_array_equal(step_info["regret"], 0.0)
    assert abs(np.std(reward - step_info["expected_reward"]) - 0.01) < 1e-3


# ----------------------------------------------------------------------------------------- linear
@pytest.mark.parametrize("kwargs", [{}, {"n_items": 50, "n_candidates": 10, "min_candidates": 3}, {"reward": "gaussian"}])
def test_linear_oracle_has_zero_regret(kwargs):
    env = make_vector_env("banditrec/Linear-v0", num_envs=256, **kwargs)
    _, info = env.reset(seed=0)
    for _ in range(5):
        oracle = np.nanargmax(info["expected_rewards"], axis=1)
        _, _, _, info = env.step_batch(oracle)
        np.testing.assert_array_equal(info["regret"], 0.0)
    # A uniform choice over the same users would have paid something.
    assert np.nanmean(np.nanmax(info["expected_rewards"], axis=1) - np.nanmean(info["expected_rewards"], axis=1)) > 0.05


@pytest.mark.parametrize("reward", ["logistic", "gaussian"])
def test_linear_expected_rewards_follow_the_documented_model(reward):
    """x·θ_a with θ_a = √d · item features: a linear policy on user ⊗ item features is well specified."""
    d, scale = 16, 2.0
    env = make_vector_env("banditrec/Linear-v0", num_envs=64, context_dim=d, scale=scale, reward=reward)
    _, info = env.reset(seed=4)
    obs = env.observation
    z = np.sqrt(d) * np.einsum("bd,bkd->bk", obs.user_features, obs.item_features)
    truth = 1 / (1 + np.exp(-scale * z)) if reward == "logistic" else z
    np.testing.assert_allclose(info["expected_rewards"], truth, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(obs.item_ids, np.broadcast_to(np.arange(20), (64, 20)))  # K = catalogue: in order


def test_linear_gaussian_rewards_are_unbiased():
    B = 4000
    env = make_vector_env("banditrec/Linear-v0", num_envs=B, reward="gaussian", noise=0.5, context_dim=4)
    env.reset(seed=1)
    _, reward, _, info = env.step_batch(np.zeros(B, dtype=np.int64))
    noise = reward - info["expected_reward"]
    assert abs(noise.mean()) < 5 * 0.5 / np.sqrt(B)
    assert abs(noise.std() - 0.5) < 5 * 0.5 / np.sqrt(2 * B)


# ------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("env_id", ["banditrec/Linear-v0", "banditrec/Nonlinear-v0"])
def test_min_candidates_masks(env_id):
    K, lo, B = 10, 4, 512
    env = make_vector_env(env_id, num_envs=B, n_items=60, n_candidates=K, min_candidates=lo)
    _, info = env.reset(seed=0)
    obs = env.observation
    n_valid = obs.mask.sum(axis=1)
    assert n_valid.min() >= lo and n_valid.max() <= K
    assert set(np.unique(n_valid)) == set(range(lo, K + 1)), "every candidate-set size in [min, K] occurs"
    assert np.all(np.isnan(info["expected_rewards"]) == ~obs.mask)
    for ids in obs.item_ids:
        assert len(set(ids.tolist())) == K, "candidates of one user are distinct items"
    np.testing.assert_array_equal(obs.item_features, env.simulator.item_vectors[obs.item_ids])
    # The best candidate is chosen among valid ones only, even if a masked slot would score higher.
    _, _, _, step_info = env.step_batch(obs.mask.argmax(axis=1))
    masked_best = np.where(obs.mask, -np.inf, env.simulator.expected_rewards(obs)).max(axis=1)
    np.testing.assert_array_equal(
        step_info["best_expected_reward"], np.nanmax(info["expected_rewards"], axis=1)
    )
    assert np.any(masked_best > step_info["best_expected_reward"]), "test needs masked slots that look better"


# ----------------------------------------------------------------------------- constructor values
BAD_VALUES = [
    ("banditrec/Linear-v0", {"n_items": 0}, "n_items", 0),
    ("banditrec/Linear-v0", {"n_items": 10, "n_candidates": 11}, "n_candidates", 11),
    ("banditrec/Linear-v0", {"n_candidates": 0}, "n_candidates", 0),
    ("banditrec/Linear-v0", {"n_candidates": 5, "min_candidates": 6}, "min_candidates", 6),
    ("banditrec/Linear-v0", {"min_candidates": 0}, "min_candidates", 0),
    ("banditrec/Linear-v0", {"context_dim": -3}, "context_dim", -3),
    ("banditrec/Linear-v0", {"reward": "poisson"}, "reward", "poisson"),
    ("banditrec/Linear-v0", {"scale": -1.0}, "scale", -1.0),
    ("banditrec/Linear-v0", {"noise": -0.5}, "noise", -0.5),
    ("banditrec/Linear-v0", {"noise": float("inf")}, "noise", float("inf")),
    ("banditrec/Linear-v0", {"scale": float("inf")}, "scale", float("inf")),
    ("banditrec/Linear-v0", {"world_seed": -1}, "world_seed", -1),
    ("banditrec/Nonlinear-v0", {"world_seed": "a"}, "world_seed", "a"),
    ("banditrec/Nonlinear-v0", {"scale": float("inf")}, "scale", float("inf")),
    ("banditrec/Nonlinear-v0", {"hidden": 0}, "hidden", 0),
    ("banditrec/Nonlinear-v0", {"user_dim": 4, "item_dim": 5}, "item_dim", 5),
    ("banditrec/Nonlinear-v0", {"scale": 0.0}, "scale", 0.0),
    ("banditrec/Nonlinear-v0", {"n_items": 7.5}, "n_items", 7.5),
    ("banditrec/Wheel-v0", {"delta": 0.0}, "delta", 0.0),
    ("banditrec/Wheel-v0", {"delta": 1.5}, "delta", 1.5),
    ("banditrec/Wheel-v0", {"sigma": -0.1}, "sigma", -0.1),
    ("banditrec/Wheel-v0", {"sigma": float("nan")}, "sigma", float("nan")),
    ("banditrec/Wheel-v0", {"mu_large": float("nan")}, "mu_large", float("nan")),
    # A quoted number (e.g. scale = "3" in TOML) or a bool used to reach a comparison inside the
    # world: "TypeError: '<' not supported between instances of 'int' and 'str'".
    ("banditrec/Linear-v0", {"scale": "3"}, "scale", "3"),
    ("banditrec/Linear-v0", {"noise": "0.1"}, "noise", "0.1"),
    ("banditrec/Linear-v0", {"scale": True}, "scale", True),
    # A TOML `true` as a size used to pass as 1: K = 1 gave every policy regret 0.
    ("banditrec/Linear-v0", {"n_candidates": True}, "n_candidates", True),
    ("banditrec/Linear-v0", {"min_candidates": True}, "min_candidates", True),
    ("banditrec/Linear-v0", {"n_items": True}, "n_items", True),
    # The dimensions and the population did not exclude bools: context_dim=True reached numpy
    # ("TypeError: an integer is required"), naming neither the parameter nor the value.
    ("banditrec/Linear-v0", {"context_dim": True}, "context_dim", True),
    ("banditrec/Linear-v0", {"context_dim": 2.5}, "context_dim", 2.5),
    ("banditrec/Linear-v0", {"n_users": True}, "n_users", True),
    ("banditrec/Linear-v0", {"n_users": 3.0}, "n_users", 3.0),
    ("banditrec/Nonlinear-v0", {"user_dim": True, "item_dim": True}, "user_dim", True),
    ("banditrec/Nonlinear-v0", {"item_dim": np.True_}, "item_dim", np.True_),
    ("banditrec/Nonlinear-v0", {"hidden": True}, "hidden", True),
    ("banditrec/Nonlinear-v0", {"hidden": 16.5}, "hidden", 16.5),
    ("banditrec/Nonlinear-v0", {"min_candidates": True}, "min_candidates", True),
    ("banditrec/Nonlinear-v0", {"scale": "2.5"}, "scale", "2.5"),
    ("banditrec/Wheel-v0", {"delta": "0.5"}, "delta", "0.5"),
    ("banditrec/Wheel-v0", {"mu_centre": "1.2"}, "mu_centre", "1.2"),
    ("banditrec/Wheel-v0", {"sigma_large": None}, "sigma_large", None),
    ("banditrec/Nonlinear-v0", {"products": "false"}, "products", "false"),
    ("banditrec/Nonlinear-v0", {"products": 0}, "products", 0),
]


@pytest.mark.parametrize("env_id, kwargs, name, value", BAD_VALUES)
def test_bad_world_parameters_raise_value_error_quoting_them(env_id, kwargs, name, value):
    with pytest.raises(ValueError, match=re.escape(name) + ".*" + re.escape(repr(value))):
        make_vector_env(env_id, num_envs=2, **kwargs)


def test_a_nonlinear_world_whose_random_truth_is_dead_is_refused():
    # hidden=1, world_seed=1: the one ReLU unit never fires, every expected reward was 0.5 and
    # every policy's regret 0, with no error
    with pytest.raises(ValueError, match=r"hidden=1, world_seed=1 is constant"):
        make_vector_env("banditrec/Nonlinear-v0", num_envs=2, hidden=1, world_seed=1)
    env = make_vector_env("banditrec/Nonlinear-v0", num_envs=64, hidden=1, world_seed=0)
    _, info = env.reset(seed=0)
    assert np.ptp(info["expected_rewards"]) > 0.5


@pytest.mark.parametrize("env_id", ["banditrec/Linear-v0", "banditrec/Nonlinear-v0"])
def test_a_large_scale_saturates_the_click_probabilities_without_warnings(env_id):
    env = make_vector_env(env_id, num_envs=8, scale=1000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp overflowed with a RuntimeWarning on every step
        _, info = env.reset(seed=0)
        env.step_batch(np.zeros(8, dtype=np.int64))
    e = info["expected_rewards"]
    assert np.all((e >= 0) & (e <= 1)) and np.isin(e, (0.0, 1.0)).mean() > 0.5


def test_quoted_float_parameter_says_to_drop_the_quotes():
    message = r"scale must be a finite number > 0, got '3' \(a string; write the number without quotes\)"
    with pytest.raises(ValueError, match=message):
        make_vector_env("banditrec/Linear-v0", num_envs=2, scale="3")


def test_wheel_noise_follows_the_arm_not_the_value():
    # The large-reward noise used to be chosen by comparing the mean with mu_large, so a centre arm
    # set to pay mu_large took sigma_large everywhere.
    env = make_vector_env("banditrec/Wheel-v0", num_envs=4000, mu_centre=50.0, sigma_large=2.0)
    env.reset(seed=0)
    _, rewards, _, _ = env.step_batch(np.zeros(4000, dtype=int))  # the centre arm, inside and outside δ
    assert abs(np.std(rewards - 50.0) - 0.01) < 0.001
    obs = env.observation
    quadrant = env.simulator.quadrant_arm(obs.user_features)
    outer = np.einsum("bd,bd->b", obs.user_features, obs.user_features) > 0.5**2
    _, rewards, _, _ = env.step_batch(quadrant)
    assert abs(np.std(rewards[outer] - 50.0) - 2.0) < 0.1 and abs(np.std(rewards[~outer] - 1.0) - 0.01) < 0.001


@pytest.mark.parametrize("products", [True, False])
def test_nonlinear_truth_is_the_documented_network_with_or_without_the_product(products):
    # products=False drops user ⊙ item from the truth's input and changes nothing else: the same
    # items, weights and standardisation sample; the default is the world as it always was
    from banditrec.environments import NonlinearWorld

    world = NonlinearWorld(n_items=30, n_candidates=6, world_seed=4, products=products)
    obs = world.sample_users(5, np.random.default_rng(1))
    u = np.broadcast_to(obs.user_features[:, None, :], obs.item_features.shape)
    v = obs.item_features
    x = np.concatenate([u, v, u * v if products else np.zeros_like(u)], axis=-1)
    h = np.maximum(np.maximum(x @ world._w1 + world._b1, 0.0) @ world._w2 + world._b2, 0.0)
    z = (h @ world._w3 - world._shift) / world._spread
    np.testing.assert_allclose(world.expected_rewards(obs), 1 / (1 + np.exp(-world.scale * z)), rtol=1e-12)
    default = NonlinearWorld(n_items=30, n_candidates=6, world_seed=4)
    np.testing.assert_array_equal(default.item_vectors, world.item_vectors)
    # standardised on its own network: logits of unit spread around 0 on fresh users
    many = world.sample_users(2000, np.random.default_rng(2))
    logits = world._network(np.broadcast_to(many.user_features[:, None, :], many.item_features.shape), many.item_features)
    z = (logits - world._shift) / world._spread
    assert abs(z.mean()) < 0.1 and 0.85 < z.std() < 1.15, (z.mean(), z.std())
    if products:
        np.testing.assert_array_equal(default.expected_rewards(obs), world.expected_rewards(obs))
    else:
        assert not np.allclose(default.expected_rewards(obs), world.expected_rewards(obs))
