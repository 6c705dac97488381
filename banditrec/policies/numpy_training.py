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

import functools
import math

import numpy as np
import torch
from torch import nn

from banditrec.models.multi_output import MultiOutputMLP
from banditrec.models.optim import TFRMSprop

__all__ = ["NumpyMLPTrainer"]

_DENSE_OUTPUTS = 256  # up to this many outputs the output layer's gradient is one dense product


# The optimizer state each supported optimizer keeps per parameter: per-element buffers with their
# initial value, and whether it counts steps (a float32 scalar per parameter, as torch keeps it).
_STATE = {
    torch.optim.SGD: ({}, False),
    TFRMSprop: ({"square_avg": 1.0}, False),
    torch.optim.RMSprop: ({"square_avg": 0.0}, True),
    torch.optim.Adam: ({"exp_avg": 0.0, "exp_avg_sq": 0.0}, True),
}


@functools.lru_cache(maxsize=16)
def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    """Read-only float32 zeros, one per minibatch shape: ReLU as ``np.maximum`` against a zeros
    array runs ~3x faster than against the scalar 0 (numpy vectorises only the array-array loop),
    with the same result."""
    zeros = np.zeros(shape, dtype=np.float32)
    zeros.flags.writeable = False
    return zeros


@functools.lru_cache(maxsize=16)
def _row_starts(n: int, width: int) -> np.ndarray:
    """Read-only flat offsets of the rows of an (n, width) array."""
    starts = np.arange(0, n * width, width)
    starts.flags.writeable = False
    return starts


