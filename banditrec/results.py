"""Summaries and the manifest of a run: the numbers people quote, with their uncertainty."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["RESULT_COLUMNS", "load_results", "mean_ci", "read_table", "summarise", "write_manifest"]

RESULT_COLUMNS = ["policy", "seed", "step", "reward", "regret", "cumulative_reward", "cumulative_regret"]

#: What pandas reads as missing by default; kept for every column but ``policy``.
_NA_STRINGS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
               "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval across seeds; NaN bounds for one seed, which gives
    no estimate of the spread (a zero-width interval would claim certainty)."""
    values = np.asarray(values, dtype=np.float64)
    m = float(values.mean())
    if values.size < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return m, m - half, m + half


def summarise(trials: Sequence[Any], policies: Sequence[Any] = ()) -> pd.DataFrame:
    """Per policy: final cumulative regret and reward (mean, 95% CI across seeds), timings.

    With the experiment's ``policies`` (PolicySpec), also each policy's ``type`` and one
    ``param_<name>`` column per hyperparameter set in any of them (lists and tables as JSON
    text, blank where a policy does not set it): a sweep's grid as columns to filter and plot
    by, rather than values to parse out of names like ``eg[epsilon=0.2,decay=0.1]``."""
    rows = []
    by_policy: dict[str, list[Any]] = {}
    for t in trials:
        by_policy.setdefault(t.policy, []).append(t)
    for policy, ts in by_policy.items():
        final = pd.DataFrame([t.table.iloc[-1] for t in ts])
        regret, r_lo, r_hi = mean_ci(final["cumulative_regret"].to_numpy())
        reward, w_lo, w_hi = mean_ci(final["cumulative_reward"].to_numpy())
        rows.append(
            {
                "policy": policy,
                "n_seeds": len(ts),
                "decisions": int(final["step"].iloc[0]),
                "final_cumulative_regret": regret,
                "regret_ci_low": r_lo,
                "regret_ci_high": r_hi,
                "final_cumulative_reward": reward,
                "reward_ci_low": w_lo,
                "reward_ci_high": w_hi,
                "reward_rate": reward / float(final["step"].iloc[0]),
                "wall_time_s": float(np.mean([t.wall_time for t in ts])),
                "decisions_per_s": float(np.median([t.decisions_per_s for t in ts])),
            }
        )
    summary = pd.DataFrame(rows)
    specs = {spec.name: spec for spec in policies}
    if specs and not summary.empty:
        summary.insert(1, "type", [specs[p].type if p in specs else None for p in summary["policy"]])
        names = list(dict.fromkeys(k for spec in specs.values() for k in spec.params))
        for name in names:
            # object, not inferred: an int column with blanks was written as floats (0 → 0.0)
            summary[f"param_{name}"] = pd.Series([
                _cell(specs[p].params[name]) if p in specs and name in specs[p].params else None
                for p in summary["policy"]
            ], dtype=object)
    return summary


def _cell(value: Any) -> Any:
    """A parameter as a table cell: numbers, strings and booleans as they are, the rest as JSON."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return json.dumps(value, default=str)


def write_manifest(path: Path, config: Any, trials: Sequence[Any], elapsed: float, run: int, reused: int) -> None:
    """Config, seeds, versions and timings: enough to tell how a results folder was made."""
    from banditrec.runner import _atomic_write, environment_info

    manifest = {
        "config": config.to_dict(),
        "seeds": list(config.seeds),
        "decisions_per_trial": config.n_steps * config.batch_size,
        "versions": environment_info(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": elapsed,
        "trials_run": run,
        "trials_reused": reused,
        "trials": [
            {"policy": t.policy, "seed": t.seed, "wall_time_s": t.wall_time, "decisions_per_s": t.decisions_per_s}
            for t in trials
        ],
    }
    _atomic_write(path, lambda p: p.write_text(json.dumps(manifest, indent=2)))


def read_table(source: str | Path | bytes) -> pd.DataFrame:
    """Read a table banditrec wrote (``results.csv``, ``summary.csv``, a trial's table) with
    policy names as written: pandas' defaults read a policy named "None", "NA", "null" or "nan"
    as missing, and groupby then drops it."""

    def open_() -> Any:
        return io.BytesIO(source) if isinstance(source, bytes) else source

    columns = pd.read_csv(open_(), nrows=0).columns
    na_values = {c: _NA_STRINGS for c in columns if c != "policy"}
    return pd.read_csv(open_(), keep_default_na=False, na_values=na_values, dtype={"policy": str})


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """Read a run's ``results.csv`` with a clear error when the folder is not a finished run."""
    if Path(run_dir).is_file():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder: give the folder that holds results.csv")
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no results.csv: not a finished banditrec run folder")
    try:
        table = read_table(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable results table ({exc}); rerun the experiment to rewrite it") from None
    missing = [c for c in ("policy", "seed", "step", "cumulative_reward", "cumulative_regret") if c not in table]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}: not a banditrec results table")
    if table.empty:  # a run writes one row per checkpoint of every trial: never none
        raise ValueError(f"{path} holds no rows, only its header; rerun the experiment to rewrite it")
    for column in RESULT_COLUMNS[1:]:
        if column in table and not pd.api.types.is_numeric_dtype(table[column]):
            # a hand edit or another program's table: say where, not "unsupported operand type(s) for /"
            numbers = pd.to_numeric(table[column], errors="coerce")
            bad = table[column][numbers.isna() & table[column].notna()]
            if bad.empty:
                table[column] = numbers
                continue
            raise ValueError(
                f"{path}: column {column!r} must hold numbers, got {bad.iloc[0]!r} on line {bad.index[0] + 2}; "
                "rerun the experiment to rewrite it"
            )
    return table
