"""Decisions made on the estimator's device (``decide_on="device"``), checked on the CPU.

On a GPU these are the code paths that keep NeuralLinear's posterior, Monte-Carlo propensities and
tie-breaking next to the network. Here they run as torch on the CPU and are held to the host
(numpy) path: the same posterior to rounding, draws with the same distribution, valid
propensities, exact resume, and states that move between the two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from banditrec.environments import Observation
from banditrec.policies import make_policy
from banditrec.policies.checkpoint import load_policy, save_policy
from banditrec.policies.neural import NeuralEstimator, OnlineTraining
from banditrec.policies.tensor_ops import argmax_ties, require_valid_candidates, standard_gamma

TRAINING = OnlineTraining(train_every=16, train_steps=3, batch_size=8, buffer_size=200)


def make_obs(B=6, K=5, seed=0, n_items=9) -> Observation:
    rng = np.random.default_rng(seed)
    mask = np.ones((B, K), dtype=bool)
    mask[0, -2:] = False
    return Observation(
        rng.standard_normal((B, 3)),
        rng.standard_normal((B, K, 2)),
        rng.integers(0, n_items, (B, K)),
        mask,
        rng.integers(0, 7, B),
    )


def trained_pair(**options):
    """A host and a device estimator fed the same 40 decisions (two retrainings, head updates)."""
    pair = {}
    for where in ("host", "device"):
        est = NeuralEstimator(**({"hidden": (8,)} | options), device="cpu", seed=3, training=TRAINING,
                              decide_on=where)
        for step in range(5):
            obs = make_obs(B=8, seed=step)
            actions = np.arange(8) % 3
            rewards = np.random.default_rng(step).standard_normal(8)
            est.update(obs, actions, rewards)
        pair[where] = est
    return pair["host"], pair["device"]


HEADS = {
    "last_layer-shared-nig": {},
    "last_layer-shared-nig-narrow": {"hidden": (3,)},  # h + 1 <= K: draws through the Cholesky of A⁻¹
    "last_layer-per_item-nig": {"head": "per_item"},
    "last_layer-per_item-nig-no_intercept": {"head": "per_item", "intercept": False},
    "last_layer-shared-gaussian": {"posterior": "gaussian", "v": 0.5},
    "gradient_diag": {"uncertainty": "gradient_diag", "v": 0.5},
    # Xu et al.'s head fitting: decision-time φ in the head, the body trained through each row's θ
    "last_layer-shared-xu": {"head_fit": "xu"},
    "last_layer-per_item-xu": {"head": "per_item", "head_fit": "xu"},
}


@pytest.mark.parametrize("options", list(HEADS.values()), ids=list(HEADS))
def test_device_estimates_equal_host_estimates(options):
    host, device = trained_pair(**options)
    obs = make_obs(seed=11)
    np.testing.assert_allclose(device.mean(obs), host.mean(obs), rtol=1e-6, atol=1e-8)
    for d, h in zip(device.mean_and_width(obs), host.mean_and_width(obs)):
        np.testing.assert_allclose(d, h, rtol=1e-6, atol=1e-8)
    mean_t = device.mean_tensor(obs)
    assert isinstance(mean_t, torch.Tensor) and mean_t.shape == (6, 5) and mean_t.dtype == torch.float64


@pytest.mark.parametrize("head", ["shared", "per_item"])
def test_one_row_updates_match_the_host_head(head):
    """One decision at a time the device head takes Sherman–Morrison steps (no factorisation);
    after 30 of them (and no retraining) its estimates still equal the host head's."""
    training = OnlineTraining(train_every=1000, train_steps=1, batch_size=8, buffer_size=200)
    pair = {}
    for where in ("host", "device"):
        est = NeuralEstimator(hidden=(8,), head=head, device="cpu", seed=3, training=training, decide_on=where)
        for step in range(30):
            obs = make_obs(B=1, seed=step)
            reward = np.random.default_rng(step).standard_normal(1).astype(np.float32)  # the buffer's precision
            est.update(obs, np.array([step % 3]), reward.astype(np.float64))
        pair[where] = est
    obs = make_obs(seed=11)
    for d, h in zip(pair["device"].mean_and_width(obs), pair["host"].mean_and_width(obs)):
        np.testing.assert_allclose(d, h, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("options", list(HEADS.values()), ids=list(HEADS))
def test_device_draws_have_the_host_distribution(options):
    host, device = trained_pair(**options)
    obs = make_obs(seed=12)
    n = 20_000
    d_draws = device.sample_tensor(obs, n).numpy()
    h_draws = host.sample(obs, np.random.default_rng(0), n)
    assert d_draws.shape == h_draws.shape == (n, 6, 5)
    scale = h_draws.std(axis=0)
    np.testing.assert_allclose(d_draws.mean(axis=0), h_draws.mean(axis=0), atol=float(0.05 * scale.max()))
    np.testing.assert_allclose(d_draws.std(axis=0), scale, rtol=0.05)
    if "head" not in options and options.get("uncertainty") != "gradient_diag":
        # shared head: one parameter draw per user, so the candidates are correlated as on the host
        c_dev = np.corrcoef(d_draws[:, 1].T)
        c_host = np.corrcoef(h_draws[:, 1].T)
        np.testing.assert_allclose(c_dev, c_host, atol=0.05)


def test_device_thompson_propensities_match_the_host_distribution():
    # The host distribution is itself a Monte-Carlo estimate: 20,000 draws make its error (s.e.
    # <= 0.004) small beside the 4,000 device decisions' (s.e. <= 0.008); atol is 4 s.e. of both.
    policies = {w: make_policy("NeuralLinear", seed=0, device="cpu", decide_on=w, hidden=(8,),
                               train_every=16, train_steps=3, batch_size=8, n_mc=n_mc)
                for w, n_mc in (("host", 20_000), ("device", 100))}
    obs = make_obs(B=1, seed=4)
    for policy in policies.values():
        for step in range(4):
            o = make_obs(B=8, seed=step)
            policy.update(o, np.arange(8) % 3, np.random.default_rng(step).standard_normal(8))
    host_dist = policies["host"].action_distribution(obs)[0]
    chosen = np.array([policies["device"].act(obs)[0][0] for _ in range(4_000)])
    freq = np.bincount(chosen, minlength=5) / chosen.size
    np.testing.assert_allclose(freq, host_dist, atol=0.04)
    assert freq[obs.mask[0] == False].sum() == 0


def test_device_decisions_are_reproducible_and_resume_exactly(tmp_path):
    def run(policy, steps, start=0):
        out = []
        for step in range(start, start + steps):
            obs = make_obs(B=8, seed=step)
            actions, p = policy.act(obs)
            out.append((actions.copy(), p.copy()))
            policy.update(obs, actions, np.random.default_rng(step).standard_normal(8))
        return out

    make = lambda: make_policy("NeuralLinear", seed=5, device="cpu", decide_on="device", hidden=(8,),
                               train_every=16, train_steps=3, batch_size=8)
    a, b = make(), make()
    first, second = run(a, 6), run(b, 6)
    for (x, p), (y, q) in zip(first, second):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(p, q)
    save_policy(a, tmp_path / "policy.pt")
    resumed = load_policy(make(), tmp_path / "policy.pt")
    for (x, p), (y, q) in zip(run(a, 4, start=6), run(resumed, 4, start=6)):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(p, q)


def test_a_host_state_loads_into_a_device_estimator():
    host, _ = trained_pair()
    device = NeuralEstimator(hidden=(8,), device="cpu", seed=3, training=TRAINING, decide_on="device")
    device.load_state_dict(host.state_dict())
    obs = make_obs(seed=13)
    for d, h in zip(device.mean_and_width(obs), host.mean_and_width(obs)):
        np.testing.assert_allclose(d, h, rtol=1e-6, atol=1e-8)
    back = NeuralEstimator(hidden=(8,), device="cpu", seed=3, training=TRAINING, decide_on="device")
    back.load_state_dict(device.state_dict())
    np.testing.assert_allclose(back.mean(obs), host.mean(obs), rtol=1e-6, atol=1e-8)


def test_auto_decides_on_the_host_on_a_cpu():
    est = NeuralEstimator(hidden=(8,), device="cpu", seed=0)
    assert est.device_decisions(make_obs()) is False
    with pytest.raises(ValueError, match="decide_on must be one of"):
        NeuralEstimator(decide_on="gpu")
    with pytest.raises(RuntimeError, match="decide_on='device'"):
        est.mean_tensor(make_obs())


def test_argmax_ties_breaks_ties_uniformly_and_respects_the_mask():
    gen = torch.Generator().manual_seed(0)
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]]).expand(30_000, 5)
    mask = torch.tensor([[True, True, True, False, True]]).expand(30_000, 5)
    actions, ties, n_tied = argmax_ties(scores, mask, gen)
    assert set(actions.tolist()) == {1, 2}
    assert abs(float((actions == 1).double().mean()) - 0.5) < 0.02
    assert n_tied.unique().tolist() == [2] and ties[0].tolist() == [False, True, True, False, False]


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "tensor"])
def test_a_mask_with_an_empty_row_is_rejected(as_tensor):
    mask = np.array([[True] * 3, [False] * 3])
    with pytest.raises(ValueError, match="no valid candidate"):
        require_valid_candidates(torch.from_numpy(mask) if as_tensor else mask)
    require_valid_candidates(torch.ones(2, 3, dtype=torch.bool) if as_tensor else np.ones((2, 3), bool))


