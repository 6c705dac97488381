"""Compiled inner loops of :class:`~banditrec.policies.linear.RidgeRegression` (numba).

Why: at d ≈ 32 a Sherman–Morrison update is ~3d² multiply-adds, a microsecond of arithmetic that
numpy spreads over a dozen calls whose overhead is most of its ~6 µs; compiled, the whole update
is one call of ~1.4 µs. For a batch, one rank-one update per row in a compiled loop does no more
arithmetic than the batched Woodbury update (3md² against 3md² + 2m²d + m³ for an arm with m rows)
and pays no per-matrix dispatch of numpy's stacked products. Scoring reads only the candidates'
parameter sets in one compiled loop (one user's few candidates, candidates with their own
features, a slate from a much larger catalogue); users scored against nearly every arm keep one
BLAS product over all arms, which the loop does not beat (RidgeRegression chooses).

The kernels compute what the numpy code computes, in another order: statistics agree to rounding
(~1e-15 relative), not bit for bit. They rely on A⁻¹ being symmetric (reading row j as column j
keeps the inner loops contiguous) and keep it exactly symmetric themselves.

Without numba, or with the environment variable ``BANDITREC_NUMBA=0`` (read at import), the numpy
code runs instead; :data:`AVAILABLE` says which. The kernels are compiled at their first call and
cached on disk; loading them in a new process still takes 0.3–0.4 s, which :func:`warm_up` pays up
front (a benchmark's clock, a worker about to run many short trials).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["AVAILABLE", "score_candidates", "score_users", "update_one", "update_rows", "warm_up"]

try:
    if os.environ.get("BANDITREC_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        raise ImportError("disabled by BANDITREC_NUMBA")
    from numba import njit
except ImportError:
    AVAILABLE = False
    update_one = update_rows = score_users = score_candidates = None
else:
    AVAILABLE = True

    @njit(cache=True, inline="always")
    def _symv(Ai, x, out):
        """out = A⁻¹x for a symmetric A⁻¹, reading row j as column j (a contiguous inner loop)."""
        d = x.shape[0]
        out[:] = 0.0
        for j in range(d):
            xj = x[j]
            for i in range(d):
                out[i] += Ai[j, i] * xj

    @njit(cache=True, inline="always")
    def _rank_one(A_inv, A, b, yy, count, arm, x, r, ax):
        """One observation (x, r) of ``arm``: A⁻¹ ← A⁻¹ − (A⁻¹x)(A⁻¹x)ᵀ/(1 + xᵀA⁻¹x), A ← A + xxᵀ,
        b ← b + r x; ``ax`` is scratch of length d. Returns xᵀA⁻¹x before the update, which the
        caller checks: when it is huge, the subtraction above cancels away float64's precision."""
        d = x.shape[0]
        Ai, Aa, ba = A_inv[arm], A[arm], b[arm]
        _symv(Ai, x, ax)
        s = 0.0
        for i in range(d):
            s += x[i] * ax[i]
        c = 1.0 / (1.0 + s)
        for i in range(d):
            axi, xi = ax[i], x[i]
            for j in range(d):
                Ai[i, j] -= (axi * ax[j]) * c  # (A⁻¹x)_i (A⁻¹x)_j is symmetric in i, j exactly
                Aa[i, j] += xi * x[j]
            ba[i] += r * xi
        yy[arm] += r * r
        count[arm] += 1.0
        return s

    @njit(cache=True)
    def update_one(A_inv, A, b, theta, yy, count, arm, x, r):
        """Learn one row: the Sherman–Morrison update of ``arm`` and its new θ = A⁻¹b; returns the
        row's xᵀA⁻¹x before the update."""
        s = _rank_one(A_inv, A, b, yy, count, arm, x, r, np.empty(x.shape[0]))
        _symv(A_inv[arm], b[arm], theta[arm])
        return s

    @njit(cache=True)
    def update_rows(A_inv, A, b, theta, yy, count, arms, X, y):
        """Learn rows X (n, d) with rewards y (n,) of ``arms`` (n,), in order; θ of each touched arm
        once at the end. Returns the largest xᵀA⁻¹x met before a row's update."""
        ax = np.empty(X.shape[1])
        touched = np.zeros(A_inv.shape[0], dtype=np.bool_)
        largest = 0.0
        for r in range(X.shape[0]):
            largest = max(largest, _rank_one(A_inv, A, b, yy, count, arms[r], X[r], y[r], ax))
            touched[arms[r]] = True
        for a in range(touched.shape[0]):
            if touched[a]:
                _symv(A_inv[a], b[a], theta[a])
        return largest

    @njit(cache=True, inline="always")
    def _score(Ai, th, x, ax):
        """(θ·x, √(xᵀA⁻¹x)) of one parameter set; ``ax`` is scratch of length d."""
        _symv(Ai, x, ax)
        s = 0.0
        mu = 0.0
        for i in range(x.shape[0]):
            s += x[i] * ax[i]
            mu += th[i] * x[i]
        return mu, (np.sqrt(s) if s > 0.0 else 0.0)

    @njit(cache=True)
    def score_users(A_inv, theta, X, arms, mean, width):
        """Users' features X (B, d), each against its candidates' parameter sets ``arms`` (B, K):
        mean θ·x and width √(xᵀA⁻¹x) of each candidate, written into ``mean`` and ``width`` (B, K).
        Only the candidates' sets are read, however many parameter sets there are."""
        ax = np.empty(X.shape[1])
        for u in range(arms.shape[0]):
            for k in range(arms.shape[1]):
                a = arms[u, k]
                mean[u, k], width[u, k] = _score(A_inv[a], theta[a], X[u], ax)

    @njit(cache=True)
    def score_candidates(A_inv, theta, X, arms, mean, width):
        """Candidates with their own features X (B, K, d), each against its parameter set
        ``arms[u, k]``: mean and width (B, K), without gathering the sets."""
        ax = np.empty(X.shape[2])
        for u in range(arms.shape[0]):
            for k in range(arms.shape[1]):
                a = arms[u, k]
                mean[u, k], width[u, k] = _score(A_inv[a], theta[a], X[u, k], ax)


def warm_up() -> None:
    """Compile the kernels, or load them from numba's cache, for C-ordered float64 statistics now
    rather than at their first use. Does nothing without numba."""
    if not AVAILABLE:
        return
    n, d = 2, 2
    A_inv = np.stack([np.eye(d)] * n)
    A, b, theta, yy, count = A_inv.copy(), np.zeros((n, d)), np.zeros((n, d)), np.zeros(n), np.zeros(n)
    x, arms, out = np.ones(d), np.zeros(1, dtype=np.int64), (np.empty((1, 1)), np.empty((1, 1)))
    update_one(A_inv, A, b, theta, yy, count, 0, x, 1.0)
    update_rows(A_inv, A, b, theta, yy, count, arms, x[None], np.ones(1))
    score_users(A_inv, theta, x[None], arms[None], *out)
    score_candidates(A_inv, theta, x[None, None], arms[None], *out)
