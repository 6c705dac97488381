"""Decisions per second and final regret of LinUCB, end to end through environment, runner and regret.

Workload (the one the issue fixes): banditrec/Linear-v0 with K = 20 arms, d = 32, T = 20,000
decisions, disjoint LinUCB (alpha = 1, lambda = 1), one decision at a time and in batches of 64.
Each configuration is timed ``--repeats`` times in this one process; Random, on the same
environment and runner, is the floor they set alone.

Prints one line of versions, then a table with one row per (policy, batch): LinUCB and Random at
B = 1 and B = 64, with the median, min and max decisions/s over the repeats and the final
cumulative pseudo-regret (the same in every repeat: the script checks it). Run time at the
defaults: about 10 s on the 2-core development machine (45 s while other jobs shared it).

    python benchmarks/linucb_speed.py [--horizon 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import numpy as np

import banditrec
from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.runner import run_trial

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark helpers
from _cli import positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizon", type=positive_int, default=20_000, metavar="T",
                        help="decisions per run, T (rounded up to a whole batch of 64 in the batched rows; "
                             "default %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                        help="timed runs of each configuration, reported as median, min and max "
                             "(default %(default)s)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
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
