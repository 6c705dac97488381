"""Policies by name: the factories behind configs, the CLI and ``make_policy``.

Each factory documents its hyperparameters and returns a ready policy; ``make_policy`` resolves a
config's ``type`` and rejects unknown names and parameters with the valid choices listed.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from banditrec._util import load_object
from banditrec.policies.base import Policy
from banditrec.policies.context_free import ItemStatistics
from banditrec.policies.exploration import UCB, EpsilonGreedy, Thompson
from banditrec.policies.linear import RidgeRegression
from banditrec.policies.neural import NeuralEpsilonGreedy, NeuralLinear, NeuralTS, NeuralUCB
from banditrec.policies.policy import BanditPolicy, RandomPolicy

__all__ = [
    "POLICIES",
    "UCB1",
    "BernoulliTS",
    "EpsilonGreedyPolicy",
    "LinEpsilonGreedy",
    "LinTS",
    "LinUCB",
    "Random",
    "make_policy",
    "policy_parameters",
    "register_policy",
]


def Random(seed=None) -> Policy:
    """Uniformly random valid candidate."""
    return RandomPolicy(seed)


def EpsilonGreedyPolicy(epsilon: float = 0.1, decay: float = 0.0, seed=None) -> Policy:
    """Context-free epsilon-greedy over item ids (mean reward per item)."""
    return BanditPolicy(ItemStatistics(), EpsilonGreedy(epsilon, decay), seed, name="EpsilonGreedy")


def UCB1(alpha: float = 1.0, seed=None) -> Policy:
    """Context-free UCB1 over item ids: mean + alpha · √(2 ln t / n)."""
    return BanditPolicy(ItemStatistics(), UCB(alpha), seed, name="UCB1")


def BernoulliTS(a: float = 1.0, b: float = 1.0, n_mc: int = 100, seed=None) -> Policy:
    """Context-free Beta-Bernoulli Thompson sampling over item ids (rewards in [0, 1])."""
    return BanditPolicy(ItemStatistics(beta_prior=(a, b), clicks=True), Thompson(n_mc), seed, name="BernoulliTS")


def LinUCB(
    alpha: float = 1.0, form: str = "disjoint", features: str | None = None, lam: float = 1.0,
    intercept: bool = True, initial_pulls: int = 0, seed=None,
) -> Policy:
    """LinUCB (Li et al. 2010): ridge regression, choose mean + alpha · √(xᵀA⁻¹x).

    ``initial_pulls`` (all linear and neural policies): round-robin over the valid candidates for
    the first ``initial_pulls · K`` decisions (:class:`BanditPolicy`)."""
    return BanditPolicy(RidgeRegression(form, features, lam, intercept), UCB(alpha), seed, name="LinUCB",
                        initial_pulls=initial_pulls)


def LinTS(
    v: float | None = None, form: str = "disjoint", features: str | None = None, lam: float = 1.0,
    intercept: bool = True, posterior: str = "gaussian", a0: float | None = None, b0: float | None = None,
    n_mc: int = 100, initial_pulls: int = 0, seed=None,
) -> Policy:
    """Linear Thompson sampling: posterior="gaussian" (scale v, default 1) or "nig" (a0 = b0 = 6 by default: Riquelme et al.'s LinFullPost).

    ``posterior="gaussian"`` draws θ ~ N(θ̂, v² A⁻¹) (``v`` defaults to 1); ``posterior="nig"``
    draws σ² ~ InvGamma(a, b) and θ ~ N(θ̂, σ² A⁻¹) from the Normal-Inverse-Gamma posterior of
    the prior (a0, b0) (both default to 6). A parameter of the other posterior is an error, not
    silently ignored."""
    if posterior == "gaussian" and (a0 is not None or b0 is not None):
        raise ValueError("a0 and b0 set the noise prior of posterior='nig'; posterior='gaussian' uses v only "
                         f"(got a0={a0!r}, b0={b0!r}): pass posterior='nig', or drop a0 and b0")
    if posterior == "nig" and v is not None:
        raise ValueError(f"v scales posterior='gaussian'; posterior='nig' uses a0 and b0 only (got v={v!r}): "
                         "pass posterior='gaussian', or drop v")
    v, a0, b0 = (1.0 if v is None else v), (6.0 if a0 is None else a0), (6.0 if b0 is None else b0)
    est = RidgeRegression(form, features, lam, intercept, posterior=posterior, v=v, a0=a0, b0=b0)
    return BanditPolicy(est, Thompson(n_mc), seed, name="LinTS", initial_pulls=initial_pulls)


def LinEpsilonGreedy(
    epsilon: float = 0.1, decay: float = 0.0, form: str = "disjoint", features: str | None = None,
    lam: float = 1.0, intercept: bool = True, initial_pulls: int = 0, seed=None,
) -> Policy:
    """Epsilon-greedy on a ridge-regression estimate."""
    return BanditPolicy(RidgeRegression(form, features, lam, intercept), EpsilonGreedy(epsilon, decay), seed,
                        name="LinEpsilonGreedy", initial_pulls=initial_pulls)


POLICIES: dict[str, Callable[..., Policy]] = {
    "Random": Random,
    "EpsilonGreedy": EpsilonGreedyPolicy,
    "UCB1": UCB1,
    "BernoulliTS": BernoulliTS,
    "LinUCB": LinUCB,
    "LinTS": LinTS,
    "LinEpsilonGreedy": LinEpsilonGreedy,
    "NeuralEpsilonGreedy": NeuralEpsilonGreedy,
    "NeuralUCB": NeuralUCB,
    "NeuralTS": NeuralTS,
    "NeuralLinear": NeuralLinear,
}


def register_policy(name: str, factory: Callable[..., Policy], override: bool = False) -> None:
    """Make ``factory`` (accepting ``seed=``) available to configs under ``name``."""
    if name in POLICIES and not override:
        raise ValueError(f"policy type {name!r} is already registered; pass override=True to replace it")
    if "seed" not in inspect.signature(factory).parameters:
        raise TypeError(f"policy factory {name!r} must accept a seed= keyword argument")
    POLICIES[name] = factory


def policy_parameters(name: str) -> dict[str, Any]:
    """Hyperparameters of a policy type and their defaults (``seed`` excluded)."""
    factory = _resolve(name)
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(factory).parameters.values()
        if p.name != "seed"
    }


def _resolve(name: str) -> Callable[..., Policy]:
    if not isinstance(name, str):
        raise TypeError(f"policy type must be a string, got {name!r}")
    if name in POLICIES:
        return POLICIES[name]
    if ":" in name:
        return load_object(name)
    from banditrec.config import did_you_mean

    raise ValueError(f"unknown policy type {name!r}{did_you_mean(name, sorted(POLICIES))}; known types: "
                     f"{', '.join(sorted(POLICIES))} (or an import path 'package.module:factory')")


def fresh_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` for one more policy built from the same spec: a torch module among them (a
    pretrained ``model``) is copied, since a neural policy trains the module it is given in place.
    Built from one spec, every seed's trial would otherwise start from the weights the previous
    trial left, and a run's numbers would depend on the trial order and on ``jobs``."""
    return {k: copy.deepcopy(v) if isinstance(v, nn.Module) else v for k, v in params.items()}


def make_policy(name: str, seed=None, **params: Any) -> Policy:
    """Build a policy by type name (or import path) with validated hyperparameters."""
    factory = _resolve(name)
    contract = "a policy factory is called as factory(seed=..., **params) and returns a banditrec Policy"
    if not callable(factory):
        raise TypeError(f"policy type {name!r} is a {type(factory).__name__}, not a policy factory: {contract}")
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature
        raise TypeError(f"policy type {name!r} is not a policy factory: {contract}") from None
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    if "seed" not in sig.parameters and not accepts_any:
        raise TypeError(f"policy factory {name!r} takes no seed argument: {contract}")
    unknown = set(params) - set(sig.parameters) - {"seed"}
    if unknown and not accepts_any:
        from banditrec.config import did_you_mean

        valid = [p for p in sig.parameters if p != "seed"]
        hint = did_you_mean(min(unknown), valid) if len(unknown) == 1 else ""
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for policy {name!r}{hint}; valid: {valid}")
    policy = factory(seed=seed, **params)
    if not isinstance(policy, Policy):
        raise TypeError(f"policy factory {name!r} returned {type(policy).__name__}, not a banditrec Policy")
    return policy
