"""banditrec side by side with peer bandit libraries on one precomputed linear workload.

Workload (issue #6): a linear contextual bandit with K = 20 arms and d = 32, T = 20,000 rounds,
seed 0. Contexts x_t ~ N(0, I)/√d; per-arm parameters θ_a = √d · g_a/‖g_a‖ with g_a ~ N(0, I);
click probability p[t, a] = sigmoid(3 x_t·θ_a); Bernoulli rewards drawn once for every arm (a
T × K matrix), so every library sees the same contexts and the same reward for the same choice.
Every row runs decide → observe → update one round at a time (banditrec also in batches of 64:
decide 64 rows, then learn from those 64). Reported per row: rounds/s (median of ``--repeats``
timed repetitions, interleaved across rows, each with a fresh policy; only the decide/update loop
is timed), min and max, rounds per CPU-second of this process, cumulative pseudo-regret
Σ_t max_a p[t, a] − p[t, chosen], and banditrec LinUCB's sequential rounds/s divided by the row's.

Exploration settings are equal where the libraries share them: LinUCB alpha = 1 and ridge
lambda = 1 with no intercept (OBP and MABWiser have none; contextualbandits and banditrec are
told ``fit_intercept=False`` / ``intercept=False``); epsilon = 0.1 for the epsilon-greedy rows.
Vowpal Wabbit learns cost = −reward on shared-context × action-id features (``-q UA``);
``--squarecb`` keeps VW's default gamma.

The peers are optional; install them beside banditrec (see benchmarks/peers/README.md). A peer
that is not importable is reported as "not installed", never installed by this script.

Prints a progress line per row and repetition, then the machine, the library versions and a
Markdown table with one row per library and policy (the columns above; a peer that is not
installed or failed says so in its row), the issue's targets each marked MET or MISSED, and the
replay check: how often MABWiser's LinUCB picks banditrec's arm on banditrec's trajectory. Run time
at the defaults: about 7 s on the 2-core development machine with no peer installed; with all four,
about 5 minutes (estimated from the fifth session's rates: MABWiser's rows, ~600 rounds/s, and its
replay check take most of it).

    python benchmarks/peers/run.py [--horizon 20000] [--repeats 3] [--only NAME ...]
                                   [--no-replay] [--profile] [--json PATH]
"""

from __future__ import annotations

import os

# One thread for every library (BLAS, OpenMP, torch pulled in by OBP): set before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import cProfile
import importlib.metadata
import io
import json
import platform
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the shared benchmark helpers
from _cli import positive_int

K, D, SEED = 20, 32, 0
ALPHA, LAM, EPSILON, BATCH = 1.0, 1.0, 0.1, 64


# --------------------------------------------------------------------------- workload
@dataclass
class Workload:
    X: np.ndarray  # (T, d) contexts
    P: np.ndarray  # (T, K) click probabilities
    R: np.ndarray  # (T, K) rewards of every arm, drawn once
    theta: np.ndarray  # (K, d)

    @property
    def T(self) -> int:
        return self.X.shape[0]

    def regret(self, actions: np.ndarray) -> float:
        t = np.arange(self.T)
        return float((self.P.max(axis=1) - self.P[t, actions]).sum())


def make_workload(T: int, K: int = K, d: int = D, seed: int = SEED) -> Workload:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, d)) / np.sqrt(d)
    g = rng.standard_normal((K, d))
    theta = np.sqrt(d) * g / np.linalg.norm(g, axis=1, keepdims=True)
    P = 1.0 / (1.0 + np.exp(-3.0 * (X @ theta.T)))
    R = (rng.random((T, K)) < P).astype(np.float64)
    return Workload(X, P, R, theta)


# --------------------------------------------------------------------------- runners
# A runner is built once per row: ``prepare(w)`` returns ``run()``, which makes a fresh policy,
# times the decide/update loop only, and returns (seconds, chosen actions). Per-round inputs
# (row views, banditrec Observations, VW's shared-context text) are built in ``prepare``, untimed.


