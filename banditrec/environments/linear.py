"""The linear world: rewards linear (or logistic) in the user context and a per-item parameter.

Each item a has a parameter θ_a = √d · g_a / ‖g_a‖ with g_a ~ N(0, I); a user's context is
x ~ N(0, I) / √d, so x·θ_a is roughly standard normal. The expected reward is
``sigmoid(scale · x·θ_a)`` (clicks) or ``x·θ_a`` (Gaussian rewards with noise ``noise``). Items show
θ_a / √d as their features, so a shared linear model on user ⊗ item features and a disjoint model
per item are both well specified: the optimum is known and linear policies can reach it.
"""

from __future__ import annotations

import numpy as np

from banditrec.environments.candidates import check_world_sizes, sample_candidates
from banditrec.environments.simulator import Observation, UserSimulator

__all__ = ["LinearWorld"]


class LinearWorld(UserSimulator):
    """A contextual bandit with a known linear optimum.

    Parameters
    ----------
    n_items : int
        Catalogue size.
    n_candidates : int or None
        K candidates per user (default: the whole catalogue, in catalogue order).
    context_dim : int
        d, the dimension of user contexts and item parameters.
    reward : {"logistic", "gaussian"}
        Bernoulli clicks with a logistic link, or Gaussian rewards.
    scale : float
        Logit scale of the logistic link (sharper preferences when larger).
    noise : float
        Standard deviation of Gaussian rewards.
    min_candidates : int or None
        If set, each user has a uniform number of valid candidates in [min_candidates, K].
    world_seed : int
        Seed of the item parameters (the world), separate from the environment's seed (the users).
    """

    def __init__(
        self,
        n_items: int = 20,
        n_candidates: int | None = None,
        context_dim: int = 32,
        reward: str = "logistic",
        scale: float = 3.0,
        noise: float = 0.1,
        min_candidates: int | None = None,
        world_seed: int = 0,
    ) -> None:
        self.n_candidates, self._min_candidates = check_world_sizes(n_items, n_candidates, min_candidates)
        if not isinstance(context_dim, (int, np.integer)) or context_dim < 1:
            raise ValueError(f"context_dim must be a positive int, got {context_dim!r}")
        if reward not in ("logistic", "gaussian"):
            raise ValueError(f"reward must be 'logistic' or 'gaussian', got {reward!r}")
        if not scale > 0 or not noise >= 0:
            raise ValueError(f"scale must be > 0 and noise >= 0, got scale={scale!r}, noise={noise!r}")
        self.n_items, self.user_dim, self.item_dim = int(n_items), int(context_dim), int(context_dim)
        self.reward, self.scale, self.noise = reward, float(scale), float(noise)
        self.reward_type = "binary" if reward == "logistic" else "real"
        g = np.random.default_rng(world_seed).standard_normal((n_items, context_dim))
        self.item_vectors = g / np.linalg.norm(g, axis=1, keepdims=True)  # observed features
        self.theta = np.sqrt(context_dim) * self.item_vectors  # hidden parameters

    def sample_users(self, batch_size: int, rng: np.random.Generator) -> Observation:
        x = rng.standard_normal((batch_size, self.user_dim)) / np.sqrt(self.user_dim)
        ids, mask = sample_candidates(rng, batch_size, self.n_items, self.n_candidates, self._min_candidates)
        return Observation(x, self.item_vectors[ids], ids, mask, np.full(batch_size, -1, dtype=np.int64))

    def expected_rewards(self, obs: Observation) -> np.ndarray:
        if self.n_items <= 4 * self.n_candidates:  # score the small catalogue, then gather
            z = (obs.user_features @ self.theta.T)[np.arange(obs.batch_size)[:, None], obs.item_ids]
        else:
            z = np.einsum("bd,bkd->bk", obs.user_features, self.theta[obs.item_ids])
        if self.reward == "gaussian":
            return z
        return 1.0 / (1.0 + np.exp(-self.scale * z))

    def sample_rewards(self, obs, actions, expected, rng):
        if self.reward == "gaussian":
            return expected + self.noise * rng.standard_normal(expected.shape)
        return (rng.random(expected.shape) < expected).astype(np.float64)
