"""Bayesian linear regression on a network's last hidden layer, in torch on the network's device.

The host head (``_LastLayerHead`` in :mod:`banditrec.policies.neural`) runs the posterior in numpy:
every decision copies the (B, K, h) embedding to the host, and Thompson sampling's Monte-Carlo
propensities draw (1 + n_mc, B, K) arrays there — on a GPU that copy and that host work are most
of NeuralLinear's decision time. This head keeps the statistics (A, A⁻¹, b, θ, yᵀy, n per
parameter set: one, or one per item id) on the device in float64, and answers mean, width and
posterior draws as device tensors; only the chosen actions and their propensities go back.

Same model as the host head, same state format (a saved state loads into either), different
arithmetic order and random streams: the numbers agree to rounding, the draws in distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from banditrec._util import check_id_table
from banditrec.policies.linear import not_positive_definite
from banditrec.policies.tensor_ops import standard_gamma

__all__ = ["DeviceLastLayerHead"]

_CHUNK_ELEMENTS = 1 << 25  # float64 elements per gathered (chunk, K, d, d) block: 256 MB


def _cholesky(matrix: torch.Tensor, lam: float) -> torch.Tensor:
    """torch's Cholesky factor, with the host head's named error in place of torch's."""
    try:
        return torch.linalg.cholesky(matrix)
    except torch.linalg.LinAlgError:
        raise not_positive_definite(lam) from None


