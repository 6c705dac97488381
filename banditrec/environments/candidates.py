"""Drawing candidate sets: K distinct catalogue items per user, optionally fewer valid ones."""

from __future__ import annotations

import functools

import numpy as np

from banditrec._util import is_int, is_real

__all__ = ["check_world_float", "check_world_sizes", "sample_candidates"]


def check_world_sizes(n_items: int, n_candidates: int | None, min_candidates: int | None) -> tuple[int, int]:
    """Validate the catalogue/candidate sizes shared by the built-in worlds; returns (K, min valid)."""
    if not is_int(n_items) or n_items < 1:
        raise ValueError(f"n_items must be a positive int, got {n_items!r}")
    K = n_items if n_candidates is None else n_candidates
    if not is_int(K) or not 1 <= K <= n_items:
        raise ValueError(f"n_candidates must be an int in [1, n_items={n_items}], got {n_candidates!r}")
    lo = K if min_candidates is None else min_candidates
    if not is_int(lo) or not 1 <= lo <= K:
        raise ValueError(f"min_candidates must be an int in [1, n_candidates={K}], got {min_candidates!r}")
    return int(K), int(lo)


def check_world_seed(world_seed: object) -> int:
    """A synthetic world's fixed seed: an int >= 0 (numpy's own error would not name it)."""
    if not isinstance(world_seed, (int, np.integer)) or isinstance(world_seed, bool) or world_seed < 0:
        raise ValueError(f"world_seed must be an int >= 0, got {world_seed!r}")
    return int(world_seed)


def check_world_float(
    name: str, value: object, low: float | None = None, high: float | None = None, *, open_low: bool = False
) -> float:
    """A synthetic world's real parameter as a float: a number (not a string such as a TOML "3",
    nor a bool), finite, and >= ``low`` (> with ``open_low``) and < ``high`` where given; the
    error quotes the parameter and what was given, like the int checks above."""
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if open_low else '>='} {low:g}")
    if high is not None:
        bounds.append(f"< {high:g}")
    wanted = f"a finite number{' ' + ' and '.join(bounds) if bounds else ''}"
    if not is_real(value):
        hint = "a string; write the number without quotes" if isinstance(value, str) else type(value).__name__
        raise ValueError(f"{name} must be {wanted}, got {value!r} ({hint})")
    x = float(value)
    if not np.isfinite(x) or (low is not None and (x <= low if open_low else x < low)) or (
        high is not None and x >= high
    ):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return x


def sample_candidates(
    rng: np.random.Generator,
    batch_size: int,
    n_items: int,
    n_candidates: int,
    min_candidates: int,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate ids ``[B, K]`` (distinct within a row) and the validity mask ``[B, K]``.

    When K equals the catalogue size and no weights are given, every user sees all items in
    catalogue order (slot k is item k): the classic K-armed contextual bandit.
    """
    B, K = batch_size, n_candidates
    if K == n_items and weights is None and min_candidates == K:
        return _full_catalogue(B, K)
    if K == n_items and weights is None:
        ids = _full_catalogue(B, K)[0]
    elif weights is not None:
        # Gumbel top-k: sampling without replacement proportional to weights.
        keys = np.log(weights)[None, :] - np.log(-np.log(rng.random((B, n_items))))
        ids = np.argpartition(-keys, K - 1, axis=1)[:, :K].astype(np.int64)
    elif B * n_items <= 4_000_000:
        ids = np.argpartition(rng.random((B, n_items)), K - 1, axis=1)[:, :K].astype(np.int64)
    else:
        ids = _sample_sparse(rng, B, n_items, K)
    if min_candidates == K:
        mask = np.ones((B, K), dtype=bool)
    else:
        n_valid = rng.integers(min_candidates, K + 1, size=B)
        mask = np.arange(K)[None, :] < n_valid[:, None]
    return ids, mask


@functools.lru_cache(maxsize=32)
def _full_catalogue(B: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Every item in catalogue order, all valid: read-only arrays reused across steps."""
    ids = np.broadcast_to(np.arange(K, dtype=np.int64), (B, K))
    mask = np.ones((B, K), dtype=bool)
    mask.flags.writeable = False
    return ids, mask


def _sample_sparse(rng: np.random.Generator, B: int, n_items: int, K: int) -> np.ndarray:
    """Distinct ids from a catalogue too large to draw a key per (user, item) for all B users at once.

    Every scheme below treats item labels symmetrically, so each row is a uniform random K-subset
    (in uniform random order). Which scheme runs depends on the sizes only:

    - K² ≤ n_items (duplicates rare): draw with replacement, redraw the rows with a duplicate;
    - 4K ≤ n_items: draw with replacement, redraw only the repeated entries (redrawing whole rows
      would repeat ~log B / P(no duplicate) times, e.g. 160 rounds for K = 100 of 1,682 items and
      B = 4,096);
    - otherwise: the dense scheme (random keys, top K) on blocks of rows of at most 4·10⁶ keys.
    """
    if K * K > n_items and 4 * K > n_items:
        rows = max(1, 4_000_000 // n_items)
        top = [
            np.argpartition(rng.random((min(rows, B - s), n_items)), K - 1, axis=1)[:, :K]  # one block at a time
            for s in range(0, B, rows)
        ]
        return np.concatenate(top).astype(np.int64)
    ids = rng.integers(0, n_items, size=(B, K))
    if K * K > n_items:
        while True:
            order = np.argsort(ids, axis=1, kind="stable")
            s = np.take_along_axis(ids, order, axis=1)
            r, c = np.nonzero(s[:, 1:] == s[:, :-1])
            if r.size == 0:
                return ids.astype(np.int64)
            ids[r, order[r, c + 1]] = rng.integers(0, n_items, size=r.size)
    while True:
        s = np.sort(ids, axis=1)
        dup_rows = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
        if dup_rows.size == 0:
            return ids.astype(np.int64)
        ids[dup_rows] = rng.integers(0, n_items, size=(dup_rows.size, K))
