"""The optimizers online training can use by name, TensorFlow 1's RMSProp above all: reproducing a
TF1 result (Riquelme et al.'s wheel) depends on its exact arithmetic, not PyTorch's RMSprop."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from banditrec.models.optim import OPTIMIZERS, TFRMSprop, make_optimizer
from banditrec.policies.neural import OnlineTraining


def _tf1_reference(theta0, grads_of, lr, steps, decay=0.9, eps=1e-10):
    """tf.train.RMSPropOptimizer's update, written out in numpy (its 'rms' slot starts at ones)."""
    theta, ms = theta0.astype(np.float64).copy(), np.ones_like(theta0, dtype=np.float64)
    for _ in range(steps):
        g = grads_of(theta)
        ms = decay * ms + (1 - decay) * g * g
        theta = theta - lr * g / np.sqrt(ms + eps)
    return theta


def test_tf_rmsprop_matches_the_tf1_update():
    target = np.array([3.0, -2.0, 0.5])
    theta0 = np.array([0.0, 1.0, -1.0])
    param = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    opt = TFRMSprop([param], lr=0.1)
    for _ in range(25):
        opt.zero_grad()
        ((param - torch.as_tensor(target)) ** 2).sum().backward()
        opt.step()
    expected = _tf1_reference(theta0, lambda t: 2 * (t - target), lr=0.1, steps=25)
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-12)


def test_tf_rmsprop_first_step_is_gradient_sized_not_sign_sized():
    """The visible difference from torch.optim.RMSprop: a small gradient makes a small first step."""
    steps = {}
    for name in ("rmsprop", "rmsprop_tf"):
        param = torch.zeros(1, requires_grad=True)
        opt = make_optimizer(name, [param], lr=0.1)
        param.grad = torch.tensor([0.01])
        opt.step()
        steps[name] = abs(float(param.detach()))
    assert steps["rmsprop_tf"] == pytest.approx(0.1 * 0.01 / np.sqrt(0.9 + 0.1 * 1e-4), rel=1e-6)
    assert steps["rmsprop"] > 50 * steps["rmsprop_tf"]  # torch: lr / sqrt(1 - 0.99) = 1.0


def test_tf_rmsprop_state_round_trips():
    param = torch.nn.Parameter(torch.randn(4))
    opt = TFRMSprop([param], lr=0.05)
    param.grad = torch.ones(4)
    opt.step()
    clone = TFRMSprop([param], lr=0.05)
    clone.load_state_dict(opt.state_dict())
    torch.testing.assert_close(clone.state[param]["square_avg"], opt.state[param]["square_avg"])


def test_bad_optimizer_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("adagrad", [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="decay must be in"):
        TFRMSprop([torch.nn.Parameter(torch.zeros(1))], decay=1.0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        OnlineTraining(optimizer="adagrad")
    with pytest.raises(ValueError, match="max_grad_norm must be > 0 or None"):
        OnlineTraining(max_grad_norm=0.0)
    assert "rmsprop_tf" in OPTIMIZERS


def test_max_grad_norm_refuses_a_bool_and_takes_numpy_numbers():
    # True was taken as 1.0: every step clipped at norm 1, silently; np.float32(1.0) was refused
    # with "must be > 0 or None, got 1.0"
    with pytest.raises(ValueError, match="max_grad_norm must be > 0 or None .*, got True"):
        OnlineTraining(max_grad_norm=True)
    assert OnlineTraining(max_grad_norm=np.float32(2.0)).max_grad_norm == 2.0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # lr=inf and eps=inf were accepted: the first step wrote ±inf / nan into the weights, or
        # moved nothing; OnlineTraining refused them, a TFRMSprop made directly did not
        ({"lr": float("inf")}, ValueError, r"^lr must be > 0 and finite, got inf$"),
        ({"lr": float("nan")}, ValueError, r"^lr must be > 0 and finite, got nan$"),
        ({"lr": 0.0}, ValueError, r"^lr must be > 0 and finite, got 0.0$"),
        ({"lr": True}, TypeError, r"^lr must be a number, got True$"),
        ({"lr": "0.1"}, TypeError, r"^lr must be a number, got '0.1'$"),
        ({"lr": torch.tensor([0.1, 0.2])}, ValueError, r"^lr as a tensor must have one element, got shape \(2,\)$"),
        ({"lr": torch.tensor(float("inf"))}, ValueError, r"^lr must be > 0 and finite, got tensor\(inf\)$"),
        ({"eps": float("inf")}, ValueError, r"^eps must be >= 0 and finite, got inf$"),
        ({"eps": -1e-10}, ValueError, r"^eps must be >= 0 and finite, got -1e-10$"),
        ({"weight_decay": float("inf")}, ValueError, r"^weight_decay must be >= 0 and finite, got inf$"),
        ({"weight_decay": float("nan")}, ValueError, r"^weight_decay must be >= 0 and finite, got nan$"),
        ({"decay": False}, TypeError, r"^decay must be a number, got False$"),
        ({"decay": float("nan")}, ValueError, r"^decay must be in \[0, 1\), got nan$"),
    ],
)
def test_tf_rmsprop_refuses_bad_hyperparameters_when_made(kwargs, error, message):
    with pytest.raises(error, match=message):
        TFRMSprop([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_tf_rmsprop_still_takes_a_one_element_tensor_lr_and_numpy_numbers():
    param = torch.nn.Parameter(torch.zeros(1))
    TFRMSprop([param], lr=torch.tensor([0.1]), decay=np.float32(0.9), eps=np.float64(1e-10), weight_decay=0)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # torch's Adam, RMSprop and SGD accepted lr=inf (SGD even nan) and weight_decay=inf
        ({"lr": float("inf")}, r"^lr must be > 0 and finite, got inf$"),
        ({"lr": float("nan")}, r"^lr must be > 0 and finite, got nan$"),
        ({"lr": 0.1, "weight_decay": float("inf")}, r"^weight_decay must be >= 0 and finite, got inf$"),
        ({"lr": 0.1, "weight_decay": float("nan")}, r"^weight_decay must be >= 0 and finite, got nan$"),
    ],
)
def test_make_optimizer_refuses_non_finite_numbers_whichever_the_optimizer(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], **kwargs)


@pytest.mark.parametrize("name", ["adagrad", "", None, ["adam"]])
def test_make_optimizer_names_an_unknown_optimizer(name):
    # a list was a TypeError from the name lookup ("unhashable type: 'list'")
    with pytest.raises(ValueError, match=rf"^optimizer must be one of {re.escape(str(OPTIMIZERS))}, got {re.escape(repr(name))}$"):
        make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