class NotInstalled(Exception):
    pass


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) since ``t0``: on a shared machine the CPU time
    leaves out the time the process waited for a core."""
    t1 = _clock()
    return t1[0] - t0[0], t1[1] - t0[1]


def _play(T: int, round_: Callable[[int], int]) -> tuple[tuple[float, float], np.ndarray]:
    """Time ``round_(t)`` (decide, observe, update; returns the arm) for t = 0 … T−1, one at a time."""
    actions = np.empty(T, dtype=np.int64)
    t0 = _clock()
    for t in range(T):
        actions[t] = round_(t)
    return _since(t0), actions


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NotInstalled(f"{type(exc).__name__}: {exc}") from None


def _banditrec_observations(w: Workload, batch: int):
    from banditrec.environments.simulator import Observation

    T, k = w.R.shape
    # checked once, before the clock (the environment's job): its slices are checked batches,
    # which a policy takes as they are, where a hand-built batch is checked at every call
    full = Observation.coerce(Observation(
        user_features=w.X,
        item_features=np.zeros((T, k, 0)),  # disjoint model on user features: no item features
        item_ids=np.ascontiguousarray(np.broadcast_to(np.arange(k, dtype=np.int64), (T, k))),
        mask=np.ones((T, k), dtype=bool),
        user_ids=np.full(T, -1, dtype=np.int64),
    ))
    return [(s, full[s : s + batch]) for s in range(0, T, batch)]


def banditrec_runner(policy_type: str, batch: int, **params) -> Callable:
    def prepare(w: Workload):
        from banditrec.policies import make_policy

        chunks = [(s, obs, s + np.arange(obs.batch_size)) for s, obs in _banditrec_observations(w, batch)]
        R = w.R
        # Untimed warm-up: banditrec's compiled loops (numba) are compiled, or loaded from numba's
        # on-disk cache, at their first call in a process; the clock starts after that.
        warm = make_policy(policy_type, seed=SEED, **params)
        for s, obs, rows in chunks[:4]:
            a = warm.act(obs).actions
            warm.update(obs, a, R[rows, a])

        def run():
            policy = make_policy(policy_type, seed=SEED, **params)
            actions = np.empty(w.T, dtype=np.int64)
            t0 = _clock()
            for s, obs, rows in chunks:
                a = policy.act(obs).actions  # Decision(actions, propensities)
                policy.update(obs, a, R[rows, a])
                actions[s : s + a.size] = a
            return _since(t0), actions

        return run

    return prepare


def obp_runner(kind: str) -> Callable:
    def prepare(w: Workload):
        policy_mod = _need("obp.policy")
        cls = {"LinUCB": policy_mod.LinUCB, "LinEpsilonGreedy": policy_mod.LinEpsilonGreedy}[kind]
        eps = ALPHA if kind == "LinUCB" else EPSILON  # OBP calls LinUCB's alpha "epsilon"
        rows, R, k, d = [w.X[t : t + 1] for t in range(w.T)], w.R, w.R.shape[1], w.X.shape[1]

        def run():
            policy = cls(dim=d, n_actions=k, len_list=1, batch_size=1, random_state=SEED, epsilon=eps)

            def round_(t: int) -> int:
                a = int(policy.select_action(rows[t])[0])
                policy.update_params(action=a, reward=R[t, a], context=rows[t])
                return a

            return _play(w.T, round_)

        return run

    return prepare


def mabwiser_runner(kind: str) -> Callable:
    def prepare(w: Workload):
        mab = _need("mabwiser.mab")
        rows, R, k, d = [w.X[t : t + 1] for t in range(w.T)], w.R, w.R.shape[1], w.X.shape[1]
        if kind == "LinUCB":
            lp = mab.LearningPolicy.LinUCB(alpha=ALPHA, l2_lambda=LAM)
        else:
            lp = mab.LearningPolicy.LinGreedy(epsilon=EPSILON, l2_lambda=LAM)

        def run():
            policy = mab.MAB(arms=list(range(k)), learning_policy=lp, seed=SEED)
            # MABWiser predicts only after fit(): fit on no data sets every arm to the prior.
            policy.fit(np.empty(0, dtype=np.int64), np.empty(0), np.empty((0, d)))

            def round_(t: int) -> int:
                a = int(policy.predict(rows[t]))
                policy.partial_fit([a], [R[t, a]], rows[t])
                return a

            return _play(w.T, round_)

        return run

    return prepare


def contextualbandits_runner() -> Callable:
    def prepare(w: Workload):
        online = _need("contextualbandits.online")
        rows, R, k = [w.X[t : t + 1] for t in range(w.T)], w.R, w.R.shape[1]

        def run():
            policy = online.LinUCB(k, alpha=ALPHA, lambda_=LAM, fit_intercept=False, use_float=False,
                                   method="sm", random_state=np.random.default_rng(SEED))

            def round_(t: int) -> int:
                a = policy.predict(rows[t])  # untried arms: UCB from the prior, ties broken at random
                policy.partial_fit(rows[t], a, R[t : t + 1, int(a[0])])
                return int(a[0])

            return _play(w.T, round_)

        return run

    return prepare


def vw_runner(explore: str) -> Callable:
    def prepare(w: Workload):
        vowpalwabbit = _need("vowpalwabbit")
        k = w.R.shape[1]
        # Text input is VW's normal Python interface; the shared context lines are formatted here,
        # untimed (generous to VW: only parsing, predicting, sampling and learning are timed).
        shared = ["shared |U " + " ".join(f"{j}:{v:.9g}" for j, v in enumerate(x)) for x in w.X]
        acts = [f"|A a{i}" for i in range(k)]
        costs = [f"0:{-r:g}:" for r in (0.0, 1.0)]  # cost = −reward, VW minimises cost
        u = np.random.default_rng(SEED).random(w.T)  # sampling the chosen arm from VW's pmf
        R = w.R

        def run():
            vw = vowpalwabbit.Workspace(f"--cb_explore_adf {explore} -q UA --quiet --random_seed {SEED}")

            def round_(t: int) -> int:
                ex = [shared[t], *acts]
                pmf = vw.predict(ex)
                cdf = np.cumsum(pmf)
                a = min(int(np.searchsorted(cdf, u[t] * cdf[-1], side="right")), k - 1)
                ex[1 + a] = f"{costs[int(R[t, a])]}{pmf[a]} {acts[a]}"
                vw.learn(ex)
                return a

            elapsed, actions = _play(w.T, round_)
            vw.finish()
            return elapsed, actions

        return run

    return prepare


@dataclass
class Row:
    library: str
    policy: str
    setting: str
    prepare: Callable
    status: str = "ok"
    rates: list[float] = field(default_factory=list)  # rounds per wall-clock second
    cpu_rates: list[float] = field(default_factory=list)  # rounds per CPU second of this process
    regret: float = float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_rates) if self.cpu_rates else float("nan")


def rows_spec() -> list[Row]:
    br = {"alpha": ALPHA, "lam": LAM, "intercept": False}
    return [
        Row("banditrec", "LinUCB", "alpha=1, lambda=1, one round at a time", banditrec_runner("LinUCB", 1, **br)),
        Row("banditrec", "LinUCB", f"alpha=1, lambda=1, batches of {BATCH}", banditrec_runner("LinUCB", BATCH, **br)),
        Row("banditrec", "LinEpsilonGreedy", "epsilon=0.1, lambda=1, one round at a time",
            banditrec_runner("LinEpsilonGreedy", 1, epsilon=EPSILON, lam=LAM, intercept=False)),
        Row("OBP", "LinUCB", "epsilon(=alpha)=1, batch_size=1", obp_runner("LinUCB")),
        Row("OBP", "LinEpsilonGreedy", "epsilon=0.1, batch_size=1", obp_runner("LinEpsilonGreedy")),
        Row("MABWiser", "LinUCB", "alpha=1, l2_lambda=1", mabwiser_runner("LinUCB")),
        Row("MABWiser", "LinGreedy", "epsilon=0.1, l2_lambda=1", mabwiser_runner("LinGreedy")),
        Row("contextualbandits", "LinUCB", "alpha=1, lambda_=1, no intercept, float64, sm", contextualbandits_runner()),
        Row("Vowpal Wabbit", "cb_explore_adf epsilon", "--epsilon 0.1 -q UA", vw_runner("--epsilon 0.1")),
        Row("Vowpal Wabbit", "cb_explore_adf squarecb", "--squarecb (default gamma) -q UA", vw_runner("--squarecb")),
    ]


# --------------------------------------------------------------------------- replay check
def replay_check(w: Workload) -> dict:
    """One trajectory chosen by banditrec LinUCB; MABWiser LinUCB learns the same (arm, reward)
    pairs and is asked, before each update, which arm it would choose."""
    mab = _need("mabwiser.mab")
    from banditrec.policies import make_policy

    k, d = w.R.shape[1], w.X.shape[1]
    chunks = _banditrec_observations(w, 1)
    ours = make_policy("LinUCB", seed=SEED, alpha=ALPHA, lam=LAM, intercept=False)
    theirs = mab.MAB(arms=list(range(k)), learning_policy=mab.LearningPolicy.LinUCB(alpha=ALPHA, l2_lambda=LAM),
                     seed=SEED)
    theirs.fit(np.empty(0, dtype=np.int64), np.empty(0), np.empty((0, d)))
    match = unique = match_unique = 0
    first = None
    for t, obs in chunks:
        decision = ours.act(obs)
        a = int(decision.actions[0])
        tied = round(1.0 / decision.propensities[0])  # UCB propensity = 1 / number of tied arms
        x = w.X[t : t + 1]
        b = int(theirs.predict(x))
        same = a == b
        match += same
        if tied == 1:
            unique += 1
            match_unique += same
            if not same and first is None:
                ucb_theirs = theirs.predict_expectations(x)
                first = {"round": t, "banditrec": a, "mabwiser": b,
                         "mabwiser_ucb_banditrec_arm": float(ucb_theirs[a]),
                         "mabwiser_ucb_mabwiser_arm": float(ucb_theirs[b])}
        r = w.R[t, a]
        ours.update(obs, decision.actions, np.array([r]))
        theirs.partial_fit([a], [r], x)
    return {"rounds": w.T, "match": match, "unique_rounds": unique, "match_unique": match_unique,
            "first_mismatch_on_unique": first}


# --------------------------------------------------------------------------- reporting
def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info

        blas = "; ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} thread(s))"
                         for i in threadpool_info())
    except ImportError:
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cores": os.cpu_count(), "blas": blas,
            "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if np.isfinite(x) else "–"


def print_table(rows: list[Row], ref: float) -> None:
    print("| library | policy | setting | rounds/s (median) | min | max | rounds per CPU-second (median) | "
          "cumulative pseudo-regret | banditrec LinUCB (one at a time) rounds/s ÷ row's |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if r.status != "ok":
            print(f"| {r.library} | {r.policy} | {r.setting} | {r.status} | | | | | |")
            continue
        ratio = ref / r.median if np.isfinite(ref) else float("nan")
        print(f"| {r.library} | {r.policy} | {r.setting} | {r.median:,.0f} | {min(r.rates):,.0f} | "
              f"{max(r.rates):,.0f} | {r.cpu_median:,.0f} | {r.regret:,.1f} | {_fmt(ratio, '.1f')}× |")


def targets(rows: list[Row]) -> list[str]:
    """The issue's targets, each with the measured ratio (wall clock; CPU time in brackets)."""
    ok = [r for r in rows if r.status == "ok"]
    seq = next((r for r in ok if r.library == "banditrec" and r.policy == "LinUCB" and "one round" in r.setting), None)
    bat = next((r for r in ok if r.library == "banditrec" and r.policy == "LinUCB" and "batches" in r.setting), None)
    peers = [r for r in ok if r.library != "banditrec"]
    if seq is None or not peers:
        return ["not evaluated (needs the banditrec LinUCB rows and at least one peer)"]
    out = []
    # "At the same regret": a peer whose regret is at most 10% above banditrec's sequential LinUCB.
    same = [r for r in peers if r.regret <= 1.10 * seq.regret]
    for label, pool in (("fastest peer", peers), ("fastest peer at the same regret (within +10%)", same)):
        if not pool:
            out.append(f"{label}: none")
            continue
        peer = max(pool, key=lambda r: r.median)
        desc = f"{label} = {peer.library} {peer.policy} ({peer.median:,.0f} rounds/s, regret {peer.regret:,.1f})"
        for who, row, goal in (("one round at a time", seq, 5), (f"batches of {BATCH}", bat, 30)):
            if row is None:
                continue
            r_wall, r_cpu = row.median / peer.median, row.cpu_median / peer.cpu_median
            verdict = "MET" if r_wall >= goal else "MISSED"
            out.append(f"banditrec LinUCB {who} >= {goal}x the {desc}: {r_wall:.1f}x "
                       f"({r_cpu:.1f}x in CPU time) -> {verdict}")
    if bat is not None:
        rel = bat.regret / seq.regret - 1.0
        out.append(f"batches of {BATCH}: regret {bat.regret:,.1f} vs sequential {seq.regret:,.1f} ({rel:+.1%}) "
                   f"-> {'MET' if abs(rel) <= 0.10 else 'MISSED'} (within 10%)")
    return out


