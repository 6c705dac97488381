"""Training rounds replayed from a CUDA graph (``OnlineTraining.cuda_graph``).

On the CPU: the option's validation, the shared step body, and the tensor learning rate the graphs
need. On CUDA (skipped without one): graphed rounds train the same network as eager rounds, their
checkpoints move to the CPU and back, and a model that cannot be captured falls back or fails
clearly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from banditrec.environments import Observation
from banditrec.models.optim import TFRMSprop, make_optimizer
from banditrec.policies import make_policy
from banditrec.policies.checkpoint import load_policy, save_policy
from banditrec.policies.neural import NeuralEstimator, OnlineTraining

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def make_obs(B=16, K=4, seed=0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        rng.standard_normal((B, 3)),
        rng.standard_normal((B, K, 2)),
        rng.integers(0, 6, (B, K)),
        np.ones((B, K), dtype=bool),
        rng.integers(0, 7, B),
    )


def feed(est: NeuralEstimator, steps: int = 12) -> NeuralEstimator:
    for step in range(steps):
        obs = make_obs(seed=step)
        actions = np.arange(16) % 4
        rewards = obs.user_features[:, 0] + np.random.default_rng(step).normal(0, 0.1, 16)
        est.update(obs, actions, rewards)
    return est


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cuda_graph": "yes"}, "cuda_graph must be"),
        ({"cuda_graph": "on", "optimizer": "sgd"}, "cuda_graph='on' needs"),
        ({"cuda_graph": "on", "engine": "numpy"}, "cuda_graph='on' needs"),
    ],
)
def test_bad_cuda_graph_settings_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        OnlineTraining(**options)


def test_cuda_graph_on_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        NeuralEstimator(device="cpu", training=OnlineTraining(cuda_graph="on"))


def test_graphs_are_used_only_on_cuda_with_a_capturable_optimizer():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert OnlineTraining().graphed_on(cuda)
    assert OnlineTraining(optimizer="rmsprop_tf").graphed_on(cuda)
    assert not OnlineTraining().graphed_on(cpu)
    assert not OnlineTraining(optimizer="sgd").graphed_on(cuda)
    assert not OnlineTraining(cuda_graph="off").graphed_on(cuda)
    est = feed(NeuralEstimator(hidden=(8,), device="cpu", seed=0,
                               training=OnlineTraining(train_every=32, train_steps=4, batch_size=8)))
    assert est.n_rounds_ == 6 and est.graph_rounds_ is None


def test_round_learning_rates_follow_the_schedule():
    cfg = OnlineTraining(lr=0.1, lr_decay=1.0, step_decay=0.5, train_steps=3)
    assert cfg.round_lrs(0) == [0.1, 0.1 / 1.5, 0.1 / 2.0]
    assert cfg.round_lrs(1) == [0.05, 0.05 / 1.5, 0.05 / 2.0]
    assert OnlineTraining(lr=0.01, train_steps=2).round_lrs(5) == [0.01, 0.01]


def test_cuda_graph_setting_does_not_block_loading_a_state(tmp_path):
    """How steps run is not a hyperparameter: a state saved with graphs off loads with them on auto."""
    kwargs = {"hidden": (8,), "device": "cpu", "seed": 0}
    saved = feed(NeuralEstimator(**kwargs, training=OnlineTraining(train_every=32, train_steps=4,
                                                                  batch_size=8, cuda_graph="off")))
    fresh = NeuralEstimator(**kwargs, training=OnlineTraining(train_every=32, train_steps=4, batch_size=8))
    fresh.load_state_dict(saved.state_dict())
    obs = make_obs(seed=99)
    np.testing.assert_array_equal(fresh.mean(obs), saved.mean(obs))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_tf_rmsprop_takes_a_tensor_learning_rate(weight_decay):
    """What a captured graph replays: the same update with lr read from a tensor."""
    torch.manual_seed(0)
    start = [torch.randn(4, 3), torch.randn(3)]
    results = []
    for lr in (0.05, torch.tensor(0.05)):
        params = [nn.Parameter(p.clone()) for p in start]
        opt = TFRMSprop(params, lr=0.05, weight_decay=weight_decay)
        for step in range(5):
            for group in opt.param_groups:
                group["lr"] = lr
            for p in params:
                p.grad = torch.full_like(p, 0.1 * (step + 1)) + p.detach()
            opt.step()
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_make_optimizer_builds_capturable_adam_and_rmsprop_only():
    params = [nn.Parameter(torch.zeros(2))]
    assert make_optimizer("adam", params, 0.1, capturable=True).defaults["capturable"]
    assert make_optimizer("rmsprop", params, 0.1, capturable=True).defaults["capturable"]
    assert "capturable" not in make_optimizer("sgd", params, 0.1, capturable=True).defaults
    assert not make_optimizer("adam", params, 0.1).defaults["capturable"]


# ------------------------------------------------------------------------------------------ CUDA
@needs_cuda
@pytest.mark.parametrize("optimizer, step_decay", [("adam", 0.0), ("rmsprop_tf", 0.5), ("rmsprop", 0.0)])
def test_graphed_rounds_train_the_same_network_as_eager_rounds(optimizer, step_decay):
    nets = {}
    for mode in ("off", "on"):
        training = OnlineTraining(train_every=32, train_steps=4, batch_size=8, optimizer=optimizer,
                                  lr=0.01, step_decay=step_decay, max_grad_norm=5.0, cuda_graph=mode)
        est = feed(NeuralEstimator(hidden=(8,), device="cuda", seed=0, training=training), steps=20)
        assert est.n_rounds_ == 10
        assert (est.graph_rounds_ is not None and est.graph_rounds_.graph is not None) == (mode == "on")
        nets[mode] = est
    for (name, a), (_, b) in zip(nets["off"].model_.state_dict().items(), nets["on"].model_.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    obs = make_obs(seed=50)
    np.testing.assert_allclose(nets["on"].mean(obs), nets["off"].mean(obs), rtol=1e-4, atol=1e-5)


@needs_cuda
def test_graphed_training_checkpoints_move_between_cuda_and_cpu(tmp_path):
    kw = {"seed": 0, "hidden": (16,), "train_every": 32, "train_steps": 4, "batch_size": 16}
    gpu = make_policy("NeuralLinear", device="cuda", **kw)
    obs = make_obs(seed=0)
    for step in range(8):
        obs = make_obs(seed=step)
        actions, _ = gpu.act(obs)
        gpu.update(obs, actions, obs.user_features[:, 0])
    assert gpu.estimator.graph_rounds_.graph is not None
    save_policy(gpu, tmp_path / "g.pt")
    cpu = load_policy(make_policy("NeuralLinear", device="cpu", **kw), tmp_path / "g.pt")
    np.testing.assert_allclose(cpu.estimator.mean(obs), gpu.estimator.mean(obs), rtol=1e-4, atol=1e-5)
    save_policy(cpu, tmp_path / "c.pt")
    back = load_policy(make_policy("NeuralLinear", device="cuda", **kw), tmp_path / "c.pt")
    for step in range(8, 12):  # continues training on the device from the CPU's optimizer state
        obs = make_obs(seed=step)
        actions, _ = back.act(obs)
        back.update(obs, actions, obs.user_features[:, 0])
    assert back.estimator.n_rounds_ > cpu.estimator.n_rounds_


class _HostReadingMLP(nn.Module):
    """A model whose forward pass reads a value on the host: it cannot be captured."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(5, 1)

    def forward(self, user, items, item_ids, user_ids):
        if float(user.abs().max()) > 1e6:  # a host read
            raise ValueError("huge input")
        x = torch.cat([user[:, None, :].expand(-1, items.shape[1], -1), items], dim=-1)
        return self.net(x)[..., 0]


