"""Neural policies against LinUCB on the nonlinear world: the numbers the README quotes.

Every row is Nonlinear-v0 (100 items unless noted, K = 10), batches of 32 users, seeds 0-2, and
reports the mean final cumulative regret over the seeds. The runner derives each trial's random
streams from the seed and the policy's name, so the names below are part of the result: rerunning
this script reproduces the table exactly on one machine. Finished trials are kept under
``runs/nonlinear/`` and reused; ``--rows`` picks rows by name.

    python experiments/nonlinear/compare.py                 # the 16,000-decision rows (about 15 min on 2 cores)
    python experiments/nonlinear/compare.py --long          # and the 64,000-decision rows (about 13 min more)
    python experiments/nonlinear/compare.py --rows "default: shared LinUCB" "default: NeuralUCB"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.runner import run_experiment

SHARED = ("LinUCB", {"form": "shared"})
PER_ITEM = ("LinUCB", {})
NEURAL_UCB = ("NeuralUCB", {})

#: world label -> Nonlinear-v0 parameters
WORLDS = {
    "default": {"n_items": 100, "n_candidates": 10},
    "scale=5": {"n_items": 100, "n_candidates": 10, "scale": 5.0},
    "16-dim": {"n_items": 100, "n_candidates": 10, "user_dim": 16, "item_dim": 16},
    "1,000 items": {"n_items": 1000, "n_candidates": 10},
    "products=False, scale=5": {"n_items": 100, "n_candidates": 10, "products": False, "scale": 5.0},
    "products=False": {"n_items": 100, "n_candidates": 10, "products": False},
}

#: (world, policy label, (type, params), decisions)
ROWS = [
    ("default", "shared LinUCB", SHARED, 16_000),
    ("default", "per-item LinUCB", PER_ITEM, 16_000),
    ("default", "NeuralUCB", NEURAL_UCB, 16_000),
    ("default", "NeuralUCB xu", ("NeuralUCB", {"head_fit": "xu"}), 16_000),
    ("default", "NeuralUCB 128 steps", ("NeuralUCB", {"train_steps": 128}), 16_000),
    ("default", "NeuralUCB gradient a=0.3", ("NeuralUCB", {"uncertainty": "gradient_diag", "alpha": 0.3}), 16_000),
    ("default", "NeuralUCB gradient a=0.3 restart anchor", ("NeuralUCB", {
        "uncertainty": "gradient_diag", "alpha": 0.3, "train_steps": 128, "restart": True, "anchor": 0.001}), 16_000),
    ("default", "NeuralUCB xu restart", ("NeuralUCB", {"head_fit": "xu", "train_steps": 128, "restart": True}), 16_000),
    ("scale=5", "shared LinUCB", SHARED, 16_000),
    ("scale=5", "per-item LinUCB", PER_ITEM, 16_000),
    ("scale=5", "NeuralUCB", NEURAL_UCB, 16_000),
    ("16-dim", "shared LinUCB", SHARED, 16_000),
    ("16-dim", "per-item LinUCB", PER_ITEM, 16_000),
    ("16-dim", "NeuralUCB", NEURAL_UCB, 16_000),
    ("1,000 items", "shared LinUCB", SHARED, 16_000),
    ("1,000 items", "per-item LinUCB", PER_ITEM, 16_000),
    ("1,000 items", "NeuralUCB", NEURAL_UCB, 16_000),
    ("products=False, scale=5", "shared LinUCB", SHARED, 16_000),
    ("products=False, scale=5", "per-item LinUCB", PER_ITEM, 16_000),
    ("products=False, scale=5", "NeuralUCB", NEURAL_UCB, 16_000),
    ("products=False, scale=5", "NeuralLinear", ("NeuralLinear", {}), 16_000),
    ("products=False, scale=5", "NeuralTS", ("NeuralTS", {}), 16_000),
    ("products=False, scale=5", "NeuralEpsilonGreedy e=0.05", ("NeuralEpsilonGreedy", {"epsilon": 0.05}), 16_000),
    ("default", "shared LinUCB", SHARED, 64_000),
    ("default", "per-item LinUCB", PER_ITEM, 64_000),
    ("default", "NeuralUCB", NEURAL_UCB, 64_000),
    ("default", "NeuralLinear", ("NeuralLinear", {}), 64_000),
    ("products=False", "shared LinUCB", SHARED, 64_000),
    ("products=False", "NeuralUCB", NEURAL_UCB, 64_000),
    ("products=False", "NeuralLinear", ("NeuralLinear", {}), 64_000),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="also the 64,000-decision rows")
    parser.add_argument("--rows", nargs="*", help='rows as "world: policy" (default: all that --long allows)')
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="runs/nonlinear")
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if args.long or r[3] <= 16_000]
    if args.rows:
        rows = [r for r in ROWS if f"{r[0]}: {r[1]}" in args.rows]
        if not rows:
            parser.error(f"no row matches {args.rows}; rows: {[f'{w}: {p}' for w, p, _, _ in ROWS]}")
    table = []
    for world, horizon in dict.fromkeys((w, h) for w, _, _, h in rows):
        specs = [PolicySpec(label, kind, params) for w, label, (kind, params), h in rows if (w, h) == (world, horizon)]
        config = ExperimentConfig(
            name="nonlinear", horizon=horizon, batch_size=32, seeds=(0, 1, 2),
            environment=EnvironmentSpec(id="banditrec/Nonlinear-v0", params=WORLDS[world]),
            policies=tuple(specs), n_checkpoints=20, jobs=args.jobs,
        )
        folder = Path(args.out) / f"{world.replace(', ', '_').replace(',', '')}-{horizon}"
        result = run_experiment(config, folder, progress=False, plot=False)
        for spec in specs:
            regret = result.summary.set_index("policy").loc[spec.name, "final_cumulative_regret"]
            table.append((world, f"{horizon:,}", spec.name, f"{regret:,.0f}"))
    widths = [max(len(str(r[i])) for r in table + [("world", "decisions", "policy", "regret")]) for i in range(4)]
    for row in [("world", "decisions", "policy", "regret"), *table]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
