"""Small shared helpers: random generators, import paths and number checks."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

__all__ = ["MAX_ID_TABLE_BYTES", "as_generator", "check_id_table", "check_real", "is_int", "is_real", "load_object"]


def is_int(value: Any) -> bool:
    """An integer, not a bool: a TOML ``true`` must not pass as a size or count of 1."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (bools excluded: ``True`` is not a learning rate)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_real(name: str, value: Any) -> float:
    """``value`` as a float, or a TypeError that quotes the parameter and what was given."""
    if not is_real(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


def as_generator(seed: int | np.random.SeedSequence | np.random.Generator | None) -> np.random.Generator:
    """The one place where a seed becomes a generator; the library never touches global state."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not isinstance(seed, (int, np.integer, np.random.SeedSequence)):
        raise TypeError(f"seed must be an int, a SeedSequence, a Generator or None, got {type(seed).__name__}")
    if isinstance(seed, (int, np.integer)) and seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(seed)


def load_object(path: str) -> Any:
    """Resolve ``"package.module:Name"`` to the object it names, with an error that says what failed."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ValueError(f"import path must look like 'package.module:Name', got {path!r}")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} named in {path!r}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})") from None
    return obj


MAX_ID_TABLE_BYTES = 4 << 30  # 4 GiB


def check_id_table(n_ids: int, bytes_per_id: int, who: str) -> None:
    """Statistics indexed by item id are sized by the largest id seen: refuse, with the fix, a table
    above ``MAX_ID_TABLE_BYTES`` (a hashed id of 10¹⁰ would otherwise ask numpy for terabytes)."""
    if n_ids * bytes_per_id > MAX_ID_TABLE_BYTES:
        raise ValueError(
            f"{who}: item id {n_ids - 1:,} would need per-id statistics for {n_ids:,} ids "
            f"({n_ids * bytes_per_id / 2**30:,.1f} GiB; the limit is {MAX_ID_TABLE_BYTES / 2**30:.0f} GiB). "
            "These tables are indexed by id: map item ids to 0 .. n_items - 1 first"
        )