@needs_cuda
def test_a_model_that_cannot_be_captured_falls_back_on_auto_and_fails_clearly_on_on():
    training = OnlineTraining(train_every=32, train_steps=4, batch_size=8)
    est = NeuralEstimator(model=_HostReadingMLP(), uncertainty="none", device="cuda", seed=0, training=training)
    with pytest.warns(RuntimeWarning, match="not captured"):
        feed(est)
    assert est.graph_rounds_.failed and est.n_rounds_ == 6
    strict = NeuralEstimator(model=_HostReadingMLP(), uncertainty="none", device="cuda", seed=0,
                             training=OnlineTraining(train_every=32, train_steps=4, batch_size=8, cuda_graph="on"))
    with pytest.raises(RuntimeError, match="could not capture"):
        feed(strict)


@needs_cuda
def test_a_deep_copy_trains_its_own_network():
    """What off-policy evaluation does with a target policy: the copy captures its own graph."""
    import copy

    training = OnlineTraining(train_every=32, train_steps=4, batch_size=8)
    est = feed(NeuralEstimator(hidden=(8,), device="cuda", seed=0, training=training))
    assert est.graph_rounds_.graph is not None
    before = {k: v.clone() for k, v in est.model_.state_dict().items()}
    twin = copy.deepcopy(est)
    feed(twin, steps=8)
    assert twin.graph_rounds_.graph is not None and twin.graph_rounds_ is not est.graph_rounds_
    for k, v in est.model_.state_dict().items():
        torch.testing.assert_close(v, before[k])  # the original did not move
    assert any(not torch.equal(v, before[k]) for k, v in twin.model_.state_dict().items())
