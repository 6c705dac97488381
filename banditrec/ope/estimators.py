"""Off-policy estimators of a target policy's value from logged bandit feedback.

Every estimator here has the same shape. From the log and the target policy pi it builds three
per-round terms and combines their means::

    V = mean(direct) + mean(correction) / D,     D = mean(weight) if self-normalised else 1

``direct`` is the reward model's value of pi, q̂(x_i, pi) = sum_k pi(k|x_i) q̂(x_i, k) (zero for
the pure weighting estimators); ``correction`` is an importance-weighted reward or residual. The
estimators differ only in these terms, written out in each class's docstring; the point estimate,
per-round rewards and both interval methods live once, in :class:`BaseEstimator`. Formulas follow
Open Bandit Pipeline (``obp.ope.estimators``, v0.5) so the numbers agree on the same inputs.

Notation: n logged rounds, K candidate slots; a_i the logged slot, r_i its reward, p_i its
logging propensity; w_i = pi(a_i|x_i) / p_i the importance weight.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from banditrec.ope.action_dist import validate_action_dist
from banditrec.ope.feedback import LoggedFeedback
from banditrec.ope.intervals import Interval, bootstrap_interval, check_alpha, normal_interval
from banditrec.ope.reward_model import validate_estimated_rewards

__all__ = [
    "IPS",
    "SNIPS",
    "BaseEstimator",
    "ClippedIPS",
    "DRos",
    "DirectMethod",
    "DoublyRobust",
    "Replay",
    "ReplayBiasWarning",
    "RoundTerms",
    "SelfNormalizedDR",
    "SupportWarning",
    "SwitchDR",
    "UndefinedEstimateError",
    "default_estimators",
]


class UndefinedEstimateError(ValueError):
    """The estimator has no value on this log (e.g. a self-normalised estimator whose target
    policy never agrees with a logged action): a property of the data, not a mistake in the call,
    so :func:`~banditrec.ope.compare_policies` reports it as a NaN row rather than stopping."""


@dataclass(frozen=True)
class RoundTerms:
    """The per-round terms an estimator combines (see the module docstring).

    Attributes
    ----------
    direct : ndarray, shape (n,)
    correction : ndarray, shape (n,)
    weight : ndarray, shape (n,), or None
        Denominator terms of a self-normalised estimator; None for a plain sample mean.
    """

    direct: np.ndarray
    correction: np.ndarray
    weight: np.ndarray | None = None

    @property
    def self_normalised(self) -> bool:
        return self.weight is not None

    def columns(self) -> np.ndarray:
        """The terms the value is a function of the means of.

        Shape (n, 1), ``direct + correction``, for a sample-mean estimator; (n, 3), ``direct,
        correction, weight``, for a self-normalised one.
        """
        if self.weight is None:
            return (self.direct + self.correction)[:, None]
        return np.stack([self.direct, self.correction, self.weight], axis=1)

    def value(self, means: np.ndarray) -> np.ndarray:
        """Estimator value from column means of shape (..., m), m as in :meth:`columns`."""
        if self.weight is None:
            return means[..., 0]
        return means[..., 0] + means[..., 1] / means[..., 2]


@dataclass(frozen=True)
class _Inputs:
    """A log and a target policy, validated and aligned for the estimators."""

    rewards: np.ndarray  # (n,)
    propensities: np.ndarray  # (n,)
    pi: np.ndarray  # (n, K)
    pi_logged: np.ndarray  # (n,) pi(a_i | x_i)
    q: np.ndarray | None  # (n, K), zeros on masked slots
    q_logged: np.ndarray | None  # (n,) q̂(x_i, a_i)

    @property
    def weights(self) -> np.ndarray:
        """Importance weights w_i = pi(a_i|x_i) / p_i, shape (n,)."""
        return self.pi_logged / self.propensities

    @property
    def q_pi(self) -> np.ndarray:
        """q̂(x_i, pi) = sum_k pi(k|x_i) q̂(x_i, k), shape (n,)."""
        return np.einsum("nk,nk->n", self.pi, self.q)

    @property
    def residuals(self) -> np.ndarray:
        """r_i - q̂(x_i, a_i), shape (n,)."""
        return self.rewards - self.q_logged


def _check_threshold(value: Any, name: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not value >= 0
    ):
        raise ValueError(f"{name} must be a non-negative number (np.inf allowed), got {value!r}")


class SupportWarning(RuntimeWarning):
    """The target puts probability where the logger never acts: weighting estimators are biased."""


def _warn_unsupported(feedback: LoggedFeedback, pi: np.ndarray) -> None:
    """Warn when the log's ``logging_action_dist`` shows the target acting where the logger never
    does (no estimator that weights logged rounds sees those actions' rewards: IPS, SNIPS and
    Replay then miss that mass and DR-type estimators rest on the reward model alone there)."""
    logging = feedback.logging_action_dist
    if logging is None:
        return
    unsupported = np.where(feedback.mask & (logging <= 0.0), pi, 0.0).sum(axis=1)
    rows = np.flatnonzero(unsupported > 1e-12)
    if rows.size:
        warnings.warn(
            f"the target policy puts probability where the logging policy never acts (logging_action_dist = 0) on "
            f"{rows.size} of {feedback.n_rounds} rounds ({unsupported.mean():.3g} of its mass on average; first "
            f"round {rows[0]}): weighting estimators cannot see those actions' rewards, so IPS, SNIPS, "
            "Replay and clipped IPS are biased, and DR-type estimators rely on the reward model there (the "
            "direct method is unaffected)",
            SupportWarning,
            stacklevel=4,
        )


class ReplayBiasWarning(RuntimeWarning):
    """Replay on a log that is not uniformly random over the valid candidates: biased."""


class BaseEstimator(ABC):
    """Shared machinery: validation, point estimate, per-round rewards and intervals.

    Subclasses are frozen dataclasses with a ``name`` field and their hyperparameters, and
    implement only :meth:`_terms`.
    """

    name: str
    #: True when the estimator needs ``estimated_rewards`` (a reward model q̂).
    needs_reward_model: ClassVar[bool] = False

    @abstractmethod
    def _terms(self, data: _Inputs) -> RoundTerms:
        """The estimator's per-round terms."""

    # -------------------------------------------------------------- plumbing
    def round_terms(
        self, feedback: LoggedFeedback, action_dist: Any, *, estimated_rewards: Any = None
    ) -> RoundTerms:
        """Validate the inputs and return this estimator's :class:`RoundTerms`."""
        if not isinstance(feedback, LoggedFeedback):
            raise TypeError(f"feedback must be a LoggedFeedback, got {type(feedback).__name__}")
        if feedback.n_rounds == 0:
            raise ValueError("feedback has no rounds; nothing to estimate")
        pi = validate_action_dist(action_dist, feedback)
        rows = np.arange(feedback.n_rounds)
        q = q_logged = None
        if self.needs_reward_model:
            if estimated_rewards is None:
                raise ValueError(
                    f"{type(self).__name__} needs estimated_rewards of shape (n, K): pass a reward model's "
                    "predictions, e.g. banditrec.ope.fit_reward_model(feedback)"
                )
            q = validate_estimated_rewards(estimated_rewards, feedback)
            q_logged = q[rows, feedback.actions]
        if not isinstance(self, DirectMethod):
            _warn_unsupported(feedback, pi)
        data = _Inputs(
            rewards=feedback.rewards,
            propensities=feedback.propensities,
            pi=pi,
            pi_logged=pi[rows, feedback.actions],
            q=q,
            q_logged=q_logged,
        )
        terms = self._terms(data)
        parts = [terms.direct, terms.correction] + ([] if terms.weight is None else [terms.weight])
        with np.errstate(over="ignore"):  # the sums overflow when the terms are huge: the check below says so
            finite = all(np.isfinite(part.sum()) for part in parts)
        if not finite:  # an inf estimate and a misleading warning before
            w = data.weights
            raise ValueError(
                f"{type(self).__name__}: the importance-weighted rewards overflow float64 (rewards up to "
                f"{np.abs(data.rewards).max():.3g}, weights up to {w.max():.3g}); rescale the rewards"
            )
        if terms.self_normalised and not terms.weight.sum() > 0:
            raise UndefinedEstimateError(
                f"{type(self).__name__} is undefined on this log: the target policy gives zero probability "
                "to every logged action, so the normalising sum is 0"
            )
        return terms

    # -------------------------------------------------------------- public API
    def estimate_round_rewards(
        self, feedback: LoggedFeedback, action_dist: Any, *, estimated_rewards: Any = None
    ) -> np.ndarray:
        """Per-round contributions whose mean is the estimate (OBP's ``_estimate_round_rewards``).

        For self-normalised estimators the correction is divided by the full-log mean weight.

        Parameters
        ----------
        feedback : LoggedFeedback
            n logged rounds.
        action_dist : array-like, shape (n, K)
            Target policy pi(k | x_i) over the logged candidate slots (see
            :func:`~banditrec.ope.action_dist.validate_action_dist`).
        estimated_rewards : array-like, shape (n, K), optional
            Reward model q̂(x_i, k); required when ``needs_reward_model``, ignored otherwise.

        Returns
        -------
        ndarray, shape (n,)
        """
        t = self.round_terms(feedback, action_dist, estimated_rewards=estimated_rewards)
        return t.direct + (t.correction / t.weight.mean() if t.self_normalised else t.correction)

    def estimate_policy_value(
        self, feedback: LoggedFeedback, action_dist: Any, *, estimated_rewards: Any = None
    ) -> float:
        """Estimated value of the target policy.

        Parameters
        ----------
        feedback : LoggedFeedback
        action_dist : array-like, shape (n, K)
        estimated_rewards : array-like, shape (n, K), optional
            As in :meth:`estimate_round_rewards`.

        Returns
        -------
        float
        """
        t = self.round_terms(feedback, action_dist, estimated_rewards=estimated_rewards)
        return float(t.value(t.columns().mean(axis=0)))

    def estimate_interval(
        self,
        feedback: LoggedFeedback,
        action_dist: Any,
        alpha: float = 0.05,
        *,
        method: str = "bootstrap",
        n_bootstrap: int = 1000,
        seed: int | np.random.Generator | None = 0,
        estimated_rewards: Any = None,
    ) -> Interval:
        """Point estimate with a two-sided (1 - alpha) confidence interval.

        ``method="bootstrap"``: percentile interval over ``n_bootstrap`` resamples of the rounds;
        self-normalised estimators are re-normalised inside each resample. The reward model is
        held fixed (it is not refitted per resample).
        ``method="normal"``: mean ± z * sd / sqrt(n) of the per-round influence values; for the
        sample-mean estimators these are the per-round rewards, for the self-normalised ones
        (Replay, SNIPS, SNDR) the delta-method linearisation
        ``direct + R + (correction - R * weight) / mean(weight)`` with ``R = mean(correction) / mean(weight)``.
        When those terms have zero variance on the log (every reward equal, or a target that
        never takes a logged action) both methods give ``low == high``, with a ``RuntimeWarning``:
        the data cannot show the value's uncertainty then, but it has one.

        Parameters
        ----------
        feedback : LoggedFeedback
        action_dist : array-like, shape (n, K)
        alpha : float, default 0.05
        method : {"bootstrap", "normal"}
        n_bootstrap : int, default 1000
        seed : int, Generator or None, default 0
            Bootstrap resampling only.
        estimated_rewards : array-like, shape (n, K), optional

        Returns
        -------
        Interval
        """
        check_alpha(alpha)
        if method not in ("bootstrap", "normal"):
            raise ValueError(f"method must be 'bootstrap' or 'normal', got {method!r}")
        t = self.round_terms(feedback, action_dist, estimated_rewards=estimated_rewards)
        columns = t.columns()
        estimate = float(t.value(columns.mean(axis=0)))
        if method == "bootstrap":
            low, high = bootstrap_interval(columns, t.value, alpha=alpha, n_bootstrap=n_bootstrap, seed=seed)
        else:
            if t.self_normalised:
                mean_weight = t.weight.mean()
                ratio = t.correction.mean() / mean_weight
                influence = t.direct + ratio + (t.correction - ratio * t.weight) / mean_weight
            else:
                influence = t.direct + t.correction
            low, high = normal_interval(influence, alpha=alpha)
        return Interval(estimate=estimate, low=low, high=high, method=method)


