"""The Open Bandit Dataset (Saito et al. 2021): logged fashion recommendations with propensities.

Each behaviour policy (``random``: uniform; ``bts``: Bernoulli Thompson sampling) and campaign
(``all``, ``men``, ``women``) has a log of rounds, one row per impression: ``timestamp``,
``item_id`` (the action), ``position`` (1-3), ``click``, ``propensity_score``, the hashed user
features ``user_feature_0..3``, ``user-item_affinity_<item>`` counts, and an ``item_context.csv``
with one numeric (``item_feature_0``) and three hashed categorical item features.

:func:`load_open_bandit_dataset` tries, in order: an explicit ``path`` or ``$BANDITREC_OBD_PATH`` (either,
when given, is the only source) in the publisher's layout
``<path>/<policy>/<campaign>/<campaign>.csv`` + ``item_context.csv`` (the full data set); the cache;
an installed ``obp`` package's ``dataset/obd/`` (the 10,000-round sample, located without importing
obp); the ``obp==0.4.1`` wheel from PyPI. Sample files are copied into the cache and verified
against pinned sha256 checksums.

**One context space.** Open Bandit Pipeline one-hot encodes each log on its own, so a category
that occurs in only one log (the random and bts logs of campaign ``all`` differ in
``user_feature_2`` and ``user_feature_3``) gives the two logs different dimensions. Worse, the
categorical item features are hashed with a different salt in each log's ``item_context.csv``: the
same partition of the items under different names, which OBP's per-log label encoding turns into
different codes for the same item. :class:`OBDFeatureEncoder` fits user one-hots on the union of
the logs' categories and encodes items from one canonical item table (the first policy's, after
checking that the others describe the same items), so the random and bts logs of a campaign share
one user space and one item space. That space is the one of the logs *loaded together*: loading
``"random"`` alone gives fewer user columns (24 against 26 for campaign ``all``), and another
policy order another item-column order. Load every log you will compare in one call.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditrec.data import _fetch
from banditrec.data.cache import (
    ChecksumError,
    DataFormatError,
    Source,
    cache_root,
    entry_lock,
    open_entry,
    sha256_bytes,
    try_sources,
    write_entry,
)

__all__ = ["OBDFeatureEncoder", "OpenBanditDataset", "load_open_bandit_dataset"]

logger = logging.getLogger(__name__)

PATH_ENV = "BANDITREC_OBD_PATH"
OBP_REQUIREMENT = "obp==0.4.1"
POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
CACHE_ENTRY = "obd-sample-v1"

#: sha256 of the sample files shipped in obp 0.4.1 under ``obp/dataset/obd/``.
OBD_SAMPLE_SHA256: Mapping[str, str] = {
    "bts/all/all.csv": "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106",
    "bts/all/item_context.csv": "5d4359ba1cfa3ae88f0f1bae66bd633859fe6323817183632ee57b83539d9153",
    "bts/men/item_context.csv": "3b411ed6b0471316321a6b93f4f756bb25888eac6218cd71d0b603d41d85732d",
    "bts/men/men.csv": "db6d1f7ed2d591ba521533e45286d4c1fba7fe57a8ad2e80342210335f43c527",
    "bts/women/item_context.csv": "a56295bad066a558eb783055afd9279f5f4e209a4776eafc22151c53f0ac89d4",
    "bts/women/women.csv": "e5d1b49a39b608585a2f3014a3f54970430cd37a495c1b73fceb85cdf428a5b8",
    "random/all/all.csv": "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1",
    "random/all/item_context.csv": "eba04cc23d5f130a93ff174c5392986882b94c3839433cb8143870eaa6221358",
    "random/men/item_context.csv": "6d855c2b7e917d0448d71bbe62c023147495882c0fdc8c41e86fef86abf9fe09",
    "random/men/men.csv": "ede6d08c6877f99cd3770f7d09e26c738e6aa6de4445ccccfb1356ba5d06b1eb",
    "random/women/item_context.csv": "b1ca4905f97703d196004f2ad4552c1e90c2afad8b50688d333b0d2dc0b33147",
    "random/women/women.csv": "e65f3bd3beb17664fa69cc129bf7bf852a775f8ffa630506e505fc905315bb34",
}

_LOG_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")


def _files(policy: str, campaign: str) -> tuple[str, str]:
    return f"{policy}/{campaign}/{campaign}.csv", f"{policy}/{campaign}/item_context.csv"


# --------------------------------------------------------------------------------------------
# Parsing and validation


def _parse_log(data: bytes | Path, name: str) -> pd.DataFrame:
    import io

    try:
        raw = pd.read_csv(io.BytesIO(data) if isinstance(data, bytes) else data, index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{name}: cannot be parsed as CSV: {exc}") from exc
    missing = [c for c in _LOG_COLUMNS if c not in raw.columns]
    if missing or not any(c.startswith("user_feature_") for c in raw.columns):
        missing += [] if any(c.startswith("user_feature_") for c in raw.columns) else ["user_feature_*"]
        raise DataFormatError(
            f"{name}: missing column(s) {missing}; found {list(raw.columns)[:12]}...{_index_hint(raw)}"
        )
    if len(raw) == 0:  # went on to fail in to_logged_feedback as numpy's 'zero-size array'
        raise DataFormatError(f"{name}: holds no rounds (a header without rows)")
    _refuse_holes(raw, name)  # a row cut short (a truncated download or copy): NaN in its last columns
    for column in ("item_id", "position", "click", "propensity_score"):
        values = pd.to_numeric(raw[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataFormatError(
                f"{name}: column {column!r} must be numeric, row {row} has {raw[column].iloc[row]!r}"
            )
        if column != "propensity_score" and (values != np.floor(values)).any():
            row = int(np.flatnonzero((values != np.floor(values)).to_numpy())[0])
            raise DataFormatError(f"{name}: column {column!r} must hold whole numbers, row {row} has {values.iloc[row].item()!r}")
        raw[column] = values
    raw["item_id"] = raw["item_id"].astype(np.int64)
    raw["position"] = raw["position"].astype(np.int64)
    raw["click"] = raw["click"].astype(np.int64)
    raw["propensity_score"] = raw["propensity_score"].astype(np.float64)
    # Values out of range would otherwise load silently (a click of 2, a seventh slot) or fail
    # later in LoggedFeedback, without the file's name and at a row index after the time sort.
    for column, ok, what in (
        ("item_id", raw["item_id"] >= 0, "a non-negative id"),
        ("position", raw["position"].isin((1, 2, 3)), "1, 2 or 3 (the three slots)"),
        ("click", raw["click"].isin((0, 1)), "0 or 1"),
        ("propensity_score", (raw["propensity_score"] > 0) & (raw["propensity_score"] <= 1), "in (0, 1]"),
    ):
        bad = np.flatnonzero(~ok.to_numpy())
        if bad.size:
            raise DataFormatError(
                f"{name}: column {column!r} must be {what}; {bad.size} row(s) are not, first row "
                f"{int(bad[0])} has {raw[column].iloc[bad[0]].item()!r}"
            )
    # the affinity counts are user features (include_affinity): a stray string failed only then,
    # as numpy's "could not convert string to float"
    for column in [c for c in raw.columns if str(c).startswith("user-item_affinity_")]:
        values = pd.to_numeric(raw[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(np.float64, na_value=np.nan)))
        if bad.size:
            raise DataFormatError(
                f"{name}: column {column!r} must hold finite numbers; {bad.size} row(s) do not, first "
                f"row {int(bad[0])} has {raw[column].iloc[bad[0]]!r}"
            )
        raw[column] = values.astype(np.float64)
    try:
        raw["timestamp"] = pd.to_datetime(raw["timestamp"], utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise DataFormatError(f"{name}: column 'timestamp' is not a date-time: {exc}") from exc
    # Open Bandit Pipeline sorts the rounds by time; so do we (stably, so ties keep file order).
    return raw.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _parse_item_context(data: bytes | Path, name: str) -> pd.DataFrame:
    import io

    try:
        raw = pd.read_csv(io.BytesIO(data) if isinstance(data, bytes) else data, index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{name}: cannot be parsed as CSV: {exc}") from exc
    if "item_id" not in raw.columns:
        raise DataFormatError(f"{name}: missing column 'item_id'; found {list(raw.columns)}{_index_hint(raw)}")
    if len(raw) == 0:
        raise DataFormatError(f"{name}: holds no items (a header without rows)")
    _refuse_holes(raw, name)  # NaN cells broke the category sort with a TypeError
    # A numeric column (item_feature_0) with one damaged cell reads as strings and was one-hot
    # encoded, a category per number, without a word
    for column in raw.columns:
        if column == "item_id" or pd.api.types.is_numeric_dtype(raw[column]):
            continue
        numbers = pd.to_numeric(raw[column], errors="coerce")
        if 0 < numbers.isna().sum() < 0.5 * len(raw):
            row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
            raise DataFormatError(
                f"{name}: column {column!r} holds numbers except in {int(numbers.isna().sum())} row(s), "
                f"first row {row}: {raw[column].iloc[row]!r}"
            )
    ids = pd.to_numeric(raw["item_id"], errors="coerce")
    if ids.isna().any():
        raise DataFormatError(f"{name}: column 'item_id' must be numeric")
    raw = raw.assign(item_id=ids.astype(np.int64)).set_index("item_id").sort_index()
    if not np.array_equal(raw.index.to_numpy(), np.arange(len(raw))):
        raise DataFormatError(f"{name}: item ids must be 0..n_items-1, got {raw.index.to_numpy()[:10]}...")
    return raw


def _refuse_holes(raw: pd.DataFrame, name: str) -> None:
    """A DataFormatError naming the first missing cell: rows cut short parse with NaN cells."""
    holes = raw.isna().to_numpy()
    if holes.any():
        row, col = np.argwhere(holes)[0]
        raise DataFormatError(
            f"{name}: {int(holes.any(axis=1).sum())} row(s) have missing values, first row {int(row)} in "
            f"column {raw.columns[col]!r} (a file cut short?)"
        )


def _index_hint(raw: pd.DataFrame) -> str:
    """Why a column is missing when the file lacks the publisher's leading unnamed index column."""
    if raw.index.name is None:
        return ""
    if raw.shape[1] == 0:
        other = next((sep for sep in (";", "\t", "|") if sep in str(raw.index.name)), None)
        if other is not None:
            return f" (the header looks {other!r}-separated; the publisher's files are comma-separated)"
    return (
        f" (its first column {raw.index.name!r} was read as the row index: the publisher's files "
        f"begin with an unnamed index column)"
    )


