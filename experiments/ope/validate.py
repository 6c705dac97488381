"""Validate the off-policy estimators against simulator truth: bias, RMSE and interval coverage.

For every replication r = 0..R-1, world and logging policy:

1. a logger plays ``n_rounds`` decisions in the world (``banditrec.runner.run_trial`` with
   ``log_feedback=True``), writing a LoggedFeedback with its propensities and the simulator's
   expected rewards (fresh users for every r);
2. ``banditrec.ope.evaluate_offline`` trains the target policies on the first half of the log,
   freezes them and estimates their value on the second half with every estimator and a 95%
   bootstrap interval;
3. each estimate is compared with two truths: the frozen target's value on the evaluation
   rounds' contexts (what ``evaluate_offline`` reports) and its value in the world (the same
   sum over a fixed, independent sample of ``n_truth`` fresh contexts).

The summary is bias, RMSE, interval coverage and mean interval width per estimator, logger and
target, written to ``OUT/validation.csv`` (every replication) and ``OUT/summary*.csv``, with
``OUT/coverage.png``. Run from the repository root::

    python experiments/ope/validate.py --worlds linear --replications 60 --jobs 2
    python experiments/ope/validate.py --worlds movielens --replications 60 --jobs 2
"""

from __future__ import annotations

import os

# One BLAS thread per process: replications run in parallel processes instead.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import copy
import importlib.util
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

import banditrec  # noqa: F401  (registers the built-in worlds)
from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.ope import (
    action_dist_from_policy,
    evaluate_offline,
    split_by_time,
    train_offline,
    true_policy_value,
)
from banditrec.runner import run_trial


@dataclass
class Args:
    """Command-line arguments (``--name value``; tuples take several values)."""

    replications: int = 60
    """R, independent logs per world and logger (fresh users each, seeds 0..R-1)."""
    n_rounds: int = 10_000
    """Logged decisions per log; the first ``train_fraction`` train the targets."""
    train_fraction: float = 0.5
    """Share of each log (in time order) that trains the targets before they are frozen."""
    batch_size: int = 100
    """Users per decision step of the logger (it learns once per step)."""
    n_pretrain: int = 2_000
    """Rounds of an independent uniform log that train the fixed 'greedy_pretrained' target."""
    n_truth: int = 50_000
    """Fresh contexts on which each frozen target's value in the world is computed."""
    n_bootstrap: int = 1_000
    """Bootstrap resamples per interval."""
    alpha: float = 0.05
    """Intervals are (1 - alpha) two-sided."""
    jobs: int = 2
    """Replications run in parallel processes."""
    worlds: tuple[str, ...] = ("linear",)
    """Worlds to use, among WORLDS (linear, movielens)."""
    out: str = ""
    """Output folder; empty: experiments/ope/results/<worlds joined by '+'>."""
    replot: bool = False
    """Only redo the summaries and the plot from an earlier run's OUT/validation.csv."""


# Worlds: a registered id (or, failing that, the simulator's import path) and its parameters.
# The world itself (item parameters, the fitted MovieLens truth) is fixed; the users vary.
WORLDS: dict[str, tuple[EnvironmentSpec, ...]] = {
    "linear": (
        EnvironmentSpec("banditrec/Linear-v0", params={"n_items": 50, "n_candidates": 10, "context_dim": 8}),
    ),
    "movielens": (
        EnvironmentSpec("banditrec/MovieLens100k-v0", params={"n_candidates": 10}),
        EnvironmentSpec(
            simulator="banditrec.environments.movielens:MovieLens100kWorld", params={"n_candidates": 10}
        ),
    ),
}

# Logging policies: full support and exact propensities.
LOGGERS: dict[str, PolicySpec] = {
    "uniform": PolicySpec("uniform", "Random"),
    "lin_egreedy_0.2": PolicySpec("lin_egreedy_0.2", "LinEpsilonGreedy", {"epsilon": 0.2}),
}

