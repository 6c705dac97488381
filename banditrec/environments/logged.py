"""A world fitted from any table of interactions: logistic matrix factorisation as hidden truth.

:meth:`LoggedDataWorld.from_interactions` turns a table of (user, item, reward) rows into a
simulator:

1. **Binarise** the feedback: ``reward >= like_threshold`` (ratings), or a 0/1 column as is (clicks).
2. **Fit the ground truth**, a logistic matrix factorisation
   ``logit = p_u·q_i + b_u + b_i + b_0`` (PyTorch on the CPU, full-batch Adam, L2 on the factors and
   biases of each sample), deterministic given ``seed``.

   *Implicit negatives.* A rating table says what a user liked *among what they chose to rate*; a
   recommender's click is "would this user engage with this item if shown it", and most shown items
   are ones the user would never have picked. So besides the observed pairs (liked = 1, rated but
   not liked = 0) the fit sees ``implicit_negatives`` unobserved pairs per observed pair, labelled 0:
   for each, the user of a random observed row and an item drawn uniformly among those the user
   never interacted with (weighted implicit feedback in the spirit of Hu, Koren & Volinsky 2008 and
   Johnson 2014, with sampling instead of all pairs to keep the fit a few seconds). Drawing the user
   from observed rows keeps each user's negatives proportional to their activity, so user biases
   learn taste rather than how much someone rates, while uniform items let the item biases learn
   popularity. With click logs that already hold non-clicks set ``implicit_negatives=0``.
3. **Report fidelity** on a held-out ``holdout`` share of the observed rows (plus as many fresh
   implicit negatives): AUC and log-loss (``fidelity["auc"]``, ``["log_loss"]``), and the harder AUC
   and log-loss among rated pairs only, liked vs not (``["auc_rated"]``, ``["log_loss_rated"]``).
4. **Calibrate**: the click probability is ``sigmoid(logit / temperature + offset)`` with ``offset``
   chosen so that the mean click probability of a random candidate for an arriving user (under the
   world's arrival and candidate distributions over the whole catalogue — with cold start the
   catalogue at the start clicks at ``initial_click_rate`` instead; with popularity candidates an item's chance of
   being shown is taken proportional to its weight, which is approximate when sampling without
   replacement) equals ``target_click_rate``, like a recommender's feed rather than the rating
   table's like rate.

The fitted truth is cached (key: hash of the binarised data and every fit parameter; written
atomically with a checksum), so building the same world again skips the fit (MovieLens-100k: 1.3–1.8 s
from the cache, against about 8 s the first time).

Each step B users arrive (uniformly or proportional to their activity), each is shown K distinct
candidates (uniformly or by popularity) among the items available so far, and a click is
Bernoulli(true probability). The policy sees only *observable* features: the user and item tables
given (numeric columns standardised, 0/1 columns kept, categoricals one-hot), never the hidden
factors unless ``reveal_truth=True`` (an ablation that appends ``[p_u, b_u]`` and ``[q_i, b_i]``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import os
import re
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import rankdata

from banditrec.data.cache import ChecksumError, DataFormatError, cache_root, open_entry, write_entry
from banditrec.environments.candidates import sample_candidates
from banditrec.environments.simulator import Observation, UserSimulator

__all__ = ["LoggedDataWorld", "LogisticMFTruth", "encode_features", "fit_logistic_mf"]

logger = logging.getLogger(__name__)

_TRUTH_VERSION = "logistic-mf-v1"
_MAX_CALIBRATION_PAIRS = 2_000_000
_DENSE_LIMIT = 4_000_000


# ------------------------------------------------------------------------------------------
# Ground truth


@dataclass(frozen=True)
class LogisticMFTruth:
    """A fitted logistic matrix factorisation.

    ``logit(u, i) = user_factors[u] · item_factors[i] + user_bias[u] + item_bias[i] + global_bias``

    Attributes
    ----------
    user_factors : ndarray, shape (n_users, d), float64
    item_factors : ndarray, shape (n_items, d), float64
    user_bias : ndarray, shape (n_users,), float64
    item_bias : ndarray, shape (n_items,), float64
    global_bias : float
    fidelity : dict
        Held-out ``auc``, ``log_loss`` (observed pairs and implicit negatives), ``auc_rated``,
        ``log_loss_rated`` (rated pairs only; NaN when one class is absent), ``n_train``, ``n_test``,
        ``fit_seconds``.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    global_bias: float
    fidelity: Mapping[str, float] = field(default_factory=dict)

    def logits(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Logits of the pairs ``(users[j], items[j])``; any matching shapes."""
        dot = np.einsum("...d,...d->...", self.user_factors[users], self.item_factors[items])
        return dot + self.user_bias[users] + self.item_bias[items] + self.global_bias


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties count one half)."""
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _log_loss(labels: np.ndarray, logits: np.ndarray) -> float:
    if labels.size == 0:
        return float("nan")
    # log(1 + exp(-z)) for y = 1 and log(1 + exp(z)) for y = 0, computed stably.
    signed = np.where(labels > 0.5, logits, -logits)
    return float(np.mean(np.logaddexp(0.0, -signed)))


def _sample_negatives(
    rng: np.random.Generator,
    user_pool: np.ndarray,
    n: int,
    n_items: int,
    observed_codes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs (user from ``user_pool``, uniform item) not among the sorted ``observed_codes``."""
    users, items = np.empty(0, np.int64), np.empty(0, np.int64)
    for _ in range(20):  # a few rounds of rejection; dense users rarely need more than two
        need = n - users.size
        if need <= 0:
            break
        u = user_pool[rng.integers(0, user_pool.size, size=2 * need)]
        i = rng.integers(0, n_items, size=2 * need)
        codes = u * n_items + i
        pos = np.searchsorted(observed_codes, codes)
        pos[pos == observed_codes.size] = 0
        keep = observed_codes[pos] != codes
        users = np.concatenate([users, u[keep][:need]])
        items = np.concatenate([items, i[keep][:need]])
    return users, items


@contextmanager
def _single_thread():
    """Run torch on one thread: the sums then have one order, so the fit is bit-identical on any
    machine, and on a small problem one thread is also faster than several that contend."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_logistic_mf(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    labels: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    embedding_dim: int = 16,
    l2: float = 2e-2,
    epochs: int = 150,
    learning_rate: float = 0.05,
    implicit_negatives: float = 1.0,
    holdout: float = 0.1,
    seed: int = 0,
    method: str = "auto",
) -> LogisticMFTruth:
    """Fit a logistic matrix factorisation to binary feedback (see the module docstring).

    The objective is the mean binary cross-entropy over the observed training pairs plus
    ``implicit_negatives`` times as much weight on unobserved pairs labelled 0, plus ``l2`` times
    the squared norms of each pair's factors and biases. ``method="dense"`` evaluates it on the
    whole user x item matrix (every unobserved pair gets an equal share of the implicit weight);
    ``"sampled"`` draws ``implicit_negatives`` unobserved pairs per observed pair instead, for
    catalogues too large for a dense matrix; ``"auto"`` is dense up to 4 million pairs.

    Parameters
    ----------
    user_idx, item_idx : ndarray, shape (n,), int
        Observed pairs, as indices in ``[0, n_users)`` and ``[0, n_items)``.
    labels : ndarray, shape (n,)
        1 where liked/clicked, 0 otherwise.
    n_users, n_items : int
    embedding_dim : int
        d, the rank of the factorisation.
    l2 : float
        Weight of the squared norms of each pair's factors and biases (averaged like the loss).
    epochs : int
        Full-batch Adam steps.
    learning_rate : float
    implicit_negatives : float
        Weight of unobserved pairs as negatives, relative to the observed pairs (0: observed only).
    holdout : float
        Share of observed pairs held out for the fidelity report, in [0, 0.5]; as many
        unobserved pairs per held-out pair as ``implicit_negatives`` are held out with them.
    seed : int
        Seeds the split, the negatives and the initialisation.
    method : {"auto", "dense", "sampled"}

    Returns
    -------
    LogisticMFTruth
    """
    import torch

    start = time.perf_counter()
    if method not in ("auto", "dense", "sampled"):
        raise ValueError(f"method must be 'auto', 'dense' or 'sampled', got {method!r}")
    dense = method == "dense" or (method == "auto" and n_users * n_items <= _DENSE_LIMIT)
    rng = np.random.default_rng(seed)
    user_idx, item_idx = np.asarray(user_idx, np.int64), np.asarray(item_idx, np.int64)
    labels = np.asarray(labels, np.float64)
    n = labels.size
    order = rng.permutation(n)
    n_test = round(holdout * n)
    test, train = order[:n_test], order[n_test:]
    observed, pair_of_row = np.unique(user_idx * n_items + item_idx, return_inverse=True)
    if observed.size < n:
        # a (user, item) pair logged more than once: its rows go to one side together (split by
        # row, copies on both sides made the held-out AUC of pure noise 0.97). Logs without
        # repeats keep the split by row above, and their fits stay as they were.
        held = np.zeros(observed.size, dtype=bool)
        held[rng.permutation(observed.size)[: round(holdout * observed.size)]] = True
        test, train = np.flatnonzero(held[pair_of_row]), np.flatnonzero(~held[pair_of_row])
        n_test = test.size

    # Held-out set: the held-out observed pairs and fresh unobserved pairs (labelled 0).
    k_test = round(implicit_negatives * n_test)
    neg_u, neg_i = (
        _sample_negatives(rng, user_idx[test], k_test, n_items, observed)
        if k_test
        else (user_idx[:0], item_idx[:0])
    )
    te_u = np.concatenate([user_idx[test], neg_u])
    te_i = np.concatenate([item_idx[test], neg_i])
    te_y = np.concatenate([labels[test], np.zeros(neg_u.size)])
    te_rated = np.concatenate([np.ones(n_test, bool), np.zeros(neg_u.size, bool)])
    tr_u, tr_i, tr_y = user_idx[train], item_idx[train], labels[train]
    if tr_y.size == 0 or (tr_y.min() == tr_y.max() and implicit_negatives == 0):
        raise ValueError(
            "the training feedback has a single class (all liked or all not); change like_threshold "
            "or set implicit_negatives > 0"
        )

    dt = torch.float32
    gen = torch.Generator().manual_seed(int(seed))
    d = int(embedding_dim)
    P = (0.1 * torch.randn(n_users, d, generator=gen, dtype=dt)).requires_grad_()
    Q = (0.1 * torch.randn(n_items, d, generator=gen, dtype=dt)).requires_grad_()
    bu = torch.zeros(n_users, dtype=dt, requires_grad=True)
    bi = torch.zeros(n_items, dtype=dt, requires_grad=True)

    if dense:
        weight = np.zeros((n_users, n_items))
        positive = np.zeros((n_users, n_items))
        np.add.at(weight, (tr_u, tr_i), 1.0)
        np.add.at(positive, (tr_u, tr_i), tr_y)
        free = np.ones((n_users, n_items), bool)
        free[user_idx, item_idx] = False  # every observed pair, train or test
        free[neg_u, neg_i] = False  # held-out negatives stay out of training
        n_free = int(free.sum())
        if implicit_negatives > 0 and n_free:
            weight[free] = implicit_negatives * tr_y.size / n_free
        # sum_pairs w * BCE(z, y) = sum w * softplus(z) - sum (w * y) * z, with y the mean label.
        W = torch.from_numpy(weight).to(dt)
        WY = torch.from_numpy(positive).to(dt)
        total = float(weight.sum())
        row_w, col_w = W.sum(1), W.sum(0)

        def objective() -> torch.Tensor:
            z = torch.addmm(bu[:, None] + bi[None, :] + b0, P, Q.T)
            fit = ((W * torch.nn.functional.softplus(z)).sum() - (WY * z).sum()) / total
            penalty = (
                row_w @ (P.square().sum(1) + bu.square()) + col_w @ (Q.square().sum(1) + bi.square())
            ) / total
            return fit + l2 * penalty

        base = float(positive.sum() / total)
    else:
        k = round(implicit_negatives * tr_y.size)
        nu_, ni_ = _sample_negatives(rng, tr_u, k, n_items, observed) if k else (tr_u[:0], tr_i[:0])
        # held-out negatives are not excluded here: a sampled pair equal to one is vanishingly rare
        u_t = torch.from_numpy(np.concatenate([tr_u, nu_]))
        i_t = torch.from_numpy(np.concatenate([tr_i, ni_]))
        y_t = torch.from_numpy(np.concatenate([tr_y, np.zeros(nu_.size)])).to(dt)

        def objective() -> torch.Tensor:
            pu, qi, bu_s, bi_s = P[u_t], Q[i_t], bu[u_t], bi[i_t]
            z = (pu * qi).sum(1) + bu_s + bi_s + b0
            penalty = (pu.square().sum(1) + qi.square().sum(1) + bu_s.square() + bi_s.square()).mean()
            return torch.nn.functional.binary_cross_entropy_with_logits(z, y_t) + l2 * penalty

        base = float(y_t.mean())
    base = min(max(base, 1e-4), 1 - 1e-4)
    b0 = torch.tensor(np.log(base / (1 - base)), dtype=dt, requires_grad=True)
    with _single_thread():
        optimiser = torch.optim.Adam([P, Q, bu, bi, b0], lr=learning_rate)
        for _ in range(int(epochs)):
            optimiser.zero_grad()
            loss = objective()
            loss.backward()
            optimiser.step()

    as64 = lambda t: t.detach().numpy().astype(np.float64)
    truth = LogisticMFTruth(as64(P), as64(Q), as64(bu), as64(bi), float(b0.detach()))
    fidelity: dict[str, Any] = {
        "n_train": int(tr_y.size),
        "n_test": int(te_y.size),
        "method": "dense" if dense else "sampled",
    }
    if te_y.size:
        z_test = truth.logits(te_u, te_i)
        fidelity.update(
            auc=_auc(te_y, z_test),
            log_loss=_log_loss(te_y, z_test),
            auc_rated=_auc(te_y[te_rated], z_test[te_rated]),
            log_loss_rated=_log_loss(te_y[te_rated], z_test[te_rated]),
            base_rate=float(te_y.mean()),
        )
    z_train = truth.logits(tr_u, tr_i)
    fidelity["train_auc_rated"] = _auc(tr_y, z_train)
    fidelity["final_loss"] = float(loss.detach())
    fidelity["fit_seconds"] = time.perf_counter() - start
    return LogisticMFTruth(
        truth.user_factors, truth.item_factors, truth.user_bias, truth.item_bias, truth.global_bias, fidelity
    )


def _truth_cache_key(user_idx, item_idx, labels, n_users, n_items, params: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {"version": _TRUTH_VERSION, "n_users": n_users, "n_items": n_items, **params}, sort_keys=True
        ).encode()
    )
    for array in (user_idx, item_idx, labels):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _cached_fit(user_idx, item_idx, labels, n_users, n_items, params, cache, cache_dir) -> LogisticMFTruth:
    if not cache:
        return fit_logistic_mf(user_idx, item_idx, labels, n_users, n_items, **params)
    key = _truth_cache_key(user_idx, item_idx, labels, n_users, n_items, params)
    entry_path = cache_root(cache_dir) / "worlds" / f"{_TRUTH_VERSION}-{key[:32]}"
    try:
        entry = open_entry(entry_path)
        with np.load(entry.file("truth.npz")) as z:
            truth = LogisticMFTruth(
                z["user_factors"],
                z["item_factors"],
                z["user_bias"],
                z["item_bias"],
                float(z["global_bias"]),
                dict(entry.meta.get("fidelity", {})),
            )
        if truth.user_factors.shape == (n_users, params["embedding_dim"]) and truth.item_bias.shape == (
            n_items,
        ):
            logger.debug("loaded the fitted truth from %s", entry_path)
            return truth
        logger.warning("cached truth at %s has unexpected shapes; refitting", entry_path)
    except FileNotFoundError:
        pass
    except (ChecksumError, OSError, KeyError, ValueError) as exc:
        logger.warning("ignoring the unusable cached truth at %s (%s); refitting", entry_path, exc)
    truth = fit_logistic_mf(user_idx, item_idx, labels, n_users, n_items, **params)

    def build(folder: Path) -> None:
        np.savez(
            folder / "truth.npz",
            user_factors=truth.user_factors,
            item_factors=truth.item_factors,
            user_bias=truth.user_bias,
            item_bias=truth.item_bias,
            global_bias=np.float64(truth.global_bias),
        )

    try:
        write_entry(entry_path, build, meta={"fidelity": dict(truth.fidelity), "params": dict(params)})
    except OSError as exc:
        logger.warning("could not cache the fitted truth at %s: %s", entry_path, exc)
    return truth


