"""Target-policy action distributions over the logged candidate slots.

Every estimator reads the policy under evaluation as a table ``action_dist[i, k]`` = pi(k | x_i),
the probability that the policy picks candidate slot k in logged round i. This module turns a
policy object or an array into that table and proves it is one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from banditrec.ope._checks import as_float_array, check_distribution, require_shape
from banditrec.ope.feedback import LoggedFeedback

__all__ = ["action_dist_from_policy", "at_logged_positions", "validate_action_dist"]


def validate_action_dist(action_dist: Any, feedback: LoggedFeedback, name: str = "action_dist") -> np.ndarray:
    """Check a target policy's distribution against a log and return it as float64.

    Parameters
    ----------
    action_dist : array-like, shape (n, K) or (n, K, L)
        pi(k | x_i) for each logged round i and candidate slot k. The OBP layout
        (n, K, L) with one distribution per slate position is accepted when ``feedback.positions``
        is set (or L == 1): each round keeps the distribution of its own logged position.
    feedback : LoggedFeedback
        The log the distribution refers to.
    name : str
        Used in error messages.

    Returns
    -------
    ndarray, shape (n, K), float64
        Each row divided by its sum, which the check allows to differ from 1 by up to 1e-6 (as
        OBP's reward-model term does); read-only when no conversion was needed (the caller's
        array is never modified).

    Raises
    ------
    ValueError
        Wrong shape, non-finite or negative entries, probability on masked slots, or a row that
        does not sum to 1 over its valid candidates (tolerance 1e-6).
    """
    if not isinstance(feedback, LoggedFeedback):
        raise TypeError(f"feedback must be a LoggedFeedback, got {type(feedback).__name__}")
    dist = at_logged_positions(as_float_array(action_dist, name), feedback, name)
    n, k = feedback.n_rounds, feedback.n_candidates
    require_shape(dist, name, (n, k), f"the log's (n={n}, K={k})")
    check_distribution(dist, feedback.mask, name)
    if (dist < 0).any():  # rounding below 0 (NEGATIVE_TOL): zero it, on a copy
        dist = np.maximum(dist, 0.0)
    sums = dist.sum(axis=1)  # 1 within 1e-6 (masked slots hold 0): make it 1, as an expectation under pi needs
    if not np.all(sums == 1.0):
        dist = dist / sums[:, None]
    return dist


def at_logged_positions(table: np.ndarray, feedback: LoggedFeedback, name: str) -> np.ndarray:
    """An (n, K, L) table in OBP's layout, one (n, K) slice per slate position, reduced to each
    round's logged position; an (n, K) table as it is."""
    if table.ndim != 3:
        return table
    n, k = feedback.n_rounds, feedback.n_candidates
    require_shape(table, name, (n, k, None), f"the log's (n={n}, K={k})")
    if table.shape[2] == 1:
        return table[:, :, 0]
    if feedback.positions is None:
        raise ValueError(
            f"{name} has shape {table.shape} with {table.shape[2]} positions, but the log has no "
            "positions to pick each round's values; pass shape (n, K)"
        )
    if feedback.positions.size and feedback.positions.max() >= table.shape[2]:
        raise ValueError(
            f"{name} covers {table.shape[2]} positions but the log has position {int(feedback.positions.max())}"
        )
    return table[np.arange(n), :, feedback.positions]


def action_dist_from_policy(policy: Any, feedback: LoggedFeedback, batch_size: int = 4096) -> np.ndarray:
    """The target policy's distribution over the logged candidates, validated.

    Parameters
    ----------
    policy : object with ``action_distribution(obs)``, or array-like, shape (n, K)
        A banditrec policy (called on ``feedback.observation()`` in chunks of ``batch_size``
        rounds; it may return a NumPy array or a torch tensor of shape (B, K)), or a ready table.
    feedback : LoggedFeedback
    batch_size : int, default 4096
        Rounds per call to ``action_distribution``.

    Returns
    -------
    ndarray, shape (n, K), float64
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    method = getattr(policy, "action_distribution", None)
    if method is None:
        if isinstance(policy, (np.ndarray, list, tuple)) or hasattr(policy, "__array__"):
            return validate_action_dist(policy, feedback)
        raise TypeError(
            f"policy must have an action_distribution(obs) method or be an array of shape (n, K), "
            f"got {type(policy).__name__}"
        )
    if not callable(method):
        raise TypeError(f"{type(policy).__name__}.action_distribution is not callable")
    pulls, seen = getattr(policy, "initial_pulls", 0), getattr(policy, "n_decisions_", 0)
    if isinstance(pulls, int) and pulls and seen < pulls * feedback.n_candidates:
        # decision t of a round-robin start is forced onto slot t mod n_valid: a frozen target's
        # rows would be forced by their position in each chunk (the answer depended on batch_size)
        raise ValueError(
            f"{getattr(policy, 'name', type(policy).__name__)} is still in its round-robin start "
            f"(initial_pulls={pulls}: {pulls * feedback.n_candidates} forced decisions, {seen} made), so its "
            "distribution depends on each round's position, not on the round; train it on at least that many "
            "rounds first (train_offline counts them) or set initial_pulls=0"
        )
    obs = feedback.observation()
    chunks = []
    for start in range(0, feedback.n_rounds, int(batch_size)):
        out = method(obs[start : start + int(batch_size)])
        if hasattr(out, "detach"):  # torch tensors, possibly on an accelerator
            out = out.detach().cpu().numpy()
        try:
            table = None if out is None else np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):  # strings, ragged rows: numpy's words before
            table = None
        if table is None or table.ndim < 2:  # concatenating it would fail with numpy's words
            raise TypeError(
                f"{type(policy).__name__}.action_distribution(obs) must return an array of shape (B, K), "
                f"got {out!r:.80}"
            )
        chunks.append(table)
    dist = np.concatenate(chunks) if chunks else np.zeros((0, feedback.n_candidates))
    return validate_action_dist(dist, feedback, name=f"{type(policy).__name__}.action_distribution(obs)")
