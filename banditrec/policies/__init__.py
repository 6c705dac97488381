"""Exploration strategies and the policies built from them.

A policy = an exploration strategy (epsilon-greedy, UCB, Thompson sampling) applied to a reward
estimator (per-item counts, ridge regression, or a neural model). Build one by name with
:func:`make_policy` or call a factory such as :func:`LinUCB` directly.
"""

from banditrec.policies.base import Decision, Policy
from banditrec.policies.checkpoint import load_policy, save_policy
from banditrec.policies.context_free import ItemStatistics
from banditrec.policies.exploration import UCB, EpsilonGreedy, Exploration, Thompson
from banditrec.policies.linear import RidgeRegression
from banditrec.policies.neural import NeuralEpsilonGreedy, NeuralEstimator, NeuralLinear, NeuralTS, NeuralUCB
from banditrec.policies.policy import BanditPolicy, RandomPolicy
from banditrec.policies.registry import (
    POLICIES,
    UCB1,
    BernoulliTS,
    EpsilonGreedyPolicy,
    LinEpsilonGreedy,
    LinTS,
    LinUCB,
    Random,
    make_policy,
    policy_parameters,
    register_policy,
)

__all__ = [
    "POLICIES", "UCB", "UCB1", "BanditPolicy", "BernoulliTS", "Decision", "EpsilonGreedy",
    "EpsilonGreedyPolicy", "Exploration", "ItemStatistics", "LinEpsilonGreedy", "LinTS", "LinUCB",
    "NeuralEpsilonGreedy", "NeuralEstimator", "NeuralLinear", "NeuralTS", "NeuralUCB",
    "Policy", "Random", "RandomPolicy", "RidgeRegression", "Thompson", "load_policy", "make_policy",
    "policy_parameters", "register_policy", "save_policy",
]
