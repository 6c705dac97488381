"""A policy stopped at step t and resumed from its checkpoint matches an uninterrupted run exactly."""

from __future__ import annotations

import numpy as np
import pytest

from banditrec.environments import make_vector_env
from banditrec.policies import POLICIES, Decision, LinUCB, Policy, make_policy
from banditrec.policies.checkpoint import load_policy, save_policy


def _play(policy, env, steps):
    trace = []
    for _ in range(steps):
        obs = env.observation
        actions, props = policy.act(obs)
        _, rewards, _, _ = env.step_batch(actions)
        policy.update(obs, actions, rewards)
        trace.append((actions.copy(), props.copy()))
    return trace


def _env():
    env = make_vector_env("banditrec/Linear-v0", num_envs=4, n_items=10, context_dim=4, min_candidates=6)
    env.reset(seed=3)
    return env


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_resume_from_checkpoint_is_exact(name, tmp_path):
    full = _play(make_policy(name, seed=5), _env(), 60)
    env = _env()
    first = make_policy(name, seed=5)
    head = _play(first, env, 30)
    save_policy(first, tmp_path / "policy.pt")
    resumed = load_policy(make_policy(name, seed=123), tmp_path / "policy.pt")  # seed is overwritten
    tail = _play(resumed, env, 30)
    for (a, p), (b, q) in zip(full, head + tail):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(p, q)


