"""Optimizers for online training, by name.

``"rmsprop_tf"`` exists to reproduce results published with TensorFlow 1 (Riquelme et al. 2018's
bandit showdown trains with ``tf.train.RMSPropOptimizer``). It differs from ``torch.optim.RMSprop``
in three ways that matter for short retrainings at a large learning rate:

* the squared-gradient average starts at **1**, not 0, so the first steps are about ``lr · g``
  rather than ``lr · sign(g)`` (PyTorch's first step moves every weight by ``lr / √(1 − α)`` = 10 lr);
* its decay is 0.9 (PyTorch: α = 0.99);
* epsilon (1e-10) goes inside the square root.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from banditrec._util import check_real

__all__ = ["OPTIMIZERS", "TFRMSprop", "make_optimizer"]

OPTIMIZERS = ("adam", "rmsprop", "rmsprop_tf", "sgd")


def _check_lr(lr) -> None:
    """``lr`` > 0 and finite, as a number or (what a captured CUDA graph reads) a one-element tensor.

    torch's optimizers check ``lr >= 0`` only (SGD not even nan): an infinite lr turned the weights
    to ±inf and nan at the first step, and 0 trains nothing."""
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            raise ValueError(f"lr as a tensor must have one element, got shape {tuple(lr.shape)}")
        value = float(lr)
    else:
        value = check_real("lr", lr)
    if not 0 < value < math.inf:
        raise ValueError(f"lr must be > 0 and finite, got {lr!r}")


def _check_non_negative(name: str, value) -> None:
    if not 0 <= check_real(name, value) < math.inf:
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1's ``RMSPropOptimizer`` (no momentum, not centered)::

        ms ← decay · ms + (1 − decay) · g²        (ms starts at 1)
        θ  ← θ − lr · g / √(ms + eps)

    ``weight_decay`` adds ``weight_decay · θ`` to g first, as the torch optimizers do. The learning
    rate may be a one-element tensor on the parameters' device (what a captured CUDA graph needs).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, decay: float = 0.9, eps: float = 1e-10,
                 weight_decay: float = 0.0) -> None:
        _check_lr(lr)
        if not 0.0 <= check_real("decay", decay) < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        _check_non_negative("eps", eps)  # inf silently made every step 0
        _check_non_negative("weight_decay", weight_decay)
        super().__init__(params, {"lr": lr, "decay": decay, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            squares = []
            for p in params:
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                squares.append(state["square_avg"])
            torch._foreach_mul_(squares, group["decay"])
            torch._foreach_addcmul_(squares, grads, grads, value=1.0 - group["decay"])
            denom = torch._foreach_add(squares, group["eps"])
            torch._foreach_sqrt_(denom)
            lr = group["lr"]
            if isinstance(lr, torch.Tensor):  # read on the device, so a CUDA graph can replay it
                torch._foreach_div_(denom, -lr)
                torch._foreach_addcdiv_(params, grads, denom)
            else:
                torch._foreach_addcdiv_(params, grads, denom, value=-lr)
        return loss


def make_optimizer(name: str, params: Iterable, lr: float, weight_decay: float = 0.0,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (one of :data:`OPTIMIZERS`) over ``params``.

    ``capturable=True`` builds Adam and RMSprop so that their steps can be captured in a CUDA graph
    (step counts on the device, a tensor learning rate allowed); the other two need nothing.
    ``lr`` must be > 0 and finite and ``weight_decay`` >= 0 and finite, whichever the optimizer."""
    if not (isinstance(name, str) and name in OPTIMIZERS):
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    _check_lr(lr)
    _check_non_negative("weight_decay", weight_decay)
    if name == "rmsprop_tf":
        return TFRMSprop(params, lr=lr, weight_decay=weight_decay)
    classes = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}
    extra = {"capturable": True} if capturable and name != "sgd" else {}
    return classes[name](params, lr=lr, weight_decay=weight_decay, **extra)