@pytest.mark.parametrize("name,options", [("NeuralEpsilonGreedy", {}), ("NeuralUCB", {}), ("NeuralLinear", {}),
                                          ("NeuralTS", {"uncertainty": "gradient_diag"})])
def test_device_decisions_reject_a_user_without_valid_candidates(name, options):
    policy = make_policy(name, seed=0, device="cpu", decide_on="device", hidden=(8,), **options)
    obs = make_obs()
    obs.mask[2] = False
    with pytest.raises(ValueError, match="no valid candidate"):
        policy.act(obs)


def _decisions(name, options, steps=12):
    policy = make_policy(name, seed=0, device="cpu", decide_on="device", hidden=(8,), train_every=8,
                         train_steps=2, batch_size=8, **options)
    out = []
    for step in range(steps):
        obs = make_obs(seed=step)
        decision = policy.act(obs)
        policy.update(obs, decision.actions, np.random.default_rng(step).standard_normal(6))
        out.append((decision.actions, decision.propensities))
    return out


@pytest.mark.parametrize("name,options", [("NeuralEpsilonGreedy", {}), ("NeuralLinear", {}),
                                          ("NeuralLinear", {"head": "per_item"})])
def test_packed_transfers_give_the_same_decisions(monkeypatch, name, options):
    """On an accelerator a host batch travels packed into two copies (features; ids and mask) and
    actions and rewards into one; run on the CPU, that path must decide exactly as the plain one."""
    plain = _decisions(name, options)
    monkeypatch.setattr(NeuralEstimator, "_PACK_ON_CPU", True)
    packed = _decisions(name, options)
    for (a, p), (a2, p2) in zip(plain, packed):
        assert a2.dtype == np.int64 and p2.dtype == np.float64
        np.testing.assert_array_equal(a, a2)
        np.testing.assert_array_equal(p, p2)


