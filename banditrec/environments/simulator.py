"""The user-simulator contract: the one interface every world implements.

A simulator moves in batches of B arriving users, each shown K candidate items. Built-in worlds
and a user's own simulator implement the same four methods, so a custom simulator gets the
Gymnasium environments, the runner, the plots and off-policy evaluation for free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Observation", "UserSimulator", "to_numpy"]


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array of ``value``, copying a torch tensor from its device (the one host round trip)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _integral(value: Any, name: str) -> np.ndarray:
    """An observation field of ids as int64; floats only when whole (0.5 is not an id)."""
    array = np.asarray(value)
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
        return array.astype(np.int64)
    raise ValueError(f"observation {name} must be integer ids, got dtype {array.dtype} with values like {array.ravel()[:3]}")


def _finite(value: Any, name: str) -> np.ndarray:
    """An observation's features as float64, rejecting NaN and inf (they poison every estimator)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"observation {name} must be numeric features: {err}") from None
    if not np.isfinite(array).all():
        bad = ~np.isfinite(array)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"observation {name} contains {int(bad.sum())} NaN or inf value(s), the first at index {first}")
    return array


@dataclass(frozen=True)
class Observation:
    """A batch of B arriving users and their K candidate items.

    Attributes
    ----------
    user_features : ndarray, shape (B, d_u), float64
    item_features : ndarray, shape (B, K, d_i), float64
    item_ids : ndarray, shape (B, K), int64
        Catalogue ids of the candidates (ids of masked slots are arbitrary but valid).
    mask : ndarray, shape (B, K), bool
        True where the candidate is real; candidate sets may be smaller than K.
    user_ids : ndarray, shape (B,), int64
        Catalogue id of each user, -1 where users are anonymous.

    A simulator on a device (``UserSimulator.device`` set, e.g.
    :class:`~banditrec.environments.DeviceWorld`) fills the fields with torch tensors on that
    device instead, features in float32 (:attr:`on_device` is then true, :meth:`to_numpy` copies
    the batch to the host).
    """

    user_features: np.ndarray
    item_features: np.ndarray
    item_ids: np.ndarray
    mask: np.ndarray
    user_ids: np.ndarray

    @property
    def batch_size(self) -> int:
        return self.item_ids.shape[0]

    @property
    def n_candidates(self) -> int:
        return self.item_ids.shape[1]

    def __len__(self) -> int:
        return self.batch_size

    @property
    def on_device(self) -> bool:
        """Whether the fields are torch tensors (a device world's batch) rather than numpy arrays."""
        return isinstance(self.item_ids, torch.Tensor)

    def to_numpy(self) -> Observation:
        """The batch as numpy arrays with the contract's dtypes (itself when it already is)."""
        if not self.on_device:
            return self
        return Observation(
            user_features=to_numpy(self.user_features).astype(np.float64),
            item_features=to_numpy(self.item_features).astype(np.float64),
            item_ids=to_numpy(self.item_ids),
            mask=to_numpy(self.mask),
            user_ids=to_numpy(self.user_ids),
        )

    def __getitem__(self, index: Any) -> Observation:
        """Rows of the batch (a slice, an integer array or a boolean mask) as a new Observation."""
        if isinstance(index, (int, np.integer)):
            i, B = int(index), self.batch_size
            if not -B <= i < B:
                raise IndexError(f"row {i} is out of range for a batch of {B} users")
            index = slice(i % B, i % B + 1)
        return Observation(
            user_features=self.user_features[index],
            item_features=self.item_features[index],
            item_ids=self.item_ids[index],
            mask=self.mask[index],
            user_ids=self.user_ids[index],
        )

    def to_dict(self) -> dict[str, np.ndarray]:
        """The Gymnasium form: keys ``user``, ``items``, ``item_ids``, ``mask`` (int8), ``user_id``."""
        # Copies: Gymnasium callers keep what they are given, and simulators may reuse arrays.
        if self.on_device:
            return self.to_numpy().to_dict()
        return {
            "user": np.array(self.user_features, dtype=np.float64),
            "items": np.array(self.item_features, dtype=np.float64),
            "item_ids": np.array(self.item_ids, dtype=np.int64),
            "mask": self.mask.astype(np.int8),
            "user_id": np.array(self.user_ids, dtype=np.int64),
        }

    @classmethod
    def from_dict(cls, obs: Mapping[str, Any]) -> Observation:
        """Build from a Gymnasium observation, batched (leading B) or single (no leading B)."""
        missing = {"user", "items", "item_ids", "mask"} - set(obs)
        if missing:
            raise KeyError(f"observation dict lacks keys {sorted(missing)}; got {sorted(obs)}")
        # A dict is user-built (a Gymnasium loop, a hand-made batch): check it here, where the
        # mistake can still be named, not as a broadcasting error or a NaN propensity later.
        item_ids = _integral(obs["item_ids"], "item_ids")
        single = item_ids.ndim == 1
        user = _finite(obs["user"], "user")
        items = _finite(obs["items"], "items")
        mask = np.asarray(obs["mask"]).astype(bool)
        user_ids = _integral(obs.get("user_id", -1), "user_id")
        if single:
            user, items, item_ids, mask = user[None], items[None], item_ids[None], mask[None]
            user_ids = user_ids.reshape(1)
        elif user_ids.ndim == 0:
            user_ids = np.broadcast_to(user_ids, item_ids.shape[:1]).copy()
        if item_ids.ndim != 2 or min(item_ids.shape) < 1:
            raise ValueError(
                f"observation item_ids must have shape (B, K) or (K,) with B, K >= 1, got {np.shape(obs['item_ids'])}"
            )
        B, K = item_ids.shape
        checks = (
            ("user", user, user.ndim == 2 and user.shape[0] == B, f"({B}, d_u)"),
            ("items", items, items.ndim == 3 and items.shape[:2] == (B, K), f"({B}, {K}, d_i)"),
            ("mask", mask, mask.shape == (B, K), f"({B}, {K})"),
            ("user_id", user_ids, user_ids.shape == (B,), f"({B},)"),
        )
        for name, value, ok, shape in checks:
            if not ok:
                raise ValueError(f"observation {name} must have shape {shape} to match item_ids, got {value.shape}")
        if item_ids.min() < 0:
            raise ValueError(f"observation item_ids must be >= 0 (catalogue ids), got {item_ids.min()}")
        return cls(user, items, item_ids, mask, user_ids)

    @classmethod
    def coerce(cls, obs: Observation | Mapping[str, Any]) -> Observation:
        """Accept either form; policies call this at their boundary."""
        if isinstance(obs, Observation):
            return obs
        if isinstance(obs, Mapping):
            return cls.from_dict(obs)
        raise TypeError(
            f"expected a banditrec Observation or a Gymnasium observation dict, got {type(obs).__name__}"
        )


