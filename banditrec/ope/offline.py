"""Compare policies offline: train each target on the early part of a log, evaluate it on the rest.

A log is split in time order: the first ``train_fraction`` of its rounds train the target
policies (by calling their ``update`` on the logged actions and rewards, as if they had made
those decisions), then the policies are frozen and every estimator scores their action
distributions on the remaining rounds. On simulator logs the true value of each frozen target on
those rounds is known, so every estimate comes with its error.

>>> from banditrec.ope import LoggedFeedback, evaluate_offline
>>> feedback = LoggedFeedback.load("runs/demo/feedback/random-xxxx__seed0.npz")     # doctest: +SKIP
>>> evaluate_offline(feedback, {"linucb": ("LinUCB", {"alpha": 1.0}), "random": "Random"})  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import warnings
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditrec.config import ConfigError, PolicySpec, _only, _section, parse_policies, read_toml
from banditrec.ope.action_dist import action_dist_from_policy, validate_action_dist
from banditrec.ope.estimators import BaseEstimator, default_estimators
from banditrec.ope.feedback import LoggedFeedback
from banditrec.ope.intervals import bootstrap_interval, check_alpha, normal_interval
from banditrec.ope.report import compare_policies
from banditrec.policies.base import Policy
from banditrec.policies.registry import fresh_params, make_policy

__all__ = [
    "LOGGING_POLICY",
    "OfflineTargets",
    "evaluate_offline",
    "load_feedback",
    "load_offline_targets",
    "split_by_time",
    "train_offline",
    "true_policy_value",
]

#: Name of the reference row that reports the logging policy's own (on-policy) value.
LOGGING_POLICY = "logging"
#: Estimator name of that row: the mean logged reward.
ON_POLICY = "on_policy"


# ---------------------------------------------------------------------- splitting and truth
def _check_fraction(train_fraction: Any) -> float:
    if (
        isinstance(train_fraction, bool)
        or not isinstance(train_fraction, (int, float, np.integer, np.floating))
        or not 0.0 <= train_fraction < 1.0
    ):
        raise ValueError(f"train_fraction must be a number in [0, 1), got {train_fraction!r}")
    return float(train_fraction)


def split_by_time(feedback: LoggedFeedback, train_fraction: float = 0.5) -> tuple[LoggedFeedback, LoggedFeedback]:
    """Split a log into its earliest ``train_fraction`` of rounds and the rest.

    Rounds are ordered by ``feedback.timestamps`` when present (stably: rounds of one batch keep
    their row order), else by row order.

    Parameters
    ----------
    feedback : LoggedFeedback
        n logged rounds.
    train_fraction : float in [0, 1)
        The first ``floor(train_fraction * n)`` rounds go to the training part.

    Returns
    -------
    (train, evaluation) : tuple of LoggedFeedback
        The training part may have 0 rounds; the evaluation part has at least 2.
    """
    if not isinstance(feedback, LoggedFeedback):
        raise TypeError(f"feedback must be a LoggedFeedback, got {type(feedback).__name__}")
    fraction = _check_fraction(train_fraction)
    n = feedback.n_rounds
    n_train = int(np.floor(fraction * n))
    if n - n_train < 2:
        raise ValueError(
            f"train_fraction={fraction} leaves {n - n_train} of the log's {n} rounds for evaluation; "
            "at least 2 are needed"
        )
    if feedback.timestamps is None:
        order = np.arange(n)
    else:
        order = np.argsort(feedback.timestamps, kind="stable")
    if np.array_equal(order, np.arange(n)):  # slices share memory with the log; no copies
        return feedback[:n_train], feedback[n_train:]
    return feedback[order[:n_train]], feedback[order[n_train:]]


def _has_truth(feedback: LoggedFeedback) -> bool:
    """Whether every valid candidate of every round has a known expected reward."""
    q = feedback.expected_rewards
    if q is None:
        return False
    known = np.isfinite(q) | ~feedback.mask
    if known.all():
        return True
    if np.isfinite(q[feedback.mask]).any():
        warnings.warn(
            "expected_rewards are known for only some rounds/candidates of the log; the true value "
            "needs all of them, so no true values are reported",
            stacklevel=3,
        )
    return False


def true_policy_value(feedback: LoggedFeedback, action_dist: Any) -> float:
    """Exact value of a target policy on the logged contexts, from the simulator's truth.

    .. math:: V = \\frac1n \\sum_i \\sum_k \\pi(k|x_i)\\, q(x_i, k)

    with q = ``feedback.expected_rewards``. This is the value conditional on the n logged contexts;
    its expectation over contexts is the policy's value in the world.

    Parameters
    ----------
    feedback : LoggedFeedback
        A log with ``expected_rewards`` known (finite) on every valid candidate.
    action_dist : array-like, shape (n, K)
        The target's pi(k | x_i).

    Returns
    -------
    float
    """
    if not isinstance(feedback, LoggedFeedback):
        raise TypeError(f"feedback must be a LoggedFeedback, got {type(feedback).__name__}")
    if feedback.n_rounds == 0:  # the mean over no rounds was NaN, returned with numpy's warnings
        raise ValueError("feedback has no rounds; a policy's value on it is undefined")
    q = feedback.expected_rewards
    if q is None or not (np.isfinite(q) | ~feedback.mask).all():
        raise ValueError(
            "the log's expected_rewards are missing or NaN on some valid candidates; the true value is "
            "only known for simulator logs"
        )
    pi = validate_action_dist(action_dist, feedback)
    return float(np.mean(np.sum(pi * np.where(feedback.mask, q, 0.0), axis=1)))


# ---------------------------------------------------------------------- building and training
def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _policy_seed(seed: int, name: str) -> np.random.SeedSequence:
    # Depends on the policy's name too, so adding a target changes no other target's numbers.
    return np.random.SeedSequence([int(seed), 2, zlib.crc32(name.encode())])


def _build(name: str, target: Any, seed: int) -> Policy:
    """A fresh or copied policy from a Policy, a PolicySpec, (type, params), {"type": ...} or "type"."""
    if isinstance(target, Policy):
        return copy.deepcopy(target)  # the caller's object is never trained in place
    if isinstance(target, PolicySpec):
        type_, params = target.type, target.params
    elif isinstance(target, str):
        type_, params = target, {}
    elif isinstance(target, tuple) and len(target) == 2 and isinstance(target[1], Mapping):
        type_, params = target
    elif isinstance(target, Mapping) and "type" in target:
        type_, params = target["type"], {k: v for k, v in target.items() if k != "type"}
    else:
        raise TypeError(
            f"policy {name!r} must be a banditrec Policy, a PolicySpec, a (type, params) tuple, a dict "
            f"with a 'type' key or a type name, got {type(target).__name__}: {target!r:.80}"
        )
    try:
        return make_policy(type_, seed=_policy_seed(seed, name), **fresh_params(params))  # a module: copied too
    except (TypeError, ValueError) as exc:
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"policy {name!r}: {exc}") from exc


def train_offline(
    policies: Mapping[str, Any],
    feedback: LoggedFeedback,
    seed: int = 0,
    *,
    pretrained: Collection[str] = (),
    batch_size: int = 256,
) -> dict[str, Policy]:
    """Build the target policies and train them on a log's actions and rewards.

    Each policy's ``update`` is called on consecutive batches of ``batch_size`` logged rounds in
    row order, as if it had chosen the logged actions. This is the naive (unweighted) way to learn
    from logs: exact for the regression estimators behind the linear and context-free policies,
    whose fit does not depend on who chose the actions. Its decision counter moves on by the rounds
    learned, as if it had decided them: a decaying epsilon has decayed, and an ``initial_pulls``
    round-robin start is behind it once the training rounds cover it.

    Parameters
    ----------
    policies : dict of str to target
        Name to a :class:`~banditrec.policies.Policy` (deep-copied first: the caller's object is
        not modified), a :class:`~banditrec.config.PolicySpec`, a ``(type, params)`` tuple, a dict
        with a ``type`` key and parameters, or a type name. Specs are built with
        :func:`~banditrec.policies.make_policy` and a seed derived from ``seed`` and the name.
    feedback : LoggedFeedback
        The training rounds (may be empty).
    seed : int, default 0
    pretrained : collection of str
        Names of policies to use as given, without updates (e.g. a policy trained elsewhere).
    batch_size : int, default 256
        Rounds per ``update`` call.

    Returns
    -------
    dict of str to Policy
    """
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError(f"policies must be a non-empty dict of name -> policy, got {policies!r:.80}")
    if not isinstance(feedback, LoggedFeedback):
        raise TypeError(f"feedback must be a LoggedFeedback, got {type(feedback).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(pretrained, str):
        pretrained = (pretrained,)
    unknown = sorted(set(pretrained) - set(policies))
    if unknown:
        raise ValueError(f"pretrained names policies that are not given: {unknown}; policies: {sorted(policies)}")
    for name in policies:
        if not isinstance(name, str):
            raise TypeError(f"policy names must be strings, got {name!r}")
    seed = _check_seed(seed)
    trained = {name: _build(name, target, seed) for name, target in policies.items()}
    if feedback.n_rounds == 0:
        return trained
    obs = feedback.observation()
    learners = {name: policy for name, policy in trained.items() if name not in pretrained}
    for start in range(0, feedback.n_rounds, int(batch_size)):
        rows = slice(start, start + int(batch_size))
        batch = obs[rows]
        for name, policy in learners.items():
            try:
                policy.update(batch, feedback.actions[rows], feedback.rewards[rows])
            except Exception as exc:  # a plug-in target's error says which target and where
                exc.add_note(f"in target policy {name!r}, training on logged rounds {start} to {rows.stop - 1}")
                raise
            policy.n_decisions_ += batch.batch_size  # update() learns; act() counts: as if it had chosen them
    return trained


# ---------------------------------------------------------------------- evaluation
def _scored(name: str, policy: Policy, evaluation: LoggedFeedback) -> np.ndarray:
    try:
        return action_dist_from_policy(policy, evaluation)
    except Exception as exc:
        exc.add_note(f"in target policy {name!r}, scoring the {evaluation.n_rounds} evaluation rounds")
        raise


def _logging_row(
    feedback: LoggedFeedback, alpha: float, method: str, n_bootstrap: int, seed: int, truth: bool
) -> dict[str, Any]:
    rewards = feedback.rewards
    if method == "bootstrap":
        low, high = bootstrap_interval(
            rewards[:, None], lambda means: means[..., 0], alpha=alpha, n_bootstrap=n_bootstrap, seed=seed
        )
    else:
        low, high = normal_interval(rewards, alpha=alpha)
    row: dict[str, Any] = {
        "policy": LOGGING_POLICY,
        "estimator": ON_POLICY,
        "estimate": float(rewards.mean()),
        "low": low,
        "high": high,
    }
    if truth:
        q = np.where(feedback.mask, feedback.expected_rewards, 0.0)
        if feedback.logging_action_dist is not None:
            value = float(np.mean(np.sum(feedback.logging_action_dist * q, axis=1)))
        else:  # the expected reward of what the logger did: unbiased for its value on these rounds
            value = float(np.mean(q[np.arange(feedback.n_rounds), feedback.actions]))
        row.update(true_value=value, error=row["estimate"] - value)
    return row


def evaluate_offline(
    feedback: LoggedFeedback,
    policies: Mapping[str, Any],
    train_fraction: float = 0.5,
    estimators: Sequence[BaseEstimator] | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    pretrained: Collection[str] = (),
    train_batch_size: int = 256,
    method: str = "bootstrap",
    n_bootstrap: int = 1000,
    reward_model: Any = None,
    n_folds: int = 5,
) -> pd.DataFrame:
    """Train target policies on the start of a log, freeze them, and estimate their value on the rest.

    1. :func:`split_by_time`: the first ``train_fraction`` of the rounds train, the rest evaluate.
    2. :func:`train_offline`: every target not in ``pretrained`` learns from the training rounds.
    3. Each frozen target's action distribution on the evaluation rounds is scored by every
       estimator with a (1 - alpha) interval (:func:`~banditrec.ope.compare_policies`, one
       cross-fitted reward model for all targets).
    4. When the log carries the simulator's ``expected_rewards``, each target's true value on the
       evaluation rounds, mean_i sum_k pi(k|x_i) q(x_i, k), and each estimate's error are added.
    5. A reference row (policy ``"logging"``, estimator ``"on_policy"``) gives the logging policy's
       mean reward on the evaluation rounds, its interval and, on simulator logs, its true value
       (from ``logging_action_dist`` when logged, else the expected reward of the logged actions).

    Parameters
    ----------
    feedback : LoggedFeedback
        The log: n rounds of K candidates.
    policies : dict of str to target
        See :func:`train_offline`: Policy objects (copied, never modified), PolicySpecs,
        ``(type, params)`` tuples, dicts with ``type``, or type names. ``"logging"`` is reserved.
    train_fraction : float in [0, 1), default 0.5
        0 evaluates on the whole log with the policies as given (specs untrained).
    estimators : sequence of BaseEstimator, optional
        Default :func:`~banditrec.ope.default_estimators`.
    alpha : float, default 0.05
    seed : int, default 0
        Seeds the policies built from specs, the bootstrap and the reward model's folds.
    pretrained : collection of str
        Targets used as given (no updates on the training rounds).
    train_batch_size : int, default 256
        Rounds per ``update`` call while training.
    method : {"bootstrap", "normal"}
    n_bootstrap : int, default 1000
    reward_model : object with fit/predict, or "ridge", "logistic", "ridge_cv", "logistic_cv", optional
        Regressor for the model-based estimators (default ridge), cross-fitted on the evaluation
        rounds with ``n_folds`` folds (see :func:`~banditrec.ope.reward_model.fit_reward_model`).
    n_folds : int, default 5

    Returns
    -------
    pandas.DataFrame
        One row per (target, estimator) and the logging reference row: ``policy, estimator,
        estimate, low, high`` and, on simulator logs, ``true_value, error`` (estimate - true).
        ``df.attrs`` holds ``alpha, method, n_train, n_eval, train_fraction``.
    """
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError(f"policies must be a non-empty dict of name -> policy, got {policies!r:.80}")
    if LOGGING_POLICY in policies:
        raise ValueError(f"the name {LOGGING_POLICY!r} is reserved for the logging policy's reference row")
    check_alpha(alpha)
    seed = _check_seed(seed)
    _check_method(method)
    _check_count("train_batch_size", train_batch_size)  # train_offline would call it batch_size
    train, evaluation = split_by_time(feedback, train_fraction)
    chosen = default_estimators() if estimators is None else estimators
    if isinstance(chosen, (list, tuple)) and not chosen:
        raise ValueError("estimators is empty: give at least one estimator, or None for the defaults")
    model_based = isinstance(chosen, (list, tuple)) and any(
        isinstance(est, BaseEstimator) and est.needs_reward_model for est in chosen
    )
    if model_based and isinstance(n_folds, (int, np.integer)) and evaluation.n_rounds < n_folds:
        raise ValueError(
            f"train_fraction={train_fraction} leaves {evaluation.n_rounds} rounds for evaluation, fewer than "
            f"n_folds={n_folds} for cross-fitting the reward model; lower train_fraction or n_folds"
        )
    trained = train_offline(policies, train, seed, pretrained=pretrained, batch_size=train_batch_size)
    # Distributions are computed once and passed as tables: a Monte-Carlo policy (Thompson
    # sampling) must be scored and given its true value on the very same table.
    dists = {name: _scored(name, policy, evaluation) for name, policy in trained.items()}
    truth = _has_truth(evaluation)
    true_values = {name: true_policy_value(evaluation, dist) for name, dist in dists.items()} if truth else None
    df = compare_policies(
        evaluation,
        dists,
        estimators=estimators,
        alpha=alpha,
        seed=seed,
        true_values=true_values,
        method=method,
        n_bootstrap=n_bootstrap,
        reward_model=reward_model,
        n_folds=n_folds,
    )
    reference = _logging_row(evaluation, alpha, method, n_bootstrap, seed, truth)
    df = pd.concat([df, pd.DataFrame([reference], columns=df.columns)], ignore_index=True)
    df.attrs.update(
        {
            "alpha": alpha,
            "method": method,
            "n_train": train.n_rounds,
            "n_eval": evaluation.n_rounds,
            "train_fraction": float(train_fraction),
        }
    )
    return df


# ---------------------------------------------------------------------- files (for the CLI)
def load_feedback(path: str | os.PathLike[str]) -> LoggedFeedback:
    """Read a LoggedFeedback ``.npz``, with a one-line error for anything that is not one.

    Raises
    ------
    FileNotFoundError
        No such file (a folder lists the ``.npz`` files it holds).
    ValueError
        The file exists but is not a valid banditrec LoggedFeedback file.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(str(p.relative_to(path)) for p in path.rglob("*.npz"))
        hint = f"; it holds {', '.join(found[:3])}" + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise FileNotFoundError(f"{path} is a folder, not a LoggedFeedback .npz file{hint if found else ''}")
    return LoggedFeedback.load(path)  # names the file in every error: missing, not an archive, damaged


