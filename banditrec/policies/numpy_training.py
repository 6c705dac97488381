"""Online training of a small one-output-per-item MLP written out in numpy, for the CPU.

Why: at the sizes of the classic neural bandit benchmarks (Riquelme et al.'s wheel: a 2 → 50 → 5
network, minibatches of 512, two gradient steps per decision) a torch training step on the CPU
costs about 0.6 ms, nearly all of it per-operation overhead and MKL's slow products of skinny
matrices; the same forward pass, backward pass and optimizer update in numpy (OpenBLAS) cost
about 0.13 ms. Training is most of such a run's time, so this engine makes the whole run several
times faster.

It updates the torch module's parameters and the torch optimizer's state *in place* through numpy
views of the same memory, so acting, checkpoints and resuming are unchanged. It computes what
torch computes (same loss, gradients, clipping and optimizer arithmetic, checked against autograd
by the tests) in a different order of floating-point operations: each step agrees to rounding,
not bit for bit, which is why it is opt-in (``OnlineTraining.engine="numpy"``). Training at a
large learning rate is chaotic — rounding differences grow to visible ones within a few
retrainings — so two engines give different runs of the same distribution at best; on the
80,000-context wheel at δ = 0.5 the numpy engine's mean regret was higher than the torch
engine's (20 and 14 seeds, p = 0.04; experiments/wheel/README.md), a gap not seen at 20,000
contexts and not explained.

Supported: :class:`~banditrec.models.MultiOutputMLP` on the CPU, losses "mse" and "bce",
optimizers "sgd", "adam", "rmsprop" and "rmsprop_tf" (with weight decay and gradient clipping).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from banditrec.models.multi_output import MultiOutputMLP
from banditrec.models.optim import TFRMSprop

__all__ = ["NumpyMLPTrainer"]

_DENSE_OUTPUTS = 256  # up to this many outputs the output layer's gradient is one dense product


class NumpyMLPTrainer:
    """Minibatch steps for a :class:`MultiOutputMLP` whose body is Linear/ReLU layers."""

    def __init__(self, model: nn.Module, loss: str, optimizer: torch.optim.Optimizer,
                 max_grad_norm: float | None) -> None:
        problem = self.unsupported(model, loss, optimizer)
        if problem:
            raise ValueError(f"engine='numpy' cannot train this estimator: {problem}; use engine='torch'")
        self.model, self.loss, self.optimizer, self.max_grad_norm = model, loss, optimizer, max_grad_norm
        self.linears = [m for m in model.body if isinstance(m, nn.Linear)] + [model.out]
        self.params = [p for layer in self.linears for p in (layer.weight, layer.bias)]

    @staticmethod
    def unsupported(model: nn.Module, loss: str, optimizer: torch.optim.Optimizer) -> str | None:
        """Why this combination cannot run on the numpy engine, or None when it can."""
        if not isinstance(model, MultiOutputMLP):
            return f"it trains model='multi_output' (MultiOutputMLP) only, got {type(model).__name__}"
        layers = list(model.body)
        if not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in layers) or not all(
            isinstance(a, nn.Linear) and isinstance(b, nn.ReLU) for a, b in zip(layers[::2], layers[1::2])
        ):
            return "the network's body must be Linear/ReLU pairs"
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
            return "the network must be float32 on the CPU"
        if loss not in ("mse", "bce"):
            return f"loss must be 'mse' or 'bce', got {loss!r}"
        if type(optimizer) not in (torch.optim.SGD, torch.optim.Adam, torch.optim.RMSprop, TFRMSprop):
            return f"optimizer {type(optimizer).__name__} is not one of sgd, adam, rmsprop, rmsprop_tf"
        group = optimizer.param_groups[0]
        if any(group.get(k) for k in ("momentum", "nesterov", "centered", "amsgrad", "maximize")):
            return "momentum, nesterov, centered, amsgrad and maximize are not supported"
        return None

    def begin_round(self) -> None:
        """Take numpy views of the parameters and optimizer state for a round of steps (they are
        re-taken every round: loading a checkpoint replaces the tensors)."""
        self._views = (
            [layer.weight.detach().numpy() for layer in self.linears],
            [layer.bias.detach().numpy() for layer in self.linears],
        )
        self._values = [p.detach().numpy() for p in self.params]

    # ------------------------------------------------------------------ one step
    def step(self, user: np.ndarray, item_ids: np.ndarray, target: np.ndarray, lr: float) -> float:
        """One minibatch step on rows ``user`` (n, d_u), ``item_ids`` (n,), ``target`` (n,) at
        learning rate ``lr``; returns the loss before the step."""
        weights, biases = self._views
        n = user.shape[0]
        acts = [user]
        a = user
        for W, b in zip(weights[:-1], biases[:-1]):
            z = a @ W.T
            z += b
            a = np.maximum(z, 0.0, out=z)
            acts.append(a)
        w_out = weights[-1][item_ids]  # (n, h): only the chosen outputs matter
        s = np.einsum("nh,nh->n", a, w_out) + biases[-1][item_ids]
        if self.loss == "mse":
            r = s - target
            loss = float(r @ r) / n
            g = (2.0 / n) * r
        else:
            loss = float(np.mean(np.logaddexp(0.0, s) - target * s))
            g = (1.0 / (1.0 + np.exp(-s)) - target) / n
        g = g.astype(np.float32, copy=False)
        # Output layer: rows item_ids of W_out and b_out.
        n_out = weights[-1].shape[0]
        if n_out <= _DENSE_OUTPUTS:
            G = np.zeros((n, n_out), dtype=np.float32)
            G[np.arange(n), item_ids] = g
            grads_w = [G.T @ a]
            grads_b = [G.sum(axis=0)]
        else:
            grads_w = [np.zeros_like(weights[-1])]
            grads_b = [np.zeros_like(biases[-1])]
            np.add.at(grads_w[0], item_ids, g[:, None] * a)
            np.add.at(grads_b[0], item_ids, g)
        grad_a = g[:, None] * w_out
        for layer in range(len(weights) - 2, -1, -1):
            grad_z = grad_a * (acts[layer + 1] > 0)
            grads_w.append(grad_z.T @ acts[layer])
            grads_b.append(grad_z.sum(axis=0))
            if layer:
                grad_a = grad_z @ weights[layer]
        grads_w.reverse()
        grads_b.reverse()
        grads = [x for pair in zip(grads_w, grads_b) for x in pair]
        if self.max_grad_norm is not None:
            total = math.sqrt(sum(float(np.vdot(x, x)) for x in grads))
            coef = self.max_grad_norm / (total + 1e-6)
            if coef < 1.0:
                for x in grads:
                    x *= coef
        self._apply(grads, lr)
        return loss

    # ------------------------------------------------------------------ the optimizers
    def _apply(self, grads: list[np.ndarray], lr: float) -> None:
        opt, group = self.optimizer, self.optimizer.param_groups[0]
        wd = group.get("weight_decay", 0.0)
        for p, value, grad in zip(self.params, self._values, grads):
            if wd:
                grad = grad + wd * value
            state = opt.state[p]
            if isinstance(opt, torch.optim.SGD):
                value -= lr * grad
            elif isinstance(opt, TFRMSprop):
                if not state:
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                sq = state["square_avg"].numpy()
                decay = group["decay"]
                sq *= decay
                sq += (1.0 - decay) * grad * grad
                value -= lr * grad / np.sqrt(sq + group["eps"])
            elif isinstance(opt, torch.optim.RMSprop):
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                sq = state["square_avg"].numpy()
                alpha = group["alpha"]
                sq *= alpha
                sq += (1.0 - alpha) * grad * grad
                value -= lr * grad / (np.sqrt(sq) + group["eps"])
            else:  # Adam
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                beta1, beta2 = group["betas"]
                m, v = state["exp_avg"].numpy(), state["exp_avg_sq"].numpy()
                m *= beta1
                m += (1.0 - beta1) * grad
                v *= beta2
                v += (1.0 - beta2) * grad * grad
                step_size = lr / (1.0 - beta1**t)
                denom = np.sqrt(v) / math.sqrt(1.0 - beta2**t) + group["eps"]
                value -= step_size * m / denom
