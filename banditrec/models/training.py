"""Supervised (pre)training of a recommendation model from logged feedback.

A model fitted on logs (clicks with binary cross-entropy, ratings with squared error) is a warm
start for a neural bandit policy, or the reward model of the direct method in off-policy
evaluation. The logs are split train / validation / test (:func:`split_rows`: a seeded permutation
of the rows, whole users held out, or the latest rows held out); Adam runs with early stopping on
the validation loss, and the best weights are restored.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from banditrec._util import as_generator
from banditrec.models.base import check_input_sizes, check_scores
from banditrec.models.device import resolve_device, torch_threads

__all__ = [
    "LOSSES", "SPLITS", "LogArrays", "as_log_arrays", "loss_function", "pretrain", "roc_auc", "split_rows"
]

LOSSES = ("bce", "mse")
SPLITS = ("row", "user", "time")


@dataclass(frozen=True)
class LogArrays:
    """n logged (user, chosen item, reward) rows: what supervised training needs.

    Attributes
    ----------
    user_features : ndarray, shape (n, d_u)
    item_features : ndarray, shape (n, d_i)
        Features of the chosen item only.
    item_ids : ndarray, shape (n,), int64
    user_ids : ndarray, shape (n,), int64
        -1 where anonymous.
    rewards : ndarray, shape (n,)
    timestamps : ndarray, shape (n,), numeric or datetime64, optional
        When each row was logged; only ``split="time"`` reads them (and refuses NaN or NaT).
    """

    user_features: np.ndarray
    item_features: np.ndarray
    item_ids: np.ndarray
    user_ids: np.ndarray
    rewards: np.ndarray
    timestamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        rewards = np.asarray(self.rewards, dtype=np.float64)
        if rewards.ndim != 1:
            raise ValueError(f"rewards must be a 1-d array, got shape {rewards.shape}")
        n = rewards.size
        expected = {
            "user_features": (np.float64, 2),
            "item_features": (np.float64, 2),
            "item_ids": (np.int64, 1),
            "user_ids": (np.int64, 1),
        }
        for name, (dtype, ndim) in expected.items():
            if dtype is np.int64:
                _check_whole(name, np.asarray(getattr(self, name)))
            value = np.asarray(getattr(self, name), dtype=dtype)
            if value.ndim != ndim or value.shape[0] != n:
                want = f"({n}, d)" if ndim == 2 else f"({n},)"
                raise ValueError(f"{name} must have shape {want} to match {n} rewards, got {value.shape}")
            if dtype is np.float64 and not np.isfinite(value).all():
                rows = np.flatnonzero(~np.isfinite(value).all(axis=1))[:5].tolist()
                raise ValueError(f"{name} contains NaN or inf (rows {rows})")
            object.__setattr__(self, name, value)
        if not np.isfinite(rewards).all():
            raise ValueError(
                f"rewards contain NaN or inf at rows {np.flatnonzero(~np.isfinite(rewards))[:5].tolist()}"
            )
        object.__setattr__(self, "rewards", rewards)
        if self.timestamps is not None:
            timestamps = np.asarray(self.timestamps)
            if timestamps.dtype.kind not in "iufM":
                raise TypeError(f"timestamps must be numeric or datetime64, got dtype {timestamps.dtype}")
            if timestamps.shape != (n,):
                raise ValueError(
                    f"timestamps must have shape ({n},) to match {n} rewards, got {timestamps.shape}"
                )
            object.__setattr__(self, "timestamps", timestamps)

    def __len__(self) -> int:
        return self.rewards.size

    def take(self, index: np.ndarray) -> LogArrays:
        return LogArrays(
            self.user_features[index],
            self.item_features[index],
            self.item_ids[index],
            self.user_ids[index],
            self.rewards[index],
            None if self.timestamps is None else self.timestamps[index],
        )


def as_log_arrays(data: Any) -> LogArrays:
    """Accept :class:`LogArrays`, a LoggedFeedback-like object or a mapping of arrays.

    A LoggedFeedback-like object has ``user_features (n, d_u)``, ``item_features (n, K, d_i)``,
    ``item_ids (n, K)``, ``user_ids (n,)``, ``actions (n,)`` and ``rewards (n,)``; the chosen
    candidate's features and id are taken. A mapping needs the :class:`LogArrays` fields (with
    the chosen item's features, shape (n, d_i)). ``user_ids`` (default: all -1, anonymous) and
    ``timestamps`` (a key or an attribute) are optional.
    """
    if isinstance(data, LogArrays):
        return data
    if isinstance(data, Mapping):
        names = ("user_features", "item_features", "item_ids", "user_ids", "rewards")
        missing = [k for k in names if k not in data and k != "user_ids"]
        if missing:
            raise KeyError(
                f"log arrays lack keys {missing}; need {list(names)} (user_ids and timestamps optional)"
            )
        n = len(np.asarray(data["rewards"]))
        user_ids = data.get("user_ids", np.full(n, -1, dtype=np.int64))
        return LogArrays(
            data["user_features"],
            data["item_features"],
            data["item_ids"],
            user_ids,
            data["rewards"],
            data.get("timestamps"),
        )
    needed = ("user_features", "item_features", "item_ids", "user_ids", "actions", "rewards")
    missing = [k for k in needed if not hasattr(data, k)]
    if missing:
        raise TypeError(
            f"expected LogArrays, a LoggedFeedback-like object or a mapping of arrays; "
            f"{type(data).__name__} lacks attributes {missing}"
        )
    items = np.asarray(data.item_features)
    ids = np.asarray(data.item_ids)
    if items.ndim != 3 or ids.ndim != 2:
        raise ValueError(
            f"a feedback object's item_features must be (n, K, d_i) and item_ids (n, K), "
            f"got {items.shape} and {ids.shape}"
        )
    actions = np.asarray(data.actions)
    n, K = ids.shape
    if actions.shape != (n,):
        raise ValueError(
            f"a feedback object's actions must have shape ({n},) to match its item_ids, got {actions.shape}"
        )
    # -1 would silently take each row's last candidate, 0.7 its first: candidate indices only
    _check_whole("actions", actions)
    actions = actions.astype(np.int64)
    if n and (actions.min() < 0 or actions.max() >= K):
        raise ValueError(
            f"a feedback object's actions must be candidate indices in [0, {K}), "
            f"got range [{actions.min()}, {actions.max()}]"
        )
    rows = np.arange(n)
    return LogArrays(
        data.user_features,
        items[rows, actions],
        ids[rows, actions],
        data.user_ids,
        data.rewards,
        getattr(data, "timestamps", None),
    )


def _check_whole(name: str, value: np.ndarray) -> None:
    """Ids and candidate indices must be integers: numpy's cast would turn 2.7 into 2 and NaN into
    -2**63 (an anonymous id to the models) without a word."""
    if value.dtype.kind in "iub":
        return
    if value.dtype.kind == "f":
        bad = ~(np.isfinite(value) & (value == np.round(value)))
        if bad.any():
            first = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} must hold integers, got {value[tuple(first)].item()!r} at index {first.tolist()}"
            )
        return
    if value.dtype.kind in "USc":
        raise TypeError(f"{name} must hold integers, got dtype {value.dtype}")


def loss_function(loss: str):
    """The training loss on raw model outputs: squared error, or BCE with the output as a logit."""
    if loss == "mse":
        return F.mse_loss
    if loss == "bce":
        return F.binary_cross_entropy_with_logits
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties counted half); NaN with a single class."""
    from scipy.stats import rankdata

    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def split_rows(
    data: Any,
    split: str = "row",
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the training, validation and test parts, as :func:`pretrain` splits the logs.

    Parameters
    ----------
    data : LogArrays, LoggedFeedback-like object or mapping of arrays
        See :func:`as_log_arrays`.
    split : {"row", "user", "time"}
        ``"row"``: a seeded permutation of the rows; ``round(test_fraction · n)`` of them are the
        test part and ``round(val_fraction · n)`` the validation part. A user's other interactions
        may be in the training rows, so the test part measures new interactions of known users.

        ``"user"``: whole users held out. The fractions are shares of the distinct user ids (not of
        the rows): a seeded permutation of the ids gives ``round(test_fraction · n_users)`` test
        users and ``round(val_fraction · n_users)`` validation users, and each part has all rows of
        its users, so its share of rows follows those users' activity. Rows of anonymous users
        (id -1) carry no identity to hold out and always stay in the training part. No user id
        appears in two parts, so the test part measures users the model has never seen.

        ``"time"``: the latest rows held out, no randomness. The rows are ordered by the logs'
        ``timestamps`` (stably: rows with equal times keep their row order, so ties at a boundary
        may fall on both sides of it) or, without timestamps, by row order; the last
        ``round(test_fraction · n)`` are the test part, the ``round(val_fraction · n)`` before
        them the validation part and the rest the training part.
    val_fraction, test_fraction : float
        In [0, 1). A positive fraction that rounds to no row (no user for ``"user"``) is refused.
    seed : int, SeedSequence, Generator or None
        Permutes the rows (``"row"``) or the users (``"user"``); unused by ``"time"``. An int or a
        SeedSequence gives the split that :func:`pretrain` uses with the same seed (a Generator is
        advanced by each call).

    Returns
    -------
    train, val, test : ndarray of int64, shape (n_train,), (n_val,), (n_test,)
        Disjoint row indices that together cover every row: in permutation order for ``"row"``,
        in row order for ``"user"``, in time order for ``"time"``.

    Raises
    ------
    ValueError
        For an unknown ``split``; a fraction outside [0, 1) or one that gives an empty part; too
        few rows, or (``"user"``) too few distinct user ids or ids below -1; ``"time"`` with NaN
        or NaT timestamps.
    """
    _check_split(split)
    _check_fractions(val_fraction, test_fraction)
    return _split_rows(as_log_arrays(data), split, val_fraction, test_fraction, as_generator(seed))


def _check_split(split: Any) -> None:
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_fractions(val_fraction: Any, test_fraction: Any) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        # a string would reach a comparison and fail as "'<=' not supported"
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {value!r}")


def _part_sizes(n: int, unit: str, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_val, n_test) of ``n`` rows or users; refused when a part asked for is empty or none is left."""
    n_test = round(test_fraction * n)
    n_val = round(val_fraction * n)
    for name, fraction, size in (("val_fraction", val_fraction, n_val), ("test_fraction", test_fraction, n_test)):
        if fraction > 0 and size == 0:  # early stopping or the test metrics would silently be off
            raise ValueError(f"{name}={fraction} of {n} {unit}s is no {unit}; give more {unit}s or {name}=0")
    if n - n_test - n_val < 1:
        left = "no training data" if unit == "row" else f"no training {unit}"
        raise ValueError(
            f"{n} {unit}s leave {left} with val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    return n_val, n_test


def _split_rows(
    logs: LogArrays, split: str, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(logs)
    if split == "row":
        n_val, n_test = _part_sizes(n, "row", val_fraction, test_fraction)
        perm = rng.permutation(n)
        return perm[n_test + n_val :], perm[n_test : n_test + n_val], perm[:n_test]
    if split == "user":
        return _split_users(logs.user_ids, val_fraction, test_fraction, rng)
    return _split_time(logs.timestamps, n, val_fraction, test_fraction)


def _split_users(
    user_ids: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if user_ids.size and user_ids.min() < -1:
        raise ValueError(
            f"split='user' needs user_ids >= 0, or -1 for anonymous users, got {int(user_ids.min())}"
        )
    known = user_ids >= 0
    users, inverse = np.unique(user_ids[known], return_inverse=True)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if users.size < needed:
        raise ValueError(
            f"split='user' needs at least {needed} distinct user ids (one for training and one for each "
            f"held-out part) with val_fraction={val_fraction}, test_fraction={test_fraction}; the logs have "
            f"{users.size} (-1, anonymous, is no user): use split='row' or 'time'"
        )
    n_val, n_test = _part_sizes(users.size, "user", val_fraction, test_fraction)
    # Users' places in a seeded permutation: the first n_test are the test users, the next n_val
    # the validation users, as the row split lays out rows.
    place = np.empty(users.size, dtype=np.int64)
    place[rng.permutation(users.size)] = np.arange(users.size)
    row_place = np.full(user_ids.size, users.size, dtype=np.int64)  # anonymous rows: training
    row_place[known] = place[inverse]
    test = row_place < n_test
    val = (row_place >= n_test) & (row_place < n_test + n_val)
    return np.flatnonzero(~(test | val)), np.flatnonzero(val), np.flatnonzero(test)


def _split_time(
    timestamps: np.ndarray | None, n: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if timestamps is None:
        order = np.arange(n)
    else:
        missing = np.isnat(timestamps) if timestamps.dtype.kind == "M" else ~np.isfinite(timestamps)
        if missing.any():
            rows = np.flatnonzero(missing)
            raise ValueError(
                f"split='time' needs finite timestamps; {rows.size} are NaN or NaT (rows {rows[:5].tolist()})"
            )
        order = np.argsort(timestamps, kind="stable")
    n_val, n_test = _part_sizes(n, "row", val_fraction, test_fraction)
    n_train = n - n_val - n_test
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


class _Tensors:
    """A LogArrays on a device, as the model's inputs (candidates axis of length 1)."""

    def __init__(self, logs: LogArrays, device: torch.device) -> None:
        f32 = {"dtype": torch.float32, "device": device}
        self.user = torch.as_tensor(logs.user_features, **f32)
        self.items = torch.as_tensor(logs.item_features, **f32)[:, None, :]
        self.item_ids = torch.as_tensor(logs.item_ids, device=device)[:, None]
        self.user_ids = torch.as_tensor(logs.user_ids, device=device)
        self.rewards = torch.as_tensor(logs.rewards, **f32)

    def outputs(self, model: nn.Module, index=slice(None)) -> torch.Tensor:
        user = self.user[index]
        out = model(user, self.items[index], self.item_ids[index], self.user_ids[index])
        return check_scores(out, user.shape[0], 1, type(model).__name__)[:, 0]


def _evaluate(model, data: _Tensors, loss_fn, batch_size: int) -> tuple[float, np.ndarray]:
    model.eval()
    n = data.rewards.shape[0]
    outs = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            outs.append(data.outputs(model, slice(start, start + batch_size)))
    out = torch.cat(outs)
    return float(loss_fn(out, data.rewards)), out.cpu().numpy()


def _child_seed(rng: np.random.Generator) -> int:
    """A seed for torch from ``rng`` without advancing its stream (a spawned child), or from a draw
    when its bit generator has no SeedSequence to spawn from."""
    try:
        child = rng.spawn(1)[0]
    except (TypeError, ValueError):
        child = rng
    return int(child.integers(2**63))


def no_gradient_message(model: nn.Module) -> str:
    """The error for a model whose output does not depend on its trainable parameters."""
    return (
        f"{type(model).__name__}'s output does not depend on its trainable parameters (no gradient reaches "
        "them): does its forward run under torch.no_grad() or detach() its result? A model trained online or "
        "pretrained must return scores autograd can differentiate"
    )


@contextlib.contextmanager
def forked_torch_rng(device: torch.device, seed: int):
    """Seed torch's generator for ``device`` (and the CPU's) inside, restore the caller's after:
    a model that draws from torch's global generator while it trains (dropout) trains the same
    way for the same seed, and the caller's stream is left as it was."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        yield


def pretrain(
    model: nn.Module,
    data: Any,
    *,
    loss: str = "auto",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split: str = "row",
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int = 5,
    seed=None,
    device: str | torch.device = "auto",
    num_threads: int | None = 1,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fit ``model`` to logged rewards; early stopping on the validation loss.

    Parameters
    ----------
    model : nn.Module
        Called as ``model(user (n, d_u), items (n, 1, d_i), item_ids (n, 1), user_ids (n,))``
        returning (n, 1) outputs: logits for ``"bce"``, predicted rewards for ``"mse"``.
    data : LogArrays, LoggedFeedback-like object or mapping of arrays
        See :func:`as_log_arrays`.
    loss : {"auto", "bce", "mse"}
        ``"auto"``: BCE when every reward is 0 or 1 (clicks), else MSE (ratings).
    val_fraction, test_fraction : float
        Shares held out for validation and test: of the rows, or of the users for
        ``split="user"``. With ``val_fraction=0`` all epochs run.
    split : {"row", "user", "time"}
        How the logs are split, as :func:`split_rows` does (which returns the row indices):
        ``"row"`` (default) a seeded permutation of the rows, so the test metrics measure new
        interactions of known users; ``"user"`` whole users held out, so they measure users never
        seen in training (anonymous rows, id -1, stay in training); ``"time"`` the latest rows held
        out (by ``timestamps`` when the logs have them, else by row order), so they measure the
        future.
    epochs, batch_size, lr, weight_decay : training of Adam over shuffled minibatches.
    patience : int
        Epochs without a better validation loss before stopping; the best weights are restored.
    seed : int, SeedSequence, Generator or None
        The split (except ``"time"``, which draws nothing), the shuffling and the draws of random
        layers such as dropout (from a private fork of torch's generator; the caller's is left as
        it was). The model's initialisation is the caller's.
    device : "auto", "cpu", "cuda" or torch.device
    num_threads : int or None
        Torch CPU threads during training (restored afterwards); None leaves torch's setting.

    Returns
    -------
    model : nn.Module
        The same object, trained, on ``device``, with ``model.banditrec_loss`` set to the loss it
        was trained with (``"bce"`` or ``"mse"``, after ``"auto"`` is resolved): a neural policy
        given this model checks that its own loss matches.
    metrics : dict
        ``loss``, ``train_loss`` (the last epoch's mean training loss), ``val_loss`` (the best
        epoch's, whose weights are returned), ``test_loss`` and ``test_auc`` (of the returned
        weights; AUC for BCE only, NaN without both classes), ``best_epoch``, ``epochs_run``,
        ``split``, ``n_train``, ``n_val``, ``n_test`` (rows) and, for ``split="user"``,
        ``n_train_users``, ``n_val_users``, ``n_test_users`` (distinct user ids, anonymous not
        counted).

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or infinite, naming the epoch and step.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if not any(p.requires_grad for p in params):  # torch: "optimizer got an empty parameter list"
        raise ValueError(
            f"model {type(model).__name__} has no trainable parameters; pretrain has nothing to fit"
        )
    # The logs go in as float32 (as the neural policies feed them); torch would say "mat1 and mat2
    # must have the same dtype" only once training starts.
    wide = sorted({str(p.dtype) for p in params if p.is_floating_point() and p.dtype != torch.float32})
    if wide:
        raise TypeError(
            f"model {type(model).__name__} has {', '.join(wide)} parameters; pretrain feeds and trains it "
            "in float32: pass model.float()"
        )
    with torch_threads(num_threads):
        return _pretrain(
            model,
            as_log_arrays(data),
            loss,
            val_fraction,
            test_fraction,
            split,
            epochs,
            batch_size,
            lr,
            weight_decay,
            patience,
            seed,
            device,
        )


def _pretrain(
    model,
    logs,
    loss,
    val_fraction,
    test_fraction,
    split,
    epochs,
    batch_size,
    lr,
    weight_decay,
    patience,
    seed,
    device,
):
    if len(logs) == 0:
        raise ValueError("no logged rows to train on")
    _check_split(split)
    _check_fractions(val_fraction, test_fraction)
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        # a string would reach a comparison and fail as "'<=' not supported"
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number, got {value!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        # bool is an int to Python: epochs=True would run one epoch silently
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not 0 < lr < float("inf"):
        raise ValueError(f"lr must be > 0 and finite, got {lr!r}")
    if not 0 <= weight_decay < float("inf"):
        raise ValueError(f"weight_decay must be >= 0 and finite, got {weight_decay!r}")
    check_input_sizes(model, logs.user_features.shape[1], logs.item_features.shape[1], "the logs")
    binary = bool(np.isin(logs.rewards, (0.0, 1.0)).all())
    if loss == "auto":
        loss = "bce" if binary else "mse"
    loss_fn = loss_function(loss)
    if loss == "bce" and not ((logs.rewards >= 0) & (logs.rewards <= 1)).all():
        raise ValueError("loss='bce' needs rewards in [0, 1]; use loss='mse' for ratings")

    rng = as_generator(seed)
    train_idx, val_idx, test_idx = _split_rows(logs, split, val_fraction, test_fraction, rng)
    dev = resolve_device(device)
    model.to(dev)
    train, val, test = (_Tensors(logs.take(i), dev) for i in (train_idx, val_idx, test_idx))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    # Dropout and other random layers draw from torch's global generator: seed a private fork of it
    # so the same seed gives the same weights (spawn leaves rng's own stream, the split's and the
    # shuffles', as it was).
    with forked_torch_rng(dev, _child_seed(rng)):
        best_val, best_epoch, best_state = float("inf"), 0, None
        train_loss = float("nan")
        epoch = 0
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.as_tensor(rng.permutation(train_idx.size), device=dev)
            total = 0.0
            for step, start in enumerate(range(0, perm.numel(), batch_size)):
                idx = perm[start : start + batch_size]
                value = loss_fn(train.outputs(model, idx), train.rewards[idx])
                if not torch.isfinite(value):
                    raise FloatingPointError(
                        f"pretrain: the {loss} loss became {float(value.detach())} at epoch {epoch}, step {step} "
                        f"(lr={lr}); check the inputs for extreme values or lower the learning rate"
                    )
                if not value.requires_grad:
                    raise ValueError(no_gradient_message(model))
                optimizer.zero_grad()
                value.backward()
                optimizer.step()
                total += float(value.detach()) * idx.numel()
            train_loss = total / perm.numel()
            if val_idx.size == 0:
                best_epoch = epoch
                continue
            val_loss, _ = _evaluate(model, val, loss_fn, 4096)
            if not np.isfinite(val_loss):
                raise FloatingPointError(f"pretrain: the validation loss became {val_loss} after epoch {epoch}")
            if val_loss < best_val:
                best_val, best_epoch = val_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    metrics: dict[str, Any] = {
        "loss": loss,
        "train_loss": train_loss,
        "val_loss": best_val if val_idx.size else float("nan"),
        "test_loss": float("nan"),
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        "split": split,
        "n_train": int(train_idx.size),
        "n_val": int(val_idx.size),
        "n_test": int(test_idx.size),
    }
    if split == "user":
        for part, index in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
            ids = logs.user_ids[index]
            metrics[f"n_{part}_users"] = int(np.unique(ids[ids >= 0]).size)
    if test_idx.size:
        metrics["test_loss"], out = _evaluate(model, test, loss_fn, 4096)
    if loss == "bce":
        metrics["test_auc"] = roc_auc(logs.rewards[test_idx], out) if test_idx.size else float("nan")
    model.eval()
    model.banditrec_loss = loss  # outputs are logits for "bce", rewards for "mse": a policy must agree
    return model, metrics
