"""Where one decision's time goes: torch operator counts, the top operators and the host-device syncs.

World and policies as ``neural_speed.py`` (``banditrec/Nonlinear-v0``, 1,000 items, K = 100, one
hidden layer of 64, 32 Adam steps of 64 every 32 decisions), decisions on the device
(``decide_on="device"``; on the CPU that is the same decision code, which is how the operator
counts are read without a GPU, except that a host batch travels unpacked there: a few copies
differ). For each policy it prints:

- decisions/s over ``--decisions`` decisions after a warm-up;
- torch operators per decision in ``act`` and in ``update`` (rounds without training), and per
  training round: on a GPU each kernel-launching operator costs a launch, so at B = 1 these
  counts, not arithmetic, bound the rate;
- with ``--device cuda``: the operators that cost the most host time and device time over 64
  decisions (torch.profiler), and every line of Python that made the host wait for the device
  (``torch.cuda.set_sync_debug_mode``), with how often per decision.

Prints one line naming the device, then per policy a line "== NAME: N decisions/s; torch operators
per step of B: act …, update …, update with a training round …", followed on CUDA by two
torch.profiler tables and the list of host waits. Run time at the defaults: about 20 s on the
2-core development machine's CPU; longer on CUDA, where it also profiles (``gpu_session.sh`` allows
a minute for two policies of 256 decisions).

    python benchmarks/decision_profile.py [--device auto] [--batch 1] [--policies NeuralEpsilonGreedy,NeuralLinear]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import warnings

# Kineto (torch.profiler's backend) writes two "USDT: profiler_start/stop" lines to stderr per
# profiled block, hundreds per run, at every log level it documents; 6 is above them all.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

import torch  # after the variable, which Kineto reads once
from torch.profiler import ProfilerActivity, profile

from banditrec.environments import make_vector_env
from banditrec.policies import make_policy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark helpers
from _cli import comma_list, one_of, positive_int, torch_device

TRAIN_EVERY = 32
NEURAL_POLICIES = ("NeuralEpsilonGreedy", "NeuralLinear", "NeuralUCB", "NeuralTS")


def _step(policy, env, obs):
    """One decision step of B users: act, the world's answer, update; the next batch."""
    actions, _ = policy.act(obs)
    following, rewards, _, _ = env.step_batch(actions)
    policy.update(obs, actions, rewards)
    return following


def _aten_calls(prof) -> int:
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=torch_device, default="auto",
                        help="torch device of the policies: auto (CUDA when present, else the CPU), cpu, "
                             "cuda or cuda:N; the profiler tables and host waits need CUDA "
                             "(default %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=1, metavar="B",
                        help="users per decision step, B (default %(default)s)")
    parser.add_argument("--decisions", type=positive_int, default=512, metavar="N",
                        help="timed decisions per policy after the warm-up, in whole steps of B "
                             "(at least one step; default %(default)s)")
    parser.add_argument("--policies", type=comma_list(one_of(NEURAL_POLICIES, "policy"), what="policies"),
                        default="NeuralEpsilonGreedy,NeuralLinear,NeuralUCB", metavar="LIST",
                        help=f"comma-separated policies to profile, from {', '.join(NEURAL_POLICIES)} "
                             "(default %(default)s)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    device = args.device
    cuda = device.startswith("cuda")
    B = args.batch
    print(f"device {device} ({torch.cuda.get_device_name(0) if cuda else 'CPU'}), torch {torch.__version__}, "
          f"B = {B}, K = 100")
    for name in args.policies:
        env = make_vector_env("banditrec/Nonlinear-v0", num_envs=B, n_items=1000, n_candidates=100)
        env.reset(seed=0)
        policy = make_policy(name, seed=0, device=device, train_every=TRAIN_EVERY, train_steps=32,
                             decide_on="device")
        obs = env.observation

        for _ in range(max(2, 2 * TRAIN_EVERY // B)):  # warm-up: builds, first training rounds, graphs
            obs = _step(policy, env, obs)
        steps = max(1, args.decisions // B)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            obs = _step(policy, env, obs)
        if cuda:
            torch.cuda.synchronize()
        rate = steps * B / (time.perf_counter() - start)

        act_calls, update_calls, train_calls, plain, trained = 0, 0, 0, 0, 0
        for _ in range(max(1, 2 * TRAIN_EVERY // B)):
            seen = policy.estimator.n_seen_
            trains = (seen + B) // TRAIN_EVERY - seen // TRAIN_EVERY
            with profile(activities=[ProfilerActivity.CPU]) as p_act:
                a, _ = policy.act(obs)
            o2, r, _, _ = env.step_batch(a)
            with profile(activities=[ProfilerActivity.CPU]) as p_upd:
                policy.update(obs, a, r)
            obs = o2
            if trains:
                train_calls += _aten_calls(p_upd)
                trained += 1
            else:
                act_calls += _aten_calls(p_act)
                update_calls += _aten_calls(p_upd)
                plain += 1
        print(f"\n== {name}: {rate:,.0f} decisions/s; torch operators per step of B: act "
              f"{act_calls / max(plain, 1):.0f}, update {update_calls / max(plain, 1):.0f}"
              + (f", update with a training round {train_calls / trained:.0f}" if trained else ""))
        if not cuda:
            continue
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(max(1, 64 // B)):
                obs = _step(policy, env, obs)
            torch.cuda.synchronize()
        ka = prof.key_averages()
        print(ka.table(sort_by="self_cpu_time_total", row_limit=15))
        print(ka.table(sort_by="self_cuda_time_total", row_limit=10))
        syncs: collections.Counter = collections.Counter()
        n_sync = max(1, 32 // B)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(n_sync):
                    obs = _step(policy, env, obs)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        for w in caught:
            syncs[f"{w.filename.split('banditrec/')[-1]}:{w.lineno}"] += 1
        print(f"host waits for the device, per step of B ({n_sync} steps):")
        for where, n in syncs.most_common(20):
            print(f"  {n / n_sync:6.2f}  {where}")


if __name__ == "__main__":
    main()
