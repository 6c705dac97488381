"""Reward models q̂(x, a) for the model-based estimators (DM, DR and their variants).

:func:`fit_reward_model` cross-fits a regression of the logged reward on joint (user, candidate)
features: each fold's q̂ comes from a model that never saw that fold, which removes the
own-observation overfitting bias from DR (Chernozhukov et al. 2018; Narita et al. 2021).
:class:`RidgeRegressionCV` and :class:`LogisticRegressionCV` choose their penalty by an inner
cross-validation on the rows they are fitted on, so inside that cross-fitting the choice never
sees the fold it predicts.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

from banditrec._util import as_generator
from banditrec.ope._checks import as_float_array, describe_bad, require_shape
from banditrec.ope.action_dist import at_logged_positions
from banditrec.ope.feedback import LoggedFeedback

__all__ = [
    "DEFAULT_ALPHAS", "REWARD_MODELS", "JointFeatures", "LogisticRegression", "LogisticRegressionCV",
    "RidgeRegression", "RidgeRegressionCV", "fit_reward_model", "validate_estimated_rewards",
]

# Rows x features of the design matrix built at once when predicting every candidate.
_PREDICT_CELLS = 4_000_000


#: The default penalty grid of :class:`RidgeRegressionCV` and :class:`LogisticRegressionCV`: 1e-3 to
#: 1e6, two values a decade, then ``inf``, the intercept-only model (the training mean).
DEFAULT_ALPHAS: tuple[float, ...] = (*np.logspace(-3, 6, 19).tolist(), math.inf)


def _standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales of ``X`` (constant columns kept at scale 1)."""
    scale = X.std(axis=0)
    return X.mean(axis=0), np.where(scale > 0, scale, 1.0)


class _Standardised:
    """What the built-in reward models share: the checks, features standardised on the training
    rows (constant columns kept at scale 1), and a linear score on them."""

    alpha: float

    def _check_alpha(self) -> None:
        if isinstance(self.alpha, (bool, np.bool_)) or not isinstance(self.alpha, (int, float, np.integer, np.floating)) \
                or not self.alpha >= 0:
            raise ValueError(f"alpha must be a non-negative number, got {self.alpha!r}")

    def _fit_scaling(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """``X`` standardised and ``y``, both checked; learns ``mean_`` and ``scale_``."""
        X, y = _checked_xy(X, y, type(self).__name__)
        self.mean_, self.scale_ = _standardisation(X)
        return (X - self.mean_) / self.scale_, y

    def _scaled(self, X: Any) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
        X = as_float_array(X, "X", 2)
        if X.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.mean_.shape[0]} features, predict got X with {X.shape[1]}"
            )
        _check_finite(X, "X", type(self).__name__)
        return (X - self.mean_) / self.scale_

    def _copy_fitted(self, fitted: _Standardised) -> None:
        """Take the learned state of ``fitted`` (a CV model's refit at its chosen alpha)."""
        for name in ("mean_", "scale_", "coef_", "intercept_", "converged_"):
            if hasattr(fitted, name):
                setattr(self, name, getattr(fitted, name))