# ---------------------------------------------------------------------- weighting estimators
@dataclass(frozen=True)
class Replay(BaseEstimator):
    """Replay method (Li et al. 2011), in its expected (Rao-Blackwellised) form.

    .. math:: \\hat V = \\frac{\\sum_i \\pi(a_i|x_i)\\, r_i}{\\sum_i \\pi(a_i|x_i)}

    For a deterministic target this is Li et al.'s rule, the mean reward over the rounds where the
    target's choice equals the logged action, and equals OBP's ``ReplayMethod``. For a stochastic
    target it is the expectation of "sample the target's action, keep the round if it matches":
    the same estimand without the extra sampling noise. Propensities are not used, so it is only
    consistent for logs that are uniformly random over a fixed number of valid candidates (then it
    coincides with SNIPS); use IPS/SNIPS/DR for other logs.

    Terms: direct 0, correction pi(a_i|x_i) r_i, weight pi(a_i|x_i).

    References
    ----------
    Li, Chu, Langford, Wang. "Unbiased Offline Evaluation of Contextual-bandit-based News Article
    Recommendation Algorithms." WSDM 2011.
    """

    name: str = "replay"

    def round_terms(self, feedback: LoggedFeedback, action_dist: Any, *, estimated_rewards: Any = None) -> RoundTerms:
        terms = super().round_terms(feedback, action_dist, estimated_rewards=estimated_rewards)
        uniform = feedback.propensities * feedback.mask.sum(axis=1)
        off = np.flatnonzero(np.abs(uniform - 1.0) > 1e-6)
        if off.size:  # a silent bias before (+34 standard errors on a skewed logger)
            warnings.warn(
                f"Replay assumes a logger uniformly random over each round's valid candidates; on {off.size} of "
                f"{feedback.n_rounds} rounds the propensity is not 1/(valid candidates) (first round {off[0]}: "
                f"{feedback.propensities[off[0]]:.4g} with {int(feedback.mask[off[0]].sum())} valid), so its "
                "estimate is biased on this log; use IPS, SNIPS or DR",
                ReplayBiasWarning,
                stacklevel=3,
            )
        return terms

    def _terms(self, data: _Inputs) -> RoundTerms:
        return RoundTerms(np.zeros_like(data.rewards), data.pi_logged * data.rewards, data.pi_logged)