# --------------------------------------------------------------------------------------------
# Features


def _is_categorical(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _same_partition(a: pd.Series, b: pd.Series) -> bool:
    """Whether two labellings of the same rows group them identically (a bijection of labels)."""
    pairs = pd.DataFrame({"a": a.to_numpy(), "b": b.to_numpy()}).drop_duplicates()
    return len(pairs) == a.nunique() == b.nunique()


@dataclass(frozen=True)
class OBDFeatureEncoder:
    """One user space and one item space for all logs of a campaign.

    Build with :meth:`fit`. Categorical user features are one-hot encoded over the sorted union
    of the categories in every log it was fitted on (all columns kept, none dropped); a category
    never seen in fitting encodes as all zeros. Item features: ``item_feature_0`` and other numeric
    columns as they are (already standardised by the publisher), categoricals one-hot.

    Attributes
    ----------
    user_categories : dict of str to list of str
        Categories of each categorical user column, in encoding order.
    affinity_columns : list of str
        ``user-item_affinity_*`` columns appended to the user features (empty unless asked for).
    item_numeric : list of str
        Numeric item columns.
    item_categories : dict of str to list of str
        Categories of each categorical item column.
    """

    user_categories: Mapping[str, Sequence[str]]
    affinity_columns: Sequence[str]
    item_numeric: Sequence[str]
    item_categories: Mapping[str, Sequence[str]]

    @classmethod
    def fit(
        cls,
        logs: Sequence[pd.DataFrame],
        item_context: pd.DataFrame,
        include_affinity: bool = False,
    ) -> OBDFeatureEncoder:
        """Fit on the union of several logs (e.g. a campaign's random and bts logs).

        Parameters
        ----------
        logs : sequence of DataFrame
            Raw logs as returned in :attr:`OpenBanditDataset.logs`.
        item_context : DataFrame
            The canonical item table (indexed by item id).
        include_affinity : bool
            Append the ``user-item_affinity_*`` counts to the user features (Open Bandit
            Pipeline's default context leaves them out).
        """
        if not logs:
            raise ValueError("logs must hold at least one log to fit on, got an empty sequence")
        user_cols = sorted(
            {c for log in logs for c in log.columns if c.startswith("user_feature_")},
            key=lambda c: (len(c), c),
        )
        user_categories = {
            c: sorted({str(v) for log in logs if c in log.columns for v in log[c].unique()})
            for c in user_cols
        }
        affinity = (
            [c for c in logs[0].columns if c.startswith("user-item_affinity_")] if include_affinity else []
        )
        numeric = [c for c in item_context.columns if not _is_categorical(item_context[c])]
        categories = {
            c: sorted(item_context[c].astype(str).unique())
            for c in item_context.columns
            if _is_categorical(item_context[c])
        }
        return cls(user_categories, affinity, numeric, categories)

    @property
    def user_dim(self) -> int:
        """d_u."""
        return sum(len(v) for v in self.user_categories.values()) + len(self.affinity_columns)

    @property
    def item_dim(self) -> int:
        """d_i."""
        return len(self.item_numeric) + sum(len(v) for v in self.item_categories.values())

    @property
    def user_feature_names(self) -> list[str]:
        """Name of each user feature column, e.g. ``user_feature_0=81ce...``."""
        names = [f"{c}={v}" for c, values in self.user_categories.items() for v in values]
        return names + list(self.affinity_columns)

    @property
    def item_feature_names(self) -> list[str]:
        """Name of each item feature column."""
        names = list(self.item_numeric)
        return names + [f"{c}={v}" for c, values in self.item_categories.items() for v in values]

    @staticmethod
    def _one_hot(values: pd.Series, categories: Sequence[str]) -> np.ndarray:
        codes = pd.Index(list(categories)).get_indexer(values.astype(str).to_numpy())
        out = np.zeros((len(values), len(categories)), dtype=np.float64)
        known = codes >= 0
        out[np.flatnonzero(known), codes[known]] = 1.0
        return out

    def transform_users(self, log: pd.DataFrame) -> np.ndarray:
        """User features of every round, shape (n_rounds, d_u), float64."""
        missing = [
            c for c in list(self.user_categories) + list(self.affinity_columns) if c not in log.columns
        ]
        if missing:
            raise ValueError(f"log lacks the user columns {missing} that the encoder was fitted on")
        blocks = [self._one_hot(log[c], cats) for c, cats in self.user_categories.items()]
        if self.affinity_columns:
            blocks.append(log[list(self.affinity_columns)].to_numpy(dtype=np.float64))
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(log), 0))

    def transform_items(self, item_context: pd.DataFrame) -> np.ndarray:
        """Item features, shape (n_items, d_i), float64, row i for item id i."""
        missing = [
            c for c in list(self.item_numeric) + list(self.item_categories) if c not in item_context.columns
        ]
        if missing:
            raise ValueError(f"item_context lacks the columns {missing} that the encoder was fitted on")
        blocks = [item_context[list(self.item_numeric)].to_numpy(dtype=np.float64)]
        blocks += [self._one_hot(item_context[c], cats) for c, cats in self.item_categories.items()]
        return np.concatenate(blocks, axis=1)


