"""Time per training step of each CPU training engine, by network size.

A neural bandit policy trains online: Riquelme et al.'s wheel settings take two minibatch steps of
512 rows per decision, so one decision at a time the step's cost bounds the decision rate. This
script times one round of ``--steps`` steps on rows drawn from a buffer, for each engine
(``OnlineTraining.engine``): ``torch`` (autograd and the torch optimizer), ``numpy`` (the steps
written out in numpy: BLAS products over the minibatch) and ``numba`` (the round as one compiled
loop over the minibatch's rows), on a ``model="multi_output"`` network (one output per item), TF1
RMSProp with clipping at 5 (the wheel's step), MSE loss. Reported: the median over ``--repeats``
rounds of µs per step, and each engine's speed relative to torch. torch and BLAS run on one thread.

Prints a Markdown table with one row per network size (the wheel's 2 → 50 → 5 and four others):
µs per step for each engine of ``--engines``, then each other engine's speed over torch's (these
columns only when torch is one of them). Run time at the defaults: about 10–20 s on the 2-core development machine.

    python benchmarks/training_engines.py [--steps 100] [--repeats 7] [--engines torch,numpy,numba]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from banditrec.models import MultiOutputMLP
from banditrec.models.optim import make_optimizer
from banditrec.models.training import loss_function
from banditrec.policies import compiled_training
from banditrec.policies.compiled_training import CompiledMLPTrainer
from banditrec.policies.graphed_training import eager_round
from banditrec.policies.neural import ENGINES
from banditrec.policies.numpy_training import NumpyMLPTrainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared benchmark helpers
from _cli import comma_list, one_of, positive_int

# (inputs, hidden layers, outputs, minibatch): the wheel, a deeper small network, wide layers.
SIZES = [(2, (50,), 5, 512), (2, (50, 50), 5, 512), (16, (64,), 100, 256), (16, (100, 100), 100, 512),
         (32, (256,), 100, 512)]


def time_engine(engine: str, size, steps: int, repeats: int, seed: int = 0) -> float:
    """Median µs per step of ``repeats`` rounds of ``steps`` steps."""
    d, hidden, n_out, batch = size
    rng = np.random.default_rng(seed)
    n = 20_000
    user = rng.standard_normal((n, d)).astype(np.float32)
    ids = rng.integers(0, n_out, n)
    y = rng.standard_normal(n).astype(np.float32)
    net = MultiOutputMLP(d, 0, hidden, n_items=n_out, seed=1)
    opt = make_optimizer("rmsprop_tf", net.parameters(), 0.1)
    lrs = [0.1 / (1 + 0.5 * s) for s in range(steps)]
    if engine == "torch":
        u, i, t = torch.from_numpy(user), torch.from_numpy(ids), torch.from_numpy(y)
        loss_fn, no_items, no_users = loss_function("mse"), torch.zeros(batch, 1, 0), torch.zeros(batch, dtype=torch.int64)

        def step(index):
            out = net(u[index], no_items, i[index][:, None], no_users)[:, 0]
            value = loss_fn(out, t[index])
            opt.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0, foreach=True)
            opt.step()
            return value.detach()

        def run(indices):
            eager_round(opt, step, torch.as_tensor(indices), lrs)
    else:
        trainer = (CompiledMLPTrainer if engine == "numba" else NumpyMLPTrainer)(net, "mse", opt, 5.0)

        def run(indices):
            trainer.round(user, ids, y, indices, lrs)

    run(rng.integers(0, n, (steps, batch)))  # first round: state allocation, compiled-code loading
    times = []
    for _ in range(repeats):
        indices = rng.integers(0, n, (steps, batch))
        start = time.perf_counter()
        run(indices)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / steps * 1e6


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=100, metavar="N",
                        help="minibatch steps per timed round (default %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=7, metavar="N",
                        help="timed rounds per engine and size, reported as the median, after one untimed "
                             "round (default %(default)s)")
    parser.add_argument("--engines", type=comma_list(one_of(ENGINES, "engine"), what="engines"),
                        default="torch,numpy,numba", metavar="LIST",
                        help="comma-separated training engines to time, one column each, from "
                             f"{', '.join(ENGINES)} (default %(default)s)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)
    compiled_training.warm_up()
    engines = args.engines
    print(f"µs per training step (median of {args.repeats} rounds of {args.steps}), TF1 RMSProp, clip 5, MSE; "
          f"torch {torch.__version__}, numpy {np.__version__}, 1 thread, {platform.machine()}")
    print("\n".join(table_header(engines)))
    for size in SIZES:
        us = {engine: time_engine(engine, size, args.steps, args.repeats) for engine in engines}
        print(table_row(engines, size, us))


def _compared(engines: list[str]) -> list[str]:
    """The engines with a speed-over-torch column: the others, and none when torch was not timed
    (there is nothing to divide by: the columns printed empty, and torch alone an empty one)."""
    return [e for e in engines if e != "torch"] if "torch" in engines else []


def table_header(engines: list[str]) -> list[str]:
    """The Markdown table's header and alignment lines."""
    columns = [*engines, *(f"{e} vs torch" for e in _compared(engines))]
    return ["| network (in → hidden → out) | minibatch | " + " | ".join(columns) + " |",
            "| --- | ---: |" + " ---: |" * len(columns)]


def table_row(engines: list[str], size, us: dict[str, float]) -> str:
    """One network size's row: µs per step of each engine, then its speed over torch's."""
    d, hidden, n_out, batch = size
    net = " → ".join(str(x) for x in (d, *hidden, n_out))
    cells = [f"{us[e]:,.0f}" for e in engines] + [f"{us['torch'] / us[e]:.1f}×" for e in _compared(engines)]
    return f"| {net} | {batch} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
