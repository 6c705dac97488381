"""The policy contract: decide for a batch, report propensities, learn from rewards.

Every policy returns, with each action, the probability it had of choosing it (the propensity),
and can return its full action distribution over a batch, so anything it logs can be evaluated
offline. Tie-breaking and exploration draw only from the policy's own generator.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from banditrec._util import as_generator
from banditrec.environments.simulator import Observation, to_numpy

__all__ = ["Decision", "Policy", "argmax_random_ties", "check_feedback", "check_feedback_tensors", "repeated_slots"]


RewardBounds = tuple[float, float, str]  # (low, high, why): rewards a policy can learn from


class Decision(NamedTuple):
    """Actions chosen for a batch and the probability each had of being chosen.

    Attributes
    ----------
    actions : ndarray, shape (B,), int64
        Index of the chosen candidate for each user.
    propensities : ndarray, shape (B,), float64
        Probability of the chosen action under the policy, in (0, 1]. Exact, except for
        Thompson sampling, where it is a Monte-Carlo estimate.

    For a batch on a device (:attr:`Observation.on_device`) both are torch tensors there.
    """

    actions: np.ndarray
    propensities: np.ndarray


class Policy(ABC):
    """Base of all policies: ``act``, ``update``, ``action_distribution``.

    Parameters
    ----------
    seed : int, SeedSequence, Generator or None
        Seeds tie-breaking and exploration. Same seed and same data give the same decisions.
    """

    def __init__(self, seed: int | np.random.SeedSequence | np.random.Generator | None = None) -> None:
        self.seed = seed
        self.rng = as_generator(seed)
        self.n_decisions_ = 0

    @abstractmethod
    def _act(self, obs: Observation) -> Decision: ...

    @abstractmethod
    def _distribution(self, obs: Observation) -> np.ndarray: ...

    def _learn(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Learn from feedback; policies that do not learn keep the default."""

    def act(self, obs: Observation | Mapping[str, Any]) -> Decision:
        """Choose one candidate per user of the batch.

        For a batch on a device (a device world's) the decision is tensors on that device too; a
        policy that does not decide there gets a numpy copy of the batch and its decision is copied
        back."""
        obs = Observation.coerce(obs)
        if obs.on_device and not self.decides_on_device(obs):
            actions, p = self._act(obs.to_numpy())
            device = obs.item_ids.device
            decision = Decision(torch.as_tensor(actions, device=device), torch.as_tensor(p, device=device))
        else:
            decision = self._act(obs)
        self.n_decisions_ += obs.batch_size
        return decision

    def update(self, obs: Observation | Mapping[str, Any], actions: Any, rewards: Any) -> None:
        """Learn from the rewards of the actions taken for ``obs``."""
        obs = Observation.coerce(obs)
        bounds, who = self.reward_bounds, getattr(self, "name", None) or type(self).__name__
        if obs.on_device:
            if self.decides_on_device(obs):
                actions, rewards = check_feedback_tensors(obs, actions, rewards, who, bounds)
                self._learn(obs, actions, rewards)
                return
            obs, actions, rewards = obs.to_numpy(), to_numpy(actions), to_numpy(rewards)
        actions, rewards = check_feedback(obs, actions, rewards, who, bounds)
        self._learn(obs, actions, rewards)

    @property
    def reward_bounds(self) -> RewardBounds | None:
        """(low, high, why) when the policy can only learn from rewards in [low, high] (a
        click model's binary cross-entropy); None for any finite reward."""
        return None

    def decides_on_device(self, obs: Observation) -> bool:
        """Whether this policy takes ``obs``'s tensors as they are (a neural policy deciding on
        its device); otherwise a device batch is copied to the host for it."""
        return False

    def action_distribution(self, obs: Observation | Mapping[str, Any]) -> np.ndarray:
        """Probability of each candidate, shape (B, K); zero on masked slots, rows sum to one.

        Exact for epsilon-greedy, UCB and Random; a Monte-Carlo estimate for Thompson sampling
        (the share of ``n_mc + 1`` posterior draws each candidate wins, from an inspection
        stream: two calls differ, and a candidate rarer than about 1/(n_mc + 1) gets 0). A numpy
        array whatever the batch: a device batch is copied to the host first for a policy that
        does not decide on the device, as :meth:`act` does."""
        return np.asarray(to_numpy(self._distribution(self._checked(obs))), dtype=np.float64)

    def _checked(self, obs: Observation | Mapping[str, Any]) -> Observation:
        """``obs`` checked, and copied to the host unless this policy decides on its device."""
        obs = Observation.coerce(obs)
        return obs.to_numpy() if obs.on_device and not self.decides_on_device(obs) else obs

    def explain(self, obs: Observation | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Why each candidate would be shown: at least ``probability`` (B, K)."""
        return {"probability": self.action_distribution(obs)}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given (learned state ends in ``_`` and is excluded)."""
        return {}


def argmax_random_ties(scores: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Best valid candidate per row with uniform tie-breaking.

    Returns the chosen index (B,) and the tie indicator (B, K): the valid candidates that share
    the maximal score, so that the greedy distribution is ``ties / ties.sum(1)``.
    """
    actions, ties, _ = _argmax_ties(scores, mask, rng)
    return actions, ties


def _argmax_ties(scores: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Any]:
    """:func:`argmax_random_ties` plus the number of tied candidates per row: an int when every
    row has a single winner (that int is 1), else an array (B,)."""
    return _argmax_ties_masked(np.where(mask, scores, -np.inf), rng)


def _argmax_ties_masked(s: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Any]:
    """:func:`_argmax_ties` on scores already set to -inf on masked candidates."""
    if s.shape[0] == 1:  # one row: the same result with fewer numpy calls
        actions = s.argmax(axis=1)
        best = s[0, actions[0]]
        if best == -np.inf:
            raise ValueError("a user has no valid candidate (mask all False)")
        ties = s == best
        n = int(np.count_nonzero(ties))
        if n == 1:
            return actions, ties, 1
        if n == 0:
            raise _nan_scores(s)
        u = rng.random(s.shape)
        return np.where(ties, u, -1.0).argmax(axis=1), ties, ties.sum(axis=1)
    best = s.max(axis=1, keepdims=True)
    if (best == -np.inf).any():
        raise ValueError("a user has no valid candidate (mask all False)")
    # Infinite scores tie too (e.g. never-tried items under UCB). A NaN score wins numpy's max
    # and ties with nothing: it would pick slot 0, masked or not, with propensity 1/0.
    ties = s == best
    n_ties = np.count_nonzero(ties, axis=1)
    if (n_ties == 1).all():  # one winner per row: nothing to break
        return s.argmax(axis=1), ties, 1
    if (n_ties == 0).any():
        raise _nan_scores(s)
    u = rng.random(s.shape)
    return np.where(ties, u, -1.0).argmax(axis=1), ties, n_ties


def _nan_scores(s: np.ndarray) -> ValueError:
    rows = np.flatnonzero(np.isnan(s).any(axis=1))
    return ValueError(
        f"the policy's scores are NaN for {rows.size} user(s), the first row {int(rows[0])}: its estimator "
        "produced NaN (a NaN hyperparameter or statistic) and no candidate can be chosen"
    )


_SQUARES = "the sum of their squares, which the regressions' statistics hold, overflows float64: rescale them"


def _out_of_bounds(who: str, bounds: RewardBounds, low: float, high: float) -> ValueError:
    lo, hi, why = bounds
    return ValueError(f"{who}.update: rewards must lie in [{lo:g}, {hi:g}] for {why}; got range [{low:.4g}, {high:.4g}]")


def check_feedback(obs: Observation, actions: Any, rewards: Any, who: str,
                   bounds: RewardBounds | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``update``'s arguments against the observation they belong to (and, with
    ``bounds``, the rewards against the range the policy can learn from)."""
    B, K = obs.item_ids.shape
    actions = to_numpy(actions)
    rewards = to_numpy(rewards)
    if B == 1:  # one user, as a Gymnasium single env answers: a plain action and a float reward
        actions = actions.reshape(-1) if actions.ndim == 0 else actions
        rewards = rewards.reshape(-1) if rewards.ndim == 0 else rewards
    whole = actions.dtype.kind == "f" and np.isfinite(actions).all() and (actions == np.round(actions)).all()
    if whole:
        actions = actions.astype(np.int64)  # 2.0 is candidate 2, as the environments accept it
    if actions.shape != (B,):
        raise ValueError(f"{who}.update: expected actions of shape ({B},), got {actions.shape}")
    if rewards.shape != (B,):
        raise ValueError(f"{who}.update: expected rewards of shape ({B},), got {rewards.shape}")
    if actions.dtype.kind not in "iu":
        raise ValueError(f"{who}.update: actions must be integer candidate indices, got dtype {actions.dtype}")
    if rewards.dtype.kind not in "iufb":
        raise ValueError(f"{who}.update: rewards must be numeric, got dtype {rewards.dtype}")
    rewards = rewards.astype(np.float64, copy=False)
    if B == 1:  # one row: the same checks on Python scalars
        r = float(rewards[0])
        if not math.isfinite(r * r):
            if math.isfinite(r):
                raise ValueError(f"{who}.update: rewards are too large (up to {abs(r):.3g}; {_SQUARES})")
            raise ValueError(f"{who}.update: rewards contain NaN or inf at rows [0]")
        a = int(actions[0])
        if not (0 <= a < K and obs.mask[0, a]):
            raise ValueError(f"{who}.update: action {a} is outside [0, {K}) or on a masked candidate")
        if bounds is not None and not bounds[0] <= r <= bounds[1]:
            raise _out_of_bounds(who, bounds, r, r)
        return actions, rewards
    if not np.isfinite(rewards @ rewards):  # NaN, inf, or a sum of squares past float64
        bad = np.flatnonzero(~np.isfinite(rewards))[:5].tolist()
        if not bad:
            raise ValueError(f"{who}.update: rewards are too large (up to {np.abs(rewards).max():.3g}; {_SQUARES})")
        raise ValueError(f"{who}.update: rewards contain NaN or inf at rows {bad}")
    if actions.min() < 0 or actions.max() >= K:
        raise ValueError(f"{who}.update: actions must lie in [0, {K}), got range [{actions.min()}, {actions.max()}]")
    if not obs.mask[np.arange(B), actions].all():
        raise ValueError(f"{who}.update: an action points at a masked candidate")
    if bounds is not None and (rewards.min() < bounds[0] or rewards.max() > bounds[1]):
        raise _out_of_bounds(who, bounds, rewards.min(), rewards.max())
    return actions, rewards


def check_feedback_tensors(obs: Observation, actions: Any, rewards: Any, who: str,
                           bounds: RewardBounds | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`check_feedback` for a batch on a device: tensors there (int64 actions, float64
    rewards), with one host read for all the value checks."""
    B, K = obs.item_ids.shape
    device = obs.item_ids.device
    actions = torch.as_tensor(actions, device=device)
    rewards = torch.as_tensor(rewards, device=device)
    if B == 1:
        actions, rewards = actions.reshape(-1), rewards.reshape(-1)
    if tuple(actions.shape) != (B,):
        raise ValueError(f"{who}.update: expected actions of shape ({B},), got {tuple(actions.shape)}")
    if tuple(rewards.shape) != (B,):
        raise ValueError(f"{who}.update: expected rewards of shape ({B},), got {tuple(rewards.shape)}")
    if actions.is_floating_point() or actions.is_complex() or actions.dtype == torch.bool:
        raise ValueError(f"{who}.update: actions must be integer candidate indices, got dtype {actions.dtype}")
    if rewards.is_complex():
        raise ValueError(f"{who}.update: rewards must be real numbers, got dtype {rewards.dtype}")
    actions, rewards = actions.to(torch.int64), rewards.to(torch.float64)
    in_range = (actions >= 0) & (actions < K)
    on_valid = obs.mask[torch.arange(B, device=device), actions.clamp(0, K - 1)] & in_range
    fine = torch.isfinite(rewards).all() & on_valid.all()
    if bounds is not None:
        fine = fine & ((rewards >= bounds[0]) & (rewards <= bounds[1])).all()
    if bool(fine):  # the one read
        return actions, rewards
    if not bool(torch.isfinite(rewards).all()):
        bad = torch.nonzero(~torch.isfinite(rewards))[:5, 0].tolist()
        raise ValueError(f"{who}.update: rewards contain NaN or inf at rows {bad}")
    if not bool(in_range.all()):
        raise ValueError(
            f"{who}.update: actions must lie in [0, {K}), got range [{int(actions.min())}, {int(actions.max())}]"
        )
    if not bool(on_valid.all()):
        raise ValueError(f"{who}.update: an action points at a masked candidate")
    raise _out_of_bounds(who, bounds, float(rewards.min()), float(rewards.max()))


def repeated_slots(item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """The candidates whose item id occurs more than once in their row of ``item_ids`` (B, K):
    ``(rows, slots, groups, n_groups)``, ``groups`` numbering each (row, repeated item) from 0 to
    ``n_groups - 1``; None when no row lists an item twice (the usual case, checked cheaply)."""
    B, K = item_ids.shape
    if K < 2:
        return None
    if B == 1 and K <= 256:
        row = item_ids[0].tolist()
        if len(set(row)) == K:
            return None
    ids = np.sort(item_ids, axis=1)  # a sort without the permutation: about 3x cheaper, and the usual answer
    if not (ids[:, 1:] == ids[:, :-1]).any():
        return None
    order = np.argsort(item_ids, axis=1, kind="stable")
    ids = np.take_along_axis(item_ids, order, axis=1)
    same = ids[:, 1:] == ids[:, :-1]  # sorted neighbours equal
    repeated = np.zeros((B, K), dtype=bool)
    repeated[:, 1:] = same
    repeated[:, :-1] |= same
    starts = repeated.copy()
    starts[:, 1:] &= ~same
    group = np.cumsum(starts.ravel()).reshape(B, K) - 1
    rows, at = np.nonzero(repeated)
    groups = group[rows, at]
    return rows, order[rows, at], groups, int(groups[-1]) + 1