@dataclass(frozen=True)
class IPS(BaseEstimator):
    """Inverse propensity scoring (OBP's ``InverseProbabilityWeighting``).

    .. math:: \\hat V = \\frac1n \\sum_i w_i r_i, \\qquad w_i = \\pi(a_i|x_i) / p_i

    Unbiased when the propensities are the logging policy's true probabilities and every action
    the target can take has positive logging probability; high variance when the weights are large.

    References
    ----------
    Strehl, Langford, Li, Kakade. "Learning from Logged Implicit Exploration Data." NeurIPS 2010.
    """

    name: str = "ips"

    def _terms(self, data: _Inputs) -> RoundTerms:
        return RoundTerms(np.zeros_like(data.rewards), data.weights * data.rewards)


@dataclass(frozen=True)
class SNIPS(BaseEstimator):
    """Self-normalised IPS (OBP's ``SelfNormalizedInverseProbabilityWeighting``).

    .. math:: \\hat V = \\frac{\\sum_i w_i r_i}{\\sum_i w_i}

    Biased but consistent; bounded by the reward range and usually lower variance than IPS.

    References
    ----------
    Swaminathan, Joachims. "The Self-Normalized Estimator for Counterfactual Learning." NeurIPS 2015.
    """

    name: str = "snips"

    def _terms(self, data: _Inputs) -> RoundTerms:
        w = data.weights
        return RoundTerms(np.zeros_like(w), w * data.rewards, w)


