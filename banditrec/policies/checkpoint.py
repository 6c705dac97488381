"""Save and restore a policy's complete learned state, so a stopped run resumes bit for bit.

A checkpoint holds everything that changes while a policy plays: the estimator's statistics
(linear sufficient statistics, per-item counts, or network weights, optimizer and replay buffer
for neural estimators), the decision counter and the random generator's state. Hyperparameters
are not restored: rebuild the policy with the same factory and arguments, then load. The linear
and neural estimators record those that shape their statistics (a ridge's form, features,
intercept and lam) and refuse, naming them, a policy built with other values; per-item counts
mean the same under any context-free policy's settings.

Files are written with ``torch.save`` and read with ``torch.load(weights_only=True)``, which
refuses to execute arbitrary pickled code; numpy arrays travel as tensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from banditrec.models.checkpoint import MODEL_FORMAT, read_checkpoint, write_checkpoint
from banditrec.policies.base import Policy

__all__ = ["load_policy", "load_policy_state", "policy_state", "save_policy"]

_FORMAT = 1


def _learned(obj: Any) -> dict[str, Any]:
    """An object's learned state: its ``state_dict()`` if it has one, else attributes ending in ``_``."""
    if callable(getattr(obj, "state_dict", None)):
        return {"__state_dict__": obj.state_dict()}
    return {k: v for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("__")}


def _restore(obj: Any, state: dict[str, Any]) -> None:
    if "__state_dict__" in state:
        obj.load_state_dict(state["__state_dict__"])
        return
    for k, v in state.items():
        setattr(obj, k, v)


def policy_state(policy: Policy) -> dict[str, Any]:
    """The policy's learned state as a nested dict (arrays, scalars, generator state)."""
    if not isinstance(policy, Policy):
        raise TypeError(f"expected a banditrec Policy, got {type(policy).__name__}")
    state: dict[str, Any] = {
        "format": _FORMAT,
        "class": type(policy).__name__,
        "name": getattr(policy, "name", type(policy).__name__),
        "rng": policy.rng.bit_generator.state,
        "n_decisions_": policy.n_decisions_,
    }
    if hasattr(policy, "_inspection_rng"):  # explain()/action_distribution()'s own stream (BanditPolicy)
        inspection = policy._inspection_rng
        state["inspection"] = {
            "rng": None if inspection is None else inspection.bit_generator.state,
            "generator": policy._inspection_generator_state,
        }
    estimator = getattr(policy, "estimator", None)
    if estimator is not None:
        state["estimator_class"] = type(estimator).__name__
        state["estimator"] = _learned(estimator)
    own = _own_learned(policy)
    if own:  # a user's Policy subclass keeps what it learns on itself (the built-in ones: none)
        state["policy"] = own
    return state


def _own_learned(policy: Policy) -> dict[str, Any]:
    """A policy's own learned state: its ``state_dict()`` if it defines one, else its attributes
    ending in ``_`` (the convention :meth:`Policy.get_params` documents) but the decision counter;
    each must be arrays, tensors, numbers, strings or containers of them (what a checkpoint read
    with ``weights_only=True`` holds)."""
    if callable(getattr(policy, "state_dict", None)):
        own = {"__state_dict__": policy.state_dict()}
    else:
        own = {k: v for k, v in vars(policy).items() if k.endswith("_") and not k.startswith("_") and k != "n_decisions_"}
    for key, value in own.items():
        bad = _unsaveable(value)
        if bad is not None:
            raise TypeError(
                f"cannot checkpoint {type(policy).__name__}.{key}: it holds a {bad}; a checkpoint keeps arrays, "
                "tensors, numbers, strings and lists/tuples/dicts of them (give the policy state_dict() and "
                "load_state_dict() to save something else)"
            )
    return own


