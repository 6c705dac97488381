"""The few random and tie-breaking operations that decisions on a device need, in torch.

They mirror :func:`banditrec.policies.base.argmax_random_ties` and numpy's gamma sampler, but
draw from an explicit ``torch.Generator`` on the tensors' device, so that a neural policy on a GPU
decides without copying its scores to the host and stays reproducible on that device (torch's
own ``_standard_gamma`` cannot take a generator).
"""

from __future__ import annotations

import torch

__all__ = ["argmax_ties", "standard_gamma"]


def argmax_ties(
    scores: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best valid candidate along the last axis, ties broken uniformly at random.

    ``scores`` (..., K) and ``mask`` (..., K) (broadcast against each other). Returns the chosen
    index (...), the tie indicator (..., K) (the valid candidates sharing the maximal score) and
    the number of tied candidates (...). A row without a valid candidate raises ``ValueError``
    (one host read per call).
    """
    s = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device))
    best = s.amax(dim=-1, keepdim=True)
    if bool(torch.isneginf(best).any()):
        raise ValueError("a user has no valid candidate (mask all False)")
    ties = s == best
    keys = torch.rand(ties.shape, generator=generator, device=ties.device, dtype=torch.float32)
    actions = torch.where(ties, keys, torch.tensor(-1.0, device=ties.device)).argmax(dim=-1)
    return actions, ties, ties.sum(dim=-1)


def standard_gamma(alpha: torch.Tensor, generator: torch.Generator, max_rounds: int = 64) -> torch.Tensor:
    """Gamma(alpha, 1) draws, one per element of ``alpha`` (> 0), from ``generator``.

    Marsaglia & Tsang (2000): for a ≥ 1 with d = a − 1/3, c = 1/√(9d), propose v = (1 + c x)³ with
    x ~ N(0, 1) and accept when log u < x²/2 + d − d v + d log v; at least 95% of proposals are
    accepted. For a < 1, Gamma(a) = Gamma(a + 1) · u^(1/a). Three proposal rounds run before the
    first host check of what is left, so a call usually reads the device once.
    """
    alpha = alpha.to(torch.float64)
    if not bool((alpha > 0).all()):
        raise ValueError("gamma shape parameters must be > 0")
    boost = alpha < 1
    a = torch.where(boost, alpha + 1.0, alpha)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.zeros_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    opts = {"generator": generator, "device": a.device, "dtype": torch.float64}
    for round_ in range(max_rounds):
        x = torch.randn(a.shape, **opts)
        u = torch.rand(a.shape, **opts)
        v = (1.0 + c * x) ** 3
        safe_v = torch.where(v > 0, v, torch.ones_like(v))
        accept = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * safe_v + d * torch.log(safe_v))
        take = todo & accept
        out = torch.where(take, d * safe_v, out)
        todo = todo & ~accept
        if round_ >= 2 and not bool(todo.any()):
            break
    else:  # pragma: no cover - probability below 0.05 ** 64 per element
        raise RuntimeError("gamma sampler did not converge")
    u = torch.rand(a.shape, **opts)
    return torch.where(boost, out * u ** (1.0 / alpha), out)
