"""Warm start, measured: the README's table of a pretrained network handed to a neural policy.

The README's setting: Nonlinear-v0 (100 items, K = 10), 6,000 logged rounds from a uniformly
random logger, an MLP (one hidden layer of 64) pretrained on them with MSE (30 epochs, early
stopping), then 800 online decisions in batches of 16 users. For each of seeds 0-2 (the seed of
the logs, the pretraining, the policy and the online users) it plays

- cold: an untrained network of the same architecture;
- network only: the pretrained network handed over, the Bayesian head empty;
- logs fed: the pretrained network, and the logs fed through ``update`` before the first decision;

and prints the mean regret per decision over the first 32 / 160 / 800 decisions, averaged over
the seeds. About 2 minutes on 2 cores.

    python experiments/nonlinear/warm_start.py
"""

from __future__ import annotations

import copy
import time

import numpy as np

from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.environments import make_vector_env
from banditrec.models import build_model, pretrain
from banditrec.policies import make_policy
from banditrec.runner import run_trial

WORLD = EnvironmentSpec(id="banditrec/Nonlinear-v0", params={"n_items": 100, "n_candidates": 10})
WINDOWS = (32, 160, 800)
B = 16


def regrets(policy, seed: int) -> np.ndarray:
    """Per-decision regret of ``policy`` over the first 800 decisions on seed ``seed``'s users."""
    env = make_vector_env("banditrec/Nonlinear-v0", num_envs=B, **WORLD.params)
    env.reset(seed=1000 + seed)
    out = []
    for _ in range(WINDOWS[-1] // B):
        obs = env.observation
        actions, _ = policy.act(obs)
        _, rewards, _, info = env.step_batch(actions)
        policy.update(obs, actions, rewards)
        out.append(info["regret"])
    return np.concatenate(out)


def main() -> None:
    results: dict[tuple[str, str], list[np.ndarray]] = {}
    fed_seconds = []
    for seed in (0, 1, 2):
        log_run = ExperimentConfig(name="logs", horizon=6000, batch_size=50, seeds=(seed,), environment=WORLD,
                                   policies=(PolicySpec("random", "Random"),))
        logs = run_trial(log_run, log_run.policies[0], seed=seed, log_feedback=True).feedback
        dims = logs.user_features.shape[1], logs.item_features.shape[2]
        model, _ = pretrain(build_model("mlp", *dims, hidden=(64,), seed=seed), logs, loss="mse", epochs=30, seed=seed)
        for kind in ("NeuralLinear", "NeuralUCB"):
            cases = {"network only": copy.deepcopy(model), "logs fed": copy.deepcopy(model)}
            if kind == "NeuralLinear":
                cases = {"cold": build_model("mlp", *dims, hidden=(64,), seed=seed), **cases}
            for case, net in cases.items():
                policy = make_policy(kind, model=net, seed=seed)
                if case == "logs fed":
                    start = time.perf_counter()
                    policy.update(logs.observation(), logs.actions, logs.rewards)
                    fed_seconds.append(time.perf_counter() - start)
                results.setdefault((kind, case), []).append(regrets(policy, seed))
    print(f"mean regret per decision over the first {' / '.join(map(str, WINDOWS))} decisions, seeds 0-2")
    for (kind, case), runs in results.items():
        mean = np.mean(runs, axis=0)
        print(f"{kind:<13} {case:<13} " + " / ".join(f"{mean[:w].mean():.3f}" for w in WINDOWS))
    print(f"feeding 6,000 logged rows: median {np.median(fed_seconds):.1f} s")


if __name__ == "__main__":
    main()
