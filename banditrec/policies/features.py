"""Joint user–item feature maps for linear reward models.

A linear model scores a candidate from one vector φ(user, item). Which φ decides what it can
learn: ``user`` alone (the disjoint per-item form of Li et al. 2010), ``item`` alone (context-free
but generalising across items), ``concat`` (additive effects) or ``outer`` (all user × item
interactions; with an intercept it contains user, item and constant terms too).
"""

from __future__ import annotations

import numpy as np

from banditrec.environments.simulator import Observation

__all__ = ["FEATURE_KINDS", "feature_dim", "joint_features"]

FEATURE_KINDS = ("user", "item", "concat", "outer")


def _with_one(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones(x.shape[:-1] + (1,))], axis=-1)


def feature_dim(kind: str, user_dim: int, item_dim: int, intercept: bool) -> int:
    """Length of φ for the given sizes."""
    i = int(intercept)
    return {
        "user": user_dim + i,
        "item": item_dim + i,
        "concat": user_dim + item_dim + i,
        "outer": (user_dim + i) * (item_dim + i),
    }[kind]


def joint_features(obs: Observation, kind: str, intercept: bool, actions: np.ndarray | None = None) -> np.ndarray:
    """φ for every candidate, shape (B, K, d), or for the chosen candidates only, shape (B, d)."""
    u = obs.user_features
    if actions is None:
        v = obs.item_features
        u = np.broadcast_to(u[:, None, :], v.shape[:2] + u.shape[1:])
    else:
        v = obs.item_features[np.arange(actions.size), actions]
    if kind == "user":
        return _with_one(u) if intercept else np.ascontiguousarray(u)
    if kind == "item":
        return _with_one(v) if intercept else v
    if kind == "concat":
        x = np.concatenate([u, v], axis=-1)
        return _with_one(x) if intercept else x
    if kind == "outer":
        if intercept:
            u, v = _with_one(u), _with_one(v)
        return (u[..., :, None] * v[..., None, :]).reshape(u.shape[:-1] + (-1,))
    raise ValueError(f"unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}")
