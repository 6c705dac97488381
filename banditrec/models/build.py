"""Models by name: what ``model="mlp" | "two_tower" | "mf" | "multi_output"`` builds."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from banditrec.models.base import RecModel, check_hidden
from banditrec.models.factorization import MatrixFactorization
from banditrec.models.mlp import MLPScorer
from banditrec.models.multi_output import MultiOutputMLP
from banditrec.models.two_tower import TwoTower

__all__ = ["MODEL_KINDS", "build_model", "check_model_options"]

MODEL_KINDS = ("mlp", "two_tower", "mf", "multi_output")

# Id tables for "mf" when the catalogue size is not given: ids beyond are hashed into the table.
DEFAULT_ID_ROWS = 1024


def check_model_options(kind: str, options: dict) -> type:
    """The built-in model class of ``kind``, or an error naming an unknown kind or option, a
    missing ``n_items`` or a bad option value (``model_options['n_items'] must be ...``): what a
    policy checks when it is made. Only what needs the feature sizes (``cross=True`` with equal
    sizes, ``multi_output``'s user features) waits for the model to be built from the first batch."""
    if not (isinstance(kind, str) and kind in MODEL_KINDS):
        raise ValueError(f"unknown model {kind!r}; choose one of {MODEL_KINDS} or pass an nn.Module")
    cls = {"mlp": MLPScorer, "two_tower": TwoTower, "mf": MatrixFactorization, "multi_output": MultiOutputMLP}[kind]
    valid = set(inspect.signature(cls).parameters) - {"user_dim", "item_dim", "hidden", "dim", "seed"}
    unknown = set(options) - valid
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown, key=str)} for model {kind!r}; valid: {sorted(valid)}")
    if kind == "multi_output" and "n_items" not in options:
        raise ValueError(
            "model 'multi_output' has one output per item: give its catalogue size, "
            "e.g. model_options={'n_items': 5} (in a config file: model_options = {n_items = 5})"
        )
    cls.check_options(options, "model_options[{!r}]")
    return cls


def build_model(
    kind: str, user_dim: int, item_dim: int, hidden: Sequence[int] | int = (64,), seed=None, **options: Any
) -> RecModel:
    """Build a built-in model for the given feature sizes.

    Parameters
    ----------
    kind : {"mlp", "two_tower", "mf", "multi_output"}
        :class:`MLPScorer`, :class:`TwoTower`, :class:`MatrixFactorization` (whose embedding
        width is ``hidden[-1]`` and whose id tables default to 1024 rows each) or
        :class:`MultiOutputMLP` (one output per item; needs ``n_items``).
    user_dim, item_dim : int
    hidden : int or sequence of int
    seed : int, SeedSequence, Generator or None
    **options
        Further constructor arguments of the chosen class (e.g. ``cross=True``, ``head="mlp"``,
        ``n_items=1682``).
    """
    cls = check_model_options(kind, options)
    if kind == "mf":
        options = {"n_users": DEFAULT_ID_ROWS, "n_items": DEFAULT_ID_ROWS, **options}
        return MatrixFactorization(dim=check_hidden(hidden)[-1], seed=seed, **options)
    return cls(user_dim, item_dim, hidden, seed=seed, **options)
