"""Logged bandit feedback: the one typed, validated table that off-policy evaluation consumes.

The runner writes it from simulations, the dataset loaders build it from real logs, and every
estimator in :mod:`banditrec.ope.estimators` reads it. It replaces Open Bandit Pipeline's
``bandit_feedback`` dict; :meth:`LoggedFeedback.to_obp_bandit_feedback` and
:meth:`LoggedFeedback.from_obp_bandit_feedback` convert both ways.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from banditrec.environments.simulator import Observation
from banditrec.ope._checks import (
    SUM_TOL,
    as_bool_array,
    as_float_array,
    as_int_array,
    check_distribution,
    describe_bad,
    read_only,
    require_shape,
)

__all__ = ["LoggedFeedback"]

_FORMAT_VERSION = 1
_ARRAY_FIELDS = (
    "user_features",
    "item_features",
    "item_ids",
    "mask",
    "user_ids",
    "actions",
    "rewards",
    "propensities",
)
_OPTIONAL_FIELDS = ("positions", "timestamps", "expected_rewards", "logging_action_dist")
_OBP_KEYS = {
    "n_rounds",
    "n_actions",
    "action",
    "position",
    "reward",
    "pscore",
    "context",
    "action_context",
    "expected_reward",
    "pi_b",
}


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays often sneak into metadata; store them as plain JSON.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


@dataclass(frozen=True, eq=False)
class LoggedFeedback:
    """n logged bandit rounds: who came, what they were shown, what was chosen and what happened.

    Arrays are stored read-only: writable input is copied (so a validated log cannot change
    behind its back), read-only input such as a slice of another log is shared.
    Construct with the fields directly, with :meth:`from_arrays` when only actions, rewards and
    propensities are known, or with :meth:`from_obp_bandit_feedback`.

    Attributes
    ----------
    user_features : ndarray, shape (n, d_u), float64
        Observable user (context) features; d_u may be 0.
    item_features : ndarray, shape (n, K, d_i), float64
        Features of the K candidates shown in each round; d_i may be 0.
    item_ids : ndarray, shape (n, K), int64
        Catalogue id of every candidate (ids of masked slots are arbitrary).
    mask : ndarray, shape (n, K), bool
        True where the candidate slot is real.
    user_ids : ndarray, shape (n,), int64
        Catalogue id of each user, -1 where anonymous.
    actions : ndarray, shape (n,), int64
        Logged action: the index in ``[0, K)`` of the chosen candidate slot (not its item id).
    rewards : ndarray, shape (n,), float64
        Observed reward of the logged action; must be finite.
    propensities : ndarray, shape (n,), float64
        Logging policy's probability of the logged action, in (0, 1].
    positions : ndarray, shape (n,), int64, optional
        Slot of the slate the action was shown in (e.g. Open Bandit Dataset's 3 positions).
    timestamps : ndarray, shape (n,), optional
        Numeric or datetime64 time of each round.
    expected_rewards : ndarray, shape (n, K), float64, optional
        Simulator ground truth E[r | x, candidate]; NaN where unknown (real logs).
    logging_action_dist : ndarray, shape (n, K), float64, optional
        Logging policy's full distribution over the candidate slots, when known. It must agree
        with ``propensities`` at the logged actions, to a relative 1e-6 (the importance weight is
        their inverse, so a small propensity must be matched as closely as a large one).
    metadata : dict
        JSON-serialisable notes, e.g. ``{"source": "obd/random/all", "policy": "uniform"}``.
    """

    user_features: np.ndarray
    item_features: np.ndarray
    item_ids: np.ndarray
    mask: np.ndarray
    user_ids: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    positions: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    expected_rewards: np.ndarray | None = None
    logging_action_dist: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value if value is None or name == "metadata" else read_only(value))

        item_ids = as_int_array(self.item_ids, "item_ids", 2, "with shape (n, K)")
        n, k = item_ids.shape
        if k == 0:
            raise ValueError(f"item_ids must have at least one candidate column, got shape {item_ids.shape}")
        ref = f"item_ids of shape {item_ids.shape} (n={n} rounds, K={k} candidates)"

        user_features = as_float_array(self.user_features, "user_features", 2, "with shape (n, d_u)")
        require_shape(user_features, "user_features", (n, None), ref)
        item_features = as_float_array(self.item_features, "item_features", 3, "with shape (n, K, d_i)")
        require_shape(item_features, "item_features", (n, k, None), ref)
        mask = as_bool_array(self.mask, "mask", 2, "with shape (n, K)")
        require_shape(mask, "mask", (n, k), ref)
        user_ids = as_int_array(self.user_ids, "user_ids", 1, "with shape (n,)")
        require_shape(user_ids, "user_ids", (n,), ref)
        # The contract of an observation (what a policy scoring these rows is handed): a log that
        # breaks it is refused here, not when a policy is first evaluated on it.
        if item_ids.size and item_ids.min() < 0:
            raise ValueError(f"item_ids must be >= 0 (catalogue ids; masked slots too), got {int(item_ids.min())}")
        if user_ids.size and user_ids.min() < -1:
            raise ValueError(f"user_ids must be >= 0, or -1 for anonymous users, got {int(user_ids.min())}")
        actions = as_int_array(self.actions, "actions", 1, "with shape (n,)")
        require_shape(actions, "actions", (n,), ref)
        rewards = as_float_array(self.rewards, "rewards", 1, "with shape (n,)")
        require_shape(rewards, "rewards", (n,), ref)
        propensities = as_float_array(self.propensities, "propensities", 1, "with shape (n,)")
        require_shape(propensities, "propensities", (n,), ref)

        for name, array in (("user_features", user_features), ("item_features", item_features)):
            if not np.isfinite(array).all():
                raise ValueError(
                    f"{name} must be finite; non-finite values in {describe_bad(~np.isfinite(array), array)}"
                )
        if not mask.any(axis=1).all():
            raise ValueError(
                f"mask must have at least one valid candidate per round; empty rows: "
                f"{describe_bad(~mask.any(axis=1), mask.sum(axis=1))}"
            )

        out_of_range = (actions < 0) | (actions >= k)
        if out_of_range.any():
            raise ValueError(
                f"actions must be candidate indices in [0, K={k}); out of range in "
                f"{describe_bad(out_of_range, actions)}"
            )
        on_masked = ~mask[np.arange(n), actions]
        if on_masked.any():
            raise ValueError(
                f"actions must choose a valid candidate (mask True); masked choices in "
                f"{describe_bad(on_masked, actions)}"
            )
        if not np.isfinite(rewards).all():
            raise ValueError(
                f"rewards must be finite; non-finite values in {describe_bad(~np.isfinite(rewards), rewards)}"
            )
        bad_p = ~((propensities > 0) & (propensities <= 1))
        if bad_p.any():
            counts = (
                f"{int(np.sum(propensities <= 0))} zero or negative, {int(np.sum(propensities > 1))} above 1, "
                f"{int(np.isnan(propensities).sum())} NaN"
            )
            raise ValueError(
                f"propensities must lie in (0, 1] ({counts}); offending {describe_bad(bad_p, propensities)}"
            )
        # Below the smallest normal float, 1 / propensity overflows to inf in every importance weight.
        tiny = propensities < np.finfo(np.float64).tiny
        if tiny.any():
            raise ValueError(
                f"propensities below {np.finfo(np.float64).tiny:.3g} make importance weights overflow; "
                f"offending {describe_bad(tiny, propensities)}"
            )

        positions = timestamps = expected = logging = None
        if self.positions is not None:
            positions = as_int_array(self.positions, "positions", 1, "with shape (n,)")
            require_shape(positions, "positions", (n,), ref)
            if (positions < 0).any():
                raise ValueError(
                    f"positions must be non-negative; negative in {describe_bad(positions < 0, positions)}"
                )
        if self.timestamps is not None:
            timestamps = np.asarray(self.timestamps)
            if timestamps.dtype.kind not in "iufM":
                raise TypeError(f"timestamps must be numeric or datetime64, got dtype {timestamps.dtype}")
            require_shape(timestamps, "timestamps", (n,), ref)
            missing = np.isnat(timestamps) if timestamps.dtype.kind == "M" else ~np.isfinite(timestamps)
            if missing.any():  # split_by_time would silently sort those rows last
                raise ValueError(f"timestamps must be finite (no NaN or NaT); missing in {describe_bad(missing, timestamps)}")
        if self.expected_rewards is not None:
            expected = as_float_array(self.expected_rewards, "expected_rewards", 2, "with shape (n, K)")
            require_shape(expected, "expected_rewards", (n, k), ref)
            if np.isinf(expected).any():
                raise ValueError(
                    f"expected_rewards must be finite or NaN (unknown); infinite in "
                    f"{describe_bad(np.isinf(expected), expected)}"
                )
        if self.logging_action_dist is not None:
            logging = as_float_array(self.logging_action_dist, "logging_action_dist", 2, "with shape (n, K)")
            require_shape(logging, "logging_action_dist", (n, k), ref)
            check_distribution(logging, mask, "logging_action_dist")
            chosen = logging[np.arange(n), actions]
            # Relative, not absolute: the weight is 1 / propensity, so 5e-7 against 1e-8 (within an
            # absolute 1e-6) is a weight 50 times too small.
            gap = np.abs(chosen - propensities) > SUM_TOL * np.maximum(chosen, propensities)
            if gap.any():
                raise ValueError(
                    f"propensities disagree with logging_action_dist at the logged actions (relative "
                    f"tolerance {SUM_TOL:g}) in {describe_bad(gap, propensities)} vs logging_action_dist "
                    f"{float(chosen[np.argmax(gap)]):.10g}"
                )

        if not isinstance(self.metadata, Mapping):
            raise TypeError(f"metadata must be a dict, got {type(self.metadata).__name__}")
        metadata = dict(self.metadata)
        try:
            json.dumps(metadata, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata must be JSON-serialisable (it is saved as JSON): {exc}") from None

        for name, value in (
            ("user_features", user_features),
            ("item_features", item_features),
            ("item_ids", item_ids),
            ("mask", mask),
            ("user_ids", user_ids),
            ("actions", actions),
            ("rewards", rewards),
            ("propensities", propensities),
            ("positions", positions),
            ("timestamps", timestamps),
            ("expected_rewards", expected),
            ("logging_action_dist", logging),
            ("metadata", metadata),
        ):
            put(name, value)

    # ------------------------------------------------------------------ sizes and views
    @property
    def n_rounds(self) -> int:
        """n, the number of logged rounds."""
        return int(self.actions.shape[0])

    @property
    def n_candidates(self) -> int:
        """K, the number of candidate slots per round."""
        return int(self.item_ids.shape[1])

    def __len__(self) -> int:
        return self.n_rounds

    def __repr__(self) -> str:
        optional = [name for name in _OPTIONAL_FIELDS if getattr(self, name) is not None]
        return (
            f"LoggedFeedback(n_rounds={self.n_rounds}, n_candidates={self.n_candidates}, "
            f"user_dim={self.user_features.shape[1]}, item_dim={self.item_features.shape[2]}, "
            f"optional={optional}, metadata={self.metadata})"
        )

    def observation(self) -> Observation:
        """The logged contexts as a batch :class:`~banditrec.environments.simulator.Observation` of size n."""
        return Observation(
            user_features=self.user_features,
            item_features=self.item_features,
            item_ids=self.item_ids,
            mask=self.mask,
            user_ids=self.user_ids,
        )

    def __getitem__(self, index: Any) -> LoggedFeedback:
        """Rows (an integer, a slice, an integer array or a boolean mask) as a new LoggedFeedback."""
        if isinstance(index, (int, np.integer)):
            position = int(index) + (self.n_rounds if index < 0 else 0)
            if not 0 <= position < self.n_rounds:
                raise IndexError(f"row {index} is out of range for {self.n_rounds} rounds")
            index = slice(position, position + 1)
        taken = {name: getattr(self, name)[index] for name in _ARRAY_FIELDS}
        taken.update(
            {
                name: None if getattr(self, name) is None else getattr(self, name)[index]
                for name in _OPTIONAL_FIELDS
            }
        )
        return LoggedFeedback(**taken, metadata=self.metadata)

    # ------------------------------------------------------------------ combining
    @classmethod
    def concat(cls, feedbacks: Sequence[LoggedFeedback]) -> LoggedFeedback:
        """Stack several logs row-wise.

        Parameters
        ----------
        feedbacks : sequence of LoggedFeedback
            Logs with the same K, d_u and d_i. ``positions``, ``timestamps`` and
            ``logging_action_dist`` must be present in all or none; ``expected_rewards`` missing
            in some parts is filled with NaN (unknown).

        Returns
        -------
        LoggedFeedback
            Metadata is the first part's when all parts agree, else ``{"parts": [...]}``.
        """
        parts = list(feedbacks)
        if not parts:
            raise ValueError("concat needs at least one LoggedFeedback, got an empty sequence")
        for i, part in enumerate(parts):
            if not isinstance(part, LoggedFeedback):
                raise TypeError(f"concat expects LoggedFeedback objects; item {i} is {type(part).__name__}")
        first = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            for what, a, b in (
                ("n_candidates", first.n_candidates, part.n_candidates),
                ("user feature dim", first.user_features.shape[1], part.user_features.shape[1]),
                ("item feature dim", first.item_features.shape[2], part.item_features.shape[2]),
            ):
                if a != b:
                    raise ValueError(f"cannot concat: part {i} has {what} {b}, part 0 has {a}")
        stacked = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _ARRAY_FIELDS}
        for name in _OPTIONAL_FIELDS:
            present = [getattr(p, name) is not None for p in parts]
            if not any(present):
                stacked[name] = None
            elif all(present):
                stacked[name] = np.concatenate([getattr(p, name) for p in parts])
            elif name == "expected_rewards":
                stacked[name] = np.concatenate(
                    [
                        p.expected_rewards
                        if p.expected_rewards is not None
                        else np.full((p.n_rounds, p.n_candidates), np.nan)
                        for p in parts
                    ]
                )
            else:
                missing = [i for i, ok in enumerate(present) if not ok]
                raise ValueError(
                    f"cannot concat: {name} is present in some parts but missing in parts {missing}"
                )
        same = all(p.metadata == first.metadata for p in parts)
        metadata = dict(first.metadata) if same else {"parts": [p.metadata for p in parts]}
        return cls(**stacked, metadata=metadata)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the log as a compressed ``.npz`` (no pickles; metadata as a JSON string).

        Parameters
        ----------
        path : str or PathLike
            Target file; ``.npz`` is appended when missing.

        Returns
        -------
        Path
            The file written.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAY_FIELDS}
        arrays.update(
            {
                name: np.asarray(getattr(self, name))
                for name in _OPTIONAL_FIELDS
                if getattr(self, name) is not None
            }
        )
        arrays["metadata_json"] = np.array(json.dumps(self.metadata, default=_json_default))
        arrays["format_version"] = np.array(_FORMAT_VERSION)
        path.parent.mkdir(parents=True, exist_ok=True)
        # written beside the target and renamed over it: an interrupted save leaves the previous
        # file (or none), never half an archive under the log's name
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LoggedFeedback:
        """Read a log written by :meth:`save` (validated again on the way in).

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            The file is not a (complete) banditrec LoggedFeedback ``.npz``; the message names it.
        """
        path = Path(path)
        if path.is_dir():
            raise FileNotFoundError(f"{path} is a folder, not a LoggedFeedback .npz file")
        if not path.is_file():
            raise FileNotFoundError(f"logged feedback file not found: {path}")
        what = "a banditrec LoggedFeedback file (.npz written by LoggedFeedback.save)"
        # numpy reads a file that is not a zip archive as a pickle and says "contains pickled
        # (object) data"; a truncated archive raises zipfile's BadZipFile: neither names the file.
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not {what}: it is not an .npz archive (or it is truncated)")
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format_version"]) if "format_version" in data else None
                if version != _FORMAT_VERSION:
                    raise ValueError(
                        f"{path} is not a banditrec LoggedFeedback file of format {_FORMAT_VERSION} "
                        f"(found format_version={version})"
                    )
                missing = [name for name in _ARRAY_FIELDS if name not in data]
                if missing:
                    raise ValueError(f"{path} lacks required arrays {missing}")
                kwargs: dict[str, Any] = {name: data[name] for name in _ARRAY_FIELDS}
                kwargs.update({name: data.get(name, None) for name in _OPTIONAL_FIELDS})
                kwargs["metadata"] = json.loads(str(data["metadata_json"]))
        except (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            if str(exc).startswith(str(path)):  # raised above, already naming the file
                raise
            raise ValueError(f"{path} is not {what}: it is damaged ({str(exc) or type(exc).__name__})") from exc
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as exc:  # it opens, but does not hold a valid log (NaN rewards, say)
            raise type(exc)(f"{path}: {exc}") from exc

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        actions: Any,
        rewards: Any,
        propensities: Any,
        n_candidates: int,
        *,
        user_features: Any = None,
        item_ids: Any = None,
        mask: Any = None,
        user_ids: Any = None,
        positions: Any = None,
        timestamps: Any = None,
        expected_rewards: Any = None,
        logging_action_dist: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> LoggedFeedback:
        """Build a log from just actions, rewards, propensities and K.

        Missing context is filled with empty features: ``user_features`` (n, 0),
        ``item_features`` (n, K, 0), ``item_ids`` = 0..K-1 in every row, all slots valid,
        anonymous users (-1).

        Parameters
        ----------
        actions : array-like, shape (n,)
            Index of the logged candidate slot.
        rewards : array-like, shape (n,)
        propensities : array-like, shape (n,)
        n_candidates : int
            K, candidate slots per round.
        user_features : array-like, shape (n, d_u), optional
        item_ids, mask : array-like, shape (n, K), optional
        user_ids, positions, timestamps : array-like, shape (n,), optional
        expected_rewards, logging_action_dist : array-like, shape (n, K), optional
        metadata : dict, optional
        """
        if (
            isinstance(n_candidates, bool)
            or not isinstance(n_candidates, (int, np.integer))
            or n_candidates < 1
        ):
            raise ValueError(f"n_candidates must be a positive integer, got {n_candidates!r}")
        k = int(n_candidates)
        n = int(np.shape(actions)[0]) if np.ndim(actions) >= 1 else 0
        if np.ndim(actions) != 1:
            raise ValueError(f"actions must be 1-dimensional with shape (n,), got shape {np.shape(actions)}")
        return cls(
            user_features=np.zeros((n, 0)) if user_features is None else user_features,
            item_features=np.zeros((n, k, 0)),
            item_ids=np.broadcast_to(np.arange(k, dtype=np.int64), (n, k)) if item_ids is None else item_ids,
            mask=np.ones((n, k), dtype=bool) if mask is None else mask,
            user_ids=np.full(n, -1, dtype=np.int64) if user_ids is None else user_ids,
            actions=actions,
            rewards=rewards,
            propensities=propensities,
            positions=positions,
            timestamps=timestamps,
            expected_rewards=expected_rewards,
            logging_action_dist=logging_action_dist,
            metadata=dict(metadata or {}),
        )

    # ------------------------------------------------------------------ Open Bandit Pipeline
    def to_obp_bandit_feedback(self) -> dict[str, Any]:
        """Open Bandit Pipeline's ``bandit_feedback`` dict (no dependency on obp).

        OBP indexes a global action set, so ``action`` is the logged candidate's *item id* and
        ``n_actions`` is ``max item id + 1`` over valid candidates. Per-round candidate sets are not
        representable in OBP and are dropped; each item's features become one row of
        ``action_context``, which requires an item's features to be the same in every round.

        Returns
        -------
        dict
            Keys ``n_rounds``, ``n_actions``, ``action`` (n,), ``position`` (n,) (zeros when unknown),
            ``reward`` (n,), ``pscore`` (n,), ``context`` (n, d_u), ``action_context``
            (n_actions, d_i); plus ``expected_reward`` (n, n_actions; NaN for items not shown)
            and ``pi_b`` (n, n_actions, 1) when known.
        """
        n = self.n_rounds
        if n == 0:
            raise ValueError("the log has no rounds: OBP's bandit_feedback needs at least one")
        rows, slots = np.nonzero(self.mask)
        ids = self.item_ids[rows, slots]
        if ids.min() < 0:
            raise ValueError(
                f"item_ids of valid candidates must be non-negative for OBP's action index, "
                f"found {int(ids.min())}"
            )
        n_actions = int(ids.max()) + 1
        feats = self.item_features[rows, slots]
        uniq, first = np.unique(ids, return_index=True)
        action_context = np.zeros((n_actions, self.item_features.shape[2]))
        action_context[uniq] = feats[first]
        varying = np.any(feats != action_context[ids], axis=1)
        if varying.any():
            i = int(np.argmax(varying))
            raise ValueError(
                f"item {int(ids[i])} has features that vary across rounds (row {int(rows[i])}); "
                "OBP's action_context holds one vector per action"
            )
        out: dict[str, Any] = {
            "n_rounds": n,
            "n_actions": n_actions,
            "action": self.item_ids[np.arange(n), self.actions].copy(),
            "position": np.zeros(n, dtype=np.int64) if self.positions is None else self.positions.copy(),
            "reward": self.rewards.copy(),
            "pscore": self.propensities.copy(),
            "context": self.user_features.copy(),
            "action_context": action_context,
        }
        if self.expected_rewards is not None:
            expected = np.full((n, n_actions), np.nan)
            expected[rows, ids] = self.expected_rewards[rows, slots]
            out["expected_reward"] = expected
        if self.logging_action_dist is not None:
            pi_b = np.zeros((n, n_actions, 1))
            pi_b[rows, ids, 0] = self.logging_action_dist[rows, slots]
            out["pi_b"] = pi_b
        return out

    @classmethod
    def from_obp_bandit_feedback(
        cls, bandit_feedback: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
    ) -> LoggedFeedback:
        """Build from Open Bandit Pipeline's ``bandit_feedback`` dict (no dependency on obp).

        Every round gets the full action set as its K = ``n_actions`` candidates (ids 0..K-1),
        with ``action_context`` as the item features of every round.

        Parameters
        ----------
        bandit_feedback : mapping
            Needs ``n_rounds``, ``n_actions``, ``action``, ``reward``, ``pscore``; uses
            ``position``, ``context``, ``action_context``, ``expected_reward`` (n, n_actions) and
            ``pi_b`` (n, n_actions[, len_list]) when present; a table with len_list > 1 needs
            ``position`` and keeps each round's own position. ``action_context`` has one row per
            action, (n_actions, d_i). Other keys are listed in ``metadata["obp_ignored_keys"]``.
        metadata : dict, optional
            Stored on the result (``{"source": "obp"}`` by default).
        """
        if not isinstance(bandit_feedback, Mapping):
            raise TypeError(f"bandit_feedback must be a dict, got {type(bandit_feedback).__name__}")
        missing = {"n_rounds", "n_actions", "action", "reward", "pscore"} - set(bandit_feedback)
        if missing:
            raise KeyError(f"bandit_feedback lacks keys {sorted(missing)}; got {sorted(bandit_feedback)}")
        bf = bandit_feedback
        for key in ("n_rounds", "n_actions"):  # int() read 4.7 as 4 and "4" as 4
            if isinstance(bf[key], bool) or not isinstance(bf[key], (int, np.integer)) or bf[key] < 0:
                raise ValueError(f"bandit_feedback[{key!r}] must be a non-negative integer, got {bf[key]!r}")
        n, k = int(bf["n_rounds"]), int(bf["n_actions"])
        actions = as_int_array(bf["action"], "bandit_feedback['action']", 1)
        if actions.shape[0] != n:
            raise ValueError(f"bandit_feedback['action'] has {actions.shape[0]} rows but n_rounds is {n}")
        positions = (
            None
            if bf.get("position") is None
            else as_int_array(bf["position"], "bandit_feedback['position']", 1)
        )
        if positions is not None and positions.shape[0] != n:
            raise ValueError(f"bandit_feedback['position'] has {positions.shape[0]} rows but n_rounds is {n}")

        def at_position(value: Any, name: str) -> np.ndarray:
            label = f"bandit_feedback[{name!r}]"
            array = as_float_array(value, label)
            if array.ndim == 3 and array.shape[2] == 1:
                array = array[:, :, 0]
            elif array.ndim == 3:  # OBP's (n, n_actions, len_list): keep each round's own position
                require_shape(array, label, (n, k, None), f"n_rounds={n}, n_actions={k}")
                # numpy's IndexError, or position 0 for every round, said nothing about which key
                if positions is None:
                    raise ValueError(
                        f"{label} has shape {array.shape} with {array.shape[2]} positions, but "
                        "bandit_feedback['position'] is missing to pick each round's values"
                    )
                if positions.size and not 0 <= positions.min() <= positions.max() < array.shape[2]:
                    raise ValueError(
                        f"{label} covers positions 0 to {array.shape[2] - 1} but bandit_feedback['position'] "
                        f"holds {int(positions.min() if positions.min() < 0 else positions.max())}"
                    )
                array = array[np.arange(n), :, positions]
            return array

        context = bf.get("context")
        action_context = bf.get("action_context")
        if action_context is None:
            item_features = np.zeros((n, k, 0))
        else:  # one row per action; numpy's broadcast error named neither the key nor n_actions
            action_context = as_float_array(action_context, "bandit_feedback['action_context']", 2)
            require_shape(action_context, "bandit_feedback['action_context']", (k, None), f"n_actions={k}")
            item_features = np.broadcast_to(action_context[None], (n, k, action_context.shape[1]))
        meta = {"source": "obp"} if metadata is None else dict(metadata)
        ignored = sorted(set(bf) - _OBP_KEYS)
        if ignored:
            meta["obp_ignored_keys"] = ignored
        return cls(
            user_features=np.zeros((n, 0)) if context is None else context,
            item_features=item_features,
            item_ids=np.broadcast_to(np.arange(k, dtype=np.int64), (n, k)),
            mask=np.broadcast_to(np.ones(k, dtype=bool), (n, k)),
            user_ids=np.full(n, -1, dtype=np.int64),
            actions=actions,
            rewards=bf["reward"],
            propensities=bf["pscore"],
            positions=positions,
            expected_rewards=None
            if bf.get("expected_reward") is None
            else at_position(bf["expected_reward"], "expected_reward"),
            logging_action_dist=None if bf.get("pi_b") is None else at_position(bf["pi_b"], "pi_b"),
            metadata=meta,
        )


# Keep the field lists honest if someone adds a field.
assert {f.name for f in fields(LoggedFeedback)} == set(_ARRAY_FIELDS) | set(_OPTIONAL_FIELDS) | {"metadata"}
