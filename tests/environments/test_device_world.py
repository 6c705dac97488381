"""DeviceWorld: a logged-data world simulated with torch tensors, end to end through the environment,
the policies and the runner. Run here with tensors on the CPU (the same code as on a GPU); the CUDA
variants are skipped without one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from banditrec.environments import BanditVectorEnv, DeviceWorld, InvalidActionError, Observation
from banditrec.environments.checks import SimulatorError
from banditrec.policies import make_policy
from tests.environments.test_logged import N_ITEMS, N_USERS, build, planted_table

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("cache"))


def test_observations_are_tensors_with_the_contracts_shapes(world):
    dev = DeviceWorld(world, "cpu")
    dev.reset(np.random.default_rng(0))
    obs = dev.sample_users(50)
    assert obs.on_device and dev.device == torch.device("cpu")
    assert obs.user_features.shape == (50, world.user_dim) and obs.user_features.dtype == torch.float32
    assert obs.item_features.shape == (50, 8, world.item_dim) and obs.item_features.dtype == torch.float32
    assert obs.item_ids.dtype == torch.int64 and obs.user_ids.dtype == torch.int64 and obs.mask.all()
    for row in obs.item_ids.tolist():
        assert len(set(row)) == 8  # distinct candidates
    host = obs.to_numpy()
    assert host.user_features.dtype == np.float64 and isinstance(host.item_ids, np.ndarray)
    np.testing.assert_allclose(host.user_features, world._user_x[host.user_ids], rtol=1e-6)
    np.testing.assert_allclose(host.item_features, world._item_x[host.item_ids], rtol=1e-6, atol=1e-7)


def test_expected_rewards_are_the_numpy_worlds(world):
    """Same truth: the device world's click probabilities equal the numpy world's for the same batch."""
    dev = DeviceWorld(world, "cpu")
    dev.reset(np.random.default_rng(1))
    obs = dev.sample_users(200)
    expected = dev.expected_rewards(obs)
    assert expected.dtype == torch.float64
    np.testing.assert_allclose(expected.numpy(), world.expected_rewards(obs.to_numpy()), rtol=1e-12, atol=1e-15)


def test_clicks_follow_the_expected_rewards(world):
    dev = DeviceWorld(world, "cpu")
    dev.reset(np.random.default_rng(2))
    expected = torch.full((200_000,), 0.3, dtype=torch.float64)
    clicks = dev.sample_rewards(None, None, expected)
    assert clicks.dtype == torch.float64 and set(clicks.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(clicks.mean()) - 0.3) < 0.005


def test_same_seed_same_draws_and_reset_restarts_them(world):
    def draws(seed):
        dev = DeviceWorld(world, "cpu")
        dev.reset(np.random.default_rng(seed))
        obs = dev.sample_users(20)
        return obs.item_ids.numpy(), dev.sample_rewards(obs, None, dev.expected_rewards(obs)[:, 0]).numpy()

    a, b, c = draws(5), draws(5), draws(6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_arrivals_and_candidates_follow_the_worlds_weights(tmp_path):
    w = build(tmp_path, arrival="activity", candidates="popularity")
    dev = DeviceWorld(w, "cpu")
    dev.reset(np.random.default_rng(2))
    obs = dev.sample_users(30_000).to_numpy()
    interactions, _, _ = planted_table()
    activity = pd.factorize(interactions["user"], sort=True)[0]
    assert np.corrcoef(np.bincount(obs.user_ids, minlength=N_USERS), np.bincount(activity, minlength=N_USERS))[0, 1] > 0.8
    popularity = np.bincount(pd.factorize(interactions["movie"], sort=True)[0], minlength=N_ITEMS)
    assert np.corrcoef(np.bincount(obs.item_ids.ravel(), minlength=N_ITEMS), popularity)[0, 1] > 0.8
    # and the same marginal frequencies as the numpy world's sampler (both Gumbel top-k)
    ref = w.sample_users(30_000, np.random.default_rng(3))
    freq_dev = np.bincount(obs.item_ids.ravel(), minlength=N_ITEMS) / obs.item_ids.size
    freq_ref = np.bincount(ref.item_ids.ravel(), minlength=N_ITEMS) / ref.item_ids.size
    assert np.abs(freq_dev - freq_ref).max() < 0.01


def test_cold_start_drift_and_revealed_truth(tmp_path):
    w = build(tmp_path, initial_items=5, new_items_per_step=2, drift=0.2, reveal_truth=True)
    dev = DeviceWorld(w, "cpu")
    dev.reset(np.random.default_rng(0))
    obs = dev.sample_users(10)
    assert dev.n_available == 5 and obs.mask[:, :5].all() and not obs.mask[:, 5:].any()
    assert bool((obs.item_features[~obs.mask] == 0).all())
    assert set(obs.item_ids[obs.mask].tolist()) == set(w._item_order[:5].tolist())
    host = obs.to_numpy()
    np.testing.assert_allclose(host.user_features[:, -5:-1], w.truth.user_factors[host.user_ids], rtol=1e-6)
    initial = dev.user_factors.copy()
    for _ in range(3):
        dev.update(obs, None, None)
    assert dev.n_available == 11 and not np.allclose(dev.user_factors, initial)
    assert 0.5 < dev.user_factors.std() / initial.std() < 1.5
    dev.reset(np.random.default_rng(0))
    np.testing.assert_array_equal(dev.user_factors, initial)
    assert dev.n_available == 5


def test_the_environment_steps_on_tensors_and_checks_actions(world):
    env = BanditVectorEnv(DeviceWorld(world, "cpu"), num_envs=6, validate=True)
    env.reset(seed=0)
    obs = env.observation
    expected = env.core.expected
    actions = torch.tensor([0, 1, 2, 3, 4, 5])
    next_obs, rewards, _, info = env.step_batch(actions)
    assert next_obs.on_device and isinstance(rewards, torch.Tensor) and rewards.dtype == torch.float64
    chosen = expected[torch.arange(6), actions]
    torch.testing.assert_close(info["expected_reward"], chosen)
    torch.testing.assert_close(info["regret"], expected.amax(1) - chosen)
    assert bool((info["regret"] >= 0).all())
    env.step_batch(np.array([1, 1, 1, 1, 1, 1]))  # numpy actions are accepted too
    env.step_batch(torch.tensor([2.0, 2, 2, 2, 2, 2]))  # integral floats as for numpy
    with pytest.raises(InvalidActionError, match="outside the candidates"):
        env.step_batch(torch.tensor([0, 0, 8, 0, 0, 0]))
    with pytest.raises(InvalidActionError, match="expected 6 actions"):
        env.step_batch(torch.zeros(5, dtype=torch.int64))
    with pytest.raises(InvalidActionError, match="integer candidate indices"):
        env.step_batch(torch.tensor([0.5, 0, 0, 0, 0, 0]))
    # quoted as given, not as the int64 it wrapped to (-9223372036854775808)
    with pytest.raises(InvalidActionError, match=r"action 100000000000000000000 for user 1 is outside"):
        env.step_batch(torch.tensor([0, 1e20, 0, 0, 0, 0], dtype=torch.float64))
    # the Gymnasium API answers in numpy
    obs_dict, rewards, _, _, info = env.step(np.zeros(6, dtype=np.int64))
    assert isinstance(obs_dict["items"], np.ndarray) and isinstance(rewards, np.ndarray)
    assert isinstance(info["regret"], np.ndarray)
    assert obs is not env.observation


def test_masked_candidates_are_invalid_actions_on_the_device(tmp_path):
    env = BanditVectorEnv(DeviceWorld(build(tmp_path, initial_items=5), "cpu"), num_envs=3)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="masked"):
        env.step_batch(torch.tensor([0, 6, 0]))


class _HostAnswering(DeviceWorld):
    """A broken device simulator: answers in numpy."""

    def expected_rewards(self, obs):
        return super().expected_rewards(obs).numpy()


def test_a_device_simulator_answering_in_numpy_is_a_simulator_error(world):
    env = BanditVectorEnv(_HostAnswering(world, "cpu"), num_envs=4, validate=True)
    with pytest.raises(SimulatorError, match="must return torch tensors"):
        env.reset(seed=0)


class _BadIds(DeviceWorld):
    """A broken device simulator: candidate ids past the catalogue; records whether
    expected_rewards was asked about them."""

    asked = False

    def sample_users(self, batch_size, rng):
        obs = super().sample_users(batch_size, rng)
        return Observation(obs.user_features, obs.item_features, obs.item_ids + self.n_items, obs.mask, obs.user_ids)

    def expected_rewards(self, obs):
        type(self).asked = True
        return super().expected_rewards(obs)


def test_a_device_simulators_users_are_checked_before_its_expected_rewards_see_them(world):
    # expected_rewards ran first, so the bad ids failed inside the simulator's own indexing
    # (IndexError here, a device-side assert on CUDA) instead of being named
    env = BanditVectorEnv(_BadIds(world, "cpu"), num_envs=4, validate=True)
    with pytest.raises(SimulatorError, match=r"_BadIds\.sample_users\(\) returned item ids in \[\d+, \d+\], outside"):
        env.reset(seed=0)
    assert not _BadIds.asked


class _Refilling(DeviceWorld):
    """A device simulator that answers in the same tensors every call, refilled in place."""

    def _out(self, name, value):
        buffers = self.__dict__.setdefault("_buffers", {})
        if name not in buffers:
            buffers[name] = value.clone()
        return buffers[name].copy_(value)

    def sample_users(self, batch_size, rng):
        obs = super().sample_users(batch_size, rng)
        return Observation(*(self._out(f, getattr(obs, f)) for f in ("user_features", "item_features", "item_ids", "mask", "user_ids")))

    def expected_rewards(self, obs):
        return self._out("expected", super().expected_rewards(obs))

    def sample_rewards(self, obs, actions, expected, rng=None):
        expected += 0.25  # a simulator changing its argument in place: not the env's reported regret
        return self._out("rewards", super().sample_rewards(obs, actions, expected.clamp(0, 1), rng))


def test_a_device_simulator_refilling_its_rewards_or_changing_its_arguments_changes_no_reported_number(world):
    env = BanditVectorEnv(_Refilling(world, "cpu"), num_envs=64, validate=True)
    env.reset(seed=0)
    kept, regret_ok = [], True
    for t in range(5):
        expected = env.core.expected.clone()
        actions = torch.full((64,), t % 8, dtype=torch.int64)
        _, rewards, _, info = env.step_batch(actions)
        kept.append((rewards, rewards.clone()))
        regret_ok &= torch.equal(info["regret"], expected.amax(1) - expected[torch.arange(64), actions])
        assert torch.equal(actions, torch.full((64,), t % 8))
    assert regret_ok
    for rewards, copy in kept:  # the simulator refilled one tensor each step; each step's rewards stayed
        assert torch.equal(rewards, copy)
    assert len({tuple(r.tolist()) for r, _ in kept}) > 1


class _Int32Ids(DeviceWorld):
    def sample_users(self, batch_size, rng):
        obs = super().sample_users(batch_size, rng)
        return Observation(obs.user_features, obs.item_features, obs.item_ids.int(), obs.mask, obs.user_ids.int())


def test_a_device_simulators_int32_ids_become_the_contracts_int64(world):
    # the host check converts them; the batch on the device kept int32 while marked as checked,
    # and a policy's own check then refused it (observation item_ids must be int64)
    env = BanditVectorEnv(_Int32Ids(world, "cpu"), num_envs=6, validate=True)
    env.reset(seed=0)
    obs = env.observation
    assert obs.item_ids.dtype == torch.int64 and obs.user_ids.dtype == torch.int64 and obs.mask.dtype == torch.bool
    assert Observation.coerce(Observation(*(getattr(obs, f) for f in ("user_features", "item_features", "item_ids", "mask", "user_ids")))) is not None
    policy = make_policy("LinUCB", seed=0)
    actions, _ = policy.act(obs)
    env.step_batch(actions)


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (np.array(["0", "1", "0", "0", "0", "0"]), "integer candidate indices"),
        (np.array([0, None, 0, 0, 0, 0], dtype=object), "integer candidate indices"),
        ([[0], [1, 2], [0], [0], [0], [0]], "array of integer candidate indices"),
        (np.array([2**63 + 5, 0, 0, 0, 0, 0], dtype=np.uint64), r"action 9223372036854775813 for user 0 is outside"),
        (torch.tensor([2**63 + 5, 0, 0, 0, 0, 0], dtype=torch.uint64), r"action 9223372036854775813 for user 0 is outside"),
    ],
)
def test_malformed_actions_on_the_device_get_the_hosts_errors(world, actions, message):
    env = BanditVectorEnv(DeviceWorld(world, "cpu"), num_envs=6, validate=True)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=message):
        env.step_batch(actions)
    env.step_batch(torch.zeros(6, dtype=torch.int64, requires_grad=False))


def test_a_device_simulator_refilling_its_tensors_leaves_earlier_batches_intact(world):
    env = BanditVectorEnv(_Refilling(world, "cpu"), num_envs=4, validate=True)
    env.reset(seed=0)
    obs, expected = env.observation, env.core.expected
    kept = obs.user_features.clone(), obs.item_ids.clone(), expected.clone()
    env.step_batch(torch.zeros(4, dtype=torch.int64))
    assert not torch.equal(env.observation.user_features, kept[0])  # the world drew other users ...
    assert torch.equal(obs.user_features, kept[0]) and torch.equal(obs.item_ids, kept[1])  # ... into its own tensors
    assert torch.equal(expected, kept[2])


@pytest.fixture(scope="module")
def movielens():
    from banditrec.environments.movielens import MovieLens100kWorld

    return MovieLens100kWorld(n_candidates=20).world


def play(world, name: str, steps: int = 60) -> float:
    """Mean regret per decision over the last 20 steps of ``name`` on ``world`` on the device."""
    env = BanditVectorEnv(DeviceWorld(world, "cpu"), num_envs=64)
    options = {"model": "two_tower", "hidden": (16,), "device": "cpu", "decide_on": "device"}
    if not name.startswith("Neural"):
        options = {"form": "shared", "features": "outer", "alpha": 0.3} if name == "LinUCB" else {}
    policy = make_policy(name, seed=0, **options)
    env.reset(seed=0)
    obs, regret = env.observation, []
    for _ in range(steps):
        actions, p = policy.act(obs)
        assert isinstance(actions, torch.Tensor) and actions.dtype == torch.int64
        assert p.dtype == torch.float64 and bool(((p > 0) & (p <= 1 + 1e-12)).all())
        next_obs, rewards, _, info = env.step_batch(actions)
        policy.update(obs, actions, rewards)
        obs = next_obs
        regret.append(float(info["regret"].mean()))
    assert policy.decides_on_device(obs) == name.startswith("Neural")
    return float(np.mean(regret[-20:]))


def test_policies_play_a_device_world_and_beat_random(movielens):
    """Neural policies deciding on the device take the tensors as they are; the others get a host
    copy and their decisions come back as tensors. Each learner's regret ends below Random's."""
    random = play(movielens, "Random")
    for name in ("NeuralLinear", "NeuralEpsilonGreedy", "LinUCB"):
        assert play(movielens, name) < 0.8 * random, name


def test_bad_feedback_for_a_device_batch_is_a_clear_error(world):
    dev = DeviceWorld(world, "cpu")
    dev.reset(np.random.default_rng(0))
    obs = dev.sample_users(4)
    policy = make_policy("NeuralEpsilonGreedy", seed=0, hidden=(8,), device="cpu", decide_on="device")
    actions, _ = policy.act(obs)
    with pytest.raises(ValueError, match="NaN or inf at rows \\[1\\]"):
        policy.update(obs, actions, torch.tensor([0.0, float("nan"), 1.0, 0.0]))
    with pytest.raises(ValueError, match="must lie in"):
        policy.update(obs, torch.tensor([0, 9, 0, 0]), torch.zeros(4))
    with pytest.raises(ValueError, match="shape \\(4,\\)"):
        policy.update(obs, actions[:3], torch.zeros(4))


def test_the_runner_plays_a_device_world(tmp_path):
    from banditrec.config import EnvironmentSpec, ExperimentConfig, PolicySpec
    from banditrec.runner import run_trial

    spec = EnvironmentSpec(id="banditrec/MovieLens100k-v0", params={"n_candidates": 10, "device": "cpu"})
    config = ExperimentConfig(name="dev", environment=spec, policies=(), seeds=(0,), horizon=640, batch_size=64,
                              n_checkpoints=5)
    results = {}
    for name, params in (("NeuralEpsilonGreedy", {"hidden": [16], "decide_on": "device", "device": "cpu"}),
                         ("Random", {})):
        first = run_trial(config, PolicySpec(name=name, type=name, params=params), 0, log_feedback=True)
        again = run_trial(config, PolicySpec(name=name, type=name, params=params), 0)
        pd.testing.assert_frame_equal(first.table, again.table)  # deterministic on the CPU
        assert first.feedback.actions.shape == (640,) and np.isfinite(first.feedback.propensities).all()
        results[name] = first.table["cumulative_regret"].iloc[-1]
    assert results["NeuralEpsilonGreedy"] < results["Random"]


@needs_cuda
def test_movielens_on_cuda_end_to_end():
    from banditrec.environments import make_vector_env

    env = make_vector_env("banditrec/MovieLens100k-v0", num_envs=256, n_candidates=50, device="cuda")
    env.reset(seed=0)
    policy = make_policy("NeuralLinear", seed=0, model="two_tower", hidden=(32,), device="cuda")
    obs = env.observation
    assert obs.item_ids.is_cuda
    for _ in range(10):
        actions, p = policy.act(obs)
        assert actions.is_cuda and p.is_cuda
        next_obs, rewards, _, info = env.step_batch(actions)
        policy.update(obs, actions, rewards)
        obs = next_obs
    assert info["regret"].is_cuda and policy.estimator.graph_rounds_.graph is not None
    assert isinstance(Observation.to_numpy(obs).item_ids, np.ndarray)
