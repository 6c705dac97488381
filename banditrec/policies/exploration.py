"""Exploration strategies: how a reward estimate becomes a decision.

A strategy is applied to any reward estimator, so epsilon-greedy, UCB and Thompson sampling are
written once and serve the context-free, linear and neural models alike. An estimator provides:

- ``mean(obs) -> (B, K)``: estimated expected reward of every candidate (all strategies);
- ``mean_and_width(obs) -> ((B, K), (B, K))``: plus a confidence width (UCB);
- ``sample(obs, rng, n) -> (n, B, K)``: draws of the candidates' rewards from the posterior (Thompson).

Estimators trust their input: :class:`~banditrec.policies.BanditPolicy` checks every batch
(``Observation.coerce``) and every feedback (:func:`banditrec.policies.base.check_feedback`:
shapes, NaN/inf rewards, out-of-range or masked actions) before an estimator sees it, so the
checks run once per call. Code that drives an estimator directly should check the same way.

An estimator whose ``device_decisions(obs)`` is true (a neural estimator with ``decide_on``
resolving to the device) also offers ``mean_tensor``, ``mean_and_width_tensor``,
``sample_tensor(obs, n)`` and ``mask_tensor`` on its device and a torch ``generator_``;
``choose`` then scores, breaks ties and estimates propensities there, and only the actions and
their probabilities reach the host (nothing does when the batch itself is on the device, from a
:class:`~banditrec.environments.DeviceWorld`). ``distribution`` and ``explain`` stay on the host.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from banditrec._util import check_real
from banditrec.environments.simulator import Observation
from banditrec.policies.base import Decision, _argmax_ties, _argmax_ties_masked, argmax_random_ties
from banditrec.policies.tensor_ops import argmax_ties, require_valid_candidates

__all__ = ["UCB", "EpsilonGreedy", "Exploration", "Thompson"]


_POLICY_OF = {
    "EpsilonGreedy": "EpsilonGreedyPolicy (what make_policy('EpsilonGreedy') and configs build), LinEpsilonGreedy or "
                     "NeuralEpsilonGreedy",
    "UCB": "UCB1, LinUCB or NeuralUCB",
    "Thompson": "BernoulliTS, LinTS, NeuralTS or NeuralLinear",
}


def _not_a_policy(cls: type) -> str:
    policy = _POLICY_OF.get(cls.__name__, "a policy factory")
    return (f"{cls.__name__} is an exploration strategy, not a policy: use {policy}, "
            f"or BanditPolicy(estimator, {cls.__name__}(...), seed)")


class Exploration(ABC):
    """A rule that turns an estimator's view of a batch into actions and probabilities.

    A strategy is half a policy (:class:`~banditrec.policies.BanditPolicy` pairs it with a reward
    estimator); ``EpsilonGreedy(seed=0)`` or ``EpsilonGreedy().act(obs)``, written for the
    policy of the same name, get an error that says so."""

    def __new__(cls, *args: Any, **kwargs: Any):
        if "seed" in kwargs:
            raise TypeError(f"{_not_a_policy(cls)}; a strategy takes no seed")
        return super().__new__(cls)

    def act(self, *args: Any, **kwargs: Any):
        raise TypeError(_not_a_policy(type(self)))

    @abstractmethod
    def choose(self, estimator: Any, obs: Observation, rng: np.random.Generator, t: int) -> Decision:
        """Actions for the batch; ``t`` counts decisions made before this batch."""

    @abstractmethod
    def distribution(self, estimator: Any, obs: Observation, rng: np.random.Generator, t: int) -> np.ndarray:
        """Probability of each candidate, shape (B, K)."""

    @abstractmethod
    def explain(self, estimator: Any, obs: Observation, rng: np.random.Generator, t: int) -> dict[str, np.ndarray]:
        """Per candidate: ``mean``, ``exploration`` (the bonus, sample − mean, or epsilon share)."""

    def get_params(self) -> dict[str, Any]:
        return dict(vars(self))


def _greedy_distribution(ties: np.ndarray) -> np.ndarray:
    return ties / ties.sum(axis=1, keepdims=True)


def on_device(estimator: Any, obs: Observation) -> bool:
    """Whether ``estimator`` decides for ``obs`` on its torch device."""
    decides = getattr(estimator, "device_decisions", None)
    return decides is not None and bool(decides(obs))


def _device_mask(estimator: Any, obs: Observation) -> torch.Tensor:
    """The mask on the device, once every user is known to have a valid candidate (checked on the
    host's mask when the batch came from the host: no device read)."""
    require_valid_candidates(obs.mask)
    return estimator.mask_tensor(obs)


def _decision(actions: torch.Tensor, p: torch.Tensor, obs: Observation) -> Decision:
    """A decision made on the device: kept there for a device world's batch, else the only
    device → host copy (B actions and B probabilities, stacked: one copy, one wait)."""
    if obs.on_device:
        return Decision(actions, p.to(torch.float64))
    both = torch.stack([actions.to(torch.float64), p.to(torch.float64)]).cpu().numpy()
    return Decision(both[0].astype(np.int64), both[1])  # ids < 2**53 are exact in float64


class EpsilonGreedy(Exploration):
    """With probability ε a uniformly random valid candidate, else the best estimated one.

    ε_t = epsilon / (1 + decay · t / 1000), with t the number of decisions made so far: constant
    for ``decay = 0``, about 1/t for ``decay > 0``. ``epsilon = 0`` is the greedy policy.
    """

    def __init__(self, epsilon: float = 0.1, decay: float = 0.0) -> None:
        epsilon, decay = check_real("epsilon", epsilon), check_real("decay", decay)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon!r}")
        if not 0.0 <= decay < math.inf:
            raise ValueError(f"decay must be >= 0 and finite, got {decay!r}")
        self.epsilon, self.decay = float(epsilon), float(decay)

    def epsilon_at(self, t: int) -> float:
        return self.epsilon / (1.0 + self.decay * t / 1000.0)

    def _probabilities(self, ties: np.ndarray, mask: np.ndarray, t: int) -> np.ndarray:
        eps = self.epsilon_at(t)
        return eps * mask / mask.sum(axis=1, keepdims=True) + (1.0 - eps) * _greedy_distribution(ties)

    def choose(self, estimator, obs, rng, t):
        if on_device(estimator, obs):
            return self._choose_on_device(estimator, obs, t)
        mask = obs.mask
        greedy, ties, n_tied = _argmax_ties(estimator.mean(obs), mask, rng)
        eps = self.epsilon_at(t)
        B = mask.shape[0]
        if B == 1:  # one user: the same draws and probabilities, computed on Python scalars
            action = int(greedy[0])
            if rng.random(1)[0] < eps:
                action = int(np.where(mask, rng.random((1, mask.shape[1])), -1.0).argmax())
            n_valid = int(np.count_nonzero(mask))
            n_best = 1 if isinstance(n_tied, int) else int(n_tied[0])
            p = eps / n_valid + (1.0 - eps) * float(ties[0, action]) / n_best
            return Decision(np.array([action], dtype=np.int64), np.array([p]))
        explore = rng.random(B) < eps
        actions = greedy
        if explore.any():
            u = np.where(mask[explore], rng.random((int(explore.sum()), mask.shape[1])), -1.0)
            actions = greedy.copy()
            actions[explore] = u.argmax(axis=1)
        rows = np.arange(B)
        p = eps / mask.sum(axis=1) + (1.0 - eps) * ties[rows, actions] / ties.sum(axis=1)
        return Decision(actions, p)

    def _choose_on_device(self, estimator, obs, t):
        gen, mask = estimator.generator_, _device_mask(estimator, obs)
        greedy, ties, n_tied = argmax_ties(estimator.mean_tensor(obs), mask, gen)
        eps = self.epsilon_at(t)
        B = greedy.shape[0]
        explore = torch.rand(B, generator=gen, device=greedy.device) < eps
        uniform = torch.where(mask, torch.rand(mask.shape, generator=gen, device=greedy.device), -1.0).argmax(1)
        actions = torch.where(explore, uniform, greedy)
        in_ties = ties.gather(1, actions[:, None])[:, 0].double()
        p = eps / mask.sum(1).double() + (1.0 - eps) * in_ties / n_tied.double()
        return _decision(actions, p, obs)

    def distribution(self, estimator, obs, rng, t):
        _, ties = argmax_random_ties(estimator.mean(obs), obs.mask, rng)
        return self._probabilities(ties, obs.mask, t)

    def explain(self, estimator, obs, rng, t):
        mean = estimator.mean(obs)
        _, ties = argmax_random_ties(mean, obs.mask, rng)
        eps = self.epsilon_at(t)
        share = np.where(obs.mask, eps / obs.mask.sum(axis=1, keepdims=True), 0.0)
        return {"mean": mean, "exploration": share, "probability": self._probabilities(ties, obs.mask, t)}


