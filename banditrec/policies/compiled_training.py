"""Online training of a small one-output-per-item MLP as one compiled loop per round (numba).

Why: the numpy engine (:mod:`banditrec.policies.numpy_training`) makes ~25 numpy calls per
minibatch step, each over a (512 × 50) array or smaller, and at the sizes of the classic neural
bandit benchmarks (Riquelme et al.'s wheel: a 2 → 50 → 5 network, minibatches of 512, two steps
per decision) those calls' overhead is much of a step. Compiled, a whole round of steps is one
call: layer by layer over the minibatch's rows, with each row's loop over a layer's units
contiguous (vector instructions) and only the chosen output of each row computed. A layer with
``BLAS_MIN_WIDTH`` (32) inputs or more runs its products through BLAS instead (numba's ``np.dot``),
where blocked products beat row loops; a narrow first layer, such as the wheel's 2 inputs, keeps
the loop. At the wheel's sizes a step took 75 µs against the numpy engine's 183 and torch's 931;
with two hidden layers of 50, 239 against 394 and 1,173 (one run of
``benchmarks/training_engines.py``, which times the engines by network size). With
``engine="numba"`` the network's forward pass for host decisions (and for refitting a last-layer
posterior) runs compiled too: :meth:`CompiledMLPTrainer.embed`, the training loop's own
arithmetic, without torch's per-call overhead, which is most of a one-user decision's time.

What it computes is what the numpy and torch engines compute — mean-squared error or binary
cross-entropy of each row's chosen output, gradients clipped to a global norm, the SGD, Adam,
RMSprop and TF1 RMSProp updates with weight decay — in another order of floating-point operations
(a minibatch's gradient is summed row by row): each step agrees with autograd to float32
rounding, checked by the tests, not bit for bit. Long runs at large learning rates are chaotic,
so the engines give different runs of the same distribution, not the same run. The loops are
compiled without fast-math: no reassociation (the one reduction across a layer's units is written
as eight fixed running sums) and no fused multiply-adds, so the numbers should not depend on the
CPU's vector width (not verified on a second CPU).

Parameters and optimizer state stay in the torch module and the torch optimizer: the trainer
copies the parameters in and out around each round (a few hundred floats) and updates the
optimizer's state tensors in place, so acting, checkpoints and resuming are unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from banditrec.models.optim import TFRMSprop
from banditrec.policies import ridge_kernels
from banditrec.policies.numpy_training import NumpyMLPTrainer

__all__ = ["AVAILABLE", "CompiledMLPTrainer", "warm_up"]

AVAILABLE = ridge_kernels.AVAILABLE  # numba imported, and not turned off by BANDITREC_NUMBA=0

# A hidden layer with at least this many inputs runs its forward and backward products through
# BLAS's blocked products; a narrower one (the wheel's first layer: 2 inputs) through the loop over
# rows, which is faster there and keeps its results what they were before this switch existed.
BLAS_MIN_WIDTH = 32

# Optimizer codes of the compiled loop.
_SGD, _RMSPROP_TF, _RMSPROP, _ADAM = range(4)
_CODES = {torch.optim.SGD: _SGD, TFRMSprop: _RMSPROP_TF, torch.optim.RMSprop: _RMSPROP, torch.optim.Adam: _ADAM}

if AVAILABLE:
    from numba import njit

    @njit(cache=True, inline="always")
    def _relu_layer(A_in, Wt, b, A_out):
        """Row by row, A_out[k] = relu(b + Σ_i A_in[k, i] Wt[i]) in that order: Wt is the layer's
        weight transposed (in × out), so that the loop over units is contiguous."""
        zero = np.float32(0.0)
        for k in range(A_in.shape[0]):
            for j in range(A_out.shape[1]):
                A_out[k, j] = b[j]
            for i in range(A_in.shape[1]):
                ai = A_in[k, i]
                for j in range(A_out.shape[1]):
                    A_out[k, j] += ai * Wt[i, j]
            for j in range(A_out.shape[1]):
                if A_out[k, j] < zero:  # noqa: PLR1730 (not max(): a NaN must stay NaN, as in torch.relu)
                    A_out[k, j] = zero

    @njit(cache=True, inline="always")
    def _hidden_layer(A_in, Wt, b, A_out, blas_min):
        """A_out = relu(A_in Wt + b): by :func:`_relu_layer`'s loop, or for an input of
        ``blas_min`` columns or more by BLAS's blocked product, then the bias and the ReLU."""
        if A_in.shape[1] < blas_min:
            _relu_layer(A_in, Wt, b, A_out)
            return
        zero = np.float32(0.0)
        np.dot(A_in, Wt, A_out)
        for k in range(A_in.shape[0]):
            for j in range(A_out.shape[1]):
                v = A_out[k, j] + b[j]
                A_out[k, j] = v if not v < zero else zero  # a NaN stays NaN, as in torch.relu

    @njit(cache=True)
    def _embed(X, dims, theta, out, blas_min):
        """The last hidden layer (B, h) of rows X (B, d_in) into ``out``: the training loop's forward
        pass, with its order of operations."""
        n = X.shape[0]
        A_in = X
        pos = 0
        for layer in range(dims.shape[0] - 2):
            din, dout = dims[layer], dims[layer + 1]
            W = theta[pos:pos + din * dout].reshape((dout, din))
            Wt = np.empty((din, dout), np.float32)
            for j in range(dout):
                for i in range(din):
                    Wt[i, j] = W[j, i]
            A_out = out if layer == dims.shape[0] - 3 else np.empty((n, dout), np.float32)
            _hidden_layer(A_in, Wt, theta[pos + din * dout:pos + din * dout + dout], A_out, blas_min)
            A_in = A_out
            pos += din * dout + dout

    @njit(cache=True)
    def _train_round(X, item_ids, y, indices, lrs, dims, theta, grad, s1, s2, steps, seg_ends,
                     opt, hyper, bce, max_norm, losses, blas_min):
        """Steps ``indices.shape[0]`` of minibatches ``indices[s]`` (rows of X, item_ids, y) at
        learning rates ``lrs``. ``dims`` = (d_in, hidden..., n_out); ``theta``/``grad``: the
        parameters and their gradient, flat in torch's order (W1, b1, ..., W_out, b_out; each W
        (out × in), row-major); ``s1``/``s2``: the optimizer's per-element state in the same
        order; ``steps``: its step count per parameter tensor (tensor t ends at ``seg_ends[t]``);
        ``hyper`` = (weight_decay, decay or alpha, eps, beta1, beta2). Writes each step's loss
        before the update into ``losses``."""
        n_layers = dims.shape[0] - 1  # linear layers, the output layer last
        L = n_layers - 1  # hidden layers
        n = indices.shape[1]
        w_off = np.empty(n_layers, np.int64)
        b_off = np.empty(n_layers, np.int64)
        a_off = np.empty(n_layers, np.int64)  # each layer's input for the minibatch, (n, d_in)
        t_off = np.empty(n_layers, np.int64)  # transposed hidden weights (in × out)
        pos = 0
        apos = 0
        tpos = 0
        width = 1
        for layer in range(n_layers):
            din, dout = dims[layer], dims[layer + 1]
            w_off[layer] = pos
            b_off[layer] = pos + din * dout
            pos += din * dout + dout
            a_off[layer] = apos
            apos += n * din
            t_off[layer] = tpos
            if layer < L:
                tpos += din * dout
            width = max(width, din)
        acts = np.empty(apos, np.float32)
        WT = np.empty(max(tpos, 1), np.float32)
        dWT = np.empty(max(tpos, 1), np.float32)
        GA = np.empty(n * width, np.float32)  # gradient of a layer's output for the minibatch
        GB = np.empty(n * width, np.float32)  # ... and of the layer below's
        arms = np.empty(n, np.int64)
        lanes = np.empty(8, np.float32)
        two_over_n = np.float32(2.0 / n)
        one_over_n = np.float32(1.0 / n)
        zero = np.float32(0.0)
        one = np.float32(1.0)
        wd = np.float32(hyper[0])
        decay = np.float32(hyper[1])
        rest = np.float32(1.0 - hyper[1])
        eps = np.float32(hyper[2])
        beta1 = hyper[3]
        beta2 = hyper[4]
        P = theta.shape[0]
        h = dims[L]
        W_out = theta[w_off[L]:b_off[L]].reshape((dims[L + 1], h))
        b_out = theta[b_off[L]:b_off[L] + dims[L + 1]]
        dW_out = grad[w_off[L]:b_off[L]].reshape((dims[L + 1], h))
        db_out = grad[b_off[L]:b_off[L] + dims[L + 1]]
        A_top = acts[a_off[L]:a_off[L] + n * h].reshape((n, h))
        # Loops run layer by layer over the minibatch's rows, and within a row over a layer's units
        # (contiguous: vector instructions); views are made once per layer and step.
        for s in range(indices.shape[0]):
            grad[:] = zero
            A0 = acts[:n * dims[0]].reshape((n, dims[0]))
            for k in range(n):
                r = indices[s, k]
                arms[k] = item_ids[r]
                for i in range(dims[0]):
                    A0[k, i] = X[r, i]
            for layer in range(L):  # A_out = relu(A_in Wᵀ + b), W transposed first
                din, dout = dims[layer], dims[layer + 1]
                W = theta[w_off[layer]:b_off[layer]].reshape((dout, din))
                Wt = WT[t_off[layer]:t_off[layer] + din * dout].reshape((din, dout))
                for j in range(dout):
                    for i in range(din):
                        Wt[i, j] = W[j, i]
                A_in = acts[a_off[layer]:a_off[layer] + n * din].reshape((n, din))
                A_out = acts[a_off[layer + 1]:a_off[layer + 1] + n * dout].reshape((n, dout))
                _hidden_layer(A_in, Wt, theta[b_off[layer]:b_off[layer] + dout], A_out, blas_min)
            # The chosen output of each row, its loss and the gradients of the output layer.
            loss = 0.0
            G = GA[:n * h].reshape((n, h))
            full = h - h % 8
            for k in range(n):
                arm = arms[k]
                # The dot product in eight running sums (a vector register), not one: one sum waits
                # for each addition before the next.
                for q in range(8):
                    lanes[q] = zero
                for j0 in range(0, full, 8):
                    for q in range(8):
                        lanes[q] += A_top[k, j0 + q] * W_out[arm, j0 + q]
                score = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
                for j in range(full, h):
                    score += A_top[k, j] * W_out[arm, j]
                score += b_out[arm]
                target = y[indices[s, k]]
                if bce:
                    loss += max(score, 0.0) + np.log1p(np.exp(-abs(score))) - target * score
                    g = np.float32((one / (one + np.exp(-score)) - target) * one_over_n)
                else:
                    res = score - target
                    loss += res * res
                    g = np.float32(res * two_over_n)
                for j in range(h):
                    dW_out[arm, j] += g * A_top[k, j]
                    G[k, j] = g * W_out[arm, j]
                db_out[arm] += g
            for layer in range(L - 1, -1, -1):  # back through the hidden layers
                din, dout = dims[layer], dims[layer + 1]
                A_in = acts[a_off[layer]:a_off[layer] + n * din].reshape((n, din))
                A_out = acts[a_off[layer + 1]:a_off[layer + 1] + n * dout].reshape((n, dout))
                G = (GA if (L - 1 - layer) % 2 == 0 else GB)[:n * dout].reshape((n, dout))
                W = theta[w_off[layer]:b_off[layer]].reshape((dout, din))
                db = grad[b_off[layer]:b_off[layer] + dout]
                dWt = dWT[t_off[layer]:t_off[layer] + din * dout].reshape((din, dout))
                wide = din >= blas_min
                if wide:
                    for k in range(n):
                        for j in range(dout):  # through the ReLU
                            if A_out[k, j] <= zero:
                                G[k, j] = zero
                        for j in range(dout):
                            db[j] += G[k, j]
                    np.dot(A_in.T, G, dWt)
                else:
                    for q in range(din * dout):
                        dWT[t_off[layer] + q] = zero
                    for k in range(n):
                        for j in range(dout):  # through the ReLU
                            if A_out[k, j] <= zero:
                                G[k, j] = zero
                        for i in range(din):
                            ai = A_in[k, i]
                            for j in range(dout):
                                dWt[i, j] += ai * G[k, j]
                        for j in range(dout):
                            db[j] += G[k, j]
                if layer > 0:  # the gradient of the layer below's output: rows of W
                    G_below = (GB if (L - 1 - layer) % 2 == 0 else GA)[:n * din].reshape((n, din))
                    if wide:
                        np.dot(G, W, G_below)
                    else:
                        for k in range(n):
                            for i in range(din):
                                G_below[k, i] = zero
                            for j in range(dout):
                                gkj = G[k, j]
                                for i in range(din):
                                    G_below[k, i] += gkj * W[j, i]
                dW = grad[w_off[layer]:b_off[layer]].reshape((dout, din))
                for j in range(dout):
                    for i in range(din):
                        dW[j, i] = dWt[i, j]
            losses[s] = loss / n
            if max_norm > 0.0:
                total = 0.0
                for p in range(P):
                    total += np.float64(grad[p]) * grad[p]
                coef = max_norm / (np.sqrt(total) + 1e-6)
                if coef < 1.0:
                    c = np.float32(coef)
                    for p in range(P):
                        grad[p] *= c
            if wd != zero:
                for p in range(P):
                    grad[p] += wd * theta[p]
            lr = np.float32(lrs[s])
            if opt == 0:  # SGD
                for p in range(P):
                    theta[p] -= lr * grad[p]
            elif opt == 1:  # TF1 RMSProp: eps inside the root
                for p in range(P):
                    gp = grad[p]
                    s1[p] = s1[p] * decay + rest * gp * gp
                    theta[p] -= lr * gp / np.sqrt(s1[p] + eps)
            elif opt == 2:  # torch RMSprop
                for t in range(steps.shape[0]):
                    steps[t] += one
                for p in range(P):
                    gp = grad[p]
                    s1[p] = s1[p] * decay + rest * gp * gp
                    theta[p] -= lr * gp / (np.sqrt(s1[p]) + eps)
            else:  # Adam, each tensor's bias corrections from its own step count
                b1 = np.float32(beta1)
                b1r = np.float32(1.0 - beta1)
                b2 = np.float32(beta2)
                b2r = np.float32(1.0 - beta2)
                start = 0
                for t in range(steps.shape[0]):
                    steps[t] += one
                    count = np.float64(steps[t])
                    root2 = np.float32(np.sqrt(1.0 - beta2**count))
                    size = np.float32(lrs[s] / (1.0 - beta1**count))
                    for p in range(start, seg_ends[t]):
                        gp = grad[p]
                        s1[p] = s1[p] * b1 + b1r * gp
                        s2[p] = s2[p] * b2 + b2r * gp * gp
                        theta[p] -= size * s1[p] / (np.sqrt(s2[p]) / root2 + eps)
                    start = seg_ends[t]


