"""Training from the initial weights θ₀: ``OnlineTraining(restart=True)`` and ``anchor`` (the
regulariser mλ/2 · ‖θ − θ₀‖² of NeuralUCB, NeuralTS and Neural-LinUCB as their papers write them)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from banditrec.environments import make_vector_env
from banditrec.models import build_model
from banditrec.policies import NeuralEpsilonGreedy, NeuralLinear, NeuralUCB
from banditrec.policies.neural import OnlineTraining

SMALL = {"hidden": (8,), "train_every": 8, "train_steps": 3, "batch_size": 16, "lr": 0.05, "device": "cpu"}


def _play(policy, steps, B=8, seed=0):
    env = make_vector_env("banditrec/Linear-v0", num_envs=B, n_items=12, n_candidates=5, context_dim=3)
    env.reset(seed=seed)
    for _ in range(steps):
        obs = env.observation
        d = policy.act(obs)
        _, rewards, _, _ = env.step_batch(d.actions)
        policy.update(obs, d.actions, rewards)
    return policy


def _spy_round_starts(estimator):
    """Record the network's weights and the optimizer's state at the first step of every round."""
    starts = []
    step = estimator._train_step
    per_round = estimator.training.train_steps
    calls = [0]

    def spied(index):
        if calls[0] % per_round == 0:
            starts.append((
                {k: v.detach().clone() for k, v in estimator.model_.state_dict().items()},
                len(estimator.optimizer_.state),
            ))
        calls[0] += 1
        return step(index)

    estimator._train_step = spied
    return starts


@pytest.mark.parametrize("factory", [
    lambda **kw: NeuralUCB(uncertainty="gradient_diag", **kw),
    lambda **kw: NeuralUCB(head_fit="xu", **kw),
    lambda **kw: NeuralLinear(**kw),
    lambda **kw: NeuralEpsilonGreedy(**kw),
])
def test_every_round_starts_from_the_initial_weights_with_a_fresh_optimizer(factory):
    policy = factory(restart=True, seed=0, **SMALL)
    _play(policy, 1)  # builds the network, before any training round (8 decisions: round 1 at the end)
    est = policy.estimator
    theta0 = {k: v.detach().clone() for k, v in est.init_state_.items()}
    starts = _spy_round_starts(est)
    _play(policy, 6, seed=1)
    assert len(starts) == 6 and est.n_rounds_ == 7
    for weights, optimizer_entries in starts:
        for name, value in weights.items():
            torch.testing.assert_close(value, theta0[name], rtol=0, atol=0)
        assert optimizer_entries == 0  # no moments carried over from the last round
    # ... and the rounds did train: the weights at the end are not θ₀
    assert any(not torch.equal(v, theta0[k]) for k, v in est.model_.state_dict().items())
    # θ₀ itself never moves
    for name, value in est.init_state_.items():
        torch.testing.assert_close(value, theta0[name], rtol=0, atol=0)


def test_without_restart_rounds_continue_from_the_current_weights():
    policy = NeuralUCB(seed=0, **SMALL)
    _play(policy, 1)
    est = policy.estimator
    assert est.init_state_ is None
    theta0 = {k: v.detach().clone() for k, v in est.model_.state_dict().items()}
    starts = _spy_round_starts(est)
    _play(policy, 3, seed=1)
    assert any(not torch.equal(v, theta0[k]) for k, v in starts[-1][0].items())
    assert starts[-1][1] > 0


def test_the_initial_weights_of_a_handed_in_model_are_its_own():
    # a pretrained network restarts from its pretrained weights, not from a fresh initialisation
    net = build_model("mlp", 3, 3, (8,), seed=5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5)
    given = copy.deepcopy(net.state_dict())
    policy = NeuralUCB(model=net, restart=True, seed=0, **{k: v for k, v in SMALL.items() if k != "hidden"})
    _play(policy, 4)
    for name, value in policy.estimator.init_state_.items():
        torch.testing.assert_close(value, given[name], rtol=0, atol=0)


def test_anchor_adds_half_anchor_times_the_squared_distance_to_theta0():
    anchor = 0.7
    policy = NeuralUCB(anchor=anchor, seed=0, **SMALL)
    _play(policy, 4)  # three rounds: the weights have left θ₀
    est = policy.estimator
    distance = sum(float(((p.detach() - est.init_state_[n]) ** 2).sum()) for n, p in est.model_.named_parameters())
    assert distance > 0
    index = torch.arange(10)
    user, items, item_ids, user_ids, target = est.buffer_.rows(index)
    with torch.no_grad():
        data = float(((est.model_(user, items, item_ids, user_ids)[:, 0] - target) ** 2).mean())
    est.optimizer_ = torch.optim.SGD(est.model_.parameters(), lr=0.0)  # measure the loss, move nothing
    value = float(est._train_step(index))
    assert value == pytest.approx(data + 0.5 * anchor * distance, rel=1e-5)


def test_a_strong_anchor_keeps_the_network_near_its_initialisation():
    def distance(anchor):
        policy = _play(NeuralUCB(anchor=anchor, seed=0, **SMALL), 30)
        est = policy.estimator
        return sum(float(((p.detach() - est.init_state_[n]) ** 2).sum()) for n, p in est.model_.named_parameters())

    far, near = distance(1e-6), distance(10.0)
    assert near < 0.2 * far, (near, far)


def test_same_seed_same_numbers_with_restart_and_anchor():
    def run():
        policy = _play(NeuralUCB(uncertainty="gradient_diag", restart=True, anchor=0.05, seed=3, **SMALL), 12)
        return [v.clone() for v in policy.estimator.model_.state_dict().values()]

    for a, b in zip(run(), run()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"restart": True, "engine": "numpy"}, ValueError, r"restart=True and anchor > 0 need engine='torch'"),
    ({"anchor": 0.1, "engine": "numba"}, ValueError, r"restart=True and anchor > 0 need engine='torch'"),
    ({"restart": True, "cuda_graph": "on"}, ValueError, r"no cuda_graph='on'"),
    ({"restart": 1}, TypeError, r"restart must be True or False, got 1"),
    ({"anchor": -0.1}, ValueError, r"anchor must be >= 0 and finite, got -0.1"),
    ({"anchor": float("nan")}, ValueError, r"anchor must be >= 0 and finite, got nan"),
    ({"anchor": float("inf")}, ValueError, r"anchor must be >= 0 and finite, got inf"),
])
def test_bad_restart_and_anchor_settings_are_refused_when_made(kwargs, error, match):
    with pytest.raises(error, match=match):
        OnlineTraining(**kwargs)


def test_restart_never_captures_cuda_graphs():
    assert not OnlineTraining(restart=True, cuda_graph="auto").graphed_on(torch.device("cuda"))
    assert not OnlineTraining(anchor=0.1, cuda_graph="auto").graphed_on(torch.device("cuda"))
    assert OnlineTraining(cuda_graph="auto").graphed_on(torch.device("cuda"))


def test_a_state_saved_without_restart_is_refused_by_an_estimator_with_it():
    saved = _play(NeuralUCB(seed=0, **SMALL), 3).estimator.state_dict()
    with pytest.raises(ValueError, match=r"training.restart: False vs True"):
        NeuralUCB(restart=True, seed=0, **SMALL).estimator.load_state_dict(saved)
    # and an older state, written before these options existed, still loads where they are off
    old = copy.deepcopy(saved)
    del old["params"]["training"]["restart"], old["params"]["training"]["anchor"]
    NeuralUCB(seed=0, **SMALL).estimator.load_state_dict(old)


def test_restart_and_anchor_go_through_a_config():
    from banditrec.config import ExperimentConfig
    from banditrec.runner import run_experiment

    config = ExperimentConfig.from_dict({
        "experiment": {"name": "restart", "horizon": 64, "batch_size": 8, "seeds": 1},
        "environment": {"id": "banditrec/Linear-v0", "n_items": 6, "context_dim": 3},
        "policies": {"zhou": {"type": "NeuralUCB", "uncertainty": "gradient_diag", "restart": True,
                              "anchor": 0.01, "hidden": [[8]], "train_every": 8, "train_steps": 2}},
    })
    result = run_experiment(config, None, progress=False, plot=False)
    assert np.isfinite(result.summary["final_cumulative_regret"]).all()
