"""``head_fit="xu"``: Xu et al. (2020)'s Neural-LinUCB as written.

The last-layer head accumulates φ as it was when each decision was made (never recomputed from
the buffer), each buffer row keeps the head's mean θ right after it was learned, and the network's
body trains on Σᵢ (θᵢᵀ[φ(xᵢ; w), 1] − rᵢ)² with its own output layer unused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from banditrec.environments import Observation
from banditrec.policies.neural import NeuralEstimator, NeuralLinear, NeuralUCB, OnlineTraining

TRAINING = OnlineTraining(train_every=8, train_steps=3, batch_size=8, buffer_size=64)


def make_obs(B=4, K=5, seed=0, n_items=6) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        rng.standard_normal((B, 3)),
        rng.standard_normal((B, K, 2)),
        rng.integers(0, n_items, (B, K)),
        np.ones((B, K), dtype=bool),
        rng.integers(0, 7, B),
    )


def feed(est: NeuralEstimator, steps: int, record=None) -> None:
    """``steps`` batches of 4 decisions (two training rounds every 4 batches); ``record(obs,
    actions, rewards)`` sees each batch before the estimator learns it."""
    for step in range(steps):
        obs = make_obs(seed=step)
        actions = np.arange(4) % 3
        rewards = np.random.default_rng(100 + step).standard_normal(4) + obs.user_features[:, 0]
        if record is not None:
            record(obs, actions, rewards)
        est.update(obs, actions, rewards)


@pytest.mark.parametrize("head_fit", ["xu", "refit"])
def test_the_head_keeps_the_decision_time_features_only_under_xu(head_fit):
    """Under "xu" the head is λI + Σ xxᵀ, Σ x r over x = [φ at decision time, 1] exactly; "refit"
    recomputes it under the retrained network, so the same check fails there."""
    est = NeuralEstimator(hidden=(5,), device="cpu", seed=0, training=TRAINING, head_fit=head_fit)
    rows, ys = [], []

    def record(obs, actions, rewards):
        est.mean(obs)  # builds the network on first use; φ as the decision saw it:
        phi = est._features(obs)["host_embedding"][np.arange(4), actions]
        rows.append(np.hstack([phi, np.ones((4, 1))]))
        ys.append(rewards)

    feed(est, 10, record)
    assert est.n_rounds_ == 5
    X, y = np.vstack(rows), np.concatenate(ys)
    ridge = est.head_.ridge
    matches = np.allclose(ridge.A_[0], est.lam * np.eye(6) + X.T @ X, rtol=1e-9, atol=1e-9) and np.allclose(
        ridge.b_[0], X.T @ y, rtol=1e-9, atol=1e-9
    )
    assert matches == (head_fit == "xu")


@pytest.mark.parametrize("head", ["shared", "per_item"])
def test_each_buffer_row_keeps_the_head_mean_it_was_learned_with(head):
    est = NeuralEstimator(hidden=(5,), device="cpu", seed=0, training=TRAINING, head_fit="xu", head=head)
    expected = []

    def record(obs, actions, rewards):
        if expected:  # the previous batch's θ, read after it was learned
            expected[-1] = expected[-1]()
        ids = obs.item_ids[np.arange(4), actions]
        expected.append(lambda ids=ids: est.head_.theta_rows(ids).copy())

    feed(est, 12, record)
    expected[-1] = expected[-1]()
    stored = est.buffer_.theta[: est.buffer_.size].numpy()
    np.testing.assert_allclose(stored, np.vstack(expected).astype(np.float32), rtol=0, atol=0)
    assert np.abs(stored).max() > 0


def test_the_body_trains_on_each_rows_theta_and_the_output_layer_never_moves():
    est = NeuralEstimator(hidden=(5,), device="cpu", seed=0, head_fit="xu",
                          training=OnlineTraining(train_every=8, train_steps=3, batch_size=8, buffer_size=64,
                                                  optimizer="sgd", lr=0.05))
    feed(est, 1)  # builds the network
    net = est.model_
    start = {name: p.detach().clone() for name, p in net.named_parameters()}
    # the parameters φ depends on: those that get a gradient from embed
    user, items, ids, users, _ = est.buffer_.rows(torch.arange(4))
    net.zero_grad()
    net.embed(user, items, ids, users).sum().backward()
    body = {name for name, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    net.zero_grad()
    assert body and body != set(start)
    # each step's loss is the mean of (θᵢᵀ[φᵢ, 1] − rᵢ)² over its rows, recomputed here independently
    checked = []
    step = est._train_step

    def spy(index):
        u, it, i, us, r = est.buffer_.rows(index)
        with torch.no_grad():
            phi = net.embed(u, it, i, us)[:, 0, :].double()
            theta = torch.from_numpy(est.buffer_.host["theta"][index.numpy()]).double()
            want = float((((phi * theta[:, :5]).sum(1) + theta[:, 5] - r.double()) ** 2).mean())
        got = step(index)
        checked.append((float(got), want))
        return got

    est._train_step = spy
    feed(est, 8)
    assert len(checked) == 4 * 3
    for got, want in checked:
        assert got == pytest.approx(want, rel=1e-5)
    moved = {name for name, p in net.named_parameters() if not torch.equal(p.detach(), start[name])}
    assert moved == body


def test_xu_learns_a_nonlinear_reward_through_the_head():
    """The head's θ drives the body: the policy's mean (θᵀ[φ, 1]) fits y = x₀² better than the
    head on the untrained network does."""
    errors = {}
    for trained in (False, True):
        rng = np.random.default_rng(0)  # the same users for both
        training = OnlineTraining(train_every=16 if trained else 10**6, train_steps=32, batch_size=32,
                                  buffer_size=4096, lr=1e-2)
        est = NeuralEstimator(hidden=(16,), device="cpu", seed=1, head_fit="xu", training=training)
        for _ in range(64):
            obs = make_obs(B=16, seed=int(rng.integers(1 << 30)))
            a = np.zeros(16, dtype=np.int64)
            est.update(obs, a, obs.user_features[:, 0] ** 2)
        test = make_obs(B=256, seed=999)
        errors[trained] = float(np.mean((est.mean(test)[:, 0] - test.user_features[:, 0] ** 2) ** 2))
    assert errors[True] < 0.5 * errors[False], errors


def test_same_seed_same_numbers():
    a = NeuralUCB(seed=3, head_fit="xu", hidden=(8,), train_every=8, train_steps=2, device="cpu")
    b = NeuralUCB(seed=3, head_fit="xu", hidden=(8,), train_every=8, train_steps=2, device="cpu")
    for est in (a.estimator, b.estimator):
        feed(est, 6)
    obs = make_obs(seed=50)
    np.testing.assert_array_equal(a.estimator.mean_and_width(obs)[0], b.estimator.mean_and_width(obs)[0])


@pytest.mark.parametrize(
    "options,message",
    [
        ({"loss": "bce"}, "loss='bce'"),
        ({"uncertainty": "gradient_diag"}, "uncertainty='gradient_diag'"),
        ({"model": "multi_output", "model_options": {"n_items": 6}, "head": "per_item",
          "training": OnlineTraining(engine="numpy")}, "engine='numpy'"),
        ({"training": OnlineTraining(cuda_graph="on")}, "cuda_graph='on'"),
    ],
    ids=["bce", "gradient_diag", "numpy-engine", "cuda-graph"],
)
def test_settings_xu_cannot_train_are_refused_when_made(options, message):
    with pytest.raises(ValueError, match="head_fit='xu' needs .*" + message.replace("(", r"\(")):
        NeuralEstimator(**({"head_fit": "xu"} | options))


def test_an_unknown_head_fit_is_refused_and_states_do_not_cross():
    with pytest.raises(ValueError, match=r"head_fit must be one of \('refit', 'xu'\), got 'Xu'"):
        NeuralLinear(head_fit="Xu")
    refit = NeuralEstimator(hidden=(5,), device="cpu", seed=0, training=TRAINING)
    feed(refit, 3)
    with pytest.raises(ValueError, match=r"head_fit: 'refit' vs 'xu'"):
        NeuralEstimator(hidden=(5,), device="cpu", seed=0, training=TRAINING, head_fit="xu").load_state_dict(
            refit.state_dict()
        )
