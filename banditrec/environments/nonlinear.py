"""The nonlinear world: a fixed random neural network is the ground truth.

Users and items carry random feature vectors; the click probability is a random ReLU network of
(user, item, user ⊙ item) passed through a sigmoid, standardised so logits have unit spread before
``scale``. A linear policy on these features is misspecified, which is the point: it is the world
where neural policies must earn their keep. The explicit product u ⊙ v makes much of the truth
bilinear, though, and a ridge regression on the user ⊗ item outer product (LinUCB's shared form)
beats the default networks here; ``products=False`` leaves the product out, so that interactions
come only through the ReLUs (measured in the README).
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

__all__ = ["NonlinearWorld"]


class NonlinearWorld(UserSimulator):
    """Clicks from a random ReLU network over user and item features.

    Parameters
    ----------
    n_items : int
        Catalogue size; each item has a fixed random feature vector.
    n_candidates : int or None
        K candidates per user (default: the whole catalogue, in catalogue order).
    user_dim, item_dim : int
        Dimensions of the observed user and item features (item_dim must equal user_dim).
    hidden : int
        Width of the two hidden layers of the ground-truth network.
    scale : float
        Logit scale after standardisation.
    min_candidates : int or None
        If set, each user has a uniform number of valid candidates in [min_candidates, K].
    world_seed : int
        Seed of the network and the item features.
    products : bool
        Whether the truth's input includes user ⊙ item (True, the default). False leaves it out
        (the same random weights, the product's rows unused): a world a bilinear model fits less
        well.
    """

    def __init__(
        self,
        n_items: int = 20,
        n_candidates: int | None = None,
        user_dim: int = 8,
        item_dim: int = 8,
        hidden: int = 32,
        scale: float = 2.5,
        min_candidates: int | None = None,
        world_seed: int = 0,
        products: bool = True,
    ) -> None:
        self.n_candidates, self._min_candidates = check_world_sizes(n_items, n_candidates, min_candidates)
        for name, v in (("user_dim", user_dim), ("item_dim", item_dim), ("hidden", hidden)):
            if not is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if user_dim != item_dim:
            raise ValueError(f"user_dim and item_dim must be equal (the truth uses user ⊙ item), got {user_dim}, {item_dim}")
        if not isinstance(products, (bool, np.bool_)):
            raise ValueError(f"products must be True or False, got {products!r}")  # noqa: TRY004 (every bad world parameter is a ValueError)
        self.products = bool(products)
        scale = check_world_float("scale", scale, 0.0, open_low=True)
        world_seed = check_world_seed(world_seed)
        self.n_items, self.user_dim, self.item_dim = int(n_items), int(user_dim), int(item_dim)
        self.scale = scale
        rng = np.random.default_rng(world_seed)
        self.item_vectors = rng.standard_normal((n_items, item_dim))
        d_in = user_dim + 2 * item_dim
        self._w1 = rng.standard_normal((d_in, hidden)) * np.sqrt(2.0 / d_in)
        self._b1 = rng.standard_normal(hidden) * 0.1
        self._w2 = rng.standard_normal((hidden, hidden)) * np.sqrt(2.0 / hidden)
        self._b2 = rng.standard_normal(hidden) * 0.1
        self._w3 = rng.standard_normal(hidden) * np.sqrt(1.0 / hidden)
        # Standardise the network's output on a reference sample so `scale` means the same for any seed.
        u = rng.standard_normal((4096, user_dim))
        v = self.item_vectors[rng.integers(0, n_items, 4096)]
        raw = self._network(u, v)
        self._shift, self._spread = float(raw.mean()), float(raw.std() + 1e-12)
        if raw.std() <= 1e-9 * (1.0 + abs(raw.mean())):
            # every ReLU unit dead (likely with a few hidden units): every expected reward would be
            # 0.5 and every policy's regret 0, a silent non-experiment
            raise ValueError(
                f"the random truth network for hidden={hidden}, world_seed={world_seed} is constant "
                "(all its ReLU units are dead): every candidate would be a coin flip; "
                "use a larger hidden or another world_seed"
            )

    def _network(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.products:
            h = np.maximum(np.concatenate([u, v, u * v], axis=-1) @ self._w1 + self._b1, 0.0)
        else:
            h = np.maximum(np.concatenate([u, v], axis=-1) @ self._w1[: u.shape[-1] + v.shape[-1]] + self._b1, 0.0)
        h = np.maximum(h @ self._w2 + self._b2, 0.0)
        return h @ self._w3

    def sample_users(self, batch_size: int, rng: np.random.Generator) -> Observation:
        u = rng.standard_normal((batch_size, self.user_dim))
        ids, mask = sample_candidates(rng, batch_size, self.n_items, self.n_candidates, self._min_candidates)
        return Observation(u, self.item_vectors[ids], ids, mask, np.full(batch_size, -1, dtype=np.int64))

    def expected_rewards(self, obs: Observation) -> np.ndarray:
        u = np.broadcast_to(obs.user_features[:, None, :], obs.item_features.shape[:2] + (self.user_dim,))
        z = (self._network(u, obs.item_features) - self._shift) / self._spread
        with np.errstate(over="ignore"):  # exp(-scale z) → inf at a large scale: probability 0, exactly
            return 1.0 / (1.0 + np.exp(-self.scale * z))

    def sample_rewards(self, obs, actions, expected, rng):
        return (rng.random(expected.shape) < expected).astype(np.float64)
