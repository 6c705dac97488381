"""Gymnasium adapters: any :class:`UserSimulator` as a native ``VectorEnv`` (B users) or an ``Env`` (one).

Both adapters share one :class:`BanditCore`, which owns the random stream, validates actions and
the simulator's answers, and computes what exact pseudo-regret needs. The vector env simulates all
B users with array operations; the single env is the B = 1 special case.

``info`` after ``step`` holds, for the decision just made, ``expected_reward`` (of the chosen
candidate), ``best_expected_reward`` (among valid candidates) and ``regret``; and for the
observation returned, ``expected_rewards`` of every candidate (NaN on masked slots).

With a simulator on a torch device (``simulator.device``, e.g. a
:class:`~banditrec.environments.DeviceWorld`) the same step runs on tensors there: actions may be
tensors on that device (or anything array-like), and observations, rewards and ``info`` are
tensors on it. Checking the actions costs one host read per step; validating the simulator's
answers (``validate=True``) checks host copies of them.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from banditrec._util import is_int
from banditrec.environments.checks import (
    check_device_answer,
    check_expected_rewards,
    check_observation,
    check_rewards,
    check_seeding,
    check_simulator_sizes,
    host_copy,
)
from banditrec.environments.simulator import Observation, UserSimulator, to_numpy

__all__ = ["BanditCore", "BanditEnv", "BanditVectorEnv", "InvalidActionError", "observation_space"]


class InvalidActionError(ValueError):
    """An action that is not one of the user's valid candidates."""


def observation_space(sim: UserSimulator) -> spaces.Dict:
    """The Gymnasium ``Dict`` space of one user's observation."""
    K = sim.n_candidates
    n_users = sim.n_users if sim.n_users is not None else 0
    return spaces.Dict(
        {
            "user": spaces.Box(-np.inf, np.inf, shape=(sim.user_dim,), dtype=np.float64),
            "items": spaces.Box(-np.inf, np.inf, shape=(K, sim.item_dim), dtype=np.float64),
            "item_ids": spaces.Box(0, sim.n_items - 1, shape=(K,), dtype=np.int64),
            "mask": spaces.MultiBinary(K),
            "user_id": spaces.Box(-1, max(n_users - 1, 0), shape=(), dtype=np.int64),
        }
    )


def _host_expected(obs: Observation, expected: Any) -> np.ndarray:
    """Every candidate's expected reward as numpy, NaN on masked slots (Gymnasium's ``info``)."""
    return np.where(to_numpy(obs.mask), to_numpy(expected), np.nan)


def _copy(values: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    return values.clone() if isinstance(values, torch.Tensor) else values.copy()


#: the dtypes a batch on a device has (``Observation.coerce``); floating features keep theirs
_DEVICE_DTYPES = {"item_ids": torch.int64, "user_ids": torch.int64, "mask": torch.bool}


def _device_dtype(name: str, value: torch.Tensor) -> torch.Tensor:
    if name in _DEVICE_DTYPES:
        return value.to(_DEVICE_DTYPES[name])
    return value if value.is_floating_point() else value.to(torch.get_default_dtype())


#: tensor dtypes the device check takes as they are (the others go through the host check)
_DEVICE_ACTION_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                         torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.bool)


def _action_array(actions: Any) -> np.ndarray:
    """``actions`` as a numpy array, or :class:`InvalidActionError` for what is not one (a ragged
    list, None inside, a tensor that requires grad is taken as its values)."""
    try:
        arr = actions.detach().cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
    except (ValueError, TypeError) as e:  # bfloat16 has no numpy dtype: TypeError
        raise InvalidActionError(f"actions must be an array of integer candidate indices, one per user: {e}") from None
    if arr.dtype.kind not in "iu" and not (
        arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    ):
        raise InvalidActionError(f"actions must be integer candidate indices, got dtype {arr.dtype}: {arr.ravel()[:5]}")
    return arr


