"""Compare several target policies on one log with several estimators, as a table and a plot."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditrec._util import check_real
from banditrec.ope.action_dist import action_dist_from_policy
from banditrec.ope.estimators import BaseEstimator, UndefinedEstimateError, default_estimators
from banditrec.ope.feedback import LoggedFeedback
from banditrec.ope.reward_model import fit_reward_model

__all__ = ["compare_policies", "plot_comparison"]


def compare_policies(
    feedback: LoggedFeedback,
    policies: Mapping[str, Any],
    estimators: Sequence[BaseEstimator] | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    true_values: Mapping[str, float] | None = None,
    method: str = "bootstrap",
    n_bootstrap: int = 1000,
    estimated_rewards: Any = None,
    reward_model: Any = None,
    n_folds: int = 5,
) -> pd.DataFrame:
    """Estimate every policy's value with every estimator, with confidence intervals.

    Parameters
    ----------
    feedback : LoggedFeedback
        The log, n rounds of K candidates.
    policies : dict of str to (policy or array-like of shape (n, K))
        Target policies by name: objects with ``action_distribution(obs)`` or ready tables (see
        :func:`~banditrec.ope.action_dist.action_dist_from_policy`).
    estimators : sequence of BaseEstimator, optional
        Default: :func:`~banditrec.ope.estimators.default_estimators`. Names must be unique.
    alpha : float, default 0.05
        Intervals are (1 - alpha) two-sided.
    seed : int, default 0
        Bootstrap seed and reward-model fold assignment. Every (policy, estimator) pair uses the
        same resamples, so intervals are comparable across rows.
    true_values : dict of str to float, optional
        Known values (simulated logs); adds columns ``true_value`` and ``error`` = estimate - true.
        Policies missing from it get NaN.
    method : {"bootstrap", "normal"}
    n_bootstrap : int, default 1000
    estimated_rewards : array-like, shape (n, K), optional
        Reward model predictions for the model-based estimators. When omitted and one is needed,
        :func:`~banditrec.ope.reward_model.fit_reward_model` cross-fits ``reward_model`` once.
    reward_model : object with fit/predict, or "ridge", "logistic", "ridge_cv", "logistic_cv", optional
        The model to cross-fit (default ridge); not with ``estimated_rewards``, which is already
        a model's predictions.
    n_folds : int, default 5
        Folds of that cross-fitting; unused when ``estimated_rewards`` is given.

    Returns
    -------
    pandas.DataFrame
        One row per (policy, estimator): ``policy, estimator, estimate, low, high``
        [, ``true_value, error``]; ``df.attrs`` records alpha and method. An estimator that is
        undefined on the log for a policy (:class:`~banditrec.ope.estimators.UndefinedEstimateError`,
        e.g. SNIPS when the policy never agrees with a logged action) gets a NaN row and a warning.
    """
    if not isinstance(feedback, LoggedFeedback):
        raise TypeError(f"feedback must be a LoggedFeedback, got {type(feedback).__name__}")
    if feedback.n_rounds == 0:  # said before the reward model's n_folds check words it as a fold count
        raise ValueError("feedback has no rounds; nothing to estimate")
    if not isinstance(policies, Mapping) or not policies:
        raise ValueError(f"policies must be a non-empty dict of name -> policy, got {policies!r:.80}")
    if isinstance(estimators, BaseEstimator):
        kind = type(estimators).__name__
        raise TypeError(f"estimators must be a list of estimators, got one {kind}; write [{kind}(...)]")
    estimators = tuple(default_estimators() if estimators is None else estimators)
    if not estimators:  # an empty table before (evaluate_offline refused it already)
        raise ValueError("estimators is empty: give at least one estimator, or None for the defaults")
    for est in estimators:
        if not isinstance(est, BaseEstimator):
            raise TypeError(f"estimators must be BaseEstimator instances, got {type(est).__name__}")
    names = [est.name for est in estimators]
    if len(set(names)) != len(names):
        raise ValueError(f"estimator names must be unique, got {names}")
    if estimated_rewards is not None and reward_model is not None:
        raise ValueError(
            "give estimated_rewards or reward_model, not both: estimated_rewards are used as given and "
            f"reward_model={reward_model!r:.60} would never be fitted"
        )
    if true_values is not None:
        unknown = sorted(set(true_values) - set(policies))
        if unknown:
            raise ValueError(
                f"true_values names policies that are not compared: {unknown}; policies: {sorted(policies)}"
            )
        for name, value in true_values.items():
            if not np.isfinite(check_real(f"true_values[{name!r}]", value)):
                raise ValueError(f"true_values[{name!r}] must be finite, got {value!r}")

    if estimated_rewards is None and any(est.needs_reward_model for est in estimators):
        estimated_rewards = fit_reward_model(feedback, model=reward_model, n_folds=n_folds, seed=seed)

    rows = []
    for policy_name, policy in policies.items():
        dist = action_dist_from_policy(policy, feedback)
        for est in estimators:
            try:
                interval = est.estimate_interval(
                    feedback,
                    dist,
                    alpha,
                    method=method,
                    n_bootstrap=n_bootstrap,
                    seed=seed,
                    estimated_rewards=estimated_rewards,
                )
                estimate, low, high = interval.estimate, interval.low, interval.high
            except UndefinedEstimateError as exc:  # the log's property: the other rows still stand
                warnings.warn(f"policy {policy_name!r}: {exc}; its row is NaN", UserWarning, stacklevel=2)
                estimate = low = high = np.nan
            rows.append(
                {"policy": policy_name, "estimator": est.name, "estimate": estimate, "low": low, "high": high}
            )
    df = pd.DataFrame(rows, columns=["policy", "estimator", "estimate", "low", "high"])
    _warn_outside_reward_range(df, feedback)
    if true_values is not None:
        df["true_value"] = df["policy"].map(lambda p: float(true_values.get(p, np.nan)))
        df["error"] = df["estimate"] - df["true_value"]
    df.attrs.update({"alpha": alpha, "method": method})
    return df


def _warn_outside_reward_range(df: pd.DataFrame, feedback: LoggedFeedback) -> None:
    """A policy's value lies within the range of its rewards; an estimate outside the logged
    rewards' range is the reward model extrapolating (DM and DR on sparse 0/1 clicks: the default
    ridge predicted click rates from -0.53 to 1.05 on the Open Bandit Dataset) or heavy weights.
    The rows are kept as estimated, unclipped, as OBP reports them; the user is told."""
    low, high = float(np.min(feedback.rewards)), float(np.max(feedback.rewards))
    outside = df[(df["estimate"] < low) | (df["estimate"] > high)]
    if len(outside):
        cases = ", ".join(f"{r.estimator} for {r.policy!r} = {r.estimate:.4g}" for r in outside.head(5).itertuples())
        more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        warnings.warn(
            f"{len(outside)} estimate(s) lie outside the logged rewards' range [{low:.4g}, {high:.4g}], "
            f"where no policy's value can be: {cases}{more}. Causes: a reward model that extrapolates "
            "(DM and the DR family; reward_model='logistic' keeps 0/1 rewards' predictions in (0, 1), "
            "fit_reward_model(feedback, clip=True) any model's in range) or a few rounds "
            "with large importance weights (IPS and DR; read the interval, not the point)",
            UserWarning,
            stacklevel=3,
        )


def plot_comparison(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Plot estimates with interval error bars, one panel per policy, true value as a line.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`compare_policies`.
    path : str or PathLike
        Image file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).

    Returns
    -------
    Path
        The file written.
    """
    required = {"policy", "estimator", "estimate", "low", "high"}
    if not isinstance(df, pd.DataFrame) or not required <= set(df.columns):
        got = sorted(df.columns) if isinstance(df, pd.DataFrame) else type(df).__name__
        raise ValueError(f"df must be compare_policies' table with columns {sorted(required)}, got {got}")
    if df.empty:
        raise ValueError("df has no rows to plot")
    # Figure + Agg canvas directly: no pyplot, so no global figure state and no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    policies = list(dict.fromkeys(df["policy"]))
    fig = Figure(figsize=(max(4.0, 1.0 + 0.6 * df["estimator"].nunique()), 3.0 * len(policies)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(policies), 1, squeeze=False)[:, 0]
    for ax, policy in zip(axes, policies):
        part = df[df["policy"] == policy]
        x = np.arange(len(part))
        est = part["estimate"].to_numpy(float)
        # the interval as it is, from low to high, even where it does not contain the estimate
        # (an error bar around the estimate would have stretched it to reach the estimate)
        ax.vlines(x, part["low"].to_numpy(float), part["high"].to_numpy(float), color="tab:blue")
        for end in ("low", "high"):
            ax.plot(x, part[end].to_numpy(float), "_", color="tab:blue", markersize=10)
        ax.plot(x, est, "o", color="tab:blue", label="estimate (interval)")
        if "true_value" in part and np.isfinite(part["true_value"].to_numpy(float)).any():
            truth = float(part["true_value"].dropna().iloc[0])
            ax.axhline(truth, color="tab:red", linestyle="--", label=f"true value {truth:.4g}")
            ax.legend(loc="best", fontsize="small")
        ax.set_xticks(x)
        ax.set_xticklabels(part["estimator"], rotation=30, ha="right")
        ax.set_title(str(policy))
        ax.set_ylabel("policy value")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