@pytest.mark.parametrize("alpha", [0.3, 1.0, 6.0, 250.0])
def test_standard_gamma_has_the_gamma_distribution(alpha):
    draws = standard_gamma(torch.full((40_000,), alpha), torch.Generator().manual_seed(1)).numpy()
    assert stats.kstest(draws, stats.gamma(alpha).cdf).pvalue > 1e-3
    again = standard_gamma(torch.full((40_000,), alpha), torch.Generator().manual_seed(1)).numpy()
    np.testing.assert_array_equal(draws, again)
    # a caller's known bound skips the positivity read (and, at 1 or more, the a < 1 branch)
    bounded = standard_gamma(torch.full((40_000,), alpha), torch.Generator().manual_seed(2), lower_bound=alpha)
    assert stats.kstest(bounded.numpy(), stats.gamma(alpha).cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="must be > 0"):
        standard_gamma(torch.tensor([1.0, 0.0]), torch.Generator())


# --------------------------------------------------------------------------- on a real GPU
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.parametrize("options", list(HEADS.values()), ids=list(HEADS))
def test_cuda_estimates_equal_host_estimates(options):
    """On CUDA ``decide_on='auto'`` decides on the device, and agrees with the host-side head
    trained on the same GPU (float32 network, float64 posterior on either side)."""
    est = {}
    for where in ("host", "auto"):
        e = NeuralEstimator(**({"hidden": (8,)} | options), device="cuda", seed=3, training=TRAINING,
                            decide_on=where)
        for step in range(5):
            e.update(make_obs(B=8, seed=step), np.arange(8) % 3, np.random.default_rng(step).standard_normal(8))
        est[where] = e
    obs = make_obs(seed=11)
    assert est["auto"].device_decisions(obs) and not est["host"].device_decisions(obs)
    assert est["auto"].mean_tensor(obs).device.type == "cuda"
    for d, h in zip(est["auto"].mean_and_width(obs), est["host"].mean_and_width(obs)):
        np.testing.assert_allclose(d, h, rtol=1e-4, atol=1e-6)


