"""Thompson sampling with per-item posteriors (a per-item neural head, disjoint LinTS,
BernoulliTS) draws one parameter per item and user; the gradient-feature NeuralTS, which has no
parameter draw, draws one standard normal per item and user.

An item listed twice among one user's candidates used to get two independent draws (one per
slot), so against one equal rival it won about 2/3 of the time instead of 1/2.
"""

from __future__ import annotations

import numpy as np
import pytest

from banditrec.environments import Observation
from banditrec.policies import BernoulliTS, LinTS
from banditrec.policies.base import repeated_slots
from banditrec.policies.neural import NeuralLinear, NeuralTS

SMALL = {"hidden": (8,), "train_every": 1000, "train_steps": 1, "batch_size": 8, "buffer_size": 64,
         "device": "cpu"}
MODELS = {"multi_output": {"model": "multi_output", "model_options": {"n_items": 4}}, "mlp": {"model": "mlp"}}


def obs_of(item_ids, seed=0) -> Observation:
    rng = np.random.default_rng(seed)
    ids = np.asarray(item_ids)
    B, K = ids.shape
    mask = np.ones((B, K), dtype=bool)
    return Observation(rng.standard_normal((B, 3)), rng.standard_normal((B, K, 2)), ids, mask,
                       np.zeros(B, dtype=np.int64))


def test_repeated_slots_groups_each_repeated_item_of_each_row():
    assert repeated_slots(np.array([[3, 1, 2]])) is None
    assert repeated_slots(np.array([[3, 1], [1, 3]])) is None  # the same item in two rows is no repeat
    rows, slots, groups, n_groups = repeated_slots(np.array([[5, 1, 5, 1, 2], [0, 0, 0, 4, 9]]))
    found = {(int(r), int(s)): int(g) for r, s, g in zip(rows, slots, groups)}
    assert n_groups == 3 and set(found) == {(0, 0), (0, 2), (0, 1), (0, 3), (1, 0), (1, 1), (1, 2)}
    assert found[0, 0] == found[0, 2] != found[0, 1] == found[0, 3] != found[1, 0]
    assert found[1, 0] == found[1, 1] == found[1, 2]


@pytest.mark.parametrize("decide_on", ["host", "device"])
@pytest.mark.parametrize("model", list(MODELS))
def test_an_item_listed_twice_gets_one_draw_and_its_fair_share(model, decide_on):
    policy = NeuralLinear(head="per_item", n_mc=4000, seed=0, decide_on=decide_on, **MODELS[model],
                          **SMALL)
    obs = obs_of([[0, 0, 1]])
    obs.item_features[0, :] = obs.item_features[0, 0]  # identical features: an mlp's φ is the same too
    draws = policy.estimator.sample(obs, np.random.default_rng(1), 50)
    np.testing.assert_array_equal(draws[..., 0], draws[..., 1])
    assert not np.array_equal(draws[..., 0], draws[..., 2])
    # items 0 and 1 have the same (prior) posterior: each should win half the time, not 2/3 and 1/3
    dist = policy.action_distribution(obs)[0]
    assert abs(dist[:2].sum() - 0.5) < 0.04, dist  # s.e. 0.008


@pytest.mark.parametrize("decide_on", ["host", "device"])
def test_repeated_items_with_different_features_have_the_posterior_covariance(decide_on):
    # one θ ~ N(θ̂, v² A⁻¹) per item: two slots of one item with features x, y covary as v² xᵀA⁻¹y
    policy = NeuralTS(head="per_item", v=0.5, n_mc=10, seed=0, decide_on=decide_on, **SMALL)
    rng = np.random.default_rng(3)
    for step in range(6):
        o = obs_of(rng.integers(0, 3, (8, 3)), seed=step)
        policy.update(o, np.arange(8) % 3, rng.standard_normal(8))
    obs = obs_of([[2, 1, 2, 0]], seed=9)
    est = policy.estimator
    draws = est.sample(obs, np.random.default_rng(0), 40_000)[:, 0]
    _, width = est.mean_and_width(obs)
    np.testing.assert_allclose(draws.std(axis=0), 0.5 * width[0], rtol=0.03)
    phi = est._features(obs).get("host_embedding")
    if phi is None:
        phi = est._numpy(est._features(obs)["embedding"])
    x = np.concatenate([phi[0], np.ones((4, 1))], axis=1)
    state = est.head_.state_dict()
    A_inv = state["A_inv_"][2].numpy()
    expected = 0.25 * x[0] @ A_inv @ x[2]
    got = np.cov(draws[:, 0], draws[:, 2])[0, 1]
    assert abs(got - expected) < 0.05 * 0.25 * width[0, 0] * width[0, 2], (got, expected)
    # distinct items stay independent
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.03


