"""Cheap checks of what benchmarks/scale.py relies on: a user population in the linear world,
candidate sampling from large catalogues, and the benchmark's own measurement on a tiny world."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from banditrec.environments import LinearWorld, make_vector_env
from banditrec.environments.candidates import _sample_sparse

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """Import benchmarks/NAME.py as a module (the scripts pin BLAS threads for themselves; keep the
    test session's environment)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    saved = dict(os.environ)
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


def _scale_module():
    return _load("scale")


def test_linear_world_user_population_shapes_ids_and_memory():
    n_users, n_items, K, d, B = 1000, 5000, 50, 4, 64
    env = make_vector_env("banditrec/Linear-v0", num_envs=B, n_users=n_users, n_items=n_items,
                          n_candidates=K, context_dim=d)
    env.reset(seed=0)
    sim = env.simulator
    assert sim.n_users == n_users and sim.user_contexts.shape == (n_users, d)
    assert sim.user_contexts.dtype == np.float32
    # World arrays: the population and the items, nothing of size users × items.
    assert sum(v.nbytes for v in vars(sim).values() if isinstance(v, np.ndarray)) == 4 * n_users * d + 2 * 8 * n_items * d
    seen = {}
    for _ in range(20):
        obs = env.observation
        assert obs.user_features.shape == (B, d) and obs.user_features.dtype == np.float64
        assert obs.item_features.shape == (B, K, d) and obs.item_ids.shape == (B, K)
        assert obs.user_ids.min() >= 0 and obs.user_ids.max() < n_users
        s = np.sort(obs.item_ids, axis=1)
        assert (s[:, 1:] != s[:, :-1]).all()
        for uid, x in zip(obs.user_ids, obs.user_features):
            np.testing.assert_array_equal(seen.setdefault(int(uid), x), x)  # a user keeps its context
        env.step_batch(np.zeros(B, dtype=np.int64))
    # The items do not depend on the population; the default world stays anonymous.
    plain = LinearWorld(n_items=n_items, n_candidates=K, context_dim=d)
    np.testing.assert_array_equal(plain.item_vectors, sim.item_vectors)
    assert plain.n_users is None and plain.user_contexts is None
    with pytest.raises(ValueError, match="n_users"):
        LinearWorld(n_users=0)


@pytest.mark.parametrize(("B", "n_items", "K"), [(64, 100_000, 100), (512, 1682, 100), (256, 300, 200), (64, 20, 5)])
def test_sparse_candidates_distinct_in_range_every_regime(B, n_items, K):
    ids = _sample_sparse(np.random.default_rng(0), B, n_items, K)
    assert ids.shape == (B, K) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < n_items
    s = np.sort(ids, axis=1)
    assert (s[:, 1:] != s[:, :-1]).all()


def test_scale_benchmark_measures_a_small_disjoint_linucb():
    scale = _scale_module()
    cfg = {"part": 2, "label": "disjoint LinUCB", "type": "LinUCB", "params": {"form": "disjoint"},
           "world": {"n_users": 2000, "n_items": 50, "n_candidates": 10, "context_dim": 4},
           "batch": 8, "decisions": 64}
    out = scale.measure(cfg, traced_steps=1)
    assert out["decisions"] == 64 and out["decisions_per_s"] > 0
    n_arms, d, d2 = out["policy_shapes"]["A_inv_"]
    assert n_arms >= 50 and d == d2 == 5  # stacked per-arm statistics over (user, 1)
    assert out["world_mb"] == pytest.approx((4 * 2000 * 4 + 2 * 8 * 50 * 4) / 2**20)
    assert out["peak_rss_delta_mb"] >= 0 and np.isfinite(out["step_working_set_mb"])
    assert 0 <= out["regret_per_decision"] <= 1


@pytest.mark.parametrize("engine", ["numba", "numpy", "torch"])
def test_space_bandits_benchmark_runs_banditrec_on_a_short_wheel(engine):
    """The banditrec side of space_bandits_wheel.py (space-bandits itself is an optional extra)."""
    bench = _load("space_bandits_wheel")
    obs, expected, rewards = bench.wheel_data(0.5, 300)
    training = {"optimizer": "rmsprop_tf", "lr": 0.1, "step_decay": 0.5, "max_grad_norm": 5.0, "engine": engine}
    actions, rate = bench.run_banditrec(obs, rewards, training, batch=5, n_mc=3)
    assert actions.shape == (300,) and set(np.unique(actions)) <= set(range(5)) and rate > 0
    assert bench.pseudo_regret(expected, actions) >= 0


@pytest.mark.parametrize("engine", ["torch", "numpy", "numba"])
def test_training_engines_benchmark_times_a_round(engine):
    bench = _load("training_engines")
    assert bench.time_engine(engine, (2, (8,), 3, 16), steps=2, repeats=2) > 0


@pytest.mark.parametrize("world", ["device", "numpy"])
def test_gpu_benchmark_measures_its_rows_on_the_cpu(world):
    """benchmarks/gpu.py's measurement, tiny: the device world (here on the CPU) and the numpy one."""
    gpu = _load("gpu")
    opts = {"policy": "NeuralLinear", "device": "cpu", "world": world, "decide_on": "device", "cuda_graph": "auto",
            "batch": 32, "candidates": 10, "steps": 1, "repeats": 2, "hidden": [8], "train_every": 32,
            "train_steps": 2, "num_threads": 1, "ids": False}
    r = gpu.measure(opts)
    assert r["world"] == world and r["decide_on"] == "device" and not r["graphs"]
    assert len(r["rates"]) == 2 and r["median"] > 0 and 0 <= r["regret_per_decision"] < 1


def test_decision_profile_counts_operators_on_the_cpu(monkeypatch, capsys):
    """decision_profile.py reads the device path's operator counts without a GPU (the lines the
    GPU sessions compare)."""
    module = _load("decision_profile")
    monkeypatch.setattr("sys.argv", ["decision_profile.py", "--device", "cpu", "--decisions", "8",
                                     "--policies", "NeuralEpsilonGreedy"])
    module.main()
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("== NeuralEpsilonGreedy"))
    counts = [int(word.rstrip(",")) for word in line.split("act")[1].split() if word.rstrip(",").isdigit()]
    assert len(counts) == 3 and 0 < counts[0] < 1000 and 0 < counts[1] < counts[2]
