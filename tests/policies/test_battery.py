"""Every registered policy, and the variants users configure most, pass the common battery.

The battery itself is checked too: policies that break one promise each must fail it, so a battery
that silently passes everything would be caught here.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from banditrec.policies import (
    POLICIES,
    Decision,
    EpsilonGreedyPolicy,
    LinEpsilonGreedy,
    LinTS,
    LinUCB,
    Policy,
    RandomPolicy,
)

from .battery import CHECKS, check_policy

VARIANTS = {
    **{name: POLICIES[name] for name in POLICIES},
    "LinUCB-shared": partial(LinUCB, form="shared"),
    "LinTS-shared": partial(LinTS, form="shared"),
    "LinTS-nig": partial(LinTS, posterior="nig"),
    "LinTS-shared-nig": partial(LinTS, form="shared", posterior="nig"),
    "LinEpsilonGreedy-shared": partial(LinEpsilonGreedy, form="shared"),
    "LinEpsilonGreedy-decay": partial(LinEpsilonGreedy, epsilon=0.5, decay=5.0),
    "EpsilonGreedy-decay": partial(EpsilonGreedyPolicy, epsilon=0.5, decay=5.0),
    # Neural decisions made in torch on the estimator's device (here the CPU), as on a GPU.
    **{
        f"{name}-on-device": partial(POLICIES[name], decide_on="device", device="cpu")
        for name in ("NeuralLinear", "NeuralUCB", "NeuralTS", "NeuralEpsilonGreedy")
    },
    "NeuralLinear-per_item-on-device": partial(POLICIES["NeuralLinear"], head="per_item", decide_on="device",
                                               device="cpu"),
    "NeuralUCB-gradient-on-device": partial(POLICIES["NeuralUCB"], uncertainty="gradient_diag",
                                            decide_on="device", device="cpu"),
}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", list(VARIANTS))
def test_policy_battery(name, check):
    check_policy(VARIANTS[name], checks=[check])


def test_fixture_exposes_the_battery(check_policy):
    check_policy(POLICIES["Random"], checks=["decisions"])


# --------------------------------------------------------------------------- the battery can fail
class _Lying(RandomPolicy):
    """Uniform, but claims propensity 1."""

    def _act(self, obs):
        d = super()._act(obs)
        return Decision(d.actions, np.ones_like(d.propensities))


class _Skewed(RandomPolicy):
    """Always the first valid candidate, while its distribution says uniform."""

    def _act(self, obs):
        return Decision(obs.mask.argmax(axis=1), 1.0 / obs.mask.sum(axis=1))


class _IgnoresMask(RandomPolicy):
    """Uniform over all K slots, masked ones included."""

    def _act(self, obs):
        B, K = obs.mask.shape
        return Decision(self.rng.integers(0, K, size=B), np.full(B, 1.0 / K))

    def _distribution(self, obs):
        return np.full(obs.mask.shape, 1.0 / obs.mask.shape[1])


class _LeakyDistribution(RandomPolicy):
    """Acts validly, but its distribution puts mass on masked slots."""

    def _distribution(self, obs):
        return np.full(obs.mask.shape, 1.0 / obs.mask.shape[1])


class _GlobalRandom(RandomPolicy):
    """Draws from the global NumPy generator instead of its own."""

    def _act(self, obs):
        u = np.where(obs.mask, np.random.random(obs.mask.shape), -1.0)
        return Decision(u.argmax(axis=1), 1.0 / obs.mask.sum(axis=1))


class _Nosy(RandomPolicy):
    """Draws from its decision stream when asked for its distribution (as Thompson sampling's
    Monte-Carlo shares once did), so looking at it changes what it does next."""

    def _distribution(self, obs):
        self.rng.random()
        return super()._distribution(obs)


class _Gullible(RandomPolicy):
    """Accepts any feedback."""

    def update(self, obs, actions, rewards):
        pass


class _NoDict(RandomPolicy):
    """Only understands Observation objects."""

    def act(self, obs):
        if isinstance(obs, dict):
            raise TypeError("dict observations not supported")
        return super().act(obs)


@pytest.mark.parametrize(
    "policy_class, check",
    [
        (_Lying, "propensities"),
        (_Skewed, "frequencies"),
        (_IgnoresMask, "decisions"),
        (_LeakyDistribution, "distribution"),
        (_GlobalRandom, "reproducible"),
        (_Nosy, "inspection_is_free"),
        (_Gullible, "update_rejects"),
        (_NoDict, "dict_observation"),
    ],
)
def test_battery_catches_broken_policies(policy_class, check):
    with pytest.raises(AssertionError, match=f"check_{check}"):
        check_policy(lambda seed: policy_class(seed), checks=[check])
    check_policy(lambda seed: RandomPolicy(seed), checks=[check])  # the honest policy passes the same check


def test_battery_rejects_factories_that_build_non_policies():
    with pytest.raises(AssertionError, match="not a banditrec Policy"):
        check_policy(lambda seed: object(), checks=["decisions"])


def test_battery_needs_a_masked_world():
    with pytest.raises(AssertionError, match="must mask some candidates"):
        check_policy(POLICIES["Random"], checks=["decisions"], env_kwargs={"n_items": 10, "context_dim": 3})


def test_battery_monte_carlo_tolerance_catches_biased_thompson_propensities():
    class _BiasedThompson(Policy):
        """Wraps LinTS and halves its propensities: wrong, though still in (0, 1]."""

        def __init__(self, seed=None):
            super().__init__(seed)
            self.inner = LinTS(seed=seed)
            self.exploration = self.inner.exploration

        def _act(self, obs):
            d = self.inner.act(obs)
            return Decision(d.actions, d.propensities / 2)

        def _distribution(self, obs):
            return self.inner.action_distribution(obs)

        def _learn(self, obs, actions, rewards):
            self.inner.update(obs, actions, rewards)

    check_policy(LinTS, checks=["propensities"])
    with pytest.raises(AssertionError, match="check_propensities"):
        check_policy(_BiasedThompson, checks=["propensities"])


def test_thompson_inverse_propensities_are_the_documented_near_unbiased_weights():
    # An action won by the posterior with probability pi = 0.0158: its propensity, the share of
    # 1 + n_mc draws it wins, averages (1 + n_mc pi)/(n_mc + 1) = 0.0255, but the IPS weight 1/p
    # averages (1 - (1 - pi)^(n_mc + 1))/pi = 50.6 (Thompson's docstring), not 1/0.0255 = 39.
    from banditrec.environments.simulator import Observation
    from banditrec.policies import Thompson

    pi, n_mc, B = 0.0158, 100, 25_000

    class TwoArms:
        def sample(self, obs, rng, n):
            draws = np.full((n, obs.batch_size, 2), 0.5)
            draws[:, :, 0] = rng.random((n, obs.batch_size)) < pi  # arm 0 wins a draw with probability pi
            return draws

    obs = Observation(np.zeros((B, 1)), np.zeros((B, 2, 1)), np.tile([0, 1], (B, 1)), np.ones((B, 2), bool),
                      np.full(B, -1))
    rng = np.random.default_rng(0)
    weights = []
    for _ in range(4):
        actions, p = Thompson(n_mc).choose(TwoArms(), obs, rng, 0)
        weights.append(1.0 / p[actions == 0])
    weights = np.concatenate(weights)
    expected = (1 - (1 - pi) ** (n_mc + 1)) / pi
    assert abs(weights.mean() - expected) < 5 * weights.std() / np.sqrt(weights.size), (weights.mean(), expected)
    assert abs(weights.mean() - 1 / 0.0255) > 5 * weights.std() / np.sqrt(weights.size)