# ------------------------------------------------------------------------------------------
# Observable features


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _looks_like_id(name: str, id_col: str) -> bool:
    """Whether a column name looks like an id column: ``id``, ``*_id``, ``*Id``, ``*ID``, or ``id_col``
    spelt differently (case, underscores)."""
    squash = re.compile(r"[\s_.-]")
    return bool(
        re.search(r"(?:^|[\s_.-])id$", name, re.IGNORECASE)
        or re.search(r"[a-z0-9](?:Id|ID)$", name)
        or squash.sub("", name).lower() == squash.sub("", str(id_col)).lower()
    )


def encode_features(
    table: pd.DataFrame | None,
    ids: np.ndarray,
    id_col: str,
    what: str,
    max_categories: int = 50,
) -> tuple[np.ndarray, list[str]]:
    """Observable features of the catalogue rows ``ids`` from a feature table.

    Numeric columns are standardised (mean 0, sd 1 over the catalogue), 0/1 and boolean columns
    kept as 0/1, string/categorical columns one-hot encoded over their sorted categories. Missing
    values (NaN) and ids absent from the table get the column mean (0 after standardising; all
    zeros for one-hots); absent ids also raise a ``UserWarning`` that counts them. Infinite values
    are an error. With no table, the features are one constant column (a bias). Two kinds of
    column are encoded but warned about: one that holds at most one value over the catalogue (no
    information), and a numeric one with an id-like name (``imdb_id``) and more than
    ``max_categories`` distinct values (an identifier read as a quantity).

    Rows are matched to ids by value, never by row order: through the column ``id_col`` if the
    table has one, else through its index. pandas' default row-number index (an unnamed
    ``RangeIndex``) does not count as ids, nor does an unnamed index when a column looks like a
    misnamed id column (``userId``, ``user_ID``, ``userid``...): both are errors asking to rename
    the id column (name a ``RangeIndex`` that does hold the ids, e.g. ``table.rename_axis(id_col)``).

    Parameters
    ----------
    table : DataFrame or None
        With the ids in column ``id_col``, or indexed by id (a named index, or an explicit
        unnamed one that is not a ``RangeIndex``).
    ids : ndarray, shape (n,)
        Raw ids of the catalogue rows, in catalogue order.
    id_col : str
        Name of the id column (used if present in ``table.columns``).
    what : str
        ``"user_features"`` or ``"item_features"``, for error messages.
    max_categories : int
        Largest number of categories a string column may have (a guard against one-hot encoding
        titles or zip codes by accident).

    Returns
    -------
    features : ndarray, shape (n, d), float64
    names : list of str, length d
    """
    n = ids.size
    if table is None:
        return np.ones((n, 1)), ["bias"]
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame or None, got {type(table).__name__}")
    if id_col in table.columns:
        table = table.set_index(id_col)
    elif table.index.name is None:
        columns = [str(c) for c in table.columns]
        id_like = [c for c in columns if _looks_like_id(c, id_col)]
        rename = f"rename its id column {id_like[0]!r} to {id_col!r}" if id_like else None
        if isinstance(table.index, pd.RangeIndex):
            raise ValueError(
                f"{what} has no column {id_col!r} (columns: {columns}) and only pandas' default "
                f"row-number index, so its rows cannot be matched to ids (rows are never matched by "
                f"order); {rename or f'add the ids as a column {id_col!r}'}, or index it by id "
                f"(table.rename_axis({id_col!r}) if its index already holds the ids)"
            )
        if id_like:
            raise ValueError(
                f"{what} has no column {id_col!r} but a column {id_like[0]!r} that looks like an id "
                f"(columns: {columns}), and an unnamed index; {rename} (or drop it and name the index "
                f"{id_col!r} if the index holds the ids)"
            )
    if table.index.has_duplicates:
        dup = _plain(table.index[table.index.duplicated()][0])
        raise ValueError(f"{what} has several rows for id {dup!r}; give one row per id")
    if table.shape[1] == 0:
        return np.ones((n, 1)), ["bias"]
    absent = ~pd.Index(ids).isin(table.index)
    if n and absent.all() and len(table):
        raise ValueError(
            f"{what} shares no id with the interactions (its index looks like {list(table.index[:3])}, "
            f"the interactions' ids like {list(ids[:3])}); index it by the same ids or name the id "
            f"column {id_col!r}"
        )
    if absent.any():
        warnings.warn(
            f"{what} has no row for {int(absent.sum())} of {n} ids (e.g. "
            f"{[_plain(i) for i in ids[absent][:3]]}); their features are the column means (0 after "
            f"standardising, no category for one-hots)",
            UserWarning,
            stacklevel=2,
        )
    aligned = table.reindex(pd.Index(ids))
    blocks, names = [], []
    constant, id_like = [], []  # columns worth a warning: no information, or an identifier as a number
    mixed: list[str] = []  # numbers stored as text with a few cells that are not numbers
    for column in aligned.columns:
        series = aligned[column]
        distinct = series.nunique(dropna=True)
        if distinct <= 1:
            constant.append(str(column))
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            infinite = np.isinf(series.to_numpy(np.float64, na_value=np.nan))
            if infinite.any():
                row = int(np.flatnonzero(infinite)[0])
                raise ValueError(
                    f"{what} column {column!r} holds {series.iloc[row]} for id {_plain(ids[row])!r} "
                    f"({int(infinite.sum())} infinite value(s)); features must be finite (NaN counts "
                    f"as missing)"
                )
        if pd.api.types.is_bool_dtype(series) or (
            pd.api.types.is_numeric_dtype(series) and series.dropna().isin([0, 1]).all()
        ):
            values = series.astype(np.float64).fillna(series.astype(np.float64).mean()).fillna(0.0)
            blocks.append(values.to_numpy(np.float64)[:, None])
            names.append(str(column))
        elif pd.api.types.is_numeric_dtype(series):
            if _looks_like_id(str(column), id_col) and distinct > max_categories:
                id_like.append(str(column))
            values = series.to_numpy(np.float64, na_value=np.nan)
            scale = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 0.0
            if scale > 1e100:  # the sd's squares would overflow: rescale (z-scores do not change); else
                values = values / scale  # leave the values alone, so that ordinary tables encode bit for bit as before
            mean = np.nanmean(values) if np.isfinite(values).any() else 0.0
            sd = np.nanstd(values) if np.isfinite(values).any() else 0.0
            z = (values - mean) / (sd if sd > 0 else 1.0)
            blocks.append(np.where(np.isfinite(z), z, 0.0)[:, None])
            names.append(str(column))
        else:
            present = series.dropna().astype(str)
            numbers = pd.to_numeric(present, errors="coerce")
            if len(present) >= 3 and numbers.notna().mean() >= 0.9 and numbers.isna().any():
                # numbers with a stray cell ("1.5", ..., "x"): one-hot per distinct number, a warning
                # (the Open Bandit loader names this case too)
                bad = present[numbers.isna()]
                mixed.append(f"{column!r} (e.g. {bad.iloc[0]!r} for id {_plain(bad.index[0])!r})")
            categories = sorted(present.unique())
            if len(categories) > max_categories:
                raise ValueError(
                    f"{what} column {column!r} has {len(categories)} categories, more than "
                    f"max_categories={max_categories}; drop it, encode it numerically, or raise the limit"
                )
            codes = pd.Index(categories).get_indexer(series.astype(str).to_numpy())
            codes[series.isna().to_numpy()] = -1
            one_hot = np.zeros((n, len(categories)))
            known = codes >= 0
            one_hot[np.flatnonzero(known), codes[known]] = 1.0
            blocks.append(one_hot)
            names += [f"{column}={c}" for c in categories]
    if mixed:
        warnings.warn(
            f"{what} column(s) {', '.join(mixed)} hold numbers written as text but for a few cells that are not "
            "numbers, so they are one-hot encoded by category; fix or blank those cells to encode them as numbers",
            UserWarning,
            stacklevel=2,
        )
    if constant:
        warnings.warn(
            f"{what} column(s) {constant} hold at most one value over the catalogue's ids (or only "
            f"missing values): they carry no information and encode as constants; drop them",
            UserWarning,
            stacklevel=2,
        )
    if id_like:
        warnings.warn(
            f"{what} column(s) {id_like} look like identifiers (many distinct numbers under an id-like "
            f"name) and are encoded as standardised numbers, an ordering the ids do not have; drop "
            f"them if they identify rows",
            UserWarning,
            stacklevel=2,
        )
    return np.concatenate(blocks, axis=1), names


