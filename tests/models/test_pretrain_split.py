"""pretrain's choice of split: rows (the default, unchanged), whole users, or the latest rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
from banditrec.models import SPLITS, LogArrays, MLPScorer, as_log_arrays, build_model, pretrain, split_rows
from banditrec.models.training import loss_function
from banditrec.runner import run_trial


def click_logs(n=500, seed=0, d=4, n_users=None):
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    p = 1 / (1 + np.exp(-3 * (u * v).sum(1)))
    return {
        "user_features": u,
        "item_features": v,
        "item_ids": rng.integers(0, 10, n),
        "user_ids": np.full(n, -1) if n_users is None else rng.integers(0, n_users, n),
        "rewards": (rng.random(n) < p).astype(float),
    }


@pytest.fixture(scope="module")
def world_logs():
    """Logs of a Linear world with 60 known users (ids 0..59) and timestamps (the step): 3000 rows."""
    params = {
        "n_items": 20,
        "n_candidates": 5,
        "n_users": 60,
        "context_dim": 4,
        "reward": "gaussian",
        "noise": 0.1,
    }
    cfg = ExperimentConfig(
        "log",
        3000,
        50,
        (0,),
        EnvironmentSpec(id="banditrec/Linear-v0", params=params),
        (PolicySpec("random", "Random"),),
        5,
    )
    return run_trial(cfg, cfg.policies[0], seed=0, log_feedback=True).feedback


def _test_loss(model, data, rows):
    """The model's loss on the given rows, recomputed outside pretrain."""
    logs = as_log_arrays(data).take(rows)
    with torch.no_grad():
        out = model(
            torch.as_tensor(logs.user_features, dtype=torch.float32),
            torch.as_tensor(logs.item_features, dtype=torch.float32)[:, None, :],
            torch.as_tensor(logs.item_ids)[:, None],
            torch.as_tensor(logs.user_ids),
        )[:, 0]
    return float(loss_function(model.banditrec_loss)(out, torch.as_tensor(logs.rewards, dtype=torch.float32)))


def _disjoint_cover(parts, n):
    joined = np.concatenate(parts)
    assert joined.dtype == np.int64
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))  # each row in exactly one part


# -- "row", the default: exactly the split pretrain always made ------------------------------------


@pytest.mark.parametrize("seed", [0, 5])
def test_the_default_split_is_the_seeded_row_permutation(seed):
    # The split pretrain made before `split` existed: the first round(0.1 n) of default_rng(seed)'s
    # permutation are the test rows, the next round(0.1 n) the validation rows.
    perm = np.random.default_rng(seed).permutation(500)
    train, val, test = split_rows(click_logs(), seed=seed)
    np.testing.assert_array_equal(test, perm[:50])
    np.testing.assert_array_equal(val, perm[50:100])
    np.testing.assert_array_equal(train, perm[100:])


def test_the_default_is_split_row_bit_for_bit():
    runs = [
        pretrain(MLPScorer(4, 4, hidden=(8,), seed=1), click_logs(), epochs=3, seed=5, device="cpu", **split)
        for split in ({}, {"split": "row"})
    ]
    assert runs[0][1] == runs[1][1] and runs[0][1]["split"] == "row"
    assert "n_test_users" not in runs[0][1]
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("split", SPLITS)
def test_pretrain_tests_on_the_rows_split_rows_returns(world_logs, split):
    model, metrics = pretrain(
        build_model("mlp", 4, 4, hidden=(8,), seed=0), world_logs, split=split, epochs=3, seed=2, device="cpu"
    )
    train, val, test = split_rows(world_logs, split, seed=2)
    assert metrics["split"] == split
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (train.size, val.size, test.size)
    assert metrics["test_loss"] == pytest.approx(_test_loss(model, world_logs, test), rel=1e-5)


# -- "user": whole users held out --------------------------------------------------------------------


