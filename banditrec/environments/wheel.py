"""The wheel bandit of Riquelme, Tucker & Snoek (2018), "Deep Bayesian Bandits Showdown".

Contexts are uniform on the unit disc; five arms. Inside radius δ the centre arm (0) is best with
mean 1.2 against 1.0 for the others. Outside, the arm of the context's quadrant (1–4) pays 50, the
centre still 1.2 and the rest 1.0. All rewards are Gaussian with σ = 0.01. Larger δ hides the
lucrative outer region, so exploration pays less often but more. Uniform's expected regret per
step is 0.16 δ² + 39.16 (1 − δ²).
"""

from __future__ import annotations

import numpy as np

from banditrec.environments.candidates import check_world_float
from banditrec.environments.simulator import Observation, UserSimulator

__all__ = ["WheelWorld"]


class WheelWorld(UserSimulator):
    """The wheel bandit.

    Parameters
    ----------
    delta : float
        Exploration parameter δ in (0, 1): radius of the inner region.
    mu_centre, mu_other, mu_large : float
        Means of the centre arm, the other arms, and the quadrant arm outside δ.
    sigma, sigma_large : float
        Reward standard deviations (small and large rewards).
    """

    n_candidates = 5
    user_dim = 2
    item_dim = 5
    n_items = 5
    reward_type = "real"

    def __init__(
        self,
        delta: float = 0.5,
        mu_centre: float = 1.2,
        mu_other: float = 1.0,
        mu_large: float = 50.0,
        sigma: float = 0.01,
        sigma_large: float = 0.01,
    ) -> None:
        self.delta = check_world_float("delta", delta, 0.0, 1.0, open_low=True)
        self.mu_centre, self.mu_other, self.mu_large = (
            check_world_float(name, value)
            for name, value in (("mu_centre", mu_centre), ("mu_other", mu_other), ("mu_large", mu_large))
        )
        self.sigma = check_world_float("sigma", sigma, 0.0)
        self.sigma_large = check_world_float("sigma_large", sigma_large, 0.0)
        self._items = np.eye(5)
        self._ids = np.arange(5, dtype=np.int64)

    def sample_users(self, batch_size: int, rng: np.random.Generator) -> Observation:
        r = np.sqrt(rng.random(batch_size))
        phi = rng.random(batch_size) * 2.0 * np.pi
        x = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
        return Observation(
            x,
            np.tile(self._items, (batch_size, 1, 1)),
            np.tile(self._ids, (batch_size, 1)),
            np.ones((batch_size, 5), dtype=bool),
            np.full(batch_size, -1, dtype=np.int64),
        )

    def outside(self, x: np.ndarray) -> np.ndarray:
        """Whether each context lies outside radius δ, where its quadrant's arm pays ``mu_large``."""
        return np.einsum("bd,bd->b", x, x) > self.delta**2

    def quadrant_arm(self, x: np.ndarray) -> np.ndarray:
        """Arm (1–4) that pays ``mu_large`` for contexts outside δ, by quadrant."""
        right, top = x[:, 0] >= 0, x[:, 1] >= 0
        return np.where(right, np.where(top, 1, 2), np.where(top, 4, 3))

    def expected_rewards(self, obs: Observation) -> np.ndarray:
        x = obs.user_features
        B = x.shape[0]
        means = np.full((B, 5), self.mu_other)
        means[:, 0] = self.mu_centre
        outer = np.flatnonzero(self.outside(x))
        means[outer, self.quadrant_arm(x[outer])] = self.mu_large
        return np.take_along_axis(means, obs.item_ids, axis=1)

    def sample_rewards(self, obs, actions, expected, rng):
        # The large-reward noise goes where the arm is the context's quadrant arm outside δ, by
        # position, not by value: mu_centre or mu_other set equal to mu_large keep sigma.
        x = obs.user_features
        arm = obs.item_ids[np.arange(x.shape[0]), actions]
        large = self.outside(x) & (arm == self.quadrant_arm(x))
        sd = np.where(large, self.sigma_large, self.sigma)
        return expected + sd * rng.standard_normal(expected.shape)
