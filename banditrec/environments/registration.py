"""Turn a simulator into registered Gymnasium ids, and make environments from ids.

``register_simulator`` is the plug-in point: give it a :class:`UserSimulator` class (or a factory,
or an ``"package.module:ClassName"`` path) and the id works with ``gymnasium.make``,
``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``, the runner and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym

from banditrec._util import load_object
from banditrec.environments.env import BanditEnv, BanditVectorEnv
from banditrec.environments.simulator import UserSimulator

__all__ = ["NAMESPACE", "make_simulator", "make_vector_env", "register_simulator", "registered_ids"]

NAMESPACE = "banditrec"
SimulatorFactory = Callable[..., UserSimulator]


def make_simulator(simulator: str | SimulatorFactory | UserSimulator, **kwargs: Any) -> UserSimulator:
    """Build a simulator from a class, a factory, an import path, or return an instance as is."""
    if isinstance(simulator, UserSimulator):
        if kwargs:
            raise TypeError(f"parameters {sorted(kwargs)} given for an already built simulator")
        return simulator
    factory = load_object(simulator) if isinstance(simulator, str) else simulator
    if not callable(factory):
        raise TypeError(f"simulator must be a UserSimulator class or factory, got {factory!r}")
    try:
        sim = factory(**kwargs)
    except TypeError as exc:
        name = getattr(factory, "__name__", repr(factory))
        raise TypeError(f"cannot build simulator {name} with parameters {kwargs}: {exc}") from exc
    if not isinstance(sim, UserSimulator):
        raise TypeError(
            f"{getattr(factory, '__name__', factory)!r} built a {type(sim).__name__}, not a banditrec UserSimulator"
        )
    return sim


def _check_render_mode(render_mode: Any) -> None:
    """Gymnasium passes ``render_mode`` to every entry point (template code passes None): a
    simulator must not receive it, and a world has nothing to draw."""
    if render_mode is not None:
        raise ValueError(f"banditrec environments do not render: render_mode must be None, got {render_mode!r}")


def _make_env(simulator, validate, max_episode_steps=None, render_mode=None, **kwargs) -> BanditEnv:
    _check_render_mode(render_mode)
    return BanditEnv(make_simulator(simulator, **kwargs), max_episode_steps=max_episode_steps, validate=validate)


def _make_vector_env(
    simulator, validate, num_envs=1, max_episode_steps=None, render_mode=None, **kwargs
) -> BanditVectorEnv:
    _check_render_mode(render_mode)
    return BanditVectorEnv(
        make_simulator(simulator, **kwargs), num_envs=num_envs, max_episode_steps=max_episode_steps, validate=validate
    )


def register_simulator(
    env_id: str,
    simulator: str | SimulatorFactory,
    *,
    validate: bool = True,
    override: bool = False,
    **default_kwargs: Any,
) -> str:
    """Register ``simulator`` under ``env_id`` for both ``gymnasium.make`` and ``gymnasium.make_vec``.

    Parameters
    ----------
    env_id : str
        A Gymnasium id such as ``"mylab/Shop-v0"``.
    simulator : UserSimulator subclass, factory or ``"package.module:ClassName"``
        Called with the environment's keyword arguments to build the world.
    validate : bool
        Check the simulator's answers at every step (keep True for your own simulators).
    override : bool
        Replace an existing registration of the same id.
    **default_kwargs
        Default parameters of the simulator; ``make``/``make_vec`` keyword arguments override them.
    """
    if env_id in gym.registry and not override:
        raise ValueError(f"environment id {env_id!r} is already registered; pass override=True to replace it")
    if env_id in gym.registry:
        del gym.registry[env_id]
    gym.register(
        id=env_id,
        entry_point=partial(_make_env, simulator, validate),
        vector_entry_point=partial(_make_vector_env, simulator, validate),
        kwargs=dict(default_kwargs),
        disable_env_checker=False,
    )
    return env_id


def registered_ids(namespace: str | None = NAMESPACE) -> list[str]:
    """Ids whose vector entry point is a banditrec simulator (all of them, or one namespace)."""
    ids = []
    for env_id, spec in gym.registry.items():
        vep = spec.vector_entry_point
        if isinstance(vep, partial) and vep.func is _make_vector_env and namespace in (None, spec.namespace):
            ids.append(env_id)
    return sorted(ids)


def make_vector_env(env_id: str, num_envs: int = 1, **kwargs: Any) -> BanditVectorEnv:
    """``gymnasium.make_vec`` with the native vector entry point, with a clear error for unknown ids."""
    if env_id not in gym.registry:
        known = ", ".join(registered_ids(None)) or "(none)"
        raise ValueError(f"unknown environment id {env_id!r}; registered banditrec environments: {known}")
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    if not isinstance(env, BanditVectorEnv):
        raise TypeError(f"{env_id!r} is not a banditrec environment (got {type(env).__name__})")
    return env