class UserSimulator(ABC):
    """A world of users and items, simulated B users at a time.

    Subclasses set four sizes (as attributes or properties) and implement the batch methods.
    Everything random draws from the ``rng`` it is given, never from global state, so the same
    environment seed replays the same users and rewards.

    Attributes
    ----------
    n_candidates : int
        K, candidates shown to each user.
    user_dim : int
        d_u, length of a user's observable feature vector.
    item_dim : int
        d_i, length of an item's observable feature vector.
    n_items : int
        Catalogue size; item ids lie in ``[0, n_items)``.
    n_users : int or None
        Catalogue of users, or None when users are anonymous (then ``user_ids`` are -1).
    reward_type : {"binary", "real"}
        ``"binary"``: clicks, expected rewards are probabilities in [0, 1]; ``"real"``: ratings or
        any real value.
    device : torch.device or None
        None (the default): the methods take and return numpy arrays. A torch device: they take and
        return torch tensors on it (observations, expected rewards (B, K) float64, rewards (B,)
        float64, actions (B,) int64), so the environment and a policy deciding on that device
        exchange no data with the host (see :class:`~banditrec.environments.DeviceWorld`).
    """

    n_candidates: int
    user_dim: int
    item_dim: int
    n_items: int
    n_users: int | None = None
    reward_type: str = "binary"
    device: torch.device | None = None

    @abstractmethod
    def sample_users(self, batch_size: int, rng: np.random.Generator) -> Observation:
        """Draw ``batch_size`` arriving users with their candidate sets."""

    @abstractmethod
    def expected_rewards(self, obs: Observation) -> np.ndarray:
        """True expected reward of every candidate, shape (B, K) (values of masked slots are ignored)."""

    @abstractmethod
    def sample_rewards(
        self,
        obs: Observation,
        actions: np.ndarray,
        expected: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Draw the realised reward of each chosen candidate, shape (B,).

        ``expected`` (shape (B,)) is ``expected_rewards(obs)[b, actions[b]]``, passed so a
        simulator need not compute it twice.
        """

    def update(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Let the world react to feedback (drift, fatigue). Stationary worlds do nothing."""

    def reset(self, rng: np.random.Generator) -> None:
        """Called on ``env.reset``; worlds with internal state restore it here."""