@dataclass(frozen=True)
class ClippedIPS(BaseEstimator):
    """IPS with clipped weights (OBP's ``InverseProbabilityWeighting(lambda_=...)``).

    .. math:: \\hat V = \\frac1n \\sum_i \\min(w_i, \\lambda)\\, r_i

    Parameters
    ----------
    lambda_ : float, default 10.0
        Largest importance weight kept; ``np.inf`` gives IPS. (OBP's default is ``np.inf``: plain
        IPS; 10 here, so that the estimator clips at all.)
    name : str, default "clipped_ips"
    """

    lambda_: float = 10.0
    name: str = "clipped_ips"

    def __post_init__(self) -> None:
        _check_threshold(self.lambda_, "lambda_")

    def _terms(self, data: _Inputs) -> RoundTerms:
        return RoundTerms(np.zeros_like(data.rewards), np.minimum(data.weights, self.lambda_) * data.rewards)


# ---------------------------------------------------------------------- model-based estimators
@dataclass(frozen=True)
class DirectMethod(BaseEstimator):
    """Direct method: the reward model's value of the target policy.

    .. math:: \\hat V = \\frac1n \\sum_i \\sum_k \\pi(k|x_i)\\, \\hat q(x_i, k)

    Low variance, biased by the reward model's errors. Needs ``estimated_rewards``.

    References
    ----------
    Beygelzimer, Langford. "The Offset Tree for Learning with Partial Labels." KDD 2009.
    """

    name: str = "dm"
    needs_reward_model: ClassVar[bool] = True

    def _terms(self, data: _Inputs) -> RoundTerms:
        return RoundTerms(data.q_pi, np.zeros_like(data.rewards))


@dataclass(frozen=True)
class DoublyRobust(BaseEstimator):
    """Doubly robust estimator (OBP's ``DoublyRobust``).

    .. math:: \\hat V = \\frac1n \\sum_i \\Big[\\hat q(x_i, \\pi) + w_i \\big(r_i - \\hat q(x_i, a_i)\\big)\\Big]

    Unbiased when the propensities are right, whatever q̂; low variance when q̂ is good.
    Needs ``estimated_rewards``.

    References
    ----------
    Dudík, Erhan, Langford, Li. "Doubly Robust Policy Evaluation and Optimization." Stat. Sci. 2014.
    """

    name: str = "dr"
    needs_reward_model: ClassVar[bool] = True

    def _terms(self, data: _Inputs) -> RoundTerms:
        return RoundTerms(data.q_pi, data.weights * data.residuals)


