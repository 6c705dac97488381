"""A known world for the OPE tests: finitely many contexts, so every policy value is exact."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from banditrec.ope import LoggedFeedback


def softmax(scores: np.ndarray) -> np.ndarray:
    z = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class KnownWorld:
    """M contexts drawn uniformly, K actions, Bernoulli rewards with known means.

    ``q`` (M, K) are the reward probabilities, ``pi_b`` (M, K) the logging policy and
    ``pi_e`` (M, K) the target policy; the target's true value is exact:
    mean over contexts of sum_k pi_e q.
    """

    context_features: np.ndarray  # (M, d_u)
    action_features: np.ndarray  # (K, d_i)
    q: np.ndarray
    pi_b: np.ndarray
    pi_e: np.ndarray

    @property
    def true_value(self) -> float:
        return float(np.mean(np.sum(self.pi_e * self.q, axis=1)))

    def value_of(self, pi: np.ndarray) -> float:
        return float(np.mean(np.sum(pi * self.q, axis=1)))

    def sample(self, n: int, seed: int) -> tuple[LoggedFeedback, np.ndarray]:
        """A log of n rounds and the target's action_dist (n, K) on it."""
        rng = np.random.default_rng(seed)
        m, k = self.q.shape
        contexts = rng.integers(0, m, size=n)
        cum = np.cumsum(self.pi_b[contexts], axis=1)
        actions = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), k - 1)
        rewards = (rng.random(n) < self.q[contexts, actions]).astype(float)
        feedback = LoggedFeedback(
            user_features=self.context_features[contexts],
            item_features=np.broadcast_to(self.action_features, (n, k, self.action_features.shape[1])),
            item_ids=np.broadcast_to(np.arange(k), (n, k)),
            mask=np.ones((n, k), dtype=bool),
            user_ids=contexts,
            actions=actions,
            rewards=rewards,
            propensities=self.pi_b[contexts, actions],
            expected_rewards=self.q[contexts],
            logging_action_dist=self.pi_b[contexts],
            metadata={"source": "known-world test"},
        )
        return feedback, self.pi_e[contexts]


def make_world(
    n_contexts: int = 20, n_actions: int = 5, dim: int = 3, uniform_logging: bool = False, seed: int = 123
) -> KnownWorld:
    rng = np.random.default_rng(seed)
    ctx = rng.normal(size=(n_contexts, dim))
    act = rng.normal(size=(n_actions, dim))
    # Reward probabilities linear-ish in the features so a ridge model can learn them.
    q = 1.0 / (1.0 + np.exp(-(ctx @ act.T) * 0.8))
    q = 0.1 + 0.8 * q
    if uniform_logging:
        pi_b = np.full((n_contexts, n_actions), 1.0 / n_actions)
    else:
        pi_b = softmax(rng.normal(size=(n_contexts, n_actions)) * 0.7)
    pi_e = softmax(3.0 * q)  # a target that prefers good actions
    return KnownWorld(ctx, act, q, pi_b, pi_e)


@pytest.fixture
def world() -> KnownWorld:
    return make_world()


@pytest.fixture
def uniform_world() -> KnownWorld:
    return make_world(uniform_logging=True)


@pytest.fixture
def tiny() -> tuple[LoggedFeedback, np.ndarray, np.ndarray]:
    """Four rounds, three candidates; the last round's third slot is masked.

    Returns the log, a target action_dist and a reward model q̂.
    """
    feedback = LoggedFeedback.from_arrays(
        actions=np.array([0, 1, 2, 1]),
        rewards=np.array([1.0, 0.0, 0.5, 1.0]),
        propensities=np.array([0.25, 0.5, 0.5, 0.4]),
        n_candidates=3,
        mask=np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0]], dtype=bool),
    )
    action_dist = np.array(
        [
            [0.5, 0.25, 0.25],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0],
            [0.8, 0.2, 0.0],
        ]
    )
    q_hat = np.array(
        [
            [0.6, 0.2, 0.4],
            [0.1, 0.3, 0.5],
            [0.2, 0.2, 0.8],
            [0.5, 0.5, np.nan],  # masked slot: never used
        ]
    )
    return feedback, action_dist, q_hat
