"""Play policies × seeds against an environment and keep every finished trial.

One trial is one (policy, seed) pair: a fresh environment and a fresh policy, both seeded from the
trial seed through ``numpy.random.SeedSequence``, play ``horizon`` decisions in batches. Trials are
written to ``OUT/trials/`` the moment they finish (atomically), so an interrupted run loses only
the trials in flight and a rerun skips every trial already there with the same settings.
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import importlib.machinery
import inspect
import io
import json
import os
import platform
import re
import site
import sys
import sysconfig
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from banditrec import __version__
from banditrec._util import load_object
from banditrec.config import (
    ConfigError,
    EnvironmentSpec,
    ExperimentConfig,
    PolicySpec,
    check_environment_keys,
    describe_duplicates,
    did_you_mean,
    duplicate_names,
)
from banditrec.environments.env import BanditVectorEnv
from banditrec.environments.registration import make_simulator, make_vector_env
from banditrec.environments.simulator import to_numpy
from banditrec.policies.registry import fresh_params, make_policy
from banditrec.results import RESULT_COLUMNS
from banditrec.sweep import TrialFailure, TrialsFailed, check_backend, execute_trials

__all__ = [
    "RunResult", "TrialResult", "TrialsFailed", "build_env", "check_output_dir", "run_experiment", "run_trial",
    "trial_seeds",
]

@dataclass
class TrialResult:
    """The curve of one (policy, seed) trial, thinned to checkpoints, and its timing."""

    policy: str
    seed: int
    table: pd.DataFrame
    wall_time: float
    decisions: int
    feedback: Any = None  # LoggedFeedback of every decision, when asked for

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.wall_time if self.wall_time > 0 else float("inf")


@dataclass
class RunResult:
    """What ``run_experiment`` returns: the tidy results, the summary and where they were saved."""

    results: pd.DataFrame
    summary: pd.DataFrame
    out_dir: Path | None
    trials_run: int
    trials_reused: int


def trial_seeds(seed: int, policy_name: str) -> tuple[int, np.random.SeedSequence]:
    """Environment seed and policy seed sequence of a trial, both derived from one seed.

    The environment's seed depends on the seed alone, so every policy meets the same users
    (common random numbers); the policy's stream also depends on its name, so adding a policy to
    a config changes no other policy's numbers.
    """
    env_seed = int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])
    policy_seq = np.random.SeedSequence([seed, 1, zlib.crc32(policy_name.encode())])
    return env_seed, policy_seq


def build_env(spec: EnvironmentSpec, batch_size: int) -> BanditVectorEnv:
    """The vector environment of a config: from a registered id or a simulator import path."""
    if spec.id is not None:
        return make_vector_env(spec.id, num_envs=batch_size, **dict(spec.params))
    return BanditVectorEnv(make_simulator(spec.simulator, **dict(spec.params)), num_envs=batch_size)


def _checkpoints(n_steps: int, n_points: int) -> np.ndarray:
    """Indices of the steps kept in the results table: evenly spaced, always the last one."""
    if n_steps <= n_points:
        return np.arange(n_steps)
    if n_points == 1:  # linspace would keep step 0, and the summary would call the first batch "final"
        return np.array([n_steps - 1])
    return np.unique(np.linspace(0, n_steps - 1, n_points).round().astype(np.int64))


def run_trial(
    config: ExperimentConfig,
    policy_spec: PolicySpec,
    seed: int,
    progress: Callable[[int], None] | None = None,
    log_feedback: bool = False,
) -> TrialResult:
    """Play one policy with one seed for the configured horizon.

    With ``log_feedback`` the trial also returns every decision as
    :class:`banditrec.ope.LoggedFeedback` (contexts, candidates, actions, rewards, propensities
    and the simulator's expected rewards), for off-policy evaluation of other policies.
    """
    B = config.batch_size
    env_seed, policy_seed = trial_seeds(seed, policy_spec.name)
    n_steps = config.n_steps
    try:
        env = build_env(config.environment, B)
        policy = make_policy(policy_spec.type, seed=policy_seed, **fresh_params(policy_spec.params))
        reward_sum, regret_sum = _step_sums(config)
    except Exception as exc:
        exc.add_note(f"in trial {policy_spec.name!r}, seed {seed}, building its world and policy")
        raise
    try:
        env.reset(seed=env_seed)  # the first users: a simulator's error here names the trial too
    except Exception as exc:
        exc.add_note(f"in trial {policy_spec.name!r}, seed {seed}, at the first reset (before step 1 of {n_steps})")
        raise
    report_every = max(1, n_steps // 100)
    obs = env.observation
    log: list[tuple[Any, ...]] | None = [] if log_feedback else None
    # A device world's rewards and regrets stay on the device until the trial ends: no per-step read.
    device_sums: list[Any] | None = [] if obs.on_device else None
    warm_up = getattr(getattr(policy, "estimator", None), "warm_up", None)
    if callable(warm_up):
        warm_up()  # one-off per-process costs (loading compiled loops) stay outside the clock
    start = time.perf_counter()
    t = 0
    try:
        for t in range(n_steps):
            actions, propensities = policy.act(obs)
            if log is not None:
                log.append((obs, actions, propensities, env.core.expected))
            next_obs, rewards, _, info = env.step_batch(actions)
            policy.update(obs, actions, rewards)
            if log is not None:
                log[-1] = log[-1] + (rewards,)
            if device_sums is not None:
                device_sums.append(torch.stack([rewards.sum(), info["regret"].sum()]))
            else:
                reward_sum[t] = rewards.sum()
                regret_sum[t] = info["regret"].sum()
            obs = next_obs
            if progress is not None and (t + 1) % report_every == 0:
                progress(report_every)
    except Exception as exc:
        # A sweep's error must say which trial failed: with several jobs the first to fail is
        # whichever finishes first, and its message alone names no policy or seed.
        exc.add_note(f"in trial {policy_spec.name!r}, seed {seed}, step {t + 1} of {n_steps}")
        raise
    if device_sums:
        reward_sum, regret_sum = torch.stack(device_sums).double().cpu().numpy().T
    wall = time.perf_counter() - start
    if progress is not None:
        progress(n_steps % report_every)
    cum_reward, cum_regret = np.cumsum(reward_sum), np.cumsum(regret_sum)
    keep = _checkpoints(n_steps, config.n_checkpoints)
    prev = np.concatenate([[-1], keep[:-1]])
    decisions = (keep + 1) * B
    window = (keep - prev) * B
    prev_reward = np.where(prev >= 0, cum_reward[np.maximum(prev, 0)], 0.0)
    prev_regret = np.where(prev >= 0, cum_regret[np.maximum(prev, 0)], 0.0)
    table = pd.DataFrame(
        {
            "policy": policy_spec.name,
            "seed": seed,
            "step": decisions,
            "reward": (cum_reward[keep] - prev_reward) / window,
            "regret": (cum_regret[keep] - prev_regret) / window,
            "cumulative_reward": cum_reward[keep],
            "cumulative_regret": cum_regret[keep],
        }
    )
    try:
        feedback = _feedback_from_log(log, B, policy_spec.name, seed, config) if log is not None else None
    except Exception as exc:  # e.g. a MemoryError for a long log
        exc.add_note(f"in trial {policy_spec.name!r}, seed {seed}, collecting its logged feedback")
        raise
    return TrialResult(policy_spec.name, seed, table, wall, n_steps * B, feedback)


def _step_sums(config: ExperimentConfig) -> tuple[np.ndarray, np.ndarray]:
    """A trial's per-step reward and regret sums, or one line for a horizon too long to hold
    (``horizon = 10**17`` was a bare MemoryError from numpy)."""
    n_steps = config.n_steps
    try:
        return np.empty(n_steps), np.empty(n_steps)
    except (MemoryError, ValueError, OverflowError):
        raise ValueError(
            f"[experiment] horizon {config.horizon:,} is {n_steps:,} steps of {config.batch_size} user(s): a trial's per-step "
            f"sums would take {16 * n_steps / 2**30:,.1f} GiB, more than this machine can allocate; lower horizon"
        ) from None


def _feedback_from_log(log: list[tuple[Any, ...]], B: int, policy: str, seed: int, config: ExperimentConfig) -> Any:
    from banditrec.ope.feedback import LoggedFeedback

    def stack(i: int, field: str | None = None) -> np.ndarray:
        return np.concatenate([to_numpy(getattr(row[i], field) if field else row[i]) for row in log])

    mask = stack(0, "mask")
    return LoggedFeedback(
        user_features=stack(0, "user_features"),
        item_features=stack(0, "item_features"),
        item_ids=stack(0, "item_ids"),
        mask=mask,
        user_ids=stack(0, "user_ids"),
        actions=stack(1),
        rewards=stack(4),
        propensities=stack(2),
        timestamps=np.repeat(np.arange(len(log)), B),
        expected_rewards=np.where(mask, stack(3), np.nan),
        metadata={"source": "banditrec simulation", "environment": config.environment.label,
                  "policy": policy, "seed": seed, "batch_size": B},
    )


# ------------------------------------------------------------------ storage
def _fingerprint(
    config: ExperimentConfig, policy_spec: PolicySpec, seed: int, code: dict[str, str] | None = None
) -> str:
    """What determines a trial's numbers; a stored trial is reused only if this matches.

    ``code`` (from :func:`_user_code`) adds the source of the user code the trial runs, so that
    editing a plug-in simulator or policy makes its stored trials stale rather than reused."""
    key = {
        "environment": asdict(config.environment),
        "policy": asdict(policy_spec),
        "horizon": config.horizon,
        "batch_size": config.batch_size,
        "n_checkpoints": config.n_checkpoints,
        "seed": seed,
    }
    mine = {k: v for k, v in (code or {}).items() if k in ("environment", f"policy:{policy_spec.name}")}
    if mine:  # absent for built-in worlds and policies: their trials keep the fingerprints they had
        key["code"] = mine
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _user_code(config: ExperimentConfig) -> dict[str, str]:
    """sha256 of the source file of each piece of user code in ``config``: a simulator (an import
    path, or a registered id whose simulator lives outside banditrec) and policy factories (an
    import path, or one added with ``register_policy``). The user code those files import counts
    too (see :func:`_user_imports`); code whose source cannot be read (an interactive session) is
    left out."""
    from banditrec.environments.registration import _make_vector_env
    from banditrec.policies.registry import POLICIES

    code: dict[str, str] = {}
    env = config.environment
    simulator: Any = env.simulator
    if env.id is not None and env.id in gym.registry:
        entry = gym.registry[env.id].vector_entry_point
        simulator = entry.args[0] if isinstance(entry, partial) and entry.func is _make_vector_env else None
    memo: dict[str, str | None] = {}  # module -> digest: a sweep names one factory for thousands of policies
    digest = _source_digest(load_object(simulator) if isinstance(simulator, str) else simulator, memo)
    if digest is not None:
        code["environment"] = digest
    for spec in config.policies:
        factory = load_object(spec.type) if ":" in spec.type else POLICIES.get(spec.type)
        digest = _source_digest(factory, memo)
        if digest is not None:
            code[f"policy:{spec.name}"] = digest
    return code


def _source_digest(obj: Any, memo: dict[str, str | None] | None = None) -> str | None:
    """sha256 of the file defining ``obj`` and of the user code it imports (see :func:`_user_imports`),
    or None for banditrec's own code and unreadable sources. A file that imports no user code
    keeps the digest of its own source alone, as before imports were followed."""
    module = inspect.getmodule(obj) if obj is not None else None
    if module is None or module.__name__.split(".")[0] == "banditrec":
        return None
    if memo is not None and module.__name__ in memo:
        return memo[module.__name__]
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        source = None
    digest = None if source is None else _module_digest(module, source)
    if memo is not None:
        memo[module.__name__] = digest
    return digest


def _module_digest(module: Any, source: str) -> str:
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    imported = _user_imports(module.__name__, source, hasattr(module, "__path__"))
    if not imported:
        return digest
    parts = [digest] + [f"{name}:{hashlib.sha256(data).hexdigest()}" for name, data in sorted(imported.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _user_imports(name: str, source: str, is_package: bool) -> dict[str, bytes]:
    """The source files of the user code module ``name`` imports, directly or through other user
    code: module name -> file contents. A helper module a plug-in simulator or policy imports
    (``from shop_features import embed``) shapes its trials as much as the plug-in's own file,
    so editing it must make them stale too. User code is a ``.py`` file outside the standard
    library, the installed packages and banditrec; imports anywhere in a file count (inside
    functions too), found by reading it, not by running it."""
    found: dict[str, bytes] = {}
    todo = [(name, source, is_package)]
    seen = {name}
    while todo:
        current, text, package = todo.pop()
        for imported in _imports_of(current, text, package):
            if imported in seen:
                continue
            seen.add(imported)
            path, imported_is_package = _locate(imported)
            if path is None or not _is_user_file(path):
                continue
            try:
                data = Path(path).read_bytes()
            except OSError:
                continue
            found[imported] = data
            todo.append((imported, data.decode("utf-8", "replace"), imported_is_package))
    return found


def _imports_of(name: str, source: str, is_package: bool) -> list[str]:
    """Absolute names of the modules ``source`` (module ``name``) imports, parents included
    (``import a.b`` runs ``a`` too; ``from a import b`` may import the module ``a.b``)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    package = name if is_package else name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if not base:
                continue
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    out: list[str] = []
    for full in names:
        parts = full.split(".")
        out += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return list(dict.fromkeys(out))


def _locate(name: str) -> tuple[str | None, bool]:
    """(source file, is a package) of module ``name``: the loaded module's, else where the path
    finder would load it from (without importing it); (None, False) when neither says."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None), hasattr(module, "__path__")
    parent = name.rpartition(".")[0]
    try:
        if parent:
            search = getattr(sys.modules.get(parent), "__path__", None)
            if search is None:  # `from a import b` where b is a name in a module, or a not loaded
                return None, False
            spec = importlib.machinery.PathFinder.find_spec(name, search)
        else:
            spec = importlib.machinery.PathFinder.find_spec(name)
    except (ImportError, ValueError):
        return None, False
    if spec is None or not spec.has_location or not spec.origin:
        return None, False
    return spec.origin, spec.submodule_search_locations is not None


def _is_user_file(path: str) -> bool:
    if not path.endswith(".py"):
        return False
    resolved = Path(path).resolve()
    return not any(resolved.is_relative_to(root) for root in _not_user_roots())


@functools.cache
def _not_user_roots() -> tuple[Path, ...]:
    """Folders whose files are not user code: the standard library, the installed packages
    (site-packages, also a virtual environment's) and banditrec itself."""
    paths = {sysconfig.get_path(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= set(getattr(site, "getsitepackages", list)()) | {site.getusersitepackages()}
    paths.add(str(Path(__file__).resolve().parent))
    return tuple(Path(p).resolve() for p in paths if p)


def _trial_stem(policy: str, seed: int) -> str:
    """The trial's file name: readable, and unique through a 64-bit hash of the policy's name (a
    32-bit CRC let two grid points of a large sweep share a file: about 1% at 10,000 points)."""
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", policy)[:60]
    return f"{safe}-{hashlib.sha256(policy.encode()).hexdigest()[:16]}__seed{seed}"


def _legacy_trial_stem(policy: str, seed: int) -> str:
    """The name trials had before the 64-bit hash; still read (the JSON names its policy)."""
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", policy)[:60]
    return f"{safe}-{zlib.crc32(policy.encode()):08x}__seed{seed}"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file renamed over ``path``; a failed write (a full disk) leaves
    no temporary file behind and names ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None:
            raise
        # "[Errno 28] No space left on device" named no file
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _save_trial(trials_dir: Path, result: TrialResult, fingerprint: str) -> None:
    stem = _trial_stem(result.policy, result.seed)
    feedback_path = trials_dir.parent / "feedback" / f"{stem}.npz"
    feedback_sha256 = None
    if result.feedback is not None:
        result.feedback.metadata["fingerprint"] = fingerprint
        result.feedback.save(feedback_path)
        feedback_sha256 = hashlib.sha256(feedback_path.read_bytes()).hexdigest()
    else:  # a log left by an earlier run of this trial under other settings is not this trial's
        feedback_path.unlink(missing_ok=True)
    data = result.table.to_csv(index=False).encode("utf-8")  # a policy named "ε-greedy" under any locale
    _atomic_write(trials_dir / f"{stem}.csv", lambda p: p.write_bytes(data))
    meta = {"policy": result.policy, "seed": result.seed, "fingerprint": fingerprint,
            "wall_time": result.wall_time, "decisions": result.decisions,
            "feedback": result.feedback is not None, "banditrec": __version__,
            "sha256": hashlib.sha256(data).hexdigest(), "feedback_sha256": feedback_sha256}
    # The JSON is written last: a trial counts as finished only when both files exist.
    _atomic_write(trials_dir / f"{stem}.json", lambda p: p.write_text(json.dumps(meta)))


def _parse_trial_table(data: bytes) -> pd.DataFrame:
    """A trial's table from the bytes ``_save_trial`` wrote (their checksum already checked), or a
    ValueError. Parsed with the csv module rather than ``pd.read_csv``, whose fixed cost per call
    (about 5 ms) was most of resuming a sweep of small trials: 35 s of 41 s for 10,000 of them.
    Python's float() reads back the shortest repr pandas wrote exactly, as read_csv did."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    if not rows or rows[0] != RESULT_COLUMNS or any(len(row) != len(RESULT_COLUMNS) for row in rows[1:]):
        raise ValueError("not a trial table")
    columns = list(zip(*rows[1:])) if len(rows) > 1 else [()] * len(RESULT_COLUMNS)
    table = {
        "policy": np.array(columns[0], dtype=object),
        "seed": np.array([int(v) for v in columns[1]], dtype=np.int64),
        "step": np.array([int(v) for v in columns[2]], dtype=np.int64),
    }
    for name, values in zip(RESULT_COLUMNS[3:], columns[3:]):
        table[name] = np.array([float(v) for v in values], dtype=np.float64)
    return pd.DataFrame(table)


def _load_trial(
    trials_dir: Path, policy: str, seed: int, fingerprint: str, steps: np.ndarray, need_feedback: bool = False
) -> TrialResult | None:
    """A stored trial, or None when it must be (re)computed: absent, of other settings or another
    banditrec version, or damaged (a table cut short, edited or copied from another trial: its
    checksum, rows, policy, seed and ``steps``, the decision counts it must hold, are checked)."""
    for stem in (_trial_stem(policy, seed), _legacy_trial_stem(policy, seed)):
        meta_path, csv_path = trials_dir / f"{stem}.json", trials_dir / f"{stem}.csv"
        if meta_path.is_file() and csv_path.is_file():
            break
    else:
        return None
    if need_feedback and not (trials_dir.parent / "feedback" / f"{stem}.npz").is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            return None
        if meta.get("fingerprint") != fingerprint or meta.get("policy") != policy or meta.get("seed") != seed:
            return None
        if meta.get("banditrec", __version__) != __version__:  # trials from before the field: same version
            return None
        if need_feedback and not meta.get("feedback"):  # its log, if any, is from another run
            return None
        if need_feedback and meta.get("feedback_sha256") is not None:  # a log a later, stopped run overwrote
            feedback = (trials_dir.parent / "feedback" / f"{stem}.npz").read_bytes()
            if hashlib.sha256(feedback).hexdigest() != meta["feedback_sha256"]:
                return None
        data = csv_path.read_bytes()
        if "sha256" in meta and hashlib.sha256(data).hexdigest() != meta["sha256"]:
            return None
        table = _parse_trial_table(data)  # a policy named "1" or "NA" stays itself
        if len(table) != len(steps):
            return None
        numbers = table[RESULT_COLUMNS[2:]].to_numpy(dtype=np.float64, na_value=np.nan)
        wall_time, decisions = float(meta["wall_time"]), int(meta["decisions"])
    except (ValueError, OSError, TypeError, KeyError, OverflowError):
        return None  # a damaged trial is recomputed, never trusted
    if (
        not np.isfinite(numbers).all()
        or not (table["policy"].to_numpy() == policy).all()
        or not (table["seed"].to_numpy() == seed).all()
        or not np.array_equal(table["step"].to_numpy(), steps)
        or not (np.isfinite(wall_time) and wall_time >= 0)
        or decisions != steps[-1]
    ):
        return None
    return TrialResult(policy, seed, table, wall_time, decisions)


# ------------------------------------------------------------------ the run
def check_output_dir(path: str | Path, *subfolders: str) -> Path:
    """``path`` as an output folder, refused before any work if it, a folder above it or one of
    ``subfolders`` in it is an existing file: ``mkdir`` would fail only later, with a bare
    ``NotADirectoryError`` or ``FileExistsError``."""
    path = Path(path)
    for target in [path, *(path / sub for sub in subfolders)]:
        existing = next((p for p in (target, *target.parents) if p.exists()), None)
        if existing is None or existing.is_dir():
            continue
        if existing == path:
            problem = f"output path {path} is a file, not a folder"
        elif path in existing.parents:
            name = existing.name
            problem = f"output folder {path} holds a file {name!r} where its {name}/ folder goes"
        else:
            problem = f"output path {path} lies inside {existing}, which is a file, not a folder"
        raise NotADirectoryError(f"{problem}; choose another output folder (--out)")
    return path


def _check_runnable(config: ExperimentConfig) -> None:
    """Fail before any trial runs: no policies, unknown env ids, policy types or parameters."""
    if not config.policies:
        raise ConfigError("the experiment has no policies to run; add at least one [policies.<name>] table")
    repeated = duplicate_names(config.policies)
    if repeated:
        raise ConfigError(f"policy names must be unique; {describe_duplicates(repeated)}")
    _step_sums(config)  # a horizon too long to hold fails here, not in every trial
    _check_environment(config.environment, config.batch_size)
    for spec in config.policies:
        try:
            make_policy(spec.type, seed=0, **dict(spec.params))
        except (TypeError, ValueError, ImportError) as exc:
            raise ConfigError(f"[policies.{spec.name}]: {exc}") from exc
        except Exception as exc:  # a plug-in factory's own failure (its import's SyntaxError too): one line
            if ":" not in spec.type:
                raise  # banditrec's own policy: a bug of ours, with its traceback
            raise ConfigError(f"[policies.{spec.name}]: {spec.type} failed: {type(exc).__name__}: {exc}") from exc


def _check_environment(spec: EnvironmentSpec, batch_size: int) -> None:
    """Build the world once; its mistakes name ``[environment]`` and an unknown key lists the
    valid ones (a TypeError, ImportError or ValueError as before, so callers catch the same)."""
    check_environment_keys(spec)
    accepted = _environment_keys(spec)
    unknown = sorted(set(spec.params) - accepted) if accepted is not None else []
    if unknown:
        hint = did_you_mean(unknown[0], sorted(accepted)) if len(unknown) == 1 else ""
        raise TypeError(
            f"[environment] unknown key(s) {unknown} for {spec.label}{hint}; expected among {sorted(accepted)}"
        )
    try:
        env = build_env(spec, batch_size)
    except (TypeError, ImportError, ValueError) as exc:
        kind = TypeError if isinstance(exc, TypeError) else ImportError if isinstance(exc, ImportError) else ConfigError
        raise kind(f"[environment] {exc}") from exc
    except MemoryError as exc:  # n_items = 10**10, batch_size = 10**11: numpy's bare traceback
        raise ConfigError(
            f"[environment] {spec.label} with batch_size {batch_size:,} needs more memory than this machine can "
            f"allocate ({exc or 'MemoryError'}); lower batch_size or the world's sizes"
        ) from exc
    except Exception as exc:  # a user simulator's own failure while it is built: one line naming it
        if spec.simulator is None and str(spec.id).startswith("banditrec/"):
            raise  # one of banditrec's worlds: a bug of ours, with its traceback
        raise ConfigError(f"[environment] {spec.label} failed to build: {type(exc).__name__}: {exc}") from exc
    env.close()


def _environment_keys(spec: EnvironmentSpec) -> set[str] | None:
    """The keys ``[environment]`` may hold besides id/simulator: the simulator's parameters; None
    when it takes any (``**kwargs``) or they cannot be read, and building the world says what is
    wrong."""
    from banditrec.environments.registration import _make_vector_env

    simulator: Any = spec.simulator
    if spec.id is not None:
        entry = gym.registry[spec.id].vector_entry_point if spec.id in gym.registry else None
        if not (isinstance(entry, partial) and entry.func is _make_vector_env):
            return None
        simulator = entry.args[0]
    try:
        params = inspect.signature(load_object(simulator) if isinstance(simulator, str) else simulator).parameters
    except (ImportError, ValueError, TypeError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path | None = None,
    progress: bool = True,
    plot: bool = True,
    log_feedback: bool = False,
    backend: str = "local",
    address: str | None = None,
    keep_going: bool = False,
) -> RunResult:
    """Run every (policy, seed) trial of ``config``, reusing finished ones found in ``out_dir``.

    Writes ``results.csv`` (tidy: policy, seed, step, reward, regret, cumulative_reward,
    cumulative_regret), ``summary.csv``, ``manifest.json`` and, with ``plot``, ``regret.png`` and
    ``regret.pdf`` into ``out_dir``. Without ``out_dir`` nothing is written. With
    ``log_feedback`` every trial's decisions are also saved as ``feedback/<trial>.npz``
    (:class:`banditrec.ope.LoggedFeedback`) for off-policy evaluation. ``backend`` and
    ``address`` choose where trials run (see :func:`banditrec.sweep.execute_trials`).

    A trial that raises stops the run with its error (finished trials stay saved). With
    ``keep_going`` the other trials run on and :class:`TrialsFailed` lists every failure at the
    end; either way no table or plot is written for a run with a failed trial.
    """
    from banditrec.results import summarise, write_manifest  # avoid import cycles at module load

    check_backend(backend, address)  # before the output folder's old tables are removed
    subfolders = ("trials", "feedback") if log_feedback else ("trials",)
    out = check_output_dir(out_dir, *subfolders) if out_dir is not None else None
    _check_runnable(config)
    trials_dir = out / "trials" if out is not None else None
    if trials_dir is not None:
        trials_dir.mkdir(parents=True, exist_ok=True)
        if log_feedback:
            (out / "feedback").mkdir(exist_ok=True)
    todo, done = [], {}
    code = _user_code(config)
    steps = (_checkpoints(config.n_steps, config.n_checkpoints) + 1) * config.batch_size  # a trial's "step" column
    for spec in config.policies:
        for seed in config.seeds:
            fp = _fingerprint(config, spec, seed, code)
            found = _load_trial(trials_dir, spec.name, seed, fp, steps, log_feedback) if trials_dir is not None else None
            if found is not None:
                done[(spec.name, seed)] = found
            else:
                todo.append((spec, seed, fp))
    reused = len(done)
    if out is not None and todo:
        # the tables and plots describe every trial of a finished run: those of an earlier run
        # would look current if this one fails or is interrupted
        for name in ("results.csv", "summary.csv", "regret.png", "regret.pdf"):
            (out / name).unlink(missing_ok=True)
    bar = _progress_bar(progress, len(todo) * config.n_steps, config.name)
    start = time.perf_counter()

    def finish(spec: PolicySpec, seed: int, fp: str, result: TrialResult) -> None:
        done[(spec.name, seed)] = result
        if trials_dir is not None:
            _save_trial(trials_dir, result, fp)

    failures: list[tuple[str, int, str]] = []
    try:
        tick = bar.update if bar is not None else None
        trials = execute_trials(config, todo, backend, address, log_feedback, tick, keep_going)
        for (spec, seed, fp), result in trials:
            if isinstance(result, TrialFailure):
                failures.append((spec.name, seed, result.message))
            else:
                finish(spec, seed, fp, result)
    finally:
        if bar is not None:
            bar.close()
    if failures:
        # every failed trial by name, to be found however many there are; the errors of the first three
        errors = "; ".join(message for _, _, message in failures[:3])
        first = "the first 3 errors" if len(failures) > 3 else "error" if len(failures) == 1 else "errors"
        raise TrialsFailed(
            f"{len(failures)} of {len(todo)} trial(s) failed, the other {len(todo) - len(failures)} finished and "
            f"are saved (a rerun retries only the failed ones): {_name_trials(failures)}; {first}: {errors}"
        )
    elapsed = time.perf_counter() - start
    ordered = [done[(s.name, seed)] for s in config.policies for seed in config.seeds]
    results = pd.concat([t.table for t in ordered], ignore_index=True)[RESULT_COLUMNS]
    summary = summarise(ordered, config.policies)
    if out is not None:
        _warn_foreign_feedback(out, config)
        _atomic_write(out / "results.csv", lambda p: results.to_csv(p, index=False))
        _atomic_write(out / "summary.csv", lambda p: summary.to_csv(p, index=False))
        write_manifest(out / "manifest.json", config, ordered, elapsed, len(todo), reused)
        if plot:
            from banditrec.plots import plot_results

            plot_results(results, out / "regret.png", title=config.name)
        else:  # an earlier run's plots would look current beside these tables (all trials reused)
            for name in ("regret.png", "regret.pdf"):
                (out / name).unlink(missing_ok=True)
    return RunResult(results, summary, out, len(todo), reused)


def _warn_foreign_feedback(out: Path, config: ExperimentConfig) -> None:
    """Warn when ``out/feedback`` holds logs of trials this config does not have: a folder reused
    for another config kept them, and ``banditrec ope OUT/feedback/*.npz`` would mix two worlds."""
    folder = out / "feedback"
    if not folder.is_dir():
        return
    ours = {f"{_trial_stem(spec.name, seed)}.npz" for spec in config.policies for seed in config.seeds}
    ours |= {f"{_legacy_trial_stem(spec.name, seed)}.npz" for spec in config.policies for seed in config.seeds}
    foreign = sorted(p.name for p in folder.glob("*.npz") if p.name not in ours)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        warnings.warn(
            f"{folder} holds {len(foreign)} log(s) of trials that are not part of this run ({shown}), left by an "
            f"earlier config in this folder: `banditrec ope {folder}/*.npz` would mix them in; remove them or "
            "run into another --out",
            stacklevel=3,
        )


def _name_trials(trials: list[tuple[str, int, str]]) -> str:
    """Trials as "'linucb' (seeds 0, 2), 'eg' (seed 1)": one entry per policy, short enough to list all."""
    seeds: dict[str, list[int]] = {}
    for policy, seed, _ in trials:
        seeds.setdefault(policy, []).append(seed)
    return ", ".join(
        f"{policy!r} (seed{'s' if len(s) > 1 else ''} {', '.join(str(x) for x in sorted(s))})" for policy, s in seeds.items()
    )


def _progress_bar(enabled: bool, total: int, name: str) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, unit="step", dynamic_ncols=True)


def environment_info() -> dict[str, Any]:
    """Versions and machine, for the manifest."""
    import gymnasium
    import scipy
    import torch

    from banditrec import __version__

    return {
        "banditrec": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
