"""Cross-fitted reward models, and the comparison table and plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditrec.ope import (
    IPS,
    DirectMethod,
    DoublyRobust,
    JointFeatures,
    LoggedFeedback,
    LogisticRegression,
    RidgeRegression,
    compare_policies,
    fit_reward_model,
    plot_comparison,
)


def test_ridge_recovers_a_linear_function():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4)) * [1.0, 10.0, 0.1, 1.0]
    y = X @ [2.0, -0.5, 30.0, 0.0] + 1.5 + rng.normal(scale=0.01, size=500)
    model = RidgeRegression(alpha=1e-6).fit(X, y)
    X_new = rng.normal(size=(20, 4))
    np.testing.assert_allclose(model.predict(X_new), X_new @ [2.0, -0.5, 30.0, 0.0] + 1.5, atol=0.01)
    with pytest.raises(ValueError, match="alpha must be a non-negative number, got -1"):
        RidgeRegression(alpha=-1)


def test_joint_features_layout(world):
    fb, _ = world.sample(10, seed=0)
    feats = JointFeatures(fb)
    X = feats(np.array([0, 3]), np.array([1, 4]))
    d_u, d_i = 3, 3
    assert X.shape == (2, d_u + d_i + d_u * d_i + 5) == (2, feats.n_features)
    np.testing.assert_allclose(X[0, :d_u], fb.user_features[0])
    np.testing.assert_allclose(X[1, d_u : d_u + d_i], fb.item_features[3, 4])
    np.testing.assert_allclose(
        X[0, d_u + d_i : d_u + d_i + 9], np.outer(fb.user_features[0], fb.item_features[0, 1]).ravel()
    )
    np.testing.assert_array_equal(X[1, -5:], [0, 0, 0, 0, 1])  # one-hot of item id 4
    assert JointFeatures(fb, max_onehot_ids=3).n_features == d_u + d_i + d_u * d_i


def test_cross_fitted_model_learns_the_world(world):
    fb, _ = world.sample(4000, seed=0)
    q_hat = fit_reward_model(fb, n_folds=5, seed=0)
    assert q_hat.shape == (4000, 5) and np.isfinite(q_hat).all()
    # one-hot ids + user x item interactions: close to the true probabilities
    assert np.sqrt(np.mean((q_hat - fb.expected_rewards) ** 2)) < 0.06
    np.testing.assert_array_equal(q_hat, fit_reward_model(fb, n_folds=5, seed=0))


def test_each_rounds_prediction_ignores_its_own_reward():
    # Leave-one-out (n_folds = n): changing round 0's reward moves every prediction but round 0's.
    rng = np.random.default_rng(1)
    n = 30
    fb = LoggedFeedback.from_arrays(
        rng.integers(0, 3, n),
        rng.random(n),
        np.full(n, 1 / 3),
        n_candidates=3,
        user_features=rng.normal(size=(n, 2)),
    )
    rewards = fb.rewards.copy()
    rewards[0] += 10.0
    moved = LoggedFeedback.from_arrays(
        fb.actions, rewards, fb.propensities, n_candidates=3, user_features=fb.user_features
    )
    a, b = fit_reward_model(fb, n_folds=n), fit_reward_model(moved, n_folds=n)
    np.testing.assert_allclose(a[0], b[0])
    assert np.all(np.abs(a[1:] - b[1:]).max(axis=1) > 1e-6)
    # in-sample fitting (n_folds=1) does see it
    assert not np.allclose(fit_reward_model(fb, n_folds=1)[0], fit_reward_model(moved, n_folds=1)[0])


def test_masked_slots_are_nan_and_custom_models_are_copied():
    class MeanModel:
        fitted = False

        def fit(self, X, y):
            self.fitted, self.mean_ = True, float(np.mean(y))
            return self

        def predict(self, X):
            return np.full(len(X), self.mean_)

    mask = np.ones((6, 3), dtype=bool)
    mask[2, 1] = False
    fb = LoggedFeedback.from_arrays(
        [0, 1, 2, 0, 1, 2], [1.0, 0, 1, 0, 1, 1], np.full(6, 0.5), n_candidates=3, mask=mask
    )
    model = MeanModel()
    q_hat = fit_reward_model(fb, model=model, n_folds=2)
    assert not model.fitted
    assert np.isnan(q_hat[2, 1]) and np.isfinite(q_hat[mask]).all()
    with pytest.raises(TypeError, match="model must have fit"):
        fit_reward_model(fb, model=object())
    with pytest.raises(ValueError, match=r"n_folds must be an integer in \[1, n_rounds=6\], got 7"):
        fit_reward_model(fb, n_folds=7)


def test_compare_policies_table(world):
    fb, pi_e = world.sample(3000, seed=0)
    uniform = np.full((3000, 5), 0.2)
    df = compare_policies(
        fb,
        {"target": pi_e, "uniform": uniform},
        n_bootstrap=200,
        true_values={"target": world.true_value, "uniform": world.value_of(np.full((20, 5), 0.2))},
    )
    assert list(df.columns) == ["policy", "estimator", "estimate", "low", "high", "true_value", "error"]
    assert len(df) == 2 * 9
    assert (df["low"] <= df["estimate"]).all() and (df["estimate"] <= df["high"]).all()
    np.testing.assert_allclose(df["error"], df["estimate"] - df["true_value"])
    unbiased = df[df["estimator"].isin(["ips", "snips", "dr", "sndr"])]
    assert (unbiased["error"].abs() < 0.05).all()
    assert df.attrs == {"alpha": 0.05, "method": "bootstrap"}


def test_compare_policies_reuses_given_reward_model_and_policy_objects(world):
    fb, _ = world.sample(500, seed=1)

    class Fixed:
        def action_distribution(self, obs):
            return np.full((obs.batch_size, 5), 0.2)

    df = compare_policies(
        fb,
        {"fixed": Fixed()},
        estimators=[IPS(), DoublyRobust()],
        method="normal",
        estimated_rewards=fb.expected_rewards,
    )
    assert list(df.columns) == ["policy", "estimator", "estimate", "low", "high"]
    dr = df.set_index("estimator").loc["dr", "estimate"]
    assert dr == pytest.approx(
        DoublyRobust().estimate_policy_value(
            fb, np.full((500, 5), 0.2), estimated_rewards=fb.expected_rewards
        )
    )


def test_plot_comparison_writes_an_image(world, tmp_path):
    fb, pi_e = world.sample(500, seed=2)
    df = compare_policies(
        fb,
        {"target": pi_e},
        estimators=[IPS(), DoublyRobust()],
        n_bootstrap=100,
        true_values={"target": world.true_value},
    )
    path = plot_comparison(df, tmp_path / "plots" / "ope.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="df must be compare_policies' table"):
        plot_comparison(pd.DataFrame({"x": [1]}), tmp_path / "bad.png")


def test_compare_policies_names_a_lone_estimator_and_non_numeric_truths(world):
    # These used to fail as "'IPS' object is not iterable" and "could not convert string to float".
    fb, pi_e = world.sample(200, seed=2)
    with pytest.raises(TypeError, match=r"estimators must be a list of estimators, got one IPS; write \[IPS\(...\)\]"):
        compare_policies(fb, {"target": pi_e}, estimators=IPS())
    with pytest.raises(TypeError, match=r"true_values\['target'\] must be a number, got 'x'"):
        compare_policies(fb, {"target": pi_e}, estimators=[IPS()], true_values={"target": "x"})
    # a NaN truth made the error column NaN without a word
    with pytest.raises(ValueError, match=r"true_values\['target'\] must be finite, got nan"):
        compare_policies(fb, {"target": pi_e}, estimators=[IPS()], true_values={"target": float("nan")})


def test_clipped_predictions_stay_within_the_rewards_range_and_estimates_outside_it_warn():
    # A linear fit on 0/1 clicks extrapolates: on the Open Bandit Dataset the default ridge
    # predicted click rates from -0.53 to 1.05, and DM/DR reported negative click rates silently.
    rng = np.random.default_rng(2)
    n = 400
    x = rng.standard_t(2, size=(n, 1))  # heavy tails: a few rounds far from the bulk
    rewards = (x[:, 0] > 0.5).astype(float)
    fb = LoggedFeedback.from_arrays(rng.integers(0, 3, n), rewards, np.full(n, 1 / 3), n_candidates=3,
                                    user_features=x)
    raw = fit_reward_model(fb)
    assert raw.min() < -0.1 and raw.max() > 1.1  # the fit does leave [0, 1] here
    q_hat = fit_reward_model(fb, clip=True)
    assert q_hat.min() >= 0.0 and q_hat.max() <= 1.0
    inside = (raw >= 0) & (raw <= 1)
    np.testing.assert_array_equal(q_hat[inside], raw[inside])  # only the outliers move
    worst = np.eye(3)[np.argmin(raw, axis=1)]
    assert DirectMethod().estimate_policy_value(fb, worst, estimated_rewards=np.clip(raw, None, 0)) < 0.0
    with pytest.warns(UserWarning, match=r"1 estimate\(s\) lie outside the logged rewards' range \[0, 1\].*dm for 'worst' = -0\.\d+"):
        df = compare_policies(fb, {"worst": worst}, [DirectMethod()], n_bootstrap=20,
                              estimated_rewards=np.where(worst == 1, np.clip(raw, None, 0), raw))
    assert df["estimate"].iloc[0] < 0.0  # reported as estimated (as OBP does), with the warning
    assert DirectMethod().estimate_policy_value(fb, worst, estimated_rewards=q_hat) >= 0.0
    with pytest.raises(TypeError, match="clip must be True or False, got 'yes'"):
        fit_reward_model(fb, clip="yes")


def test_logistic_regression_recovers_a_logistic_function_and_stays_in_range():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 3)) * [1.0, 5.0, 0.2]
    w = np.array([1.5, -0.3, 4.0])
    p = 1 / (1 + np.exp(-(X @ w - 0.5)))
    y = (rng.random(4000) < p).astype(float)
    model = LogisticRegression(alpha=1e-3).fit(X, y)
    assert model.converged_
    X_new = rng.normal(size=(200, 3)) * [1.0, 5.0, 0.2]
    truth = 1 / (1 + np.exp(-(X_new @ w - 0.5)))
    assert np.abs(model.predict(X_new) - truth).max() < 0.08
    far = model.predict(X_new * 100)  # where a linear fit would leave [0, 1]
    assert far.min() >= 0.0 and far.max() <= 1.0
    with pytest.raises(ValueError, match=r"models rewards in \[0, 1\] \(clicks\); got range \[-1, 2\]"):
        LogisticRegression().fit(X[:3], np.array([-1.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match="alpha must be a non-negative number"):
        LogisticRegression(alpha=-1.0)
    with pytest.raises(RuntimeError, match="predict called before fit"):
        LogisticRegression().predict(X)


def test_reward_models_by_name(world):
    fb, _ = world.sample(600, seed=0)
    logistic = fit_reward_model(fb, model="logistic", n_folds=2)
    np.testing.assert_array_equal(logistic, fit_reward_model(fb, model=LogisticRegression(), n_folds=2))
    assert np.nanmin(logistic) > 0 and np.nanmax(logistic) < 1
    np.testing.assert_array_equal(fit_reward_model(fb, model="ridge", n_folds=2), fit_reward_model(fb, n_folds=2))
    with pytest.raises(ValueError, match=r"unknown reward model 'forest'; choose one of \['logistic', 'logistic_cv', 'ridge', 'ridge_cv'\]"):
        fit_reward_model(fb, model="forest")


def test_compare_policies_refuses_a_reward_model_with_ready_predictions(world):
    # reward_model was silently ignored when estimated_rewards was also given.
    fb, pi_e = world.sample(200, seed=3)
    with pytest.raises(ValueError, match=r"^give estimated_rewards or reward_model, not both: .*'logistic'"):
        compare_policies(fb, {"target": pi_e}, [DoublyRobust()], estimated_rewards=fb.expected_rewards,
                         reward_model="logistic")
    # either one alone still works
    for kwargs in ({"estimated_rewards": fb.expected_rewards}, {"reward_model": "logistic"}):
        df = compare_policies(fb, {"target": pi_e}, [DoublyRobust()], method="normal", **kwargs)
        assert np.isfinite(df["estimate"]).all()


# (rounds a fitted RowRecorder saw, rounds it predicted), across the per-fold deep copies.
FITTED_AND_ASKED: list[tuple[frozenset, frozenset]] = []


class RowRecorder:
    """A reward model that records which rounds each fitted copy saw and which it predicted.

    The logs below carry the round number as the first user feature, which is the first column of
    :class:`JointFeatures`.
    """

    def fit(self, X, y):
        self.seen_ = frozenset(X[:, 0].astype(int).tolist())
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        FITTED_AND_ASKED.append((self.seen_, frozenset(X[:, 0].astype(int).tolist())))
        return np.full(len(X), self.mean_)


def numbered_log(n: int, k: int = 3, seed: int = 0) -> LoggedFeedback:
    rng = np.random.default_rng(seed)
    return LoggedFeedback.from_arrays(
        rng.integers(0, k, n),
        rng.integers(0, 2, n).astype(float),
        np.full(n, 1 / k),
        n_candidates=k,
        user_features=np.column_stack([np.arange(n), rng.normal(size=n)]),
    )


def assert_cross_fitted(rounds):
    """No round's prediction came from a model fitted on that round, and every round was predicted."""
    assert FITTED_AND_ASKED
    predicted = set()
    for seen, asked in FITTED_AND_ASKED:
        assert not seen & asked, f"rounds {sorted(seen & asked)[:5]} predicted by a model fitted on them"
        predicted |= asked
    assert predicted == set(rounds)


def test_default_arguments_cross_fit_the_reward_model():
    # With in-sample fitting (n_folds=1) DR/SNDR intervals covered ~0.91 at nominal 0.95 on small
    # evaluation sets; the defaults of compare_policies and evaluate_offline must cross-fit.
    from banditrec.ope import evaluate_offline

    fb = numbered_log(60)
    FITTED_AND_ASKED.clear()
    compare_policies(fb, {"uniform": np.full((60, 3), 1 / 3)}, reward_model=RowRecorder(), n_bootstrap=20)
    assert_cross_fitted(range(60))

    FITTED_AND_ASKED.clear()
    evaluate_offline(fb, {"random": "Random"}, reward_model=RowRecorder(), n_bootstrap=20)
    assert_cross_fitted(range(30, 60))  # the evaluation half, in time (= row) order
