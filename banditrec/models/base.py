"""The recommendation-model contract: score B users × K candidates, expose the last hidden layer.

Every model is an ``nn.Module`` called as ``model(user, items, item_ids, user_ids)`` with

- ``user``: float tensor (B, d_u), ``items``: float tensor (B, K, d_i),
- ``item_ids``: long tensor (B, K), ``user_ids``: long tensor (B,) (-1 for anonymous users),

returning scores (B, K). The built-in models also provide ``embed(...) -> (B, K, h)``, the last
hidden layer, on which the score is linear (``score = head(embed)``); that is what a Bayesian
linear head (NeuralLinear, Neural-LinUCB) sits on. A user's own module needs only ``forward``;
``embed`` is needed for ``uncertainty="last_layer"``.

Parameters are initialised from a ``torch.Generator`` derived from a seed, never from torch's
global random state: layers are created on the ``meta`` device and materialised by
:func:`init_parameters`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from banditrec._util import MAX_ID_TABLE_BYTES

__all__ = ["RecModel", "bucket_ids", "check_embedding", "check_input_sizes", "check_scores", "init_parameters", "make_generator"]


#: Largest model a built-in constructor makes (float32 weights), the policies' per-id limit
#: (``banditrec._util.MAX_ID_TABLE_BYTES``) for the same reason.
MAX_MODEL_BYTES = MAX_ID_TABLE_BYTES


def make_generator(seed: int | np.random.SeedSequence | np.random.Generator | None) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from a numpy-style seed (fresh entropy for None).

    A numpy Generator gives one draw to seed it; a torch.Generator is returned as is.
    """
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        value = int(seed.integers(0, 2**63 - 1))
    else:
        if seed is not None and not isinstance(seed, (int, np.integer, np.random.SeedSequence)):
            raise TypeError(
                f"seed must be an int, a SeedSequence, a Generator or None, got {type(seed).__name__}"
            )
        if isinstance(seed, (int, np.integer)) and seed < 0:  # numpy: "expected non-negative integer"
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        value = int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
    return torch.Generator(device="cpu").manual_seed(value)


LINEAR_INITS = ("torch", "glorot", "uniform")


def init_parameters(
    module: nn.Module, generator: torch.Generator, embedding_std: float = 0.1, linear: str = "torch",
    scale: float = 0.3,
) -> None:
    """(Re)initialise every Linear and Embedding of ``module`` from ``generator``.

    Linear layers get PyTorch's default (``linear="torch"``: Kaiming-uniform weights, uniform
    biases in ±1/√fan_in), TensorFlow's (``"glorot"``: Glorot-uniform weights, zero biases — what
    models published with TF1 started from) or ``"uniform"`` (weights uniform in ±``scale``, zero
    biases — Riquelme et al.'s ``init_scale``, 0.3 in their code); embeddings N(0, embedding_std²),
    except one-column embeddings (per-id biases), which start at 0.
    """
    if linear not in LINEAR_INITS:
        raise ValueError(f"linear init must be one of {LINEAR_INITS}, got {linear!r}")
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale < math.inf):
        # inf reached torch's "from is out of bounds for float" only when the weights were drawn
        raise ValueError(f"init scale must be a number > 0 and finite, got {scale!r}")
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear) and linear in ("glorot", "uniform"):
                if m.weight.numel() and linear == "glorot":
                    nn.init.xavier_uniform_(m.weight, generator=generator)
                elif m.weight.numel():
                    nn.init.uniform_(m.weight, -scale, scale, generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                fan_in = m.weight.shape[1]
                if m.weight.numel():
                    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.Embedding):
                if m.embedding_dim == 1:
                    nn.init.zeros_(m.weight)
                else:
                    nn.init.normal_(m.weight, 0.0, embedding_std, generator=generator)


