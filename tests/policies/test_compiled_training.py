"""The numba training engine computes what torch autograd, the torch optimizers and the model's
forward pass compute.

It exists for speed (benchmarks/space_bandits_wheel.py); what a user relies on is that each round
is the torch round (the same parameters after the same minibatches, to float32 rounding, for every
supported loss, optimizer, weight decay, clipping and depth), that its decisions use the network's
own last hidden layer, exact resume, the same numbers twice, and a clear error where it does not
apply.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from banditrec.environments import make_vector_env
from banditrec.models import MultiOutputMLP, TwoTower
from banditrec.models.optim import make_optimizer
from banditrec.policies import compiled_training, make_policy
from banditrec.policies.checkpoint import load_policy, save_policy
from banditrec.policies.compiled_training import CompiledMLPTrainer
from banditrec.policies.neural import NeuralEstimator, OnlineTraining

pytestmark = pytest.mark.skipif(not compiled_training.AVAILABLE, reason="numba is not importable")

CASES = {
    "mse-rmsprop_tf-clip": ("mse", "rmsprop_tf", 0.05, 0.0, 0.5),
    "mse-rmsprop": ("mse", "rmsprop", 0.01, 0.0, None),
    "bce-adam-weight_decay": ("bce", "adam", 0.01, 0.01, None),
    "mse-sgd": ("mse", "sgd", 0.1, 0.0, None),
    "bce-rmsprop_tf-wd-clip": ("bce", "rmsprop_tf", 0.05, 0.001, 0.1),
    "mse-adam-clip": ("mse", "adam", 0.01, 0.0, 1.0),
}


def _data(n=2_000, du=3, n_items=7, seed=0):
    rng = np.random.default_rng(seed)
    user = rng.standard_normal((n, du)).astype(np.float32)
    ids = rng.integers(0, n_items, n)
    y = (rng.random(n) < 0.4).astype(np.float32)
    return user, ids, y


def _torch_round(net, opt, loss, clip, user, ids, y, indices, lrs):
    """The reference: one autograd step per minibatch, as the torch engine runs a round."""
    loss_fn = torch.nn.functional.mse_loss if loss == "mse" else torch.nn.functional.binary_cross_entropy_with_logits
    losses = []
    for index, lr in zip(indices, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        u, i, t = torch.from_numpy(user[index]), torch.from_numpy(ids[index]), torch.from_numpy(y[index])
        out = net(u, torch.zeros(len(index), 1, 0), i[:, None], torch.zeros(len(index), dtype=torch.int64))[:, 0]
        value = loss_fn(out, t)
        opt.zero_grad()
        value.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        losses.append(float(value.detach()))
    return np.array(losses)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
@pytest.mark.parametrize(("inputs", "hidden"), [(3, (16,)), (3, (16, 8)), (3, (12, 9, 5)), (40, (48, 36))],
                         ids=["3-16", "3-16-8", "3-12-9-5", "40-48-36 (BLAS layers)"])
def test_compiled_rounds_equal_torch_autograd(case, inputs, hidden):
    """Layers with fewer than BLAS_MIN_WIDTH inputs run the loop over rows, wider ones BLAS."""
    loss, optimizer, lr, wd, clip = case
    user, ids, y = _data(du=inputs)
    nets = [MultiOutputMLP(inputs, 0, hidden, n_items=7, seed=1) for _ in range(2)]
    opts = [make_optimizer(optimizer, net.parameters(), lr, wd) for net in nets]
    trainer = CompiledMLPTrainer(nets[1], loss, opts[1], clip)
    rng = np.random.default_rng(2)
    for _ in range(2):  # two rounds: the optimizer state carries over between them
        indices = rng.integers(0, len(y), (15, 64))
        lrs = [lr / (1 + 0.5 * s) for s in range(15)]
        expected = _torch_round(nets[0], opts[0], loss, clip, user, ids, y, indices, lrs)
        np.testing.assert_allclose(trainer.round(user, ids, y, indices, lrs), expected, rtol=1e-4, atol=1e-6)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # the optimizer state lives in the torch optimizer (checkpoints carry it), and matches torch's
    ref = opts[0].state_dict()["state"]
    own = {key: value for key, value in opts[1].state_dict()["state"].items() if value}  # SGD: empty entries
    assert ref.keys() == own.keys()
    for key in ref:
        assert ref[key].keys() == own[key].keys()
        for name in ref[key]:
            torch.testing.assert_close(own[key][name], ref[key][name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("inputs", "hidden"), [(3, (50,)), (3, (16, 8)), (40, (48, 36))])
def test_compiled_embedding_is_the_models_last_hidden_layer(inputs, hidden):
    net = MultiOutputMLP(inputs, 0, hidden, n_items=5, seed=3)
    trainer = CompiledMLPTrainer(net, "mse", make_optimizer("sgd", net.parameters(), 0.1), None)
    x = np.random.default_rng(0).standard_normal((11, inputs))
    expected = net.embed(torch.from_numpy(x).float(), None, torch.zeros(11, 1, dtype=torch.int64), None)[:, 0]
    np.testing.assert_allclose(trainer.embed(x), expected.detach().numpy(), rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # it reads the module's current weights, e.g. after a checkpoint load
        net.body[0].weight.mul_(2.0)
    expected = net.embed(torch.from_numpy(x).float(), None, torch.zeros(11, 1, dtype=torch.int64), None)[:, 0]
    np.testing.assert_allclose(trainer.embed(x), expected.detach().numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=rf"user features must have shape \(B, {inputs}\)"):
        trainer.embed(np.zeros((2, inputs + 1)))


def _wheel_policy(engine, **extra):
    options = {"seed": 0, "device": "cpu", "model": "multi_output", "model_options": {"n_items": 5},
               "head": "per_item", "hidden": (16,), "train_every": 20, "train_steps": 10, "batch_size": 32,
               "optimizer": "rmsprop_tf", "lr": 0.05, "step_decay": 0.5, "max_grad_norm": 5.0, "engine": engine}
    return make_policy("NeuralLinear", **{**options, **extra})


def _play(policy, steps=40, num_envs=10, seed=0):
    env = make_vector_env("banditrec/Wheel-v0", num_envs=num_envs, delta=0.5)
    env.reset(seed=seed)
    obs, actions_seen, regret = env.observation, [], 0.0
    for _ in range(steps):
        actions, _ = policy.act(obs)
        next_obs, rewards, _, info = env.step_batch(actions)
        policy.update(obs, actions, rewards)
        actions_seen.append(actions)
        regret += float(info["regret"].sum())
        obs = next_obs
    return np.concatenate(actions_seen), regret


def test_numba_engine_policy_matches_torch_engine_and_resumes_exactly(tmp_path):
    env = make_vector_env("banditrec/Wheel-v0", num_envs=10, delta=0.5)
    env.reset(seed=0)
    obs = env.observation
    torch_p, numba_p = _wheel_policy("torch"), _wheel_policy("numba")
    for _ in range(30):  # both learn from the same decisions (the torch policy's)
        actions, _ = torch_p.act(obs)
        next_obs, rewards, _, _ = env.step_batch(actions)
        torch_p.update(obs, actions, rewards)
        numba_p.update(obs, actions, rewards)
        obs = next_obs
    for a, b in zip(torch_p.estimator.mean_and_width(obs), numba_p.estimator.mean_and_width(obs)):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)

    save_policy(numba_p, tmp_path / "p.pt")
    resumed = load_policy(_wheel_policy("numba"), tmp_path / "p.pt")
    for _ in range(6):  # includes a training round: the loaded optimizer state and weights are used
        a1, p1 = numba_p.act(obs)
        a2, p2 = resumed.act(obs)
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(p1, p2)
        next_obs, rewards, _, _ = env.step_batch(a1)
        numba_p.update(obs, a1, rewards)
        resumed.update(obs, a1, rewards)
        obs = next_obs


def test_numba_engine_is_deterministic_and_learns():
    first, regret = _play(_wheel_policy("numba"), steps=60)
    second, again = _play(_wheel_policy("numba"), steps=60)
    np.testing.assert_array_equal(first, second)
    assert regret == again
    _, random_regret = _play(make_policy("Random", seed=0), steps=60)
    assert regret < 0.6 * random_regret


def test_numba_engine_one_decision_at_a_time_matches_torch_engine_to_rounding():
    # B = 1 on the host: decisions use the compiled forward pass. The torch engine and the numba
    # engine see the same contexts; their posteriors agree to rounding after retraining.
    world = make_vector_env("banditrec/Wheel-v0", num_envs=1, delta=0.7)
    world.reset(seed=1)
    policies = [_wheel_policy("torch", n_mc=20), _wheel_policy("numba", n_mc=20)]
    obs = world.observation
    for _ in range(45):
        actions, _ = policies[0].act(obs)
        next_obs, rewards, _, _ = world.step_batch(actions)
        for p in policies:
            p.update(obs, actions, rewards)
        obs = next_obs
    means = [p.estimator.mean(obs) for p in policies]
    np.testing.assert_allclose(means[1], means[0], rtol=1e-3, atol=1e-4)


def test_numba_engine_errors_are_clear(monkeypatch):
    with pytest.raises(ValueError, match=r"engine must be one of \('torch', 'numpy', 'numba'\)"):
        OnlineTraining(engine="jax")
    env = make_vector_env("banditrec/Linear-v0", num_envs=2)
    env.reset(seed=0)
    obs = env.observation
    with pytest.raises(ValueError, match="engine='numba' trains model='multi_output' only, got model='mlp'"):
        NeuralEstimator(model="mlp", device="cpu", training=OnlineTraining(engine="numba"))
    tower = TwoTower(obs.user_features.shape[1], obs.item_features.shape[2], (8,))
    with pytest.raises(ValueError, match="engine='numba' cannot train"):
        NeuralEstimator(model=tower, device="cpu", training=OnlineTraining(engine="numba")).mean(obs)
    class Scaled(MultiOutputMLP):  # the compiled forward pass would silently ignore this
        def embed(self, *inputs):
            return 2.0 * super().embed(*inputs)

    scaled = Scaled(3, 0, (4,), n_items=2)
    with pytest.raises(ValueError, match="Scaled overrides embed"):
        CompiledMLPTrainer(scaled, "mse", make_optimizer("sgd", scaled.parameters(), 0.1), None)
    monkeypatch.setattr(compiled_training, "AVAILABLE", False)
    net = MultiOutputMLP(3, 0, (4,), n_items=2)
    with pytest.raises(ValueError, match="engine='numba' needs numba"):
        CompiledMLPTrainer(net, "mse", make_optimizer("sgd", net.parameters(), 0.1), None)


def test_numba_engine_names_a_diverging_loss():
    policy = _wheel_policy("numba", lr=1e30, optimizer="sgd", max_grad_norm=None)
    with pytest.raises(FloatingPointError, match="training loss became"):
        _play(policy, steps=10)


@pytest.mark.parametrize("intercept", [True, False])
def test_numba_engine_refits_the_posterior_the_models_way(intercept):
    """The numba engine's refit (rows sorted by item, one product per item, no torch) gives the
    posterior the generic refit (model.embed, torch sums) gives, to rounding."""
    # (per item: a shared head on a multi-output network, the one the numba engine trains, is refused)
    policy = _wheel_policy("numba", intercept=intercept, train_every=1000, buffer_size=5000)
    _play(policy, steps=30, num_envs=20)  # 600 rows in the buffer
    est = policy.estimator
    est._refit_head()
    fast = {k: np.array(v, copy=True) for k, v in vars(est.head_.ridge).items() if k.endswith("_")}
    est._compiled_embedding = lambda obs=None: False
    est._refit_head()
    generic = vars(est.head_.ridge)
    assert fast.keys() and {k for k in generic if k.endswith("_")} == fast.keys()
    for key, value in fast.items():
        # The sums agree to float32 rounding of the embeddings (torch's products may fuse
        # multiply-adds); the inverse and θ amplify that by the conditioning, relative to their scale.
        scale = float(np.abs(generic[key]).max()) if key in ("A_inv_", "theta_") else 0.0
        np.testing.assert_allclose(value, generic[key], rtol=1e-5, atol=max(1e-8, 1e-5 * scale), err_msg=key)
    assert fast["count_"].sum() == 600


def test_numba_engine_trains_for_decisions_made_on_the_device():
    """decide_on="device" keeps decisions in torch (model.embed); the numba engine still trains."""
    first, regret = _play(_wheel_policy("numba", decide_on="device"), steps=40)
    second, again = _play(_wheel_policy("numba", decide_on="device"), steps=40)
    np.testing.assert_array_equal(first, second)
    _, random_regret = _play(make_policy("Random", seed=0), steps=40)
    assert regret == again and regret < 0.8 * random_regret