def _checked_xy(X: Any, y: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    """A reward model's training data as float arrays: 2-d X, 1-d y of as many rows (at least
    one), all finite, or a ValueError naming ``who``."""
    X = as_float_array(X, "X", 2)
    y = as_float_array(y, "y", 1)
    require_shape(y, "y", (X.shape[0],), f"X of shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"cannot fit {who} on 0 rows")
    _check_finite(X, "X", who)
    _check_finite(y, "y", who)
    return X, y


def _check_finite(values: np.ndarray, name: str, who: str) -> None:
    """NaN or inf in a reward model's input: predictions were NaN (ridge) or numpy's words."""
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.flatnonzero(~finite.reshape(finite.shape[0], -1).all(axis=1))[0])
        raise ValueError(f"{who}: {name} must be finite; {name} has NaN or inf in row {row}")


def _ridge_coef(Xs: np.ndarray, yc: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge coefficients on standardised ``Xs`` for centred targets ``yc``."""
    if alpha == math.inf:  # the intercept-only model
        return np.zeros(Xs.shape[1])
    gram = Xs.T @ Xs + alpha * np.eye(Xs.shape[1])
    target = Xs.T @ yc
    if alpha > 0:
        return np.linalg.solve(gram, target)
    # alpha=0 with constant or collinear columns is singular: minimum-norm solution
    return np.linalg.lstsq(gram, target, rcond=None)[0]


def _check_y_in_unit_interval(name: str, y: np.ndarray) -> None:
    if y.min() < 0 or y.max() > 1:
        raise ValueError(
            f"{name} models rewards in [0, 1] (clicks); got range [{y.min():.4g}, {y.max():.4g}]: "
            "use RidgeRegression for other rewards"
        )


def _logistic_start(Xs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Zero coefficients and the intercept of the training click rate."""
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    return np.concatenate([np.zeros(Xs.shape[1]), [np.log(rate / (1 - rate))]])


def _logistic_theta(
    Xs: np.ndarray, y: np.ndarray, alpha: float, max_iter: int, start: np.ndarray
) -> tuple[np.ndarray, bool]:
    """(coefficients..., intercept) of the L2-penalised logistic fit from ``start``, and success."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    if alpha == math.inf:  # the intercept-only model: the (clipped) training click rate
        return _logistic_start(Xs, y), True

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = Xs @ theta[:-1] + theta[-1]
        value = -(y @ log_expit(z) + (1 - y) @ log_expit(-z)) + 0.5 * alpha * theta[:-1] @ theta[:-1]
        residual = expit(z) - y
        return value, np.concatenate([Xs.T @ residual + alpha * theta[:-1], [residual.sum()]])

    result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    if not np.isfinite(result.x).all():
        raise ValueError(f"LogisticRegression did not converge to finite coefficients: {result.message}")
    return result.x, bool(result.success)


@dataclass
class RidgeRegression(_Standardised):
    """Ridge regression in NumPy with standardised features and an unpenalised intercept.

    Parameters
    ----------
    alpha : float, default 1.0
        L2 penalty on the standardised coefficients; ``math.inf`` gives the intercept-only model
        (every prediction is the training mean).

    Attributes
    ----------
    coef_ : ndarray, shape (p,)
        Coefficients on the standardised features (set by :meth:`fit`).
    intercept_ : float
    mean_, scale_ : ndarray, shape (p,)
        Standardisation learned in :meth:`fit`.
    """

    alpha: float = 1.0

    def __post_init__(self) -> None:
        self._check_alpha()

    def fit(self, X: np.ndarray, y: np.ndarray) -> RidgeRegression:
        """Fit on features ``X`` (m, p) and targets ``y`` (m,)."""
        self._check_alpha()
        Xs, y = self._fit_scaling(X, y)
        self.intercept_ = float(y.mean())
        self.coef_ = _ridge_coef(Xs, y - self.intercept_, self.alpha)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted rewards, shape (m,)."""
        return self._scaled(X) @ self.coef_ + self.intercept_


@dataclass
class LogisticRegression(_Standardised):
    """L2-regularised logistic regression in NumPy/SciPy for rewards in [0, 1] (clicks).

    Its predictions lie in (0, 1), where a linear fit of 0/1 clicks extrapolates past both ends
    (the default ridge predicted click rates from -0.53 to 1.05 on the Open Bandit Dataset, and
    DM/DR estimates below zero); fractional targets are fitted as soft labels. Features are
    standardised as :class:`RidgeRegression`'s; the intercept is not penalised. Fitted by
    L-BFGS on the exact loss and gradient.

    Parameters
    ----------
    alpha : float, default 1.0
        L2 penalty on the standardised coefficients (the loss is the *sum* of the log-losses);
        ``math.inf`` gives the intercept-only model (the training click rate, clipped to
        [1e-6, 1 - 1e-6]).
    max_iter : int, default 500
    """

    alpha: float = 1.0
    max_iter: int = 500

    def __post_init__(self) -> None:
        self._check_alpha()
        _check_max_iter(self.max_iter)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticRegression:
        """Fit on features ``X`` (m, p) and targets ``y`` (m,) in [0, 1]."""
        self._check_alpha()
        Xs, y = self._fit_scaling(X, y)
        _check_y_in_unit_interval(type(self).__name__, y)
        theta, self.converged_ = _logistic_theta(Xs, y, self.alpha, self.max_iter, _logistic_start(Xs, y))
        if not self.converged_:  # only a flag before: a fit stopped at max_iter=1 looked like any other
            warnings.warn(
                f"LogisticRegression stopped after max_iter={self.max_iter} iterations without converging; "
                "its predictions may be poor: raise max_iter",
                RuntimeWarning,
                stacklevel=2,
            )
        self.coef_, self.intercept_ = theta[:-1], float(theta[-1])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted click probabilities, shape (m,)."""
        from scipy.special import expit

        return expit(self._scaled(X) @ self.coef_ + self.intercept_)


def _check_max_iter(max_iter: Any) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")


# ------------------------------------------------------------------ cross-validated penalties
class _CrossValidated:
    """The inner cross-validation the CV models share: their checks, the folds and the choice."""

    alphas: Sequence[float]
    n_folds: int
    seed: int

    def _check_cv(self) -> np.ndarray:
        """The grid ``alphas`` as float64 after checking it, ``n_folds`` and ``seed``."""
        alphas = self.alphas
        if isinstance(alphas, (str, bytes)) or not isinstance(alphas, (Sequence, np.ndarray)):
            raise TypeError(f"alphas must be a sequence of non-negative numbers, got {alphas!r}")
        if isinstance(alphas, np.ndarray) and alphas.ndim != 1:
            raise ValueError(f"alphas must be one-dimensional, got an array of shape {alphas.shape}")
        grid = list(alphas)
        if not grid:
            raise ValueError(
                "alphas is empty: give at least one penalty, e.g. alphas=(0.1, 1.0, 10.0, math.inf)"
            )
        for i, a in enumerate(grid):
            if isinstance(a, (bool, np.bool_)) or not isinstance(a, Real):
                raise TypeError(f"alphas must hold non-negative numbers, got {a!r} at index {i}")
            if not a >= 0:  # also NaN
                raise ValueError(
                    f"alphas must hold non-negative numbers (math.inf for the intercept-only model), "
                    f"got {a} at index {i}"
                )
        if (
            isinstance(self.n_folds, bool)
            or not isinstance(self.n_folds, (int, np.integer))
            or self.n_folds < 2
        ):
            raise ValueError(
                f"n_folds must be an integer >= 2 (inner cross-validation folds), got {self.n_folds!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        return np.array(grid, dtype=np.float64)

    def _folds(self, m: int) -> list[np.ndarray]:
        """Inner folds of ``m`` rows: a permutation drawn from ``seed``, split into ``n_folds`` parts."""
        if m < self.n_folds:
            raise ValueError(
                f"{type(self).__name__} needs at least n_folds={self.n_folds} rows for its inner "
                f"cross-validation, got {m}; lower n_folds or use {type(self).__name__[:-2]} with a fixed alpha"
            )
        return np.array_split(as_generator(int(self.seed)).permutation(m), int(self.n_folds))

    def _choose(self, alphas: np.ndarray, scores: np.ndarray) -> None:
        """Set ``alpha_`` to the grid value of lowest CV score, the largest among equals."""
        best = np.flatnonzero(scores == np.nanmin(scores))  # NaN: an alpha not evaluated
        self.cv_scores_ = scores
        self.alpha_ = float(alphas[best[np.argmax(alphas[best])]])


def _ridge_path(X: np.ndarray, y: np.ndarray, X_val: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Predictions on ``X_val`` of ``RidgeRegression(alpha).fit(X, y)`` for every alpha, shape
    (len(X_val), len(alphas)), from one eigendecomposition (of XᵀX, or of XXᵀ when p > m)."""
    mean, scale = _standardisation(X)
    Xs, Xv = (X - mean) / scale, (X_val - mean) / scale
    intercept = float(y.mean())
    yc = y - intercept
    m, p = Xs.shape
    if p <= m:  # w(α) = V (Λ + α)⁻¹ Vᵀ Xᵀ y
        lam, vecs = np.linalg.eigh(Xs.T @ Xs)
        proj, basis = vecs.T @ (Xs.T @ yc), Xv @ vecs
    else:  # the dual, w(α) = Xᵀ U (Λ + α)⁻¹ Uᵀ y
        lam, vecs = np.linalg.eigh(Xs @ Xs.T)
        proj, basis = vecs.T @ yc, (Xv @ Xs.T) @ vecs
    lam = np.maximum(lam, 0.0)
    with np.errstate(divide="ignore"):
        shrink = 1.0 / (lam[:, None] + alphas[None, :])
    # alpha = 0: the minimum-norm solution (RidgeRegression's lstsq) drops the null directions
    null = lam <= lam.max(initial=0.0) * max(m, p) * np.finfo(np.float64).eps
    shrink[np.ix_(null, alphas == 0)] = 0.0
    return basis @ (shrink * proj[:, None]) + intercept


@dataclass
class RidgeRegressionCV(_Standardised, _CrossValidated):
    """:class:`RidgeRegression` with its penalty chosen by K-fold cross-validation (mean squared error).

    :meth:`fit` splits its rows into ``n_folds`` inner folds; for each fold it standardises the
    other folds' rows as :class:`RidgeRegression` does and eigendecomposes their Gram matrix once,
    which gives that fold's predictions for every alpha of the grid exactly (no refit per alpha).
    ``alpha_`` is the grid value of lowest mean squared error over all held-out rows (the largest
    of equals), and the model is then refitted on all rows: its predictions are those of
    ``RidgeRegression(alpha=alpha_)``. The grid's ``math.inf`` is the intercept-only model, so on
    rewards without signal (a handful of clicks) the choice can fall back to the training mean
    instead of an overfitted regression. Inside :func:`fit_reward_model` every outer fold
    chooses its own alpha on its training rows only.

    Parameters
    ----------
    alphas : sequence of float, default :data:`DEFAULT_ALPHAS`
        Non-negative penalties to choose from (1e-3 to 1e6, two a decade, and ``math.inf``).
    n_folds : int, default 5
        Inner folds (at least 2; :meth:`fit` needs at least that many rows).
    seed : int, default 0
        The inner folds: a permutation of the rows drawn from ``numpy.random.default_rng(seed)``,
        split by ``numpy.array_split`` into ``n_folds`` parts.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    cv_scores_ : ndarray, shape (len(alphas),)
        Mean squared error of each alpha's predictions on the held-out rows (pooled over folds).
    coef_, intercept_, mean_, scale_
        As :class:`RidgeRegression`'s, refitted on all rows at ``alpha_``.
    """

    alphas: Sequence[float] = DEFAULT_ALPHAS
    n_folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        self._check_cv()

    def fit(self, X: np.ndarray, y: np.ndarray) -> RidgeRegressionCV:
        """Choose alpha on features ``X`` (m, p) and targets ``y`` (m,), then refit on all rows."""
        alphas = self._check_cv()
        X, y = _checked_xy(X, y, type(self).__name__)
        rows = np.arange(X.shape[0])
        squared = np.zeros(alphas.size)
        for fold in self._folds(X.shape[0]):
            train = np.setdiff1d(rows, fold, assume_unique=True)
            pred = _ridge_path(X[train], y[train], X[fold], alphas)
            squared += ((pred - y[fold, None]) ** 2).sum(axis=0)
        self._choose(alphas, squared / X.shape[0])
        self._copy_fitted(RidgeRegression(alpha=self.alpha_).fit(X, y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted rewards, shape (m,)."""
        return self._scaled(X) @ self.coef_ + self.intercept_


@dataclass
class LogisticRegressionCV(_Standardised, _CrossValidated):
    """:class:`LogisticRegression` with its penalty chosen by K-fold cross-validation (log loss).

    The grid is walked from the largest alpha to the smallest; at each alpha every inner fold's
    model (the other folds' rows, standardised as :class:`LogisticRegression` does) is fitted
    starting from its fit at the previous alpha (a warm-started path: the same optimum up to
    L-BFGS's tolerance, in far fewer iterations), and scored by its log loss on the fold's rows.
    The walk stops once ``patience`` alphas in a row have scored worse than the best so far: the
    small alphas are the costly fits (on the Open Bandit Dataset sample, alphas of 1 and below
    took 90% of a full walk's time, and all scored worse). ``alpha_`` is the evaluated alpha
    of lowest mean log loss over all held-out rows (the largest of equals), and the model is then
    refitted from scratch on all rows: its predictions are those of
    ``LogisticRegression(alpha=alpha_, max_iter=max_iter)``. The grid's ``math.inf`` is the
    intercept-only model (the training click rate). Inside :func:`fit_reward_model` every outer
    fold chooses its own alpha on its training rows only.

    Parameters
    ----------
    alphas : sequence of float, default :data:`DEFAULT_ALPHAS`
        Non-negative penalties to choose from (1e-3 to 1e6, two a decade, and ``math.inf``).
    n_folds : int, default 5
        Inner folds (at least 2; :meth:`fit` needs at least that many rows).
    seed : int, default 0
        The inner folds, drawn as :class:`RidgeRegressionCV`'s.
    max_iter : int, default 500
        L-BFGS iterations per fit.
    patience : int or None, default 3
        Stop after this many consecutive alphas (in decreasing order) that score worse than the
        best so far; None scores every alpha (exhaustive, and far slower when the small alphas
        are never chosen). A CV loss that falls again after rising for ``patience`` grid steps is
        missed.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    cv_scores_ : ndarray, shape (len(alphas),)
        Mean log loss of each alpha's predictions on the held-out rows (pooled over folds;
        fractional targets as soft labels); NaN for alphas the walk did not reach.
    coef_, intercept_, mean_, scale_, converged_
        As :class:`LogisticRegression`'s, refitted on all rows at ``alpha_``.
    """

    alphas: Sequence[float] = DEFAULT_ALPHAS
    n_folds: int = 5
    seed: int = 0
    max_iter: int = 500
    patience: int | None = 3

    def __post_init__(self) -> None:
        self._check_cv()
        self._check_logistic()

    def _check_logistic(self) -> None:
        _check_max_iter(self.max_iter)
        if self.patience is not None and (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, (int, np.integer))
            or self.patience < 1
        ):
            raise ValueError(f"patience must be a positive integer or None, got {self.patience!r}")

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticRegressionCV:
        """Choose alpha on features ``X`` (m, p) and targets ``y`` (m,) in [0, 1], then refit."""
        from scipy.special import log_expit

        alphas = self._check_cv()
        self._check_logistic()
        X, y = _checked_xy(X, y, type(self).__name__)
        _check_y_in_unit_interval(type(self).__name__, y)
        rows = np.arange(X.shape[0])
        # Per fold: its rows, the other folds' rows, their standardisation and the last fit. The
        # standardised copies are rebuilt at each alpha rather than kept: one at a time in memory.
        folds = []
        for fold in self._folds(X.shape[0]):
            train = np.setdiff1d(rows, fold, assume_unique=True)
            folds.append((fold, train, *_standardisation(X[train])))
        thetas: list[np.ndarray | None] = [None] * len(folds)
        losses = np.full(alphas.size, np.nan)
        best, worse = math.inf, 0
        for i in np.argsort(-alphas, kind="stable"):  # strongest penalty first: each fit starts the next
            total = 0.0
            for j, (fold, train, mean, scale) in enumerate(folds):
                Xs = (X[train] - mean) / scale
                start = _logistic_start(Xs, y[train]) if thetas[j] is None else thetas[j]
                theta, _ = _logistic_theta(Xs, y[train], float(alphas[i]), self.max_iter, start)
                thetas[j] = theta
                z = ((X[fold] - mean) / scale) @ theta[:-1] + theta[-1]
                total -= y[fold] @ log_expit(z) + (1 - y[fold]) @ log_expit(-z)
            losses[i] = total / X.shape[0]
            if losses[i] < best:
                best, worse = losses[i], 0
            else:
                worse += 1
                if self.patience is not None and worse >= self.patience:
                    break
        self._choose(alphas, losses)
        self._copy_fitted(LogisticRegression(alpha=self.alpha_, max_iter=self.max_iter).fit(X, y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted click probabilities, shape (m,)."""
        from scipy.special import expit

        return expit(self._scaled(X) @ self.coef_ + self.intercept_)


#: The reward models known by name (``fit_reward_model(model=...)``, ``[ope] reward_model``).
REWARD_MODELS = {
    "ridge": RidgeRegression,
    "logistic": LogisticRegression,
    "ridge_cv": RidgeRegressionCV,
    "logistic_cv": LogisticRegressionCV,
}


@dataclass(frozen=True)
class JointFeatures:
    """Joint features of (round, candidate) pairs for reward regression.

    The vector for round i and candidate slot k concatenates: user features u_i (d_u), item
    features v_ik (d_i), their outer product u_i ⊗ v_ik (d_u * d_i), a one-hot of the item id when
    the log holds at most ``max_onehot_ids`` distinct ids, and a one-hot of the slate position when
    the log has more than one.

    Parameters
    ----------
    feedback : LoggedFeedback
    max_onehot_ids : int, default 100
    """

    feedback: LoggedFeedback = field(repr=False)
    max_onehot_ids: int = 100
    _ids: np.ndarray | None = field(init=False, repr=False, default=None)
    _n_positions: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        if not isinstance(self.feedback, LoggedFeedback):
            raise TypeError(f"feedback must be a LoggedFeedback, got {type(self.feedback).__name__}")
        if (
            isinstance(self.max_onehot_ids, bool)
            or not isinstance(self.max_onehot_ids, int)
            or self.max_onehot_ids < 0
        ):
            raise ValueError(f"max_onehot_ids must be a non-negative integer, got {self.max_onehot_ids!r}")
        # The vocabularies come from the whole log: ids and positions are covariates, not labels.
        ids = np.unique(self.feedback.item_ids[self.feedback.mask])
        object.__setattr__(self, "_ids", ids if ids.size <= self.max_onehot_ids else None)
        positions = self.feedback.positions
        n_positions = 0 if positions is None or positions.size == 0 else int(positions.max()) + 1
        object.__setattr__(self, "_n_positions", n_positions if n_positions > 1 else 0)

    @property
    def n_features(self) -> int:
        """p, the length of each joint feature vector."""
        d_u, d_i = self.feedback.user_features.shape[1], self.feedback.item_features.shape[2]
        n_ids = 0 if self._ids is None else self._ids.size
        return d_u + d_i + d_u * d_i + n_ids + self._n_positions

    def __call__(self, rows: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Feature matrix, shape (m, p), for the pairs ``(rows[j], slots[j])``."""
        fb = self.feedback
        u = fb.user_features[rows]
        v = fb.item_features[rows, slots]
        parts = [u, v, (u[:, :, None] * v[:, None, :]).reshape(len(rows), -1)]
        if self._ids is not None:
            parts.append((fb.item_ids[rows, slots][:, None] == self._ids[None, :]).astype(np.float64))
        if self._n_positions:
            parts.append((fb.positions[rows][:, None] == np.arange(self._n_positions)).astype(np.float64))
        return np.concatenate(parts, axis=1)


def validate_estimated_rewards(estimated_rewards: Any, feedback: LoggedFeedback) -> np.ndarray:
    """Check a reward-model table q̂ against a log.

    Parameters
    ----------
    estimated_rewards : array-like, shape (n, K) or (n, K, L)
        q̂(x_i, k) for every round and candidate slot; masked slots are ignored (may be NaN).
        OBP's layout (n, K, L), one table per slate position, is read as ``action_dist`` is:
        each round keeps the values of its own logged position.
    feedback : LoggedFeedback

    Returns
    -------
    ndarray, shape (n, K), float64
        A copy with masked slots set to 0, so that 0-probability slots contribute nothing.
    """
    q = at_logged_positions(as_float_array(estimated_rewards, "estimated_rewards"), feedback, "estimated_rewards")
    n, k = feedback.n_rounds, feedback.n_candidates
    require_shape(q, "estimated_rewards", (n, k), f"the log's (n={n}, K={k})")
    bad = feedback.mask & ~np.isfinite(q)
    if bad.any():
        raise ValueError(
            f"estimated_rewards must be finite on valid candidates; non-finite in {describe_bad(bad, q)}"
        )
    return np.where(feedback.mask, q, 0.0)


def fit_reward_model(
    feedback: LoggedFeedback,
    model: Any = None,
    n_folds: int = 5,
    seed: int | np.random.Generator | None = 0,
    *,
    max_onehot_ids: int = 100,
    clip: bool = False,
) -> np.ndarray:
    """Cross-fitted reward model predictions q̂(x_i, k) for every round and candidate.

    Rounds are split at random into ``n_folds`` folds; the q̂ of a fold's rounds is predicted by a
    fresh copy of ``model`` fitted on the logged (features, reward) pairs of the other folds.

    Parameters
    ----------
    feedback : LoggedFeedback
    model : object with ``fit(X, y)`` and ``predict(X)``, or a name in ``REWARD_MODELS``, optional
        Any sklearn-like regressor on :class:`JointFeatures` (``predict`` must return expected
        rewards: for a classifier, the probabilities); deep-copied per fold, never fitted in
        place. Default :class:`RidgeRegression` ``(alpha=1.0)``; "logistic" is
        :class:`LogisticRegression` ``(alpha=1.0)``, for rewards in [0, 1]; "ridge_cv" and
        "logistic_cv" are :class:`RidgeRegressionCV` and :class:`LogisticRegressionCV`, which
        choose alpha by an inner cross-validation on each fold's training rows (the intercept-only
        model among the choices: on few clicks, it is often the best there is).
    n_folds : int, default 5
        Number of folds; 1 fits and predicts in-sample (no cross-fitting).
    seed : int, Generator or None, default 0
        Fold assignment.
    max_onehot_ids : int, default 100
        See :class:`JointFeatures`.
    clip : bool, default False
        Clip each fold's predictions to the range of the rewards it was fitted on. A mean reward
        cannot lie outside the rewards the log can produce, and a linear fit extrapolates freely:
        the default ridge on the Open Bandit Dataset's 0/1 clicks predicted from −0.53 to 1.05,
        which gave DM and DR "click rates" below zero. Each clipped prediction is closer to the
        truth, but a policy's DM value can move further from it: a linear fit to a logistic
        world overshoots 1 where it undershoots elsewhere, and the two cancel in the average
        (Linear-v0, 4,000 uniform rounds, LinUCB's DM: error 0.003 unclipped, -0.061 clipped).
        So it is off by default (as in OBP); :func:`~banditrec.ope.compare_policies` warns
        when an estimate leaves the logged rewards' range.

    Returns
    -------
    ndarray, shape (n, K), float64
        NaN on masked slots.
    """
    if not isinstance(feedback, LoggedFeedback):
        raise TypeError(f"feedback must be a LoggedFeedback, got {type(feedback).__name__}")
    if model is None or isinstance(model, str):
        if model not in (None, *REWARD_MODELS):
            raise ValueError(f"unknown reward model {model!r}; choose one of {sorted(REWARD_MODELS)} or pass a model object")
        model = REWARD_MODELS[model or "ridge"]()
    if isinstance(model, type):  # the class, not an instance: fit() then missed its 'y'
        raise TypeError(f"model must be a reward model instance, got the class {model.__name__}: pass {model.__name__}()")
    if not (callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))):
        raise TypeError(f"model must have fit(X, y) and predict(X) methods, got {type(model).__name__}")
    if not isinstance(clip, (bool, np.bool_)):
        raise TypeError(f"clip must be True or False, got {clip!r}")
    n, k = feedback.n_rounds, feedback.n_candidates
    if n == 0:
        raise ValueError("feedback has no rounds: there is nothing to fit a reward model on")
    if (
        isinstance(n_folds, bool)
        or not isinstance(n_folds, (int, np.integer))
        or not 1 <= n_folds <= max(n, 1)
    ):
        raise ValueError(f"n_folds must be an integer in [1, n_rounds={n}], got {n_folds!r}")
    features = JointFeatures(feedback, max_onehot_ids=max_onehot_ids)
    all_rows = np.arange(n)
    X_logged = features(all_rows, feedback.actions)
    folds = np.array_split(as_generator(seed).permutation(n), int(n_folds))
    q = np.full((n, k), np.nan)
    chunk = max(1, _PREDICT_CELLS // max(features.n_features, 1))
    for fold in folds:
        train = all_rows if n_folds == 1 else np.setdiff1d(all_rows, fold, assume_unique=True)
        fitted = copy.deepcopy(model)
        fitted.fit(X_logged[train], feedback.rewards[train])
        low, high = feedback.rewards[train].min(), feedback.rewards[train].max()
        local, slots = np.nonzero(feedback.mask[fold])
        rows = fold[local]
        for start in range(0, rows.size, chunk):
            r, s = rows[start : start + chunk], slots[start : start + chunk]
            pred = np.asarray(fitted.predict(features(r, s)), dtype=np.float64).reshape(-1)
            if pred.shape != (r.size,) or not np.isfinite(pred).all():
                raise ValueError(
                    f"{type(model).__name__}.predict must return {r.size} finite values, got shape "
                    f"{pred.shape} with {int(np.sum(~np.isfinite(pred)))} non-finite"
                )
            q[r, s] = np.clip(pred, low, high) if clip else pred
    return q