# ------------------------------------------------------------------------------------------
# Reading the interactions table


def _read_interactions(interactions: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    if isinstance(interactions, pd.DataFrame):
        return interactions
    if not isinstance(interactions, (str, os.PathLike)):
        raise TypeError(
            "interactions must be a DataFrame or a path to a csv/tsv/parquet file, "
            f"got {type(interactions).__name__}"
        )
    path = Path(interactions)
    if not path.is_file():
        raise FileNotFoundError(f"interactions file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".gz" and len(path.suffixes) > 1:  # data.tsv.gz: read by its inner suffix (pandas decompresses)
        suffix = path.suffixes[-2].lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)  # pandas names the missing engine (pyarrow) if there is none
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataFormatError(f"interactions file {path}: cannot be read as parquet: {exc}") from exc
    if suffix not in (".tsv", ".tab", ".csv", ".txt", ".gz"):
        raise ValueError(f"interactions file {path} must end in .csv, .tsv, .txt or .parquet, got {suffix!r}")
    kind = "tab-separated" if suffix in (".tsv", ".tab") else "CSV"
    if path.stat().st_size == 0:
        raise DataFormatError(f"interactions file {path} is empty (no header, no rows)")
    try:
        if suffix in (".tsv", ".tab"):
            return pd.read_csv(path, sep="\t")
        return pd.read_csv(path, sep=None, engine="python") if suffix == ".txt" else pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise DataFormatError(f"interactions file {path} is empty (no header, no rows)") from exc
    except (
        pd.errors.ParserError,
        csv.Error,
        UnicodeDecodeError,
        gzip.BadGzipFile,
        EOFError,
        zlib.error,
    ) as exc:
        message = " ".join(str(exc).split())
        raise DataFormatError(f"interactions file {path}: cannot be parsed as {kind}: {message}") from exc


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_number(
    name: str, value: Any, low: float, high: float = np.inf, *, integer: bool = False, low_open: bool = False
) -> Any:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(
            f"{name} must be {'an int' if integer else 'a number'}, got {type(value).__name__}: {value!r}"
        )
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok or not np.isfinite(value):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {bracket}{low}, {high}], got {value!r}")
    return int(value) if integer else float(value)


