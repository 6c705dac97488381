"""Memory and speed at scale: a world of 1,000,000 users × 100,000 items, and LinUCB over 1,000 arms.

Every configuration runs end to end through the normal path — ``runner.run_trial``: the
registered ``banditrec/Linear-v0`` world (with ``n_users``: a fixed population of users), the
vector environment, the policy from ``make_policy`` and exact pseudo-regret — in its own fresh
Python process, one after another, so each one's RSS high-water mark is its own.

1. **Shared LinUCB on the big world**: 10⁶ users, 10⁵ items, K = 100 candidates per user,
   B = 1,024 users per step, d = 8; one ridge regression over φ = (user, 1) ⊗ (item, 1)
   (81 features, ``features="outer"``, the form in which this world is well specified).
2. **Disjoint LinUCB over 1,000 arms**: the same 10⁶ users with d = 32 and a catalogue of 1,000
   items; one ridge regression per item over (user, 1) (33 features), its statistics stacked in
   arrays of shape (n_arms, 33, 33) — no per-arm Python objects. K = 100 candidates drawn from
   the 1,000 arms per user (a recommender's slate from a catalogue) and K = 1,000 (every arm for
   every user, the classic K-armed form), at B = 1 and B = 64.

Random, on the same world and batch, is the floor set by environment and runner alone.

Memory, per configuration: the RSS just before the world is built (interpreter, numpy, torch,
pandas), the RSS high-water mark at the end (``resource.getrusage``) minus it, the bytes of the
world's arrays and of the policy's state (``nbytes``), and, from a second short run of the same
configuration under ``tracemalloc`` (numpy reports its buffers to it), the most memory held
during the steps beyond world and policy state: the per-step working set.

Prints a "done" line per configuration on stderr as it finishes, then one line of versions and
the RSS before the world is built, and a Markdown table with one row per configuration (rows 0–1:
part 1; rows 2–9: part 2, LinUCB then Random for each K and B): part, world, policy, B, K,
decisions, build seconds, decisions/s, peak RSS growth, world arrays, policy state, step working
set (MB) and regret per decision; then the disjoint LinUCB's array shapes. Run time at the
defaults: about 40 s to a minute on the 2-core development machine (ten fresh processes, one
after another), each process peaking at about 0.65 GB.

    python benchmarks/scale.py [--steps 16] [--decisions-b1 2000] [--decisions-b64 16384] [--only N,...]

Timing is on one thread (OPENBLAS/OMP/MKL_NUM_THREADS=1, set here unless already set).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import sys
import time
import tracemalloc
from typing import Any

import numpy as np

import banditrec
from banditrec import runner
from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.policies import ridge_kernels

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark helpers
from _cli import comma_list, int_below, positive_int
from _memory import MB, current_rss, peak_rss, run_child

BIG_WORLD = {"n_users": 1_000_000, "n_items": 100_000, "n_candidates": 100, "context_dim": 8}
ARMS_WORLD = {"n_users": 1_000_000, "n_items": 1_000, "context_dim": 32}
SHARED = ("LinUCB", {"alpha": 1.0, "form": "shared", "features": "outer"})
DISJOINT = ("LinUCB", {"alpha": 1.0, "form": "disjoint"})
RANDOM = ("Random", {})


def configurations(steps: int, decisions_b1: int, decisions_b64: int) -> list[dict[str, Any]]:
    """The benchmark's rows: world parameters, policy, batch size and decisions."""
    rows = []
    for label, (ptype, params) in (("shared LinUCB (outer, 81 features)", SHARED), ("Random", RANDOM)):
        rows.append({"part": 1, "label": label, "world": BIG_WORLD, "type": ptype, "params": params,
                     "batch": 1024, "decisions": steps * 1024})
    for K in (100, 1000):
        world = dict(ARMS_WORLD, n_candidates=K)
        for batch, decisions in ((1, decisions_b1), (64, decisions_b64)):
            for label, (ptype, params) in (("disjoint LinUCB (1,000 arms × 33 features)", DISJOINT),
                                           ("Random", RANDOM)):
                rows.append({"part": 2, "label": label, "world": world, "type": ptype, "params": params,
                             "batch": batch, "decisions": decisions})
    return rows




def world_bytes(sim) -> int:
    """Bytes of the numpy arrays a simulator holds."""
    return sum(v.nbytes for v in vars(sim).values() if isinstance(v, np.ndarray))


def policy_state(policy) -> tuple[int, dict[str, tuple[int, ...]]]:
    """Bytes and shapes of the learned arrays of a policy's estimator (names ending in ``_``)."""
    est = getattr(policy, "estimator", None)
    arrays = {k: v for k, v in vars(est).items() if k.endswith("_") and isinstance(v, np.ndarray)} if est else {}
    return sum(v.nbytes for v in arrays.values()), {k: v.shape for k, v in arrays.items()}


