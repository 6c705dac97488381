"""A policy stopped at step t and resumed from its checkpoint matches an uninterrupted run exactly."""

from __future__ import annotations

import numpy as np
import pytest

from banditrec.environments import make_vector_env
from banditrec.policies import POLICIES, make_policy
from banditrec.policies.checkpoint import load_policy, save_policy


def _play(policy, env, steps):
    trace = []
    for _ in range(steps):
        obs = env.observation
        actions, props = policy.act(obs)
        _, rewards, _, _ = env.step_batch(actions)
        policy.update(obs, actions, rewards)
        trace.append((actions.copy(), props.copy()))
    return trace


def _env():
    env = make_vector_env("banditrec/Linear-v0", num_envs=4, n_items=10, context_dim=4, min_candidates=6)
    env.reset(seed=3)
    return env


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_resume_from_checkpoint_is_exact(name, tmp_path):
    full = _play(make_policy(name, seed=5), _env(), 60)
    env = _env()
    first = make_policy(name, seed=5)
    head = _play(first, env, 30)
    save_policy(first, tmp_path / "policy.pt")
    resumed = load_policy(make_policy(name, seed=123), tmp_path / "policy.pt")  # seed is overwritten
    tail = _play(resumed, env, 30)
    for (a, p), (b, q) in zip(full, head + tail):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(p, q)


def test_checkpoint_of_another_policy_is_rejected(tmp_path):
    p = make_policy("LinUCB", seed=0)
    _play(p, _env(), 3)
    save_policy(p, tmp_path / "p.pt")
    with pytest.raises(ValueError, match="LinUCB"):
        load_policy(make_policy("EpsilonGreedy", seed=0), tmp_path / "p.pt")
    with pytest.raises(FileNotFoundError):
        load_policy(p, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_policy(p, tmp_path / "junk.pt")


def test_neural_states_saved_before_the_sixth_sessions_options_still_load():
    """States without ``intercept`` or ``step_decay_reset`` (saved before they existed) load into a
    policy with the defaults they meant, and are refused by one configured otherwise."""
    from banditrec.policies.checkpoint import load_policy_state, policy_state

    policy = make_policy("NeuralLinear", hidden=(4,), train_every=8, train_steps=2, seed=5)
    _play(policy, _env(), 5)
    state = policy_state(policy)
    params = state["estimator"]["__state_dict__"]["params"]
    del params["intercept"], params["training"]["step_decay_reset"]
    resumed = load_policy_state(make_policy("NeuralLinear", hidden=(4,), train_every=8, train_steps=2), state)
    env = _env()
    obs = env.observation
    np.testing.assert_array_equal(resumed.action_distribution(obs), policy.action_distribution(obs))
    with pytest.raises(ValueError, match="intercept"):
        load_policy_state(make_policy("NeuralLinear", hidden=(4,), train_every=8, train_steps=2,
                                      intercept=False), state)
