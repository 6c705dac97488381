"""Cumulative regret and reward-rate curves, mean across seeds with 95% confidence bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["plot_results"]


def _band(table: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    wide = table.pivot_table(index="step", columns="seed", values=column)
    x = wide.index.to_numpy()
    vals = wide.to_numpy()
    mean = np.nanmean(vals, axis=1)
    n = np.sum(~np.isnan(vals), axis=1)
    if vals.shape[1] < 2:
        return x, mean, mean, mean
    sem = np.nanstd(vals, axis=1, ddof=1) / np.sqrt(n)
    half = stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sem
    return x, mean, mean - half, mean + half


def plot_results(results: pd.DataFrame, path: str | Path, title: str | None = None, formats=("png", "pdf")) -> list[Path]:
    """Draw cumulative regret and reward rate against decisions; one line per policy.

    Writes ``path`` with each suffix in ``formats`` (PNG for viewing, PDF as vector graphics)
    and returns the files written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    missing = {"policy", "seed", "step", "cumulative_regret", "cumulative_reward"} - set(results.columns)
    if missing:
        raise ValueError(f"results table lacks columns {sorted(missing)}")
    table = results.assign(reward_rate=results["cumulative_reward"] / results["step"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (policy, sub) in enumerate(table.groupby("policy", sort=False)):
        color = f"C{i % 10}"
        n_seeds = sub["seed"].nunique()
        for ax, column in zip(axes, ("cumulative_regret", "reward_rate")):
            x, mean, lo, hi = _band(sub, column)
            ax.plot(x, mean, color=color, label=f"{policy} (n={n_seeds})" if ax is axes[0] else None, lw=1.6)
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    axes[0].set(xlabel="decisions", ylabel="cumulative pseudo-regret", title="Cumulative regret (mean, 95% CI)")
    axes[1].set(xlabel="decisions", ylabel="average reward so far", title="Reward rate (mean, 95% CI)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=min(4, table["policy"].nunique()), frameon=False, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=120)
        written.append(target)
    plt.close(fig)
    return written
