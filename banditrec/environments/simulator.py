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


_FIELDS = ("user_features", "item_features", "item_ids", "mask", "user_ids")
_DICT_KEYS = ("user", "items", "item_ids", "mask", "user_id")


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

    A policy checks a batch it has not seen checked (:meth:`coerce`); environments hand over
    batches they have checked or whose simulator they trust (:attr:`is_checked`).
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
        host = Observation(
            user_features=to_numpy(self.user_features).astype(np.float64),
            item_features=to_numpy(self.item_features).astype(np.float64),
            item_ids=to_numpy(self.item_ids),
            mask=to_numpy(self.mask),
            user_ids=to_numpy(self.user_ids),
        )
        return host._mark_checked() if self.is_checked else host

    def __getitem__(self, index: Any) -> Observation:
        """Rows of the batch (a slice, an integer array or a boolean mask) as a new Observation."""
        if isinstance(index, (int, np.integer)):
            i, B = int(index), self.batch_size
            if not -B <= i < B:
                raise IndexError(f"row {i} is out of range for a batch of {B} users")
            index = slice(i % B, i % B + 1)
        rows = Observation(
            user_features=self.user_features[index],
            item_features=self.item_features[index],
            item_ids=self.item_ids[index],
            mask=self.mask[index],
            user_ids=self.user_ids[index],
        )
        return rows._mark_checked() if self.is_checked else rows

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
        return cls._checked_from(obs["user"], obs["items"], obs["item_ids"], obs["mask"], obs.get("user_id", -1),
                                 single_allowed=True, names=_DICT_KEYS)

    @classmethod
    def _checked_from(cls, user: Any, items: Any, item_ids: Any, mask: Any, user_ids: Any,
                      single_allowed: bool, names: tuple[str, ...] = _FIELDS) -> Observation:
        """The contract's checks on host fields, converting to its dtypes: ids whole and >= 0,
        features finite, the mask boolean (or 0/1), every shape agreeing with item_ids. ``names``
        are the fields as the caller knows them (a dict's keys or the attributes)."""
        n_user, n_items, n_ids, n_mask, n_uids = names
        item_ids = _integral(item_ids, n_ids)
        single = single_allowed and item_ids.ndim == 1
        user = _finite(user, n_user)
        items = _finite(items, n_items)
        mask = _boolean(mask, n_mask)
        user_ids = _integral(user_ids, n_uids)
        if single:
            user, items, item_ids, mask = user[None], items[None], item_ids[None], mask[None]
            user_ids = user_ids.reshape(1)
        elif user_ids.ndim == 0:
            user_ids = np.broadcast_to(user_ids, item_ids.shape[:1]).copy()
        if item_ids.ndim != 2 or min(item_ids.shape) < 1:
            raise ValueError(
                f"observation {n_ids} must have shape (B, K){' or (K,)' if single_allowed else ''} "
                f"with B, K >= 1, got {item_ids.shape}"
            )
        B, K = item_ids.shape
        checks = (
            (n_user, user, user.ndim == 2 and user.shape[0] == B, f"({B}, d_u)"),
            (n_items, items, items.ndim == 3 and items.shape[:2] == (B, K), f"({B}, {K}, d_i)"),
            (n_mask, mask, mask.shape == (B, K), f"({B}, {K})"),
            (n_uids, user_ids, user_ids.shape == (B,), f"({B},)"),
        )
        for name, value, ok, shape in checks:
            if not ok:
                raise ValueError(f"observation {name} must have shape {shape} to match {n_ids}, got {value.shape}")
        if item_ids.min() < 0:
            raise ValueError(f"observation {n_ids} must be >= 0 (catalogue ids), got {item_ids.min()}")
        if user_ids.min() < -1:
            raise ValueError(f"observation {n_uids} must be >= 0, or -1 for anonymous users, got {user_ids.min()}")
        return cls(user, items, item_ids, mask, user_ids)._mark_checked()

    @property
    def is_checked(self) -> bool:
        """Whether this batch has passed the contract's checks (an environment's, or the copy a
        policy's check returns); a policy checks an unchecked batch each time it sees it."""
        return self.__dict__.get("_checked", False)

    def _mark_checked(self) -> Observation:
        object.__setattr__(self, "_checked", True)
        return self

    @classmethod
    def coerce(cls, obs: Observation | Mapping[str, Any]) -> Observation:
        """Accept either form, checked; policies call this at their boundary.

        An Observation built by hand is checked like a dict every time a policy sees it
        (shapes, dtypes, NaN, negative ids: a named ValueError rather than a silent wrong
        answer), and the policy gets a new checked batch each time: a caller may refill the
        same arrays in place between steps, so neither the check nor a conversion can be
        remembered (a cached float64 copy of float32 features made a policy decide on the first
        step's users ever after; neural estimators cache their inputs by the batch object).
        Environments hand over batches they have already checked. A batch of tensors has its
        shapes and dtypes checked from their metadata and its values in one read.
        """
        if isinstance(obs, Observation):
            if obs.is_checked:
                if obs.batch_size == 0:  # a checked batch's empty row selection (obs[mask] with no row)
                    raise ValueError("observation has no users (B = 0): a policy decides and learns for B >= 1 users")
                return obs
            if obs.on_device:
                _check_device_structure(obs)
                _check_device_values(obs)
                return cls(obs.user_features, obs.item_features, obs.item_ids, obs.mask, obs.user_ids)._mark_checked()
            return cls._checked_from(obs.user_features, obs.item_features, obs.item_ids, obs.mask, obs.user_ids,
                                     single_allowed=False)
        if isinstance(obs, Mapping):
            return cls.from_dict(obs)
        raise TypeError(
            f"expected a banditrec Observation or a Gymnasium observation dict, got {type(obs).__name__}"
        )