def test_user_split_holds_out_whole_users_in_the_requested_shares():
    logs = click_logs(20_000, n_users=1000)
    train, val, test = split_rows(logs, "user", val_fraction=0.2, test_fraction=0.1, seed=3)
    _disjoint_cover((train, val, test), 20_000)
    ids = [set(logs["user_ids"][part].tolist()) for part in (train, val, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # no user in two parts
    assert [len(s) for s in ids] == [700, 200, 100]  # exact shares of the 1000 users
    # rows follow their users: about the same shares of the rows
    assert val.size / 20_000 == pytest.approx(0.2, abs=0.02) and test.size / 20_000 == pytest.approx(
        0.1, abs=0.02
    )
    again = split_rows(logs, "user", val_fraction=0.2, test_fraction=0.1, seed=3)
    other = split_rows(logs, "user", val_fraction=0.2, test_fraction=0.1, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val, test), strict=True))
    assert not np.array_equal(other[2], test)


def test_anonymous_rows_stay_in_training():
    logs = click_logs(300, n_users=20)
    logs["user_ids"][::3] = -1
    train, val, test = split_rows(logs, "user", seed=0)
    anonymous = np.flatnonzero(logs["user_ids"] == -1)
    assert np.isin(anonymous, train).all()
    assert (logs["user_ids"][np.concatenate([val, test])] >= 0).all()
    _, metrics = pretrain(
        MLPScorer(4, 4, hidden=(4,), seed=0), logs, split="user", epochs=1, seed=0, device="cpu"
    )
    assert (metrics["n_train_users"], metrics["n_val_users"], metrics["n_test_users"]) == (16, 2, 2)


def test_user_split_measures_users_never_seen_in_training(world_logs):
    # Matrix factorisation knows users by id only: it predicts held-out interactions of known users
    # well and users it never saw badly. The row split cannot tell these apart; the user split does.
    def fit(split):
        model = build_model("mf", 4, 4, hidden=(8,), seed=0, n_users=64, n_items=32)
        return pretrain(model, world_logs, split=split, lr=0.03, epochs=40, seed=0, device="cpu")[1]

    row, user = fit("row"), fit("user")
    train, val, test = split_rows(world_logs, "user", seed=0)
    seen = set(world_logs.user_ids[train].tolist())
    assert seen.isdisjoint(world_logs.user_ids[test].tolist()) and seen.isdisjoint(
        world_logs.user_ids[val].tolist()
    )
    assert (user["n_train_users"], user["n_val_users"], user["n_test_users"]) == (48, 6, 6)
    assert user["n_test"] == test.size
    # measured: 0.013 (rows) vs 0.65 (users)
    assert user["test_loss"] > 10 * row["test_loss"], (row["test_loss"], user["test_loss"])


def test_user_split_with_only_a_test_part_needs_two_users():
    logs = click_logs(40, n_users=2)
    train, val, test = split_rows(logs, "user", val_fraction=0.0, test_fraction=0.5, seed=0)
    assert val.size == 0 and len(set(logs["user_ids"][test])) == 1 and len(set(logs["user_ids"][train])) == 1


# -- "time": the latest rows held out ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["float", "int", "datetime64"])
def test_time_split_holds_out_the_latest_rows(kind):
    logs = click_logs(1000)
    rng = np.random.default_rng(1)
    times = rng.integers(0, 200, 1000)  # shuffled, with ties
    logs["timestamps"] = {
        "float": times + 0.5,
        "int": times,
        "datetime64": np.datetime64("2024-01-01") + times.astype("timedelta64[h]"),
    }[kind]
    train, val, test = split_rows(logs, "time", val_fraction=0.2, test_fraction=0.1, seed=0)
    _disjoint_cover((train, val, test), 1000)
    assert (train.size, val.size, test.size) == (700, 200, 100)
    t = logs["timestamps"]
    assert t[train].max() <= t[val].min() and t[val].max() <= t[test].min()
    assert t[train].min() == t.min() and t[test].max() == t.max()
    # no randomness: the seed does not matter
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            split_rows(logs, "time", val_fraction=0.2, test_fraction=0.1, seed=9),
            (train, val, test),
            strict=True,
        )
    )


def test_time_split_without_timestamps_is_row_order():
    train, val, test = split_rows(click_logs(), "time")
    np.testing.assert_array_equal(train, np.arange(400))
    np.testing.assert_array_equal(val, np.arange(400, 450))
    np.testing.assert_array_equal(test, np.arange(450, 500))