class DeviceLastLayerHead:
    """Ridge / Normal-Inverse-Gamma regression on φ = [embedding, 1] (or the embedding alone,
    ``intercept=False``), shared or per item id."""

    def __init__(self, lam: float, posterior: str, v: float, a0: float, b0: float, per_item: bool,
                 device: torch.device, generator: torch.Generator, intercept: bool = True) -> None:
        self.lam, self.posterior, self.v, self.a0, self.b0 = lam, posterior, v, a0, b0
        self.per_item, self.device, self.generator, self.intercept = per_item, device, generator, intercept
        self.reset()

    # ------------------------------------------------------------------ statistics
    def reset(self) -> None:
        self.d: int | None = None
        self.m = 0  # parameter sets in use

    def _f64(self) -> dict[str, Any]:
        return {"dtype": torch.float64, "device": self.device}

    def _ensure(self, d: int, m: int) -> None:
        """Statistics for width d and parameter sets [0, m); new sets start at the prior."""
        m = 1 if not self.per_item else m
        if self.d is None:
            self.d, self.m = d, 0
            self.A = torch.zeros((0, d, d), **self._f64())
            self.A_inv, self.b = self.A.clone(), torch.zeros((0, d), **self._f64())
            self.theta, self.yy, self.count = self.b.clone(), torch.zeros(0, **self._f64()), torch.zeros(0, **self._f64())
        if m <= self.m:
            return
        check_id_table(m, 8 * (2 * d * d + 2 * d + 2), "per-item regressions (head='per_item')")
        new = m - self.m
        eye = torch.eye(d, **self._f64()).expand(new, d, d)
        self.A = torch.cat([self.A, self.lam * eye])
        self.A_inv = torch.cat([self.A_inv, eye / self.lam])
        self.b = torch.cat([self.b, torch.zeros((new, d), **self._f64())])
        self.theta = torch.cat([self.theta, torch.zeros((new, d), **self._f64())])
        self.yy = torch.cat([self.yy, torch.zeros(new, **self._f64())])
        self.count = torch.cat([self.count, torch.zeros(new, **self._f64())])
        self.m = m

    def _solve(self) -> None:
        """A⁻¹ and θ = A⁻¹ b from A and b (A is λI + XᵀX: symmetric positive definite)."""
        chol = _cholesky(self.A, self.lam)
        self.A_inv = torch.cholesky_inverse(chol)
        self.theta = torch.cholesky_solve(self.b[..., None], chol)[..., 0]

    def _x(self, embedding: torch.Tensor) -> torch.Tensor:
        e = embedding.to(torch.float64)
        return torch.cat([e, torch.ones_like(e[..., :1])], dim=-1) if self.intercept else e

    def _sets(self, item_ids: torch.Tensor) -> torch.Tensor:
        return item_ids if self.per_item else torch.zeros_like(item_ids)

    def add(self, embedding: torch.Tensor, rewards: torch.Tensor, item_ids: torch.Tensor, n_sets: int) -> None:
        """Condition on rows φ (n, h) of items ``item_ids`` (n,) with rewards (n,); ``n_sets``
        bounds the item ids (known on the host, so no device read)."""
        x, y = self._x(embedding), rewards.to(torch.float64)
        self._ensure(x.shape[1], n_sets)
        sets = self._sets(item_ids)
        self.A.index_add_(0, sets, x[:, :, None] * x[:, None, :])
        self.b.index_add_(0, sets, x * y[:, None])
        self.yy.index_add_(0, sets, y * y)
        self.count.index_add_(0, sets, torch.ones_like(y))
        if x.shape[0] == 1:  # one row (one decision at a time): Sherman–Morrison, as the host head
            self._sherman_morrison(sets, x[0])
        else:
            self._solve()

    def _sherman_morrison(self, sets: torch.Tensor, x: torch.Tensor) -> None:
        """A⁻¹ and θ of set ``sets`` (1,) after its A gained xxᵀ: a few small kernels and no
        factorisation, so no device read (a Cholesky on a GPU reads its status back)."""
        A_inv = self.A_inv.index_select(0, sets)[0]
        ax = A_inv @ x
        A_inv = A_inv - torch.outer(ax, ax) / (1.0 + x @ ax)
        self.A_inv.index_copy_(0, sets, A_inv[None])
        self.theta.index_copy_(0, sets, (A_inv @ self.b.index_select(0, sets)[0])[None])

    def theta_rows(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The posterior mean θ (n, d) of the parameter set of each of the items ``item_ids`` (n,)."""
        return self.theta[self._sets(item_ids)]

    def refit(self, gram: torch.Tensor, xy: torch.Tensor, yy: torch.Tensor, counts: torch.Tensor) -> None:
        """The posterior from sums over each parameter set's rows (see ``_LastLayerHead.refit``)."""
        self.reset()
        m, d = xy.shape
        self._ensure(d, m)
        self.A = self.lam * torch.eye(d, **self._f64()) + gram.to(torch.float64)
        self.b, self.yy, self.count = xy.to(torch.float64), yy.to(torch.float64), counts.to(torch.float64)
        self._solve()

    # ------------------------------------------------------------------ inference
    def _ready(self, embedding: torch.Tensor) -> None:
        if self.d is None:  # nothing learned yet: the prior
            self._ensure(embedding.shape[-1] + 1, 1)

    def _gather_sets(self, item_ids: torch.Tensor, n_sets: int) -> torch.Tensor:
        """Parameter-set index of every candidate; unseen item ids get the prior."""
        self._ensure(self.d, n_sets)
        return self._sets(item_ids)

    def mean(self, embedding: torch.Tensor, item_ids: torch.Tensor, n_sets: int) -> torch.Tensor:
        self._ready(embedding)
        sets = self._gather_sets(item_ids, n_sets)
        x = self._x(embedding)
        if not self.per_item:
            return x @ self.theta[0]
        return (x * self.theta[sets]).sum(-1)

    def mean_and_width(self, embedding, item_ids, n_sets) -> tuple[torch.Tensor, torch.Tensor]:
        self._ready(embedding)
        sets = self._gather_sets(item_ids, n_sets)
        x = self._x(embedding)
        if not self.per_item:
            mean = x @ self.theta[0]
            w2 = ((x @ self.A_inv[0]) * x).sum(-1)
            return mean, torch.sqrt(torch.clamp(w2, min=0.0))
        mean = (x * self.theta[sets]).sum(-1)
        B, K, d = x.shape
        rows = max(1, _CHUNK_ELEMENTS // (K * d * d))
        w2 = torch.cat([
            torch.einsum("bki,bkij,bkj->bk", x[s : s + rows], self.A_inv[sets[s : s + rows]], x[s : s + rows])
            for s in range(0, B, rows)
        ])
        return mean, torch.sqrt(torch.clamp(w2, min=0.0))

    def _noise_scale(self, sets: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | float:
        """v, or σ = √(b / Gamma(a)) from each set's Inverse-Gamma posterior, drawn per element."""
        if self.posterior == "gaussian":
            return self.v
        a = self.a0 + 0.5 * self.count[sets]
        resid = self.yy[sets] - (self.b[sets] * self.theta[sets]).sum(-1)
        b = self.b0 + 0.5 * torch.clamp(resid, min=0.0)
        g = standard_gamma(a.expand(shape), self.generator, lower_bound=self.a0)  # a ≥ a0 > 0
        return torch.sqrt(b.expand(shape) / g)

    def sample(self, embedding: torch.Tensor, item_ids: torch.Tensor, n_sets: int, n: int,
               repeats: tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None = None) -> torch.Tensor:
        """Posterior draws of every candidate's reward, (n, B, K); within a user the candidates
        share one parameter draw under the shared head, as on the host. Under the per-item head,
        ``repeats`` (``(rows, slots, groups, n_groups)`` of the candidates whose item is listed
        more than once in their row, as ``banditrec.policies.base.repeated_slots`` gives them)
        get one parameter draw per (row, item), as on the host."""
        self._ready(embedding)
        B, K = item_ids.shape
        opts = {"generator": self.generator, "device": self.device, "dtype": torch.float64}
        if self.per_item:
            mean, width = self.mean_and_width(embedding, item_ids, n_sets)
            scale = self._noise_scale(self._sets(item_ids), (n, B, K))
            draws = mean + scale * width * torch.randn((n, B, K), **opts)
            if repeats is not None:
                self._draw_repeated(draws, embedding, item_ids, repeats, opts)
            return draws
        x = self._x(embedding)
        d = x.shape[-1]
        mean = x @ self.theta[0]
        if d <= K:
            L = _cholesky(self.A_inv[0] + 1e-12 * torch.eye(d, **self._f64()), self.lam)
            z = torch.randn((B, d, n), **opts)
            noise = torch.bmm(x @ L, z).permute(2, 0, 1)  # (n, B, K)
        else:
            cov = (x @ self.A_inv[0]) @ x.transpose(1, 2)
            jitter = 1e-10 * torch.diagonal(cov, dim1=1, dim2=2).abs().max() + 1e-12
            L = _cholesky(cov + jitter * torch.eye(K, **self._f64()), self.lam)
            noise = torch.bmm(L, torch.randn((B, K, n), **opts)).permute(2, 0, 1)
        scale = self._noise_scale(torch.zeros((1, 1), dtype=torch.int64, device=self.device), (n, B))
        return mean + (scale[..., None] if isinstance(scale, torch.Tensor) else scale) * noise

    def _draw_repeated(self, draws: torch.Tensor, embedding: torch.Tensor, item_ids: torch.Tensor,
                       repeats: tuple[torch.Tensor, torch.Tensor, torch.Tensor, int],
                       opts: dict[str, Any]) -> None:
        """Overwrite the draws of the repeated slots with one θ ~ N(θ̂, σ² A⁻¹) per (row, item)."""
        rows, slots, groups, n_groups = repeats
        n = draws.shape[0]
        x = self._x(embedding[rows, slots])  # (m, d)
        sets = torch.empty(n_groups, dtype=torch.int64, device=self.device)
        sets[groups] = item_ids[rows, slots]
        d = x.shape[1]
        L = _cholesky(self.A_inv[sets] + 1e-12 * torch.eye(d, **self._f64()), self.lam)  # (G, d, d)
        noise = torch.einsum("gij,ngj->ngi", L, torch.randn((n, n_groups, d), **opts))
        scale = self._noise_scale(sets, (n, n_groups))
        theta = self.theta[sets] + (scale[..., None] if isinstance(scale, torch.Tensor) else scale) * noise
        draws[:, rows, slots] = (x * theta[:, groups]).sum(-1)

    # ------------------------------------------------------------------ state (the host head's format)
    def state_dict(self) -> dict[str, Any]:
        if self.d is None:
            return {"d_": None, "n_arms_": 0}
        cpu = {k: getattr(self, k).detach().cpu().clone() for k in ("A", "A_inv", "b", "theta", "yy", "count")}
        return {
            "d_": self.d, "n_arms_": self.m, "feature_sizes_": (0, self.d - int(self.intercept)),
            "A_": cpu["A"], "A_inv_": cpu["A_inv"], "b_": cpu["b"], "theta_": cpu["theta"],
            "yy_": cpu["yy"], "count_": cpu["count"],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        if state.get("d_") is None:
            return
        m = int(state["n_arms_"])

        def dev(name):
            value = state[name]
            value = torch.as_tensor(value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value))
            return value[:m].to(**self._f64())

        self.d, self.m = int(state["d_"]), m
        self.A, self.A_inv, self.b, self.theta = dev("A_"), dev("A_inv_"), dev("b_"), dev("theta_")
        self.yy, self.count = dev("yy_"), dev("count_")