def test_checkpoint_of_another_policy_is_rejected(tmp_path):
    p = make_policy("LinUCB", seed=0)
    _play(p, _env(), 3)
    save_policy(p, tmp_path / "p.pt")
    with pytest.raises(ValueError, match="LinUCB"):
        load_policy(make_policy("EpsilonGreedy", seed=0), tmp_path / "p.pt")
    with pytest.raises(FileNotFoundError):
        load_policy(p, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_policy(p, tmp_path / "junk.pt")


def test_neural_states_saved_before_the_sixth_sessions_options_still_load():
    """States without ``intercept`` or ``step_decay_reset`` (saved before they existed) load into a
    policy with the defaults they meant, and are refused by one configured otherwise."""
    from banditrec.policies.checkpoint import load_policy_state, policy_state

    policy = make_policy("NeuralLinear", hidden=(4,), train_every=8, train_steps=2, seed=5)
    _play(policy, _env(), 5)
    state = policy_state(policy)
    params = state["estimator"]["__state_dict__"]["params"]
    del params["intercept"], params["training"]["step_decay_reset"]
    resumed = load_policy_state(make_policy("NeuralLinear", hidden=(4,), train_every=8, train_steps=2), state)
    env = _env()
    obs = env.observation
    np.testing.assert_array_equal(resumed.action_distribution(obs), policy.action_distribution(obs))
    with pytest.raises(ValueError, match="intercept"):
        load_policy_state(make_policy("NeuralLinear", hidden=(4,), train_every=8, train_steps=2,
                                      intercept=False), state)


def _linucb_checkpoint(tmp_path):
    """The audit's case: LinUCB on 3 user features and 3 item features (same width)."""
    env = make_vector_env("banditrec/Linear-v0", num_envs=4, n_items=5, context_dim=3)
    env.reset(seed=0)
    policy = make_policy("LinUCB", seed=0)
    _play(policy, env, 4)
    return save_policy(policy, tmp_path / "lin.pt"), env


@pytest.mark.parametrize(
    "params, message",
    [
        # used to load and act silently (user-feature weights applied to item features)
        ({"features": "item"}, "features: 'user' vs 'item'"),
        # used to fail later, in numpy matmul, with a core-dimension mismatch
        ({"form": "shared"}, "form: 'disjoint' vs 'shared', features: 'user' vs 'outer'"),
        ({"intercept": False}, "intercept: True vs False"),
        ({"lam": 2.0}, "lam: 1.0 vs 2.0"),  # the prior is inside the saved A
    ],
)
def test_linear_checkpoint_refuses_other_structural_hyperparameters(tmp_path, params, message):
    path, _ = _linucb_checkpoint(tmp_path)
    with pytest.raises(ValueError) as info:
        load_policy(make_policy("LinUCB", seed=0, **params), path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: the saved RidgeRegression state has different hyperparameters "
                          "(saved vs this estimator): "), msg
    assert message in msg


def test_linear_checkpoint_loads_under_other_exploration_settings(tmp_path):
    """alpha (and the posterior's v, a0, b0) only read the statistics: they may differ."""
    path, env = _linucb_checkpoint(tmp_path)
    resumed = load_policy(make_policy("LinUCB", alpha=0.5, seed=0), path)
    assert resumed.estimator.count_.sum() == 16
    resumed.act(env.observation)


def test_linear_state_saved_before_the_check_still_loads(tmp_path):
    """Checkpoints written before RidgeRegression had a state_dict hold its bare attributes."""
    from banditrec.policies.checkpoint import load_policy_state, policy_state

    policy = make_policy("LinUCB", seed=0)
    _play(policy, _env(), 3)
    state = policy_state(policy)
    state["estimator"] = {k: v for k, v in vars(policy.estimator).items() if k.endswith("_")}
    resumed = load_policy_state(make_policy("LinUCB", seed=0), state)
    obs = _env().observation
    np.testing.assert_array_equal(resumed.action_distribution(obs), policy.action_distribution(obs))


def test_save_policy_creates_missing_folders(tmp_path):
    """Used to be torch's "RuntimeError: Parent directory ... does not exist"."""
    policy = make_policy("LinUCB", seed=0)
    _play(policy, _env(), 2)
    path = save_policy(policy, tmp_path / "missing_dir" / "deeper" / "x.pt")
    assert path.is_file()
    load_policy(make_policy("LinUCB", seed=0), path)


def test_truncated_policy_checkpoint_is_one_clear_line(tmp_path):
    path, _ = _linucb_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as info:
        load_policy(make_policy("LinUCB", seed=0), path)
    assert str(info.value) == (
        f"{path} is not a readable banditrec policy checkpoint (written by save_policy): "
        "it is not a torch checkpoint archive (truncated, or another kind of file)"
    )


def test_saving_onto_a_directory_is_a_clear_error_and_leaves_nothing_behind(tmp_path):
    from banditrec.models import build_model, save_model

    target = tmp_path / "taken"
    target.mkdir()
    with pytest.raises(IsADirectoryError, match="it is a directory; give a file path"):
        save_policy(make_policy("LinUCB", seed=0), target)
    with pytest.raises(IsADirectoryError, match="it is a directory; give a file path"):
        save_model(build_model("mlp", 3, 2, (4,), seed=0), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no half-written temporary file


@pytest.mark.parametrize("name", ["LinTS", "NeuralTS", "NeuralLinear", "BernoulliTS"])
def test_a_resumed_policy_explains_as_the_uninterrupted_one(name, tmp_path):
    # the inspection stream (explain, action_distribution) was not saved: a policy inspected
    # before its checkpoint gave other Monte-Carlo distributions after resuming (up to 0.13 apart)
    env = _env()
    first = make_policy(name, seed=5, n_mc=20)
    _play(first, env, 10)
    first.action_distribution(env.observation)  # inspected before the save
    save_policy(first, tmp_path / "policy.pt")
    resumed = load_policy(make_policy(name, seed=5, n_mc=20), tmp_path / "policy.pt")
    obs = env.observation
    np.testing.assert_array_equal(resumed.action_distribution(obs), first.action_distribution(obs))
    np.testing.assert_array_equal(resumed.explain(obs)["exploration"], first.explain(obs)["exploration"])


def test_a_model_checkpoint_given_to_load_policy_says_to_use_load_model(tmp_path):
    # used to be "unsupported policy checkpoint format 'banditrec-model'"
    from banditrec.models import build_model, save_model

    path = save_model(build_model("mlp", 3, 2, (4,), seed=0), tmp_path / "model.pt")
    with pytest.raises(ValueError) as info:
        load_policy(make_policy("LinUCB", seed=0), path)
    assert str(info.value) == (
        f"{path}: this is a model checkpoint (written by save_model), not a policy checkpoint; "
        "load it with banditrec.models.load_model"
    )


def test_a_checkpoint_missing_an_entry_names_it(tmp_path):
    # torch reads such files fine; they used to fail with a bare KeyError: 'rng' (or 'buffer',
    # raised inside the neural estimator's load_state_dict).
    import torch

    policy = make_policy("NeuralLinear", hidden=(4,), train_every=8, train_steps=2, seed=5)
    _play(policy, _env(), 9)
    save_policy(policy, tmp_path / "full.pt")
    state = torch.load(tmp_path / "full.pt", weights_only=True)
    del state["_sha256"]  # written by something else: no digest of its own contents to fail first
    torch.save({k: v for k, v in state.items() if k != "rng"}, tmp_path / "no_rng.pt")
    estimator = {k: v for k, v in state["estimator"]["__state_dict__"].items() if k != "buffer"}
    torch.save(dict(state, estimator={"__state_dict__": estimator}), tmp_path / "no_buffer.pt")

    def fresh():
        return make_policy("NeuralLinear", hidden=(4,), train_every=8, train_steps=2, seed=5)

    with pytest.raises(ValueError) as info:
        load_policy(fresh(), tmp_path / "no_rng.pt")
    assert str(info.value) == (
        f"{tmp_path / 'no_rng.pt'}: the checkpoint lacks the entry 'rng' (damaged, or written by something else)"
    )
    with pytest.raises(ValueError) as info:
        load_policy(fresh(), tmp_path / "no_buffer.pt")
    assert str(info.value) == (
        f"{tmp_path / 'no_buffer.pt'}: the checkpoint's estimator state lacks the entry 'buffer' "
        "(damaged, or written by something else)"
    )
    load_policy(fresh(), tmp_path / "full.pt")  # the complete file loads


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_policy_that_has_not_learned_yet_saves_and_loads(tmp_path, name):
    # a fresh context-free policy holds empty per-item arrays, which come back from numpy as
    # tensors of stride 0: the checkpoint's digest refused them ("self.stride(-1) must be 1")
    path = save_policy(make_policy(name, seed=0), tmp_path / "fresh.pt")
    restored = load_policy(make_policy(name, seed=0), path)
    env = make_vector_env("banditrec/Linear-v0", num_envs=4, n_items=5, context_dim=3)
    env.reset(seed=0)
    a, b = make_policy(name, seed=0).act(env.observation), restored.act(env.observation)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.propensities, b.propensities)


# ------------------------------------------------------------ a user's own Policy subclass
class _CountingGreedy(Policy):
    """A user policy keeping what it learns on itself, in attributes ending in _ (Policy's convention)."""

    def __init__(self, seed=None) -> None:
        super().__init__(seed)
        self.sums_, self.counts_ = np.zeros(5), np.zeros(5)

    def _act(self, obs):
        best = np.argmax(self.sums_ / np.maximum(self.counts_, 1))
        return Decision(np.full(obs.batch_size, best), np.ones(obs.batch_size))

    def _distribution(self, obs):
        dist = np.zeros(obs.item_ids.shape)
        dist[:, np.argmax(self.sums_ / np.maximum(self.counts_, 1))] = 1.0
        return dist

    def _learn(self, obs, actions, rewards):
        np.add.at(self.sums_, actions, rewards)
        np.add.at(self.counts_, actions, 1)


def test_a_user_policys_own_learned_attributes_travel_in_its_checkpoint(tmp_path):
    # only the rng, the counter and an `estimator` were saved: a reloaded user policy had learned nothing
    env = make_vector_env("banditrec/Linear-v0", num_envs=4, n_items=10, n_candidates=5, context_dim=3)
    env.reset(seed=0)
    obs = env.observation
    policy = _CountingGreedy(seed=0)
    policy.update(obs, np.full(4, 3), np.ones(4))
    save_policy(policy, tmp_path / "c.pt")
    loaded = load_policy(_CountingGreedy(seed=0), tmp_path / "c.pt")
    np.testing.assert_array_equal(loaded.counts_, policy.counts_)
    np.testing.assert_array_equal(loaded.act(obs).actions, np.full(4, 3))


def test_a_user_policy_holding_something_a_checkpoint_cannot_keep_is_refused_when_saved(tmp_path):
    policy = _CountingGreedy(seed=0)
    policy.model_ = object()
    with pytest.raises(TypeError, match=r"cannot checkpoint _CountingGreedy.model_: it holds a object"):
        save_policy(policy, tmp_path / "c.pt")


def test_load_policy_names_a_factory_or_swapped_arguments(tmp_path):
    policy = make_policy("LinUCB", seed=0)
    save_policy(policy, tmp_path / "c.pt")
    with pytest.raises(TypeError, match=r"load_policy needs a Policy built with the same factory"):
        load_policy(LinUCB, tmp_path / "c.pt")
    with pytest.raises(TypeError, match=r"load_policy takes \(policy, path\): the arguments are swapped"):
        load_policy(tmp_path / "c.pt", policy)
