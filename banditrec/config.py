"""Experiment configuration: TOML files become validated, frozen dataclasses.

Every mistake in a config file is reported with the section and key it concerns, before any
simulation starts: unknown keys (with the valid ones), wrong types, missing sections.
"""

from __future__ import annotations

import collections
import difflib
import inspect
import itertools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from banditrec._util import is_int

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "MAX_TRIALS",
    "ConfigError",
    "EnvironmentSpec",
    "ExperimentConfig",
    "PolicySpec",
    "check_environment_keys",
    "did_you_mean",
    "load_config",
    "parse_policies",
    "read_toml",
]


class ConfigError(ValueError):
    """A malformed experiment configuration."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """Which world to simulate: a registered id or a simulator import path, and its parameters."""

    id: str | None = None
    simulator: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.id or self.simulator or "?"


@dataclass(frozen=True)
class PolicySpec:
    """One policy of the experiment: its display name, type and hyperparameters."""

    name: str
    type: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: policies × seeds against one environment.

    Attributes
    ----------
    name : str
    horizon : int
        Decisions per trial (steps × batch size; rounded up to a whole batch).
    batch_size : int
        Users per step (B).
    seeds : tuple of int
        One trial per (policy, seed); the seed derives every random stream of the trial.
    environment : EnvironmentSpec
    policies : tuple of PolicySpec
    n_checkpoints : int
        Rows per trial in ``results.csv`` (the curve is thinned to this many points).
    jobs : int
        Trials run in parallel processes (1: in this process).
    """

    name: str
    horizon: int
    batch_size: int
    seeds: tuple[int, ...]
    environment: EnvironmentSpec
    policies: tuple[PolicySpec, ...]
    n_checkpoints: int = 200
    jobs: int = 1

    def __post_init__(self) -> None:
        """What :meth:`from_dict` checks in a file, checked for a config built or changed in code
        (:meth:`replace`): a bad value is one named error here, not a traceback from the run."""
        name = self.name
        if (
            not isinstance(name, str) or not name.strip() or name in (".", "..")
            or any(c in name for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in name)
        ):
            # a control character (a NUL, a newline) made "embedded null byte" or a folder whose
            # name spans lines
            raise ConfigError(
                f"name must be a non-empty name without path separators or control characters (it names the "
                f"output folder runs/<name>), got {name!r}"
            )
        for key in ("horizon", "batch_size", "n_checkpoints", "jobs"):
            value = getattr(self, key)
            if not is_int(value) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
            object.__setattr__(self, key, int(value))
        policies = self.policies
        if not isinstance(policies, (list, tuple)) or not all(isinstance(p, PolicySpec) for p in policies):
            raise ConfigError(f"policies must be a sequence of PolicySpec, got {policies!r}")
        for spec in policies:
            name = spec.name
            if not isinstance(name, str) or not name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
                # an empty name was an empty cell in results.csv (read back as NaN), a newline or NUL
                # broke its rows and the plot's legend
                raise ConfigError(f"policy names must be non-empty, without control characters, got {name!r}")
        object.__setattr__(self, "policies", tuple(policies))
        seeds = self.seeds
        count = seeds if is_int(seeds) else len(seeds) if isinstance(seeds, (list, tuple, range)) else 0
        n_trials = count * max(1, len(policies))
        if n_trials > MAX_TRIALS:
            # checked before a count becomes a list: seeds = 10**11 (a typo) took minutes and
            # gigabytes before any message
            raise ConfigError(
                f"seeds = {seeds if is_int(seeds) else f'a list of {count:,}'} with {len(policies):,} "
                f"policy(ies) makes {n_trials:,} trials; a config may hold at most {MAX_TRIALS:,}: split the "
                f"sweep into several configs (or check seeds for a typo)"
            )
        if is_int(seeds) and seeds >= 1:
            seeds = range(int(seeds))  # a count, as in a TOML file
        if (
            not isinstance(seeds, (list, tuple, range))
            or not seeds
            or not all(is_int(s) and s >= 0 for s in seeds)
        ):
            raise ConfigError(f"seeds must be a count or a non-empty list of non-negative ints, got {self.seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds has duplicates: {list(seeds)}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))
        if not isinstance(self.environment, EnvironmentSpec):
            raise ConfigError(f"environment must be an EnvironmentSpec, got {type(self.environment).__name__}")

    @property
    def n_steps(self) -> int:
        return -(-self.horizon // self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def replace(self, **changes: Any) -> ExperimentConfig:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data.update(changes)
        return ExperimentConfig(**data)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config") -> ExperimentConfig:
        """Validate a parsed TOML document (see ``experiments/*.toml`` for examples)."""
        _only(raw, {"experiment", "environment", "policies"}, source, "top level")
        exp = _section(raw, "experiment", source)
        _only(exp, {"name", "horizon", "batch_size", "seeds", "n_checkpoints", "jobs"}, source, "[experiment]")
        env = _section(raw, "environment", source)
        pols = _section(raw, "policies", source)
        name = _get(exp, "name", str, source, "[experiment]", default=Path(source).stem)
        if "horizon" not in exp:
            raise ConfigError(f"{source}: [experiment] is missing required key 'horizon'")
        # The values themselves are checked by __post_init__ (its message gets the file's name).
        horizon, batch_size = exp["horizon"], exp.get("batch_size", 1)
        n_checkpoints, jobs, seeds = exp.get("n_checkpoints", 200), exp.get("jobs", 1), exp.get("seeds", 1)
        env_id = env.get("id")
        simulator = env.get("simulator")
        if (env_id is None) == (simulator is None):
            raise ConfigError(f"{source}: [environment] needs exactly one of 'id' (a registered id) or 'simulator' ('package.module:Class')")
        for key, value in (("id", env_id), ("simulator", simulator)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{source}: [environment] {key} must be a string, got {value!r}")
        if "num_envs" in env:
            raise ConfigError(f"{source}: [environment] num_envs is the batch size; set [experiment] batch_size instead")
        environment = EnvironmentSpec(env_id, simulator, {k: v for k, v in env.items() if k not in ("id", "simulator")})
        try:
            check_environment_keys(environment)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        policies = parse_policies(pols, source)
        try:
            return cls(name, horizon, batch_size, seeds, environment, tuple(policies), n_checkpoints, jobs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: [experiment] {exc}") from None


def check_environment_keys(spec: EnvironmentSpec) -> None:
    """Refuse, for a registered id, keys that ``gymnasium.make_vec`` or the id's registration take
    themselves (``wrappers``, ``vector_kwargs``, ``validate``, ...): passed through, some failed
    deep in gymnasium and others (``wrappers = []``) were silently accepted; and
    ``max_episode_steps``, which a trial (``step_batch``, no resets) never looks at. A simulator given by
    import path receives every key, so its own parameters may have these names."""
    if spec.id is None:
        return
    reserved = sorted(set(spec.params) & _make_vec_arguments())
    if reserved:
        raise ConfigError(
            f"[environment] reserved key(s) {reserved}: arguments of gymnasium.make_vec or of the "
            f"registration of {spec.id!r}, which banditrec sets itself, not parameters of the world; remove them"
        )
    if "max_episode_steps" in spec.params:  # accepted, and without any effect on the numbers
        raise ConfigError(
            "[environment] max_episode_steps has no effect in an experiment: a trial plays [experiment] horizon "
            "decisions and never resets the world; remove it (set horizon for the trial's length)"
        )


def _make_vec_arguments() -> set[str]:
    import gymnasium as gym

    params = inspect.signature(gym.make_vec).parameters.values()
    named = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    # "id" is the key that names the world; num_envs has its own message (batch_size)
    return (named | {"validate"}) - {"id", "num_envs"}


def parse_policies(tables: Mapping[str, Any], source: str = "config") -> list[PolicySpec]:
    """The ``[policies.NAME]`` tables of a config as specs, with parameter lists expanded to grids."""
    if not tables:
        raise ConfigError(f"{source}: [policies] is empty; add at least one [policies.NAME] table with a 'type'")
    policies = []
    for pname, body in tables.items():
        if not isinstance(body, Mapping):
            raise ConfigError(f"{source}: [policies.{pname}] must be a table, got {body!r}")
        if "type" not in body or not isinstance(body["type"], str):
            raise ConfigError(f"{source}: [policies.{pname}] needs a string 'type' (e.g. type = \"LinUCB\")")
        params = {k: v for k, v in body.items() if k != "type"}
        if "seed" in params:
            raise ConfigError(f"{source}: [policies.{pname}] seed is set per trial from [experiment] seeds; remove it")
        policies.extend(_expand_grid(pname, body["type"], params, source, limit=MAX_POLICIES - len(policies)))
    repeated = duplicate_names(policies)
    if repeated:
        raise ConfigError(f"{source}: [policies] names must be unique; {describe_duplicates(repeated)}")
    return policies


#: The most (policy, seed) trials a config may hold: more is a typo (``seeds = 10**11``) or a
#: sweep to split, not a run to start.
MAX_TRIALS = 1_000_000

#: The most policies a config's grids may expand to: a typo such as two 1,000-value lists would
#: otherwise build a million policies (minutes and gigabytes) before the first trial.
MAX_POLICIES = 100_000


def duplicate_names(policies: Sequence[PolicySpec]) -> list[str]:
    """Names that more than one policy has, in order of first appearance."""
    counts = collections.Counter(p.name for p in policies)
    return [name for name, count in counts.items() if count > 1]


def describe_duplicates(repeated: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in repeated[:5])
    more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
    return f"{len(repeated)} name(s) repeat: {shown}{more} (grid values that print alike, or a table named as a grid point?)"


def _sequence_parameters(type_: str) -> set[str]:
    """Parameters of a built-in policy type whose value is itself a list (e.g. ``hidden``)."""
    from banditrec.policies.registry import POLICIES, policy_parameters

    if type_ not in POLICIES:
        return set()
    return {k for k, v in policy_parameters(type_).items() if isinstance(v, (list, tuple))}


def _table_parameters(type_: str) -> set[str]:
    """Parameters of a built-in policy type whose value is a table (e.g. ``model_options``): a
    list there is a mistake to name as written, not a grid of ints to refuse one by one."""
    from banditrec.policies.registry import POLICIES

    if type_ not in POLICIES:
        return set()
    params = inspect.signature(POLICIES[type_]).parameters.values()
    return {p.name for p in params if str(p.annotation).startswith(("dict", "Mapping"))}


def _expand_grid(
    name: str, type_: str, params: dict[str, Any], source: str = "config", limit: int = MAX_POLICIES
) -> list[PolicySpec]:
    """A parameter given as a list becomes a grid: one policy per combination, named by the values
    of the parameters that vary (a one-value list, such as one network ``hidden = [[64, 64]]``,
    keeps the table's name).

    A parameter whose value is a list (``hidden``) takes a list of lists as its grid; a flat list
    there is an error, not a grid of one-layer networks the user did not ask for."""
    grid = {k: v for k, v in params.items() if isinstance(v, list)}
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"{source}: [policies.{name}] {key} = [] is an empty grid; give at least one value")
        # 1 and 1.0 are one value under two names: two identical policies, each run and plotted
        repeated = next(((a, b) for i, a in enumerate(values) for b in values[i + 1:]
                         if a == b and type(a) is not bool and type(b) is not bool), None)
        if repeated is not None:
            raise ConfigError(
                f"{source}: [policies.{name}] {key} = {values!r:.120} lists one value twice "
                f"({repeated[0]!r} and {repeated[1]!r}): each would be the same policy"
            )
    # A parameter that takes a table or a list has a grid of tables or of lists; anything else in
    # its list is a mistake, named as written rather than refused value by value.
    shaped = [
        (_table_parameters, Mapping, ("takes a table, got {key} = {value!r}: write {key} = {{name = value}} "
                                     "for one value, or a list of tables for a grid")),
        (_sequence_parameters, list, ("takes a list: write {key} = [{value}] for one value, or a list of "
                                     "lists such as {key} = [[16], [32]] for a grid")),
    ] if grid else []
    for parameters, kind, message in shaped:
        known = parameters(type_)
        wrong = [k for k in grid if k in known and not all(isinstance(v, kind) for v in grid[k])]
        if wrong:
            key = wrong[0]
            raise ConfigError(f"{source}: [policies.{name}] {key} " + message.format(key=key, value=grid[key]))
    if not grid:
        return [PolicySpec(name, type_, params)]
    size = math.prod(len(values) for values in grid.values())
    if size > limit:
        shape = " × ".join(f"{len(v)} {k}" for k, v in grid.items())
        raise ConfigError(
            f"{source}: [policies.{name}] expands to {size:,} policies ({shape}); a config may hold at most "
            f"{MAX_POLICIES:,} in all: split the sweep into several configs (or check the lists for a typo)"
        )
    specs = []
    varied = [k for k, values in grid.items() if len(values) > 1]  # a list of one value is a setting, not a grid
    for combo in itertools.product(*grid.values()):
        chosen = dict(zip(grid, combo))
        label = ",".join(f"{k}={chosen[k]}" for k in varied)
        specs.append(PolicySpec(f"{name}[{label}]" if label else name, type_, {**params, **chosen}))
    return specs


def did_you_mean(word: Any, choices: Sequence[str]) -> str:
    """" (did you mean 'LinUCB'?)" for a near miss of one of ``choices`` (case aside), else ""."""
    if not isinstance(word, str):
        return ""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.75)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def _section(raw: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    if key not in raw:
        raise ConfigError(f"{source}: missing [{key}] section")
    if not isinstance(raw[key], Mapping):
        raise ConfigError(f"{source}: [{key}] must be a table")
    return raw[key]


def _only(table: Mapping[str, Any], allowed: set[str], source: str, where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        hint = did_you_mean(min(unknown), sorted(allowed)) if len(unknown) == 1 else ""
        raise ConfigError(
            f"{source}: unknown key(s) {sorted(unknown)} in {where}{hint}; expected among {sorted(allowed)}"
        )


def _get(table, key, typ, source, where, default=None):
    value = table.get(key, default)
    if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
        raise ConfigError(f"{source}: {where} {key} must be {typ.__name__}, got {value!r}")
    return value


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's document, with one-line errors naming the file: missing, a folder, not
    UTF-8, not TOML. A UTF-8 byte-order mark (some Windows editors write one) is skipped."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a config file: give the TOML file itself")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))  # TOML is UTF-8, whatever the locale
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text (TOML) file: {exc}; a config file must be UTF-8 encoded TOML"
        ) from exc


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment file."""
    return ExperimentConfig.from_dict(read_toml(path), source=str(path))
