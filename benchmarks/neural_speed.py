"""Decisions per second of each neural policy on a world with K = 100 candidates.

World: banditrec/Nonlinear-v0 with 1,000 items and K = 100 candidates per user (8-d user and item
features). Each policy trains ``--train-steps`` minibatch steps of 64 (Adam) every
``--train-every`` decisions (default 32 and 32, the policies' defaults: one gradient step per
decision), one hidden layer of 64, on ``--device`` (auto: CUDA when present). For each batch
size B the policy plays ``--decisions`` decisions after a warm-up of one training round; the
table shows the median over ``--repeats`` runs, end to end through environment and regret.

    python benchmarks/neural_speed.py [--device auto] [--decisions 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from banditrec.environments import make_vector_env
from banditrec.models import resolve_device
from banditrec.policies import make_policy

POLICIES = {
    "NeuralEpsilonGreedy": {},
    "NeuralLinear (TS, last layer)": {"__type__": "NeuralLinear"},
    "NeuralUCB (last layer)": {"__type__": "NeuralUCB"},
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--decisions", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,64,1024")
    parser.add_argument("--train-every", type=int, default=32, help="decisions between training rounds")
    parser.add_argument("--train-steps", type=int, default=32, help="minibatch steps per training round")
    args = parser.parse_args()
    try:
        device = str(resolve_device(args.device))
    except ValueError as exc:  # e.g. --device cuda on a machine without one: one line, not a traceback
        raise SystemExit(f"{Path(__file__).name}: {exc}") from None
    batches = [int(b) for b in args.batches.split(",")]
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
