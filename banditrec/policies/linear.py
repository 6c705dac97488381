"""Bayesian ridge regression: the estimator behind LinUCB, LinTS and linear epsilon-greedy.

Two forms share one implementation, because the disjoint form is the shared one with a separate
set of statistics per item id:

- ``shared``: one parameter vector over joint user–item features φ(u, i) (generalises across items);
- ``disjoint``: one parameter vector per item id over (by default) the user features, Li et al. 2010.

For each parameter set it keeps A = λI + ΣxxT, its inverse, b = Σ r x and θ = A⁻¹b. Updates are
exact and incremental: one Sherman–Morrison (rank-one) update per row, run as a compiled loop
(:mod:`banditrec.policies.ridge_kernels`, numba) for one row or a batch, and scoring one user's
candidates is one compiled loop too; a parameter set with more rows in a batch than features has
its updated A inverted directly. Without numba the same updates run as numpy: two in-place BLAS
rank-one updates for one row, one rank-m Woodbury update per touched parameter set for a batch.

The posterior used by Thompson sampling is either Gaussian, θ ~ N(θ̂, v² A⁻¹), or the
Normal-Inverse-Gamma of Riquelme et al. 2018 ("LinFullPost"): σ² ~ IG(a, b), θ ~ N(θ̂, σ² A⁻¹)
with a = a0 + n/2 and b = b0 + (yᵀy − bᵀθ̂)/2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.linalg.blas import dger as _dger

from banditrec._util import check_id_table, check_real
from banditrec.environments.simulator import Observation
from banditrec.policies import ridge_kernels as kernels
from banditrec.policies.base import repeated_slots
from banditrec.policies.features import FEATURE_KINDS, _with_one, joint_features

__all__ = ["RidgeRegression"]


def _in_place_ok(a: np.ndarray) -> bool:
    """Whether BLAS can update ``a``'s matrices in place (otherwise f2py would silently copy)."""
    return a.flags.c_contiguous and a.dtype == np.float64


def not_positive_definite(lam: float) -> FloatingPointError:
    """The error for a posterior covariance that has lost positive definiteness: it happens when
    the features (or a network's last layer) grow so large against the ridge penalty that float64
    cannot hold A⁻¹."""
    return FloatingPointError(
        f"the posterior covariance is not positive definite (ridge penalty lam={lam!r}): the features "
        "are too large or too collinear for it; raise lam, rescale the features, or lower a network's lr"
    )


def cholesky(matrix: np.ndarray, lam: float) -> np.ndarray:
    """Cholesky factor of a posterior covariance, or :func:`not_positive_definite`'s error in place
    of numpy's."""
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise not_positive_definite(lam) from None


# The largest xᵀA⁻¹x an update accepts. A rank-one update subtracts (A⁻¹x)(A⁻¹x)ᵀ/(1 + xᵀA⁻¹x) from
# A⁻¹, and in float64 that cancellation keeps about 16 − log10(xᵀA⁻¹x) digits: past 1e12 fewer
# than four. Since xᵀA⁻¹x ≤ |x|²/lam, it is only reached when lam is tiny against the features'
# scale (lam = 1e-16 on unit features), where the statistics would silently become noise; lam =
# 1e-8 on the nonlinear world's 81 outer-product features (xᵀA⁻¹x up to 2e10: six digits) still runs.
MAX_QUADRATIC_FORM = 1e12

# Rank-one updates accumulate rounding in A⁻¹: negligible for well-conditioned statistics, but
# on collinear features at scale 1e3 with lam = 1 (cond(A) ~ 1e12), θ = A⁻¹b amplifies it, and
# after 1e5 one-row updates the means were 80% off and the widths 60% (against the exact
# solution). So every REFACTOR_EVERY rows of a parameter set its A⁻¹ is recomputed from A, which
# bounds the drift to that many updates (the same case: 0.3%, near float64's cond(A) · 1e-16).
REFACTOR_EVERY = 256


def check_quadratic_form(value: float, lam: float) -> None:
    """Raise the error :data:`MAX_QUADRATIC_FORM` explains when an update met ``value`` above it."""
    if not value <= MAX_QUADRATIC_FORM:  # also NaN
        raise FloatingPointError(
            f"the ridge penalty lam={lam!r} is too small for these features: a row's xᵀA⁻¹x reached "
            f"{value:.3g} (limit {MAX_QUADRATIC_FORM:.0e}), where float64 loses A⁻¹'s precision in the "
            "update; raise lam, rescale the features, or lower a network's lr (this policy's "
            "statistics are no longer reliable: build it again)"
        )