def _trial(cfg: dict[str, Any], decisions: int, on_built=None):
    """``runner.run_trial`` of one configuration; ``on_built(env)`` right after the world is built.

    The runner's own ``build_env`` and ``make_policy`` are wrapped (and restored) to time the
    build and to keep a handle on the world and the policy for their sizes.
    """
    spec = EnvironmentSpec(id="banditrec/Linear-v0", params=dict(cfg["world"]))
    config = ExperimentConfig("scale", decisions, cfg["batch"], (0,), spec,
                              (PolicySpec(cfg["label"], cfg["type"], dict(cfg["params"])),), 10)
    seen: dict[str, Any] = {}
    build_env, make_policy = runner.build_env, runner.make_policy

    def timed_build(spec, batch_size):
        start = time.perf_counter()
        env = build_env(spec, batch_size)
        seen["build_s"], seen["env"] = time.perf_counter() - start, env
        if on_built is not None:
            on_built(env)
        return env

    def kept_policy(*args, **kwargs):
        seen["policy"] = make_policy(*args, **kwargs)
        return seen["policy"]

    runner.build_env, runner.make_policy = timed_build, kept_policy
    try:
        result = runner.run_trial(config, config.policies[0], seed=0)
    finally:
        runner.build_env, runner.make_policy = build_env, make_policy
    return result, seen


def measure(cfg: dict[str, Any], traced_steps: int = 2) -> dict[str, Any]:
    """Run one configuration (timed, then briefly under tracemalloc) and return its figures."""
    ridge_kernels.warm_up()  # load the compiled loops (0.3–0.4 s once per process) before the clock
    rss_before = current_rss()
    result, seen = _trial(cfg, cfg["decisions"])
    peak = peak_rss()
    env, policy = seen.pop("env"), seen.pop("policy")
    state_bytes, state_shapes = policy_state(policy)
    out = {
        "rss_before_mb": rss_before / MB,
        "peak_rss_delta_mb": (peak - rss_before) / MB,
        "build_s": seen["build_s"],
        "world_mb": world_bytes(env.simulator) / MB,
        "policy_mb": state_bytes / MB,
        "policy_shapes": {k: list(v) for k, v in state_shapes.items()},
        "decisions": result.decisions,
        "decisions_per_s": result.decisions_per_s,
        "regret_per_decision": float(result.table["cumulative_regret"].iloc[-1]) / result.decisions,
        "observation_mb": sum(getattr(env.observation, f).nbytes for f in
                              ("user_features", "item_features", "item_ids", "mask", "user_ids")) / MB,
    }
    del env, policy, result, seen
    # Second, short run under tracemalloc: what the steps hold beyond the world (and, at the end,
    # the policy's state, which may grow during the run).
    marks: dict[str, int] = {}

    def after_build(env):
        marks["world"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

    tracemalloc.start()
    try:
        _, seen = _trial(cfg, traced_steps * cfg["batch"], on_built=after_build)
        peak_steps = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out["traced_world_mb"] = marks["world"] / MB
    out["step_working_set_mb"] = (peak_steps - marks["world"] - policy_state(seen["policy"])[0]) / MB
    return out


def table(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    head = ("| part | world | policy | B | K | decisions | build s | decisions/s | peak RSS Δ MB | "
            "world arrays MB | policy state MB | step working set MB | regret/decision |")
    lines = [head, "|" + "---|" * 3 + "---:|" * 10]
    for cfg, r in rows:
        w = cfg["world"]
        world = f"{w['n_users']:,} users × {w['n_items']:,} items, d = {w['context_dim']}"
        lines.append(
            f"| {cfg['part']} | {world} | {cfg['label']} | {cfg['batch']:,} | {w['n_candidates']:,} | "
            f"{r['decisions']:,} | {r['build_s']:.2f} | {r['decisions_per_s']:,.0f} | {r['peak_rss_delta_mb']:,.0f} | "
            f"{r['world_mb']:,.0f} | {r['policy_mb']:,.1f} | {r['step_working_set_mb']:,.0f} | "
            f"{r['regret_per_decision']:.3f} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=16, metavar="N",
                        help="steps of B = 1,024 users on the big world, part 1 (default %(default)s)")
    parser.add_argument("--decisions-b1", type=positive_int, default=2000, metavar="N",
                        help="decisions at B = 1 over the 1,000 arms, part 2 (default %(default)s)")
    parser.add_argument("--decisions-b64", type=positive_int, default=16384, metavar="N",
                        help="decisions at B = 64 over the 1,000 arms, part 2, rounded up to whole batches "
                             "(default %(default)s)")
    n_rows = len(configurations(1, 1, 1))
    parser.add_argument("--only", type=comma_list(int_below(n_rows, "row number"), allow_empty=True,
                                                  what="row numbers"),
                        default="", metavar="LIST",
                        help=f"comma-separated row numbers to run, 0 to {n_rows - 1} in the table's order "
                             "(default: every row)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    cfgs = configurations(args.steps, args.decisions_b1, args.decisions_b64)
    if args.only:
        cfgs = [cfgs[i] for i in args.only]
    rows = []
    for cfg in cfgs:
        rows.append((cfg, run_child(__file__, cfg, f"configuration {cfg['label']}")))
        print(f"  done: part {cfg['part']} {cfg['label']} B={cfg['batch']} K={cfg['world']['n_candidates']}",
              file=sys.stderr, flush=True)
    base = min(r["rss_before_mb"] for _, r in rows)
    print(f"banditrec {banditrec.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}; each row a fresh process "
          f"whose RSS before the world is built is about {base:,.0f} MB (interpreter, numpy, torch, pandas)\n")
    print(table(rows))
    for cfg, r in rows:
        if r["policy_shapes"] and cfg["part"] == 2:
            shapes = ", ".join(f"{k} {tuple(v)}" for k, v in r["policy_shapes"].items())
            print(f"\npolicy state of the disjoint LinUCB (B = {cfg['batch']}, K = {cfg['world']['n_candidates']}): "
                  f"{shapes}")
            break


if __name__ == "__main__":
    main()
