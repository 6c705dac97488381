"""Confidence intervals for policy-value estimates: nonparametric bootstrap and normal approximation."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from banditrec._util import as_generator

__all__ = ["Interval", "bootstrap_interval", "check_alpha", "normal_interval"]

# Bootstrap replicates are drawn in blocks of at most this many resampled cells (rows x replicates).
_BLOCK_CELLS = 2_000_000


class Interval(NamedTuple):
    """A point estimate with a two-sided (1 - alpha) confidence interval.

    Attributes
    ----------
    estimate : float
        The estimator's value on the full log (not a bootstrap mean).
    low, high : float
        Interval bounds.
    method : str
        ``"bootstrap"`` or ``"normal"``.
    """

    estimate: float
    low: float
    high: float
    method: str


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float after checking 0 < alpha < 1."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


#: Share of undefined bootstrap replicates above which :func:`bootstrap_interval` warns.
DROPPED_WARNING = 0.01


def _warn_if_zero_width(values: np.ndarray, n_rounds: int, what: str, kind: str) -> None:
    """Warn when ``values`` all agree, so that the ``kind`` interval has zero width.

    Such an interval claims a certainty no finite log gives unless the rewards are truly constant:
    when a Bernoulli value is 0.99, 100 rounds are all 1 over a third of the time (0.99**100 =
    0.37), and then every interval is (1, 1) and misses it. The numbers are kept as computed.
    """
    if np.ptp(values) <= 1e-12 * float(np.max(np.abs(values))):
        warnings.warn(
            f"the {kind} interval has zero width because {what} do not vary on these {n_rounds} rounds "
            "(every logged reward is equal, or the target policy never takes a logged action); that is not "
            f"certainty: for 0/1 rewards, {n_rounds} rounds all equal to 1 leave values down to about "
            f"1 - 3/{n_rounds} plausible at 95% (the rule of three)",
            RuntimeWarning,
            stacklevel=3,
        )


def bootstrap_interval(
    columns: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int | np.random.Generator | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic of column means.

    Rows (logged rounds) are resampled with replacement; on each replicate the column means are
    recomputed and passed to ``statistic``, so ratio estimators (SNIPS, SNDR, Replay) are
    re-normalised inside every replicate rather than bootstrapped from frozen per-round terms.

    Parameters
    ----------
    columns : ndarray, shape (n, m)
        Per-round terms.
    statistic : callable
        Maps column means of shape (..., m) to values of shape (...).
    alpha : float
        1 - confidence level.
    n_bootstrap : int
        Number of replicates.
    seed : int, Generator or None
        Source of the resampling; a Generator is used as is.

    Returns
    -------
    (low, high) : tuple of float
        Replicates where the statistic is undefined (e.g. a zero denominator) are dropped, with
        a ``RuntimeWarning`` when they are more than 1% of them. When every replicate has the
        same value (the per-round terms do not vary, e.g. all rewards equal) ``low == high``,
        with a ``RuntimeWarning``: a zero-width interval is not certainty.
    """
    alpha = check_alpha(alpha)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    rng = as_generator(seed)
    n = columns.shape[0]
    if n < 2:  # one round resampled is always itself: a zero-width interval that means nothing
        raise ValueError(f"a bootstrap interval needs at least 2 rounds, got {n}")
    block = max(1, _BLOCK_CELLS // max(n, 1))
    values = np.empty(int(n_bootstrap))
    for start in range(0, int(n_bootstrap), block):
        size = min(block, int(n_bootstrap) - start)
        idx = rng.integers(0, n, size=(size, n))
        with np.errstate(divide="ignore", invalid="ignore"):
            values[start : start + size] = statistic(columns[idx].mean(axis=1))
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError("the estimator is undefined on every bootstrap replicate (zero denominators?)")
    dropped = 1.0 - finite.size / values.size
    if dropped > DROPPED_WARNING:
        warnings.warn(
            f"the estimator is undefined on {dropped:.1%} of the bootstrap replicates (no round the target "
            "policy supports was drawn), which are left out: the interval describes the replicates where it is "
            "defined and is too narrow; log more rounds where the target policy acts",
            RuntimeWarning,
            stacklevel=2,
        )
    _warn_if_zero_width(finite, n, "the bootstrap replicates", "bootstrap")
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def normal_interval(influence: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Normal-approximation interval mean ± z * sd / sqrt(n) of per-round influence values.

    For sample-mean estimators the influence values are the per-round contributions; for ratio
    estimators they are the delta-method linearisation (see ``BaseEstimator``).

    Parameters
    ----------
    influence : ndarray, shape (n,)
    alpha : float

    Returns
    -------
    (low, high) : tuple of float
        ``low == high`` when the influence values have zero variance (e.g. all rewards equal),
        with a ``RuntimeWarning``: a zero-width interval is not certainty.
    """
    alpha = check_alpha(alpha)
    n = influence.shape[0]
    if n < 2:
        raise ValueError(f"a normal interval needs at least 2 rounds, got {n}")
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    centre = float(influence.mean())
    half = z * float(influence.std(ddof=1)) / np.sqrt(n)
    _warn_if_zero_width(influence, n, "the per-round terms", "normal")
    return float(centre - half), float(centre + half)