@dataclass(frozen=True)
class OfflineTargets:
    """Target policies and evaluation options read from a TOML file.

    Attributes
    ----------
    policies : tuple of PolicySpec
        From the ``[policies.NAME]`` tables (lists of values expand to a grid, as in experiments).
    options : dict
        Keyword arguments for :func:`evaluate_offline` from an optional ``[ope]`` table:
        ``train_fraction, alpha, seed, method, n_bootstrap, train_batch_size, n_folds``,
        ``estimators`` (a list of estimator names) and ``pretrained`` (a list of policy names).
    """

    policies: tuple[PolicySpec, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, PolicySpec]:
        return {spec.name: spec for spec in self.policies}


_OPE_KEYS = {
    "train_fraction": (int, float),
    "alpha": (float,),
    "seed": (int,),
    "method": (str,),
    "n_bootstrap": (int,),
    "train_batch_size": (int,),
    "n_folds": (int,),
    "estimators": (list,),
    "pretrained": (list,),
    "reward_model": (str,),
}


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_method(method: Any) -> str:
    if method not in ("bootstrap", "normal"):
        raise ValueError(f"method must be 'bootstrap' or 'normal', got {method!r}")
    return method


#: Value checks of the [ope] options; each message starts with the option's name.
_OPE_CHECKS = {
    "train_fraction": _check_fraction,
    "alpha": check_alpha,
    "seed": _check_seed,
    "method": _check_method,
    "n_bootstrap": lambda value: _check_count("n_bootstrap", value),
    "train_batch_size": lambda value: _check_count("train_batch_size", value),
    "n_folds": lambda value: _check_count("n_folds", value),
    "reward_model": lambda value: _check_reward_model(value),
}


