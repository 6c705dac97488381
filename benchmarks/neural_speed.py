"""Decisions per second of each neural policy on a world with K = 100 candidates.

World: banditrec/Nonlinear-v0 with 1,000 items and K = 100 candidates per user (8-d user and item
features). Each policy trains ``--train-steps`` minibatch steps of 64 (Adam) every
``--train-every`` decisions (default 32 and 32, the policies' defaults: one gradient step per
decision), one hidden layer of 64, on ``--device`` (auto: CUDA when present). For each batch
size B the policy plays ``--decisions`` decisions after a warm-up of one training round; the
table shows the median over ``--repeats`` runs, end to end through environment and regret.

Prints one line naming the device, versions and schedule, then one row per policy (six neural
policies and shared LinUCB, on the CPU, for scale) with its median decisions/s at each B of
``--batches`` (at least ``4 × B`` decisions each). Run time at the defaults: about 5 minutes on
the 2-core development machine's CPU (5 min 10 s in benchmarks/README.md).

    python benchmarks/neural_speed.py [--device auto] [--decisions 4096] [--repeats 3] [--batches 1,64,1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from banditrec.environments import make_vector_env
from banditrec.policies import make_policy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark helpers
from _cli import comma_list, positive_int, torch_device

POLICIES = {
    "NeuralEpsilonGreedy": {},
    "NeuralLinear (TS, last layer)": {"__type__": "NeuralLinear"},
    "NeuralUCB (last layer)": {"__type__": "NeuralUCB"},
    "NeuralUCB (last layer, Xu et al.)": {"__type__": "NeuralUCB", "head_fit": "xu"},
    "NeuralTS (gradient, diagonal)": {"__type__": "NeuralTS", "uncertainty": "gradient_diag"},
    "NeuralUCB (gradient, diagonal)": {"__type__": "NeuralUCB", "uncertainty": "gradient_diag", "alpha": 0.3},
    "LinUCB (shared, concat) for scale": {"__type__": "LinUCB", "form": "shared", "features": "concat"},
}


def rate(name: str, params: dict, batch: int, decisions: int, device: str, schedule: dict) -> float:
    params = dict(params)
    ptype = params.pop("__type__", name)
    if ptype.startswith("Neural"):
        params.update(device=device, **schedule)
    env = make_vector_env("banditrec/Nonlinear-v0", num_envs=batch, n_items=1000, n_candidates=100)
    env.reset(seed=0)
    policy = make_policy(ptype, seed=0, **params)
    obs = env.observation
    steps = max(1, decisions // batch)
    warmup = max(1, 64 // batch)
    for t in range(warmup + steps):
        if t == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        actions, _ = policy.act(obs)
        obs_next, rewards, _, _ = env.step_batch(actions)
        policy.update(obs, actions, rewards)
        obs = obs_next
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=torch_device, default="auto",
                        help="torch device of the neural policies: auto (CUDA when present, else the CPU), "
                             "cpu, cuda or cuda:N; refused if this machine lacks it (default %(default)s)")
    parser.add_argument("--decisions", type=positive_int, default=4096, metavar="N",
                        help="timed decisions per run, after a warm-up (whole batches, at least 4 × B; "
                             "default %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                        help="runs per cell, reported as the median (default %(default)s)")
    parser.add_argument("--batches", type=comma_list(positive_int, what="batch sizes"), default="1,64,1024",
                        metavar="LIST",
                        help="comma-separated batch sizes B, one column each (default %(default)s)")
    parser.add_argument("--train-every", type=positive_int, default=32, metavar="N",
                        help="decisions between training rounds (default %(default)s)")
    parser.add_argument("--train-steps", type=positive_int, default=32, metavar="N",
                        help="minibatch steps of 64 per training round (default %(default)s)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    device, batches = args.device, args.batches
    card = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or platform.machine()
    schedule = {"train_every": args.train_every, "train_steps": args.train_steps}
    print(f"device {device} ({card}), torch {torch.__version__}, {args.decisions} decisions, median of {args.repeats}, "
          f"training {args.train_steps} steps every {args.train_every} decisions")
    print(f"{'policy':<36}" + "".join(f"{'B=' + str(b):>12}" for b in batches) + "   (decisions/s)")
    for name, params in POLICIES.items():
        cells = []
        for b in batches:
            n = max(args.decisions, 4 * b)
            cells.append(statistics.median(rate(name, params, b, n, device, schedule) for _ in range(args.repeats)))
        print(f"{name:<36}" + "".join(f"{c:>12,.0f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
