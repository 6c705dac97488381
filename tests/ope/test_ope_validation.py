"""Bad tables are refused at the boundary with messages that name the field and the value."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from banditrec.ope import (
    IPS,
    SNIPS,
    ClippedIPS,
    DoublyRobust,
    DRos,
    LoggedFeedback,
    SwitchDR,
    UndefinedEstimateError,
    compare_policies,
    plot_comparison,
    true_policy_value,
    validate_action_dist,
)

N, K = 5, 3


def log_kwargs(**overrides):
    """Valid LoggedFeedback fields for 5 rounds, 3 candidates; slot 2 of round 4 is masked."""
    mask = np.ones((N, K), dtype=bool)
    mask[4, 2] = False
    fields = {
        "user_features": np.zeros((N, 2)),
        "item_features": np.zeros((N, K, 1)),
        "item_ids": np.tile(np.arange(K), (N, 1)),
        "mask": mask,
        "user_ids": np.arange(N),
        "actions": np.array([0, 1, 2, 0, 1]),
        "rewards": np.array([1.0, 0.0, 1.0, 0.0, 1.0]),
        "propensities": np.full(N, 0.5),
    }
    fields.update(overrides)
    return fields


def uniform_dist():
    mask = log_kwargs()["mask"]
    return mask / mask.sum(axis=1, keepdims=True)


def test_valid_table_is_accepted():
    assert LoggedFeedback(**log_kwargs()).n_rounds == N


@pytest.mark.parametrize(
    "propensities, match",
    [
        (
            [0.5, 0.0, 0.5, 0.5, 0.5],
            r"propensities must lie in \(0, 1\] \(1 zero or negative.*first at index 1 \(value 0\.0\)",
        ),
        ([0.5, 0.5, -0.2, 0.5, 0.5], r"propensities.*1 zero or negative.*first at index 2 \(value -0\.2\)"),
        ([0.5, 0.5, 0.5, 1.5, 2.0], r"propensities.*2 above 1.*2 row\(s\), first at index 3 \(value 1\.5\)"),
        ([np.nan, 0.5, 0.5, 0.5, 0.5], r"propensities.*1 NaN.*first at index 0 \(value nan\)"),
        # subnormal: IPS used to return inf with only a RuntimeWarning
        ([0.5, 1e-320, 0.5, 0.5, 0.5], r"propensities below 2\.23e-308 make importance weights overflow.*index 1"),
    ],
    ids=["zero", "negative", "above-one", "nan", "subnormal"],
)
def test_bad_propensities(propensities, match):
    with pytest.raises(ValueError, match=match):
        LoggedFeedback(**log_kwargs(propensities=np.array(propensities)))


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"rewards": np.array([1.0, np.nan, 0.0, 0.0, 1.0])}, r"rewards must be finite.*first at index 1"),
        ({"rewards": np.ones(N - 1)}, r"rewards has shape \(4,\), expected \(5,\) to agree with item_ids"),
        ({"propensities": np.full(N + 1, 0.5)}, r"propensities has shape \(6,\), expected \(5,\)"),
        ({"user_features": np.zeros((N - 1, 2))}, r"user_features has shape \(4, 2\), expected \(5, \?\)"),
        (
            {"item_features": np.zeros((N, K + 1, 1))},
            r"item_features has shape \(5, 4, 1\), expected \(5, 3, \?\)",
        ),
        ({"mask": np.ones((N, K + 1), dtype=bool)}, r"mask has shape \(5, 4\), expected \(5, 3\)"),
        (
            {"actions": np.array([0, 1, 3, 0, 1])},
            r"actions must be candidate indices in \[0, K=3\).*first at index 2 \(value 3\)",
        ),
        (
            {"actions": np.array([0, -1, 2, 0, 1])},
            r"actions must be candidate indices.*first at index 1 \(value -1\)",
        ),
        (
            {"actions": np.array([0, 1, 2, 0, 2])},
            r"actions must choose a valid candidate \(mask True\).*first at index 4",
        ),
        ({"user_features": np.zeros(N)}, r"user_features must be 2-dimensional"),
        ({"positions": np.array([0, 1, -1, 0, 0])}, r"positions must be non-negative.*index 2"),
        ({"expected_rewards": np.full((N, K), np.inf)}, r"expected_rewards must be finite or NaN"),
        ({"mask": np.zeros((N, K), dtype=bool)}, r"mask must have at least one valid candidate per round"),
        ({"logging_action_dist": np.full((N, K), 1 / 3)}, r"logging_action_dist puts probability on masked"),
        # Used to be accepted and saved, then refused as an "observation" by the first evaluation.
        ({"timestamps": np.array([0.0, 1.0, np.nan, 3.0, 4.0])}, r"timestamps must be finite \(no NaN or NaT\); missing in 1 row\(s\), first at index 2"),
        ({"user_ids": np.full(N, -5)}, r"user_ids must be >= 0, or -1 for anonymous users, got -5"),
        ({"item_ids": np.full((N, K), -2)}, r"item_ids must be >= 0 \(catalogue ids; masked slots too\), got -2"),
    ],
    ids=[
        "nan-reward",
        "short-rewards",
        "long-propensities",
        "user-rows",
        "item-K",
        "mask-K",
        "action-too-big",
        "action-negative",
        "action-masked",
        "user-1d",
        "neg-position",
        "inf-expected",
        "empty-mask",
        "logging-on-masked",
        "nan-timestamp",
        "neg-user-id",
        "neg-item-id",
    ],
)
def test_bad_tables(overrides, match):
    with pytest.raises(ValueError, match=match):
        LoggedFeedback(**log_kwargs(**overrides))


def test_logging_dist_must_agree_with_propensities():
    dist = uniform_dist()  # rows 0-3 give 1/3, row 4 gives 1/2
    with pytest.raises(ValueError, match=r"propensities disagree with logging_action_dist.*first at index 0"):
        LoggedFeedback(**log_kwargs(logging_action_dist=dist))
    good = LoggedFeedback(
        **log_kwargs(logging_action_dist=dist, propensities=dist[np.arange(N), [0, 1, 2, 0, 1]])
    )
    assert good.logging_action_dist is not None


def test_a_small_propensity_must_agree_with_logging_action_dist_relatively():
    # 5e-7 against 1e-8 passed an absolute tolerance of 1e-6: every weight on that round 50 times
    # too small, with no error.
    dist = np.tile([1e-8, 0.5, 0.5 - 1e-8], (N, 1))
    dist[4] = [1e-8, 1 - 1e-8, 0.0]
    actions = np.array([0, 1, 2, 0, 1])
    propensities = dist[np.arange(N), actions]
    propensities[3] = 5e-7
    with pytest.raises(
        ValueError,
        match=r"propensities disagree with logging_action_dist.*first at index 3 \(value 5e-07\) "
        r"vs logging_action_dist 1e-08$",
    ):
        LoggedFeedback(**log_kwargs(logging_action_dist=dist, propensities=propensities))
    # within the relative tolerance (float32 rounding of the same number) is accepted
    propensities[3] = np.float32(1e-8)
    assert LoggedFeedback(**log_kwargs(logging_action_dist=dist, propensities=propensities)).n_rounds == N


@pytest.mark.parametrize(
    "value, error, match",
    [
        (np.array([0.0, 1.5, 2.0, 0.0, 1.0]), TypeError, r"actions must hold integers.*first at index 1"),
        (np.array(["a", "b", "c", "d", "e"]), TypeError, r"actions must hold integers, got dtype <U1"),
        # the int64 cast wrapped these, and the range check quoted -1 and -9223372036854775808
        (np.array([0, 1, 2**64 - 1, 0, 1], dtype=np.uint64), ValueError,
         r"actions must fit in a 64-bit signed integer; too large in .*index 2 \(value 18446744073709551615\)"),
        (np.array([0.0, 1.0, 1e20, 0.0, 1.0]), ValueError,
         r"actions must fit in a 64-bit signed integer; too large in 1 row\(s\), first at index 2 \(value 1e\+20\)"),
    ],
)
def test_non_integer_actions(value, error, match):
    with pytest.raises(error, match=match):
        LoggedFeedback(**log_kwargs(actions=value))


def test_whole_number_float_actions_are_accepted():
    fb = LoggedFeedback(**log_kwargs(actions=np.array([0.0, 1.0, 2.0, 0.0, 1.0])))
    assert fb.actions.dtype == np.int64


def test_metadata_must_be_json():
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        LoggedFeedback(**log_kwargs(metadata={"policy": object()}))
    with pytest.raises(TypeError, match="metadata must be a dict"):
        LoggedFeedback(**log_kwargs(metadata=["not", "a", "dict"]))


# ---------------------------------------------------------------------- action_dist
def bad_dist(kind):
    dist = uniform_dist()
    if kind == "sum":
        dist[1] = [0.5, 0.2, 0.2]
    elif kind == "masked":
        dist[4] = [0.4, 0.4, 0.2]
    elif kind == "negative":
        dist[2] = [1.2, -0.2, 0.0]
    elif kind == "nan":
        dist[3, 1] = np.nan
    elif kind == "inf":
        dist[0, 0] = np.inf
    return dist


@pytest.mark.parametrize(
    "kind, match",
    [
        ("sum", r"action_dist rows must sum to 1 over the valid candidates.*first at index 1 \(value 0\.9"),
        ("masked", r"action_dist puts probability on masked \(invalid\) candidate slots.*row 4, slot 2"),
        ("negative", r"action_dist must be non-negative.*row 2, slot 1"),
        ("nan", r"action_dist must be finite.*row 3, slot 1"),
        ("inf", r"action_dist must be finite.*row 0, slot 0"),
    ],
)
@pytest.mark.parametrize("estimator", [IPS(), DoublyRobust()], ids=["ips", "dr"])
def test_bad_action_dist(kind, match, estimator):
    fb = LoggedFeedback(**log_kwargs())
    with pytest.raises(ValueError, match=match):
        estimator.estimate_policy_value(fb, bad_dist(kind), estimated_rewards=np.zeros((N, K)))


def test_action_dist_shape_is_checked():
    fb = LoggedFeedback(**log_kwargs())
    with pytest.raises(ValueError, match=r"action_dist has shape \(4, 3\), expected \(5, 3\)"):
        IPS().estimate_policy_value(fb, uniform_dist()[:4])
    with pytest.raises(
        ValueError, match=r"action_dist has shape \(5, 3, 2\) with 2 positions, but the log has no"
    ):
        IPS().estimate_policy_value(fb, np.repeat(uniform_dist()[:, :, None], 2, axis=2) / 1.0)


def test_model_based_estimators_need_a_reward_model():
    fb = LoggedFeedback(**log_kwargs())
    with pytest.raises(ValueError, match=r"DoublyRobust needs estimated_rewards of shape \(n, K\)"):
        DoublyRobust().estimate_policy_value(fb, uniform_dist())
    q = np.zeros((N, K))
    q[1, 2] = np.nan
    with pytest.raises(
        ValueError, match=r"estimated_rewards must be finite on valid candidates.*row 1, slot 2"
    ):
        DoublyRobust().estimate_policy_value(fb, uniform_dist(), estimated_rewards=q)
    q = np.zeros((N, K))
    q[4, 2] = np.nan  # masked slot: fine
    DoublyRobust().estimate_policy_value(fb, uniform_dist(), estimated_rewards=q)
    with pytest.raises(ValueError, match=r"estimated_rewards has shape \(5, 2\)"):
        DoublyRobust().estimate_policy_value(fb, uniform_dist(), estimated_rewards=np.zeros((N, 2)))


def test_self_normalised_estimator_without_support_raises():
    fb = LoggedFeedback(**log_kwargs(actions=np.zeros(N, dtype=int)))
    never_logged = np.tile([0.0, 0.5, 0.5], (N, 1))
    never_logged[4] = [0.0, 1.0, 0.0]
    with pytest.raises(UndefinedEstimateError, match="SNIPS is undefined on this log"):
        SNIPS().estimate_policy_value(fb, never_logged)
    assert IPS().estimate_policy_value(fb, never_logged) == 0.0


def test_an_undefined_estimator_is_a_nan_row_not_the_end_of_the_comparison(tmp_path):
    # One undefined estimator used to abort the whole comparison (and `banditrec ope`).
    fb = LoggedFeedback(**log_kwargs(actions=np.zeros(N, dtype=int)))
    never_logged = np.tile([0.0, 0.5, 0.5], (N, 1))
    never_logged[4] = [0.0, 1.0, 0.0]
    policies = {"never": never_logged, "uniform": uniform_dist()}
    with pytest.warns(UserWarning, match="policy 'never': SNIPS is undefined on this log.*its row is NaN"):
        df = compare_policies(fb, policies, [IPS(), SNIPS()], method="normal")
    by = df.set_index(["policy", "estimator"])
    assert by.loc[("never", "snips"), ["estimate", "low", "high"]].isna().all()
    assert by.loc[("never", "ips"), "estimate"] == 0.0
    assert by.loc[("uniform", "snips"), ["estimate", "low", "high"]].notna().all()
    assert plot_comparison(df, tmp_path / "c.png").stat().st_size > 0


@pytest.mark.parametrize(
    "make",
    [lambda: ClippedIPS(lambda_=-1.0), lambda: SwitchDR(tau=float("nan")), lambda: DRos(lambda_="big")],
    ids=["clip-negative", "switch-nan", "dros-str"],
)
def test_bad_hyperparameters(make):
    with pytest.raises(ValueError, match=r"must be a non-negative number"):
        make()


def test_bad_interval_arguments():
    fb = LoggedFeedback(**log_kwargs())
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\), got 1\.5"):
        IPS().estimate_interval(fb, uniform_dist(), alpha=1.5)
    with pytest.raises(ValueError, match=r"method must be 'bootstrap' or 'normal', got 'bayes'"):
        IPS().estimate_interval(fb, uniform_dist(), method="bayes")
    with pytest.raises(ValueError, match=r"n_bootstrap must be a positive integer, got 0"):
        IPS().estimate_interval(fb, uniform_dist(), n_bootstrap=0)
    one = LoggedFeedback(**{k: v[:1] for k, v in log_kwargs().items()})
    for method in ("bootstrap", "normal"):  # the bootstrap used to return a zero-width interval
        with pytest.raises(ValueError, match=rf"a {method} interval needs at least 2 rounds, got 1"):
            IPS().estimate_interval(one, uniform_dist()[:1], method=method)


def test_a_zero_width_interval_is_reported_as_it_is_with_a_warning():
    # A log whose rewards are all equal gave (1.0, 1.0) without a word, as if the value were certain.
    fb = LoggedFeedback(**log_kwargs(rewards=np.ones(N)))
    for method in ("bootstrap", "normal"):
        with pytest.warns(RuntimeWarning, match=rf"^the {method} interval has zero width .* on these 5 rounds"):
            interval = SNIPS().estimate_interval(fb, uniform_dist(), method=method, n_bootstrap=50)
        assert (interval.estimate, interval.low, interval.high) == (1.0, 1.0, 1.0)  # numbers unchanged
    # the logging policy's reference row of evaluate_offline is warned about too
    from banditrec.ope import evaluate_offline

    log = LoggedFeedback(**log_kwargs(rewards=np.zeros(N)))
    with pytest.warns(RuntimeWarning, match=r"^the normal interval has zero width") as record:
        df = evaluate_offline(log, {"random": "Random"}, train_fraction=0.0, estimators=[IPS()], method="normal")
    assert df[["policy", "low", "high"]].to_numpy().tolist() == [["random", 0.0, 0.0], ["logging", 0.0, 0.0]]
    assert sum("zero width" in str(w.message) for w in record) == 2  # one per row
    # rewards that vary give no such warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in ("bootstrap", "normal"):
            interval = IPS().estimate_interval(LoggedFeedback(**log_kwargs()), uniform_dist(), method=method)
            assert interval.low < interval.high


def test_an_empty_log_is_refused_in_one_line_by_every_entry_point():
    empty = LoggedFeedback(**{k: v[:0] for k, v in log_kwargs(expected_rewards=np.zeros((N, K))).items()})
    # true_policy_value returned NaN (with numpy's "Mean of empty slice" warning)
    with pytest.raises(ValueError, match=r"^feedback has no rounds; a policy's value on it is undefined$"):
        true_policy_value(empty, np.zeros((0, K)))
    # compare_policies said "n_folds must be an integer in [1, n_rounds=0], got 5"
    with pytest.raises(ValueError, match=r"^feedback has no rounds; nothing to estimate$"):
        compare_policies(empty, {"uniform": np.zeros((0, K))})
    # an (n, K, L) table on a log with positions failed with numpy's "zero-size array to reduction"
    with_positions = LoggedFeedback(**{k: v[:0] for k, v in log_kwargs(positions=np.zeros(N, int)).items()})
    assert validate_action_dist(np.zeros((0, K, 2)), with_positions).shape == (0, K)


def test_estimators_need_a_logged_feedback():
    with pytest.raises(TypeError, match="feedback must be a LoggedFeedback, got dict"):
        IPS().estimate_policy_value({"action": [0]}, uniform_dist())


def test_compare_policies_rejects_unknown_true_values():
    fb = LoggedFeedback(**log_kwargs())
    with pytest.raises(ValueError, match=r"true_values names policies that are not compared: \['unifrom'\]"):
        compare_policies(fb, {"uniform": uniform_dist()}, estimators=[IPS()], true_values={"unifrom": 0.5})
    with pytest.raises(ValueError, match=r"estimator names must be unique"):
        compare_policies(fb, {"uniform": uniform_dist()}, estimators=[IPS(), IPS()])


def test_a_distribution_off_by_less_than_the_tolerance_is_used_normalised():
    # rows summing to 1 + 5e-7 passed the check and were used as given: DM of a constant model
    # 0.5 came out 0.50000025 (OBP, which averages the model under pi, gives 0.5)
    from banditrec.ope import DirectMethod

    fb = LoggedFeedback(**log_kwargs())
    dist = uniform_dist()
    dist[:, 0] += 5e-7
    q = np.full((N, K), 0.5)
    assert DirectMethod().estimate_policy_value(fb, dist, estimated_rewards=q) == pytest.approx(0.5, abs=1e-15, rel=0)
    normalised = dist / dist.sum(axis=1, keepdims=True)
    exact = DoublyRobust().estimate_policy_value(fb, normalised, estimated_rewards=q)
    assert DoublyRobust().estimate_policy_value(fb, dist, estimated_rewards=q) == pytest.approx(exact, abs=1e-15, rel=0)


def test_a_reward_model_in_obps_position_layout_is_read_as_the_distribution_is():
    # action_dist took OBP's (n, K, L) layout but estimated_rewards refused it, even (n, K, 1)
    rng = np.random.default_rng(0)
    positions = np.array([0, 1, 2, 1, 0])
    fb = LoggedFeedback(**log_kwargs(positions=positions))
    q3 = rng.random((N, K, 3))
    dist3 = np.repeat(uniform_dist()[:, :, None], 3, axis=2)
    by_position = q3[np.arange(N), :, positions]
    dr = DoublyRobust()
    assert dr.estimate_policy_value(fb, dist3, estimated_rewards=q3) == dr.estimate_policy_value(
        fb, uniform_dist(), estimated_rewards=by_position
    )
    assert dr.estimate_policy_value(fb, uniform_dist(), estimated_rewards=q3[:, :, :1]) == dr.estimate_policy_value(
        fb, uniform_dist(), estimated_rewards=q3[:, :, 0]
    )
    with pytest.raises(ValueError, match=r"estimated_rewards covers 2 positions but the log has position 2"):
        dr.estimate_policy_value(fb, uniform_dist(), estimated_rewards=q3[:, :, :2])


def test_a_bootstrap_that_drops_many_undefined_replicates_says_so():
    # SNIPS where the target supports 2 of 100 rounds: 13% of the replicates drew neither and
    # were left out without a word, the interval describing the rest
    n = 100
    mask = np.ones((n, K), dtype=bool)
    fields = log_kwargs(
        user_features=np.zeros((n, 2)), item_features=np.zeros((n, K, 1)), item_ids=np.tile(np.arange(K), (n, 1)),
        mask=mask, user_ids=np.arange(n), actions=np.r_[0, 0, np.ones(n - 2, dtype=int)],
        rewards=np.r_[1.0, 0.0, np.zeros(n - 2)], propensities=np.full(n, 1 / 3),
    )
    target = np.zeros((n, K))
    target[:, 0] = 1.0
    fb = LoggedFeedback(**fields)
    with pytest.warns(RuntimeWarning, match=r"undefined on 1\d\.\d% of the bootstrap replicates"):
        SNIPS().estimate_interval(fb, target, seed=0)


def test_the_comparison_plot_draws_each_interval_from_low_to_high(tmp_path, monkeypatch):
    # an error bar around the estimate was clipped at 0: estimate 0.5, interval [0.6, 0.9] was drawn 0.5-0.9
    import pandas as pd
    from matplotlib.axes import Axes

    drawn = []
    original = Axes.vlines
    monkeypatch.setattr(Axes, "vlines", lambda self, x, lo, hi, **kw: drawn.append((list(lo), list(hi))) or original(self, x, lo, hi, **kw))
    df = pd.DataFrame({"policy": ["p", "p"], "estimator": ["ips", "dm"], "estimate": [0.5, 0.4],
                       "low": [0.6, 0.3], "high": [0.9, 0.5]})
    plot_comparison(df, tmp_path / "ope.png")
    assert drawn == [([0.6, 0.3], [0.9, 0.5])]
