"""NeuralLinear against space-bandits on the wheel bandit, one decision at a time.

space-bandits (PyPI, GPL; a PyTorch port of Riquelme et al.'s NeuralLinear) is an optional extra
that this script imports but never copies:

    pip install space-bandits            # needs torch, numpy, scipy, pandas, scikit-learn, cython

For each δ in ``--deltas`` the wheel's contexts and every arm's reward are drawn once with numpy
(``WheelWorld.sample_users`` + ``expected_rewards`` + Gaussian noise of the world's sd, seed 0),
so all policies see identical data. Each policy then plays the contexts in order, one decision
at a time (decide, then learn from the chosen arm's reward):

- space-bandits ``NeuralBandits`` with Riquelme et al.'s wheel settings for NeuralLinear: one
  hidden layer of 50 (ReLU), RMSprop at 0.1 with per-step inverse-time decay (0.5) reset at each
  retraining, 100 minibatch steps of 512 every 50 decisions, Bayesian linear regression per arm
  refitted from all data after every decision, a0 = b0 = 6, λ = 0.25, 2 initial round-robin
  pulls per arm, the package's own context scaling on; ``verbose=False``.
- banditrec ``NeuralLinear`` with the same architecture, sizes and schedule: one network over the
  context with one output per arm (``model="multi_output"``), hidden (50,), one Bayesian linear
  regression per arm on its last hidden layer (``head="per_item"``), train_every 50,
  train_steps 100, batch_size 512, a0 = b0 = 6, lam = 0.25, buffer as large as the run, and the
  paper's training step: TF1's RMSProp (``--optimizer rmsprop_tf``) at 0.1 / (1 + 0.5 s) within
  each retraining, gradients clipped to norm 5. One row per training engine (``--engines``:
  ``numba`` runs each retraining as one compiled loop and the network's forward pass for
  decisions too, ``numpy`` writes the small network's steps out in numpy, ``torch`` uses
  autograd; same arithmetic to rounding). The posteriors are refitted from all data when the network retrains and
  updated incrementally (Sherman–Morrison) after every decision in between; ``n_mc`` (default
  100) further posterior draws estimate each decision's propensity, which space-bandits does not
  compute. One decision at a time (B = 1), and also in batches of ``--batch`` contexts (decide for
  the batch, then learn from it: banditrec's batched path; the schedule still trains every 50
  decisions).
- Uniform: an arm uniformly at random.

Reported: decisions/s (wall clock of the whole loop, decide + learn; banditrec's rows the median of
``--repeats`` runs, min-max beside it, each run checked to choose the same actions), normalised regret =
100 × cumulative pseudo-regret / Uniform's (Riquelme et al.'s measure) and banditrec's speed over
space-bandits'. torch and numpy's BLAS run on one thread for both libraries (with BLAS's
default threads on a loaded 2-core machine a 50 × 50 SVD in space-bandits' sampling took 20 ms).

Prints one line of settings, then a Markdown table with, for each δ, one row per policy (Uniform,
space-bandits, banditrec on each engine at B = 1, the first engine at B = ``--batch``): decisions/s,
cumulative pseudo-regret and normalised regret, followed by a bold "speed ratio" row per banditrec
row against space-bandits. Run time at the defaults: about half an hour on the 2-core development
machine (space-bandits about 10 minutes per δ, banditrec's rows about 4–5 minutes per δ);
``--skip-space-bandits`` leaves about 10 minutes.

    python benchmarks/space_bandits_wheel.py [--contexts 20000] [--deltas 0.5,0.95] [--skip-space-bandits]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from banditrec.environments import WheelWorld
from banditrec.environments.simulator import Observation
from banditrec.models.optim import OPTIMIZERS
from banditrec.policies import NeuralLinear, compiled_training
from banditrec.policies.neural import ENGINES

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark helpers
from _cli import comma_list, one_of, positive_int, real

K = 5


def wheel_data(delta: float, n: int, seed: int = 0):
    """Contexts (n, 2), expected rewards (n, 5) and noisy rewards (n, 5) of every arm."""
    world = WheelWorld(delta=delta)
    rng = np.random.default_rng(seed)
    obs = world.sample_users(n, rng)
    expected = world.expected_rewards(obs)
    sd = np.where(expected == world.mu_large, world.sigma_large, world.sigma)
    rewards = expected + sd * rng.standard_normal(expected.shape)
    return obs, expected, rewards


def run_space_bandits(x, rewards, seed: int = 0):
    from space_bandits import NeuralBandits

    np.random.seed(seed)
    torch.manual_seed(seed)
    model = NeuralBandits(
        K, x.shape[1], layer_sizes=[50], batch_size=512, initial_lr=0.1, lr_decay_rate=0.5,
        optimizer="RMS", training_freq=1, training_freq_network=50, training_epochs=100,
        a0=6, b0=6, lambda_prior=0.25, initial_pulls=2, do_scaling=True, verbose=False,
    )
    n = len(x)
    actions = np.empty(n, dtype=np.int64)
    start = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for t in range(n):
            a = int(model.action(x[t]))
            model.update(x[t], a, float(rewards[t, a]))
            actions[t] = a
    return actions, n / (time.perf_counter() - start)


def run_banditrec(obs: Observation, rewards, training: dict, batch: int = 1, n_mc: int = 100, seed: int = 0):
    policy = NeuralLinear(
        a0=6.0, b0=6.0, lam=0.25, model="multi_output", model_options={"n_items": K}, head="per_item",
        hidden=(50,), train_every=50, train_steps=100, batch_size=512, buffer_size=len(rewards), n_mc=n_mc,
        device="cpu", num_threads=1, seed=seed, **training,
    )
    n = len(rewards)
    # One Observation per batch of contexts, built and checked before the clock starts (the
    # environment's job: a policy checks only a batch nobody has checked).
    steps = [
        Observation.coerce(Observation(obs.user_features[t:t + batch], obs.item_features[t:t + batch],
                                       obs.item_ids[t:t + batch], obs.mask[t:t + batch], obs.user_ids[t:t + batch]))
        for t in range(0, n, batch)
    ]
    actions = np.empty(n, dtype=np.int64)
    start = time.perf_counter()
    for i, step in enumerate(steps):
        t = i * batch
        a, _ = policy.act(step)
        policy.update(step, a, rewards[np.arange(t, t + a.size), a])
        actions[t:t + a.size] = a
    return actions, n / (time.perf_counter() - start)


def run_uniform(n: int, rewards, seed: int = 0):
    rng = np.random.default_rng(seed + 1)
    actions = np.empty(n, dtype=np.int64)
    start = time.perf_counter()
    for t in range(n):
        actions[t] = rng.integers(K)
    return actions, n / (time.perf_counter() - start)


def pseudo_regret(expected, actions) -> float:
    return float((expected.max(axis=1) - expected[np.arange(len(actions)), actions]).sum())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=positive_int, default=20_000, metavar="N",
                        help="contexts (decisions) per δ, played in order by every policy "
                             "(default %(default)s)")
    parser.add_argument("--deltas", type=comma_list(real(0.0, 1.0, open_low=True), what="δ values"),
                        default="0.5,0.95", metavar="LIST",
                        help="comma-separated wheel exploration parameters δ, each in (0, 1) "
                             "(default %(default)s)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="rmsprop_tf", metavar="NAME",
                        help=f"banditrec's optimizer, one of {', '.join(OPTIMIZERS)}; rmsprop_tf is TF1's "
                             "RMSProp, as the paper (default %(default)s)")
    parser.add_argument("--lr", type=real(0.0, open_low=True), default=0.1,
                        help="banditrec's learning rate at each retraining's start, > 0 "
                             "(default %(default)s)")
    parser.add_argument("--step-decay", type=real(0.0), default=0.5, metavar="X",
                        help="lr / (1 + step_decay · s) at step s within a retraining, >= 0 "
                             "(default %(default)s)")
    parser.add_argument("--max-grad-norm", type=real(0.0, open_low=True), default=5.0, metavar="X",
                        help="banditrec clips each step's gradients to this norm, > 0 (default %(default)s)")
    parser.add_argument("--engines", type=comma_list(one_of(ENGINES, "engine"), what="engines"),
                        default="numba,numpy,torch", metavar="LIST",
                        help=f"comma-separated banditrec training engines from {', '.join(ENGINES)}, one "
                             "B = 1 row each; the first also gets the batched row (default %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=10, metavar="B",
                        help="contexts per decision batch for the batched row; 1 for no batched row "
                             "(default %(default)s)")
    parser.add_argument("--n-mc", type=positive_int, default=100, metavar="N",
                        help="banditrec's propensity draws per decision (default %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                        help="runs of each banditrec row, reported as the median rate (min-max); space-bandits "
                             "runs once, ~10 min per δ (default %(default)s)")
    parser.add_argument("--skip-space-bandits", action="store_true",
                        help="time banditrec and Uniform alone (space-bandits is an optional, GPL extra)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if not args.skip_space_bandits:
        try:  # before any row runs, not after the first δ's Uniform row
            import space_bandits  # noqa: F401
        except ImportError:
            parser.error("space-bandits is not installed: pip install space-bandits (GPL, not a banditrec "
                         "dependency), or pass --skip-space-bandits to time banditrec alone")
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS too: on a shared 2-core box its threads oversubscribe
    # torch imports its compiler stack (~3 s, once per process) when the first optimizer is built:
    # pay it here, outside every timed loop, instead of inside whichever library runs first.
    torch.optim.RMSprop([torch.zeros(1, requires_grad=True)])
    compiled_training.warm_up()  # and load the numba engine's compiled loop (~0.5 s from its cache)
    n = args.contexts
    training = {"optimizer": args.optimizer, "lr": args.lr, "step_decay": args.step_decay,
                "max_grad_norm": args.max_grad_norm}
    print(f"wheel bandit, {n:,} contexts one at a time, seed 0, torch {torch.__version__}, torch and BLAS on 1 thread, "
          f"{platform.machine()}; banditrec training {training}")
    rows = []
    for delta in args.deltas:
        obs, expected, rewards = wheel_data(delta, n)
        x = obs.user_features
        u_actions, u_rate = run_uniform(n, rewards)
        u_regret = pseudo_regret(expected, u_actions)
        results = {"Uniform": (u_rate, u_regret)}
        if not args.skip_space_bandits:
            a, r = run_space_bandits(x, rewards)
            results["space-bandits NeuralBandits"] = (r, pseudo_regret(expected, a))
        engines = args.engines
        spread = {}
        runs = [(f"banditrec NeuralLinear, {engine} engine", engine, 1) for engine in engines]
        if args.batch > 1:
            runs.append((f"banditrec NeuralLinear, {engines[0]} engine, B = {args.batch}", engines[0], args.batch))
        for name, engine, batch in runs:
            # The machine's speed drifts by a third within minutes (shared cores): the median of a few
            # runs, whose actions must agree exactly (same seed, same numbers).
            rates, first = [], None
            for _ in range(max(1, args.repeats)):
                a, r = run_banditrec(obs, rewards, dict(training, engine=engine), batch=batch, n_mc=args.n_mc)
                if first is not None and not np.array_equal(a, first):
                    raise RuntimeError(f"{name}: two runs with the same seed chose different actions")
                first = a
                rates.append(r)
            results[name] = (float(np.median(rates)), pseudo_regret(expected, a))
            spread[name] = (min(rates), max(rates))
        for name, (rate, regret) in results.items():
            rows.append((delta, name, rate, regret, 100.0 * regret / u_regret, spread.get(name)))
        if "space-bandits NeuralBandits" in results:
            for name in [k for k in results if k.startswith("banditrec")]:
                ratio = results[name][0] / results["space-bandits NeuralBandits"][0]
                low, high = (x / results["space-bandits NeuralBandits"][0] for x in spread[name])
                rows.append((delta, f"speed ratio {name} / space-bandits", ratio, float("nan"), float("nan"), (low, high)))
    print(f"banditrec rows: median decisions/s of {max(1, args.repeats)} runs (min-max); space-bandits and Uniform: one run")
    print("| δ | policy | decisions/s | cumulative pseudo-regret | normalised regret |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for delta, name, rate, regret, norm, span in rows:
        if name.startswith("speed ratio"):
            print(f"| {delta} | **{name}** | **{rate:.1f}×** ({span[0]:.1f}–{span[1]:.1f}×) | | |")
        else:
            shown = f"{rate:,.0f}" + (f" ({span[0]:,.0f}–{span[1]:,.0f})" if span else "")
            print(f"| {delta} | {name} | {shown} | {regret:,.1f} | {norm:.2f} |")


if __name__ == "__main__":
    main()
