"""Compiled inner loops of :class:`~banditrec.policies.linear.RidgeRegression` (numba).

Why: at d ≈ 32 a Sherman–Morrison update is ~3d² multiply-adds, a microsecond of arithmetic that
numpy spreads over a dozen calls whose overhead is most of its ~6 µs; compiled, the whole update
is one call of ~1.4 µs. For a batch, one rank-one update per row in a compiled loop does no more
arithmetic than the batched Woodbury update (3md² against 3md² + 2m²d + m³ for an arm with m rows)
and pays no per-matrix dispatch of numpy's stacked products. Scoring the candidates of one user is
one compiled loop too. Batched scoring stays a BLAS matrix product, which no loop beats.

The kernels compute what the numpy code computes, in another order: statistics agree to rounding
(~1e-15 relative), not bit for bit. They rely on A⁻¹ being symmetric (reading row j as column j
keeps the inner loops contiguous) and keep it exactly symmetric themselves.

Without numba, or with the environment variable ``BANDITREC_NUMBA=0`` (read at import), the numpy
code runs instead; :data:`AVAILABLE` says which.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["AVAILABLE", "score_candidates", "score_user", "update_one", "update_rows"]

try:
    if os.environ.get("BANDITREC_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        raise ImportError("disabled by BANDITREC_NUMBA")
    from numba import njit
except ImportError:
    AVAILABLE = False
    update_one = update_rows = score_user = score_candidates = None
else:
    AVAILABLE = True

    @njit(cache=True, inline="always")
    def _rank_one(A_inv, A, b, yy, count, arm, x, r, ax):
        """One observation (x, r) of ``arm``: A⁻¹ ← A⁻¹ − (A⁻¹x)(A⁻¹x)ᵀ/(1 + xᵀA⁻¹x), A ← A + xxᵀ,
        b ← b + r x; ``ax`` is scratch of length d."""
        d = x.shape[0]
        Ai, Aa, ba = A_inv[arm], A[arm], b[arm]
        ax[:] = 0.0
        for j in range(d):
            xj = x[j]
            for i in range(d):
                ax[i] += Ai[j, i] * xj
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

    @njit(cache=True, inline="always")
    def _solve_theta(A_inv, b, theta, arm):
        """θ = A⁻¹b for one arm."""
        d = b.shape[1]
        Ai, ba, th = A_inv[arm], b[arm], theta[arm]
        th[:] = 0.0
        for j in range(d):
            bj = ba[j]
            for i in range(d):
                th[i] += Ai[j, i] * bj

    @njit(cache=True)
    def update_one(A_inv, A, b, theta, yy, count, arm, x, r):
        """Learn one row: the Sherman–Morrison update of ``arm`` and its new θ."""
        ax = np.empty(x.shape[0])
        _rank_one(A_inv, A, b, yy, count, arm, x, r, ax)
        _solve_theta(A_inv, b, theta, arm)

    @njit(cache=True)
    def update_rows(A_inv, A, b, theta, yy, count, arms, X, y):
        """Learn rows X (n, d) with rewards y (n,) of ``arms`` (n,), in order; θ of each touched arm
        once at the end."""
        n, d = X.shape
        ax = np.empty(d)
        touched = np.zeros(A_inv.shape[0], dtype=np.bool_)
        for r in range(n):
            _rank_one(A_inv, A, b, yy, count, arms[r], X[r], y[r], ax)
            touched[arms[r]] = True
        for a in range(touched.shape[0]):
            if touched[a]:
                _solve_theta(A_inv, b, theta, a)

    @njit(cache=True)
    def score_user(A_inv, theta, x, arms, mean, width):
        """One user's features x (d,) against the parameter sets ``arms`` (K,): mean θ·x and width
        √(xᵀA⁻¹x) of each, written into ``mean`` and ``width`` (K,)."""
        d = x.shape[0]
        ax = np.empty(d)
        for k in range(arms.shape[0]):
            a = arms[k]
            ax[:] = 0.0
            for j in range(d):
                xj = x[j]
                for i in range(d):
                    ax[i] += A_inv[a, j, i] * xj
            s = 0.0
            mu = 0.0
            for i in range(d):
                s += x[i] * ax[i]
                mu += theta[a, i] * x[i]
            mean[k] = mu
            width[k] = np.sqrt(s) if s > 0.0 else 0.0

    @njit(cache=True)
    def score_candidates(A_inv, theta, X, arms, mean, width):
        """Rows X (K, d), each against its own parameter set ``arms[k]``: mean and width (K,)."""
        K, d = X.shape
        ax = np.empty(d)
        for k in range(K):
            a = arms[k]
            ax[:] = 0.0
            for j in range(d):
                xj = X[k, j]
                for i in range(d):
                    ax[i] += A_inv[a, j, i] * xj
            s = 0.0
            mu = 0.0
            for i in range(d):
                s += X[k, i] * ax[i]
                mu += theta[a, i] * X[k, i]
            mean[k] = mu
            width[k] = np.sqrt(s) if s > 0.0 else 0.0
