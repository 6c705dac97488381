"""Gymnasium environments that simulate users and items.

The plug-in point is :class:`UserSimulator` plus :func:`register_simulator`; the built-in worlds
implement the same interface and are registered under the ``banditrec/`` namespace.
"""

from banditrec.environments.checks import SimulatorError, SimulatorWarning
from banditrec.environments.device_world import DeviceWorld
from banditrec.environments.env import BanditEnv, BanditVectorEnv, InvalidActionError
from banditrec.environments.linear import LinearWorld
from banditrec.environments.nonlinear import NonlinearWorld
from banditrec.environments.registration import (
    make_simulator,
    make_vector_env,
    register_simulator,
    registered_ids,
)
from banditrec.environments.simulator import Observation, UserSimulator
from banditrec.environments.wheel import WheelWorld

__all__ = [
    "BanditEnv",
    "BanditVectorEnv",
    "DeviceWorld",
    "InvalidActionError",
    "LinearWorld",
    "LoggedDataWorld",
    "MovieLens100kWorld",
    "NonlinearWorld",
    "Observation",
    "SimulatorError",
    "SimulatorWarning",
    "UserSimulator",
    "WheelWorld",
    "make_simulator",
    "make_vector_env",
    "register_simulator",
    "registered_ids",
]

_LAZY = {  # the logged-data worlds load pandas and scipy: only when asked for
    "LoggedDataWorld": "banditrec.environments.logged",
    "MovieLens100kWorld": "banditrec.environments.movielens",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_BUILTIN = {
    "banditrec/Linear-v0": "banditrec.environments.linear:LinearWorld",
    "banditrec/Nonlinear-v0": "banditrec.environments.nonlinear:NonlinearWorld",
    "banditrec/Wheel-v0": "banditrec.environments.wheel:WheelWorld",
    "banditrec/MovieLens100k-v0": "banditrec.environments.movielens:MovieLens100kWorld",
}


def _register_builtins() -> None:
    import gymnasium as gym

    for env_id, path in _BUILTIN.items():
        if env_id not in gym.registry:
            register_simulator(env_id, path, validate=False)


_register_builtins()