class UCB(Exploration):
    """Optimism: choose the largest ``mean + alpha · width``.

    With a linear estimator this is LinUCB (width = √(xᵀA⁻¹x)); with per-item counts it is UCB1
    (width = √(2 ln t / n)). Deterministic given the estimates, so propensities are 1 (or 1/ties).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        alpha = check_real("alpha", alpha)
        if not 0.0 <= alpha < math.inf:
            raise ValueError(f"alpha must be >= 0 and finite, got {alpha!r}")
        self.alpha = float(alpha)

    def _scores(self, estimator, obs):
        mean, width = estimator.mean_and_width(obs)
        # alpha = 0 is greedy: no bonus, even where the width is infinite (an untried item of
        # UCB1), which 0 · inf would turn into NaN scores and infinite propensities.
        return mean, (self.alpha * width if self.alpha else np.zeros_like(mean))

    def choose(self, estimator, obs, rng, t):
        if on_device(estimator, obs):
            mean, width = estimator.mean_and_width_tensor(obs)
            scores = mean + self.alpha * width if self.alpha else mean
            actions, _, n_tied = argmax_ties(scores, _device_mask(estimator, obs), estimator.generator_)
            return _decision(actions, 1.0 / n_tied.double(), obs)
        mean, bonus = self._scores(estimator, obs)
        actions, _, n_tied = _argmax_ties(mean + bonus, obs.mask, rng)
        if isinstance(n_tied, int):  # a single winner in every row
            p = np.empty(actions.shape[0])
            p.fill(1.0)
            return Decision(actions, p)
        return Decision(actions, 1.0 / n_tied)

    def distribution(self, estimator, obs, rng, t):
        mean, bonus = self._scores(estimator, obs)
        return _greedy_distribution(argmax_random_ties(mean + bonus, obs.mask, rng)[1])

    def explain(self, estimator, obs, rng, t):
        mean, bonus = self._scores(estimator, obs)
        ties = argmax_random_ties(mean + bonus, obs.mask, rng)[1]
        bonus = np.where(obs.mask, bonus, np.nan)  # no bonus for a candidate that cannot be shown
        return {"mean": mean, "exploration": bonus, "probability": _greedy_distribution(ties)}


class Thompson(Exploration):
    """Thompson sampling: draw rewards from the posterior and choose the best draw.

    The propensity of the chosen action has no closed form; it is the share of ``n_mc`` further
    posterior draws (plus the one acted on) in which that action wins: an estimate in (0, 1].
    Counting the acted-on draw keeps it above 0 and makes its inverse, the weight off-policy
    estimators use, nearly unbiased: for an action of probability π, E[1/p̂] = (1 − (1 − π)^(n_mc+1))/π,
    within 1% of 1/π once π · (n_mc + 1) ≥ 4.6 (p̂ itself averages (1 + n_mc π)/(n_mc + 1), high
    for rare actions). Raise ``n_mc`` where rare actions matter to an off-policy estimate.
    :meth:`distribution` (a policy's ``action_distribution``) is the share of ``n_mc + 1``
    draws too, so it is 0 for an action rarer than about 1/(n_mc + 1) (measured: 0 at π = 0.019
    with ``n_mc = 9``): a target policy evaluated off-policy wants a large ``n_mc``.

    An item listed twice in one row (a hand-built or logged batch; the built-in environments
    never do) is one item: BernoulliTS, disjoint LinTS and per-item neural heads draw one
    parameter per (user, item), so the two slots score alike and the item wins about 1/2 of the
    time against one equal rival, not 2/3. The gradient-feature NeuralTS
    (``uncertainty="gradient_diag"``), which has no parameter to draw, draws one standard normal
    per (user, item) for its f + v·σ·z.
    """

    def __init__(self, n_mc: int = 100) -> None:
        if not isinstance(n_mc, (int, np.integer)) or isinstance(n_mc, bool) or n_mc < 1:
            raise ValueError(f"n_mc (Monte-Carlo draws for propensities) must be a positive int, got {n_mc!r}")
        self.n_mc = int(n_mc)

    def _winners(self, draws: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, B, K = draws.shape
        # The mask broadcasts over the draws: no n-fold copy of it.
        return _argmax_ties_masked(np.where(mask, draws, -np.inf).reshape(n * B, K), rng)[0].reshape(n, B)

    def choose(self, estimator, obs, rng, t):
        if on_device(estimator, obs):
            draws = estimator.sample_tensor(obs, 1 + self.n_mc)
            winners = argmax_ties(draws, _device_mask(estimator, obs), estimator.generator_)[0]  # (n, B)
            actions = winners[0]
            return _decision(actions, (winners == actions[None, :]).to(torch.float64).mean(0), obs)
        draws = estimator.sample(obs, rng, 1 + self.n_mc)
        winners = self._winners(draws, obs.mask, rng)
        actions = winners[0]
        if actions.shape[0] == 1:  # one user: the same share, counted without numpy's mean
            return Decision(actions, np.array([np.count_nonzero(winners == actions[0]) / winners.shape[0]]))
        p = (winners == actions[None, :]).mean(axis=0)
        return Decision(actions, p)

    def distribution(self, estimator, obs, rng, t):
        draws = estimator.sample(obs, rng, 1 + self.n_mc)
        winners = self._winners(draws, obs.mask, rng)
        B, K = obs.mask.shape
        counts = np.zeros((B, K))
        np.add.at(counts, (np.broadcast_to(np.arange(B), winners.shape), winners), 1.0)
        return counts / winners.shape[0]

    def explain(self, estimator, obs, rng, t):
        # the centre of the draws: the posterior mean where it is not the estimator's point
        # estimate (Beta-Bernoulli), so that the exploration term averages 0
        mean = getattr(estimator, "posterior_mean", estimator.mean)(obs)
        draw = estimator.sample(obs, rng, 1)[0]
        exploration = np.where(obs.mask, draw - mean, np.nan)  # no draw for a candidate that cannot be shown
        return {"mean": mean, "exploration": exploration, "probability": self.distribution(estimator, obs, rng, t)}
