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


def _register_builtins() -> None:
    import gymnasium as gym

    import banditrec

    for env_id, path in banditrec._BUILTIN_ENVS.items():
        # `import banditrec` registered a stand-in that does not load the worlds; this is the real
        # registration, which registered_ids and the runner recognise. A user's own env under the
        # same id is kept.
        if env_id not in gym.registry or banditrec._is_stand_in(gym.registry[env_id]):
            register_simulator(env_id, path, validate=False, override=True)


_register_builtins()
