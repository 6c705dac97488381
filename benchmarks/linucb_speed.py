"""Decisions per second and final regret of LinUCB, end to end through environment, runner and regret.

Workload (the one the issue fixes): banditrec/Linear-v0 with K = 20 arms, d = 32, T = 20,000
decisions, disjoint LinUCB (alpha = 1, lambda = 1), one decision at a time and in batches of 64.
Each configuration is timed ``--repeats`` times in this one process; the table shows medians.

    python benchmarks/linucb_speed.py [--horizon 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics

import numpy as np

import banditrec
from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.runner import run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizon", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = EnvironmentSpec(id="banditrec/Linear-v0", params={"n_items": 20, "context_dim": 32})
    rows = []
    for batch in (1, 64):
        for name, ptype, params in (
            ("LinUCB", "LinUCB", {"alpha": 1.0, "lam": 1.0}),
            ("Random", "Random", {}),
        ):
            cfg = ExperimentConfig("bench", args.horizon, batch, (0,), env, (PolicySpec(name, ptype, params),), 10)
            runs = [run_trial(cfg, cfg.policies[0], seed=0) for _ in range(args.repeats)]
            rates = [r.decisions_per_s for r in runs]
            regret = runs[0].table["cumulative_regret"].iloc[-1]
            assert all(r.table["cumulative_regret"].iloc[-1] == regret for r in runs), "non-deterministic run"
            rows.append((name, batch, statistics.median(rates), min(rates), max(rates), regret))
    print(f"banditrec {banditrec.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, horizon {args.horizon}, {args.repeats} repeats")
    print(f"{'policy':<8} {'batch':>5} {'median dec/s':>13} {'min':>10} {'max':>10} {'final regret':>13}")
    for name, batch, med, lo, hi, regret in rows:
        print(f"{name:<8} {batch:>5} {med:>13,.0f} {lo:>10,.0f} {hi:>10,.0f} {regret:>13.1f}")


if __name__ == "__main__":
    main()
