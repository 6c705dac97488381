"""A policy is an exploration strategy applied to a reward estimator; plus the uniform policy."""

from __future__ import annotations

from typing import Any

import numpy as np

from banditrec.environments.simulator import Observation
from banditrec.policies.base import Decision, Policy
from banditrec.policies.exploration import Exploration, on_device

__all__ = ["BanditPolicy", "RandomPolicy"]


class BanditPolicy(Policy):
    """Compose an estimator (what we believe) with an exploration strategy (how we act on it).

    Parameters
    ----------
    estimator : object
        A reward estimator: ``mean``, ``update`` and, as the strategy needs, ``mean_and_width``
        (UCB) or ``sample`` (Thompson). See :mod:`banditrec.policies.exploration`.
    exploration : Exploration
        EpsilonGreedy, UCB or Thompson.
    seed : int, SeedSequence, Generator or None
        The policy's own random stream (tie-breaking, exploration, posterior draws); a neural
        estimator deciding on its device draws those from its own torch generator instead.
    name : str or None
        Display name (e.g. "LinUCB"); defaults to the class names.
    """

    def __init__(self, estimator: Any, exploration: Exploration, seed=None, name: str | None = None) -> None:
        super().__init__(seed)
        if not isinstance(exploration, Exploration):
            raise TypeError(f"exploration must be an Exploration (EpsilonGreedy, UCB, Thompson), got {exploration!r}")
        for method in ("mean", "update"):
            if not callable(getattr(estimator, method, None)):
                raise TypeError(f"estimator {type(estimator).__name__} lacks a {method}() method")
        self.estimator = estimator
        self.exploration = exploration
        self.name = name or f"{type(exploration).__name__}({type(estimator).__name__})"

    def get_params(self) -> dict[str, Any]:
        return {"name": self.name, "exploration": self.exploration.get_params()}

    def _act(self, obs: Observation) -> Decision:
        return self.exploration.choose(self.estimator, obs, self.rng, self.n_decisions_)

    def decides_on_device(self, obs: Observation) -> bool:
        return on_device(self.estimator, obs)

    def _distribution(self, obs: Observation) -> np.ndarray:
        return self.exploration.distribution(self.estimator, obs, self.rng, self.n_decisions_)

    def _learn(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.estimator.update(obs, actions, rewards)

    def explain(self, obs) -> dict[str, np.ndarray]:
        """Per candidate (B, K): ``mean`` estimate, ``exploration`` term, ``probability``; and for
        linear estimators ``contributions`` (B, K, d), each feature's share of the mean."""
        obs = Observation.coerce(obs)
        out = self.exploration.explain(self.estimator, obs, self.rng, self.n_decisions_)
        if callable(getattr(self.estimator, "contributions", None)):
            out["contributions"] = self.estimator.contributions(obs)
        return out


class RandomPolicy(Policy):
    """Uniform over each user's valid candidates: the baseline every policy must beat."""

    name = "Random"

    def _act(self, obs: Observation) -> Decision:
        mask = obs.mask
        n_valid = mask.sum(axis=1)
        if (n_valid == mask.shape[1]).all():
            actions = self.rng.integers(0, mask.shape[1], size=mask.shape[0])
        else:
            actions = np.where(mask, self.rng.random(mask.shape), -1.0).argmax(axis=1)
        return Decision(actions, 1.0 / n_valid)

    def _distribution(self, obs: Observation) -> np.ndarray:
        return obs.mask / obs.mask.sum(axis=1, keepdims=True)
