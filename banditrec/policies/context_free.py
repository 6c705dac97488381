"""Per-item reward statistics: the estimator behind the context-free policies.

It ignores user and item features and keeps, per catalogue id, a count and a reward sum. The
arrays grow as new ids appear, so no catalogue size is needed up front.
"""

from __future__ import annotations

import numpy as np

from banditrec._util import check_id_table, is_real
from banditrec.environments.simulator import Observation
from banditrec.policies.base import repeated_slots

__all__ = ["ItemStatistics"]


class ItemStatistics:
    """Counts and mean rewards per item id.

    Parameters
    ----------
    prior_mean : float
        Estimate for an item never tried (0 makes greedy policies pessimistic about new items).
    beta_prior : (float, float)
        Beta(a, b) prior for Thompson sampling on click rewards in [0, 1].
    clicks : bool
        Whether rewards must be clicks in [0, 1] (what Beta-Bernoulli Thompson sampling can learn
        from): a policy then refuses another reward at ``update``, before learning from it. The
        greedy and UCB policies on the same statistics take any finite reward (False).
    """

    def __init__(self, prior_mean: float = 0.0, beta_prior: tuple[float, float] = (1.0, 1.0),
                 clicks: bool = False) -> None:
        a, b = beta_prior
        if not all(is_real(x) and 0 < x < np.inf for x in (a, b)):
            raise ValueError(f"beta_prior (a, b) must be two positive finite numbers, got {beta_prior!r}")
        if not (is_real(prior_mean) and np.isfinite(prior_mean)):
            raise ValueError(f"prior_mean must be a finite number, got {prior_mean!r}")
        self.prior_mean = float(prior_mean)
        self.beta_prior = (float(a), float(b))
        self.clicks = bool(clicks)
        self.counts_ = np.zeros(0)
        self.sums_ = np.zeros(0)
        self.total_ = 0
        self.rewards_in_unit_interval_ = True

    @property
    def reward_bounds(self) -> tuple[float, float, str] | None:
        if self.clicks:
            return 0.0, 1.0, "a Beta-Bernoulli posterior (click rewards; use LinTS or a neural Thompson policy for real-valued rewards)"
        return None

    def _grow(self, ids: np.ndarray) -> None:
        need = int(ids.max()) + 1 if ids.size else 0
        if need > self.counts_.size:
            check_id_table(need, 16, "per-item counts (context-free policies)")
            size = max(need, 2 * self.counts_.size)
            self.counts_ = np.concatenate([self.counts_, np.zeros(size - self.counts_.size)])
            self.sums_ = np.concatenate([self.sums_, np.zeros(size - self.sums_.size)])

    def _stats(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        self._grow(obs.item_ids)
        return self.counts_[obs.item_ids], self.sums_[obs.item_ids]

    def mean(self, obs: Observation) -> np.ndarray:
        n, s = self._stats(obs)
        return np.where(n > 0, s / np.maximum(n, 1), self.prior_mean)

    def posterior_mean(self, obs: Observation) -> np.ndarray:
        """The Beta posterior's mean (a + s) / (a + b + n), around which :meth:`sample` draws:
        what Thompson sampling's explanation measures its exploration from (the empirical mean
        is 0 for an untried item, whose draws average a / (a + b))."""
        n, s = self._stats(obs)
        a, b = self.beta_prior
        return (a + s) / (a + b + n)

    def mean_and_width(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """UCB1's width √(2 ln t / n): infinite for untried items so each is tried once."""
        n, s = self._stats(obs)
        log_t = np.log(max(self.total_, 1))
        with np.errstate(divide="ignore"):
            width = np.where(n > 0, np.sqrt(2.0 * log_t / np.maximum(n, 1)), np.inf)
        return np.where(n > 0, s / np.maximum(n, 1), self.prior_mean), width

    def sample(self, obs: Observation, rng: np.random.Generator, n_draws: int) -> np.ndarray:
        """Draws from each item's Beta posterior, shape (n_draws, B, K)."""
        if not self.rewards_in_unit_interval_:  # learned without ``clicks``'s check at update
            raise ValueError(
                "Beta-Bernoulli Thompson sampling needs rewards in [0, 1]; this run produced others "
                "(use LinTS or a neural Thompson policy for real-valued rewards)"
            )
        n, s = self._stats(obs)
        a, b = self.beta_prior
        draws = rng.beta(a + s, b + n - s, size=(n_draws,) + n.shape)
        repeats = repeated_slots(obs.item_ids)
        if repeats is not None:  # an item listed twice in a row is one item: one draw for its slots
            rows, slots, groups, _ = repeats
            _, first = np.unique(groups, return_index=True)
            draws[:, rows, slots] = draws[:, rows[first[groups]], slots[first[groups]]]
        return draws

    def update(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        ids = obs.item_ids[np.arange(actions.size), actions]
        self._grow(ids)
        np.add.at(self.counts_, ids, 1.0)
        np.add.at(self.sums_, ids, rewards)
        self.total_ += actions.size
        if self.rewards_in_unit_interval_ and (rewards.min() < 0 or rewards.max() > 1):
            self.rewards_in_unit_interval_ = False
