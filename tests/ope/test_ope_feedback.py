"""LoggedFeedback as a container: views, slicing, concat, persistence and OBP conversion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from banditrec.environments.simulator import Observation
from banditrec.ope import IPS, LoggedFeedback, action_dist_from_policy, validate_action_dist


def assert_same(a: LoggedFeedback, b: LoggedFeedback) -> None:
    for name in (
        "user_features",
        "item_features",
        "item_ids",
        "mask",
        "user_ids",
        "actions",
        "rewards",
        "propensities",
        "positions",
        "timestamps",
        "expected_rewards",
        "logging_action_dist",
    ):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)
            assert x.dtype == y.dtype, name
    assert a.metadata == b.metadata


@pytest.fixture
def full_log(world) -> LoggedFeedback:
    feedback, _ = world.sample(50, seed=0)
    rng = np.random.default_rng(0)
    expected = feedback.expected_rewards.copy()
    expected[::7] = np.nan  # partly unknown
    return LoggedFeedback(
        **{
            name: getattr(feedback, name)
            for name in (
                "user_features",
                "item_features",
                "item_ids",
                "mask",
                "user_ids",
                "actions",
                "rewards",
                "propensities",
                "logging_action_dist",
            )
        },
        positions=rng.integers(0, 3, size=50),
        timestamps=np.arange(50, dtype=np.int64) * 1000,
        expected_rewards=expected,
        metadata={"source": "test", "policy": {"name": "softmax", "temperature": np.float64(0.7)}},
    )


def test_sizes_and_observation(full_log):
    assert (full_log.n_rounds, full_log.n_candidates, len(full_log)) == (50, 5, 50)
    obs = full_log.observation()
    assert isinstance(obs, Observation)
    assert obs.batch_size == 50 and obs.n_candidates == 5
    np.testing.assert_array_equal(obs.user_ids, full_log.user_ids)


def test_arrays_are_frozen_copies_of_writable_input():
    rewards = np.array([1.0, 0.0])
    fb = LoggedFeedback.from_arrays([0, 1], rewards, [0.5, 0.5], n_candidates=2)
    with pytest.raises(ValueError, match="read-only"):
        fb.rewards[0] = 5.0
    rewards[1] = np.nan  # the caller's array stays writable and the log does not see the change
    assert fb.rewards[1] == 0.0
    with pytest.raises(AttributeError):
        fb.rewards = rewards  # type: ignore[misc]
    # read-only input (e.g. a slice of another log) is shared, not copied
    assert np.shares_memory(fb[:1].rewards, fb.rewards)


def test_save_load_round_trip(full_log, tmp_path):
    path = full_log.save(tmp_path / "sub" / "log")
    assert path.name == "log.npz" and path.exists()
    loaded = LoggedFeedback.load(path)
    # numpy scalars in metadata come back as plain JSON numbers
    as_json = {"source": "test", "policy": {"name": "softmax", "temperature": 0.7}}
    assert_same(loaded, dataclasses.replace(full_log, metadata=as_json))
    # no pickles inside
    with np.load(path, allow_pickle=False) as data:
        assert all(data[key].dtype != object for key in data.files)


def test_save_load_without_optional_fields(tmp_path):
    fb = LoggedFeedback.from_arrays([0, 2, 1], [1.0, 0.0, 0.5], [0.2, 0.3, 1.0], n_candidates=3)
    assert_same(LoggedFeedback.load(fb.save(tmp_path / "plain.npz")), fb)


def test_load_refuses_foreign_npz(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="is not a banditrec LoggedFeedback file"):
        LoggedFeedback.load(tmp_path / "other.npz")


def test_load_of_a_corrupt_or_missing_file_names_it(tmp_path):
    """A truncated archive used to raise zipfile.BadZipFile, a non-zip numpy's "This file contains
    pickled (object) data", a damaged entry zlib.error: none of them named the file."""
    fb = LoggedFeedback.from_arrays(np.arange(200) % 3, np.ones(200), np.full(200, 1 / 3), n_candidates=3)
    data = fb.save(tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_bytes(b"not an archive at all")
    damaged = bytearray(data)
    damaged[100:400] = bytes(b ^ 0xFF for b in damaged[100:400])  # inside the first entry's data
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    for name, why in [("truncated", "it is not an .npz archive (or it is truncated)"),
                      ("text", "it is not an .npz archive"), ("damaged", "it is damaged")]:
        path = tmp_path / f"{name}.npz"
        with pytest.raises(ValueError) as info:
            LoggedFeedback.load(path)
        assert str(info.value).startswith(f"{path} is not a banditrec LoggedFeedback file"), info.value
        assert why in str(info.value)
    with pytest.raises(FileNotFoundError, match="logged feedback file not found"):
        LoggedFeedback.load(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        LoggedFeedback.load(tmp_path)


def test_getitem_and_concat(full_log):
    head, tail = full_log[:20], full_log[20:]
    assert head.n_rounds == 20 and tail.n_rounds == 30
    assert_same(LoggedFeedback.concat([head, tail]), full_log)
    one = full_log[-1]
    assert one.n_rounds == 1 and one.actions[0] == full_log.actions[-1]
    picked = full_log[np.array([3, 1])]
    np.testing.assert_array_equal(picked.rewards, full_log.rewards[[3, 1]])
    assert full_log[full_log.rewards > 0].n_rounds == int((full_log.rewards > 0).sum())
    with pytest.raises(IndexError, match="row 50 is out of range for 50 rounds"):
        full_log[50]


def test_concat_checks_compatibility(full_log):
    other = LoggedFeedback.from_arrays([0], [1.0], [0.5], n_candidates=5)
    with pytest.raises(ValueError, match="cannot concat: part 1 has user feature dim 0, part 0 has 3"):
        LoggedFeedback.concat([full_log, other])
    with pytest.raises(ValueError, match="at least one"):
        LoggedFeedback.concat([])


def test_concat_fills_unknown_expected_rewards_with_nan():
    a = LoggedFeedback.from_arrays([0], [1.0], [0.5], n_candidates=2, expected_rewards=[[0.1, 0.2]])
    b = LoggedFeedback.from_arrays([1], [0.0], [0.5], n_candidates=2, metadata={"source": "b"})
    both = LoggedFeedback.concat([a, b])
    assert np.isnan(both.expected_rewards[1]).all() and both.expected_rewards[0, 1] == 0.2
    assert both.metadata == {"parts": [{}, {"source": "b"}]}


def test_from_arrays_fills_empty_context():
    fb = LoggedFeedback.from_arrays(
        np.array([1, 0, 3]), np.array([1.0, 0, 1]), np.full(3, 0.25), n_candidates=4
    )
    assert fb.user_features.shape == (3, 0)
    assert fb.item_features.shape == (3, 4, 0)
    np.testing.assert_array_equal(fb.item_ids[2], np.arange(4))
    assert fb.mask.all() and (fb.user_ids == -1).all()
    with pytest.raises(ValueError, match="n_candidates must be a positive integer, got 0"):
        LoggedFeedback.from_arrays([0], [1.0], [1.0], n_candidates=0)


# ---------------------------------------------------------------------- Open Bandit Pipeline
def obd_like(n=40, n_actions=6, seed=0):
    """A dict shaped like obp.dataset.OpenBanditDataset.obtain_batch_bandit_feedback()."""
    rng = np.random.default_rng(seed)
    return {
        "n_rounds": n,
        "n_actions": n_actions,
        "action": rng.integers(0, n_actions, size=n),
        "position": rng.integers(0, 3, size=n),
        "reward": rng.integers(0, 2, size=n),
        "pscore": np.full(n, 1.0 / n_actions),
        "context": rng.normal(size=(n, 4)),
        "action_context": rng.normal(size=(n_actions, 2)),
    }


def test_obp_dict_round_trip():
    bf = obd_like()
    fb = LoggedFeedback.from_obp_bandit_feedback(bf)
    assert fb.n_candidates == 6 and fb.metadata == {"source": "obp"}
    back = fb.to_obp_bandit_feedback()
    assert set(back) == set(bf)
    for key, value in bf.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_obp_round_trip_with_synthetic_keys():
    bf = obd_like()
    rng = np.random.default_rng(1)
    pi_b = rng.dirichlet(np.ones(6), size=40)
    bf["pscore"] = pi_b[np.arange(40), bf["action"]]
    bf["pi_b"] = pi_b[:, :, None]  # OBP's (n, n_actions, len_list=1)
    bf["expected_reward"] = rng.random((40, 6))
    bf["action_embed"] = np.zeros((40, 1))
    fb = LoggedFeedback.from_obp_bandit_feedback(bf)
    assert fb.metadata["obp_ignored_keys"] == ["action_embed"]
    back = fb.to_obp_bandit_feedback()
    np.testing.assert_allclose(back["pi_b"], bf["pi_b"])
    np.testing.assert_allclose(back["expected_reward"], bf["expected_reward"])


def test_obp_per_position_tables_pick_each_rounds_own_position():
    bf = obd_like()
    per_position = np.random.default_rng(2).dirichlet(np.ones(6), size=3)  # (L=3, n_actions)
    bf["pi_b"] = np.broadcast_to(per_position.T[None], (40, 6, 3))
    bf["pscore"] = per_position[bf["position"], bf["action"]]
    fb = LoggedFeedback.from_obp_bandit_feedback(bf)
    np.testing.assert_array_equal(fb.positions, bf["position"])
    np.testing.assert_allclose(fb.logging_action_dist, per_position[bf["position"]])


def _bad_obp(**changes):
    bf = obd_like()
    bf["pi_b"] = np.full((40, 6, 3), 1.0 / 6.0)
    bf.update(changes)
    return bf


@pytest.mark.parametrize(
    "bf, error, match",
    [
        # each of these was a numpy IndexError/broadcast error naming no key, or a silent guess
        (_bad_obp(pi_b=np.full((40, 6, 2), 1.0 / 6.0), position=np.r_[np.zeros(39, int), 2]), ValueError,
         r"^bandit_feedback\['pi_b'\] covers positions 0 to 1 but bandit_feedback\['position'\] holds 2$"),
        (_bad_obp(position=np.zeros(10, int)), ValueError,
         r"^bandit_feedback\['position'\] has 10 rows but n_rounds is 40$"),
        (_bad_obp(position=None), ValueError,  # was position 0 for every round, silently
         r"^bandit_feedback\['pi_b'\] has shape \(40, 6, 3\) with 3 positions, but .*'position'\] is missing"),
        (_bad_obp(action_context=np.zeros((4, 2))), ValueError,
         r"^bandit_feedback\['action_context'\] has shape \(4, 2\), expected \(6, \?\) to agree with n_actions=6$"),
        (_bad_obp(n_rounds=40.7), ValueError,  # int() made it 40
         r"^bandit_feedback\['n_rounds'\] must be a non-negative integer, got 40\.7$"),
        (_bad_obp(n_actions="6"), ValueError, r"^bandit_feedback\['n_actions'\] must be a non-negative integer, got '6'$"),
    ],
    ids=["position-beyond-table", "short-position", "no-position", "action-context-rows", "float-n", "str-k"],
)
def test_bad_obp_dicts_are_refused_naming_the_key(bf, error, match):
    with pytest.raises(error, match=match):
        LoggedFeedback.from_obp_bandit_feedback(bf)


def test_feedback_to_obp_and_back_on_a_full_catalogue(world):
    fb, _ = world.sample(30, seed=5)
    back = LoggedFeedback.from_obp_bandit_feedback(fb.to_obp_bandit_feedback())
    for name in (
        "user_features",
        "item_features",
        "actions",
        "rewards",
        "propensities",
        "expected_rewards",
        "logging_action_dist",
    ):
        np.testing.assert_allclose(getattr(back, name), getattr(fb, name), err_msg=name)


def test_to_obp_maps_candidate_slots_to_item_ids():
    fb = LoggedFeedback(
        user_features=np.zeros((2, 1)),
        item_features=np.array(
            [[[1.0], [7.0]], [[9.0], [1.0]]]
        ),  # item 4 -> 1.0, item 2 -> 7.0, item 0 -> 9.0
        item_ids=np.array([[4, 2], [0, 4]]),
        mask=np.ones((2, 2), dtype=bool),
        user_ids=np.array([0, 1]),
        actions=np.array([1, 1]),
        rewards=np.array([1.0, 0.0]),
        propensities=np.array([0.5, 0.5]),
    )
    bf = fb.to_obp_bandit_feedback()
    assert bf["n_actions"] == 5
    np.testing.assert_array_equal(bf["action"], [2, 4])
    np.testing.assert_array_equal(bf["action_context"][:, 0], [9.0, 0.0, 7.0, 0.0, 1.0])
    varying = dataclasses.replace(fb, item_features=np.array([[[1.0], [7.0]], [[9.0], [2.0]]]))
    with pytest.raises(ValueError, match="item 4 has features that vary across rounds"):
        varying.to_obp_bandit_feedback()


def test_from_obp_requires_core_keys():
    bf = obd_like()
    del bf["pscore"]
    with pytest.raises(KeyError, match=r"lacks keys \['pscore'\]"):
        LoggedFeedback.from_obp_bandit_feedback(bf)


# ---------------------------------------------------------------------- target policies
class TablePolicy:
    """A stand-in for a banditrec policy: softmax over the first item feature."""

    def __init__(self):
        self.batch_sizes = []

    def action_distribution(self, obs: Observation) -> np.ndarray:
        self.batch_sizes.append(obs.batch_size)
        scores = np.where(obs.mask, obs.item_features[:, :, 0], -np.inf)
        z = np.exp(scores - scores.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


def test_action_dist_from_policy_calls_in_chunks(world):
    fb, _ = world.sample(25, seed=0)
    policy = TablePolicy()
    dist = action_dist_from_policy(policy, fb, batch_size=10)
    assert policy.batch_sizes == [10, 10, 5]
    np.testing.assert_allclose(dist, policy.action_distribution(fb.observation()))
    np.testing.assert_allclose(action_dist_from_policy(dist, fb), dist)


def test_action_dist_from_policy_validates_the_policy_output(world):
    fb, _ = world.sample(5, seed=0)

    class Broken:
        def action_distribution(self, obs):
            return np.full((obs.batch_size, 5), 0.3)

    with pytest.raises(ValueError, match=r"Broken.action_distribution\(obs\) rows must sum to 1"):
        action_dist_from_policy(Broken(), fb)
    with pytest.raises(TypeError, match="policy must have an action_distribution"):
        action_dist_from_policy("greedy", fb)

    class Silent:
        def action_distribution(self, obs):
            return None

    with pytest.raises(TypeError, match=r"Silent.action_distribution\(obs\) must return an array of shape \(B, K\), got None"):
        action_dist_from_policy(Silent(), fb)


def test_obp_style_action_dist_per_position():
    fb = LoggedFeedback.from_arrays(
        [0, 1, 1], [1.0, 1.0, 0.0], [0.5, 0.5, 0.5], n_candidates=2, positions=[0, 1, 1]
    )
    dist3 = np.zeros((3, 2, 2))
    dist3[:, 0, 0] = 1.0  # position 0: always slot 0
    dist3[:, 1, 1] = 1.0  # position 1: always slot 1
    np.testing.assert_array_equal(validate_action_dist(dist3, fb), [[1, 0], [0, 1], [0, 1]])
    assert IPS().estimate_policy_value(fb, dist3) == pytest.approx((2 * 1.0 + 2 * 1.0 + 2 * 0.0) / 3)