class CompiledMLPTrainer(NumpyMLPTrainer):
    """Training rounds of a :class:`~banditrec.models.MultiOutputMLP` whose body is Linear/ReLU
    layers, each round one compiled call (:func:`_train_round`). The optimizer state is the
    numpy engine's: flat buffers whose slices are the torch optimizer's state tensors."""

    def __init__(self, model: nn.Module, loss: str, optimizer: torch.optim.Optimizer,
                 max_grad_norm: float | None) -> None:
        if not AVAILABLE:
            raise ValueError(
                "engine='numba' needs numba (a banditrec dependency: pip install numba), and "
                "BANDITREC_NUMBA must not be 0; use engine='numpy' or engine='torch'"
            )
        problem = self.unsupported(model, loss, optimizer)
        if problem:
            raise ValueError(f"engine='numba' cannot train this estimator: {problem}; use engine='torch'")
        super().__init__(model, loss, optimizer, max_grad_norm)
        dims = [layer.in_features for layer in self.linears] + [self.linears[-1].out_features]
        self._dims = np.asarray(dims, dtype=np.int64)
        self._theta = np.empty_like(self._grad)
        self._ptrs: list[int] | None = None
        self._views_flat: list[np.ndarray] = []
        self._seg_ends = np.asarray([sl.stop for sl in self._slices], dtype=np.int64)
        group = optimizer.param_groups[0]
        betas = group.get("betas", (0.0, 0.0))
        self._hyper = np.array([group.get("weight_decay", 0.0), group.get("decay", group.get("alpha", 0.0)),
                                group.get("eps", 0.0), betas[0], betas[1]], dtype=np.float64)
        self._opt = _CODES[type(optimizer)]

    def _gather(self) -> np.ndarray:
        """The module's parameters, flat in torch's order, copied afresh at every call (a loaded
        checkpoint or the user may have changed them since the last round) through numpy views
        that are re-taken only when a parameter's storage moved."""
        ptrs = [p.data_ptr() for p in self.params]
        if ptrs != self._ptrs:
            self._views_flat = [p.detach().numpy().reshape(-1) for p in self.params]
            self._ptrs = ptrs
        theta = self._theta
        for view, sl in zip(self._views_flat, self._slices):
            theta[sl] = view
        return theta

    @property
    def embed_dim(self) -> int:
        """Width of the last hidden layer."""
        return int(self._dims[-2])

    def embed(self, user: np.ndarray) -> np.ndarray:
        """The network's last hidden layer for users (B, d_u), float32 (B, h): what
        ``model.embed`` computes, to rounding, without torch's per-call overhead (most of a
        one-user decision's time); training rounds compute their forward passes the same way."""
        x = np.ascontiguousarray(user, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._dims[0]:
            raise ValueError(f"user features must have shape (B, {self._dims[0]}), got {x.shape}")
        out = np.empty((x.shape[0], int(self._dims[-2])), dtype=np.float32)
        _embed(x, self._dims, self._gather(), out, BLAS_MIN_WIDTH)
        return out

    def round(self, user: np.ndarray, item_id: np.ndarray, reward: np.ndarray, indices: np.ndarray,
              lrs: list[float]) -> np.ndarray:
        """Steps on the minibatches ``indices`` (steps, batch) of rows of ``user`` (N, d_u),
        ``item_id`` (N,) and ``reward`` (N,) at learning rates ``lrs``; each step's loss."""
        self.begin_round()
        theta = self._gather()
        empty = np.empty(0, dtype=np.float32)
        s1 = self._state.get("square_avg", self._state.get("exp_avg", empty))
        s2 = self._state.get("exp_avg_sq", empty)
        steps = self._steps if self._steps is not None else empty
        losses = np.empty(len(indices))
        _train_round(
            np.ascontiguousarray(user, dtype=np.float32), np.ascontiguousarray(item_id, dtype=np.int64),
            np.ascontiguousarray(reward, dtype=np.float32), np.ascontiguousarray(indices, dtype=np.int64),
            np.asarray(lrs, dtype=np.float64), self._dims, theta, self._grad, s1, s2, steps,
            self._seg_ends, self._opt, self._hyper, self.loss == "bce",
            float(self.max_grad_norm) if self.max_grad_norm is not None else 0.0, losses, BLAS_MIN_WIDTH,
        )
        for value, sl in zip(self._values, self._slices):
            value[...] = theta[sl].reshape(value.shape)
        return losses


def warm_up() -> None:
    """Compile the training loop, or load it from numba's cache, now rather than at its first
    round. Does nothing without numba."""
    if not AVAILABLE:
        return
    f32 = np.float32  # a 1 -> 1 -> 1 network, one step of one row
    _train_round(
        np.zeros((1, 1), f32), np.zeros(1, np.int64), np.zeros(1, f32), np.zeros((1, 1), np.int64),
        np.ones(1), np.array([1, 1, 1], np.int64), np.zeros(4, f32), np.zeros(4, f32), np.zeros(4, f32),
        np.zeros(4, f32), np.zeros(4, f32), np.array([1, 2, 3, 4], np.int64), 0, np.zeros(5), False, 0.0,
        np.empty(1), BLAS_MIN_WIDTH,
    )
    _embed(np.zeros((1, 1), f32), np.array([1, 1, 1], np.int64), np.zeros(4, f32), np.empty((1, 1), f32),
           BLAS_MIN_WIDTH)
