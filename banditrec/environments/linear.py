"""The linear world: rewards linear (or logistic) in the user context and a per-item parameter.

Each item a has a parameter θ_a = √d · g_a / ‖g_a‖ with g_a ~ N(0, I); a user's context is
x ~ N(0, I) / √d, so x·θ_a is roughly standard normal. The expected reward is
``sigmoid(scale · x·θ_a)`` (clicks) or ``x·θ_a`` (Gaussian rewards with noise ``noise``). Items show
θ_a / √d as their features, so a shared linear model on user ⊗ item features and a disjoint model
per item are both well specified: the optimum is known and linear policies can reach it.

By default users are anonymous and every arrival draws a fresh context. With ``n_users`` the world
has a fixed population instead: n_users contexts drawn once (from ``world_seed``, stored as float32,
4 · n_users · d bytes, the only per-user state), users arriving uniformly at random with their ids.
Nothing of size users × items is ever built, and candidates from a large catalogue are drawn
without a per-user permutation of it, so a world of 10⁶ users and 10⁵ items builds in under a
second (``benchmarks/scale.py``).
"""

from __future__ import annotations

import numpy as np

from banditrec._util import is_int
from banditrec.environments.candidates import (
    check_world_float,
    check_world_seed,
    check_world_sizes,
    sample_candidates,
)
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
    n_users : int or None
        None (default): anonymous users, a fresh context per arrival. An int: a fixed population of
        that many users whose contexts are drawn once from ``world_seed`` (a stream separate from
        the items', so the items do not depend on ``n_users``); arrivals are uniform over it and
        carry their user ids.
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
        n_users: int | None = None,
    ) -> None:
        self.n_candidates, self._min_candidates = check_world_sizes(n_items, n_candidates, min_candidates)
        if not is_int(context_dim) or context_dim < 1:
            raise ValueError(f"context_dim must be a positive int, got {context_dim!r}")
        if reward not in ("logistic", "gaussian"):
            raise ValueError(f"reward must be 'logistic' or 'gaussian', got {reward!r}")
        scale = check_world_float("scale", scale, 0.0, open_low=True)
        noise = check_world_float("noise", noise, 0.0)
        world_seed = check_world_seed(world_seed)
        self.n_items, self.user_dim, self.item_dim = int(n_items), int(context_dim), int(context_dim)
        self.reward, self.scale, self.noise = reward, scale, noise
        self.reward_type = "binary" if reward == "logistic" else "real"
        g = np.random.default_rng(world_seed).standard_normal((n_items, context_dim))
        self.item_vectors = g / np.linalg.norm(g, axis=1, keepdims=True)  # observed features
        self.theta = np.sqrt(context_dim) * self.item_vectors  # hidden parameters
        self.user_contexts: np.ndarray | None = None
        if n_users is not None:
            if not is_int(n_users) or n_users < 1:
                raise ValueError(f"n_users must be a positive int or None, got {n_users!r}")
            self.n_users = int(n_users)
            # Generated in float32 directly: no float64 temporary of n_users × d.
            users = np.random.default_rng([world_seed, 1]).standard_normal(
                (self.n_users, context_dim), dtype=np.float32
            )
            users *= np.float32(1.0 / np.sqrt(context_dim))
            self.user_contexts = users

    def sample_users(self, batch_size: int, rng: np.random.Generator) -> Observation:
        if self.user_contexts is None:
            x = rng.standard_normal((batch_size, self.user_dim)) / np.sqrt(self.user_dim)
            user_ids = np.full(batch_size, -1, dtype=np.int64)
        else:
            user_ids = rng.integers(0, self.n_users, size=batch_size)
            x = self.user_contexts[user_ids].astype(np.float64)
        ids, mask = sample_candidates(rng, batch_size, self.n_items, self.n_candidates, self._min_candidates)
        return Observation(x, self.item_vectors[ids], ids, mask, user_ids)

    def expected_rewards(self, obs: Observation) -> np.ndarray:
        if self.n_items <= 4 * self.n_candidates:  # score the small catalogue, then gather
            z = (obs.user_features @ self.theta.T)[np.arange(obs.batch_size)[:, None], obs.item_ids]
        else:
            z = np.einsum("bd,bkd->bk", obs.user_features, self.theta[obs.item_ids])
        if self.reward == "gaussian":
            return z
        with np.errstate(over="ignore"):  # exp(-scale z) → inf at a large scale: probability 0, exactly
            return 1.0 / (1.0 + np.exp(-self.scale * z))

    def sample_rewards(self, obs, actions, expected, rng):
        if self.reward == "gaussian":
            return expected + self.noise * rng.standard_normal(expected.shape)
        return (rng.random(expected.shape) < expected).astype(np.float64)
