"""MLPScorer: a feed-forward network over the concatenated user and item features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from banditrec.models.base import RecModel, check_hidden, check_size, mlp

__all__ = ["MLPScorer"]


class MLPScorer(RecModel):
    """Score each (user, candidate) pair with an MLP on ``[user, item]`` (optionally ``user ⊙ item``).

    The embedding is the last hidden layer (after its ReLU); the score is a linear layer on it.

    Parameters
    ----------
    user_dim, item_dim : int
        d_u and d_i (either may be 0).
    hidden : int or sequence of int
        Hidden layer sizes; the last one is the embedding width h.
    cross : bool
        Also feed the elementwise product ``user ⊙ item`` (requires d_u = d_i): a cheap
        second-order interaction, as in the generalised matrix factorisation half of NeuMF.
    seed : int, SeedSequence, Generator or None
        Initialisation; torch's global random state is never used.
    """

    def __init__(
        self,
        user_dim: int,
        item_dim: int,
        hidden: Sequence[int] | int = (64,),
        cross: bool = False,
        seed=None,
    ) -> None:
        super().__init__()
        user_dim, item_dim = check_size(user_dim, "user_dim"), check_size(item_dim, "item_dim")
        hidden = check_hidden(hidden)
        cross = self.check_options({"cross": cross})["cross"]
        if cross and user_dim != item_dim:
            raise ValueError(f"cross=True needs user_dim == item_dim, got {user_dim} and {item_dim}")
        self.config = {"user_dim": user_dim, "item_dim": item_dim, "hidden": hidden, "cross": cross}
        d_in = user_dim + item_dim + (item_dim if cross else 0)
        with torch.device("meta"):
            self.body = mlp((d_in,) + hidden)
            self.out = nn.Linear(hidden[-1], 1)
        self._materialize(seed)

    @staticmethod
    def check_options(options: dict[str, Any], where: str = "{}") -> dict[str, Any]:
        """``cross``, if given, checked; an error names it as ``where.format("cross")``."""
        checked = dict(options)
        if "cross" in options:
            # "no" or 0.0 from a config file turned the product on or off by truthiness
            if not isinstance(options["cross"], (bool, np.bool_)):
                raise TypeError(f"{where.format('cross')} must be True or False, got {options['cross']!r}")
            checked["cross"] = bool(options["cross"])
        return checked

    @property
    def embedding_dim(self) -> int:
        return self.config["hidden"][-1]

    def embed(self, user, items, item_ids, user_ids):
        u = user[:, None, :].expand(-1, items.shape[1], -1)
        parts = [u, items, u * items] if self.config["cross"] else [u, items]
        return self.body(torch.cat(parts, dim=-1))

    def head(self, embedding, item_ids, user_ids):
        return self.out(embedding)[..., 0]