class BanditCore:
    """The simulation step shared by both adapters.

    Parameters
    ----------
    simulator : UserSimulator
    batch_size : int
        B, users per step.
    max_episode_steps : int or None
        Steps after which ``truncated`` becomes True; None for an endless stream.
    validate : bool
        Check every simulator answer (shapes, NaN, probabilities). On for plug-in simulators;
        built-in worlds, which the test-suite checks, may turn it off for speed.
    """

    def __init__(
        self,
        simulator: UserSimulator,
        batch_size: int,
        max_episode_steps: int | None = None,
        validate: bool = True,
    ) -> None:
        if not isinstance(simulator, UserSimulator):
            raise TypeError(
                f"simulator must implement banditrec.environments.UserSimulator, got {type(simulator).__name__}"
            )
        if not is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size (num_envs) must be a positive int, got {batch_size!r}")
        if max_episode_steps is not None and (not is_int(max_episode_steps) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}")
        if simulator.reward_type not in ("binary", "real"):
            raise ValueError(f"{type(simulator).__name__}.reward_type must be 'binary' or 'real', got {simulator.reward_type!r}")
        check_simulator_sizes(simulator)
        self.simulator = simulator
        self.batch_size = int(batch_size)
        self.max_episode_steps = max_episode_steps
        self.validate = validate
        self._binary = simulator.reward_type == "binary"
        self.rng: np.random.Generator | None = None
        self.obs: Observation | None = None
        self.expected: np.ndarray | None = None
        self.steps = 0
        self._seeding_checked = False
        self.device: torch.device | None = getattr(simulator, "device", None)
        if self.device is None:
            self._rows = np.arange(self.batch_size)
        else:
            self._rows = torch.arange(self.batch_size, device=self.device)

    def reset(self, rng: np.random.Generator) -> tuple[Observation, np.ndarray]:
        self.rng = rng
        self.steps = 0
        self.simulator.reset(rng)
        arrived = self._arrive()
        if self.validate and not self._seeding_checked:  # once the first batch has passed the checks
            self._seeding_checked = True
            check_seeding(self.simulator, self.batch_size)
        return arrived

    def _arrive(self) -> tuple[Observation, np.ndarray]:
        sim = self.simulator
        obs = sim.sample_users(self.batch_size, self.rng)
        if self.validate and self.device is not None:
            if not isinstance(obs, Observation):
                obs = check_observation(sim, obs, self.batch_size)  # the error for a non-Observation
            check_device_answer(sim, "sample_users", {f.name: getattr(obs, f.name) for f in fields(obs)})
            # the users are checked before expected_rewards sees them, so that a bad id or size is
            # named here rather than failing inside the simulator's own code (a device assert on CUDA)
            (obs_host,) = host_copy(obs)
            obs_host = check_observation(sim, obs_host, self.batch_size)
            # owned copies (see checks._owned), in the dtypes the device contract has: int64 ids, a
            # bool mask and floating features (int32 ids pass the host check, which converts them)
            obs = Observation(**{f.name: _device_dtype(f.name, getattr(obs, f.name)).clone() for f in fields(obs)})
            expected = sim.expected_rewards(obs)
            check_device_answer(sim, "expected_rewards", {"expected rewards": expected})
            check_expected_rewards(sim, to_numpy(expected), obs_host, self._binary)
            expected = expected.clone()
            obs = obs._mark_checked()  # its host copy passed check_observation
            self.obs, self.expected = obs, expected.to(torch.float64)
            return obs, self.expected
        if self.validate:
            obs = check_observation(sim, obs, self.batch_size)
        elif isinstance(obs, Observation):
            # validate=False vouches for the simulator (the built-in worlds, which the test-suite
            # checks): policies take its batches as checked rather than checking every step.
            obs._mark_checked()
        expected = sim.expected_rewards(obs)
        if self.validate:
            expected = check_expected_rewards(sim, expected, obs, self._binary)
        self.obs, self.expected = obs, expected
        return obs, expected

    def check_actions(self, actions: Any) -> np.ndarray | torch.Tensor:
        """Actions as an int64 array of shape (B,), each on a valid candidate, or a clear error
        (a tensor on the simulator's device when it has one)."""
        if self.device is not None:
            return self._check_device_actions(actions)
        arr = self._host_actions(actions)
        on_masked = ~self.obs.mask[self._rows, arr]
        if on_masked.any():
            i = int(np.flatnonzero(on_masked)[0])
            raise InvalidActionError(f"action {int(arr[i])} for user {i} is a masked (unavailable) candidate")
        return arr

    def _host_actions(self, actions: Any) -> np.ndarray:
        """Shape, dtype and range of ``actions`` checked on the host: int64, shape (B,)."""
        arr = _action_array(actions)
        if arr.shape != (self.batch_size,):
            if arr.size == self.batch_size and arr.ndim <= 1:
                arr = arr.reshape(self.batch_size)
            else:
                raise InvalidActionError(f"expected {self.batch_size} actions (one per user), got shape {arr.shape}")
        K = self.simulator.n_candidates
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= K:  # before the cast to int64, which would wrap 1e20 to -2**63 in the message
            bad = (arr < 0) | (arr >= K)
            i = int(np.flatnonzero(bad)[0])
            raise InvalidActionError(f"action {int(arr[i])} for user {i} is outside the candidates [0, {K})")
        return arr.astype(np.int64, copy=False)

    def _check_device_actions(self, actions: Any) -> torch.Tensor:
        """:meth:`check_actions` on the device: shape and dtype from metadata, one host read for
        the values (range and mask)."""
        if not isinstance(actions, torch.Tensor) or actions.dtype not in _DEVICE_ACTION_DTYPES:
            # lists, numpy arrays and unusual tensor dtypes (uint64, which torch cannot compare):
            # shape, dtype and range on the host, then the mask on the device
            actions = torch.as_tensor(self._host_actions(actions), device=self.device)
        t = actions
        B, K = self.batch_size, self.simulator.n_candidates
        if tuple(t.shape) != (B,):
            if t.numel() == B and t.ndim <= 1:
                t = t.reshape(B)
            else:
                raise InvalidActionError(f"expected {B} actions (one per user), got shape {tuple(t.shape)}")
        if t.dtype == torch.bool or t.is_complex():
            raise InvalidActionError(f"actions must be integer candidate indices, got dtype {t.dtype}")
        if t.is_floating_point() and not bool((torch.isfinite(t) & (t == t.round())).all()):
            raise InvalidActionError(f"actions must be integer candidate indices, got dtype {t.dtype}: {t[:5].tolist()}")
        t = t.to(device=self.device)
        in_range = (t >= 0) & (t < K)  # before the cast to int64, which would wrap 1e20 to -2**63
        valid = in_range & self.obs.mask[self._rows, t.clamp(0, K - 1).to(torch.int64)]
        if not bool(valid.all()):  # the one read per step
            i = int(torch.nonzero(~valid)[0, 0])
            if not bool(in_range[i]):
                raise InvalidActionError(f"action {int(t[i])} for user {i} is outside the candidates [0, {K})")
            raise InvalidActionError(f"action {int(t[i])} for user {i} is a masked (unavailable) candidate")
        return t.to(torch.int64)

    def step(self, actions: Any) -> tuple[Observation, np.ndarray, bool, dict[str, np.ndarray]]:
        if self.obs is None:
            raise RuntimeError("call reset() before step()")
        actions = self.check_actions(actions)
        sim, obs, expected = self.simulator, self.obs, self.expected
        where = np.where if self.device is None else torch.where
        chosen = expected[self._rows, actions]
        best = where(obs.mask, expected, -np.inf).max(axis=1)
        if self.device is not None:
            best = best.values
        if self.validate:
            # a user simulator gets copies of what the env reports from: one that changes its
            # arguments in place (`expected += noise`) must not change the regret or the actions
            rewards = sim.sample_rewards(obs, _copy(actions), _copy(chosen), self.rng)
            if self.device is not None:
                check_device_answer(sim, "sample_rewards", {"rewards": rewards})
                check_rewards(sim, host_copy(obs, rewards)[1], self.batch_size, self._binary)
                rewards = rewards.to(dtype=torch.float64, copy=True)  # a refilled buffer stays the simulator's
            else:
                rewards = check_rewards(sim, rewards, self.batch_size, self._binary)
            sim.update(obs, _copy(actions), _copy(rewards))
        else:
            rewards = sim.sample_rewards(obs, actions, chosen, self.rng)
            sim.update(obs, actions, rewards)
        self.steps += 1
        truncated = self.max_episode_steps is not None and self.steps >= self.max_episode_steps
        next_obs, next_expected = self._arrive()
        info = {
            "expected_reward": chosen,
            "best_expected_reward": best,
            "regret": best - chosen,
            "expected_rewards": where(next_obs.mask, next_expected, np.nan),
        }
        return next_obs, rewards, truncated, info