def _boolean(value: Any, name: str) -> np.ndarray:
    """An observation's mask as bool; numbers only when every one is 0 or 1 (0.5 is no answer)."""
    array = np.asarray(value)
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind in "iuf" and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ValueError(f"observation {name} must be boolean (or 0/1), got dtype {array.dtype} with values like {array.ravel()[:3]}")


def _check_device_values(obs: Observation) -> None:
    """Finite features and valid ids in a batch of tensors, in one read from its device (a batch
    built by hand is checked once; an environment's arrives checked)."""
    fine = torch.stack([
        torch.isfinite(obs.user_features).all(), torch.isfinite(obs.item_features).all(),
        (obs.item_ids >= 0).all(), (obs.user_ids >= -1).all(),
    ]).tolist()
    if all(fine):
        return
    problems = (
        "user_features contains NaN or inf values", "item_features contains NaN or inf values",
        f"item_ids must be >= 0 (catalogue ids), got {int(obs.item_ids.min())}",
        f"user_ids must be >= 0, or -1 for anonymous users, got {int(obs.user_ids.min())}",
    )
    raise ValueError("observation " + "; ".join(p for p, ok in zip(problems, fine, strict=True) if not ok))


def _check_device_structure(obs: Observation) -> None:
    """Shapes and dtypes of a batch of tensors (metadata only: values would need a device read)."""
    fields = ("user_features", "item_features", "item_ids", "mask", "user_ids")
    devices = set()
    for name in fields:
        value = getattr(obs, name)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"observation {name} is {type(value).__name__} while item_ids is a torch tensor; "
                             "a batch on a device has every field as a tensor")
        devices.add(value.device)
    if len(devices) > 1:
        raise ValueError(f"observation fields are on different devices: {sorted(map(str, devices))}")
    ids = obs.item_ids
    if ids.ndim != 2 or min(ids.shape) < 1:
        raise ValueError(f"observation item_ids must have shape (B, K) with B, K >= 1, got {tuple(ids.shape)}")
    B, K = ids.shape
    checks = (
        ("user_features", obs.user_features.ndim == 2 and obs.user_features.shape[0] == B, f"({B}, d_u)"),
        ("item_features", obs.item_features.ndim == 3 and tuple(obs.item_features.shape[:2]) == (B, K),
         f"({B}, {K}, d_i)"),
        ("mask", tuple(obs.mask.shape) == (B, K), f"({B}, {K})"),
        ("user_ids", tuple(obs.user_ids.shape) == (B,), f"({B},)"),
    )
    for name, ok, shape in checks:
        if not ok:
            raise ValueError(f"observation {name} must have shape {shape} to match item_ids, "
                             f"got {tuple(getattr(obs, name).shape)}")
    for name in ("user_features", "item_features"):
        if not getattr(obs, name).is_floating_point():
            raise ValueError(f"observation {name} must be floating point, got {getattr(obs, name).dtype}")
    for name in ("item_ids", "user_ids"):
        if getattr(obs, name).dtype != torch.int64:
            raise ValueError(f"observation {name} must be int64, got {getattr(obs, name).dtype}")
    if obs.mask.dtype != torch.bool:
        raise ValueError(f"observation mask must be bool, got {obs.mask.dtype}")


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
