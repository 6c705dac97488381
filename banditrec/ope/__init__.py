"""Off-policy evaluation: estimate a policy's value from logged bandit feedback.

>>> from banditrec.ope import LoggedFeedback, DoublyRobust, fit_reward_model, evaluate_offline
>>> q_hat = fit_reward_model(feedback)                               # doctest: +SKIP
>>> DoublyRobust().estimate_interval(feedback, pi, estimated_rewards=q_hat)   # doctest: +SKIP
>>> evaluate_offline(feedback, {"linucb": ("LinUCB", {"alpha": 1.0})})   # doctest: +SKIP
"""

from banditrec.ope.action_dist import action_dist_from_policy, validate_action_dist
from banditrec.ope.estimators import (
    IPS,
    SNIPS,
    BaseEstimator,
    ClippedIPS,
    DirectMethod,
    DoublyRobust,
    DRos,
    Replay,
    ReplayBiasWarning,
    RoundTerms,
    SelfNormalizedDR,
    SupportWarning,
    SwitchDR,
    UndefinedEstimateError,
    default_estimators,
)
from banditrec.ope.feedback import LoggedFeedback
from banditrec.ope.intervals import Interval
from banditrec.ope.offline import (
    OfflineTargets,
    evaluate_offline,
    load_feedback,
    load_offline_targets,
    split_by_time,
    train_offline,
    true_policy_value,
)
from banditrec.ope.report import compare_policies, plot_comparison
from banditrec.ope.reward_model import (
    DEFAULT_ALPHAS,
    REWARD_MODELS,
    JointFeatures,
    LogisticRegression,
    LogisticRegressionCV,
    RidgeRegression,
    RidgeRegressionCV,
    fit_reward_model,
    validate_estimated_rewards,
)

__all__ = [
    "DEFAULT_ALPHAS",
    "IPS",
    "REWARD_MODELS",
    "SNIPS",
    "BaseEstimator",
    "ClippedIPS",
    "DRos",
    "DirectMethod",
    "DoublyRobust",
    "Interval",
    "JointFeatures",
    "LoggedFeedback",
    "LogisticRegression",
    "LogisticRegressionCV",
    "OfflineTargets",
    "Replay",
    "ReplayBiasWarning",
    "RidgeRegression",
    "RidgeRegressionCV",
    "RoundTerms",
    "SelfNormalizedDR",
    "SupportWarning",
    "SwitchDR",
    "UndefinedEstimateError",
    "action_dist_from_policy",
    "compare_policies",
    "default_estimators",
    "evaluate_offline",
    "fit_reward_model",
    "load_feedback",
    "load_offline_targets",
    "plot_comparison",
    "split_by_time",
    "train_offline",
    "true_policy_value",
    "validate_action_dist",
    "validate_estimated_rewards",
]
