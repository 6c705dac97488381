"""MultiOutputMLP: one network over the user features with one output per item (the classic
neural contextual bandit of Riquelme et al. 2018)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from banditrec._util import is_real
from banditrec.models.base import LINEAR_INITS, RecModel, check_hidden, check_size, mlp

__all__ = ["MultiOutputMLP"]


class MultiOutputMLP(RecModel):
    """score(u, i) = w_iᵀ φ(u) + c_i with φ an MLP over the user features only.

    The embedding φ(u) is the same for every candidate (it is broadcast over K without a copy), so
    a per-item Bayesian head on it (``head="per_item"`` of the neural policies) is exactly the
    per-arm Bayesian linear regression of NeuralLinear in "Deep Bayesian Bandits Showdown". Item
    features are ignored; item ids must lie in ``[0, n_items)`` — an output per arm has no
    sensible way to share rows, so other ids raise instead of being hashed.

    Parameters
    ----------
    user_dim, item_dim : int
        d_u and d_i (item features are accepted and ignored).
    n_items : int
        Number of outputs (arms).
    hidden : int or sequence of int
        Hidden layer sizes; the last one is the embedding width h.
    init : {"torch", "glorot", "uniform"}
        Initialisation of the linear layers (:func:`banditrec.models.base.init_parameters`);
        "glorot" is TF1's default; "uniform" (weights in ±``init_scale``, zero biases) is what
        Riquelme et al.'s code gives every layer of its networks (``init_scale=0.3``).
    init_scale : float
        The bound of ``init="uniform"``; ignored otherwise.
    seed : int, SeedSequence, Generator or None
    """

    def __init__(
        self, user_dim: int, item_dim: int, hidden: Sequence[int] | int = (64,), n_items: int = 0,
        init: str = "torch", init_scale: float = 0.3, seed=None,
    ) -> None:
        super().__init__()
        user_dim, item_dim = check_size(user_dim, "user_dim", 1), check_size(item_dim, "item_dim")
        options = self.check_options({"n_items": n_items, "init": init, "init_scale": init_scale})
        n_items, init_scale = options["n_items"], options["init_scale"]
        hidden = check_hidden(hidden)
        self.config = {"user_dim": user_dim, "item_dim": item_dim, "hidden": hidden, "n_items": n_items}
        if init != "torch":  # recorded only when set, so older checkpoints keep matching
            self.config["init"] = init
        if init == "uniform":
            self.config["init_scale"] = init_scale
        with torch.device("meta"):
            self.body = mlp((user_dim,) + hidden)
            self.out = nn.Linear(hidden[-1], n_items)
        self._materialize(seed, linear=init, scale=init_scale)

    @staticmethod
    def check_options(options: dict[str, Any], where: str = "{}") -> dict[str, Any]:
        """The given ones of ``n_items``, ``init`` and ``init_scale``, checked (what can be checked
        before the feature sizes are known); an error names an option as ``where.format(name)``."""
        checked = dict(options)
        if "n_items" in options:
            checked["n_items"] = check_size(options["n_items"], where.format("n_items"), 1)
        if "init" in options and not (isinstance(options["init"], str) and options["init"] in LINEAR_INITS):
            raise ValueError(f"{where.format('init')} must be one of {LINEAR_INITS}, got {options['init']!r}")
        if "init_scale" in options:
            # checked whatever the init, as init_parameters does: inf only failed inside nn.init.uniform_
            scale = options["init_scale"]
            if not (is_real(scale) and 0 < scale < math.inf):
                raise ValueError(f"{where.format('init_scale')} must be a number > 0 and finite, got {scale!r}")
            checked["init_scale"] = float(scale)
        return checked

    def input_sizes(self) -> dict[str, int]:
        return {"user_dim": self.config["user_dim"]}  # item features are ignored

    @staticmethod
    def check_item_ids(n_items: int, lo: int, hi: int) -> None:
        """Ids outside ``[0, n_items)`` have no output: a ValueError naming the range."""
        if lo < 0 or hi >= n_items:
            raise ValueError(
                f"MultiOutputMLP has {n_items} outputs (n_items={n_items}) but got item ids in "
                f"[{lo}, {hi}]; set model_options n_items to the catalogue size"
            )

    @property
    def embedding_dim(self) -> int:
        return self.config["hidden"][-1]

    def embed(self, user, items, item_ids, user_ids):
        # The body's Linear and ReLU layers run as the functions their forward calls: the same
        # kernels without nn.Module's per-call machinery, a quarter of a one-user forward pass.
        phi = user
        for layer in self.body:
            if type(layer) is nn.Linear:
                phi = F.linear(phi, layer.weight, layer.bias)
            elif type(layer) is nn.ReLU:
                phi = torch.relu(phi)
            else:
                phi = layer(phi)
        return phi[:, None, :].expand(-1, item_ids.shape[1], -1)

    def head(self, embedding, item_ids, user_ids):
        n = self.config["n_items"]
        lo, hi = 0, 0
        # Values cannot be read inside a CUDA graph capture (training rows, whose ids passed this
        # check when they were chosen) nor inside torch.func.vmap (gradient features: the same ids
        # already passed it in the plain forward pass).
        if item_ids.numel() and not (item_ids.is_cuda and torch.cuda.is_current_stream_capturing()):
            try:
                lo, hi = int(item_ids.min()), int(item_ids.max())
            except RuntimeError:  # vmap
                pass
        self.check_item_ids(n, lo, hi)
        scores = self.out(embedding[:, 0, :])  # (B, n_items): φ(u) is the same for every candidate
        return scores.gather(1, item_ids)