def _unsaveable(value: Any) -> str | None:
    """The type name of the first thing in ``value`` a checkpoint cannot hold, or None."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.ndarray, np.generic, torch.Tensor)):
        return None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        return type(value).__name__
    return next((bad for bad in map(_unsaveable, items) if bad is not None), None)


def load_policy_state(policy: Policy, state: dict[str, Any]) -> Policy:
    """Restore ``state`` (from :func:`policy_state`) into an identically configured policy."""
    try:
        return _load_policy_state(policy, state)
    except KeyError as exc:  # torch reads such a file fine; a bare KeyError would not say what is wrong
        raise ValueError(
            f"the checkpoint lacks the entry {exc.args[0]!r} (damaged, or written by something else)"
        ) from exc


def _load_policy_state(policy: Policy, state: dict[str, Any]) -> Policy:
    if state.get("format") == MODEL_FORMAT:
        raise ValueError(
            "this is a model checkpoint (written by save_model), not a policy checkpoint; "
            "load it with banditrec.models.load_model"
        )
    if state.get("format") != _FORMAT:
        raise ValueError(f"unsupported policy checkpoint format {state.get('format')!r}")
    expected = (type(policy).__name__, getattr(policy, "name", type(policy).__name__))
    if (state["class"], state["name"]) != expected:
        raise ValueError(f"checkpoint is of policy {state['class']}/{state['name']}, not {expected[0]}/{expected[1]}")
    estimator = getattr(policy, "estimator", None)
    if estimator is not None:
        if state.get("estimator_class") != type(estimator).__name__:
            raise ValueError(
                f"checkpoint holds a {state.get('estimator_class')} estimator, the policy has {type(estimator).__name__}"
            )
        saved = state["estimator"]
        try:
            _restore(estimator, saved)
        except KeyError as exc:  # raised inside the estimator's load_state_dict: say it is the file's fault
            raise ValueError(
                f"the checkpoint's estimator state lacks the entry {exc.args[0]!r} "
                "(damaged, or written by something else)"
            ) from exc
    own = state.get("policy")
    if own is not None:
        if "__state_dict__" in own:
            if not callable(getattr(policy, "load_state_dict", None)):
                raise ValueError(f"the checkpoint holds a state_dict() of {state['class']}, and this policy has no load_state_dict()")
            policy.load_state_dict(own["__state_dict__"])
        else:
            for key, value in own.items():
                setattr(policy, key, value)
    policy.rng.bit_generator.state = state["rng"]
    policy.n_decisions_ = int(state["n_decisions_"])
    inspection = state.get("inspection")  # absent from checkpoints written before it was saved
    if inspection is not None and hasattr(policy, "_inspection_rng"):
        rng = None
        if inspection["rng"] is not None:
            rng = np.random.default_rng()
            rng.bit_generator.state = inspection["rng"]
        policy._inspection_rng, policy._inspection_generator_state = rng, inspection["generator"]
    return policy


def _to_torch(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj)), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


def _from_torch(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return obj["__ndarray__"].numpy().astype(obj["dtype"], copy=True)
        return {k: _from_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_from_torch(v) for v in obj)
    return obj


def save_policy(policy: Policy, path: str | os.PathLike) -> Path:
    """Write the policy's learned state to ``path`` (atomically), creating its folder if needed
    (as :func:`~banditrec.models.save_model` does)."""
    return write_checkpoint(_to_torch(policy_state(policy)), Path(path))


def load_policy(policy: Policy, path: str | os.PathLike) -> Policy:
    """Load a checkpoint written by :func:`save_policy` into ``policy`` (same factory and arguments)."""
    if isinstance(path, Policy) and not isinstance(policy, Policy):
        raise TypeError("load_policy takes (policy, path): the arguments are swapped")
    if not isinstance(policy, Policy):
        raise TypeError(
            f"load_policy needs a Policy built with the same factory and arguments as the saved one, got "
            f"{type(policy).__name__} {policy!r:.60}; e.g. load_policy(NeuralLinear(seed=0), path)"
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no policy checkpoint at {path}")
    what = "a readable banditrec policy checkpoint (written by save_policy)"
    raw = read_checkpoint(path, "cpu", what)
    if not isinstance(raw, dict) or "class" not in raw:
        raise ValueError(f"{path} is not {what}: it holds no policy state (a file saved by something else?)")
    try:
        return load_policy_state(policy, _from_torch(raw))
    except ValueError as exc:  # a checkpoint of another policy or configuration: say which file
        raise ValueError(f"{path}: {exc}") from exc
