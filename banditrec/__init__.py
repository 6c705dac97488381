"""banditrec: simulate and compare contextual-bandit recommenders."""

from __future__ import annotations

import importlib
from functools import partial
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "environments"]

#: the built-in worlds: Gymnasium id -> simulator, registered by ``import banditrec``
_BUILTIN_ENVS = {
    "banditrec/Linear-v0": "banditrec.environments.linear:LinearWorld",
    "banditrec/Nonlinear-v0": "banditrec.environments.nonlinear:NonlinearWorld",
    "banditrec/Wheel-v0": "banditrec.environments.wheel:WheelWorld",
    "banditrec/MovieLens100k-v0": "banditrec.environments.movielens:MovieLens100kWorld",
}


def __getattr__(name: str) -> Any:
    # banditrec.environments loads torch (and the `banditrec` command's help must not wait for
    # it): the subpackage is imported when first used, as `import banditrec.environments` does.
    if name == "environments":
        return importlib.import_module("banditrec.environments")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_builtin(env_id: str, **kwargs: Any) -> Any:
    """Stand-in ``entry_point`` of a built-in id until ``banditrec.environments`` is imported:
    importing it replaces the stand-in registration with the real one, which makes the env."""
    import gymnasium as gym

    importlib.import_module("banditrec.environments")
    return gym.registry[env_id].entry_point(**kwargs)


def _make_builtin_vector(env_id: str, **kwargs: Any) -> Any:
    """Stand-in ``vector_entry_point`` of a built-in id (see :func:`_make_builtin`)."""
    import gymnasium as gym

    importlib.import_module("banditrec.environments")
    return gym.registry[env_id].vector_entry_point(**kwargs)


def _is_stand_in(spec: Any) -> bool:
    """Whether a Gymnasium spec is the stand-in this module registered (not a user's own env)."""
    entry = spec.vector_entry_point
    return isinstance(entry, partial) and entry.func is _make_builtin_vector


def _register_builtins() -> None:
    # The real registration (banditrec.environments.registration) refers to the env classes, which
    # import torch; these stand-ins only name the ids, so that `import banditrec` is enough for
    # gymnasium.make("banditrec/...") without loading torch, pandas or scipy.
    import gymnasium as gym

    for env_id in _BUILTIN_ENVS:
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=partial(_make_builtin, env_id),
                vector_entry_point=partial(_make_builtin_vector, env_id),
                disable_env_checker=False,
            )


_register_builtins()