def profile_banditrec(w: Workload, top: int) -> None:
    br = {"alpha": ALPHA, "lam": LAM, "intercept": False}
    for batch in (1, BATCH):
        run = banditrec_runner("LinUCB", batch, **br)(w)
        prof = cProfile.Profile()
        prof.enable()
        (elapsed, _), _ = run()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
        print(f"\n### cProfile, banditrec LinUCB, batch {batch} ({w.T / elapsed:,.0f} rounds/s under the profiler)\n")
        print("```")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
        print("```")


def _row_name(row: Row) -> str:
    return f"{row.library} {row.policy} {row.setting}".lower()


def _only_key(text: str) -> str:
    """An ``--only`` name: a non-empty piece of a row's 'library policy setting' (an empty one
    matched every row)."""
    key = text.strip().lower()
    if not key:
        raise argparse.ArgumentTypeError(f"expected a piece of a row's library, policy or setting, got {text!r}")
    return key


def _json_path(text: str) -> str:
    """A file to write the results to, in a folder that exists: checked before the minutes of
    timing, not when the results are written at the end."""
    folder = os.path.dirname(os.path.abspath(text))
    if not text or os.path.isdir(text) or not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"expected a file in an existing folder, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizon", type=positive_int, default=20_000, metavar="T",
                        help="rounds of the workload, T: contexts and rewards precomputed for every row "
                             "(default %(default)s)")
    parser.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                        help="timed repetitions of each row, each with a fresh policy, interleaved across rows "
                             "and reported as median, min and max (default %(default)s)")
    parser.add_argument("--only", nargs="+", type=_only_key, default=None, metavar="NAME",
                        help="run only the rows whose 'library policy setting' contains one of these names "
                             "(case-insensitive, e.g. banditrec, OBP, LinUCB, 'batches of 64'; default: every row)")
    parser.add_argument("--no-replay", action="store_true",
                        help="skip the replay check (MABWiser's LinUCB on banditrec LinUCB's trajectory)")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of banditrec LinUCB, one round at a time and in batches")
    parser.add_argument("--json", type=_json_path, default=None, metavar="PATH",
                        help="also write the machine, the rows, the targets and the replay check to this JSON "
                             "file (default: none)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    rows = rows_spec()
    if args.only:
        unmatched = [k for k in args.only if not any(k in _row_name(r) for r in rows)]
        if unmatched:
            parser.error(f"argument --only: {', '.join(map(repr, unmatched))} matches no row (rows: "
                         + "; ".join(f"{r.library} {r.policy} [{r.setting}]" for r in rows) + ")")
        rows = [r for r in rows if any(k in _row_name(r) for k in args.only)]
    warnings.filterwarnings("ignore")  # peers' deprecation chatter would drown the table

    w = make_workload(args.horizon)
    load_before = os.getloadavg()
    runners: dict[int, Callable] = {}
    for i, row in enumerate(rows):
        try:
            runners[i] = row.prepare(w)
        except NotInstalled as exc:
            row.status = f"not installed ({exc})"
    # Repetitions are interleaved (every row once, then again): on a shared machine whose load
    # drifts, each row then sees the same mix of conditions and the ratios stay comparable.
    for rep in range(args.repeats):
        for i, run in runners.items():
            row = rows[i]
            if row.status != "ok":
                continue
            try:
                (wall, cpu), actions = run()
            except Exception as exc:  # noqa: BLE001 -- a peer failing must not hide the others' results
                row.status = f"failed: {type(exc).__name__}: {exc}"[:200]
                continue
            row.rates.append(w.T / wall)
            row.cpu_rates.append(w.T / cpu)
            reg = w.regret(actions)
            if np.isfinite(row.regret) and not np.isclose(reg, row.regret):
                row.setting += " (regret varies by repetition)"
            row.regret = reg
            print(f"# repetition {rep + 1}: {row.library} {row.policy} [{row.setting}]: "
                  f"{w.T / wall:,.0f} rounds/s, regret {reg:,.1f}", flush=True)
    for row in rows:
        if row.status != "ok":
            print(f"# {row.library} {row.policy} [{row.setting}]: {row.status}", flush=True)
    load_after = os.getloadavg()

    info = machine_info()
    print(f"\n## banditrec vs peers: K = {K}, d = {D}, T = {args.horizon:,}, seed {SEED}, "
          f"{args.repeats} timed repetitions per row\n")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, {info['platform']}, Python {info['python']}; "
          f"BLAS: {info['blas']}; threads {info['threads']}; load average (1 min) {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    libs = ("banditrec", "numpy", "numba", "scipy", "scikit-learn", "torch", "obp", "mabwiser", "contextualbandits", "vowpalwabbit")
    print("Versions: " + ", ".join(f"{lib} {_version(lib)}" for lib in libs) + "\n")
    seq = next((r for r in rows if r.status == "ok" and r.library == "banditrec" and r.policy == "LinUCB"
                and "one round" in r.setting), None)
    print_table(rows, seq.median if seq else float("nan"))
    goals = targets(rows)
    print("\nTargets (issue #6):")
    for line in goals:
        print(f"- {line}")

    replay = None
    if not args.no_replay:
        try:
            replay = replay_check(w)
            n, u = replay["rounds"], replay["unique_rounds"]
            print(f"\nReplay check (banditrec LinUCB intercept=False, lambda=1, alpha=1 vs MABWiser LinUCB "
                  f"l2_lambda=1, alpha=1; same arms and rewards, banditrec's trajectory): same arm in "
                  f"{replay['match']:,}/{n:,} rounds ({replay['match'] / n:.2%}); in the {u:,} rounds where "
                  f"banditrec's best arm was unique: {replay['match_unique']:,}/{u:,} "
                  f"({replay['match_unique'] / max(u, 1):.2%}); first mismatch on a unique round: "
                  f"{replay['first_mismatch_on_unique']}")
        except NotInstalled as exc:
            print(f"\nReplay check: MABWiser not installed ({exc})")
    if args.profile:
        profile_banditrec(w, 25)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "load_before": load_before, "load_after": load_after,
                       "horizon": args.horizon, "repeats": args.repeats, "replay": replay, "targets": goals,
                       "rows": [{"library": r.library, "policy": r.policy, "setting": r.setting, "status": r.status,
                                 "rates": r.rates, "cpu_rates": r.cpu_rates, "regret": r.regret} for r in rows]},
                      fh, indent=2)


if __name__ == "__main__":
    main()
