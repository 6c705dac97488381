"""MatrixFactorization: user and item id embeddings with biases."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from banditrec.models.base import RecModel, bucket_ids, check_size

__all__ = ["MatrixFactorization"]


class MatrixFactorization(RecModel):
    """score(u, i) = ⟨p_u, q_i⟩ + b_u + b_i; the embedding is ``p_u ⊙ q_i``.

    Features are ignored: this is the collaborative-filtering baseline, and it needs user ids
    (anonymous users, id -1, share one row, so it degrades to an item-popularity model).

    Parameters
    ----------
    n_users, n_items : int
        Rows of the id tables; larger ids are hashed into them (row 0 holds unknown ids).
    dim : int
        Embedding width h.
    seed : int, SeedSequence, Generator or None
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 32, seed=None) -> None:
        super().__init__()
        options = self.check_options({"n_users": n_users, "n_items": n_items, "dim": dim})
        n_users, n_items, dim = options["n_users"], options["n_items"], options["dim"]
        self.config = {"n_users": n_users, "n_items": n_items, "dim": dim}
        with torch.device("meta"):
            self.user_factors = nn.Embedding(n_users + 1, dim)
            self.item_factors = nn.Embedding(n_items + 1, dim)
            self.user_bias = nn.Embedding(n_users + 1, 1)
            self.item_bias = nn.Embedding(n_items + 1, 1)
        self._materialize(seed)

    @staticmethod
    def check_options(options: dict[str, Any], where: str = "{}") -> dict[str, Any]:
        """The given ones of ``n_users``, ``n_items`` and ``dim``, checked; an error names an
        option as ``where.format(name)``."""
        checked = dict(options)
        for name in ("n_users", "n_items", "dim"):
            if name in options:
                checked[name] = check_size(options[name], where.format(name), 1)
        return checked

    @property
    def embedding_dim(self) -> int:
        return self.config["dim"]

    def embed(self, user, items, item_ids, user_ids):
        p = self.user_factors(bucket_ids(user_ids, self.user_factors.num_embeddings))
        q = self.item_factors(bucket_ids(item_ids, self.item_factors.num_embeddings))
        return p[:, None, :] * q

    def head(self, embedding, item_ids, user_ids):
        b_u = self.user_bias(bucket_ids(user_ids, self.user_bias.num_embeddings))  # (B, 1)
        b_i = self.item_bias(bucket_ids(item_ids, self.item_bias.num_embeddings))[..., 0]  # (B, K)
        return embedding.sum(dim=-1) + b_u + b_i
