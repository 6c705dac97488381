"""Reward models whose penalty is chosen by inner cross-validation: RidgeRegressionCV, LogisticRegressionCV."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import expit, log_expit

from banditrec.ope import (
    DEFAULT_ALPHAS,
    REWARD_MODELS,
    DirectMethod,
    DoublyRobust,
    LoggedFeedback,
    LogisticRegression,
    LogisticRegressionCV,
    RidgeRegression,
    RidgeRegressionCV,
    compare_policies,
    fit_reward_model,
    load_offline_targets,
)


def inner_folds(m: int, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """The documented inner folds: a permutation from default_rng(seed), split by array_split."""
    return np.array_split(np.random.default_rng(seed).permutation(m), n_folds)


def brute_force_scores(make, X, y, alphas, loss, n_folds=5, seed=0):
    """Mean held-out loss of each alpha, every fold refitted from scratch by the plain model."""
    total = np.zeros(len(alphas))
    for fold in inner_folds(len(y), n_folds, seed):
        train = np.setdiff1d(np.arange(len(y)), fold)
        for j, alpha in enumerate(alphas):
            total[j] += loss(y[fold], make(alpha).fit(X[train], y[train]).predict(X[fold])).sum()
    return total / len(y)


def squared(y, pred):
    return (pred - y) ** 2


def log_loss(y, prob):
    z = np.log(prob) - np.log1p(-prob)
    return -(y * log_expit(z) + (1 - y) * log_expit(-z))


def clicks_without_signal(n: int = 3000, k: int = 10, rate: float = 0.01, seed: int = 0) -> LoggedFeedback:
    """A uniform log whose clicks ignore the 12 user features: no model beats the mean click rate."""
    rng = np.random.default_rng(seed)
    return LoggedFeedback.from_arrays(
        rng.integers(0, k, n),
        (rng.random(n) < rate).astype(float),
        np.full(n, 1 / k),
        n_candidates=k,
        user_features=rng.normal(size=(n, 12)),
    )


# ------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize(("m", "p"), [(120, 6), (25, 40)], ids=["tall", "wide (dual)"])
def test_ridge_cv_scores_equal_refitting_every_alpha_from_scratch(m, p):
    rng = np.random.default_rng(4)
    # unequal scales, offsets and a constant column: the per-fold standardisation matters
    X = rng.normal(size=(m, p)) * rng.uniform(0.1, 20.0, p) + rng.normal(scale=5.0, size=p)
    X[:, 0] = 3.0
    y = X @ rng.normal(size=p) * 0.05 + rng.normal(size=m)
    alphas = [0.0, 1e-3, 0.5, 30.0, 1e4, math.inf]
    model = RidgeRegressionCV(alphas=alphas, n_folds=4, seed=7).fit(X, y)
    expected = brute_force_scores(
        lambda a: RidgeRegression(alpha=a), X, y, alphas, squared, n_folds=4, seed=7
    )
    np.testing.assert_allclose(model.cv_scores_, expected, rtol=1e-9)
    assert model.alpha_ == alphas[int(np.argmin(expected))]


def test_logistic_cv_scores_match_cold_fits_at_every_alpha():
    # The path is warm-started, so its fits equal cold fits up to L-BFGS's tolerance only.
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4)) * [1.0, 4.0, 0.3, 1.0]
    y = (rng.random(300) < expit(X @ [1.0, 0.2, 2.0, 0.0] - 1.0)).astype(float)
    alphas = [1e-2, 1.0, 30.0, 1e3, math.inf]
    model = LogisticRegressionCV(alphas=alphas, n_folds=3, seed=2, patience=None).fit(X, y)
    expected = brute_force_scores(
        lambda a: LogisticRegression(alpha=a), X, y, alphas, log_loss, n_folds=3, seed=2
    )
    np.testing.assert_allclose(model.cv_scores_, expected, rtol=1e-4)


def test_predictions_are_the_plain_models_at_the_chosen_alpha():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(400, 5))
    y = X @ [0.5, -0.2, 0.0, 0.1, 0.3] + rng.normal(size=400)
    X_new = rng.normal(size=(50, 5))
    ridge = RidgeRegressionCV().fit(X, y)
    np.testing.assert_array_equal(
        ridge.predict(X_new), RidgeRegression(alpha=ridge.alpha_).fit(X, y).predict(X_new)
    )
    clicks = (rng.random(400) < expit(X[:, 0] - 1.0)).astype(float)
    logistic = LogisticRegressionCV(max_iter=200).fit(X, clicks)
    plain = LogisticRegression(alpha=logistic.alpha_, max_iter=200).fit(X, clicks)
    np.testing.assert_array_equal(logistic.predict(X_new), plain.predict(X_new))
    assert logistic.converged_ == plain.converged_


# ------------------------------------------------------------------------------ the choice
def test_on_rewards_without_signal_the_choice_is_near_the_constant_model():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(500, 30))
    y = 2.0 + rng.normal(size=500)  # unrelated to X
    X_new = rng.normal(size=(200, 30))
    ridge = RidgeRegressionCV().fit(X, y)
    assert ridge.alpha_ >= 100
    # alpha=1 spreads its predictions by ~0.25 (30 noise directions over 500 rows); the chosen
    # alpha shrinks them to a third or less (0 to 0.08 over data seeds 0-5)
    assert RidgeRegression(alpha=1.0).fit(X, y).predict(X_new).std() > 0.2
    assert ridge.predict(X_new).std() < 0.1
    assert ridge.predict(X_new).mean() == pytest.approx(y.mean(), abs=0.05)

    clicks = (rng.random(500) < 0.05).astype(float)
    logistic = LogisticRegressionCV().fit(X, clicks)
    assert logistic.alpha_ >= 100
    assert np.abs(logistic.predict(X_new) - clicks.mean()).max() < 0.01


def test_on_a_strong_linear_signal_the_choice_is_a_small_alpha():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 6)) * [1.0, 10.0, 0.1, 1.0, 1.0, 1.0]
    w = np.array([2.0, -0.5, 30.0, 0.0, 1.0, -1.0])
    y = X @ w + 1.5 + rng.normal(scale=0.01, size=300)
    ridge = RidgeRegressionCV().fit(X, y)
    assert ridge.alpha_ <= 1e-2
    X_new = rng.normal(size=(20, 6))
    np.testing.assert_allclose(ridge.predict(X_new), X_new @ w + 1.5, atol=0.01)

    clicks = (rng.random(300) < expit(3.0 * X[:, 0] - 1.0)).astype(float)
    logistic = LogisticRegressionCV().fit(X, clicks)
    assert logistic.alpha_ <= 10
    assert logistic.cv_scores_[DEFAULT_ALPHAS.index(logistic.alpha_)] < logistic.cv_scores_[-1] - 0.1


def test_logistic_path_stops_after_patience_worse_alphas():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(300, 10))
    clicks = (rng.random(300) < 0.1).astype(float)  # no signal: the loss rises as alpha falls
    full = LogisticRegressionCV(patience=None).fit(X, clicks)
    assert np.isfinite(full.cv_scores_).all()
    short = LogisticRegressionCV(patience=2).fit(X, clicks)
    reached = np.isfinite(short.cv_scores_)
    # the walk goes from inf down and stops 2 alphas past the best; what it scored, it scored alike
    assert reached[-1] and not reached[0]
    assert reached.sum() == DEFAULT_ALPHAS[::-1].index(full.alpha_) + 3
    np.testing.assert_allclose(short.cv_scores_[reached], full.cv_scores_[reached], rtol=1e-12)
    assert short.alpha_ == full.alpha_


def test_the_infinite_alpha_is_the_intercept_only_model():
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(50, 3)), (rng.random(50) < 0.3).astype(float)
    np.testing.assert_allclose(RidgeRegression(alpha=math.inf).fit(X, y).predict(X[:5]), y.mean())
    np.testing.assert_allclose(LogisticRegression(alpha=math.inf).fit(X, y).predict(X[:5]), y.mean())
    assert DEFAULT_ALPHAS[-1] == math.inf and RidgeRegressionCV().alphas == DEFAULT_ALPHAS
    # only the constant model to choose from
    model = RidgeRegressionCV(alphas=[math.inf]).fit(X, y)
    assert model.alpha_ == math.inf and np.all(model.coef_ == 0)


def test_the_choice_is_deterministic_in_the_seed():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(200, 8))
    y = X[:, 0] * 0.3 + rng.normal(size=200)
    clicks = (rng.random(200) < 0.2).astype(float)
    for make, target in ((RidgeRegressionCV, y), (LogisticRegressionCV, clicks)):
        a, b, c = (make(alphas=[0.1, 10.0, 1e3, math.inf], seed=s).fit(X, target) for s in (3, 3, 4))
        np.testing.assert_array_equal(a.cv_scores_, b.cv_scores_)
        assert a.alpha_ == b.alpha_
        assert not np.array_equal(a.cv_scores_, c.cv_scores_)  # other folds, other scores


# ------------------------------------------------------------------------------ through fit_reward_model
def test_cv_models_by_name_in_fit_reward_model(world):
    fb, pi_e = world.sample(600, seed=0)
    assert (
        REWARD_MODELS["ridge_cv"] is RidgeRegressionCV
        and REWARD_MODELS["logistic_cv"] is LogisticRegressionCV
    )
    ridge_cv = fit_reward_model(fb, model="ridge_cv", n_folds=2)
    np.testing.assert_array_equal(ridge_cv, fit_reward_model(fb, model=RidgeRegressionCV(), n_folds=2))
    logistic_cv = fit_reward_model(fb, model="logistic_cv", n_folds=2)
    np.testing.assert_array_equal(logistic_cv, fit_reward_model(fb, model=LogisticRegressionCV(), n_folds=2))
    assert np.nanmin(logistic_cv) > 0 and np.nanmax(logistic_cv) < 1

    def error(q):
        return np.sqrt(np.mean((q - fb.expected_rewards) ** 2))

    # 300 training rounds a fold: the chosen penalty beats alpha=1 (0.120 against 0.141 for ridge,
    # 0.121 against 0.137 for logistic) and both are far from the constant's 0.173
    assert error(ridge_cv) < error(fit_reward_model(fb, model="ridge", n_folds=2)) - 0.01
    assert error(logistic_cv) < error(fit_reward_model(fb, model="logistic", n_folds=2)) - 0.01
    assert (
        error(ridge_cv) < error(fit_reward_model(fb, model=RidgeRegression(alpha=math.inf), n_folds=2)) - 0.04
    )
    df = compare_policies(
        fb, {"target": pi_e}, [DirectMethod(), DoublyRobust()], reward_model="ridge_cv", method="normal"
    )
    assert np.isfinite(df["estimate"]).all()


def test_cv_models_by_name_in_an_ope_targets_file(tmp_path):
    path = tmp_path / "targets.toml"
    for name in ("ridge_cv", "logistic_cv"):
        path.write_text(f'[policies.a]\ntype = "Random"\n[ope]\nreward_model = "{name}"\n', encoding="utf-8")
        assert load_offline_targets(path).options["reward_model"] == name


def test_on_clicks_without_signal_cross_fitted_cv_models_match_the_constant():
    # The Open Bandit Dataset sample's problem in small: ~1% clicks, features that say nothing.
    fb = clicks_without_signal()
    rows, logged = np.arange(fb.n_rounds), fb.actions

    def held_out_mse(model):
        q = fit_reward_model(fb, model=model, n_folds=5, seed=0)
        return np.mean((q[rows, logged] - fb.rewards) ** 2)

    constant = held_out_mse(RidgeRegression(alpha=math.inf))
    assert held_out_mse("ridge") > constant * 1.005  # alpha=1 overfits the noise (+1.1%)
    assert held_out_mse("ridge_cv") <= constant * 1.002
    assert held_out_mse("logistic_cv") <= constant * 1.002


def test_the_inner_choice_never_sees_the_predicted_fold():
    # Round 0's prediction comes from the model of the other folds, alpha choice included: it must
    # not move with round 0's own reward, while the other folds' predictions do.
    fb = clicks_without_signal(n=60, k=3, rate=0.3, seed=1)
    rewards = fb.rewards.copy()
    rewards[0] = 1.0 - rewards[0]
    flipped = LoggedFeedback.from_arrays(
        fb.actions, rewards, fb.propensities, n_candidates=3, user_features=fb.user_features
    )
    grid = [0.1, 10.0, math.inf]  # a short grid: 60 rows of 54 features are separable at small alphas
    for model in (RidgeRegressionCV(alphas=grid), LogisticRegressionCV(alphas=grid)):
        a = fit_reward_model(fb, model=model, n_folds=4)
        b = fit_reward_model(flipped, model=model, n_folds=4)
        np.testing.assert_array_equal(a[0], b[0])
        assert not np.array_equal(a[1:], b[1:])


# ------------------------------------------------------------------------------ checks
@pytest.mark.parametrize("make", [RidgeRegressionCV, LogisticRegressionCV], ids=["ridge_cv", "logistic_cv"])
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"alphas": ()}, ValueError, r"^alphas is empty: give at least one penalty"),
        ({"alphas": np.array([])}, ValueError, r"^alphas is empty"),
        ({"alphas": [1.0, -1.0]}, ValueError, r"non-negative numbers .*got -1\.0 at index 1$"),
        ({"alphas": [1.0, float("nan")]}, ValueError, r"got nan at index 1$"),
        ({"alphas": np.array([np.nan])}, ValueError, r"got nan at index 0$"),
        ({"alphas": ["1"]}, TypeError, r"^alphas must hold non-negative numbers, got '1' at index 0$"),
        ({"alphas": [0.1, None]}, TypeError, r"got None at index 1$"),
        ({"alphas": [True]}, TypeError, r"got True at index 0$"),
        ({"alphas": 1.0}, TypeError, r"^alphas must be a sequence of non-negative numbers, got 1\.0$"),
        ({"alphas": "1, 10"}, TypeError, r"^alphas must be a sequence"),
        (
            {"alphas": np.ones((2, 2))},
            ValueError,
            r"^alphas must be one-dimensional, got an array of shape \(2, 2\)$",
        ),
        (
            {"n_folds": 1},
            ValueError,
            r"^n_folds must be an integer >= 2 \(inner cross-validation folds\), got 1$",
        ),
        ({"n_folds": 5.0}, ValueError, r"^n_folds must be an integer >= 2 .*got 5\.0$"),
        ({"seed": -1}, ValueError, r"^seed must be a non-negative integer, got -1$"),
        ({"seed": None}, ValueError, r"^seed must be a non-negative integer, got None$"),
    ],
)
def test_bad_settings_are_refused_with_their_value(make, kwargs, error, message):
    with pytest.raises(error, match=message):
        make(**kwargs)


def test_bad_settings_set_after_construction_are_refused_at_fit():
    X, y = np.zeros((10, 2)), np.zeros(10)
    model = RidgeRegressionCV()
    model.alphas = [-1.0]
    with pytest.raises(ValueError, match="got -1.0 at index 0"):
        model.fit(X, y)
    with pytest.raises(ValueError, match=r"^max_iter must be a positive integer, got 0$"):
        LogisticRegressionCV(max_iter=0)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=rf"^patience must be a positive integer or None, got {bad!r}$"):
            LogisticRegressionCV(patience=bad)


def test_fit_needs_a_row_per_inner_fold_and_logistic_needs_clicks_in_0_1():
    rng = np.random.default_rng(11)
    X, y = rng.normal(size=(4, 2)), np.array([0.0, 1.0, 0.0, 1.0])
    for make in (RidgeRegressionCV, LogisticRegressionCV):
        with pytest.raises(
            ValueError,
            match=rf"^{make.__name__} needs at least n_folds=5 rows for its inner "
            r"cross-validation, got 4; lower n_folds",
        ):
            make().fit(X, y)
        make(n_folds=4).fit(X, y)  # one row per fold is enough
        with pytest.raises(RuntimeError, match=rf"{make.__name__}.predict called before fit"):
            make().predict(X)
    with pytest.raises(
        ValueError, match=r"^LogisticRegressionCV models rewards in \[0, 1\] \(clicks\); got range"
    ):
        LogisticRegressionCV(n_folds=2).fit(X, np.array([0.0, 2.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"y must be 1-dimensional|shape"):
        RidgeRegressionCV(n_folds=2).fit(X, y[:3])
    # a log too small for the inner folds says which model needed the rows
    fb = clicks_without_signal(n=8, k=2, rate=0.5)
    with pytest.raises(ValueError, match=r"^RidgeRegressionCV needs at least n_folds=5 rows .* got 4"):
        fit_reward_model(fb, model="ridge_cv", n_folds=2)


def test_cv_models_do_not_import_scikit_learn():
    code = (
        "import sys, numpy as np\n"
        "from banditrec.ope import RidgeRegressionCV, LogisticRegressionCV\n"
        "X = np.random.default_rng(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(float)\n"
        "RidgeRegressionCV().fit(X, y).predict(X); LogisticRegressionCV().fit(X, y).predict(X)\n"
        "assert not any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules), 'sklearn imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