class RidgeRegression:
    """Ridge regression with the statistics UCB and Thompson sampling need.

    Parameters
    ----------
    form : {"disjoint", "shared"}
        Per-item parameters, or one parameter vector over joint features.
    features : {"user", "item", "concat", "outer"} or None
        Joint feature map (see :mod:`banditrec.policies.features`). Default: ``"user"`` for the
        disjoint form, ``"outer"`` for the shared one.
    lam : float
        Ridge penalty λ (prior precision).
    intercept : bool
        Append a constant feature.
    posterior : {"gaussian", "nig"}
        Thompson sampling's posterior: Gaussian with scale ``v``, or Normal-Inverse-Gamma(a0, b0).
    v : float
        Scale of the Gaussian posterior (the exploration knob of LinTS).
    a0, b0 : float
        Inverse-Gamma prior of the noise variance for ``posterior="nig"``.
    """

    def __init__(
        self,
        form: str = "disjoint",
        features: str | None = None,
        lam: float = 1.0,
        intercept: bool = True,
        posterior: str = "gaussian",
        v: float = 1.0,
        a0: float = 6.0,
        b0: float = 6.0,
    ) -> None:
        for name, value in (("lam", lam), ("v", v), ("a0", a0), ("b0", b0)):
            check_real(name, value)
        if form not in ("disjoint", "shared"):
            raise ValueError(f"form must be 'disjoint' or 'shared', got {form!r}")
        features = features if features is not None else ("user" if form == "disjoint" else "outer")
        if features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
        if not 0 < lam < math.inf:
            raise ValueError(f"lam (ridge penalty) must be > 0 and finite, got {lam!r}")
        if not isinstance(intercept, (bool, np.bool_)):
            raise TypeError(f"intercept must be True or False, got {intercept!r}")
        if posterior not in ("gaussian", "nig"):
            raise ValueError(f"posterior must be 'gaussian' or 'nig', got {posterior!r}")
        if not all(0 < x < math.inf for x in (v, a0, b0)):
            raise ValueError(f"v, a0 and b0 must be > 0 and finite, got v={v!r}, a0={a0!r}, b0={b0!r}")
        self.form, self.features, self.lam, self.intercept = form, features, float(lam), bool(intercept)
        self.posterior, self.v, self.a0, self.b0 = posterior, float(v), float(a0), float(b0)
        self.d_: int | None = None
        self.n_arms_ = 0  # parameter sets in use (1 for the shared form)

    # ----------------------------------------------------------------- state
    def _allocate(self, d: int, capacity: int) -> None:
        self.d_ = d
        self.A_ = np.zeros((capacity, d, d))
        self.A_inv_ = np.zeros((capacity, d, d))
        self.b_ = np.zeros((capacity, d))
        self.theta_ = np.zeros((capacity, d))
        self.yy_ = np.zeros(capacity)
        self.count_ = np.zeros(capacity)

    def _grow(self, n_arms: int) -> None:
        """Make room for parameter sets [0, n_arms); new ones start at the prior."""
        cap = self.A_.shape[0]
        if n_arms > cap:
            per_set = 8 * (2 * self.d_ * self.d_ + 2 * self.d_ + 2)  # A, A⁻¹, b, θ, yᵀy, n in float64
            check_id_table(n_arms, per_set, "per-item regressions (form='disjoint', or a neural head='per_item')")
            new = max(n_arms, 2 * cap)
            for name in ("A_", "A_inv_", "b_", "theta_", "yy_", "count_"):
                old = getattr(self, name)
                grown = np.zeros((new,) + old.shape[1:])
                grown[:cap] = old
                setattr(self, name, grown)
        if n_arms > self.n_arms_:
            eye = np.eye(self.d_)
            self.A_[self.n_arms_ : n_arms] = self.lam * eye
            self.A_inv_[self.n_arms_ : n_arms] = eye / self.lam
            self.n_arms_ = n_arms

    def _prepare(self, obs: Observation, n_arms: int | None = None) -> None:
        """Allocate on first use, check the feature sizes, and make room for the parameter sets
        ``obs`` refers to: its candidates' ids, or the first ``n_arms`` when the caller knows them."""
        if self.d_ is None:
            sizes = (obs.user_features.shape[1], obs.item_features.shape[2])
            x = joint_features(obs[:1], self.features, self.intercept, np.zeros(1, dtype=np.int64))
            self._allocate(x.shape[-1], 1 if self.form == "shared" else 16)
            self.feature_sizes_ = sizes
        elif (obs.user_features.shape[1], obs.item_features.shape[2]) != self.feature_sizes_:
            sizes = (obs.user_features.shape[1], obs.item_features.shape[2])
            raise ValueError(
                f"observation feature sizes (user, item) = {sizes} differ from those this model "
                f"was fitted on, {self.feature_sizes_}"
            )
        if self.form == "shared":
            n_arms = 1
        elif n_arms is None:
            ids = obs.item_ids
            # For a few candidates Python's min and max over a list beat numpy's reductions.
            if 0 < ids.size <= 256:
                listed = ids.ravel().tolist()
                lowest, n_arms = min(listed), max(listed) + 1
            else:
                lowest, n_arms = int(ids.min()), int(ids.max()) + 1
            if lowest < 0:
                raise ValueError(f"item ids index the per-item parameters and must be >= 0, got {lowest}")
        if n_arms > self.n_arms_:
            self._grow(n_arms)

    # ----------------------------------------------------------- checkpoints
    # What each row of A and b means (form, features, intercept) and the prior inside A (lam);
    # posterior, v, a0 and b0 only read the statistics, so a checkpoint may load under others.
    STRUCTURAL_PARAMS = ("form", "features", "intercept", "lam")

    def state_dict(self) -> dict[str, Any]:
        """The statistics (attributes ending in ``_``) and the structural hyperparameters, which
        :meth:`load_state_dict` checks: a checkpoint of user-feature weights loaded into an
        item-feature ridge of the same width would otherwise act, silently wrong."""
        state: dict[str, Any] = {k: v for k, v in vars(self).items() if k.endswith("_")}
        state["params"] = {k: getattr(self, k) for k in self.STRUCTURAL_PARAMS}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into a ridge with the same structural hyperparameters."""
        saved = state.get("params", {})
        diff = {
            k: (saved[k], getattr(self, k))
            for k in self.STRUCTURAL_PARAMS
            if k in saved and saved[k] != getattr(self, k)
        }
        if diff:
            raise ValueError(
                "the saved RidgeRegression state has different hyperparameters (saved vs this estimator): "
                + ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())
                + "; build the policy with the saved values to load it"
            )
        for k, v in state.items():
            if k != "params":
                setattr(self, k, v)

    # ------------------------------------------------------------- inference
    def _user_only(self) -> bool:
        return self.form == "disjoint" and self.features == "user"

    def _x_user(self, obs: Observation) -> np.ndarray:
        u = obs.user_features
        return np.concatenate([u, np.ones((u.shape[0], 1))], axis=1) if self.intercept else u

    def _x_row(self, obs: Observation, action: int = 0) -> np.ndarray:
        """φ (d,) of the first user's candidate ``action``. For the user-only and item-only maps
        one row with the constant appended: a one-row update or decision skips joint_features'
        batch of index arrays and concatenations."""
        if self.features == "user":
            u = obs.user_features[0]
        elif self.features == "item":
            u = obs.item_features[0, action]
        else:
            return joint_features(obs, self.features, self.intercept, np.array([action]))[0]
        if not self.intercept:
            return u
        x = np.empty(u.shape[0] + 1)
        x[:-1] = u
        x[-1] = 1.0
        return x

    @staticmethod
    def _arm_index(ids: np.ndarray) -> np.ndarray | tuple[None, slice]:
        """An index equivalent to ``ids`` (B, K) into the per-arm statistics: a view (None, slice)
        when there is one user whose candidates are consecutive arms (e.g. every arm of a
        multi-output network, in order), else ``ids``. Gathering K (d × d) inverses costs more
        than the products that use them; a view gathers nothing."""
        if ids.shape[0] == 1 and 0 < ids.shape[1] <= 256:
            row = ids[0].tolist()
            if row[0] >= 0 and row == list(range(row[0], row[0] + len(row))):
                return None, slice(row[0], row[0] + len(row))
        return ids

    def _x_candidates(self, obs: Observation) -> np.ndarray:
        """φ of every candidate (B, K, d); the item-only map (a neural head's embeddings) skips
        joint_features' broadcast of the user features, which it does not use."""
        if self.features == "item":
            return _with_one(obs.item_features) if self.intercept else obs.item_features
        return joint_features(obs, self.features, self.intercept)

    def mean(self, obs: Observation) -> np.ndarray:
        """Estimated reward of every candidate, shape (B, K)."""
        self._prepare(obs)
        if self.form == "shared":
            return joint_features(obs, self.features, self.intercept) @ self.theta_[0]
        if self._user_only():
            if obs.item_ids.shape[0] == 1:  # one user: a matrix-vector product over the arms
                return self.theta_[: self.n_arms_].dot(self._x_row(obs))[obs.item_ids]
            return (self._x_user(obs) @ self.theta_[: self.n_arms_].T)[np.arange(obs.batch_size)[:, None], obs.item_ids]
        return np.einsum("bkd,bkd->bk", self._x_candidates(obs), self.theta_[obs.item_ids])

    def mean_and_width(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """Mean and width √(φᵀA⁻¹φ) of every candidate, each shape (B, K)."""
        self._prepare(obs)
        return self._mean_and_width(obs)

    def _mean_and_width(
        self, obs: Observation, arms: np.ndarray | tuple | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`mean_and_width` after ``_prepare``; ``arms``: the candidates' :meth:`_arm_index`
        when the caller has it."""
        B, K = obs.item_ids.shape
        if self.form == "shared":
            X = joint_features(obs, self.features, self.intercept).reshape(B * K, -1)
            mean = X @ self.theta_[0]
            w2 = np.einsum("nd,nd->n", X @ self.A_inv_[0], X)
            return mean.reshape(B, K), np.sqrt(np.maximum(w2, 0.0)).reshape(B, K)
        m, user_only = self.n_arms_, self._user_only()
        if kernels.AVAILABLE and (not user_only or m > 4 * K or (B == 1 and (K <= 64 or m > K))):
            # A compiled loop over the candidates, reading only their parameter sets. When the users'
            # features are shared by their candidates and the catalogue is not much larger than the
            # slate, one BLAS product over every arm (below) is faster, except for a few candidates
            # of one user, where the loop's single call beats numpy's several.
            mean, width = np.empty((B, K)), np.empty((B, K))
            if user_only:
                kernels.score_users(self.A_inv_, self.theta_, self._x_user(obs), obs.item_ids, mean, width)
            else:
                X = self._x_candidates(obs)
                kernels.score_candidates(self.A_inv_, self.theta_, X, obs.item_ids, mean, width)
            return mean, width
        if user_only and m <= B * K:
            # Every arm for every user, then pick the candidates. The widths x_bᵀ A_a⁻¹ x_b come
            # from one (B × d) · (d × m·d) product: the m inverses stacked as rows.
            d, ids = self.d_, obs.item_ids
            Ainv = self.A_inv_[:m].reshape(m * d, d)
            if B == 1:  # one user: matrix-vector products only
                x = self._x_row(obs)
                w2 = Ainv.dot(x).reshape(m, d).dot(x)  # (m,)
                return self.theta_[:m].dot(x)[ids], np.sqrt(np.maximum(w2, 0.0))[ids]
            x = self._x_user(obs)
            w2 = ((x @ Ainv.T).reshape(B, m, d) @ x[:, :, None])[:, :, 0]  # (B, m)
            mean = x @ self.theta_[:m].T  # (B, m)
            rows = np.arange(B)[:, None]
            return mean[rows, ids], np.sqrt(np.maximum(w2[rows, ids], 0.0))
        X = self._x_candidates(obs)
        ids = self._arm_index(obs.item_ids) if arms is None else arms
        mean = np.einsum("bkd,bkd->bk", X, self.theta_[ids])
        # x A⁻¹ per candidate as batched (1 × d)(d × d) products: ~4× faster than a three-operand
        # einsum, which numpy evaluates as one unblocked loop.
        w2 = np.einsum("bkd,bkd->bk", (X[:, :, None, :] @ self.A_inv_[ids])[:, :, 0, :], X)
        return mean, np.sqrt(np.maximum(w2, 0.0))

    @staticmethod
    def warm_up() -> None:
        """Load the compiled loops (:func:`ridge_kernels.warm_up`) now rather than at first use."""
        kernels.warm_up()

    def _noise_scale(
        self, arms: np.ndarray | tuple, size: tuple[int, ...], rng: np.random.Generator
    ) -> np.ndarray | float:
        """Posterior scale: v, or σ drawn from each arm's Inverse-Gamma; ``arms`` indexes the
        statistics (ids, or an :meth:`_arm_index`)."""
        if self.posterior == "gaussian":
            return self.v
        a = self.a0 + 0.5 * self.count_[arms]
        b = self.b0 + 0.5 * np.maximum(self.yy_[arms] - np.einsum("...d,...d->...", self.b_[arms], self.theta_[arms]), 0.0)
        # standard_gamma(a, size) draws what gamma(broadcast_to(a, size)) draws (same stream, scale
        # 1 exactly) ~40% faster: numpy broadcasts the shapes itself.
        return np.sqrt(b / rng.standard_gamma(a, size=size))

    def sample(self, obs: Observation, rng: np.random.Generator, n_draws: int) -> np.ndarray:
        """Draws of every candidate's reward under the posterior, shape (n_draws, B, K).

        Each draw is one posterior sample of the parameters per user, so within a user the
        candidates are correlated exactly as the shared model implies.
        """
        self._prepare(obs)
        B, K = obs.item_ids.shape
        if self.form == "disjoint":
            # One item per slot: the candidates' parameters are independent, so each draw is
            # mean + scale · width · z exactly.
            arms = self._arm_index(obs.item_ids)
            mean, width = self._mean_and_width(obs, arms)
            scale = self._noise_scale(arms, (n_draws, B, K), rng)
            draws = mean + scale * width * rng.standard_normal((n_draws, B, K))
            repeats = repeated_slots(obs.item_ids)
            if repeats is not None:  # an item listed twice in a row: one θ for both slots
                self._draw_repeated(draws, obs, repeats, rng)
            return draws
        X = joint_features(obs, self.features, self.intercept)
        mean = X @ self.theta_[0]
        d = self.d_
        if d <= K:
            L = cholesky(self.A_inv_[0] + 1e-12 * np.eye(d), self.lam)
            z = rng.standard_normal((n_draws, B, d))
            noise = np.einsum("bkd,nbd->nbk", X @ L, z)
        else:
            # Sample the K correlated candidate rewards directly: cov_b = X_b A⁻¹ X_bᵀ (K × K).
            cov = np.einsum("bkd,bjd->bkj", X @ self.A_inv_[0], X)
            cov += (1e-10 * np.abs(np.diagonal(cov, axis1=1, axis2=2)).max() + 1e-12) * np.eye(K)
            L = cholesky(cov, self.lam)
            z = rng.standard_normal((n_draws, B, K))
            noise = np.einsum("bkj,nbj->nbk", L, z)
        scale = self._noise_scale(np.zeros((n_draws, B), dtype=np.int64), (n_draws, B), rng)
        return mean + (scale[..., None] if np.ndim(scale) else scale) * noise

    def _draw_repeated(self, draws: np.ndarray, obs: Observation,
                       repeats: tuple[np.ndarray, np.ndarray, np.ndarray, int], rng: np.random.Generator) -> None:
        """Overwrite the disjoint draws of the slots whose item is listed more than once in their
        row with one θ ~ N(θ̂, σ² A⁻¹) per (row, item): drawn per slot, such an item won about 2/3
        of the time against one equal rival, not 1/2."""
        rows, slots, groups, n_groups = repeats
        x = self._x_candidates(obs)[rows, slots]  # (m, d)
        sets = np.empty(n_groups, dtype=np.int64)
        sets[groups] = obs.item_ids[rows, slots]
        n, d = draws.shape[0], x.shape[1]
        L = cholesky(self.A_inv_[sets] + 1e-12 * np.eye(d), self.lam)  # (G, d, d)
        noise = np.einsum("gij,ngj->ngi", L, rng.standard_normal((n, n_groups, d)))
        scale = self._noise_scale(sets, (n, n_groups), rng)
        theta = self.theta_[sets] + (scale[..., None] if np.ndim(scale) else scale) * noise  # (n, G, d)
        draws[:, rows, slots] = np.einsum("md,nmd->nm", x, theta[:, groups])

    def contributions(self, obs: Observation) -> np.ndarray:
        """Per-feature contributions φ_j · θ_j to each candidate's mean, shape (B, K, d)."""
        self._prepare(obs)
        X = joint_features(obs, self.features, self.intercept)
        theta = self.theta_[0] if self.form == "shared" else self.theta_[obs.item_ids]
        return X * theta

    # -------------------------------------------------------------- learning
    def update(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        B = actions.size
        if B == 1:  # one row: Sherman–Morrison, with scalars where numpy would only add overhead
            arm = 0 if self.form == "shared" else int(obs.item_ids[0, actions[0]])
            if arm < 0:
                raise ValueError(f"item ids index the per-item parameters and must be >= 0, got {arm}")
            self._prepare(obs, arm + 1)
            x = self._x_row(obs, int(actions[0]))
            if kernels.AVAILABLE:
                q = kernels.update_one(self.A_inv_, self.A_, self.b_, self.theta_, self.yy_, self.count_, arm, x,
                                       float(rewards[0]))
            else:
                q = self._sherman_morrison(arm, x, float(rewards[0]))
            check_quadratic_form(q, self.lam)
            if self.count_[arm] % REFACTOR_EVERY == 0:
                self._refactor(np.array([arm]))
            return
        arms = np.zeros(B, dtype=np.int64) if self.form == "shared" else obs.item_ids[np.arange(B), actions]
        if arms.min() < 0:
            raise ValueError(f"item ids index the per-item parameters and must be >= 0, got {arms.min()}")
        self._prepare(obs, int(arms.max()) + 1)
        X = joint_features(obs, self.features, self.intercept, actions)
        # Up to d rows per parameter set, one compiled rank-one update per row does no more
        # arithmetic than Woodbury; beyond that, inverting the updated A is cheaper (below).
        if kernels.AVAILABLE and (B if self.form == "shared" else int(np.bincount(arms).max())) <= self.d_:
            q = kernels.update_rows(self.A_inv_, self.A_, self.b_, self.theta_, self.yy_, self.count_, arms,
                                    np.ascontiguousarray(X, dtype=np.float64), rewards)
            check_quadratic_form(q, self.lam)
            self._refactor_crossed(arms)
            return
        # Rank-m Woodbury update of every touched arm at once: rows are grouped by arm and
        # zero-padded to the largest group (a zero row changes nothing), so a few batched products
        # replace a Python loop over arms. A⁻¹ is symmetric, so XA⁻¹ = (A⁻¹Xᵀ)ᵀ and every product
        # runs on C-ordered operands (numpy hands those to BLAS without copies).
        n, d = self.n_arms_, self.d_
        order = np.argsort(arms, kind="stable")
        sorted_arms = arms[order]
        counts = np.bincount(sorted_arms, minlength=n)
        pos = np.arange(B) - (np.cumsum(counts) - counts)[sorted_arms]  # rank of each row in its arm
        touched = np.flatnonzero(counts)
        if 4 * touched.size >= 3 * n:
            # Most arms touched: pad all n of them and update the statistics in place through
            # views (an untouched arm's zero rows leave it exactly as it was).
            group, sets = sorted_arms, slice(0, n)
        else:  # a few arms of many: gather them, update, scatter back
            group, sets = np.searchsorted(touched, sorted_arms), touched
        n_sets = n if isinstance(sets, slice) else touched.size
        Xpad = np.zeros((n_sets, int(counts.max()), d))  # (u, m, d)
        Xpad[group, pos] = X[order]
        ypad = np.zeros(Xpad.shape[:2])
        ypad[group, pos] = rewards[order]
        XpadT = np.ascontiguousarray(Xpad.transpose(0, 2, 1))  # (u, d, m)
        Ainv = self.A_inv_[sets]
        A, b = self.A_[sets], self.b_[sets]
        A += XpadT @ Xpad
        if Xpad.shape[1] > d:
            # More rows than features for some arm: Woodbury would solve an m × m system per arm;
            # inverting the updated d × d matrices directly is cheaper (e.g. a shared model over
            # 81 features at B = 1,024: one 81 × 81 inverse instead of a 1,024 × 1,024 solve).
            local = touched if isinstance(sets, slice) else slice(None)  # untouched arms keep theirs
            # |x|²/lam bounds every row's xᵀA⁻¹x; only past the limit is the exact value needed.
            if np.einsum("umd,umd->um", Xpad, Xpad).max() > MAX_QUADRATIC_FORM * self.lam:
                q = np.einsum("umd,umd->um", Xpad @ Ainv, Xpad).max()
                check_quadratic_form(q, self.lam)
            try:
                Ainv[local] = np.linalg.inv(A[local])
            except np.linalg.LinAlgError:
                check_quadratic_form(math.inf, self.lam)
        else:
            XA = Xpad @ Ainv  # (u, m, d)
            S = XA @ XpadT  # (u, m, m): I + X A⁻¹ Xᵀ, symmetric positive definite
            diagonal = (slice(None), np.arange(S.shape[1]), np.arange(S.shape[1]))
            check_quadratic_form(S[diagonal].max(), self.lam)  # the rows' xᵀA⁻¹x (a padding row's is 0)
            S[diagonal] += 1.0
            # For small groups a batched inverse then a product is several times faster than
            # numpy's batched solve with d right-hand sides (per-matrix overhead); large ones solve.
            SinvXA = np.linalg.inv(S) @ XA if S.shape[1] <= 32 else np.linalg.solve(S, XA)
            Ainv -= np.ascontiguousarray(XA.transpose(0, 2, 1)) @ SinvXA
        b += (ypad[:, None, :] @ Xpad)[:, 0]
        self.yy_[sets] += np.einsum("um,um->u", ypad, ypad)
        if isinstance(sets, slice):
            self.count_[sets] += counts
            Ainv, b = Ainv[touched], b[touched]
        else:  # gathered copies: write them back
            self.A_inv_[sets], self.A_[sets], self.b_[sets] = Ainv, A, b
            self.count_[sets] += counts[touched]
        self.theta_[touched] = (Ainv @ b[:, :, None])[:, :, 0]
        if Xpad.shape[1] <= d:  # rank-m updates (otherwise A was just inverted directly)
            self._refactor_crossed(arms)

    def _refactor_crossed(self, arms: np.ndarray) -> None:
        """:meth:`_refactor` the parameter sets whose row count just passed a multiple of
        :data:`REFACTOR_EVERY` (``arms``: the batch's rows' sets)."""
        added = np.bincount(arms)
        sets = np.flatnonzero(added)
        after = self.count_[sets]
        crossed = sets[after // REFACTOR_EVERY > (after - added[sets]) // REFACTOR_EVERY]
        if crossed.size:
            self._refactor(crossed)

    def _refactor(self, sets: np.ndarray) -> None:
        """Recompute A⁻¹ of ``sets`` from A (symmetric, as the compiled kernels need) and θ = A⁻¹b,
        discarding the rounding the rank-one updates accumulated (see :data:`REFACTOR_EVERY`)."""
        try:
            inv = np.linalg.inv(self.A_[sets])
        except np.linalg.LinAlgError:
            check_quadratic_form(math.inf, self.lam)
        inv = 0.5 * (inv + inv.transpose(0, 2, 1))
        self.A_inv_[sets] = inv
        self.theta_[sets] = (inv @ self.b_[sets][:, :, None])[:, :, 0]

    def _sherman_morrison(self, arm: int, x: np.ndarray, r: float) -> float:
        """One row: A⁻¹ ← A⁻¹ − (A⁻¹x)(A⁻¹x)ᵀ/(1 + xᵀA⁻¹x), A ← A + xxᵀ, θ = A⁻¹b; returns the
        row's xᵀA⁻¹x before the update.

        The rank-one updates are BLAS ``ger`` calls in place (on the transposed, Fortran-ordered
        view of each C-ordered matrix): for d ≈ 30 one call costs less than numpy's outer
        product and subtraction, which is most of the time of a one-row update.
        """
        Ainv, b = self.A_inv_[arm], self.b_[arm]
        Ax = Ainv.dot(x)
        q = float(x.dot(Ax))
        if _in_place_ok(self.A_inv_) and _in_place_ok(self.A_):
            _dger(-1.0 / (1.0 + q), Ax, Ax, a=Ainv.T, overwrite_a=1)
            _dger(1.0, x, x, a=self.A_[arm].T, overwrite_a=1)
        else:  # statistics set from outside as non-contiguous or non-float64 arrays: plain numpy
            Ainv -= np.multiply.outer(Ax, Ax) / (1.0 + q)
            self.A_[arm] += np.multiply.outer(x, x)
        b += r * x
        self.yy_[arm] += r * r
        self.count_[arm] += 1.0
        self.theta_[arm] = Ainv.dot(b)
        return q