# Target policies. 'greedy_pretrained' is fixed (trained once on an independent log, the same
# policy in every replication); the others are trained on the first half of each log. The
# deterministic optimistic target is LinUCB in the linear world; with MovieLens's 1,682 disjoint
# arms LinUCB's widths are too slow for this budget, so there it is the context-free UCB1.
PRETRAINED = "greedy_pretrained"
_COMMON: dict[str, PolicySpec] = {
    "lin_egreedy_0.1": PolicySpec("lin_egreedy_0.1", "LinEpsilonGreedy", {"epsilon": 0.1}),
    "item_egreedy_0.3": PolicySpec("item_egreedy_0.3", "EpsilonGreedy", {"epsilon": 0.3}),
}
TARGETS: dict[str, dict[str, PolicySpec]] = {
    "linear": {
        PRETRAINED: PolicySpec(PRETRAINED, "LinUCB", {"alpha": 0.0}),
        **_COMMON,
        "linucb_1.0": PolicySpec("linucb_1.0", "LinUCB", {"alpha": 1.0}),
    },
    "movielens": {
        PRETRAINED: PolicySpec(PRETRAINED, "LinEpsilonGreedy", {"epsilon": 0.0}),
        **_COMMON,
        "ucb1": PolicySpec("ucb1", "UCB1", {"alpha": 1.0}),
    },
}


def world_spec(name: str) -> EnvironmentSpec | None:
    """The first usable spec of a world: a registered id, or an importable simulator."""
    for spec in WORLDS[name]:
        if spec.id is not None and spec.id in gym.registry:
            return spec
        if spec.simulator is not None:
            module = spec.simulator.partition(":")[0]
            if importlib.util.find_spec(module) is not None:
                return spec
    return None


PRETRAIN_SEED = 1_000_000  # seeds of the pretraining and truth logs, away from the replications'
TRUTH_SEED = 1_000_001


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Args()
    for f in fields(Args):
        default = getattr(defaults, f.name)
        if isinstance(default, tuple):
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, nargs="+", default=default)
        elif isinstance(default, bool):
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action="store_true")
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(default), default=default)
    args = Args(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(parser.parse_args()).items()})
    counts = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in
              ("replications", "n_rounds", "batch_size", "n_pretrain", "n_truth", "n_bootstrap", "jobs")
              if getattr(args, name) < 1]
    if counts:
        parser.error(f"counts must be >= 1; got {', '.join(counts)}")
    if not 0 <= args.train_fraction < 1 or not 0 < args.alpha < 1:
        parser.error(f"--train-fraction must lie in [0, 1) and --alpha in (0, 1); got {args.train_fraction}, {args.alpha}")
    return args


def log_of(world: EnvironmentSpec, logger: PolicySpec, n_rounds: int, batch_size: int, seed: int):
    """A LoggedFeedback of ``logger`` playing ``n_rounds`` decisions in ``world``."""
    config = ExperimentConfig("validate", n_rounds, batch_size, (seed,), world, (logger,))
    return run_trial(config, logger, seed, log_feedback=True).feedback


# Per-process cache of what every replication of a world shares: the pretrained target and the
# truth contexts. Built from fixed seeds, so every process builds the same objects.
_SHARED: dict[str, tuple[Any, Any]] = {}


def shared(world_name: str, args: Args) -> tuple[Any, Any]:
    if world_name not in _SHARED:
        world = world_spec(world_name)
        pretrain_log = log_of(world, LOGGERS["uniform"], args.n_pretrain, args.batch_size, PRETRAIN_SEED)
        fixed = {PRETRAINED: TARGETS[world_name][PRETRAINED]}
        greedy = train_offline(fixed, pretrain_log, seed=PRETRAIN_SEED)[PRETRAINED]
        truth_log = log_of(world, LOGGERS["uniform"], args.n_truth, 1_000, TRUTH_SEED)
        _SHARED[world_name] = (greedy, truth_log)
    return _SHARED[world_name]


