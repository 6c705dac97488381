"""TwoTower: separate user and item towers joined by a dot product or a small head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from banditrec.models.base import RecModel, bucket_ids, check_hidden, check_size, mlp

__all__ = ["TwoTower"]

_HEADS = ("dot", "mlp")


class TwoTower(RecModel):
    """User tower and item tower, each an MLP over features (plus an optional id embedding).

    With ``head="dot"`` the embedding is ``u ⊙ v`` (towers' outputs, width h) and the score is its
    sum plus a bias: a dot product, so item vectors can be precomputed and searched. With
    ``head="mlp"`` the embedding is ``ReLU(W [u, v, u ⊙ v] + c)`` and the score a linear layer on it.

    Parameters
    ----------
    user_dim, item_dim : int
        d_u and d_i (either may be 0 when ids are embedded instead).
    hidden : int or sequence of int
        Layer sizes of each tower; the last one is the tower output and embedding width h.
    n_users, n_items : int
        Size of the user / item id tables (0: no id embedding). Ids are hashed into the table
        (row 0 holds unknown ids such as anonymous users, -1).
    id_dim : int
        Width of the id embeddings fed to the towers.
    head : {"dot", "mlp"}
    seed : int, SeedSequence, Generator or None
    """

    def __init__(
        self,
        user_dim: int,
        item_dim: int,
        hidden: Sequence[int] | int = (64,),
        n_users: int = 0,
        n_items: int = 0,
        id_dim: int = 16,
        head: str = "dot",
        seed=None,
    ) -> None:
        super().__init__()
        user_dim, item_dim = check_size(user_dim, "user_dim"), check_size(item_dim, "item_dim")
        options = self.check_options({"n_users": n_users, "n_items": n_items, "id_dim": id_dim, "head": head})
        n_users, n_items, id_dim = options["n_users"], options["n_items"], options["id_dim"]
        hidden = check_hidden(hidden)
        self.config = {
            "user_dim": user_dim,
            "item_dim": item_dim,
            "hidden": hidden,
            "n_users": n_users,
            "n_items": n_items,
            "id_dim": id_dim,
            "head": head,
        }
        h = hidden[-1]
        with torch.device("meta"):
            self.user_table = nn.Embedding(n_users + 1, id_dim) if n_users else None
            self.item_table = nn.Embedding(n_items + 1, id_dim) if n_items else None
            # Towers end linearly for the dot product (signs matter), with a ReLU for the MLP head.
            last = head == "mlp"
            self.user_tower = mlp((user_dim + (id_dim if n_users else 0),) + hidden, activate_last=last)
            self.item_tower = mlp((item_dim + (id_dim if n_items else 0),) + hidden, activate_last=last)
            if head == "mlp":
                self.joint = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU())
                self.out = nn.Linear(h, 1)
            else:
                self.bias = nn.Parameter(torch.empty(()))
        self._materialize(seed)
        if head == "dot":
            with torch.no_grad():
                self.bias.zero_()

    @staticmethod
    def check_options(options: dict[str, Any], where: str = "{}") -> dict[str, Any]:
        """The given ones of ``n_users``, ``n_items``, ``id_dim`` and ``head``, checked; an error
        names an option as ``where.format(name)``."""
        checked = dict(options)
        for name, minimum in (("n_users", 0), ("n_items", 0), ("id_dim", 1)):
            if name in options:
                checked[name] = check_size(options[name], where.format(name), minimum)
        if "head" in options and not (isinstance(options["head"], str) and options["head"] in _HEADS):
            raise ValueError(f"{where.format('head')} must be one of {_HEADS}, got {options['head']!r}")
        return checked

    @property
    def embedding_dim(self) -> int:
        return self.config["hidden"][-1]

    def _towers(self, user, items, item_ids, user_ids):
        if self.user_table is not None:
            user = torch.cat(
                [user, self.user_table(bucket_ids(user_ids, self.user_table.num_embeddings))], dim=-1
            )
        if self.item_table is not None:
            items = torch.cat(
                [items, self.item_table(bucket_ids(item_ids, self.item_table.num_embeddings))], dim=-1
            )
        return self.user_tower(user), self.item_tower(items)

    def embed(self, user, items, item_ids, user_ids):
        u, v = self._towers(user, items, item_ids, user_ids)
        u = u[:, None, :].expand_as(v)
        if self.config["head"] == "dot":
            return u * v
        return self.joint(torch.cat([u, v, u * v], dim=-1))

    def head(self, embedding, item_ids, user_ids):
        if self.config["head"] == "dot":
            return embedding.sum(dim=-1) + self.bias
        return self.out(embedding)[..., 0]