class BanditVectorEnv(VectorEnv):
    """B users per step from one simulator, as a native Gymnasium vector environment.

    Parameters
    ----------
    simulator : UserSimulator
    num_envs : int
        B, users simulated per step.
    max_episode_steps : int or None
        Steps per episode; the stream is endless when None.
    validate : bool
        Check every simulator answer at the boundary.

    Notes
    -----
    ``terminated`` is always False. With a horizon, all B users truncate together; following
    Gymnasium's next-step autoreset, the ``step`` after truncation resets and returns zero reward.
    For speed, ``step_batch`` returns the :class:`Observation` instead of the dict; it never
    resets (``truncated`` stays True from the horizon on: call :meth:`reset`).

    A step's ``info``, per user: ``expected_reward``, ``best_expected_reward`` and ``regret`` of
    the action just taken; ``expected_rewards`` (B, K), every candidate's expected reward for
    the users the step returns (the next ones), NaN on masked slots.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        simulator: UserSimulator,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        validate: bool = True,
    ) -> None:
        self.core = BanditCore(simulator, num_envs, max_episode_steps, validate)
        self.simulator = simulator
        self.num_envs = self.core.batch_size
        self.single_observation_space = observation_space(simulator)
        self.single_action_space = spaces.Discrete(simulator.n_candidates)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = spaces.MultiDiscrete(np.full(self.num_envs, simulator.n_candidates))
        self._autoreset = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None or self._np_random is None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        obs, expected = self.core.reset(self._np_random)
        self._autoreset = False
        return obs.to_dict(), {"expected_rewards": _host_expected(obs, expected)}

    def step_batch(self, actions: Any) -> tuple[Observation, np.ndarray, bool, dict[str, np.ndarray]]:
        """One step without Gymnasium packaging: (next observation, rewards, truncated, info)."""
        return self.core.step(actions)

    def step(self, actions: Any):
        B = self.num_envs
        terminated = np.zeros(B, dtype=bool)
        if self._autoreset:
            obs_dict, info = self.reset()
            return obs_dict, np.zeros(B), terminated, np.zeros(B, dtype=bool), info
        obs, rewards, truncated, info = self.core.step(actions)
        self._autoreset = truncated
        # The Gymnasium API speaks numpy, also for a device world (step_batch keeps its tensors).
        info = {k: to_numpy(v) for k, v in info.items()}
        return obs.to_dict(), to_numpy(rewards), terminated, np.full(B, truncated), info

    @property
    def observation(self) -> Observation | None:
        """The current batch of users as an :class:`Observation`."""
        return self.core.obs


class BanditEnv(gym.Env):
    """One user per step: the B = 1 case, for code written against the single-agent API."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        simulator: UserSimulator,
        max_episode_steps: int | None = None,
        validate: bool = True,
    ) -> None:
        self.core = BanditCore(simulator, 1, max_episode_steps, validate)
        self.simulator = simulator
        self.observation_space = observation_space(simulator)
        self.action_space = spaces.Discrete(simulator.n_candidates)

    @staticmethod
    def _single(obs: Observation) -> dict[str, np.ndarray]:
        d = obs.to_dict()
        return {k: (v[0] if k != "user_id" else np.asarray(v[0], dtype=np.int64)) for k, v in d.items()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, expected = self.core.reset(self.np_random)
        return self._single(obs), {"expected_rewards": _host_expected(obs, expected)[0]}

    def step(self, action: Any):
        obs, rewards, truncated, info = self.core.step(np.asarray(action).reshape(-1))
        info = {k: to_numpy(v)[0] for k, v in info.items()}
        return self._single(obs), float(rewards[0]), False, bool(truncated), info

    @property
    def observation(self) -> Observation | None:
        return self.core.obs