@needs_cuda
@pytest.mark.parametrize("name", ["NeuralLinear", "NeuralUCB", "NeuralTS", "NeuralEpsilonGreedy"])
def test_neural_policies_learn_on_cuda_and_their_states_load_on_the_cpu(name, tmp_path):
    from banditrec.environments import make_vector_env

    env = make_vector_env("banditrec/Nonlinear-v0", num_envs=64)
    env.reset(seed=0)
    policy = make_policy(name, seed=0, device="cuda", hidden=(32,), train_every=64, train_steps=8)
    obs, regret = env.observation, []
    for _ in range(40):
        actions, p = policy.act(obs)
        assert actions.dtype == np.int64 and np.all((p > 0) & (p <= 1 + 1e-12))
        next_obs, rewards, _, info = env.step_batch(actions)
        policy.update(obs, actions, rewards)
        obs = next_obs
        regret.append(float(info["regret"].mean()))
    assert np.mean(regret[-10:]) < np.mean(regret[:10])  # it learns
    save_policy(policy, tmp_path / "p.pt")
    on_cpu = load_policy(make_policy(name, seed=0, device="cpu", hidden=(32,), train_every=64, train_steps=8),
                         tmp_path / "p.pt")
    np.testing.assert_allclose(on_cpu.estimator.mean(obs), policy.estimator.mean(obs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["LinUCB", "LinTS", "EpsilonGreedy", "UCB1", "BernoulliTS", "Random", "NeuralLinear"])
def test_inspecting_a_batch_of_tensors_gives_the_host_answer_as_numpy(name):
    # act copied a device batch to the host for a host policy, but action_distribution and
    # explain did not: LinUCB and LinTS failed with "'<' not supported between instances of
    # 'int' and 'builtin_function_or_method'", and the others returned tensors.
    host = make_obs()
    tensors = Observation(*(torch.as_tensor(np.array(getattr(host, f))) for f in
                            ("user_features", "item_features", "item_ids", "mask", "user_ids")))
    on_host, on_tensors = make_policy(name, seed=0), make_policy(name, seed=0)
    dist = on_tensors.action_distribution(tensors)
    assert type(dist) is np.ndarray and dist.dtype == np.float64
    np.testing.assert_allclose(dist, on_host.action_distribution(host), atol=1e-6)
    why, expected = on_tensors.explain(tensors), on_host.explain(host)
    assert set(why) == set(expected) and all(type(v) is np.ndarray for v in why.values())
    for key in why:
        np.testing.assert_allclose(why[key], expected[key], atol=1e-5, equal_nan=True)
