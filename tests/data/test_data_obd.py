"""Open Bandit Dataset loader: the publisher's layout, one shared context space, LoggedFeedback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from banditrec.data import DataFormatError, DataUnavailableError, load_open_bandit_dataset, obd
from banditrec.data.obd import OBDFeatureEncoder

N_ITEMS = 6


def _hash(value: str, salt: str) -> str:
    return hashlib.md5(f"{salt}{value}".encode()).hexdigest()


def _write_log(root: Path, policy: str, campaign: str, n: int, seed: int, extra_category: bool) -> None:
    rng = np.random.default_rng(seed)
    folder = root / policy / campaign
    folder.mkdir(parents=True, exist_ok=True)
    ages = ["a", "b", "c"] + (["d"] if extra_category else [])
    log = pd.DataFrame(
        {
            "timestamp": pd.date_range("2019-11-24", periods=n, freq="s", tz="UTC").astype(str)[
                rng.permutation(n)
            ],
            "item_id": rng.integers(0, N_ITEMS, n),
            "position": rng.integers(1, 4, n),
            "click": rng.integers(0, 2, n),
            "propensity_score": np.full(n, 1 / N_ITEMS) if policy == "random" else rng.uniform(0.05, 0.5, n),
            "user_feature_0": [_hash(v, "user") for v in rng.choice(ages, n)],
            "user_feature_1": [_hash(v, "user") for v in rng.choice(["x", "y"], n)],
        }
    )
    if extra_category:  # make sure the extra category occurs
        log.loc[0, "user_feature_0"] = _hash("d", "user")
    for i in range(N_ITEMS):
        log[f"user-item_affinity_{i}"] = rng.integers(0, 2, n).astype(float)
    log.to_csv(folder / f"{campaign}.csv")
    # Same items, same partition into categories, but a different hash salt per log (as in OBD).
    groups = ["g0", "g1", "g0", "g2", "g1", "g0"]
    context = pd.DataFrame(
        {
            "item_id": np.arange(N_ITEMS),
            "item_feature_0": np.linspace(-1, 1, N_ITEMS),
            "item_feature_1": [_hash(g, policy) for g in groups],
        }
    )
    context.to_csv(folder / "item_context.csv")


@pytest.fixture
def obd_root(tmp_path):
    _write_log(tmp_path / "obd", "random", "all", 40, 0, extra_category=False)
    _write_log(tmp_path / "obd", "bts", "all", 30, 1, extra_category=True)
    return tmp_path / "obd"


def test_logs_keep_raw_fields_sorted_by_time(obd_root):
    data = load_open_bandit_dataset("all", path=obd_root)
    assert data.policies == ["random", "bts"] and data.n_items == N_ITEMS
    log = data.logs["random"]
    for column in (
        "timestamp",
        "item_id",
        "position",
        "click",
        "propensity_score",
        "user_feature_0",
        "user-item_affinity_0",
    ):
        assert column in log.columns
    assert log["timestamp"].is_monotonic_increasing
    assert set(log["position"]) <= {1, 2, 3}
    assert data.sources == {"random": f"path {obd_root}", "bts": f"path {obd_root}"}


def test_random_and_bts_share_one_context_space(obd_root):
    data = load_open_bandit_dataset("all", path=obd_root)
    # What a per-log one-hot encoding (Open Bandit Pipeline's) gives: different dimensions.
    per_log = [pd.get_dummies(data.logs[p].filter(like="user_feature")).shape[1] for p in ("random", "bts")]
    assert per_log[0] != per_log[1]
    x_random, x_bts = data.user_features("random"), data.user_features("bts")
    assert x_random.shape[1] == x_bts.shape[1] == 4 + 2
    assert np.all(x_random.sum(axis=1) == 2) and np.all(x_bts.sum(axis=1) == 2)  # one hot per column
    encoder = data.encoder()
    j = encoder.user_feature_names.index(f"user_feature_0={_hash('d', 'user')}")
    assert x_random[:, j].sum() == 0 and x_bts[:, j].sum() >= 1
    # Items: one table for both logs even though their category hashes differ.
    assert not data.raw_item_contexts["random"]["item_feature_1"].equals(
        data.raw_item_contexts["bts"]["item_feature_1"]
    )
    items = data.item_features()
    assert items.shape == (N_ITEMS, 1 + 3)
    np.testing.assert_array_equal(items[:, 1:].argmax(1)[[0, 2, 5]], items[0, 1:].argmax().repeat(3))
    assert data.encoder(include_affinity=True).user_dim == 6 + N_ITEMS


def test_encoder_maps_unseen_categories_to_zeros(obd_root):
    data = load_open_bandit_dataset("all", ["random"], path=obd_root)
    encoder = OBDFeatureEncoder.fit([data.logs["random"]], data.item_context)
    other = load_open_bandit_dataset("all", ["bts"], path=obd_root).logs["bts"]
    x = encoder.transform_users(other)
    unseen = (other["user_feature_0"] == _hash("d", "user")).to_numpy()
    assert x.shape[1] == encoder.user_dim == 5
    assert np.all(x[unseen, :3] == 0) and np.all(x[~unseen, :3].sum(1) == 1)
    with pytest.raises(ValueError, match="at least one log"):
        OBDFeatureEncoder.fit([], data.item_context)


def test_to_logged_feedback(obd_root):
    pytest.importorskip("banditrec.ope.feedback")
    data = load_open_bandit_dataset("all", path=obd_root)
    feedback = data.to_logged_feedback("bts")
    log = data.logs["bts"]
    n = len(log)
    assert feedback.item_ids.shape == (n, N_ITEMS) and feedback.mask.all()
    assert feedback.item_features.shape == (n, N_ITEMS, data.encoder().item_dim)
    assert feedback.user_features.shape == (n, data.encoder().user_dim)
    np.testing.assert_array_equal(feedback.actions, log["item_id"])
    np.testing.assert_array_equal(feedback.item_ids[np.arange(n), feedback.actions], log["item_id"])
    np.testing.assert_array_equal(feedback.positions, log["position"] - 1)
    np.testing.assert_array_equal(feedback.propensities, log["propensity_score"])
    assert feedback.timestamps.dtype.kind == "M" and feedback.metadata["behavior_policy"] == "bts"
    with pytest.raises(ValueError, match="policy must be one of"):
        data.to_logged_feedback("egreedy")


def test_argument_validation(obd_root):
    with pytest.raises(ValueError, match="campaign"):
        load_open_bandit_dataset("kids", path=obd_root)
    with pytest.raises(ValueError, match="behavior_policies"):
        load_open_bandit_dataset("all", ["random", "ucb"], path=obd_root)
    with pytest.raises(DataUnavailableError, match="men/men.csv does not exist"):
        load_open_bandit_dataset("men", path=obd_root)


def test_malformed_log_names_file_and_column(obd_root):
    path = obd_root / "bts" / "all" / "all.csv"
    log = pd.read_csv(path, index_col=0)
    log.drop(columns="click").to_csv(path)
    with pytest.raises(DataFormatError, match=r"bts/all/all.csv: missing column\(s\) \['click'\]"):
        load_open_bandit_dataset("all", path=obd_root)
    log["propensity_score"] = log["propensity_score"].astype(object)
    log.loc[3, "propensity_score"] = "high"
    log.to_csv(path)
    with pytest.raises(DataFormatError, match="column 'propensity_score' must be numeric, row 3 has 'high'"):
        load_open_bandit_dataset("all", path=obd_root)


def test_a_log_cut_short_mid_row_is_a_format_error(obd_root):
    # A truncated local copy used to load: the cut row got a bogus category and NaN features.
    path = obd_root / "bts" / "all" / "all.csv"
    text = path.read_text()
    path.write_text(text[: text.index("\n", len(text) // 2) + 20])  # 20 characters into a row
    with pytest.raises(DataFormatError, match=r"bts/all/all.csv: 1 row\(s\) have missing values, first row \d+ in column .* \(a file cut short\?\)"):
        load_open_bandit_dataset("all", path=obd_root)


def test_real_sample_from_package_sources_then_cache(tmp_path, data_unavailable):
    """The obp 0.4.1 sample from whichever package source works here, then from the cache."""
    cache = tmp_path / "cache"
    try:
        data = load_open_bandit_dataset("all", cache_dir=cache)
    except DataUnavailableError as exc:
        data_unavailable("Open Bandit Dataset sample", exc)
    assert {len(log) for log in data.logs.values()} == {10_000} and data.n_items == 80
    user_dims = {data.user_features(p).shape[1] for p in data.policies}
    assert len(user_dims) == 1  # one context space for both logs
    per_log = {pd.get_dummies(log.filter(like="user_feature")).shape[1] for log in data.logs.values()}
    assert len(per_log) == 2  # ... where per-log encoding disagrees
    again = load_open_bandit_dataset("all", cache_dir=cache)
    assert all(source.startswith("cache ") for source in again.sources.values())
    pd.testing.assert_frame_equal(again.logs["bts"], data.logs["bts"])


def test_a_damaged_cached_file_blocks_only_its_own_log_offline(tmp_path, data_unavailable, monkeypatch):
    # one damaged file used to fail the whole entry's checksums, so offline no OBD log loaded at all
    cache = tmp_path / "cache"
    try:
        load_open_bandit_dataset("all", cache_dir=cache)
    except DataUnavailableError as exc:
        data_unavailable("Open Bandit Dataset sample", exc)
    entry = next(cache.iterdir())
    damaged = entry / "random" / "all" / "all.csv"
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    with monkeypatch.context() as offline:
        offline.setenv("BANDITREC_OFFLINE", "1")
        offline.setattr(obd._SampleFetcher, "installed", lambda self, p, c: (_ for _ in ()).throw(FileNotFoundError("no obp")))
        bts = load_open_bandit_dataset("all", behavior_policies=["bts"], cache_dir=cache)
        assert bts.sources["bts"].startswith("cache ") and len(bts.logs["bts"]) == 10_000
        with pytest.raises(DataUnavailableError, match=r"checksum mismatch for .*random/all/all.csv"):
            load_open_bandit_dataset("all", behavior_policies=["random"], cache_dir=cache)
    # online again, the damaged file is fetched anew and the intact ones are kept
    load_open_bandit_dataset("all", behavior_policies=["random"], cache_dir=cache)
    again = load_open_bandit_dataset("all", cache_dir=cache)
    assert all(source.startswith("cache ") for source in again.sources.values())


@pytest.mark.parametrize("column, value, match", [
    ("click", 2, "column 'click' must be 0 or 1; 1 row(s) are not, first row 3 has 2"),
    ("position", 7, "column 'position' must be 1, 2 or 3 (the three slots); 1 row(s) are not"),
    ("position", 0, "column 'position' must be 1, 2 or 3"),
    ("propensity_score", 0.0, "column 'propensity_score' must be in (0, 1]"),
    ("propensity_score", 1.5, "column 'propensity_score' must be in (0, 1]"),
    ("item_id", -1, "column 'item_id' must be a non-negative id"),
    ("click", 0.5, "column 'click' must hold whole numbers, row 3 has 0.5"),
])
def test_values_out_of_range_are_format_errors_naming_the_file(obd_root, column, value, match):
    # A click of 2 or a seventh slot used to load silently; a propensity of 0 failed later, in
    # LoggedFeedback, without the file's name and at a row index after the time sort.
    path = obd_root / "bts" / "all" / "all.csv"
    log = pd.read_csv(path, index_col=0)
    log[column] = log[column].astype(float)
    log.loc[3, column] = value
    log.to_csv(path)
    with pytest.raises(DataFormatError, match="bts/all/all.csv: " + __import__("re").escape(match)):
        load_open_bandit_dataset("all", path=obd_root)


def test_the_environment_path_is_the_only_source_when_set(tmp_path, monkeypatch):
    # A mistyped $BANDITREC_OBD_PATH used to fall back silently to the 10,000-round sample.
    monkeypatch.setenv("BANDITREC_OBD_PATH", str(tmp_path / "obd_full_typo"))
    with pytest.raises(DataUnavailableError, match=r"\$BANDITREC_OBD_PATH=.*obd_full_typo"):
        load_open_bandit_dataset("all", cache_dir=tmp_path / "cache")


def test_a_good_environment_path_loads_and_is_not_cached(obd_root, tmp_path, monkeypatch):
    # chain[-2] of a one-source chain: an IndexError after the logs had loaded, every time
    monkeypatch.setenv("BANDITREC_OBD_PATH", str(obd_root))
    direct = load_open_bandit_dataset("all", path=obd_root)
    through_env = load_open_bandit_dataset("all", cache_dir=tmp_path / "cache")
    pd.testing.assert_frame_equal(through_env.logs["bts"], direct.logs["bts"])
    assert not any((tmp_path / "cache").rglob("*.csv"))  # the user's own folder is not copied


def test_an_item_context_cut_short_is_a_format_error(obd_root):
    # the NaN cell broke the category sort later, as "'<' not supported between 'float' and 'str'"
    path = obd_root / "bts" / "all" / "item_context.csv"
    lines = path.read_text().splitlines()
    lines[-1] = ",".join(lines[-1].split(",")[:3])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"bts/all/item_context.csv: 1 row\(s\) have missing values, first row 5 in column 'item_feature_1'"):
        load_open_bandit_dataset("all", path=obd_root)


def _put_text(path, column: str, row: int, text: str) -> None:
    """Write ``text`` into one cell of an OBD CSV, as a damaged copy would hold it."""
    table = pd.read_csv(path, index_col=0)
    table[column] = table[column].astype(object)
    table.loc[row, column] = text
    table.to_csv(path)


def test_a_numeric_item_column_with_a_damaged_cell_is_a_format_error(obd_root):
    # the column read as strings and was one-hot encoded, one category per number, silently
    _put_text(obd_root / "random" / "all" / "item_context.csv", "item_feature_0", 2, "oops")
    with pytest.raises(DataFormatError, match=r"random/all/item_context.csv: column 'item_feature_0' holds numbers except in 1 row\(s\), first row 2: 'oops'"):
        load_open_bandit_dataset("all", path=obd_root)


def test_a_non_numeric_affinity_count_is_a_format_error(obd_root):
    # it failed only with include_affinity=True, as numpy's "could not convert string to float"
    _put_text(obd_root / "random" / "all" / "all.csv", "user-item_affinity_1", 3, "x")
    with pytest.raises(DataFormatError, match=r"random/all/all.csv: column 'user-item_affinity_1' must hold finite numbers; 1 row\(s\) do not, first row 3 has 'x'"):
        load_open_bandit_dataset("all", path=obd_root)


def test_a_log_without_rounds_is_a_format_error(obd_root):
    # to_logged_feedback failed with numpy's "zero-size array to reduction operation minimum"
    path = obd_root / "random" / "all" / "all.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataFormatError, match="random/all/all.csv: holds no rounds"):
        load_open_bandit_dataset("all", path=obd_root)


def test_a_logged_item_missing_from_the_item_context_is_a_format_error(obd_root):
    # found only by to_logged_feedback ("random log has item ids outside [0, 6)"), naming no file
    path = obd_root / "random" / "all" / "all.csv"
    log = pd.read_csv(path, index_col=0)
    log.loc[3, "item_id"] = N_ITEMS + 93
    log.to_csv(path)
    with pytest.raises(DataFormatError, match=rf"random/all/all.csv: 1 round\(s\) show items that random/all/item_context.csv does not describe \(it has ids 0..{N_ITEMS - 1}\), e.g. item_id {N_ITEMS + 93}"):
        load_open_bandit_dataset("all", path=obd_root)


@pytest.mark.parametrize("file", ["all.csv", "item_context.csv"])
def test_a_file_without_the_index_column_says_why_a_column_is_missing(obd_root, file):
    path = obd_root / "random" / "all" / file
    pd.read_csv(path, index_col=0).to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"was read as the row index: the publisher's files begin with an unnamed index column"):
        load_open_bandit_dataset("all", path=obd_root)
