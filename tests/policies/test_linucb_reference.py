"""LinUCB against a plain textbook implementation (Li et al. 2010, Algorithm 1) on one logged trajectory.

Both see the same contexts and the reward of the arm the library chose (drawn once, for every arm,
in advance). Wherever the reference has a unique best arm the library must choose it; where
arms tie (never-tried arms all score the same) the library may pick any of the tied ones, and the
reference follows its choice so that the two keep the same history.
"""

from __future__ import annotations

import numpy as np
import pytest

from banditrec.environments import make_vector_env
from banditrec.policies import LinUCB

N, ALPHA = 2000, 1.0


@pytest.fixture(scope="module")
def trajectory():
    env = make_vector_env("banditrec/Linear-v0", num_envs=N)  # defaults: K = 20 items in catalogue order, d = 32
    _, info = env.reset(seed=123)
    obs = env.observation
    rewards = (np.random.default_rng(7).random(obs.mask.shape) < info["expected_rewards"]).astype(float)
    return obs, rewards


class ReferenceLinUCB:
    """Disjoint LinUCB, written from the paper: per arm A = I + ΣxxT, b = Σrx, θ = A⁻¹b.

    A⁻¹ comes from np.linalg.inv of the accumulated A (no incremental formulas); only arms whose A
    changed since the last decision are re-inverted.
    """

    def __init__(self, n_arms: int, d: int, alpha: float) -> None:
        self.A = np.stack([np.eye(d)] * n_arms)
        self.b = np.zeros((n_arms, d))
        self.A_inv = np.linalg.inv(self.A)
        self.alpha = alpha
        self.changed: set[int] = set()

    def scores(self, x: np.ndarray) -> np.ndarray:
        """UCB of every arm for each context, shape (B, n_arms)."""
        for a in self.changed:
            self.A_inv[a] = np.linalg.inv(self.A[a])
        self.changed.clear()
        theta = np.einsum("aij,aj->ai", self.A_inv, self.b)
        width = np.sqrt(np.einsum("bi,aib->ba", x, self.A_inv @ x.T[None]))
        return x @ theta.T + self.alpha * width

    def update(self, x: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        for xi, a, r in zip(x, arms, rewards):
            self.A[a] += np.outer(xi, xi)
            self.b[a] += r * xi
            self.changed.add(int(a))


# 1 → Sherman–Morrison; 16 → batched Woodbury; 1000 → arms with more rows than features, where
# the updated d × d matrices are inverted directly.
@pytest.mark.parametrize("batch_size", [1, 16, 1000])
def test_linucb_matches_reference(trajectory, batch_size):
    obs, rewards = trajectory
    K, d = obs.item_ids.shape[1], obs.user_features.shape[1]
    policy = LinUCB(alpha=ALPHA, lam=1.0, intercept=False, seed=0)
    ref = ReferenceLinUCB(K, d, ALPHA)
    unique_steps = 0
    for start in range(0, N, batch_size):
        batch = obs[start : start + batch_size]
        actions = np.asarray(policy.act(batch).actions)
        scores = ref.scores(batch.user_features)  # arms = slots: the whole catalogue, in order
        top = scores.max(axis=1, keepdims=True)
        tied = scores >= top - 1e-9 * (1 + np.abs(top))
        rows = np.arange(len(batch))
        assert tied[rows, actions].all(), (
            f"decision {start}: LinUCB chose {actions}, reference best {scores.argmax(axis=1)} "
            f"(scores {scores[rows, actions]} vs {top.ravel()})"
        )
        unique_steps += int((tied.sum(axis=1) == 1).sum())
        r = rewards[start : start + batch_size][rows, actions]
        policy.update(batch, actions, r)
        ref.update(batch.user_features, actions, r)  # after deciding for the whole batch
    # Ties only while arms are untried (in the first batch, or the first 2K decisions): every
    # later decision must have been a strict comparison.
    assert unique_steps >= N - max(batch_size, 2 * K), unique_steps


def test_reference_check_detects_a_different_alpha(trajectory):
    """The comparison has teeth: LinUCB with alpha = 0.5 leaves the alpha = 1 reference's choices."""
    obs, rewards = trajectory
    policy = LinUCB(alpha=0.5, lam=1.0, intercept=False, seed=0)
    ref = ReferenceLinUCB(obs.item_ids.shape[1], obs.user_features.shape[1], ALPHA)
    disagreements = 0
    for t in range(300):
        batch = obs[t]
        a = np.asarray(policy.act(batch).actions)
        scores = ref.scores(batch.user_features)
        disagreements += int(scores[0, a[0]] < scores.max() - 1e-9)
        r = rewards[t : t + 1, a]
        policy.update(batch, a, r[0])
        ref.update(batch.user_features, a, r[0])
    assert disagreements > 10
