"""The numpy training engine computes what torch autograd and the torch optimizers compute.

It exists for speed (benchmarks/space_bandits_wheel.py); what a user relies on is that each step is
the torch step: the same parameters after the same minibatches (to float32 rounding) for every
supported loss, optimizer, weight decay and clipping, exact resume, and a clear error where it
does not apply.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from banditrec.environments import make_vector_env
from banditrec.models import MultiOutputMLP, TwoTower
from banditrec.models.optim import make_optimizer
from banditrec.policies import make_policy
from banditrec.policies.checkpoint import load_policy, save_policy
from banditrec.policies.neural import NeuralEstimator, OnlineTraining
from banditrec.policies.numpy_training import NumpyMLPTrainer


def _data(n=2_000, du=3, n_items=7, seed=0):
    rng = np.random.default_rng(seed)
    user = rng.standard_normal((n, du)).astype(np.float32)
    ids = rng.integers(0, n_items, n)
    y = (rng.random(n) < 0.4).astype(np.float32)
    return user, ids, y


CASES = {
    "mse-rmsprop_tf-clip": ("mse", "rmsprop_tf", 0.05, 0.0, 0.5),
    "mse-rmsprop": ("mse", "rmsprop", 0.01, 0.0, None),
    "bce-adam-weight_decay": ("bce", "adam", 0.01, 0.01, None),
    "mse-sgd": ("mse", "sgd", 0.1, 0.0, None),
    "bce-rmsprop_tf-wd-clip": ("bce", "rmsprop_tf", 0.05, 0.001, 0.1),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
@pytest.mark.parametrize("hidden", [(16,), (16, 8)])
def test_numpy_steps_equal_torch_autograd(case, hidden):
    loss, optimizer, lr, wd, clip = case
    user, ids, y = _data()
    nets = [MultiOutputMLP(3, 0, hidden, n_items=7, seed=1) for _ in range(2)]
    opts = [make_optimizer(optimizer, net.parameters(), lr, wd) for net in nets]
    trainer = NumpyMLPTrainer(nets[1], loss, opts[1], clip)
    trainer.begin_round()
    loss_fn = torch.nn.functional.mse_loss if loss == "mse" else torch.nn.functional.binary_cross_entropy_with_logits
    rng = np.random.default_rng(2)
    for step in range(30):
        index = rng.integers(0, len(y), 64)
        u, i, t = torch.from_numpy(user[index]), torch.from_numpy(ids[index]), torch.from_numpy(y[index])
        out = nets[0](u, torch.zeros(64, 1, 0), i[:, None], torch.zeros(64, dtype=torch.int64))[:, 0]
        value = loss_fn(out, t)
        opts[0].zero_grad()
        value.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(nets[0].parameters(), clip)
        opts[0].step()
        numpy_loss = trainer.step(user[index], ids[index], y[index], lr)
        assert numpy_loss == pytest.approx(float(value.detach()), rel=1e-4, abs=1e-6)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # the optimizer state lives in the torch optimizer, so checkpoints carry it
    state = opts[1].state_dict()["state"]
    assert len(state) == len(list(nets[1].parameters()))


def test_numpy_engine_policy_matches_torch_engine_and_resumes_exactly(tmp_path):
    def policy(engine):
        return make_policy("NeuralLinear", seed=0, device="cpu", model="multi_output",
                           model_options={"n_items": 5}, head="per_item", hidden=(16,), train_every=20,
                           train_steps=10, batch_size=32, optimizer="rmsprop_tf", lr=0.05, step_decay=0.5,
                           max_grad_norm=5.0, engine=engine)

    env = make_vector_env("banditrec/Wheel-v0", num_envs=10, delta=0.5)
    env.reset(seed=0)
    obs = env.observation
    torch_p, numpy_p = policy("torch"), policy("numpy")
    for _ in range(30):  # both learn from the same decisions (the torch policy's)
        actions, _ = torch_p.act(obs)
        next_obs, rewards, _, _ = env.step_batch(actions)
        torch_p.update(obs, actions, rewards)
        numpy_p.update(obs, actions, rewards)
        obs = next_obs
    for a, b in zip(torch_p.estimator.mean_and_width(obs), numpy_p.estimator.mean_and_width(obs)):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)

    save_policy(numpy_p, tmp_path / "p.pt")
    resumed = load_policy(policy("numpy"), tmp_path / "p.pt")
    for step in range(6):
        a1, p1 = numpy_p.act(obs)
        a2, p2 = resumed.act(obs)
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(p1, p2)
        next_obs, rewards, _, _ = env.step_batch(a1)
        numpy_p.update(obs, a1, rewards)
        resumed.update(obs, a1, rewards)
        obs = next_obs


def test_numpy_engine_errors_are_clear():
    with pytest.raises(ValueError, match="engine must be one of"):
        OnlineTraining(engine="jax")
    # A built-in model it cannot train is refused when the estimator is made, not at the first batch.
    with pytest.raises(ValueError, match="engine='numpy' trains model='multi_output' only, got model='mlp'"):
        NeuralEstimator(model="mlp", device="cpu", training=OnlineTraining(engine="numpy"))
    env = make_vector_env("banditrec/Linear-v0", num_envs=2)
    env.reset(seed=0)
    obs = env.observation
    # A module is checked when the estimator is built from the first batch.
    tower = TwoTower(obs.user_features.shape[1], obs.item_features.shape[2], (8,))
    with pytest.raises(ValueError, match="engine='numpy' cannot train this estimator: it trains model='multi_output'"):
        NeuralEstimator(model=tower, device="cpu", training=OnlineTraining(engine="numpy")).mean(obs)


def test_numpy_engine_refuses_a_subclass_that_changes_the_forward_pass():
    # The engine computes MultiOutputMLP's own forward pass in numpy; it used to train a subclass
    # that rescales its embedding as if it did not (no error, wrong weights).
    class Scaled(MultiOutputMLP):
        def embed(self, *inputs):
            return 2.0 * super().embed(*inputs)

    scaled = Scaled(3, 0, (4,), n_items=2)
    with pytest.raises(ValueError, match="engine='numpy' cannot train this estimator: .*Scaled overrides embed"):
        NumpyMLPTrainer(scaled, "mse", make_optimizer("sgd", scaled.parameters(), 0.1), None)