@dataclass(frozen=True)
class SelfNormalizedDR(BaseEstimator):
    """Self-normalised doubly robust estimator (OBP's ``SelfNormalizedDoublyRobust``).

    .. math:: \\hat V = \\frac1n \\sum_i \\hat q(x_i, \\pi)
              + \\frac{\\sum_i w_i (r_i - \\hat q(x_i, a_i))}{\\sum_i w_i}

    Needs ``estimated_rewards``.

    References
    ----------
    Kallus, Uehara. "Intrinsically Efficient, Stable, and Bounded Off-Policy Evaluation for
    Reinforcement Learning." NeurIPS 2019.
    """

    name: str = "sndr"
    needs_reward_model: ClassVar[bool] = True

    def _terms(self, data: _Inputs) -> RoundTerms:
        w = data.weights
        return RoundTerms(data.q_pi, w * data.residuals, w)


@dataclass(frozen=True)
class SwitchDR(BaseEstimator):
    """Switch doubly robust estimator (OBP's ``SwitchDoublyRobust``; OBP calls tau ``lambda_``).

    .. math:: \\hat V = \\frac1n \\sum_i \\Big[\\hat q(x_i, \\pi)
              + \\mathbb{1}\\{w_i \\le \\tau\\}\\, w_i \\big(r_i - \\hat q(x_i, a_i)\\big)\\Big]

    Rounds with weight above tau fall back to the direct method. Needs ``estimated_rewards``.

    Parameters
    ----------
    tau : float, default 10.0
        Weight threshold; 0 gives DM (for positive weights), ``np.inf`` gives DR. (OBP 0.5's default
        is ``np.inf``, i.e. DR, and OBP 0.4's 1.0; neither is tuned.)
    name : str, default "switch_dr"

    References
    ----------
    Wang, Agarwal, Dudík. "Optimal and Adaptive Off-policy Evaluation in Contextual Bandits." ICML 2017.
    """

    tau: float = 10.0
    name: str = "switch_dr"
    needs_reward_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_threshold(self.tau, "tau")

    def _terms(self, data: _Inputs) -> RoundTerms:
        w = data.weights
        return RoundTerms(data.q_pi, (w <= self.tau) * w * data.residuals)


@dataclass(frozen=True)
class DRos(BaseEstimator):
    """Doubly robust with optimistic shrinkage (OBP's ``DoublyRobustWithShrinkage``).

    .. math:: \\hat V = \\frac1n \\sum_i \\Big[\\hat q(x_i, \\pi)
              + \\hat w_i \\big(r_i - \\hat q(x_i, a_i)\\big)\\Big],
              \\qquad \\hat w_i = \\frac{\\lambda w_i}{w_i^2 + \\lambda}

    Needs ``estimated_rewards``.

    Parameters
    ----------
    lambda_ : float, default 100.0
        Shrinkage; 0 gives DM, ``np.inf`` gives DR. Weights well below sqrt(lambda_) are nearly
        unchanged; the shrunk weight peaks at sqrt(lambda_) / 2. (OBP's default is 0, i.e. DM; 100
        is the value of OBP's example scripts.)
    name : str, default "dros"

    References
    ----------
    Su, Dimakopoulou, Krishnamurthy, Dudík. "Doubly Robust Off-Policy Evaluation with Shrinkage."
    ICML 2020.
    """

    lambda_: float = 100.0
    name: str = "dros"
    needs_reward_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_threshold(self.lambda_, "lambda_")

    def _terms(self, data: _Inputs) -> RoundTerms:
        w = data.weights
        if np.isinf(self.lambda_):
            shrunk = w
        else:
            denominator = w**2 + self.lambda_
            # lambda_ = 0 with w = 0 is 0/0; the limit (and OBP's intent, DM) is weight 0.
            shrunk = np.divide(self.lambda_ * w, denominator, out=np.zeros_like(w), where=denominator > 0)
        return RoundTerms(data.q_pi, shrunk * data.residuals)


def default_estimators() -> tuple[BaseEstimator, ...]:
    """One instance of every estimator with default hyperparameters."""
    return (
        Replay(),
        IPS(),
        SNIPS(),
        ClippedIPS(),
        DirectMethod(),
        DoublyRobust(),
        SelfNormalizedDR(),
        SwitchDR(),
        DRos(),
    )
