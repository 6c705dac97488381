"""The common policy battery: what every banditrec policy must honour, like scikit-learn's check_estimator.

Usage (any policy, including neural ones)::

    from tests.policies.battery import check_policy     # or the ``check_policy`` fixture
    check_policy(lambda seed: NeuralUCB(hidden=8, seed=seed))

``factory(seed=...)`` must return a fresh :class:`banditrec.policies.Policy`. The battery learns for a
few steps on a world with masked candidates (some users have fewer than K valid items), then checks:

- ``check_decisions``: actions are valid candidate indices, never a masked slot;
- ``check_distribution``: ``action_distribution`` rows are probabilities, zero on masked slots;
- ``check_propensities``: propensities lie in (0, 1] and equal ``action_distribution`` at the chosen
  action (exactly, or within Monte-Carlo error for Thompson sampling);
- ``check_frequencies``: many ``act`` calls on one observation choose each candidate as often as
  ``action_distribution`` says;
- ``check_reproducible``: the same seed gives the same actions and propensities, and the global
  NumPy / ``random`` state is never touched;
- ``check_update_rejects``: ``update`` raises ValueError for NaN/inf rewards, wrong shapes,
  out-of-range, masked or non-integer actions, and leaves the policy unchanged;
- ``check_inspection_is_free``: ``action_distribution`` and ``explain`` leave the policy's later
  decisions unchanged (a policy that is looked at decides as one that is not);
- ``check_dict_observation``: a Gymnasium dict observation (batched or single user) works like
  an :class:`Observation`.

Each check raises AssertionError with a message that names the check and the offending values.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from banditrec.environments import Observation, make_vector_env
from banditrec.policies import Policy

__all__ = ["CHECKS", "DEFAULT_ENV", "Battery", "check_policy", "monte_carlo_draws"]

DEFAULT_ENV = ("banditrec/Linear-v0", {"n_items": 30, "n_candidates": 10, "min_candidates": 3, "context_dim": 6})

PolicyFactory = Callable[..., Policy]


def monte_carlo_draws(policy: Policy) -> int | None:
    """Draws behind each propensity of a Thompson-sampling policy; None when propensities are exact."""
    from banditrec.policies import Thompson

    exploration = getattr(policy, "exploration", None)
    if isinstance(exploration, Thompson):
        return exploration.n_mc + 1
    return None


@dataclass
class Rollout:
    """What a policy did while learning: per step the observation, its distribution and its decision."""

    policy: Policy
    observations: list[Observation]
    distributions: list[np.ndarray]
    actions: list[np.ndarray]
    propensities: list[np.ndarray]
    last: Observation


@dataclass
class Battery:
    """Settings of one battery run (see :func:`check_policy`)."""

    factory: PolicyFactory
    env_id: str = DEFAULT_ENV[0]
    env_kwargs: dict[str, Any] | None = None
    batch_size: int = 16
    learn_steps: int = 25
    n_repeats: int = 1000
    monte_carlo: int | None = None
    seed: int = 0
    z: float = 5.0  # tolerance of statistical checks, in standard errors

    def __post_init__(self) -> None:
        if self.env_kwargs is None:
            self.env_kwargs = dict(DEFAULT_ENV[1]) if self.env_id == DEFAULT_ENV[0] else {}

    def new_policy(self, seed: int | None = None) -> Policy:
        policy = self.factory(seed=self.seed if seed is None else seed)
        assert isinstance(policy, Policy), f"factory returned {type(policy).__name__}, not a banditrec Policy"
        return policy

    def rollout(self, seed: int | None = None, as_dict: bool = False, n_dist: int = 1, explain: bool = False) -> Rollout:
        """Learn for ``learn_steps`` batches; before each ``act`` record the mean of ``n_dist``
        distributions (none when ``n_dist`` is 0), and call ``explain`` too when asked."""
        seed = self.seed if seed is None else seed
        policy = self.new_policy(seed)
        env = make_vector_env(self.env_id, num_envs=self.batch_size, **self.env_kwargs)
        env.reset(seed=seed + 1000)
        obs = env.observation
        out = Rollout(policy, [], [], [], [], obs)
        for _ in range(self.learn_steps):
            view = obs.to_dict() if as_dict else obs
            dist = np.mean([policy.action_distribution(view) for _ in range(n_dist)], axis=0) if n_dist else None
            if explain:
                policy.explain(view)
            decision = policy.act(view)
            valid = obs.mask[np.arange(obs.batch_size), np.clip(decision.actions, 0, obs.n_candidates - 1)]
            assert valid.all() and np.all((decision.actions >= 0) & (decision.actions < obs.n_candidates)), (
                f"check_decisions: invalid or masked candidates chosen: actions {decision.actions}, mask {obs.mask}"
            )
            out.observations.append(obs)
            out.distributions.append(dist)
            out.actions.append(np.asarray(decision.actions))
            out.propensities.append(np.asarray(decision.propensities))
            next_obs, rewards, _, _ = env.step_batch(decision.actions)
            policy.update(view, decision.actions, rewards)
            obs = next_obs
        out.last = obs
        return out

    def draws(self, policy: Policy) -> int | None:
        return self.monte_carlo if self.monte_carlo is not None else monte_carlo_draws(policy)


def _masked_rows(obs: Observation, n: int) -> Observation:
    """Up to ``n`` rows of ``obs``, those with masked candidates first."""
    order = np.argsort(obs.mask.all(axis=1), kind="stable")
    return obs[order[:n]]


def check_decisions(b: Battery) -> None:
    r = b.rollout()
    for t, (obs, a, p) in enumerate(zip(r.observations, r.actions, r.propensities)):
        B, K = obs.mask.shape
        assert a.shape == (B,) and np.issubdtype(a.dtype, np.integer), (
            f"check_decisions: step {t}: actions must be an int array of shape ({B},), got {a.dtype} {a.shape}"
        )
        assert p.shape == (B,) and np.issubdtype(p.dtype, np.floating), (
            f"check_decisions: step {t}: propensities must be a float array of shape ({B},), got {p.dtype} {p.shape}"
        )
        assert ((a >= 0) & (a < K)).all(), f"check_decisions: step {t}: actions outside [0, {K}): {a}"
        bad = ~obs.mask[np.arange(B), a]
        assert not bad.any(), f"check_decisions: step {t}: masked candidates chosen for users {np.flatnonzero(bad)}"
    all_masks = np.concatenate([o.mask for o in r.observations])
    assert not all_masks.all(), f"battery precondition: {b.env_id} {b.env_kwargs} must mask some candidates"


def check_distribution(b: Battery) -> None:
    r = b.rollout()
    for t, (obs, dist) in enumerate(zip(r.observations, r.distributions)):
        assert dist.shape == obs.mask.shape, f"check_distribution: step {t}: shape {dist.shape}, expected {obs.mask.shape}"
        assert np.all(np.isfinite(dist)) and dist.min() >= 0, f"check_distribution: step {t}: not probabilities: {dist}"
        np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-9, err_msg=f"check_distribution: step {t}: rows must sum to 1")
        on_masked = dist[~obs.mask]
        assert np.all(on_masked == 0), f"check_distribution: step {t}: probability {on_masked.max()} on a masked slot"


def check_propensities(b: Battery) -> None:
    m = b.draws(b.new_policy())
    # Thompson's distribution is itself a Monte-Carlo estimate: average a few to tighten the reference.
    r = b.rollout(n_dist=1 if m is None else 8)
    p = np.concatenate(r.propensities)
    at_chosen = np.concatenate([d[np.arange(a.size), a] for d, a in zip(r.distributions, r.actions)])
    assert np.all((p > 0) & (p <= 1)), f"check_propensities: propensities outside (0, 1]: {p[(p <= 0) | (p > 1)][:5]}"
    if m is None:
        np.testing.assert_allclose(
            p, at_chosen, rtol=1e-10, atol=1e-12,
            err_msg="check_propensities: propensity != action_distribution at the chosen action",
        )
        return
    # Each propensity is a share of m posterior draws, one of which is the acted-on draw (bias <= 1/m).
    sd = 0.5 * np.sqrt(1.0 / m + 1.0 / (8 * m))
    worst = np.abs(p - at_chosen).max()
    assert worst <= b.z * sd + 1.0 / m, (
        f"check_propensities: a Monte-Carlo propensity is {worst:.3f} from action_distribution (tolerance {b.z * sd + 1 / m:.3f})"
    )
    mean_diff = (p - at_chosen).mean()
    tol = b.z * sd / np.sqrt(p.size) + 1.0 / m
    assert abs(mean_diff) <= tol, (
        f"check_propensities: propensities differ from action_distribution by {mean_diff:.4f} on average (tolerance {tol:.4f})"
    )


def check_frequencies(b: Battery) -> None:
    r = b.rollout()
    policy, obs = r.policy, _masked_rows(r.last, 4)
    B, K = obs.mask.shape
    n, rows = b.n_repeats, np.arange(B)
    # The distribution may move between calls (decaying epsilon counts decisions): average it over
    # the calls; a Monte-Carlo distribution is costly and precise enough on every 5th call.
    stride = 1 if b.draws(policy) is None else 5
    counts, expected = np.zeros((B, K)), np.zeros((B, K))
    for i in range(n):
        if i % stride == 0:
            expected += policy.action_distribution(obs) * stride
        a = np.asarray(policy.act(obs).actions)
        assert obs.mask[rows, a].all(), f"check_frequencies: masked candidate chosen: actions {a}, mask {obs.mask}"
        counts[rows, a] += 1
    freq, expected = counts / n, expected / n
    tol = b.z * np.sqrt(np.maximum(expected * (1 - expected), 1.0 / n) / n)
    excess = np.abs(freq - expected) - tol
    i, k = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, (
        f"check_frequencies: user {i}, candidate {k} chosen with frequency {freq[i, k]:.4f} over {n} calls, "
        f"action_distribution says {expected[i, k]:.4f} (tolerance {tol[i, k]:.4f})"
    )
    if b.draws(policy) is None:
        impossible = (expected == 0) & (counts > 0)
        assert not impossible.any(), f"check_frequencies: zero-probability candidates chosen: {np.argwhere(impossible)}"


def check_reproducible(b: Battery) -> None:
    np_state, py_state = np.random.get_state(), random.getstate()
    first, second = b.rollout(), b.rollout()
    for t in range(b.learn_steps):
        np.testing.assert_array_equal(first.actions[t], second.actions[t], err_msg=f"check_reproducible: step {t}: actions differ for the same seed")
        np.testing.assert_array_equal(
            first.propensities[t], second.propensities[t], err_msg=f"check_reproducible: step {t}: propensities differ for the same seed"
        )
    after = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(np_state, after)), "check_reproducible: the global NumPy RNG was used"
    assert random.getstate() == py_state, "check_reproducible: Python's global random module was used"


def check_inspection_is_free(b: Battery) -> None:
    untouched, inspected = b.rollout(n_dist=0), b.rollout(n_dist=2, explain=True)
    for t in range(b.learn_steps):
        np.testing.assert_array_equal(
            untouched.actions[t], inspected.actions[t],
            err_msg=f"check_inspection_is_free: step {t}: action_distribution/explain changed the later decisions",
        )
        np.testing.assert_array_equal(
            untouched.propensities[t], inspected.propensities[t],
            err_msg=f"check_inspection_is_free: step {t}: action_distribution/explain changed the later propensities",
        )


def _bad_feedback(obs: Observation, actions: np.ndarray) -> dict[str, tuple[Any, Any]]:
    B, K = obs.mask.shape
    rewards = np.zeros(B)
    cases = {
        "NaN reward": (actions, np.where(np.arange(B) == 0, np.nan, rewards)),
        "inf reward": (actions, np.where(np.arange(B) == B - 1, np.inf, rewards)),
        "rewards too long": (actions, np.zeros(B + 1)),
        "rewards (B, 1)": (actions, rewards[:, None]),
        "actions too short": (actions[:-1], rewards),
        "action == K": (np.where(np.arange(B) == 0, K, actions), rewards),
        "action -1": (np.where(np.arange(B) == 0, -1, actions), rewards),
        "non-integer action": (actions + 0.5, rewards),
    }
    masked = np.argwhere(~obs.mask)
    if masked.size:
        i, k = masked[0]
        cases["action on masked slot"] = (np.where(np.arange(B) == i, k, actions), rewards)
    return cases


def check_update_rejects(b: Battery) -> None:
    r = b.rollout()
    policy, obs = r.policy, r.last
    actions = np.asarray(policy.act(obs).actions)
    before = copy.deepcopy(policy)
    for name, (a, rew) in _bad_feedback(obs, actions).items():
        try:
            policy.update(obs, a, rew)
        except ValueError:
            continue
        raise AssertionError(f"check_update_rejects: update accepted {name} (actions {a}, rewards {rew})")
    # Rejected feedback must leave no trace: the policy decides exactly as its copy from before.
    d1, d2 = policy.act(obs), before.act(obs)
    np.testing.assert_array_equal(d1.actions, d2.actions, err_msg="check_update_rejects: a rejected update changed the policy")
    np.testing.assert_array_equal(d1.propensities, d2.propensities, err_msg="check_update_rejects: a rejected update changed the policy")


def check_dict_observation(b: Battery) -> None:
    plain = b.rollout()
    try:
        as_dict = b.rollout(as_dict=True)
    except (TypeError, KeyError, AttributeError) as exc:
        raise AssertionError(f"check_dict_observation: a Gymnasium dict observation was refused: {exc!r}") from exc
    for t in range(b.learn_steps):
        np.testing.assert_array_equal(plain.actions[t], as_dict.actions[t], err_msg=f"check_dict_observation: step {t}: actions differ")
        np.testing.assert_allclose(plain.distributions[t], as_dict.distributions[t], err_msg=f"check_dict_observation: step {t}")
    # One user, as gymnasium.make's single environment returns it (no leading batch axis).
    row = _masked_rows(plain.last, 1)
    single = {k: (np.asarray(v[0]) if k != "user_id" else np.int64(v[0])) for k, v in row.to_dict().items()}
    decision = plain.policy.act(single)
    a = np.asarray(decision.actions)
    assert a.shape == (1,) and row.mask[0, a[0]], f"check_dict_observation: single-user dict gave actions {a}"
    dist = plain.policy.action_distribution(single)
    assert dist.shape == (1, row.n_candidates), f"check_dict_observation: single-user distribution shape {dist.shape}"
    plain.policy.update(single, a, np.ones(1))


CHECKS: dict[str, Callable[[Battery], None]] = {
    "decisions": check_decisions,
    "distribution": check_distribution,
    "propensities": check_propensities,
    "frequencies": check_frequencies,
    "reproducible": check_reproducible,
    "inspection_is_free": check_inspection_is_free,
    "update_rejects": check_update_rejects,
    "dict_observation": check_dict_observation,
}


def check_policy(factory: PolicyFactory, *, checks: list[str] | None = None, **settings: Any) -> None:
    """Run the battery (all checks, or the named ones) on policies built by ``factory(seed=...)``.

    Parameters
    ----------
    factory : callable
        ``factory(seed=int) -> Policy``; every call must build a fresh, untrained policy.
    checks : list of str or None
        Names from :data:`CHECKS`; all by default.
    **settings
        Fields of :class:`Battery`: ``env_id`` and ``env_kwargs`` (a world with masked candidates;
        default: a small masked Linear world), ``batch_size``, ``learn_steps``, ``n_repeats`` (act calls
        of the frequency check), ``monte_carlo`` (draws behind each propensity; detected for
        Thompson sampling), ``seed``, ``z`` (tolerance in standard errors).
    """
    battery = Battery(factory, **settings)
    for name in checks if checks is not None else CHECKS:
        CHECKS[name](battery)
