"""PyTorch recommendation models, checkpoints and supervised pretraining from logs.

Every model scores B users × K candidates, ``model(user, items, item_ids, user_ids) -> (B, K)``,
and the built-in ones expose their last hidden layer, ``embed(...) -> (B, K, h)``, on which the
neural bandit policies (:mod:`banditrec.policies.neural`) put their uncertainty.
"""

from banditrec.models.base import (
    RecModel,
    check_embedding,
    check_input_sizes,
    check_scores,
    init_parameters,
    make_generator,
)
from banditrec.models.build import MODEL_KINDS, build_model
from banditrec.models.checkpoint import load_model, save_model
from banditrec.models.device import resolve_device, torch_threads
from banditrec.models.factorization import MatrixFactorization
from banditrec.models.mlp import MLPScorer
from banditrec.models.multi_output import MultiOutputMLP
from banditrec.models.training import SPLITS, LogArrays, as_log_arrays, pretrain, roc_auc, split_rows
from banditrec.models.two_tower import TwoTower

__all__ = [
    "MODEL_KINDS",
    "SPLITS",
    "LogArrays",
    "MLPScorer",
    "MatrixFactorization",
    "MultiOutputMLP",
    "RecModel",
    "TwoTower",
    "as_log_arrays",
    "build_model",
    "check_embedding",
    "check_input_sizes",
    "check_scores",
    "init_parameters",
    "load_model",
    "make_generator",
    "pretrain",
    "resolve_device",
    "roc_auc",
    "save_model",
    "split_rows",
    "torch_threads",
]
