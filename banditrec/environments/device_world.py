"""A logged-data world simulated with torch tensors on a device: the GPU path without host round trips.

Why: with B = 4,096 users and K = 100 candidates the numpy world builds about 40 MB per step on
the host, which a policy on a GPU then copies to the device (184–216 ms per step on an H200
machine, the copy included), and every decision goes back to the host for the environment.
:class:`DeviceWorld` keeps the fitted truth (user and item factors, biases), the observable
features and a random generator on the device; arrivals, candidate sets, expected rewards, clicks
and the drift of the users' tastes are all drawn there, and its observations hold torch tensors
(:attr:`Observation.on_device`). The environment, the runner and a neural policy deciding on the
same device then pass tensors from end to end. A policy that decides on the host (the linear
ones, or ``decide_on="host"``) still works: it receives a numpy copy at its boundary and its
decisions are copied back (:meth:`banditrec.policies.Policy.act`).

Same truth as the wrapped :class:`~banditrec.environments.logged.LoggedDataWorld` — expected
rewards agree with the numpy world's to float64 rounding for any user and candidates — but a
different random stream: draws come from a torch generator seeded from the ``rng`` given to
``reset``, so a seed always gives the same numbers on a given device, not the numbers of the numpy
world (nor, across device types, of each other). The ``rng`` arguments of ``sample_users`` and
``sample_rewards`` are not used. Features are float32 (what the networks use), expected rewards and
rewards float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from banditrec.environments.logged import LoggedDataWorld
from banditrec.environments.simulator import Observation, UserSimulator
from banditrec.models.device import resolve_device

__all__ = ["DeviceWorld"]


class DeviceWorld(UserSimulator):
    """``world`` simulated with tensors on ``device`` (see the module docstring).

    Parameters
    ----------
    world : LoggedDataWorld
        The fitted world (its truth, features, arrival and candidate weights, catalogue growth,
        drift and ``reveal_truth``).
    device : str or torch.device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    """

    reward_type = "binary"

    def __init__(self, world: LoggedDataWorld, device: str | torch.device = "auto") -> None:
        if not isinstance(world, LoggedDataWorld):
            raise TypeError(f"world must be a LoggedDataWorld, got {type(world).__name__}")
        self.world = world
        self.device = dev = resolve_device(device)
        self.n_candidates, self.user_dim, self.item_dim = world.n_candidates, world.user_dim, world.item_dim
        self.n_items, self.n_users = world.n_items, world.n_users
        f32, f64 = {"dtype": torch.float32, "device": dev}, {"dtype": torch.float64, "device": dev}
        truth = world.truth
        self._user_x = torch.as_tensor(world._user_x, **f32)
        self._item_x = torch.as_tensor(world._item_x, **f32)
        self._truth_user_factors = torch.as_tensor(truth.user_factors, **f64)
        self._item_factors = torch.as_tensor(truth.item_factors, **f64)
        self._user_bias = torch.as_tensor(truth.user_bias, **f64)
        self._item_bias = torch.as_tensor(truth.item_bias, **f64)
        self._global_bias = float(truth.global_bias)
        self._item_order = torch.as_tensor(world._item_order, dtype=torch.int64, device=dev)
        self._arrival_p = None if world._arrival_p is None else torch.as_tensor(world._arrival_p, **f64)
        self._log_w = None if world._candidate_w is None else torch.log(torch.as_tensor(world._candidate_w, **f64))
        self._factor_scale = torch.as_tensor(world._factor_scale, **f64)
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(world.seed)
        self._restore()

    def __getattr__(self, name: str) -> Any:
        # Everything else (fidelity, click_offset, mean_click_rate, feature names, ...) is the
        # wrapped world's. Only called for attributes not found on the DeviceWorld itself.
        if name == "world":
            raise AttributeError(name)
        return getattr(self.world, name)

    # -- state -----------------------------------------------------------------------------
    def _restore(self) -> None:
        self._user_factors = self._truth_user_factors.clone()
        self._n_available = self.world.initial_items
        self._steps = 0

    def reset(self, rng: np.random.Generator) -> None:
        """Restore the fitted user factors and the initial catalogue; seed the device generator from ``rng``."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        self.generator.manual_seed(int(rng.integers(0, 2**63 - 1)))
        self._restore()

    @property
    def n_available(self) -> int:
        """Items in the catalogue now (grows with ``new_items_per_step``)."""
        return self._n_available

    @property
    def user_factors(self) -> np.ndarray:
        """Current (possibly drifted) hidden user factors, shape (n_users, d), copied to the host."""
        return self._user_factors.cpu().numpy()

    # -- the simulator contract --------------------------------------------------------------
    def sample_users(self, batch_size: int, rng: np.random.Generator | None = None) -> Observation:
        """``batch_size`` arriving users and K distinct candidates each among the available items,
        as tensors on the device (see :meth:`LoggedDataWorld.sample_users` for the fields)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        B, K, g, dev = int(batch_size), self.n_candidates, self.generator, self.device
        if self._arrival_p is None:
            users = torch.randint(0, self.n_users, (B,), generator=g, device=dev)
        else:
            users = torch.multinomial(self._arrival_p, B, replacement=True, generator=g)
        n_av = self._n_available
        k = min(K, n_av)
        available = self._item_order[:n_av]
        if k == n_av and self._log_w is None:  # every available item, in catalogue order
            local = torch.arange(k, device=dev).expand(B, k)
        else:
            keys = torch.rand((B, n_av), generator=g, device=dev, dtype=torch.float64)
            if self._log_w is not None:  # Gumbel top-k: without replacement, proportional to the weights
                keys = self._log_w[available] - torch.log(-torch.log(keys))
            local = keys.topk(k, dim=1).indices
        ids = available[local]
        mask = torch.ones((B, K), dtype=torch.bool, device=dev)
        if k < K:
            ids = torch.cat([ids, ids[:, :1].expand(B, K - k)], dim=1)
            mask[:, k:] = False
        user_x, item_x = self._user_x[users], self._item_x[ids]
        if self.world.reveal_truth:
            user_x = torch.cat([user_x, self._user_factors[users].float(), self._user_bias[users, None].float()], dim=1)
            item_x = torch.cat([item_x, self._item_factors[ids].float(), self._item_bias[ids][..., None].float()], dim=2)
        if k < K:
            item_x = item_x * mask[..., None]
        return Observation(user_x, item_x, ids.contiguous(), mask, users)

    def expected_rewards(self, obs: Observation) -> torch.Tensor:
        """True click probability of every candidate, shape (B, K), float64 in (0, 1)."""
        users, items = obs.user_ids, obs.item_ids
        z = (
            torch.einsum("bd,bkd->bk", self._user_factors[users], self._item_factors[items])
            + self._user_bias[users, None]
            + self._item_bias[items]
            + self._global_bias
        )
        return torch.sigmoid(z / self.world.temperature + self.world.click_offset)

    def sample_rewards(self, obs: Observation, actions: torch.Tensor, expected: torch.Tensor,
                       rng: np.random.Generator | None = None) -> torch.Tensor:
        """Clicks ~ Bernoulli(expected), shape (B,), float64 0/1."""
        u = torch.rand(expected.shape, generator=self.generator, device=self.device, dtype=torch.float64)
        return (u < expected).to(torch.float64)

    def update(self, obs: Observation, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        """Advance one step: drift the user factors and grow the catalogue."""
        world = self.world
        self._steps += 1
        if world.drift > 0:
            noise = torch.randn(self._user_factors.shape, generator=self.generator, device=self.device,
                                dtype=torch.float64)
            self._user_factors.mul_(math.sqrt(1.0 - world.drift**2)).add_(world.drift * self._factor_scale * noise)
        if world.new_items_per_step:
            self._n_available = min(self.n_items, world.initial_items + self._steps * world.new_items_per_step)