@dataclass(frozen=True)
class OpenBanditDataset:
    """The logs of one Open Bandit Dataset campaign under one or more behaviour policies.

    Attributes
    ----------
    campaign : str
        ``"all"``, ``"men"`` or ``"women"``.
    logs : dict of str to DataFrame
        Behaviour policy (``"random"``, ``"bts"``) to its raw log, one row per round sorted by
        time: ``timestamp`` (datetime64, UTC), ``item_id`` (int64, the action), ``position``
        (int64, 1-3 as in the files), ``click`` (int64), ``propensity_score`` (float64),
        ``user_feature_0..3`` (hashed strings) and ``user-item_affinity_<i>`` (float64).
    item_context : DataFrame, shape (n_items, 4)
        The canonical item table, indexed by item id 0..n_items-1.
    raw_item_contexts : dict of str to DataFrame
        Each log's own ``item_context.csv`` (categorical hashes differ between logs).
    sources : dict of str to str
        Where each log came from.
    """

    campaign: str
    logs: Mapping[str, pd.DataFrame]
    item_context: pd.DataFrame
    raw_item_contexts: Mapping[str, pd.DataFrame] = field(repr=False)
    sources: Mapping[str, str]

    @property
    def n_items(self) -> int:
        """Number of items (actions) of the campaign."""
        return len(self.item_context)

    @property
    def policies(self) -> list[str]:
        """Behaviour policies loaded."""
        return list(self.logs)

    def encoder(self, include_affinity: bool = False) -> OBDFeatureEncoder:
        """Feature encoder fitted on the union of every loaded log (one shared context space)."""
        return OBDFeatureEncoder.fit(list(self.logs.values()), self.item_context, include_affinity)

    def _log(self, policy: str) -> pd.DataFrame:
        if policy not in self.logs:
            raise ValueError(f"policy must be one of the loaded logs {self.policies}, got {policy!r}")
        return self.logs[policy]

    def user_features(self, policy: str, include_affinity: bool = False) -> np.ndarray:
        """User features of each round of ``policy``'s log, shape (n_rounds, d_u), float64."""
        return self.encoder(include_affinity).transform_users(self._log(policy))

    def item_features(self) -> np.ndarray:
        """Item features, shape (n_items, d_i), float64 (the same for every log)."""
        return self.encoder().transform_items(self.item_context)

    def to_logged_feedback(self, policy: str, include_affinity: bool = False) -> Any:
        """The log of ``policy`` as :class:`banditrec.ope.feedback.LoggedFeedback`.

        Every round's candidates are the whole catalogue in id order (K = n_items, slot k is item
        k), so ``actions`` equal the logged item ids. ``positions`` are 0-based (file value - 1, as
        Open Bandit Pipeline does), ``timestamps`` are datetime64[ns] (UTC), user ids are -1
        (anonymous). The item arrays are broadcast read-only views, not n copies of the catalogue.

        Returns
        -------
        LoggedFeedback
            user_features (n, d_u), item_features (n, n_items, d_i), item_ids (n, n_items),
            mask (n, n_items), actions/rewards/propensities/positions/timestamps (n,).
        """
        from banditrec.ope.feedback import LoggedFeedback  # lazily: OPE is optional for loaders

        log = self._log(policy)
        encoder = self.encoder(include_affinity)
        n, k = len(log), self.n_items
        items = encoder.transform_items(self.item_context)
        actions = log["item_id"].to_numpy(dtype=np.int64)
        if actions.min() < 0 or actions.max() >= k:
            raise ValueError(f"{policy} log has item ids outside [0, {k}): {actions.min()}..{actions.max()}")
        return LoggedFeedback(
            user_features=encoder.transform_users(log),
            item_features=np.broadcast_to(items, (n, k, items.shape[1])),
            item_ids=np.broadcast_to(np.arange(k, dtype=np.int64), (n, k)),
            mask=np.broadcast_to(np.ones(k, dtype=bool), (n, k)),
            user_ids=np.full(n, -1, dtype=np.int64),
            actions=actions,
            rewards=log["click"].to_numpy(dtype=np.float64),
            propensities=log["propensity_score"].to_numpy(dtype=np.float64),
            positions=log["position"].to_numpy(dtype=np.int64) - 1,
            timestamps=log["timestamp"].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]"),
            metadata={
                "source": f"obd/{policy}/{self.campaign}",
                "origin": self.sources.get(policy, ""),
                "behavior_policy": policy,
                "campaign": self.campaign,
                "user_feature_names": encoder.user_feature_names,
                "item_feature_names": encoder.item_feature_names,
            },
        )


# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class _Raw:
    log: pd.DataFrame
    item_context: pd.DataFrame
    blobs: Mapping[str, bytes]  # the files' bytes, by path relative to the data set root


def _read_pair(read: Callable[[str], bytes], policy: str, campaign: str, where: str, check: bool) -> _Raw:
    log_file, ctx_file = _files(policy, campaign)
    blobs = {}
    for rel in (log_file, ctx_file):
        data = read(rel)
        if check and sha256_bytes(data) != OBD_SAMPLE_SHA256[rel]:
            raise ChecksumError(f"{where}/{rel} does not match the sha256 of obp 0.4.1's sample")
        blobs[rel] = data
    log = _parse_log(blobs[log_file], f"{where}/{log_file}")
    context = _parse_item_context(blobs[ctx_file], f"{where}/{ctx_file}")
    unknown = np.flatnonzero(log["item_id"].to_numpy() >= len(context))
    if unknown.size:  # found only at to_logged_feedback, without the files' names
        raise DataFormatError(
            f"{where}/{log_file}: {unknown.size} round(s) show items that {ctx_file} does not "
            f"describe (it has ids 0..{len(context) - 1}), e.g. item_id {int(log['item_id'].iloc[unknown[0]])}"
        )
    return _Raw(log, context, blobs)


