"""Reproduce the wheel bandit of Riquelme, Tucker & Snoek (2018), "Deep Bayesian Bandits Showdown".

For each δ, every row plays the same 80,000 contexts per seed (the runner derives the environment's
stream from the seed alone), and a row's score is its normalised cumulative regret,
100 × its cumulative regret / Uniform's cumulative regret on the same seed. Prints a markdown
table (mean ± standard error over seeds, beside the published NeuralLinear row) and saves a plot.

    python experiments/wheel/reproduce.py                      # every default row at every δ, about an hour on 2 cores
    python experiments/wheel/reproduce.py --rows Uniform LinFullPost --cheap-seeds 20

Each (δ, row) is its own run folder under ``--out``; finished trials are reused on a rerun, so an
interrupted run resumes where it stopped. See experiments/wheel/README.md for the deviations from
the paper.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.runner import run_experiment

HERE = Path(__file__).resolve().parent


@dataclass
class Args:
    deltas: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9, 0.95, 0.99],
                                metadata={"help": "wheel radii δ"})
    horizon: int = field(default=80_000, metadata={"help": "contexts (decisions) per trial, as in the paper"})
    batch_size: int = field(default=10, metadata={
        "help": "users per step: decisions are made this many at a time, feedback after each batch"})
    cheap_seeds: int = field(default=10, metadata={"help": "seeds for Uniform and LinFullPost (seconds per trial)"})
    neural_seeds: int = field(default=1, metadata={"help": "seeds for the other neural rows (minutes per trial)"})
    row_seeds: list[str] = field(default_factory=lambda: ["NeuralLinear=2"],
                                 metadata={"help": "ROW=N: N seeds for that row"})
    jobs: int = field(default=2, metadata={"help": "worker processes; each runs one (δ, row) at a time"})
    rows: list[str] = field(default_factory=lambda: list(DEFAULT_ROWS), metadata={"help": "rows to run (names of ROWS)"})
    out: str = field(default="runs/wheel", metadata={
        "help": "run folders, one per (δ, row); finished trials are reused"})
    plot: str = field(default=str(HERE / "normalised_regret.png"), metadata={
        "help": 'where the figure goes ("" for none); --from-runs rewrites it too'})
    from_runs: bool = field(default=False, metadata={
        "help": "run nothing: table and plot from the trials already under --out"})


# Riquelme et al.'s NeuralLinear schedule: one hidden layer of 50, retrain every 50 decisions for
# 100 minibatch steps of 512, RMSProp, every observation kept (buffer_s = -1). Their learning rate
# is inverse-time decayed *within* each retraining and reset before the next:
#     lr_s = 0.1 / (1 + 0.5 s),  s = 0 … 99.
# Our OnlineTraining decays per round instead (lr / (1 + lr_decay · round)) and cannot decay inside
# a round, so we keep lr_decay = 0 and use the constant rate with the same total step length per
# round: mean_s 0.1 / (1 + 0.5 s) = 0.0084.
PAPER_LR = float(np.mean(0.1 / (1.0 + 0.5 * np.arange(100))))
NETWORK = {
    "hidden": [50],
    "train_every": 50,
    "train_steps": 100,
    "batch_size": 512,
    "optimizer": "rmsprop",
    "lr": round(PAPER_LR, 4),
    "lr_decay": 0.0,
    "buffer_size": 80_000,
}

# NeuralLinear as the paper builds it: one network over the context with one output per arm
# (model="multi_output"), one Normal-Inverse-Gamma regression per arm on its last hidden layer.
PAPER_ARCHITECTURE = {**NETWORK, "model": "multi_output", "model_options": {"n_items": 5}, "head": "per_item",
                      "a0": 6.0, "b0": 6.0, "lam": 0.25, "n_mc": 1}
# The paper's training step: TF1's RMSProp at 0.1 / (1 + 0.5 s) within each retraining, clipped at 5.
TF1_STEP = {"optimizer": "rmsprop_tf", "lr": 0.1, "step_decay": 0.5, "max_grad_norm": 5.0}
# ... on the numpy training engine; and what the paper's released code does besides (sixth
# session): its decay never resets (see NeuralLinear-tf-code) and its layers start uniform in ±0.3.
TF1_NUMPY = {**PAPER_ARCHITECTURE, **TF1_STEP, "engine": "numpy"}
CODE_SCHEDULE = {"step_decay_reset": False}
CODE_INIT = {"model_options": {"n_items": 5, "init": "uniform", "init_scale": 0.3}}

# name -> (policy type, hyperparameters, cost class)
ROWS: dict[str, tuple[str, dict, str]] = {
    "Uniform": ("Random", {}, "cheap"),
    # LinFullPost as the paper's code runs it (linear_full_posterior_sampling.py, hparams_linear in
    # main.py): a NIG posterior per arm on the context *with* an intercept (its ContextualDataset
    # appends a 1; "intercept is last component of beta"), a0 = b0 = 6, λ = 0.25, and 2
    # round-robin pulls per arm first. n_mc only sets the Monte-Carlo draws for logged
    # propensities, unused here.
    "LinFullPost": ("LinTS", {"posterior": "nig", "a0": 6.0, "b0": 6.0, "lam": 0.25,
                              "intercept": True, "initial_pulls": 2, "n_mc": 1}, "cheap"),
    # Our rows before the seventh session: no intercept and no initial pulls (kept for comparison).
    "LinFullPost-no_intercept": ("LinTS", {"posterior": "nig", "a0": 6.0, "b0": 6.0, "lam": 0.25,
                                           "intercept": False, "n_mc": 1}, "cheap"),
    # The paper's architecture: one network over the context with one output per arm, and one
    # Bayesian linear regression (with its own noise variance) per arm on its last hidden layer.
    "NeuralLinear": ("NeuralLinear", PAPER_ARCHITECTURE, "neural"),
    # Our earlier default, kept for comparison: an MLP scoring (context, one-hot arm) pairs and one
    # shared posterior over its last hidden layer φ(x, a).
    "NeuralLinear-shared": ("NeuralLinear", {**NETWORK, "a0": 6.0, "b0": 6.0, "lam": 0.25, "n_mc": 1}, "neural"),
    # Fix attempt for δ = 0.99 (not run by default): our last-layer head is one shared NIG posterior,
    # so its noise variance σ² ~ IG(a0 + n/2, ·) shrinks with *all* n decisions, where the paper's
    # per-arm posteriors keep σ² large for rarely pulled arms. With b0 = 600 the posterior mean of σ²
    # stays above 1 for the first ~1,200 decisions and is still about 0.015 at 80,000 (b0 = 6: 1.5e-4).
    "NeuralLinear-b0=600": ("NeuralLinear", {**NETWORK, "a0": 6.0, "b0": 600.0, "lam": 0.25, "n_mc": 1},
                            "neural"),
    # Fix attempt for δ = 0.5 (not run by default): RMSProp at a constant 0.0084 jitters the wheel's
    # boundaries; the paper ends every retraining at 0.1 / (1 + 0.5 · 99) = 0.002. Our per-round
    # decay anneals 0.0084 to that rate over the 1,600 rounds: lr_r = 0.0084 / (1 + 0.002 r).
    "NeuralLinear-lr_decay": ("NeuralLinear", {**NETWORK, "lr_decay": 0.002, "a0": 6.0, "b0": 6.0,
                                               "lam": 0.25, "n_mc": 1}, "neural"),
    # The paper's learning-rate schedule exactly: RMSProp 0.1 / (1 + 0.5 s) over the steps s of each
    # retraining, reset at the next (OnlineTraining.step_decay), instead of the constant 0.0084.
    "NeuralLinear-paper_lr": ("NeuralLinear", {**PAPER_ARCHITECTURE, "lr": 0.1, "step_decay": 0.5}, "neural"),
    # The paper's training step exactly: TensorFlow 1's RMSProp (square average from 1, decay 0.9,
    # where torch's starts at 0 with 0.99, so its first steps are ±10 lr), 0.1 / (1 + 0.5 s) within
    # each retraining, gradients clipped to global norm 5 (their max_grad_norm).
    "NeuralLinear-tf": ("NeuralLinear", {**PAPER_ARCHITECTURE, **TF1_STEP}, "neural"),
    # The same on the numpy training engine (same arithmetic per step to rounding, ~2.4x faster
    # trials), which is what makes ten seeds at every δ affordable on two cores.
    "NeuralLinear-tf-numpy": ("NeuralLinear", TF1_NUMPY, "neural"),
    # ... and on the numba engine (eleventh session: each round of steps one compiled loop, the
    # forward pass for decisions compiled too), to check its regret over a whole 80,000-context run.
    "NeuralLinear-tf-numba": ("NeuralLinear", {**TF1_NUMPY, "engine": "numba"}, "neural"),
    # ... and starting from TF1's initialisation (Glorot-uniform weights, zero biases).
    "NeuralLinear-tf-glorot": ("NeuralLinear", {**PAPER_ARCHITECTURE, **TF1_STEP,
                                                "model_options": {"n_items": 5, "init": "glorot"}}, "neural"),
    # What the paper's published code actually runs (sixth session). Its `assign_lr` "resets" the
    # decay before each retraining by rebinding `self.lr` to a new tensor, but the RMSProp
    # optimizer was built once on the old one, which decays with the global step: lr =
    # 0.1 / (1 + 0.5 · steps so far in the run), ~1.2e-6 by the end. And every layer's weights
    # start uniform in ±0.3 (`init_scale`), biases at 0.
    "NeuralLinear-tf-code": ("NeuralLinear", {**TF1_NUMPY, **CODE_SCHEDULE, **CODE_INIT}, "neural"),
    # ... and with the two remaining differences from that code removed: the head's regression on
    # φ alone (no intercept) and 2 round-robin pulls per arm before the first draw.
    "NeuralLinear-tf-code-exact": ("NeuralLinear", {**TF1_NUMPY, **CODE_SCHEDULE, **CODE_INIT,
                                                    "intercept": False, "initial_pulls": 2}, "neural"),
    # The two differences of NeuralLinear-tf-code one at a time: the run-long decay alone, and the
    # uniform ±0.3 initialisation alone (with the per-retraining reset).
    "NeuralLinear-tf-global_decay": ("NeuralLinear", {**TF1_NUMPY, **CODE_SCHEDULE}, "neural"),
    "NeuralLinear-tf-uniform": ("NeuralLinear", {**TF1_NUMPY, **CODE_INIT}, "neural"),
    # How fast the per-retraining decay should be (sixth session, 4 seeds each at δ = 0.5, B = 1):
    # the paper's 0.5 against 0.1, 0.2, 2 and 5 (lr 0.1 / (1 + step_decay · s), reset each time).
    **{f"NeuralLinear-tf-sd{decay:g}": ("NeuralLinear", {**TF1_NUMPY, "step_decay": decay}, "neural")
       for decay in (0.1, 0.2, 2.0, 5.0)},
    # NeuralLinear-tf with Xu et al.'s head fitting (seventeenth session, exploratory): the per-arm
    # NIG regressions keep decision-time φ, never refitted, and the body trains through their θ.
    # Not the NeuralLinear (whose posterior is refreshed from the buffer at each retraining).
    "NeuralLinear-tf-xu": ("NeuralLinear", {**{k: v for k, v in TF1_NUMPY.items() if k != "engine"},
                                            "head_fit": "xu"}, "neural"),
    # ε_t = 0.1 / (1 + t/1000): about 100/t exploration, untuned.
    "NeuralGreedy": ("NeuralEpsilonGreedy", {**NETWORK, "epsilon": 0.1, "decay": 1.0}, "neural"),
    # The other two neural rows on NeuralLinear-tf-numpy's network and training (the paper's
    # architecture, TF1 step, numpy engine) instead of the shared MLP (seventh session): the same
    # ε schedule; Neural-LinUCB with one ridge regression per arm on the last layer, λ = 0.25.
    "NeuralGreedy-tf": ("NeuralEpsilonGreedy", {**{k: v for k, v in TF1_NUMPY.items()
                                                   if k not in ("head", "a0", "b0", "lam", "n_mc")},
                                                "epsilon": 0.1, "decay": 1.0}, "neural"),
    "Neural-LinUCB-tf": ("NeuralUCB", {**{k: v for k, v in TF1_NUMPY.items() if k not in ("a0", "b0", "n_mc")},
                                       "uncertainty": "last_layer", "alpha": 1.0}, "neural"),
    # Neural-LinUCB-tf as Xu et al.'s Algorithm 1 runs it (seventeenth session): the per-arm ridge
    # regressions keep φ as it was at each decision (never refitted from the buffer) and the
    # network's body trains through their θ (head_fit="xu"); the torch engine, which that needs.
    "Neural-LinUCB-xu": ("NeuralUCB", {**{k: v for k, v in TF1_NUMPY.items() if k not in ("a0", "b0", "n_mc", "engine")},
                                       "uncertainty": "last_layer", "alpha": 1.0, "head_fit": "xu"}, "neural"),
    # Neural-LinUCB (Xu et al. 2020): ridge regression on the last hidden layer, untuned alpha.
    "Neural-LinUCB": ("NeuralUCB", {**NETWORK, "uncertainty": "last_layer", "alpha": 1.0, "lam": 0.25},
                      "neural"),
}
DEFAULT_ROWS = ("Uniform", "LinFullPost", "NeuralLinear", "NeuralGreedy", "Neural-LinUCB")

# Riquelme et al. 2018, wheel bandit table (normalised cumulative regret, mean ± s.e.).
PUBLISHED_NEURAL_LINEAR = {0.5: (0.95, 0.02), 0.7: (1.60, 0.03), 0.9: (4.65, 0.18),
                           0.95: (9.56, 0.36), 0.99: (49.63, 2.41)}


def seeds_of(row: str, args: Args) -> tuple[int, ...]:
    """Uniform must cover every seed any row uses: it is the denominator."""
    overrides = dict(item.split("=") for item in args.row_seeds)
    if row == "Uniform":
        return tuple(range(max([args.cheap_seeds, args.neural_seeds] + [int(n) for n in overrides.values()])))
    if row in overrides:
        return tuple(range(int(overrides[row])))
    return tuple(range(args.cheap_seeds if ROWS[row][2] == "cheap" else args.neural_seeds))


def run_one(delta: float, row: str, args: Args) -> tuple[float, str, pd.DataFrame, float]:
    """One (δ, row) run folder: every seed of that row at that δ, reusing finished trials."""
    kind, params, _ = ROWS[row]
    folder = Path(args.out) / f"delta={delta}" / row
    seeds = set(seeds_of(row, args))
    if row == "Uniform":  # keep every seed already run: a smaller --cheap-seeds must not drop the
        # denominator of seeds that other rows' saved trials use (results.csv is rewritten)
        seeds |= {int(p.stem.rsplit("__seed", 1)[1]) for p in folder.glob("trials/*__seed*.csv")}
    config = ExperimentConfig(
        name=f"wheel-{delta}-{row}",
        horizon=args.horizon,
        batch_size=args.batch_size,
        seeds=tuple(sorted(seeds)),
        environment=EnvironmentSpec(id="banditrec/Wheel-v0", params={"delta": delta}),
        policies=(PolicySpec(row, kind, params),),
        n_checkpoints=100,
        jobs=1,  # parallelism is across (δ, row) folders, below
    )
    start = time.perf_counter()
    result = run_experiment(config, folder, progress=False, plot=False)
    return delta, row, result.results, time.perf_counter() - start


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Args):
        default = getattr(Args(), f.name)
        flag, help_text = f"--{f.name.replace('_', '-')}", f.metadata.get("help")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=help_text)
        elif isinstance(default, list):
            parser.add_argument(flag, nargs="+", type=type(default[0]), default=default, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)
    args = Args(**vars(parser.parse_args()))
    bad = [item for item in args.row_seeds if item.count("=") != 1 or not item.split("=")[1].isdigit()
           or item.split("=")[0] not in ROWS]
    if bad:
        parser.error(f"--row-seeds takes ROW=N with ROW among {list(ROWS)}; got {bad}")
    unknown = set(args.rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown row(s) {sorted(unknown)}; choose among {list(ROWS)}")
    out_of_range = [f"--deltas {d}" for d in args.deltas if not 0 < d < 1]
    out_of_range += [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in
                     ("horizon", "batch_size", "cheap_seeds", "neural_seeds", "jobs") if getattr(args, name) < 1]
    out_of_range += [f"--row-seeds {item}" for item in args.row_seeds if int(item.split("=")[1]) < 1]
    if out_of_range:
        parser.error(f"δ must lie in (0, 1) and counts be >= 1; got {', '.join(out_of_range)}")
    if "Uniform" not in args.rows:
        args.rows = ["Uniform", *args.rows]  # the denominator
    return args


def main() -> None:
    args = parse_args()
    # Longest first, so the two workers finish together.
    units = sorted(((d, r) for d in args.deltas for r in args.rows),
                   key=lambda u: (ROWS[u[1]][2] != "neural", args.rows.index(u[1]), -u[0]))
    start = time.perf_counter()
    finals = []

    def final_rows(delta: float, row: str, results: pd.DataFrame) -> pd.DataFrame:
        last = results.groupby("seed")["step"].transform("max") == results["step"]
        return (results[last][["seed", "step", "cumulative_regret"]]
                .rename(columns={"step": "contexts"}).assign(delta=delta, row=row))

    if args.from_runs:  # whatever finished trials each (δ, row) folder holds, with their seed counts
        for d, r in units:
            path = Path(args.out) / f"delta={d}" / r / "results.csv"
            if path.exists():
                finals.append(final_rows(d, r, pd.read_csv(path)))
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_one, d, r, args) for d, r in units]
            for fut in as_completed(futures):
                delta, row, results, wall = fut.result()
                finals.append(final_rows(delta, row, results))
                print(f"[{time.perf_counter() - start:7.0f}s] δ={delta} {row}: {wall:.0f}s, "
                      f"cumulative regret {finals[-1].cumulative_regret.mean():,.0f}", flush=True)
    if not finals:  # --from-runs over folders that hold no finished run
        raise SystemExit(f"no finished runs under {args.out} for δ {args.deltas}: run without --from-runs first")
    finals = pd.concat(finals, ignore_index=True)

    # Normalise each trial by Uniform's regret on the same δ and seed (the same contexts).
    uniform = finals[finals.row == "Uniform"].set_index(["delta", "seed"])["cumulative_regret"]
    missing = sorted(set(zip(finals.delta, finals.seed)) - set(uniform.index))
    if missing:
        deltas = " ".join(str(d) for d in sorted({d for d, _ in missing}))
        raise SystemExit(f"Uniform has no trial for (δ, seed) {missing}, which other rows have; run Uniform "
                         f"on those seeds first (e.g. --rows Uniform --cheap-seeds {max(s for _, s in missing) + 1} "
                         f"--deltas {deltas} --out {args.out} --horizon {args.horizon} --batch-size {args.batch_size})")
    # Saved runs may come from other --horizon values: a trial is normalised only by Uniform's
    # over the same contexts.
    uniform_contexts = finals[finals.row == "Uniform"].set_index(["delta", "seed"])["contexts"]
    keys = list(zip(finals.delta, finals.seed))
    mismatched = finals[finals.contexts.to_numpy() != uniform_contexts.loc[keys].to_numpy()]
    if len(mismatched):
        first = mismatched.iloc[0]
        raise SystemExit(
            f"{len(mismatched)} saved trial(s) ran another number of contexts than Uniform's on the same δ and "
            f"seed (e.g. {first.row} at δ={first.delta}, seed {first.seed}: {first.contexts:,} against "
            f"{uniform_contexts.loc[(first.delta, first.seed)]:,}); rerun them with one --horizon"
        )
    finals["normalised"] = 100.0 * finals.cumulative_regret / uniform.loc[keys].to_numpy()
    horizons = sorted(set(finals.contexts))
    horizon_label = " / ".join(f"{h:,}" for h in horizons)  # one value unless δ differ in horizon
    table = finals.groupby(["row", "delta"])["normalised"].agg(["mean", "std", "count"])
    table["se"] = table["std"] / np.sqrt(table["count"])

    def cell(row: str, delta: float) -> str:
        if (row, delta) not in table.index:
            return "—"
        m, se, n = table.loc[(row, delta), ["mean", "se", "count"]]
        return f"{m:.2f} ± {se:.2f} ({n:.0f})" if n > 1 else f"{m:.2f} (1)"

    print(f"\nNormalised cumulative regret after {horizon_label} contexts (mean ± s.e. over seeds; "
          "seeds in brackets)\n")
    print("| δ | " + " | ".join(map(str, args.deltas)) + " |")
    print("|---|" + "---|" * len(args.deltas))
    for row in args.rows:
        cells = [cell(row, d) for d in args.deltas]
        print(f"| {row} | " + " | ".join(cells) + " |")
    published = [f"{PUBLISHED_NEURAL_LINEAR[d][0]:.2f} ± {PUBLISHED_NEURAL_LINEAR[d][1]:.2f}"
                 if d in PUBLISHED_NEURAL_LINEAR else "—" for d in args.deltas]
    print("| NeuralLinear (published) | " + " | ".join(published) + " |")
    if not args.from_runs:
        print(f"\nwall time {time.perf_counter() - start:.0f}s with {args.jobs} worker(s)")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for row in args.rows:
            if row == "Uniform":
                continue
            ds = [d for d in args.deltas if (row, d) in table.index]
            m = [table.loc[(row, d), "mean"] for d in ds]
            se = [0.0 if np.isnan(s) else s for s in (table.loc[(row, d), "se"] for d in ds)]
            ax.errorbar(ds, m, yerr=se, marker="o", capsize=3, label=row)
        ds = [d for d in args.deltas if d in PUBLISHED_NEURAL_LINEAR]
        ax.errorbar(ds, [PUBLISHED_NEURAL_LINEAR[d][0] for d in ds],
                    yerr=[PUBLISHED_NEURAL_LINEAR[d][1] for d in ds], color="black", linestyle="--",
                    marker="x", capsize=3, label="NeuralLinear (published)")
        ax.set_yscale("log")
        ax.set_xlabel("δ")
        ax.set_ylabel("normalised cumulative regret (Uniform = 100)")
        ax.set_title(f"Wheel bandit, {horizon_label} contexts")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
