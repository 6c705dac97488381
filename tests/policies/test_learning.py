"""Policies that should learn do: their cumulative regret is well below the uniform policy's."""

from __future__ import annotations

import numpy as np

from banditrec.environments import make_vector_env
from banditrec.policies import LinTS, LinUCB, Random


def cumulative_regret(env_id: str, policy, n_decisions: int, batch_size: int, seed: int, **env_kwargs) -> float:
    env = make_vector_env(env_id, num_envs=batch_size, **env_kwargs)
    env.reset(seed=seed)
    obs, total = env.observation, 0.0
    for _ in range(n_decisions // batch_size):
        decision = policy.act(obs)
        next_obs, rewards, _, info = env.step_batch(decision.actions)
        policy.update(obs, decision.actions, rewards)
        total += info["regret"].sum()
        obs = next_obs
    return total


def test_linucb_beats_random_on_the_linear_world():
    linucb = cumulative_regret("banditrec/Linear-v0", LinUCB(seed=0), 5000, 10, seed=1)
    random = cumulative_regret("banditrec/Linear-v0", Random(seed=0), 5000, 10, seed=1)
    assert linucb < 0.5 * random, (linucb, random)


def test_lints_nig_beats_random_on_the_wheel():
    lints = cumulative_regret("banditrec/Wheel-v0", LinTS(posterior="nig", seed=0), 5000, 10, seed=1, delta=0.5)
    random = cumulative_regret("banditrec/Wheel-v0", Random(seed=0), 5000, 10, seed=1, delta=0.5)
    # Uniform pays 0.16·δ² + 39.16·(1 − δ²) ≈ 29.4 per decision; LinFullPost learns the quadrants.
    assert np.isclose(random / 5000, 29.41, rtol=0.05)
    assert lints < 0.25 * random, (lints, random)