def _local_pair(root: Path, policy: str, campaign: str) -> _Raw:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")

    def read(rel: str) -> bytes:
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (expected <path>/<policy>/<campaign>/...)")
        return path.read_bytes()

    return _read_pair(read, policy, campaign, str(root), check=False)


def _cached_pair(entry_path: Path, policy: str, campaign: str) -> _Raw:
    files = _files(policy, campaign)
    # the shared lock keeps a writer from moving the entry away between the checks and the reads
    with entry_lock(entry_path, shared=True):
        # verifies this pair's checksums only: a damaged file of another policy must not block it
        entry = open_entry(entry_path, only=files)
        blobs = {rel: entry.file(rel).read_bytes() for rel in files}
    return _read_pair(blobs.__getitem__, policy, campaign, str(entry_path), check=True)


class _SampleFetcher:
    """The obp sample files from an installed obp or its wheel; downloads the wheel at most once."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._wheel: Path | None = None
        self._error: Exception | None = None

    def installed(self, policy: str, campaign: str) -> _Raw:
        root = _fetch.installed_package_dir("obp") / "dataset" / "obd"
        if not root.is_dir():
            raise FileNotFoundError(f"the installed obp has no {root}")
        return _read_pair(lambda rel: (root / rel).read_bytes(), policy, campaign, str(root), check=True)

    def wheel(self, policy: str, campaign: str) -> _Raw:
        if self._error is not None:
            raise self._error
        if self._wheel is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="banditrec-pip-")
            try:
                self._wheel = _fetch.pip_download_wheel(OBP_REQUIREMENT, Path(self._tmp.name))
            except Exception as exc:
                self._error = exc
                raise
        with zipfile.ZipFile(self._wheel) as archive:
            names = set(archive.namelist())

            def read(rel: str) -> bytes:
                member = f"obp/dataset/obd/{rel}"
                if member not in names:
                    raise FileNotFoundError(f"{self._wheel.name} has no {member}")
                return archive.read(member)

            return _read_pair(read, policy, campaign, f"PyPI wheel {self._wheel.name}", check=True)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _write_sample_cache(entry: Path, found: Mapping[str, bytes]) -> None:
    """Add files to the sample cache entry (rebuilt atomically with what it already held).

    The entry is read and rewritten under its exclusive lock: every log of every campaign shares
    this one entry, and two processes that each read it, added their own log and renamed the result
    into place used to drop the files of whichever renamed first.
    """
    with entry_lock(entry):
        keep: dict[str, bytes] = {}
        try:
            existing = open_entry(entry, only=())
        except (FileNotFoundError, ChecksumError):
            existing = None
        for rel in existing.files if existing is not None else ():
            try:  # keep the intact files; a damaged one is dropped (and replaced when found again)
                keep[rel] = open_entry(entry, only=(rel,)).file(rel).read_bytes()
            except (OSError, ChecksumError):
                pass
        keep.update(found)

        def build(folder: Path) -> None:
            for rel, data in keep.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(data)

        write_entry(entry, build, meta={"dataset": "open-bandit-dataset sample", "source": OBP_REQUIREMENT})


def load_open_bandit_dataset(
    campaign: str = "all",
    behavior_policies: Sequence[str] = POLICIES,
    path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> OpenBanditDataset:
    """Load the Open Bandit Dataset logs of one campaign.

    Parameters
    ----------
    campaign : {"all", "men", "women"}
    behavior_policies : sequence of {"random", "bts"}
        Logs to load; load both to fit one context space over them (the default).
    path : path, optional
        Root of the full data set (``<path>/<policy>/<campaign>/<campaign>.csv`` and
        ``item_context.csv``); when given it is the only source. Otherwise
        ``$BANDITREC_OBD_PATH`` when set (then the only source: a wrong path is an error, never
        a silent fall-back to the 10,000-round sample), else the cache, an installed obp and the
        obp wheel are tried.
    cache_dir : path, optional
        Cache folder (default: see :func:`banditrec.data.cache.cache_root`).

    Returns
    -------
    OpenBanditDataset

    Raises
    ------
    DataUnavailableError
        No source worked for a log; lists every source tried and why it failed.
    DataFormatError
        (a ValueError) A file was found but is malformed.
    """
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign must be one of {CAMPAIGNS}, got {campaign!r}")
    if isinstance(behavior_policies, str):
        behavior_policies = (behavior_policies,)
    policies = list(dict.fromkeys(behavior_policies))
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise ValueError(
            f"behavior_policies must be a non-empty subset of {POLICIES}, got {behavior_policies!r}"
        )
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}: {path!r}")

    entry = cache_root(cache_dir) / CACHE_ENTRY
    env_path = os.environ.get(PATH_ENV)
    fetcher = _SampleFetcher()
    logs: dict[str, pd.DataFrame] = {}
    contexts: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    to_cache: dict[str, bytes] = {}
    try:
        for policy in policies:
            what = f"Open Bandit Dataset {policy}/{campaign}"
            if path is not None:
                chain = [Source(f"path {path}", lambda p=policy: _local_pair(Path(path), p, campaign))]
            elif env_path:  # an explicit choice, as ``path`` is: the only source, never silently the sample
                chain = [Source(f"${PATH_ENV}={env_path}", lambda p=policy: _local_pair(Path(env_path), p, campaign))]
            else:
                chain = [
                    Source(f"cache {entry}", lambda p=policy: _cached_pair(entry, p, campaign)),
                    Source("installed obp package", lambda p=policy: fetcher.installed(p, campaign)),
                    Source(
                        f"PyPI wheel {OBP_REQUIREMENT} (pip download)",
                        lambda p=policy: fetcher.wheel(p, campaign),
                    ),
                ]
            raw, used = try_sources(what, chain)
            logs[policy], contexts[policy], sources[policy] = raw.log, raw.item_context, used
            # the package and the wheel are cached; a folder the user named (path or $PATH_ENV) is not
            if path is None and not env_path and used in (chain[-1].name, chain[-2].name):
                to_cache.update(raw.blobs)
        if to_cache:
            try:
                _write_sample_cache(entry, to_cache)
            except OSError as exc:
                logger.warning("could not write the Open Bandit Dataset cache at %s: %s", entry, exc)
    finally:
        fetcher.close()
    return OpenBanditDataset(
        campaign=campaign,
        logs=logs,
        item_context=_canonical_item_context(contexts),
        raw_item_contexts=contexts,
        sources=sources,
    )


def _canonical_item_context(contexts: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The first log's item table, after checking that the others describe the same items."""
    names = list(contexts)
    base = contexts[names[0]]
    for other_name in names[1:]:
        other = contexts[other_name]
        same = base.index.equals(other.index) and list(base.columns) == list(other.columns)
        if same:
            for c in base.columns:
                if _is_categorical(base[c]):
                    same &= _same_partition(base[c], other[c])
                else:
                    same &= bool(
                        np.allclose(base[c].to_numpy(float), other[c].to_numpy(float), equal_nan=True)
                    )
        if not same:
            logger.warning(
                "the %s and %s logs' item_context tables describe different items; using %s's for both",
                names[0],
                other_name,
                names[0],
            )
    return base