def test_time_split_of_simulated_logs_tests_on_the_last_steps(world_logs):
    _, val, test = split_rows(world_logs, "time")
    assert world_logs.timestamps[test].min() >= world_logs.timestamps[val].max() == 53  # 60 steps of 50 users
    runs = [
        pretrain(
            build_model("mlp", 4, 4, hidden=(8,), seed=0),
            world_logs,
            split="time",
            epochs=2,
            seed=s,
            device="cpu",
        )[1]
        for s in (0, 0, 1)
    ]
    assert runs[0] == runs[1]  # the seed still fixes the minibatch shuffles
    assert runs[0]["train_loss"] != runs[2]["train_loss"]


def test_log_arrays_carry_timestamps_through_take():
    logs = click_logs(5)
    logs["timestamps"] = np.arange(5.0)
    arrays = as_log_arrays(logs)
    np.testing.assert_array_equal(arrays.take(np.array([4, 1])).timestamps, [4.0, 1.0])
    assert as_log_arrays(click_logs(5)).timestamps is None


# -- errors ------------------------------------------------------------------------------------------


def _with(n_users=None, **change):
    return click_logs(60, n_users=n_users) | change


@pytest.mark.parametrize(
    "data, options, error, match",
    [
        (
            _with(),
            {"split": "users"},
            ValueError,
            r"split must be one of \('row', 'user', 'time'\), got 'users'",
        ),
        (_with(), {"split": None}, ValueError, r"split must be one of \('row', 'user', 'time'\), got None"),
        (
            _with(n_users=2),
            {"split": "user"},
            ValueError,
            (
                r"split='user' needs at least 3 distinct user ids \(one for training and one for each "
                r"held-out part\) with val_fraction=0.1, test_fraction=0.1; the logs have 2"
            ),
        ),
        (
            _with(),
            {"split": "user"},
            ValueError,
            r"needs at least 3 distinct user ids .* the logs have 0 \(-1, anonymous",
        ),
        (
            _with(n_users=5),
            {"split": "user"},
            ValueError,
            r"val_fraction=0.1 of 5 users is no user; give more users or val_fraction=0",
        ),
        (
            _with(n_users=4),
            {"split": "user", "val_fraction": 0.5, "test_fraction": 0.5},
            ValueError,
            r"4 users leave no training user with val_fraction=0.5, test_fraction=0.5",
        ),
        (
            _with(user_ids=np.r_[-2, np.arange(59)]),
            {"split": "user"},
            ValueError,
            r"split='user' needs user_ids >= 0, or -1 for anonymous users, got -2",
        ),
        (
            _with(timestamps=np.r_[0.0, 1.0, np.nan, np.arange(57.0)]),
            {"split": "time"},
            ValueError,
            r"split='time' needs finite timestamps; 1 are NaN or NaT \(rows \[2\]\)",
        ),
        (
            _with(timestamps=np.r_[np.datetime64("NaT"), np.arange(59).astype("datetime64[s]")]),
            {"split": "time"},
            ValueError,
            r"split='time' needs finite timestamps; 1 are NaN or NaT \(rows \[0\]\)",
        ),
        (
            _with(timestamps=np.arange(59.0)),
            {},
            ValueError,
            r"timestamps must have shape \(60,\) to match 60 rewards",
        ),
        (
            _with(timestamps=np.array(["2024-01-01"] * 60)),
            {},
            TypeError,
            r"timestamps must be numeric or datetime64",
        ),
        (
            _with(),
            {"split": "time", "test_fraction": 0.001},
            ValueError,
            r"test_fraction=0.001 of 60 rows is no row",
        ),
    ],
)
def test_bad_splits_are_one_clear_line(data, options, error, match):
    with pytest.raises(error, match=match) as info:
        split_rows(data, **options)
    assert "\n" not in str(info.value)
    with pytest.raises(error, match=match):
        pretrain(MLPScorer(4, 4, hidden=(4,), seed=0), data, epochs=1, seed=0, device="cpu", **options)


def test_nan_timestamps_do_not_matter_to_the_other_splits():
    data = _with(n_users=30, timestamps=np.r_[np.nan, np.arange(59.0)])
    for split in ("row", "user"):
        assert sum(part.size for part in split_rows(data, split)) == 60
    assert isinstance(as_log_arrays(data), LogArrays)