@pytest.mark.parametrize("make", [lambda: LinTS(form="disjoint", seed=0), lambda: LinTS(form="disjoint", posterior="nig", seed=0),
                                  lambda: BernoulliTS(seed=0)], ids=["LinTS-gaussian", "LinTS-nig", "BernoulliTS"])
def test_per_item_linear_and_beta_posteriors_draw_a_repeated_item_once(make):
    policy = make()
    rng = np.random.default_rng(2)
    for step in range(5):  # some data, so the posteriors are not the prior
        o = obs_of(rng.integers(0, 3, (16, 3)), seed=step)
        policy.update(o, np.arange(16) % 3, rng.integers(0, 2, 16).astype(float))
    obs = obs_of([[1, 2, 1], [0, 0, 0]], seed=11)
    draws = policy.estimator.sample(obs, np.random.default_rng(0), 200)
    np.testing.assert_array_equal(draws[:, 0, 0], draws[:, 0, 2])  # disjoint LinTS uses user features only
    np.testing.assert_array_equal(draws[:, 1, 0], draws[:, 1, 2])
    assert not np.array_equal(draws[:, 0, 0], draws[:, 0, 1])
    # fresh policy, equal (prior) posteriors for items 0 and 1: the item listed twice wins half the time
    fresh = make()
    B = 4000
    a, _ = fresh.act(obs_of(np.tile([0, 0, 1], (B, 1)), seed=5))
    share = np.isin(a, [0, 1]).mean()
    assert abs(share - 0.5) < 0.04, share  # s.e. 0.008; drawn per slot it was about 2/3


@pytest.mark.parametrize("decide_on", ["host", "device"])
def test_gradient_neural_ts_draws_a_repeated_item_once(decide_on):
    # NeuralTS(uncertainty="gradient_diag") draws f + v·σ·z; an item listed twice shares its z
    policy = NeuralTS(uncertainty="gradient_diag", v=0.5, n_mc=4000, seed=0, decide_on=decide_on, **SMALL)
    obs = obs_of([[0, 1, 0, 2], [3, 3, 3, 1]], seed=4)
    for row in (0, 1):  # identical features within a row: identical f and σ for all of its slots
        obs.item_features[row, :] = obs.item_features[row, 0]
    draws = policy.estimator.sample(obs, np.random.default_rng(1), 200)
    np.testing.assert_array_equal(draws[:, 0, 0], draws[:, 0, 2])
    np.testing.assert_array_equal(draws[:, 1, 0], draws[:, 1, 1])
    np.testing.assert_array_equal(draws[:, 1, 0], draws[:, 1, 2])
    assert not np.array_equal(draws[:, 0, 0], draws[:, 0, 1])
    assert not np.array_equal(draws[:, 1, 0], draws[:, 1, 3])
    # with the same f and σ everywhere, each distinct item should win equally often
    dist = policy.action_distribution(obs)
    assert abs(dist[0, [0, 2]].sum() - 1 / 3) < 0.04, dist[0]  # drawn per slot: 1/2
    assert abs(dist[1, :3].sum() - 1 / 2) < 0.04, dist[1]  # drawn per slot: 3/4
    # no repeats: the draws are exactly those of before (one standard normal per slot)
    plain = obs_of([[0, 1, 2, 3]], seed=4)
    if decide_on == "host":
        est = policy.estimator
        mean, width = est.mean_and_width(plain)
        expected = mean + 0.5 * width * np.random.default_rng(1).standard_normal((50, 1, 4))
        np.testing.assert_array_equal(est.sample(plain, np.random.default_rng(1), 50), expected)