def bucket_ids(ids: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Map catalogue ids to rows of an id table with ``n_rows`` rows.

    Row 0 is reserved for unknown ids (negative, e.g. anonymous users); id ``j >= 0`` goes to row
    ``1 + j mod (n_rows - 1)``, so ids beyond the table share rows (the hashing trick) instead of
    failing.
    """
    return torch.where(ids < 0, torch.zeros_like(ids), 1 + torch.remainder(ids, n_rows - 1))


def mlp(sizes: Sequence[int], activate_last: bool = True) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if activate_last or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def check_hidden(hidden: Sequence[int] | int, name: str = "hidden") -> tuple[int, ...]:
    """Hidden sizes as a tuple of positive ints, or a ValueError quoting the value."""
    sizes = (hidden,) if isinstance(hidden, (int, np.integer)) else hidden
    ok = (
        isinstance(sizes, (tuple, list))
        and len(sizes) > 0
        and all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in sizes)
    )
    if not ok:
        raise ValueError(f"{name} must be a positive int or a non-empty sequence of them, got {hidden!r}")
    return tuple(int(h) for h in sizes)


def check_size(value, name: str, minimum: int = 0) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class RecModel(nn.Module):
    """Base of the built-in models: ``forward = head(embed)``; the head is linear in the embedding.

    Subclasses create their layers inside ``with torch.device("meta"):`` and finish ``__init__``
    with ``self._materialize(seed)``, so construction never draws from torch's global generator.
    Their constructor arguments are kept in ``self.config`` (what a checkpoint records).
    """

    config: dict

    @property
    def embedding_dim(self) -> int:
        """h, the width of :meth:`embed`'s last axis."""
        raise NotImplementedError

    def embed(self, user, items, item_ids, user_ids) -> torch.Tensor:
        """Last hidden layer for every candidate, shape (B, K, h)."""
        raise NotImplementedError

    def head(self, embedding: torch.Tensor, item_ids: torch.Tensor, user_ids: torch.Tensor) -> torch.Tensor:
        """Scores (B, K) from the embedding; linear in it."""
        raise NotImplementedError

    def forward(self, user, items, item_ids, user_ids) -> torch.Tensor:
        return self.head(self.embed(user, items, item_ids, user_ids), item_ids, user_ids)

    def input_sizes(self) -> dict[str, int]:
        """The feature sizes this model was built for and reads, by argument name ("user_dim",
        "item_dim"): what :func:`check_input_sizes` compares with the data."""
        return {k: self.config[k] for k in ("user_dim", "item_dim") if k in self.config}

    def _materialize(self, seed, linear: str = "torch", scale: float = 0.3) -> None:
        # A size the caller did not mean (n_items=10**9 for an mf model) would otherwise ask the
        # allocator for hundreds of GiB: torch's "can't allocate memory", or the machine swapping.
        n_bytes = 4 * sum(p.numel() for p in self.parameters())
        if n_bytes > MAX_MODEL_BYTES:
            raise ValueError(
                f"{type(self).__name__}({self.extra_repr()}) would hold {n_bytes / 2**30:,.1f} GiB of weights "
                f"(the limit is {MAX_MODEL_BYTES / 2**30:.0f} GiB); id tables are sized by n_users / n_items: "
                "map ids to 0 .. n - 1 first, or hash them into fewer rows"
            )
        # float32 before the draws, whatever torch's default dtype: under
        # torch.set_default_dtype(torch.float64) the same seed drew other initial weights
        self.to_empty(device="cpu").float()
        init_parameters(self, make_generator(seed), linear=linear, scale=scale)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "seed")


def check_input_sizes(model: nn.Module, user_dim: int, item_dim: int, where: str) -> None:
    """A built-in model fed features of other sizes than it was built for fails inside torch's
    matrix product; name the sizes instead. Models that are not :class:`RecModel` are not checked
    (their forward pass is theirs to check)."""
    if not isinstance(model, RecModel):
        return
    given = {"user_dim": user_dim, "item_dim": item_dim}
    for name, built in model.input_sizes().items():
        if built != given[name]:
            kind = name.split("_")[0]
            raise ValueError(
                f"{type(model).__name__} was built for {kind} features of size {built} ({name}={built}), "
                f"but {where} has {kind} features of size {given[name]}"
            )


def check_scores(scores, batch_size: int, n_candidates: int, who: str) -> torch.Tensor:
    """A model's output must be a tensor of shape (B, K); otherwise a ValueError naming both shapes."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(
            f"{who} must return a torch.Tensor of scores with shape (B, K), got {type(scores).__name__}"
        )
    expected = (batch_size, n_candidates)
    if tuple(scores.shape) != expected:
        raise ValueError(
            f"{who} returned scores of shape {tuple(scores.shape)}; expected (B, K) = {expected} "
            "(one score per user and candidate)"
        )
    if not scores.is_floating_point():  # integer scores cannot be trained: autograd's error says less
        raise TypeError(f"{who} returned scores of dtype {scores.dtype}; expected floating-point scores")
    return scores


def check_embedding(embedding, batch_size: int, n_candidates: int, who: str) -> torch.Tensor:
    """``embed`` must return a tensor of shape (B, K, h)."""
    if not isinstance(embedding, torch.Tensor):
        raise TypeError(
            f"{who}.embed must return a torch.Tensor of shape (B, K, h), got {type(embedding).__name__}"
        )
    if embedding.ndim != 3 or tuple(embedding.shape[:2]) != (batch_size, n_candidates):
        raise ValueError(
            f"{who}.embed returned shape {tuple(embedding.shape)}; expected (B, K, h) with "
            f"(B, K) = {(batch_size, n_candidates)}"
        )
    return embedding
