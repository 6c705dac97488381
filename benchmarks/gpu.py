"""Neural policies with a two-tower model on MovieLens-100k, on the GPU and on the CPU side by side.

World: ``banditrec/MovieLens100k-v0`` (943 users, 1,682 movies, the fitted logistic-MF truth;
24 user and 22 item features), K = 100 candidates per user, B = 4,096 users per step. Policies:
NeuralLinear (Thompson sampling from the Normal-Inverse-Gamma posterior of the last-layer head)
and NeuralEpsilonGreedy, both with ``model="two_tower"`` (towers of ``--hidden``, dot head, no id
embeddings unless ``--ids``), the policies' default schedule (``train_steps`` minibatch steps of
64 every ``train_every`` decisions: one Adam step per decision) and one torch CPU thread.

Each (policy, device) runs in its own fresh process, end to end through environment, policy and
regret: one warm-up step (builds the network, first training), then ``--repeats`` timed runs of
``--steps`` steps each; decisions/s is the median. The time of each step is split into the
policy's ``act``, the environment's ``step_batch`` and the policy's ``update`` (with
``torch.cuda.synchronize()`` at the boundaries on CUDA). Peak GPU memory is
``torch.cuda.max_memory_allocated`` over the whole run; peak RSS the process's high-water mark
(``resource.getrusage``), also shown as the growth over the RSS before the world was built.

On CUDA the default row is the whole GPU path: the world simulated on the device
(``MovieLens100k-v0`` with ``device="cuda"``, a :class:`~banditrec.environments.DeviceWorld`),
decisions on the device (``decide_on="auto"``) and training rounds replayed from CUDA graphs
(``cuda_graph="auto"``). ``--compare`` adds rows that switch one piece back, to show what each
saves: ``eager`` (``cuda_graph="off"``: every training step launched from Python), ``numpy-world``
(the numpy world on the host, batches copied to the device and decisions back) and ``host``
(``decide_on="host"``: posterior, draws and argmax in numpy on the host). With ``--device cuda``
(or ``auto`` on a machine with CUDA) every policy also runs on the CPU with the same settings (the
numpy world, the CPU's usual path), for the side-by-side.

Prints each row as it finishes, then one line of versions and settings and a Markdown table, one
row per (policy, device, variant): world, where decisions run, eager or graphed training, the
device's name, B, K, median/min/max decisions/s, act/env/update ms per step, peak GPU and RSS MB,
RSS growth and regret per decision; then GPU / CPU per policy when both ran. Needs the MovieLens
data (downloaded to banditrec's cache on first use). Run time at the defaults: about 50 s on the
2-core development machine without CUDA (one CPU row per policy; NeuralLinear's process peaks at
about 2.5 GB); a few minutes with CUDA (three GPU rows and a CPU row per policy, each in a fresh
process; ``gpu_session.sh`` allows 5 minutes).

    python benchmarks/gpu.py [--device auto] [--steps 1] [--repeats 3] [--batch 4096] [--compare eager,numpy-world]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from banditrec.environments import make_vector_env
from banditrec.policies import make_policy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark helpers
from _cli import comma_list, int_range, nonnegative_int, one_of, positive_int, torch_device
from _memory import MB, current_rss, peak_rss, run_child

POLICIES = ("NeuralLinear", "NeuralEpsilonGreedy")
NEURAL_POLICIES = ("NeuralLinear", "NeuralEpsilonGreedy", "NeuralUCB", "NeuralTS")
COMPARE = ("eager", "numpy-world", "host")  # the rows --compare can add beside the default one
MOVIELENS_ITEMS = 1682  # K can be at most the catalogue




def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else cpu_name()


def measure(opts: dict[str, Any]) -> dict[str, Any]:
    """One (policy, device): warm-up, then ``repeats`` timed runs of ``steps`` steps."""
    device, cuda = opts["device"], opts["device"].startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    rss_before = current_rss()
    start = time.perf_counter()
    world_device = device if opts["world"] == "device" else "numpy"
    env = make_vector_env("banditrec/MovieLens100k-v0", num_envs=opts["batch"], n_candidates=opts["candidates"],
                          device=world_device)
    env.reset(seed=0)
    build_s = time.perf_counter() - start
    sim = env.simulator
    params: dict[str, Any] = {
        "model": "two_tower",
        "hidden": tuple(opts["hidden"]),
        "device": device,
        "train_every": opts["train_every"],
        "train_steps": opts["train_steps"],
        "num_threads": opts["num_threads"],
        "decide_on": opts["decide_on"],
        "cuda_graph": opts["cuda_graph"],
    }
    if opts["ids"]:
        params["model_options"] = {"n_users": sim.n_users, "n_items": sim.n_items}
    policy = make_policy(opts["policy"], seed=0, **params)
    obs = env.observation
    phases = {"act": 0.0, "env": 0.0, "update": 0.0}
    regret = 0.0

    def step(timed: bool) -> None:
        nonlocal obs, regret
        t0 = time.perf_counter()
        actions, _ = policy.act(obs)
        sync()
        t1 = time.perf_counter()
        next_obs, rewards, _, info = env.step_batch(actions)
        t2 = time.perf_counter()
        policy.update(obs, actions, rewards)
        sync()
        t3 = time.perf_counter()
        obs = next_obs
        if timed:
            phases["act"] += t1 - t0
            phases["env"] += t2 - t1
            phases["update"] += t3 - t2
            regret += float(info["regret"].sum())

    step(timed=False)  # warm-up: builds the network, allocates, first training round
    rates = []
    for _ in range(opts["repeats"]):
        sync()
        start = time.perf_counter()
        for _ in range(opts["steps"]):
            step(timed=True)
        sync()
        rates.append(opts["steps"] * opts["batch"] / (time.perf_counter() - start))
    n_steps = opts["repeats"] * opts["steps"]
    return {
        "rates": rates,
        "median": statistics.median(rates),
        "act_ms": 1e3 * phases["act"] / n_steps,
        "env_ms": 1e3 * phases["env"] / n_steps,
        "update_ms": 1e3 * phases["update"] / n_steps,
        "build_s": build_s,
        "regret_per_decision": regret / (n_steps * opts["batch"]),
        "peak_gpu_mb": torch.cuda.max_memory_allocated(torch.device(device)) / MB if cuda else None,
        "peak_rss_mb": peak_rss() / MB,
        "peak_rss_delta_mb": (peak_rss() - rss_before) / MB,
        "device_name": device_name(device),
        "decide_on": "device" if policy.estimator.on_device_ else "host",
        "graphs": policy.estimator.graph_rounds_ is not None and policy.estimator.graph_rounds_.graph is not None,
        "world": "device" if env.core.device is not None else "numpy",
    }


def table(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    lines = [
        (
            "| policy | device | world | decisions on | training | device name | B | K | decisions/s (median) | min | max | "
            "act ms/step | env ms/step | update ms/step | peak GPU MB | peak RSS MB | RSS growth MB | regret/decision |"
        ),
        "|---|---|---|---|---|---|" + "---:|" * 12,
    ]
    for opts, r in rows:
        gpu = f"{r['peak_gpu_mb']:,.0f}" if r["peak_gpu_mb"] is not None else "–"
        lines.append(
            f"| {opts['policy']} | {opts['device']} | {r['world']} | {r['decide_on']} | "
            f"{'CUDA graphs' if r['graphs'] else 'eager'} | {r['device_name']} | {opts['batch']:,} | {opts['candidates']} | "
            f"{r['median']:,.0f} | {min(r['rates']):,.0f} | {max(r['rates']):,.0f} | {r['act_ms']:,.0f} | "
            f"{r['env_ms']:,.0f} | {r['update_ms']:,.0f} | {gpu} | {r['peak_rss_mb']:,.0f} | "
            f"{r['peak_rss_delta_mb']:,.0f} | {r['regret_per_decision']:.4f} |"
        )
    by_policy: dict[str, dict[str, float]] = {}
    for opts, r in rows:
        if opts["variant"] == "default":
            by_policy.setdefault(opts["policy"], {})[opts["device"]] = r["median"]
    for name, rates in by_policy.items():
        gpu = [v for k, v in rates.items() if k.startswith("cuda")]
        if gpu and "cpu" in rates:
            lines.append(f"\n{name}: GPU / CPU = {gpu[0] / rates['cpu']:.1f}×")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=torch_device, default="auto",
                        help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N; with CUDA every "
                             "policy also runs on the CPU; refused if this machine lacks it "
                             "(default %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=1, metavar="N",
                        help="steps of B users per timed run (default %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                        help="timed runs per row after the warm-up step, reported as median, min and max "
                             "(default %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=4096, metavar="B",
                        help="B, users per step (default %(default)s)")
    parser.add_argument("--candidates", type=int_range(1, MOVIELENS_ITEMS, "a number of candidates"),
                        default=100, metavar="K",
                        help=f"K, candidates per user, 1 to {MOVIELENS_ITEMS:,} (the movies; "
                             "default %(default)s)")
    parser.add_argument("--hidden", type=comma_list(positive_int, unique=False, what="layer sizes"),
                        default="64", metavar="LIST",
                        help="hidden layer sizes of each tower, comma-separated (default %(default)s)")
    parser.add_argument("--train-every", type=positive_int, default=32, metavar="N",
                        help="decisions between training rounds (default %(default)s)")
    parser.add_argument("--train-steps", type=positive_int, default=32, metavar="N",
                        help="Adam steps of 64 per training round (default %(default)s)")
    parser.add_argument("--num-threads", type=nonnegative_int, default=1, metavar="N",
                        help="torch CPU threads inside the policy; 0 leaves torch's own setting "
                             "(default %(default)s)")
    parser.add_argument("--ids", action="store_true", help="add user and item id embeddings to the towers")
    parser.add_argument("--policies", type=comma_list(one_of(NEURAL_POLICIES, "policy"), what="policies"),
                        default=",".join(POLICIES), metavar="LIST",
                        help=f"comma-separated policies, from {', '.join(NEURAL_POLICIES)} "
                             "(default %(default)s)")
    parser.add_argument("--compare", type=comma_list(one_of(COMPARE, "row"), allow_empty=True,
                                                     what="rows"),
                        default="eager,numpy-world", metavar="LIST",
                        help=f"extra CUDA rows, comma-separated, from {', '.join(COMPARE)}; '' for none "
                             "(default %(default)s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    device = args.device
    devices = [device, "cpu"] if device.startswith("cuda") else ["cpu"]
    base = {
        "batch": args.batch, "candidates": args.candidates, "steps": args.steps, "repeats": args.repeats,
        "hidden": args.hidden, "train_every": args.train_every,
        "train_steps": args.train_steps, "num_threads": args.num_threads, "ids": args.ids,
    }
    variants = {
        "default": {"world": "device", "decide_on": "auto", "cuda_graph": "auto"},
        "eager": {"world": "device", "decide_on": "auto", "cuda_graph": "off"},
        "numpy-world": {"world": "numpy", "decide_on": "auto", "cuda_graph": "auto"},
        "host": {"world": "numpy", "decide_on": "host", "cuda_graph": "auto"},
    }
    compare = args.compare
    rows = []
    # Each row is printed as it finishes (a run stopped early keeps what it measured), then the table.
    for name in args.policies:
        for dev in devices:
            if dev == "cpu":  # the CPU's usual path: the numpy world, decisions in numpy
                todo = [("default", {"world": "numpy", "decide_on": "auto", "cuda_graph": "auto"})]
            else:
                todo = [(v, variants[v]) for v in ["default", *compare]]
            for variant, settings in todo:
                opts = dict(base, policy=name, device=dev, variant=variant, **settings)
                rows.append((opts, run_child(__file__, opts, f"{name} on {dev} ({variant})")))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    cuda = f", CUDA {torch.version.cuda}" if torch.cuda.is_available() else ", no CUDA device"
    print(f"torch {torch.__version__}{cuda}, numpy {np.__version__}, Python {platform.python_version()}; "
          f"devices: {', '.join(f'{d} = {device_name(d)}' for d in devices)}; torch CPU threads {args.num_threads}, "
          f"BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}; MovieLens-100k, B = {args.batch:,}, "
          f"K = {args.candidates}, two-tower {tuple(base['hidden'])}{' + ids' if args.ids else ''}, "
          f"{args.train_steps} Adam steps of 64 every {args.train_every} decisions; "
          f"median of {args.repeats} × {args.steps} step(s) after a warm-up step\n")
    print(table(rows))


if __name__ == "__main__":
    main()
