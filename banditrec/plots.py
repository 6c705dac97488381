"""Cumulative regret and reward-rate curves, mean across seeds with 95% confidence bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["plot_results"]


def _band(table: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% Student-t band across seeds at every step, as the summary's intervals: a NaN
    stays NaN (as in the summary, not a mean of the other seeds), one seed draws no band."""
    wide = table.pivot(index="step", columns="seed", values=column).sort_index()
    x = wide.index.to_numpy()
    vals = wide.to_numpy(dtype=np.float64)
    mean = vals.mean(axis=1)
    n = vals.shape[1]
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return x, mean, nan, nan
    half = stats.t.ppf(0.975, n - 1) * vals.std(axis=1, ddof=1) / np.sqrt(n)
    return x, mean, mean - half, mean + half


def _isolated(y: np.ndarray) -> np.ndarray:
    """Finite points with no finite neighbour: a line through them draws nothing (a run of one
    step, or a point between NaNs), so they are drawn as dots."""
    finite = np.isfinite(y)
    before = np.concatenate([[False], finite[:-1]])
    after = np.concatenate([finite[1:], [False]])
    return finite & ~before & ~after


#: Policies beyond which a plot draws unlabelled mean lines without bands.
MAX_LABELLED = 40


def _colors(n: int) -> list:
    """Distinct colours: tab10 up to 10 policies, tab20 up to 20, a continuous scale beyond."""
    import matplotlib

    if n <= 10:
        return [f"C{i}" for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    scale = matplotlib.colormaps["turbo"]
    return [scale(0.05 + 0.9 * i / (n - 1)) for i in range(n)]


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
    if results.empty:  # matplotlib's own error was "number sections must be larger than 0."
        raise ValueError("results table has no rows: nothing to plot")
    repeated = results.duplicated(["policy", "seed", "step"])
    if repeated.any():
        row = results[repeated].iloc[0]
        raise ValueError(
            f"results table holds policy {row['policy']!r}, seed {row['seed']}, step {row['step']} more than once "
            "(two runs' tables concatenated?)"
        )
    table = results.assign(reward_rate=results["cumulative_reward"] / results["step"])
    n = table["policy"].nunique()
    # Up to MAX_LABELLED policies each gets a distinct colour, a band and a legend entry (below the
    # plots up to 12, beside them beyond); a larger sweep is drawn as thin mean lines on a colour
    # scale, unlabelled: its table, not its picture, is what tells the policies apart.
    many = n > MAX_LABELLED
    colors = _colors(n)
    rows = -(-n // 4) if n <= 12 else 0
    fig, axes = plt.subplots(1, 2, figsize=(11 + (2.5 if 12 < n <= MAX_LABELLED else 0), 4.2 + 0.25 * rows))
    for color, (policy, sub) in zip(colors, table.groupby("policy", sort=False)):
        n_seeds = sub["seed"].nunique()
        for ax, column in zip(axes, ("cumulative_regret", "reward_rate")):
            x, mean, lo, hi = _band(sub, column)
            label = f"{policy} (n={n_seeds})" if ax is axes[0] and not many else None
            ax.plot(x, mean, color=color, label=label, lw=0.8 if many else 1.6, alpha=0.7 if many else 1.0)
            alone = _isolated(mean)
            if alone.any():
                ax.plot(x[alone], mean[alone], "o", color=color, ms=4)
            if not many and np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
                if alone.any():  # a band of one step has no width: its interval as a bar
                    ax.vlines(x[alone], lo[alone], hi[alone], color=color, alpha=0.4, lw=4)
    what = "mean" if many else "mean, 95% CI"
    axes[0].set(xlabel="decisions", ylabel="cumulative pseudo-regret", title=f"Cumulative regret ({what})")
    axes[1].set(xlabel="decisions", ylabel="average reward so far", title=f"Reward rate ({what})")
    for ax in axes:
        ax.grid(alpha=0.3)
    rect = (0, 0, 1, 1)
    if many:
        fig.text(0.5, 0.01, f"{n} policies, too many to label: see summary.csv", ha="center", fontsize=9)
        rect = (0, 0.05, 1, 1)
    elif n <= 12:
        fig.legend(loc="lower center", ncol=min(4, n), frameon=False, fontsize=9)
        rect = (0, min(0.5, 0.03 + 0.3 * rows / fig.get_figheight()), 1, 1)
    else:
        fig.legend(loc="center right", ncol=-(-n // 30), frameon=False, fontsize=7)
        rect = (0, 0, 11 / fig.get_figwidth(), 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=rect)
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=120)
        written.append(target)
    plt.close(fig)
    return written
