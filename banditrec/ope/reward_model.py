"""Reward models q̂(x, a) for the model-based estimators (DM, DR and their variants).

:func:`fit_reward_model` cross-fits a regression of the logged reward on joint (user, candidate)
features: each fold's q̂ comes from a model that never saw that fold, which removes the
own-observation overfitting bias from DR (Chernozhukov et al. 2018; Narita et al. 2021).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from banditrec._util import as_generator
from banditrec.ope._checks import as_float_array, describe_bad, require_shape
from banditrec.ope.action_dist import at_logged_positions
from banditrec.ope.feedback import LoggedFeedback

__all__ = [
    "REWARD_MODELS", "JointFeatures", "LogisticRegression", "RidgeRegression", "fit_reward_model",
    "validate_estimated_rewards",
]

# Rows x features of the design matrix built at once when predicting every candidate.
_PREDICT_CELLS = 4_000_000


class _Standardised:
    """What both built-in reward models share: the checks, and features standardised on the
    training rows (constant columns kept at scale 1)."""

    alpha: float

    def _check_alpha(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha >= 0:
            raise ValueError(f"alpha must be a non-negative number, got {self.alpha!r}")

    def _fit_scaling(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """``X`` standardised and ``y``, both checked; learns ``mean_`` and ``scale_``."""
        X = as_float_array(X, "X", 2)
        y = as_float_array(y, "y", 1)
        require_shape(y, "y", (X.shape[0],), f"X of shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"cannot fit {type(self).__name__} on 0 rows")
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return (X - self.mean_) / self.scale_, y

    def _scaled(self, X: Any) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
        return (as_float_array(X, "X", 2) - self.mean_) / self.scale_


@dataclass
class RidgeRegression(_Standardised):
    """Ridge regression in NumPy with standardised features and an unpenalised intercept.

    Parameters
    ----------
    alpha : float, default 1.0
        L2 penalty on the standardised coefficients.

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
        Xs, y = self._fit_scaling(X, y)
        self.intercept_ = float(y.mean())
        gram = Xs.T @ Xs + self.alpha * np.eye(Xs.shape[1])
        target = Xs.T @ (y - self.intercept_)
        if self.alpha > 0:
            self.coef_ = np.linalg.solve(gram, target)
        else:  # alpha=0 with constant or collinear columns is singular: minimum-norm solution
            self.coef_ = np.linalg.lstsq(gram, target, rcond=None)[0]
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
        L2 penalty on the standardised coefficients (the loss is the *sum* of the log-losses).
    max_iter : int, default 500
    """

    alpha: float = 1.0
    max_iter: int = 500

    def __post_init__(self) -> None:
        self._check_alpha()
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticRegression:
        """Fit on features ``X`` (m, p) and targets ``y`` (m,) in [0, 1]."""
        from scipy.optimize import minimize
        from scipy.special import expit, log_expit

        Xs, y = self._fit_scaling(X, y)
        if y.min() < 0 or y.max() > 1:
            raise ValueError(
                f"LogisticRegression models rewards in [0, 1] (clicks); got range [{y.min():.4g}, {y.max():.4g}]: "
                "use RidgeRegression for other rewards"
            )
        rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        start = np.concatenate([np.zeros(Xs.shape[1]), [np.log(rate / (1 - rate))]])

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = Xs @ theta[:-1] + theta[-1]
            value = -(y @ log_expit(z) + (1 - y) @ log_expit(-z)) + 0.5 * self.alpha * theta[:-1] @ theta[:-1]
            residual = expit(z) - y
            return value, np.concatenate([Xs.T @ residual + self.alpha * theta[:-1], [residual.sum()]])

        result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        if not np.isfinite(result.x).all():
            raise ValueError(f"LogisticRegression did not converge to finite coefficients: {result.message}")
        self.coef_, self.intercept_ = result.x[:-1], float(result.x[-1])
        self.converged_ = bool(result.success)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted click probabilities, shape (m,)."""
        from scipy.special import expit

        return expit(self._scaled(X) @ self.coef_ + self.intercept_)


#: The reward models known by name (``fit_reward_model(model=...)``, ``[ope] reward_model``).
REWARD_MODELS = {"ridge": RidgeRegression, "logistic": LogisticRegression}


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
    model : object with ``fit(X, y)`` and ``predict(X)``, or "ridge" or "logistic", optional
        Any sklearn-like regressor on :class:`JointFeatures` (``predict`` must return expected
        rewards: for a classifier, the probabilities); deep-copied per fold, never fitted in
        place. Default :class:`RidgeRegression` ``(alpha=1.0)``; "logistic" is
        :class:`LogisticRegression` ``(alpha=1.0)``, for rewards in [0, 1].
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
    if not (callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))):
        raise TypeError(f"model must have fit(X, y) and predict(X) methods, got {type(model).__name__}")
    if not isinstance(clip, (bool, np.bool_)):
        raise TypeError(f"clip must be True or False, got {clip!r}")
    n, k = feedback.n_rounds, feedback.n_candidates
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
