"""The few random and tie-breaking operations that decisions on a device need, in torch.

They mirror :func:`banditrec.policies.base.argmax_random_ties` and numpy's gamma sampler, but
draw from an explicit ``torch.Generator`` on the tensors' device, so that a neural policy on a GPU
decides without copying its scores to the host and stays reproducible on that device (torch's
own ``_standard_gamma`` cannot take a generator).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["argmax_ties", "require_valid_candidates", "standard_gamma"]


def argmax_ties(
    scores: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best valid candidate along the last axis, ties broken uniformly at random.

    ``scores`` (..., K) and ``mask`` (..., K) (broadcast against each other). Returns the chosen
    index (...), the tie indicator (..., K) (the valid candidates sharing the maximal score) and
    the number of tied candidates (...). Every row must have a valid candidate: the caller checks
    (:func:`require_valid_candidates`), so that a decision on a GPU need not read the device here.
    """
    s = torch.where(mask, scores, float("-inf"))  # Python scalars: no host-to-device copy
    best = s.amax(dim=-1, keepdim=True)
    ties = s == best
    keys = torch.rand(ties.shape, generator=generator, device=ties.device, dtype=torch.float32)
    actions = torch.where(ties, keys, -1.0).argmax(dim=-1)
    return actions, ties, ties.sum(dim=-1)


def require_valid_candidates(mask: np.ndarray | torch.Tensor) -> None:
    """``ValueError`` when a row of ``mask`` (B, K) has no valid candidate. A numpy mask (the host's
    copy of a batch) is read without touching the device; a device mask costs one read."""
    if isinstance(mask, np.ndarray):
        empty = not mask.any(axis=-1).all()
    else:
        empty = not bool(mask.any(dim=-1).all())
    if empty:
        raise ValueError("a user has no valid candidate (mask all False)")


def standard_gamma(alpha: torch.Tensor, generator: torch.Generator, lower_bound: float | None = None,
                   block: int = 4, max_blocks: int = 16) -> torch.Tensor:
    """Gamma(alpha, 1) draws, one per element of ``alpha`` (> 0), from ``generator``.

    Marsaglia & Tsang (2000): for a ≥ 1 with d = a − 1/3, c = 1/√(9d), propose v = (1 + c x)³ with
    x ~ N(0, 1) and accept when log u < x²/2 + d − d v + d log v; at least 95% of proposals are
    accepted. For a < 1, Gamma(a) = Gamma(a + 1) · u^(1/a). Proposals come ``block`` at a time per
    element and the first accepted one is kept (the same law as one at a time, in a few kernels
    rather than a few per proposal); the host reads the device once per block to see whether any
    element is left, so a call usually reads it once. ``lower_bound``, a bound the caller knows
    for every ``alpha``, skips the positivity check (a device read) when > 0 and the a < 1 branch
    when ≥ 1.
    """
    alpha = alpha.to(torch.float64)
    if (lower_bound is None or not lower_bound > 0) and not bool((alpha > 0).all()):
        raise ValueError("gamma shape parameters must be > 0")
    boost = None if lower_bound is not None and lower_bound >= 1 else alpha < 1
    a = alpha if boost is None else torch.where(boost, alpha + 1.0, alpha)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.zeros_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    opts = {"generator": generator, "device": a.device, "dtype": torch.float64}
    for _ in range(max_blocks):
        x = torch.randn((block,) + tuple(a.shape), **opts)
        u = torch.rand((block,) + tuple(a.shape), **opts)
        v = (1.0 + c * x) ** 3
        safe_v = torch.where(v > 0, v, 1.0)
        accept = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * safe_v + d * torch.log(safe_v))
        first = accept.to(torch.uint8).argmax(dim=0, keepdim=True)  # the first accepted proposal
        accepted = accept.any(dim=0)
        out = torch.where(todo & accepted, (d * safe_v).gather(0, first)[0], out)
        todo = todo & ~accepted
        if not bool(todo.any()):
            break
    else:  # pragma: no cover - probability below 0.05 ** 64 per element
        raise RuntimeError("gamma sampler did not converge")
    if boost is None:
        return out
    u = torch.rand(a.shape, **opts)
    return torch.where(boost, out * u ** (1.0 / alpha), out)