def _check_reward_model(name: str) -> str:
    from banditrec.ope.reward_model import REWARD_MODELS

    if name not in REWARD_MODELS:
        raise ValueError(f"reward_model must be one of {sorted(REWARD_MODELS)}, got {name!r}")
    return name


def load_offline_targets(path: str | os.PathLike[str]) -> OfflineTargets:
    """Read the target policies of an offline comparison from a TOML file.

    The file uses the experiment schema's ``[policies.NAME]`` tables (``type`` plus parameters;
    a list value makes a grid), so an experiment config can be reused as is: its
    ``[experiment]`` and ``[environment]`` tables are ignored. An optional ``[ope]`` table sets
    the options of :class:`OfflineTargets`. Every policy is built once to check its type and
    parameters before any evaluation starts.

    Raises
    ------
    ConfigError
        (a ValueError) Missing file, invalid TOML, unknown keys, bad types, unknown policy types
        or parameters, unknown estimator names; the message names the file and the table.
    """
    source = str(path)
    raw = read_toml(path)  # as an experiment config is read: UTF-8 whatever the locale
    _only(raw, {"experiment", "environment", "policies", "ope"}, source, "top level")
    specs: list[PolicySpec] = parse_policies(_section(raw, "policies", source), source)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: policy names must be unique, got {names}")
    if LOGGING_POLICY in names:
        raise ConfigError(f"{source}: [policies.{LOGGING_POLICY}] is reserved for the logging policy's row")
    for spec in specs:
        try:
            make_policy(spec.type, seed=0, **dict(spec.params))
        except (TypeError, ValueError, ImportError) as exc:
            raise ConfigError(f"{source}: [policies.{spec.name}]: {exc}") from exc

    options: dict[str, Any] = {}
    if "ope" in raw:
        ope = _section(raw, "ope", source)
        _only(ope, set(_OPE_KEYS), source, "[ope]")
        for key, value in ope.items():
            types = _OPE_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, types):
                expected = " or ".join(t.__name__ for t in types)
                raise ConfigError(f"{source}: [ope] {key} must be {expected}, got {value!r}")
            try:  # the checks evaluate_offline makes, here with the file and the key as written
                _OPE_CHECKS.get(key, lambda v: v)(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: [ope] {exc}") from None
            options[key] = value
        for key in ("estimators", "pretrained"):
            bad = [v for v in options.get(key, ()) if not isinstance(v, str)]
            if bad:
                raise ConfigError(f"{source}: [ope] {key} must be a list of names (strings), got {bad[0]!r} in it")
        if "estimators" in options:
            known = {est.name: est for est in default_estimators()}
            wanted = options["estimators"]
            bad = [e for e in wanted if e not in known]
            if bad or not wanted:
                raise ConfigError(
                    f"{source}: [ope] estimators must name some of {sorted(known)}, got {wanted!r}"
                )
            options["estimators"] = tuple(known[e] for e in wanted)
        if "pretrained" in options:
            bad = [p for p in options["pretrained"] if p not in names]
            if bad:
                raise ConfigError(f"{source}: [ope] pretrained names unknown policies {bad}; policies: {names}")
            options["pretrained"] = tuple(options["pretrained"])
    return OfflineTargets(tuple(specs), options)
