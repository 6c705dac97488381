"""A policy is an exploration strategy applied to a reward estimator; plus the uniform policy."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from banditrec.environments.simulator import Observation, to_numpy
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
    initial_pulls : int
        Start with ``initial_pulls · K`` round-robin decisions: decision t of the run (counting
        users) takes valid slot ``t mod n_valid`` of its row (by slot position, not item id) with
        probability 1 — the round-robin start of Riquelme et al.'s algorithms. With a fixed set
        of K arms, as theirs, every arm is played ``initial_pulls`` times; with masked slots or
        changing candidates some items get more and others none. The strategy still runs on those
        decisions (so the random streams do not depend on it). 0 (default) does not.
    """

    def __init__(self, estimator: Any, exploration: Exploration, seed=None, name: str | None = None,
                 initial_pulls: int = 0) -> None:
        super().__init__(seed)
        if not isinstance(initial_pulls, (int, np.integer)) or isinstance(initial_pulls, bool) or initial_pulls < 0:
            raise ValueError(f"initial_pulls must be an int >= 0, got {initial_pulls!r}")
        self.initial_pulls = int(initial_pulls)
        if not isinstance(exploration, Exploration):
            raise TypeError(f"exploration must be an Exploration (EpsilonGreedy, UCB, Thompson), got {exploration!r}")
        for method in ("mean", "update"):
            if not callable(getattr(estimator, method, None)):
                raise TypeError(f"estimator {type(estimator).__name__} lacks a {method}() method")
        self.estimator = estimator
        self.exploration = exploration
        self.name = name or f"{type(exploration).__name__}({type(estimator).__name__})"
        self._inspection_rng: np.random.Generator | None = None
        self._inspection_generator_state: torch.Tensor | None = None

    def get_params(self) -> dict[str, Any]:
        """The policy's name and the hyperparameters of its strategy and estimator (what tells
        two LinUCBs apart in a log or a repr)."""
        params = {
            "name": self.name,
            "exploration": self.exploration.get_params(),
            "estimator": _estimator_params(self.estimator),
        }
        if self.initial_pulls:  # shown only when set
            params["initial_pulls"] = self.initial_pulls
        return params

    def _round_robin(self, obs: Observation) -> tuple[np.ndarray, np.ndarray] | None:
        """(forced (B,), candidate (B,)) for the batch's round-robin decisions; None when none is."""
        if not self.initial_pulls:
            return None
        B, K = obs.item_ids.shape
        if self.n_decisions_ >= self.initial_pulls * K:
            return None
        mask = to_numpy(obs.mask).astype(bool)
        t = self.n_decisions_ + np.arange(B)
        rank = t % np.maximum(mask.sum(axis=1), 1)
        candidate = ((np.cumsum(mask, axis=1) - 1 == rank[:, None]) & mask).argmax(axis=1)
        return t < self.initial_pulls * K, candidate

    def _with_round_robin(self, probability, obs: Observation):
        """``probability`` (B, K) with each round-robin decision's row one-hot on its candidate."""
        forced = self._round_robin(obs)
        if forced is None:
            return probability
        rows, candidate = forced
        probability = np.array(to_numpy(probability), dtype=np.float64)
        probability[rows] = 0.0
        probability[np.flatnonzero(rows), candidate[rows]] = 1.0
        return probability

    def _act(self, obs: Observation) -> Decision:
        decision = self.exploration.choose(self.estimator, obs, self.rng, self.n_decisions_)
        forced = self._round_robin(obs)
        if forced is None:
            return decision
        rows, candidate = forced
        actions = np.where(rows, candidate, to_numpy(decision.actions))
        propensities = np.where(rows, 1.0, to_numpy(decision.propensities))
        if isinstance(decision.actions, torch.Tensor):
            device = decision.actions.device
            return Decision(torch.as_tensor(actions, device=device),
                            torch.as_tensor(propensities, device=device, dtype=decision.propensities.dtype))
        return Decision(actions, propensities)

    def decides_on_device(self, obs: Observation) -> bool:
        return on_device(self.estimator, obs)

    @property
    def reward_bounds(self):
        return getattr(self.estimator, "reward_bounds", None)

    @contextmanager
    def _inspecting(self, obs: Observation) -> Iterator[np.random.Generator]:
        """The random stream for :meth:`action_distribution` and :meth:`explain`, which look without
        touching: their draws (Thompson samples, Monte-Carlo shares, tie-breaks) come from a stream
        of their own, on the host and on an estimator's torch generator alike, so a policy that is
        inspected decides afterwards exactly as one that is not. The stream starts from the
        decision stream's state at the first inspection, so it too is the same on every rerun."""
        on_device(self.estimator, obs)  # builds a neural estimator, and its generator, on first use
        if self._inspection_rng is None:
            self._inspection_rng = np.random.default_rng(copy.deepcopy(self.rng).integers(0, 2**63 - 1))
        generator = getattr(self.estimator, "generator_", None)
        decisions = None
        if isinstance(generator, torch.Generator):
            decisions = generator.get_state()
            if self._inspection_generator_state is None:
                generator.manual_seed(int(self._inspection_rng.integers(0, 2**63 - 1)))
            else:
                generator.set_state(self._inspection_generator_state)
        try:
            yield self._inspection_rng
        finally:
            if decisions is not None:
                self._inspection_generator_state = generator.get_state()
                generator.set_state(decisions)

    def _distribution(self, obs: Observation) -> np.ndarray:
        with self._inspecting(obs) as rng:
            dist = self.exploration.distribution(self.estimator, obs, rng, self.n_decisions_)
        return self._with_round_robin(dist, obs)

    def _learn(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.estimator.update(obs, actions, rewards)

    def explain(self, obs) -> dict[str, np.ndarray]:
        """Why each candidate would be shown: per candidate (B, K),

        - ``mean``: the estimated expected reward (for Thompson sampling the posterior mean the
          draws are centred on; BernoulliTS's Beta posterior mean, not the empirical click rate);
        - ``exploration``: what the strategy adds to it — UCB's bonus (alpha · width, ≥ 0),
          Thompson sampling's draw minus the mean (either sign; one draw of the inspection
          stream), epsilon-greedy's share ε / (valid candidates) of the probability;
        - ``probability``: the probability of showing it (Monte-Carlo for Thompson sampling);
        - for linear estimators ``contributions`` (B, K, d): each joint feature's term of the mean
          (they sum to it; intercept last when the estimator has one).

        Masked (unavailable) candidates have NaN ``mean`` and ``contributions``, NaN UCB or
        Thompson ``exploration`` (an epsilon share of 0), and probability 0, so that no argmax of
        the estimates picks them."""
        obs = self._checked(obs)
        with self._inspecting(obs) as rng:
            out = self.exploration.explain(self.estimator, obs, rng, self.n_decisions_)
        out["probability"] = self._with_round_robin(out["probability"], obs)
        if callable(getattr(self.estimator, "contributions", None)):
            out["contributions"] = self.estimator.contributions(obs)
        out = {key: np.array(to_numpy(value), dtype=np.float64) for key, value in out.items()}
        masked = ~np.asarray(to_numpy(obs.mask), dtype=bool)
        if masked.any():  # the estimates; each strategy marks its own exploration term
            for key in ("mean", "contributions"):
                if key in out:
                    out[key][masked] = np.nan
        return out


class RandomPolicy(Policy):
    """Uniform over each user's valid candidates: the baseline every policy must beat."""

    name = "Random"

    def _act(self, obs: Observation) -> Decision:
        mask = obs.mask
        n_valid = mask.sum(axis=1)
        if not n_valid.all():
            raise ValueError("a user has no valid candidate (mask all False)")
        if (n_valid == mask.shape[1]).all():
            actions = self.rng.integers(0, mask.shape[1], size=mask.shape[0])
        else:
            actions = np.where(mask, self.rng.random(mask.shape), -1.0).argmax(axis=1)
        return Decision(actions, 1.0 / n_valid)

    def _distribution(self, obs: Observation) -> np.ndarray:
        n_valid = obs.mask.sum(axis=1, keepdims=True)
        if not n_valid.all():
            raise ValueError("a user has no valid candidate (mask all False)")
        return obs.mask / n_valid


def _estimator_params(estimator: Any) -> dict[str, Any]:
    """An estimator's hyperparameters: its ``get_params()``, or its attributes that are neither
    learned state (ending in ``_``) nor private."""
    method = getattr(estimator, "get_params", None)
    if callable(method):
        return method()
    return {k: v for k, v in vars(estimator).items() if not k.endswith("_") and not k.startswith("_")}