def replicate(rep: int, args: Args, worlds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every (world, logger) of one replication: one row per (target, estimator)."""
    rows = []
    for world_name in worlds:
        greedy, truth_log = shared(world_name, args)
        targets: dict[str, Any] = dict(TARGETS[world_name])
        targets[PRETRAINED] = copy.deepcopy(greedy)
        for logger_name, logger in LOGGERS.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            feedback = log_of(world_spec(world_name), logger, args.n_rounds, args.batch_size, rep)
            df = evaluate_offline(
                feedback,
                targets,
                train_fraction=args.train_fraction,
                alpha=args.alpha,
                seed=rep,
                pretrained=(PRETRAINED,),
                n_bootstrap=args.n_bootstrap,
            )
            # The same frozen targets again (training is deterministic given the seed), for
            # their value in the world on the fixed truth contexts.
            train, _ = split_by_time(feedback, args.train_fraction)
            frozen = train_offline(targets, train, seed=rep, pretrained=(PRETRAINED,))
            world_value = {
                name: true_policy_value(truth_log, action_dist_from_policy(policy, truth_log))
                for name, policy in frozen.items()
            }
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            for record in df.to_dict("records"):
                rows.append(
                    {
                        "world": world_name,
                        "logger": logger_name,
                        "target": record["policy"],
                        "estimator": record["estimator"],
                        "rep": rep,
                        "estimate": record["estimate"],
                        "low": record["low"],
                        "high": record["high"],
                        "true_eval": record["true_value"],
                        "true_world": world_value.get(record["policy"], np.nan),
                        "seconds": elapsed,
                        "cpu_seconds": cpu,
                    }
                )
    return rows


def summarise(results: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    r = results.assign(
        err=results["estimate"] - results["true_world"],
        cover_world=(results["low"] <= results["true_world"]) & (results["true_world"] <= results["high"]),
        cover_eval=(results["low"] <= results["true_eval"]) & (results["true_eval"] <= results["high"]),
        width=results["high"] - results["low"],
    )
    g = r.groupby(by, sort=False)
    return pd.DataFrame(
        {
            "bias": g["err"].mean(),
            "rmse": g["err"].apply(lambda e: float(np.sqrt(np.mean(e**2)))),
            "coverage": g["cover_world"].mean(),
            "coverage_eval": g["cover_eval"].mean(),
            "width": g["width"].mean(),
            "n": g["err"].size(),
        }
    ).reset_index()


def plot(summary: pd.DataFrame, path: Path, level: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(summary.groupby(["world", "logger"], sort=False))
    fig = Figure(figsize=(13, 3.4 * len(panels)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for (key, part), (ax_c, ax_r) in zip(panels, axes):
        x = np.arange(len(part))
        ax_c.bar(x, part["coverage"], color="tab:blue", alpha=0.8, label="vs value in the world")
        ax_c.plot(x, part["coverage_eval"], "o", color="tab:orange", label="vs value on eval contexts")
        ax_c.axhline(level, color="tab:red", linestyle="--", label=f"nominal {level:.0%}")
        ax_c.set_ylim(0, 1.3)
        ax_c.set_title(f"{key[0]} world, {key[1]} logger: interval coverage")
        ax_r.bar(x, part["rmse"], color="tab:gray", label="RMSE")
        ax_r.plot(x, part["bias"].abs(), "o", color="black", label="|bias|")
        ax_r.set_ylim(0, 1.25 * float(part["rmse"].max()))
        ax_r.set_title(f"{key[0]} world, {key[1]} logger: error (all targets)")
        for ax in (ax_c, ax_r):
            ax.set_xticks(x)
            ax.set_xticklabels(part["estimator"], rotation=30, ha="right")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize="x-small", loc="upper center", ncol=3, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(by_estimator: pd.DataFrame, by_target: pd.DataFrame, truth: pd.DataFrame) -> str:
    """The README's tables: per logger, the headline per estimator and coverage/RMSE per target."""
    parts = []
    for (world, logger), part in by_estimator.groupby(["world", "logger"], sort=False):
        head = part[["estimator", "bias", "rmse", "coverage", "coverage_eval", "width"]]
        parts.append(f"#### {world} world, {logger} logger: all targets ({int(part['n'].iloc[0])} estimates each)\n")
        parts.append(markdown(head))
        detail = by_target[(by_target["world"] == world) & (by_target["logger"] == logger)]
        for value in ("coverage", "rmse"):
            pivot = detail.pivot_table(index="estimator", columns="target", values=value, sort=False)
            pivot = pivot.loc[part["estimator"]].reset_index()
            parts.append(f"\n{value} per target:\n")
            parts.append(markdown(pivot, 2 if value == "coverage" else 3))
        parts.append("")
    parts.append("#### Target values in the world (mean over replications; sd across them)\n")
    parts.append(markdown(truth))
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    args = parse_args()
    out = Path(args.out or f"experiments/ope/results/{'+'.join(args.worlds)}")
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        if not (out / "validation.csv").is_file() or not (out / "manifest.json").is_file():
            raise SystemExit(f"--replot redraws a finished validation, and {out} holds none (validation.csv is "
                             f"not committed): run the same command without --replot first")
        results = pd.read_csv(out / "validation.csv")
        elapsed = json.loads((out / "manifest.json").read_text())["wall_seconds"]
    else:
        unknown = [w for w in args.worlds if w not in WORLDS]
        if unknown:
            raise SystemExit(f"unknown worlds {unknown}; choose among {sorted(WORLDS)}")
        worlds = tuple(w for w in args.worlds if world_spec(w) is not None)
        skipped = [w for w in args.worlds if w not in worlds]
        if skipped:
            print(f"skipping worlds {skipped}: neither registered nor importable")
        for w in worlds:
            print(f"world {w}: {world_spec(w)}")
        if not worlds:
            raise SystemExit("no world to validate on")
        start = time.perf_counter()
        rows: list[dict[str, Any]] = []
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(replicate, rep, args, worlds) for rep in range(args.replications)]
            for i, future in enumerate(futures):
                rows.extend(future.result())
                print(f"replication {i + 1}/{args.replications} done, {time.perf_counter() - start:.0f} s", flush=True)
        elapsed = time.perf_counter() - start
        results = pd.DataFrame(rows)
        results.to_csv(out / "validation.csv", index=False)
        manifest = {
            "args": asdict(args),
            "worlds": {w: asdict(world_spec(w)) for w in worlds},
            "worlds_skipped": skipped,
            "loggers": {k: asdict(v) for k, v in LOGGERS.items()},
            "targets": {w: {k: asdict(v) for k, v in TARGETS[w].items()} for w in worlds},
            "wall_seconds": elapsed,
            # CPU seconds of the replications themselves (one value per world/logger/replication).
            "replication_cpu_seconds": float(
                results.drop_duplicates(["world", "logger", "rep"])["cpu_seconds"].sum()
            ),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    targets = results[results["target"] != "logging"]
    by_estimator = summarise(targets, ["world", "logger", "estimator"])
    by_target = summarise(targets, ["world", "logger", "target", "estimator"])
    by_estimator.to_csv(out / "summary.csv", index=False)
    by_target.to_csv(out / "summary_by_target.csv", index=False)
    plot(by_estimator, out / "coverage.png", 1 - args.alpha)
    truth = (
        targets.groupby(["world", "logger", "target"], sort=False)
        .agg(true_world=("true_world", "mean"), true_world_sd=("true_world", "std"), true_eval_sd=("true_eval", "std"))
        .reset_index()
    )
    truth.to_csv(out / "targets.csv", index=False)
    (out / "tables.md").write_text(tables(by_estimator, by_target, truth))
    print(f"\n{results['rep'].nunique()} replications in {elapsed:.0f} s")
    print(markdown(by_estimator))
    print()
    print(markdown(truth))
