"""Boundary checks on what a user simulator returns.

A plug-in simulator is user code: its mistakes must surface as a :class:`SimulatorError` that
names the method and the problem, not as a broadcasting error three calls later.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from banditrec._util import is_int
from banditrec.environments.simulator import Observation, UserSimulator, to_numpy

__all__ = [
    "SimulatorError",
    "SimulatorWarning",
    "check_device_answer",
    "check_expected_rewards",
    "check_observation",
    "check_rewards",
    "check_seeding",
]


class SimulatorError(ValueError):
    """A user simulator returned something that breaks the contract."""


class SimulatorWarning(UserWarning):
    """A user simulator behaves in a way that makes results misleading rather than wrong-shaped."""


_PROBE_SEED = 20_181_031  # any fixed seed: the probe must not draw from the environment's stream


def check_seeding(sim: UserSimulator, batch_size: int) -> None:
    """Warn when ``sim`` does not draw its randomness from the rng it is given.

    Three copies of ``sim`` play a first step (reset, users, expected rewards of the valid
    candidates, and rewards of the first valid candidates, drawn :data:`_PROBE_DRAWS` times over
    so that a few clicks cannot agree by chance): two under one seed, one under another.
    Different answers under one seed mean a stream outside the rng (``np.random``, ``random``,
    torch's global generator): runs are not reproducible. The same answers under two seeds mean
    the rng is ignored (say, a generator of its own seeded once): every seed of an experiment
    replays the same users and clicks, and the confidence bands over seeds are too narrow. A simulator that cannot be
    copied, holds more than :data:`PROBE_MAX_BYTES` in arrays, or fails in the probe (the run
    itself then reports it), is not probed.
    """
    if _approx_nbytes(sim) > PROBE_MAX_BYTES:
        return
    try:  # one copy at a time: at most one extra simulator in memory
        first, again, other = (
            _first_step(copy.deepcopy(sim), seed, batch_size) for seed in (_PROBE_SEED, _PROBE_SEED, _PROBE_SEED + 1)
        )
    except Exception:  # noqa: BLE001 - a probe, never the cause of a failure
        return

    def same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
        return all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))

    name = type(sim).__name__
    if not same(first, again):
        warnings.warn(
            f"{name} gave different users or rewards for the same seed: it draws randomness from somewhere other "
            "than the rng it is given (np.random, random, torch's global generator), so runs cannot be reproduced; "
            "draw only from the rng passed to reset, sample_users and sample_rewards",
            SimulatorWarning,
            stacklevel=4,
        )
    elif same(first, other):
        warnings.warn(
            f"{name} gave the same users and rewards for two different seeds: it ignores the rng it is given (a "
            "generator of its own seeded once?), so every seed of an experiment replays the same numbers and the "
            "confidence bands over seeds are too narrow; draw from the rng passed to reset, sample_users and "
            "sample_rewards",
            SimulatorWarning,
            stacklevel=4,
        )


#: A simulator holding more than this in arrays is not probed by :func:`check_seeding` (its
#: copy would cost as much memory again).
PROBE_MAX_BYTES = 256 << 20


def _approx_nbytes(sim: UserSimulator) -> int:
    """Bytes of the arrays, tensors and tables among ``sim``'s attributes (not followed deeper)."""
    total = 0
    for value in vars(sim).values() if hasattr(sim, "__dict__") else ():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif isinstance(value, torch.Tensor):
            total += value.element_size() * value.nelement()
        elif isinstance(value, (pd.DataFrame, pd.Series)):
            total += int(np.sum(value.memory_usage(deep=False)))
    return total


#: Rewards the seeding probe draws at least (repeating ``sample_rewards`` on the same users): at
#: B = 1 one click agreed by chance about half the time, and a simulator drawing its clicks from
#: ``np.random`` went unnoticed. 32 were not enough either: with a click probability of 0.09 the
#: two copies agree on a draw with probability 0.83, on all 32 with 0.3% (a test that failed so).
#: 128: 1e-10 there (at p = 0.01 still 8%: rare clicks carry little evidence either way).
_PROBE_DRAWS = 128


def _first_step(sim: UserSimulator, seed: int, batch_size: int) -> tuple[np.ndarray, ...]:
    """The users, the valid candidates' expected rewards and the first valid candidates' rewards
    of a first step under ``seed``."""
    rng = np.random.default_rng(seed)
    sim.reset(rng)
    obs = sim.sample_users(batch_size, rng)
    expected = sim.expected_rewards(obs)
    host = obs.to_numpy()
    actions = host.mask.argmax(axis=1)
    # masked slots' values are arbitrary (np.empty is fine there): only valid ones must repeat
    valid_expected = np.where(host.mask, np.asarray(to_numpy(expected), dtype=np.float64), np.nan)
    chosen = to_numpy(expected)[np.arange(batch_size), actions]
    if obs.on_device:
        actions = torch.as_tensor(actions, device=obs.item_ids.device)
        chosen = expected[torch.arange(batch_size, device=expected.device), actions]
    rewards = [
        np.asarray(to_numpy(sim.sample_rewards(obs, actions, chosen, rng)), dtype=np.float64)
        for _ in range(-(-_PROBE_DRAWS // batch_size))
    ]
    fields = ("user_features", "item_features", "item_ids", "mask", "user_ids")
    return (*(np.asarray(getattr(host, f), dtype=np.float64) for f in fields), valid_expected, *rewards)


def _where(sim: UserSimulator, method: str) -> str:
    return f"{type(sim).__name__}.{method}()"


def check_simulator_sizes(sim: UserSimulator) -> None:
    """Check the four declared sizes before anything is simulated."""
    for name in ("n_candidates", "user_dim", "item_dim", "n_items"):
        value = getattr(sim, name, None)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise SimulatorError(f"{type(sim).__name__}.{name} must be an int, got {value!r}")
        if value < (1 if name in ("n_candidates", "n_items") else 0):
            raise SimulatorError(f"{type(sim).__name__}.{name} must be positive, got {value}")
    n_users = getattr(sim, "n_users", None)
    if n_users is not None and (not is_int(n_users) or n_users < 1):  # not True: a population of 1
        raise SimulatorError(f"{type(sim).__name__}.n_users must be a positive int or None, got {n_users!r}")


def _real(values: np.ndarray) -> bool:
    """Integer or floating values (a complex number is a number numpy would truncate silently)."""
    return values.dtype.kind in "iuf"


def check_observation(sim: UserSimulator, obs: object, batch_size: int) -> Observation:
    """Validate ``sim.sample_users(batch_size, rng)``'s result and return it with canonical dtypes."""
    where = _where(sim, "sample_users")
    if not isinstance(obs, Observation):
        raise SimulatorError(f"{where} must return a banditrec Observation, got {type(obs).__name__}")
    K, du, di = sim.n_candidates, sim.user_dim, sim.item_dim
    expected = {
        "user_features": (batch_size, du),
        "item_features": (batch_size, K, di),
        "item_ids": (batch_size, K),
        "mask": (batch_size, K),
        "user_ids": (batch_size,),
    }
    for field, shape in expected.items():
        value = getattr(obs, field)
        if not isinstance(value, np.ndarray):
            raise SimulatorError(f"{where} returned {field} as {type(value).__name__}, expected a numpy array")
        if value.shape != shape:
            raise SimulatorError(f"{where} returned {field} of shape {value.shape}, expected {shape}")
    for field in ("user_features", "item_features"):
        value = getattr(obs, field)
        if not _real(value):
            raise SimulatorError(f"{where} returned non-numeric or complex {field} (dtype {value.dtype})")
        if not np.all(np.isfinite(value)):
            raise SimulatorError(f"{where} returned {field} containing NaN or inf")
    for field in ("item_ids", "user_ids"):
        if not np.issubdtype(getattr(obs, field).dtype, np.integer):
            raise SimulatorError(f"{where} returned {field} with dtype {getattr(obs, field).dtype}, expected integers")
    if obs.mask.dtype != np.bool_:
        raise SimulatorError(f"{where} returned mask with dtype {obs.mask.dtype}, expected bool")
    if not obs.mask.any(axis=1).all():
        row = int(np.flatnonzero(~obs.mask.any(axis=1))[0])
        raise SimulatorError(f"{where} returned user {row} with no valid candidate (mask all False)")
    ids = obs.item_ids
    if ids.size and (ids.min() < 0 or ids.max() >= sim.n_items):
        raise SimulatorError(
            f"{where} returned item ids in [{ids.min()}, {ids.max()}], outside [0, n_items={sim.n_items})"
        )
    hi = sim.n_users - 1 if sim.n_users is not None else -1
    uids = obs.user_ids
    if uids.size and (uids.min() < -1 or uids.max() > hi):
        raise SimulatorError(
            f"{where} returned user ids in [{uids.min()}, {uids.max()}], outside [-1, {hi}] "
            f"(n_users={sim.n_users}; use -1 for anonymous users)"
        )
    return Observation(
        user_features=_owned(obs.user_features, np.float64),
        item_features=_owned(obs.item_features, np.float64),
        item_ids=_owned(ids, np.int64),
        mask=_owned(obs.mask, np.bool_),
        user_ids=_owned(obs.user_ids, np.int64),
    )._mark_checked()


def _owned(value: np.ndarray, dtype: type) -> np.ndarray:
    """``value`` as ``dtype``, copied unless it is read-only.

    A simulator may refill the same arrays at every call (a common speed trick). Policies keep
    the observation they acted on until its feedback arrives, after the world has drawn the next
    users, and logs keep it for good: without a copy they would learn from, and record, the next
    batch's features. A read-only array (a fixed catalogue) cannot be refilled through the view.
    """
    if value.flags.writeable:
        return np.array(value, dtype=dtype, copy=True)
    return value.astype(dtype, copy=False)


def check_expected_rewards(sim: UserSimulator, values: object, obs: Observation, binary: bool) -> np.ndarray:
    """Validate ``sim.expected_rewards(obs)``: shape (B, K), finite on valid slots, in [0, 1] if clicks."""
    where = _where(sim, "expected_rewards")
    values = np.asarray(values)
    shape = obs.item_ids.shape
    if values.shape != shape:
        raise SimulatorError(f"{where} returned shape {values.shape}, expected {shape}")
    if not _real(values):
        raise SimulatorError(f"{where} returned non-numeric or complex values (dtype {values.dtype})")
    valid = values[obs.mask]
    if not np.all(np.isfinite(valid)):
        raise SimulatorError(f"{where} returned NaN or inf for {int((~np.isfinite(valid)).sum())} valid candidates")
    if binary and valid.size and (valid.min() < 0 or valid.max() > 1):
        raise SimulatorError(
            f"{where} returned click probabilities outside [0, 1] (min {valid.min():.4g}, max {valid.max():.4g})"
        )
    return _owned(values, np.float64)


def check_rewards(sim: UserSimulator, rewards: object, batch_size: int, binary: bool) -> np.ndarray:
    """Validate ``sim.sample_rewards(...)``: shape (B,), finite, 0/1 if clicks."""
    where = _where(sim, "sample_rewards")
    rewards = np.asarray(rewards)
    if rewards.shape != (batch_size,):
        raise SimulatorError(f"{where} returned shape {rewards.shape}, expected ({batch_size},)")
    if not _real(rewards) and rewards.dtype != np.bool_:
        raise SimulatorError(f"{where} returned non-numeric or complex rewards (dtype {rewards.dtype})")
    # always a copy: a simulator may refill one rewards array every step, and the caller keeps each
    # step's rewards (logs, policies' buffers)
    rewards = np.array(rewards, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(rewards)):
        raise SimulatorError(f"{where} returned NaN or inf rewards for {int((~np.isfinite(rewards)).sum())} users")
    if binary and not np.all((rewards == 0) | (rewards == 1)):
        raise SimulatorError(f"{where} returned non-binary rewards for a click world: {np.unique(rewards)[:5]}")
    return rewards


def check_device_answer(sim: UserSimulator, method: str, values: dict[str, Any]) -> None:
    """A simulator with a ``device`` must answer with torch tensors on that device (the values
    themselves are then checked on a host copy by the functions above, when validating)."""
    where, device = _where(sim, method), sim.device
    for name, value in values.items():
        if not isinstance(value, torch.Tensor):
            raise SimulatorError(
                f"{where} returned {name} as {type(value).__name__}; a simulator with device={device} "
                "must return torch tensors on it"
            )
        if value.device.type != device.type or (device.index is not None and value.device.index != device.index):
            raise SimulatorError(f"{where} returned {name} on {value.device}, expected the simulator's device {device}")


def host_copy(obs: Observation, *arrays: Any) -> tuple[Any, ...]:
    """``obs`` and ``arrays`` on the host, for the value checks of a device simulator's answers."""
    return (obs.to_numpy(), *(to_numpy(a) for a in arrays))