# ------------------------------------------------------------------------------------------
# The world


class LoggedDataWorld(UserSimulator):
    """Users and items of a logged data set, with a fitted logistic-MF model as the hidden truth.

    Build it with :meth:`from_interactions`; the constructor takes the fitted pieces.

    Parameters
    ----------
    truth : LogisticMFTruth
        Hidden ground truth over ``n_users`` users and ``n_items`` items.
    user_features : ndarray, shape (n_users, d_u)
        Observable user features (row = user index).
    item_features : ndarray, shape (n_items, d_i)
        Observable item features (row = item index).
    n_candidates : int
        K, candidates shown to each arriving user.
    arrival_weights : ndarray, shape (n_users,), optional
        Relative arrival rates; uniform if None.
    candidate_weights : ndarray, shape (n_items,), optional
        Relative chance of an item being a candidate; uniform if None.
    temperature : float
        Divides the logits (> 1 flattens preferences, < 1 sharpens them).
    target_click_rate : float or None
        Mean click probability of a random candidate from the whole catalogue, reached by the
        offset; None keeps offset 0. With cold start the candidates shown before every item has
        entered click at another rate: see ``initial_click_rate``.
    item_order : ndarray, shape (n_items,), optional
        Order in which items enter the catalogue (cold start); default item index order.
    initial_items : int or None
        Items available at the start; None means all (or half when ``new_items_per_step > 0``).
    new_items_per_step : int
        Items added to the catalogue after each step.
    drift : float
        Per-step size of the user factors' random walk, in [0, 1): each step
        ``p ← sqrt(1 - drift²) p + drift · s ⊙ ε`` with ``s`` the factors' standard deviation per
        dimension, a walk whose spread (and so the click rate) stays stable; the correlation of a
        user's factors with the initial ones decays like ``(1 - drift²)^(t/2)``.
    reveal_truth : bool
        Append the true ``[p_u, b_u]`` and ``[q_i, b_i]`` to the observable features (ablation).
    seed : int
        Seeds the drift before the first ``reset`` (afterwards the reset generator does).
    user_index, item_index : ndarray, optional
        Raw ids of the users/items, by index.
    user_feature_names, item_feature_names : list of str, optional

    Attributes
    ----------
    fidelity : dict
        Held-out fit quality of the truth (see :class:`LogisticMFTruth`).
    click_offset : float
        The calibrated offset.
    mean_click_rate : float
        Mean click probability of a random candidate from the whole catalogue after calibration.
    initial_click_rate : float
        The same over the items available at the start (``initial_items``); equal to
        ``mean_click_rate`` without cold start. It moves towards ``mean_click_rate`` as items
        enter (MovieLens with ``initial_items=100``: 0.20 at the start, against 0.10).
    """

    reward_type = "binary"

    def __init__(
        self,
        truth: LogisticMFTruth,
        user_features: np.ndarray,
        item_features: np.ndarray,
        *,
        n_candidates: int = 20,
        arrival_weights: np.ndarray | None = None,
        candidate_weights: np.ndarray | None = None,
        temperature: float = 1.0,
        target_click_rate: float | None = 0.1,
        item_order: np.ndarray | None = None,
        initial_items: int | None = None,
        new_items_per_step: int = 0,
        drift: float = 0.0,
        reveal_truth: bool = False,
        seed: int = 0,
        user_index: np.ndarray | None = None,
        item_index: np.ndarray | None = None,
        user_feature_names: Sequence[str] | None = None,
        item_feature_names: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(truth, LogisticMFTruth):
            raise TypeError(f"truth must be a LogisticMFTruth, got {type(truth).__name__}")
        n_users, n_items = truth.user_factors.shape[0], truth.item_factors.shape[0]
        user_features = np.asarray(user_features, dtype=np.float64)
        item_features = np.asarray(item_features, dtype=np.float64)
        if user_features.ndim != 2 or user_features.shape[0] != n_users:
            raise ValueError(f"user_features must have shape ({n_users}, d_u), got {user_features.shape}")
        if item_features.ndim != 2 or item_features.shape[0] != n_items:
            raise ValueError(f"item_features must have shape ({n_items}, d_i), got {item_features.shape}")
        for name, array in (("user_features", user_features), ("item_features", item_features)):
            if not np.isfinite(array).all():
                raise ValueError(f"{name} must be finite")
        self.n_candidates = _check_number("n_candidates", n_candidates, 1, n_items, integer=True)
        self.temperature = _check_number("temperature", temperature, 0.0, low_open=True)
        if target_click_rate is not None:
            target_click_rate = _check_number("target_click_rate", target_click_rate, 0.0, 1.0, low_open=True)
            if target_click_rate >= 1.0:
                raise ValueError(f"target_click_rate must lie in (0, 1), got {target_click_rate!r}")
        self.target_click_rate = target_click_rate
        self.new_items_per_step = _check_number("new_items_per_step", new_items_per_step, 0, integer=True)
        if initial_items is None:
            initial_items = n_items if self.new_items_per_step == 0 else max(1, n_items // 2)
        self.initial_items = _check_number("initial_items", initial_items, 1, n_items, integer=True)
        self.drift = _check_number("drift", drift, 0.0, 0.999)
        if not isinstance(reveal_truth, (bool, np.bool_)):
            raise TypeError(f"reveal_truth must be a bool, got {reveal_truth!r}")
        self.reveal_truth = bool(reveal_truth)
        self.seed = _check_number("seed", seed, 0, integer=True)

        self.truth = truth
        self.n_users, self.n_items = int(n_users), int(n_items)
        self._user_x, self._item_x = user_features, item_features
        self._arrival_p = self._probabilities("arrival_weights", arrival_weights, n_users)
        self._candidate_w = self._weights("candidate_weights", candidate_weights, n_items)
        if item_order is None:
            item_order = np.arange(n_items)
        item_order = np.asarray(item_order, dtype=np.int64)
        if item_order.shape != (n_items,) or not np.array_equal(np.sort(item_order), np.arange(n_items)):
            raise ValueError(f"item_order must be a permutation of range({n_items})")
        self._item_order = item_order
        self.user_index = np.arange(n_users) if user_index is None else np.asarray(user_index)
        self.item_index = np.arange(n_items) if item_index is None else np.asarray(item_index)
        d = truth.user_factors.shape[1]
        extra = d + 1 if self.reveal_truth else 0
        self.user_dim = int(user_features.shape[1] + extra)
        self.item_dim = int(item_features.shape[1] + extra)
        names_u = (
            list(user_feature_names)
            if user_feature_names is not None
            else [f"u{j}" for j in range(user_features.shape[1])]
        )
        names_i = (
            list(item_feature_names)
            if item_feature_names is not None
            else [f"i{j}" for j in range(item_features.shape[1])]
        )
        if self.reveal_truth:
            names_u += [f"true_factor_{j}" for j in range(d)] + ["true_bias"]
            names_i += [f"true_factor_{j}" for j in range(d)] + ["true_bias"]
        self.user_feature_names, self.item_feature_names = names_u, names_i
        factors = truth.user_factors
        # the walk's spread per dimension: the users' standard deviation; where that is 0 (a single
        # user) the factors' root mean square, or the walk would only shrink them towards 0
        spread = factors.std(axis=0)
        self._factor_scale = np.where(spread > 0, spread, np.sqrt(np.mean(factors**2, axis=0)))
        self.click_offset, self.mean_click_rate, self.initial_click_rate = self._calibrate()
        self._restore(np.random.default_rng([self.seed, 0x5EED]))

    # -- construction helpers ------------------------------------------------------------
    @staticmethod
    def _weights(name: str, weights: np.ndarray | None, n: int) -> np.ndarray | None:
        if weights is None:
            return None
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"{name} must be {n} finite non-negative numbers, not all zero; got shape {w.shape}"
            )
        return w

    @classmethod
    def _probabilities(cls, name: str, weights: np.ndarray | None, n: int) -> np.ndarray | None:
        w = cls._weights(name, weights, n)
        return None if w is None else w / w.sum()

    def _pairs(self, items: np.ndarray, salt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user, item, weight) pairs of an arriving user and a random candidate among ``items``:
        every pair when there are few, else a sample."""
        cand_w = np.ones(self.n_items) if self._candidate_w is None else self._candidate_w
        if self.n_users * items.size <= _MAX_CALIBRATION_PAIRS:
            users = np.repeat(np.arange(self.n_users), items.size)
            weight_u = np.ones(self.n_users) if self._arrival_p is None else self._arrival_p
            weights = np.repeat(weight_u, items.size) * np.tile(cand_w[items], self.n_users)
            items = np.tile(items, self.n_users)
        else:
            rng = np.random.default_rng([self.seed, salt])
            m = _MAX_CALIBRATION_PAIRS
            users = rng.choice(self.n_users, size=m, p=self._arrival_p)
            p_items = None if self._candidate_w is None else cand_w[items] / cand_w[items].sum()
            items = rng.choice(items, size=m, p=p_items)
            weights = np.ones(m)
        return users, items, weights / weights.sum()

    def _calibrate(self) -> tuple[float, float, float]:
        """Offset that makes a random candidate's mean click probability over the whole catalogue
        equal the target; that mean, and the mean over the catalogue at the start (cold start)."""
        users, items, weights = self._pairs(np.arange(self.n_items), 0xCA1)
        z = self.truth.logits(users, items) / self.temperature
        if self.target_click_rate is None:
            offset = 0.0
        else:
            target = self.target_click_rate
            gap = lambda c: weights @ expit(z + c) - target
            bound = 60.0
            while gap(-bound) > 0 or gap(bound) < 0:  # a sharp temperature spreads the logits past ±60
                bound *= 4
                if bound > 1e7:
                    raise ValueError(
                        f"target_click_rate={target:g} cannot be reached at temperature={self.temperature:g}: "
                        f"a shared offset moves the mean click probability only within "
                        f"[{gap(-bound) + target:.4g}, {gap(bound) + target:.4g}]; raise the temperature"
                    )
            offset = brentq(gap, -bound, bound, xtol=1e-10)
        mean = float(weights @ expit(z + offset))
        if self.initial_items == self.n_items:
            return float(offset), mean, mean
        # Items enter in ``item_order`` (MovieLens: by first rating, so old popular films first):
        # until the catalogue is complete, shown candidates click at another rate.
        users, items, weights = self._pairs(self._item_order[: self.initial_items], 0xCA2)
        start = float(weights @ expit(self.truth.logits(users, items) / self.temperature + offset))
        return float(offset), mean, start

    @classmethod
    def from_interactions(
        cls,
        interactions: pd.DataFrame | str | os.PathLike[str],
        user_col: str = "user_id",
        item_col: str = "item_id",
        reward_col: str = "rating",
        timestamp_col: str | None = None,
        user_features: pd.DataFrame | None = None,
        item_features: pd.DataFrame | None = None,
        like_threshold: float | None = None,
        n_candidates: int = 20,
        embedding_dim: int = 16,
        arrival: str = "uniform",
        candidates: str = "uniform",
        seed: int = 0,
        *,
        l2: float = 2e-2,
        epochs: int = 150,
        learning_rate: float = 0.05,
        implicit_negatives: float = 1.0,
        holdout: float = 0.1,
        fit_method: str = "auto",
        temperature: float = 1.0,
        target_click_rate: float | None = 0.1,
        initial_items: int | None = None,
        new_items_per_step: int = 0,
        drift: float = 0.0,
        reveal_truth: bool = False,
        max_categories: int = 50,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> LoggedDataWorld:
        """Fit a world to a table of interactions.

        Parameters
        ----------
        interactions : DataFrame or path
            One row per interaction; a path may be ``.csv``, ``.tsv`` or ``.parquet``.
        user_col, item_col, reward_col : str
            Columns holding the user id, item id and reward (rating or 0/1 click).
        timestamp_col : str, optional
            Numeric or date-time column; orders the items' entry into the catalogue (by first
            interaction) when ``new_items_per_step > 0``.
        user_features, item_features : DataFrame, optional
            Observable features, indexed by id or with an id column named like ``user_col`` /
            ``item_col`` (see :func:`encode_features`). Without a table, a constant column.
        like_threshold : float, optional
            ``reward >= like_threshold`` is a like; without it the rewards must be 0/1.
        n_candidates : int
            K, candidates per user.
        embedding_dim : int
            Rank of the hidden factorisation.
        arrival : {"uniform", "activity"}
            Users arrive uniformly, or in proportion to their number of interactions.
        candidates : {"uniform", "popularity"}
            Candidates drawn uniformly, or in proportion to their number of interactions.
        seed : int
            Seeds the fit (split, negatives, initialisation), the item entry order and the drift.
        l2, epochs, learning_rate, implicit_negatives, holdout, fit_method
            Fit parameters (see :func:`fit_logistic_mf`; ``fit_method`` is its ``method``).
        temperature, target_click_rate, initial_items, new_items_per_step, drift, reveal_truth
            World options (see the class docstring).
        max_categories : int
            Guard on one-hot encoding of string feature columns.
        cache : bool
            Reuse / store the fitted truth in the cache.
        cache_dir : path, optional

        Returns
        -------
        LoggedDataWorld
        """
        start = time.perf_counter()
        df = _read_interactions(interactions)
        for name, column in (("user_col", user_col), ("item_col", item_col), ("reward_col", reward_col)) + (
            (("timestamp_col", timestamp_col),) if timestamp_col is not None else ()
        ):
            if column not in df.columns:
                raise ValueError(
                    f"{name}={column!r} is not a column of interactions; columns are {list(df.columns)}"
                )
        if len(df) == 0:
            raise ValueError("interactions is empty")
        _check_choice("arrival", arrival, ("uniform", "activity"))
        _check_choice("candidates", candidates, ("uniform", "popularity"))
        embedding_dim = _check_number("embedding_dim", embedding_dim, 1, integer=True)
        seed = _check_number("seed", seed, 0, integer=True)
        params = {
            "embedding_dim": embedding_dim,
            "l2": _check_number("l2", l2, 0.0),
            "epochs": _check_number("epochs", epochs, 1, integer=True),
            "learning_rate": _check_number("learning_rate", learning_rate, 0.0, low_open=True),
            "implicit_negatives": _check_number("implicit_negatives", implicit_negatives, 0.0, 100.0),
            "holdout": _check_number("holdout", holdout, 0.0, 0.5),
            "seed": seed,
            "method": _check_choice("fit_method", fit_method, ("auto", "dense", "sampled")),
        }

        reward = pd.to_numeric(df[reward_col], errors="coerce")
        bad = ~np.isfinite(reward.to_numpy(np.float64))  # NaN, and inf, which a threshold binarised silently
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"reward_col {reward_col!r} must be numeric without missing values; row {row} holds "
                f"{_plain(df[reward_col].iloc[row])!r} ({int(bad.sum())} bad row(s))"
            )
        if like_threshold is not None:
            like_threshold = _check_number("like_threshold", like_threshold, -np.inf)
            labels = (reward.to_numpy(np.float64) >= like_threshold).astype(np.int64)
        else:
            values = reward.to_numpy(np.float64)
            if not np.isin(values, (0.0, 1.0)).all():
                examples = np.unique(values[~np.isin(values, (0.0, 1.0))])[:3]
                raise ValueError(
                    f"reward_col {reward_col!r} holds values other than 0/1 (e.g. {examples.tolist()}); "
                    f"pass like_threshold to binarise ratings"
                )
            labels = values.astype(np.int64)
        if labels.size and not labels.any():  # a world where nothing is ever liked: regret 0 for any policy
            values = reward.to_numpy(np.float64)
            why = (f"no {reward_col!r} value reaches like_threshold={like_threshold:g} (they lie in "
                   f"[{values.min():g}, {values.max():g}])" if like_threshold is not None
                   else f"every {reward_col!r} value is 0")
            raise ValueError(f"the feedback holds no like: {why}; a world fitted to it would be flat")
        for name, column in (("user_col", user_col), ("item_col", item_col)):
            if df[column].isna().any():
                raise ValueError(f"{name}={column!r} has missing ids")
        user_codes, user_index = pd.factorize(df[user_col], sort=True)
        item_codes, item_index = pd.factorize(df[item_col], sort=True)
        user_index, item_index = np.asarray(user_index), np.asarray(item_index)
        n_users, n_items = user_index.size, item_index.size
        n_candidates = _check_number("n_candidates", n_candidates, 1, n_items, integer=True)

        truth = _cached_fit(
            user_codes.astype(np.int64),
            item_codes.astype(np.int64),
            labels,
            n_users,
            n_items,
            params,
            cache,
            cache_dir,
        )

        user_x, user_names = encode_features(
            user_features, user_index, user_col, "user_features", max_categories
        )
        item_x, item_names = encode_features(
            item_features, item_index, item_col, "item_features", max_categories
        )
        counts_u = np.bincount(user_codes, minlength=n_users).astype(np.float64)
        counts_i = np.bincount(item_codes, minlength=n_items).astype(np.float64)
        if timestamp_col is not None:
            ts = df[timestamp_col]
            if pd.api.types.is_datetime64_any_dtype(ts):
                if ts.isna().any():  # NaT became int64's minimum: the earliest time of all
                    raise ValueError(
                        f"timestamp_col {timestamp_col!r} has missing times (NaT) in {int(ts.isna().sum())} row(s), "
                        f"the first at row {int(np.flatnonzero(ts.isna().to_numpy())[0])}"
                    )
                ts_num = ts.astype("int64").to_numpy(np.float64)
            else:
                ts_num = pd.to_numeric(ts, errors="coerce").to_numpy(np.float64)
                if np.isnan(ts_num).any():
                    raise ValueError(f"timestamp_col {timestamp_col!r} must be numeric or date-time")
            first_seen = np.full(n_items, np.inf)
            np.minimum.at(first_seen, item_codes, ts_num)
            item_order = np.argsort(first_seen, kind="stable")
        else:
            item_order = np.random.default_rng([seed, 0x17E5]).permutation(n_items)

        world = cls(
            truth,
            user_x,
            item_x,
            n_candidates=n_candidates,
            arrival_weights=counts_u if arrival == "activity" else None,
            candidate_weights=counts_i if candidates == "popularity" else None,
            temperature=temperature,
            target_click_rate=target_click_rate,
            item_order=item_order,
            initial_items=initial_items,
            new_items_per_step=new_items_per_step,
            drift=drift,
            reveal_truth=reveal_truth,
            seed=seed,
            user_index=user_index,
            item_index=item_index,
            user_feature_names=user_names,
            item_feature_names=item_names,
        )
        f = truth.fidelity
        logger.info(
            "LoggedDataWorld: %d users, %d items, %d interactions; held-out AUC %.3f, log-loss %.3f, "
            "rated-only AUC %.3f; mean click rate %.3f (offset %.2f); built in %.2f s",
            n_users,
            n_items,
            len(df),
            f.get("auc", np.nan),
            f.get("log_loss", np.nan),
            f.get("auc_rated", np.nan),
            world.mean_click_rate,
            world.click_offset,
            time.perf_counter() - start,
        )
        return world

    # -- state -----------------------------------------------------------------------------
    @property
    def fidelity(self) -> dict[str, float]:
        """Held-out fit quality of the hidden truth."""
        return dict(self.truth.fidelity)

    @property
    def n_available(self) -> int:
        """Items in the catalogue now (grows with ``new_items_per_step``)."""
        return self._n_available

    @property
    def available_items(self) -> np.ndarray:
        """Indices of the items in the catalogue now, shape (n_available,)."""
        return self._item_order[: self._n_available]

    @property
    def user_factors(self) -> np.ndarray:
        """Current (possibly drifted) hidden user factors, shape (n_users, d); read-only view."""
        view = self._user_factors.view()
        view.flags.writeable = False
        return view

    def _restore(self, rng: np.random.Generator) -> None:
        self._user_factors = self.truth.user_factors.copy()
        self._n_available = self.initial_items
        self._steps = 0
        self._drift_rng = rng

    def reset(self, rng: np.random.Generator) -> None:
        """Restore the fitted user factors and the initial catalogue; the drift draws from ``rng``."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        try:
            child = rng.spawn(1)[0]  # a child stream: the drift does not shift the users' draws
        except (TypeError, ValueError):  # a generator built without a SeedSequence
            child = np.random.default_rng(rng.integers(0, 2**63, size=4))
        self._restore(child)

    # -- the simulator contract --------------------------------------------------------------
    def sample_users(self, batch_size: int, rng: np.random.Generator) -> Observation:
        """Draw ``batch_size`` arriving users and K candidates each among the available items.

        Returns
        -------
        Observation
            user_features (B, d_u), item_features (B, K, d_i), item_ids (B, K) item indices,
            mask (B, K) (False only while fewer than K items are available), user_ids (B,).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        B, K = int(batch_size), self.n_candidates
        if self._arrival_p is None:
            users = rng.integers(0, self.n_users, size=B)
        else:
            users = rng.choice(self.n_users, size=B, p=self._arrival_p)
        available = self.available_items
        n_av = available.size
        k = min(K, n_av)
        weights = None if self._candidate_w is None else self._candidate_w[available]
        local, _ = sample_candidates(rng, B, n_av, k, k, weights=weights)
        ids = available[local]
        mask = np.ones((B, K), dtype=bool)
        if k < K:
            ids = np.concatenate([ids, np.broadcast_to(ids[:, :1], (B, K - k))], axis=1)
            mask[:, k:] = False
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        user_x = self._user_x[users]
        item_x = self._item_x[ids]
        if self.reveal_truth:
            user_x = np.concatenate(
                [user_x, self._user_factors[users], self.truth.user_bias[users, None]], axis=1
            )
            item_x = np.concatenate(
                [item_x, self.truth.item_factors[ids], self.truth.item_bias[ids][..., None]], axis=2
            )
        item_x = np.where(mask[..., None], item_x, 0.0)
        return Observation(user_x, item_x, ids, mask, users.astype(np.int64))

    def expected_rewards(self, obs: Observation) -> np.ndarray:
        """True click probability of every candidate, shape (B, K), in (0, 1)."""
        users, items = obs.user_ids, obs.item_ids
        z = (
            np.einsum("bd,bkd->bk", self._user_factors[users], self.truth.item_factors[items])
            + self.truth.user_bias[users, None]
            + self.truth.item_bias[items]
            + self.truth.global_bias
        )
        return expit(z / self.temperature + self.click_offset)

    def sample_rewards(
        self, obs: Observation, actions: np.ndarray, expected: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Clicks ~ Bernoulli(expected), shape (B,), float64 0/1."""
        return (rng.random(np.shape(expected)) < expected).astype(np.float64)

    def update(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Advance one step: drift the user factors and grow the catalogue."""
        self._steps += 1
        if self.drift > 0:
            noise = self._drift_rng.standard_normal(self._user_factors.shape)
            self._user_factors *= np.sqrt(1.0 - self.drift**2)
            self._user_factors += self.drift * self._factor_scale * noise
        if self.new_items_per_step:
            self._n_available = min(self.n_items, self.initial_items + self._steps * self.new_items_per_step)
