"""The compiled ridge-regression loops against the numpy code they replace.

Both paths live in RidgeRegression; ``ridge_kernels.AVAILABLE = False`` (monkeypatched) forces the
numpy one. They must hold the same statistics to rounding and make the same decisions.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from banditrec.environments.simulator import Observation
from banditrec.policies import LinTS, LinUCB, ridge_kernels
from banditrec.policies.linear import RidgeRegression

pytestmark = pytest.mark.skipif(not ridge_kernels.AVAILABLE, reason="numba not installed or disabled")

STATS = ("A_", "A_inv_", "b_", "theta_", "yy_", "count_")


def _batch(rng, B, K, d_u, d_i=3):
    return Observation(
        user_features=rng.standard_normal((B, d_u)),
        item_features=rng.standard_normal((B, K, d_i)),
        item_ids=np.stack([rng.permutation(K) for _ in range(B)]),
        mask=np.ones((B, K), dtype=bool),
        user_ids=np.full(B, -1, dtype=np.int64),
    )


def _feed(est, batches, monkeypatch, compiled):
    monkeypatch.setattr(ridge_kernels, "AVAILABLE", compiled)
    scores = []
    for obs, actions, rewards in batches:
        scores.append(est.mean_and_width(obs))
        est.update(obs, actions, rewards)
    monkeypatch.setattr(ridge_kernels, "AVAILABLE", True)
    return scores


@pytest.mark.parametrize(
    "form, features, B",
    [
        ("disjoint", "user", 1),  # Sherman–Morrison in one call; scoring one user's candidates
        ("disjoint", "user", 32),  # one compiled rank-one update per row instead of Woodbury
        ("disjoint", "concat", 1),  # candidates with their own features, each against its arm
        ("disjoint", "item", 8),
        ("shared", "outer", 1),
        ("shared", "outer", 4),  # fewer rows than features: the compiled loop
        ("shared", "concat", 64),  # more rows than features: A is inverted directly, both paths
    ],
)
def test_compiled_and_numpy_paths_agree(form, features, B, monkeypatch):
    rng = np.random.default_rng(0)
    K, d_u = 6, 5
    batches = []
    for _ in range(60):
        obs = _batch(rng, B, K, d_u)
        batches.append((obs, rng.integers(0, K, B), rng.random(B)))
    compiled = RidgeRegression(form=form, features=features, lam=0.5, posterior="nig")
    reference = RidgeRegression(form=form, features=features, lam=0.5, posterior="nig")
    got = _feed(compiled, batches, monkeypatch, True)
    want = _feed(reference, batches, monkeypatch, False)
    for name in STATS:
        np.testing.assert_allclose(
            getattr(compiled, name), getattr(reference, name), rtol=1e-9, atol=1e-12, err_msg=name
        )
    for (m1, w1), (m2, w2) in zip(got, want):
        np.testing.assert_allclose(m1, m2, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(w1, w2, rtol=1e-9, atol=1e-12)
    # The compiled updates keep A⁻¹ exactly symmetric and equal to the inverse of A.
    n = compiled.n_arms_
    np.testing.assert_allclose(
        compiled.A_inv_[:n] @ compiled.A_[:n],
        np.broadcast_to(np.eye(compiled.d_), (n,) + compiled.A_.shape[1:]),
        atol=1e-9,
    )


@pytest.mark.parametrize("make, batch", [(LinUCB, 1), (LinUCB, 16), (LinTS, 1), (LinTS, 16)])
def test_same_decisions_with_and_without_the_compiled_loops(make, batch, monkeypatch):
    rng = np.random.default_rng(3)
    T, K, d = 1600, 10, 8
    X = rng.standard_normal((T, d)) / np.sqrt(d)
    theta = rng.standard_normal((K, d))
    R = (rng.random((T, K)) < 1 / (1 + np.exp(-3 * X @ theta.T))).astype(float)
    full = Observation(
        X, np.zeros((T, K, 0)), np.tile(np.arange(K), (T, 1)), np.ones((T, K), bool), np.full(T, -1)
    )

    def play(compiled):
        monkeypatch.setattr(ridge_kernels, "AVAILABLE", compiled)
        policy = make(seed=0, intercept=False) if make is LinUCB else make(seed=0, posterior="nig")
        chosen, props = [], []
        for s in range(0, T, batch):
            obs = full[s : s + batch]
            actions, p = policy.act(obs)
            policy.update(obs, actions, R[s + np.arange(actions.size), actions])
            chosen.append(actions)
            props.append(p)
        monkeypatch.setattr(ridge_kernels, "AVAILABLE", True)
        return np.concatenate(chosen), np.concatenate(props)

    (a1, p1), (a2, p2) = play(True), play(False)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(p1, p2)


def test_negative_item_ids_are_refused():
    policy = LinUCB(seed=0)
    obs = Observation(
        np.ones((1, 2)), np.zeros((1, 3, 0)), np.array([[0, -1, 2]]), np.ones((1, 3), bool), np.array([-1])
    )
    with pytest.raises(ValueError, match=r"item[ _]ids .*must be >= 0"):
        policy.act(obs)
    with pytest.raises(ValueError, match=r"item[ _]ids .*must be >= 0"):
        policy.update(obs, np.array([1]), np.array([1.0]))
    batch = Observation(
        np.ones((2, 2)),
        np.zeros((2, 3, 0)),
        np.array([[0, 1, 2], [0, -4, 2]]),
        np.ones((2, 3), bool),
        np.array([-1, -1]),
    )
    with pytest.raises(ValueError, match=r"item[ _]ids .*must be >= 0"):
        policy.update(batch, np.array([0, 1]), np.array([1.0, 0.0]))
    # The policy's boundary names the field first; the ridge regression keeps its own check
    # for callers (the neural heads) that hand it batches directly.
    with pytest.raises(ValueError, match=r"item ids index the per-item parameters and must be >= 0"):
        policy.estimator.update(batch, np.array([0, 1]), np.array([1.0, 0.0]))


def test_banditrec_numba_0_selects_the_numpy_code():
    code = "from banditrec.policies import ridge_kernels as k; print(k.AVAILABLE)"
    env = {**os.environ, "BANDITREC_NUMBA": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_warm_up_leaves_the_kernels_ready():
    # A fresh interpreter: nothing compiled or loaded before warm_up, every kernel ready after.
    code = (
        "from banditrec.policies import ridge_kernels as k\n"
        "ks = (k.update_one, k.update_rows, k.score_users, k.score_candidates)\n"
        "before = [len(f.signatures) for f in ks]\n"
        "k.warm_up()\n"
        "print(before, [len(f.signatures) for f in ks])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[0, 0, 0, 0] [1, 1, 1, 1]"