class NumpyMLPTrainer:
    """Minibatch steps for a :class:`MultiOutputMLP` whose body is Linear/ReLU layers.

    The gradients of all parameters are written into one flat buffer, and the optimizer state of
    all parameters lives in one flat buffer per kind (the torch optimizer's state tensors are
    views of it), so clipping and the optimizer update take a few numpy operations per step rather
    than a few per parameter: at the wheel's sizes, where each operation costs more than its
    arithmetic, that per-parameter update was a sixth of a step. Element for element the
    arithmetic is the same.
    """

    def __init__(self, model: nn.Module, loss: str, optimizer: torch.optim.Optimizer,
                 max_grad_norm: float | None) -> None:
        problem = self.unsupported(model, loss, optimizer)
        if problem:
            raise ValueError(f"engine='numpy' cannot train this estimator: {problem}; use engine='torch'")
        self.model, self.loss, self.optimizer, self.max_grad_norm = model, loss, optimizer, max_grad_norm
        self.linears = [m for m in model.body if isinstance(m, nn.Linear)] + [model.out]
        self.params = [p for layer in self.linears for p in (layer.weight, layer.bias)]
        ends = np.cumsum([p.numel() for p in self.params]).tolist()
        self._slices = [slice(end - p.numel(), end) for p, end in zip(self.params, ends)]
        self._grad = np.zeros(ends[-1], dtype=np.float32)
        self._grads = [self._grad[sl].reshape(p.shape) for p, sl in zip(self.params, self._slices)]
        self._grads_w, self._grads_b = self._grads[0::2], self._grads[1::2]  # per layer, as self.linears
        self._state_buffers: dict[str, torch.Tensor] = {}
        self._delta = np.zeros_like(self._grad)  # each step's change of the parameters
        self._deltas = [self._delta[sl].reshape(p.shape) for p, sl in zip(self.params, self._slices)]

    @staticmethod
    def unsupported(model: nn.Module, loss: str, optimizer: torch.optim.Optimizer) -> str | None:
        """Why this combination cannot run on the numpy engine, or None when it can."""
        if not isinstance(model, MultiOutputMLP):
            return f"it trains model='multi_output' (MultiOutputMLP) only, got {type(model).__name__}"
        # The engine computes MultiOutputMLP's own forward pass: a subclass that changes it would
        # be trained as if it had not (silently wrong weights), so it is refused.
        overridden = [name for name in ("forward", "embed", "head")
                      if getattr(type(model), name) is not getattr(MultiOutputMLP, name)]
        if overridden:
            return (f"it computes MultiOutputMLP's own forward pass, and {type(model).__name__} "
                    f"overrides {', '.join(overridden)}")
        layers = list(model.body)
        if not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in layers) or not all(
            isinstance(a, nn.Linear) and isinstance(b, nn.ReLU) for a, b in zip(layers[::2], layers[1::2])
        ):
            return "the network's body must be Linear/ReLU pairs"
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
            return "the network must be float32 on the CPU"
        if loss not in ("mse", "bce"):
            return f"loss must be 'mse' or 'bce', got {loss!r}"
        if type(optimizer) not in _STATE:
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
        buffers, counts_steps = _STATE[type(self.optimizer)]
        states = [self.optimizer.state[p] for p in self.params]  # every parameter has an entry
        # The step count first, in the order torch's optimizers create their state.
        self._steps = self._state_buffer(states, "step", 0.0, False) if counts_steps else None
        self._state = {name: self._state_buffer(states, name, init, True) for name, init in buffers.items()}

    def _state_buffer(self, states: list[dict], name: str, init: float, per_element: bool) -> np.ndarray:
        """A flat float32 numpy buffer of the optimizer's state ``name`` for all parameters (per
        element, or one scalar per parameter), whose slices are the optimizer's state tensors.
        Reused while the optimizer still holds those slices; otherwise (first round, or a loaded
        checkpoint) made afresh from the optimizer's values, or ``init`` where it has none yet."""
        buf = self._state_buffers.get(name)
        parts = self._slices if per_element else [slice(i, i + 1) for i in range(len(self.params))]
        if buf is not None and all(
            name in st and st[name].data_ptr() == buf[sl].data_ptr() for st, sl in zip(states, parts)
        ):
            return buf.numpy()
        buf = torch.full((parts[-1].stop,), init, dtype=torch.float32)
        for p, st, sl in zip(self.params, states, parts):
            if name in st:
                buf[sl] = st[name].detach().reshape(-1)
            st[name] = buf[sl].view_as(p) if per_element else buf[sl.start]
        self._state_buffers[name] = buf
        return buf.numpy()

    # ------------------------------------------------------------------ a round, one step
    def round(self, user: np.ndarray, item_id: np.ndarray, reward: np.ndarray, indices: np.ndarray,
              lrs: list[float]) -> np.ndarray:
        """Steps on the minibatches ``indices`` (steps, batch) of rows of ``user`` (N, d_u),
        ``item_id`` (N,) and ``reward`` (N,) at learning rates ``lrs``; each step's loss."""
        losses = np.empty(len(indices))
        self.begin_round()
        with np.errstate(under="ignore"):  # squared-gradient averages of idle units decay to 0
            for step, (index, lr) in enumerate(zip(indices, lrs)):
                losses[step] = self.step(user.take(index, axis=0), item_id.take(index), reward.take(index), lr)
        return losses

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
            a = np.maximum(z, _zeros(z.shape), out=z)
            acts.append(a)
        # ``take`` gathers rows ~3x faster than fancy indexing (same values).
        w_out = weights[-1].take(item_ids, axis=0)  # (n, h): only the chosen outputs matter
        s = np.einsum("nh,nh->n", a, w_out) + biases[-1].take(item_ids)
        if self.loss == "mse":
            r = s - target
            loss = float(r @ r) / n
            g = (2.0 / n) * r
        else:
            loss = float(np.mean(np.logaddexp(0.0, s) - target * s))
            g = (1.0 / (1.0 + np.exp(-s)) - target) / n
        g = g.astype(np.float32, copy=False)
        grads_w, grads_b = self._grads_w, self._grads_b
        # Output layer: rows item_ids of W_out and b_out.
        n_out = weights[-1].shape[0]
        if n_out <= _DENSE_OUTPUTS:
            G = np.zeros((n, n_out), dtype=np.float32)
            G.ravel()[_row_starts(n, n_out) + item_ids] = g  # G[i, item_ids[i]] = g[i]
            np.matmul(G.T, a, out=grads_w[-1])
        else:
            grads_w[-1].fill(0.0)
            np.add.at(grads_w[-1], item_ids, g[:, None] * a)
        # b_out: each output's g summed in row order from +0, what G.sum(axis=0) adds up (its
        # other rows are +0) at a fraction of the cost of a column reduction over n rows.
        grads_b[-1].fill(0.0)
        np.add.at(grads_b[-1], item_ids, g)
        grad_a = g[:, None] * w_out
        for layer in range(len(weights) - 2, -1, -1):
            grad_z = grad_a * (acts[layer + 1] > 0)
            np.matmul(grad_z.T, acts[layer], out=grads_w[layer])
            np.einsum("nh->h", grad_z, out=grads_b[layer])  # = grad_z.sum(axis=0), same order, faster
            if layer:
                grad_a = grad_z @ weights[layer]
        if self.max_grad_norm is not None:
            total = math.sqrt(sum(float(np.vdot(x, x)) for x in self._grads))
            coef = self.max_grad_norm / (total + 1e-6)
            if coef < 1.0:
                self._grad *= coef
        self._apply(lr)
        return loss

    # ------------------------------------------------------------------ the optimizers
    def _apply(self, lr: float) -> None:
        """The optimizer's update from the gradients in ``self._grad``, on the flat buffers."""
        opt, group = self.optimizer, self.optimizer.param_groups[0]
        grad, delta = self._grad, self._delta
        wd = group.get("weight_decay", 0.0)
        if wd:
            for g, value in zip(self._grads, self._values):
                g += wd * value
        if self._steps is not None:
            self._steps += 1
        if isinstance(opt, torch.optim.SGD):
            np.multiply(lr, grad, out=delta)
        elif isinstance(opt, TFRMSprop):
            sq, decay = self._state["square_avg"], group["decay"]
            sq *= decay
            sq += (1.0 - decay) * grad * grad
            np.divide(lr * grad, np.sqrt(sq + group["eps"]), out=delta)
        elif isinstance(opt, torch.optim.RMSprop):
            sq, alpha = self._state["square_avg"], group["alpha"]
            sq *= alpha
            sq += (1.0 - alpha) * grad * grad
            np.divide(lr * grad, np.sqrt(sq) + group["eps"], out=delta)
        else:  # Adam, with each parameter's own step count in its bias corrections
            (beta1, beta2), m, v = group["betas"], self._state["exp_avg"], self._state["exp_avg_sq"]
            m *= beta1
            m += (1.0 - beta1) * grad
            v *= beta2
            v += (1.0 - beta2) * grad * grad
            steps = self._steps.tolist()
            runs = [(slice(None), steps[0])] if len(set(steps)) == 1 else list(zip(self._slices, steps))
            for sl, t in runs:
                denom = np.sqrt(v[sl]) / math.sqrt(1.0 - beta2**t) + group["eps"]
                np.divide(lr / (1.0 - beta1**t) * m[sl], denom, out=delta[sl])
        for value, change in zip(self._values, self._deltas):
            value -= change
