"""Neural bandit policies: a PyTorch recommendation model, trained online, under the usual strategies.

A :class:`NeuralEstimator` is a reward estimator like :class:`~banditrec.policies.linear.RidgeRegression`
(``mean``, ``mean_and_width``, ``sample``, ``update``), so the neural policies are the same
composition as the linear ones: ``BanditPolicy(NeuralEstimator(...), EpsilonGreedy | UCB | Thompson)``.

The network (``"mlp"``, ``"two_tower"``, ``"mf"``, ``"multi_output"`` from :mod:`banditrec.models`, or a user's
module) is built lazily from the first observation's sizes and learns from a bounded replay
buffer: every ``train_every`` decisions it takes ``train_steps`` minibatch steps. Its uncertainty
comes from one of two heads:

- ``uncertainty="last_layer"`` (the default for UCB and Thompson sampling): Bayesian linear
  regression on the network's last hidden layer φ(u, i). The head is the library's ridge
  regression applied to φ — one for all items (``head="shared"``) or one per item id
  (``head="per_item"``) — refitted on the whole buffer whenever the network retrains and
  updated incrementally in between. Its posterior gives Neural-LinUCB's width
  √(φᵀA⁻¹φ) (Xu et al. 2020) and NeuralLinear's Normal-Inverse-Gamma posterior draws
  (Riquelme et al. 2018, "Deep Bayesian Bandits Showdown"). ``head_fit="xu"`` runs Xu et al.'s
  Neural-LinUCB as written instead: the head keeps φ as it was at each decision, never refitted,
  and the network's body trains through the head's θ (see :class:`NeuralEstimator`).
- ``uncertainty="gradient_diag"``: the gradient g = ∇_θ f(u, i) of the network's prediction with
  respect to its dense (non-embedding) parameters as features, with a diagonal design matrix
  Z = λ + Σ g², width √(Σ_j g_j² / Z_j), accumulated at decision time as in NeuralUCB (Zhou et al.
  2020) and NeuralTS (Zhang et al. 2021), whose draws are f + v · width · z. The papers divide
  g² by the network width m (Z = λ_paper + Σ g²/m, bonus γ√(gᵀZ⁻¹g/m)) and NeuralTS's variance
  also carries λ_paper; this parametrisation leaves both out, so their hyperparameters translate
  as λ = m · λ_paper, alpha = γ and v = ν · √λ_paper (m: the hidden layer's width, 64 by default).
  The papers train every round from the initial weights θ₀ with the penalty mλ/2 · ‖θ − θ₀‖²:
  ``restart=True`` and ``anchor`` (see :class:`OnlineTraining`); by default training continues
  from the current weights, as their released code does.
- ``uncertainty="none"``: the network's prediction only (epsilon-greedy).

Randomness: the estimator owns a numpy generator (initialisation, minibatch indices) derived from
its seed; torch's global random state is never touched, so a run on the CPU is reproducible.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from banditrec._util import as_generator, check_real, is_real
from banditrec.environments.simulator import Observation
from banditrec.models.base import check_embedding, check_hidden, check_input_sizes, check_scores
from banditrec.models.build import MODEL_KINDS, build_model, check_model_options
from banditrec.models.checkpoint import check_state_compatible
from banditrec.models.device import resolve_device, torch_threads
from banditrec.models.multi_output import MultiOutputMLP
from banditrec.models.optim import OPTIMIZERS, make_optimizer
from banditrec.models.training import LOSSES, forked_torch_rng, loss_function, no_gradient_message
from banditrec.policies import compiled_training, ridge_kernels
from banditrec.policies.base import Policy, repeated_slots
from banditrec.policies.compiled_training import CompiledMLPTrainer
from banditrec.policies.device_head import DeviceLastLayerHead
from banditrec.policies.exploration import UCB, EpsilonGreedy, Thompson
from banditrec.policies.graphed_training import GRAPH_OPTIMIZERS, CapturedRounds, eager_round
from banditrec.policies.linear import RidgeRegression, check_quadratic_form
from banditrec.policies.numpy_training import NumpyMLPTrainer
from banditrec.policies.policy import BanditPolicy

__all__ = [
    "DECIDE_ON",
    "ENGINES",
    "HEADS",
    "HEAD_FITS",
    "OPTIMIZERS",
    "UNCERTAINTIES",
    "NeuralEpsilonGreedy",
    "NeuralEstimator",
    "NeuralLinear",
    "NeuralTS",
    "NeuralUCB",
    "OnlineTraining",
]

UNCERTAINTIES = ("none", "last_layer", "gradient_diag")
HEADS = ("shared", "per_item")
HEAD_FITS = ("refit", "xu")
DECIDE_ON = ("auto", "host", "device")
ENGINES = ("torch", "numpy", "numba")
_STATE_FORMAT = "banditrec-neural-estimator"
_STATE_VERSION = 1
_ESTIMATOR_STREAM = 0x4E4E  # spawn key of the estimator's child stream ("NN")


# --------------------------------------------------------------------------- training schedule
@dataclass(frozen=True)
class OnlineTraining:
    """How the network learns online.

    Attributes
    ----------
    train_every : int
        Decisions between training rounds (a batch of B decisions may trigger several rounds, so
        the number of gradient steps per decision does not depend on B).
    train_steps : int
        Minibatch steps per round.
    batch_size : int
        Minibatch size, drawn uniformly with replacement from the replay buffer.
    lr : float
        Learning rate.
    optimizer : {"adam", "rmsprop", "rmsprop_tf", "sgd"}
        ``"rmsprop_tf"`` is TensorFlow 1's RMSProp (:class:`banditrec.models.optim.TFRMSprop`: square
        average starting at 1, decay 0.9), to reproduce results published with it.
    lr_decay : float
        Inverse-time decay across rounds: the learning rate of round r is ``lr / (1 + lr_decay · r)``;
        0 keeps it.
    step_decay : float
        Inverse-time decay within each round, reset at the next: step s (0-based) of round r uses
        ``lr_at(r) / (1 + step_decay · s)`` (Riquelme et al. retrain with 0.1 / (1 + 0.5 s)); 0 keeps it.
    step_decay_reset : bool
        Whether ``step_decay`` restarts at every round (True) or counts the steps of the whole run
        (False: step s of round r decays by ``1 + step_decay · (r · train_steps + s)``). False is
        what Riquelme et al.'s published code actually runs: its ``assign_lr`` "resets" the
        schedule by rebinding a tensor the optimizer, built once, never reads, so their learning
        rate decays with TensorFlow's global step and is ~1e-6 by the end of a wheel run.
    weight_decay : float
        L2 penalty of the optimizer.
    buffer_size : int
        Capacity of the replay buffer (the most recent rows are kept).
    max_grad_norm : float or None
        Clip each step's gradients to this global L2 norm (Riquelme et al. clip at 5); None does not.
    engine : {"torch", "numpy", "numba"}
        Who computes the training steps of a ``model="multi_output"`` network with a Linear/ReLU
        body on the CPU, instead of torch autograd. ``"numpy"`` writes the forward pass,
        backward pass and optimizer update out in numpy (:mod:`banditrec.policies.numpy_training`:
        BLAS products over the minibatch, best for wide layers); ``"numba"`` runs each round
        of steps as one compiled loop over the minibatch's rows
        (:mod:`banditrec.policies.compiled_training`: the fastest on the CPU at every size
        timed, most of all for small networks such as the wheel's 2 → 50 → 5, and it computes
        the network's forward pass for host decisions too). Both compute each step to rounding what torch computes, not bit for
        bit, hence opt-in: long chaotic runs diverge (see the numpy module's caveat).
    cuda_graph : {"auto", "on", "off"}
        Replay each training round from a captured CUDA graph
        (:mod:`banditrec.policies.graphed_training`): one launch per round instead of dozens per
        step, which is what makes many small steps fast on a GPU. ``"auto"`` does so when the
        network is on CUDA, the engine is torch and the optimizer supports it (adam, rmsprop,
        rmsprop_tf), and falls back to eager steps if the model cannot be captured; ``"on"``
        requires it (an error otherwise). Only how the steps run changes: on CUDA the numbers
        differ from eager steps by rounding; on the CPU nothing changes.
    restart : bool
        Start every round from the network's initial weights θ₀ (those it had when it first saw
        data; a pretrained model's own) with a fresh optimizer, as NeuralUCB (Zhou et al. 2020),
        NeuralTS (Zhang et al. 2021) and Neural-LinUCB (Xu et al. 2020) write their training:
        gradient descent from θ⁽⁰⁾ on all the data so far. False (the default) continues from the
        current weights, as the papers' released code and most practice do. Each round then has
        only ``train_steps`` steps to fit the whole buffer, so give it more than a continuing
        schedule needs. Needs ``engine="torch"``; the steps run eagerly (no CUDA graph).
    anchor : float
        Add ``anchor / 2 · ‖θ − θ₀‖²`` over the trainable parameters to every step's loss: the
        papers' regulariser mλ/2 · ‖θ − θ⁽⁰⁾‖², which keeps the network near its initialisation
        (``weight_decay`` pulls it towards 0 instead). Their penalty is added to a sum over the n
        rows seen, this one to a minibatch mean, so ``anchor`` ≈ mλ / n. 0 adds nothing. Needs
        ``engine="torch"``; the steps run eagerly.
    """

    train_every: int = 32
    train_steps: int = 32
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    lr_decay: float = 0.0
    weight_decay: float = 0.0
    buffer_size: int = 10_000
    step_decay: float = 0.0
    max_grad_norm: float | None = None
    engine: str = "torch"
    step_decay_reset: bool = True
    cuda_graph: str = "auto"
    restart: bool = False
    anchor: float = 0.0

    def __post_init__(self) -> None:
        for name in ("train_every", "train_steps", "batch_size", "buffer_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("lr", "lr_decay", "step_decay", "weight_decay"):
            check_real(name, getattr(self, name))
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"lr must be > 0 and finite, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("lr_decay", "step_decay", "weight_decay"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be >= 0 and finite, got {getattr(self, name)!r}")
        if not isinstance(self.step_decay_reset, (bool, np.bool_)):
            raise TypeError(f"step_decay_reset must be True or False, got {self.step_decay_reset!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.max_grad_norm is not None and not (is_real(self.max_grad_norm) and self.max_grad_norm > 0):
            # bools excluded: True would clip every step's gradients at norm 1, silently
            raise ValueError(f"max_grad_norm must be > 0 or None (a number), got {self.max_grad_norm!r}")
        if self.cuda_graph not in ("auto", "on", "off"):
            raise ValueError(f"cuda_graph must be 'auto', 'on' or 'off', got {self.cuda_graph!r}")
        if not isinstance(self.restart, (bool, np.bool_)):
            raise TypeError(f"restart must be True or False, got {self.restart!r}")
        check_real("anchor", self.anchor)
        if not 0 <= self.anchor < float("inf"):
            raise ValueError(f"anchor must be >= 0 and finite, got {self.anchor!r}")
        if self.anchored and (self.engine != "torch" or self.cuda_graph == "on"):
            # θ₀ lives in torch beside the network; the numpy/numba engines and captured graphs
            # step without it
            raise ValueError(
                f"restart=True and anchor > 0 need engine='torch' and no cuda_graph='on', got "
                f"engine={self.engine!r}, cuda_graph={self.cuda_graph!r}"
            )
        if self.cuda_graph == "on" and (self.engine != "torch" or self.optimizer not in GRAPH_OPTIMIZERS):
            raise ValueError(
                f"cuda_graph='on' needs engine='torch' and an optimizer in {GRAPH_OPTIMIZERS}, "
                f"got engine={self.engine!r}, optimizer={self.optimizer!r}"
            )

    @property
    def anchored(self) -> bool:
        """Whether training refers to the initial weights θ₀ (``restart`` or ``anchor``)."""
        return bool(self.restart) or self.anchor > 0

    def make_optimizer(self, params, capturable: bool = False) -> torch.optim.Optimizer:
        return make_optimizer(self.optimizer, params, self.lr, self.weight_decay, capturable)

    def graphed_on(self, device: torch.device) -> bool:
        """Whether training rounds on ``device`` replay from a CUDA graph."""
        return (
            self.cuda_graph != "off"
            and device.type == "cuda"
            and self.engine == "torch"
            and self.optimizer in GRAPH_OPTIMIZERS
            and not self.anchored
        )

    def round_lrs(self, round_: int) -> list[float]:
        """The learning rate of each step of round ``round_``."""
        lr = self.lr_at(round_)
        if not self.step_decay:
            return [lr] * self.train_steps
        first = 0 if self.step_decay_reset else round_ * self.train_steps
        return [lr / (1.0 + self.step_decay * (first + step)) for step in range(self.train_steps)]

    def lr_at(self, round_: int) -> float:
        return self.lr / (1.0 + self.lr_decay * round_)


# --------------------------------------------------------------------------- replay buffer
class _ReplayBuffer:
    """The most recent ``capacity`` (user, chosen item, reward) rows, preallocated on the device;
    under ``head_fit="xu"`` also the last-layer head's mean θ each row was learned with (written
    by :meth:`set_theta` after the row is added; allocated then, when its width is known)."""

    def __init__(self, capacity: int, user_dim: int, item_dim: int, device: torch.device) -> None:
        f32 = {"dtype": torch.float32, "device": device}
        self.user = torch.zeros((capacity, user_dim), **f32)
        self.item = torch.zeros((capacity, item_dim), **f32)
        self.item_id = torch.zeros(capacity, dtype=torch.int64, device=device)
        self.user_id = torch.zeros(capacity, dtype=torch.int64, device=device)
        self.reward = torch.zeros(capacity, **f32)
        self.fields = ("user", "item", "item_id", "user_id", "reward")
        self.capacity, self.size, self.next = capacity, 0, 0
        # On the CPU the same storage as numpy arrays: rows from the host are written, and
        # minibatches gathered, without a torch call each (the cost of one decision at a time).
        self.host = {name: getattr(self, name).numpy() for name in self.fields} if device.type == "cpu" else None

    def add(self, user, item, item_id, user_id, reward) -> None:
        """Append rows: tensors on the buffer's device, or numpy arrays when it is on the CPU."""
        n = reward.shape[0]
        host = isinstance(reward, np.ndarray)
        if n > self.capacity:  # only the newest rows fit
            user, item, item_id, user_id, reward = (
                x[n - self.capacity :] for x in (user, item, item_id, user_id, reward)
            )
            n = self.capacity
        if self.next + n <= self.capacity:  # one contiguous block: slices, no index tensor
            rows = slice(self.next, self.next + n)
        else:
            rows = (self.next + (np.arange(n) if host else torch.arange(n, device=reward.device))) % self.capacity
        for name, value in zip(self.fields[:5], (user, item, item_id, user_id, reward)):  # θ comes later: set_theta
            (self.host[name] if host else getattr(self, name))[rows] = value
        self.next = (self.next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def _add_field(self, name: str, shape: tuple[int, ...]) -> None:
        setattr(self, name, torch.zeros((self.capacity, *shape), dtype=torch.float32, device=self.reward.device))
        self.fields += (name,)
        if self.host is not None:
            self.host[name] = getattr(self, name).numpy()

    def set_theta(self, theta) -> None:
        """θ (n, d) of the ``n`` rows added last (a tensor, or a numpy array on the CPU); of more
        rows than fit, the newest."""
        if "theta" not in self.fields:
            self._add_field("theta", tuple(theta.shape[1:]))
        n = min(theta.shape[0], self.capacity)
        rows = (self.next - n + np.arange(n)) % self.capacity
        if isinstance(theta, np.ndarray):
            self.host["theta"][rows] = theta[theta.shape[0] - n :]
        else:
            self.theta[torch.as_tensor(rows, device=self.theta.device)] = theta[theta.shape[0] - n :].float()

    def rows(self, index) -> tuple[torch.Tensor, ...]:
        """(user (n, d_u), items (n, 1, d_i), item_ids (n, 1), user_ids (n,), rewards (n,))."""
        return (
            self.user[index],
            self.item[index][:, None, :],
            self.item_id[index][:, None],
            self.user_id[index],
            self.reward[index],
        )

    def state_dict(self) -> dict[str, Any]:
        state = {name: getattr(self, name)[: self.size].detach().cpu().clone() for name in self.fields}
        state.update(capacity=self.capacity, size=self.size, next=self.next)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"the saved replay buffer holds {state['capacity']} rows; this estimator's "
                f"buffer_size is {self.capacity}"
            )
        size = int(state["size"])
        if "theta" in state and "theta" not in self.fields:
            self._add_field("theta", tuple(state["theta"].shape[1:]))
        for name in self.fields:
            saved, own = state[name], getattr(self, name)
            if tuple(saved.shape[1:]) != tuple(own.shape[1:]):
                raise ValueError(
                    f"saved replay buffer field {name!r} has shape {tuple(saved.shape)}; "
                    f"expected rows of shape {tuple(own.shape[1:])}"
                )
            own[:size] = saved.to(own.device)
        self.size, self.next = size, int(state["next"])


# --------------------------------------------------------------------------- uncertainty heads
@functools.lru_cache(maxsize=16)
def _embedding_fillers(B: int, K: int) -> tuple[np.ndarray, ...]:
    """The constant fields of :func:`_embedding_observation` for B × K, made once (read-only):
    the head builds such an observation twice per decision."""
    fillers = (np.zeros((B, 0)), np.zeros((B, K), dtype=np.int64), np.ones((B, K), dtype=bool),
               np.full(B, -1, dtype=np.int64))
    for array in fillers:
        array.flags.writeable = False
    return fillers


def _embedding_observation(embedding: np.ndarray, item_ids: np.ndarray | None = None) -> Observation:
    """Embeddings (B, K, h) dressed as an Observation whose item features are φ, so that the
    ridge regression with ``features="item"`` is Bayesian linear regression on φ (shared, or one
    per item id when ``item_ids`` (B, K) are given and the ridge is disjoint)."""
    B, K, _ = embedding.shape
    user, ids, mask, user_ids = _embedding_fillers(B, K)
    return Observation(
        user_features=user,
        item_features=embedding,
        item_ids=ids if item_ids is None else item_ids,
        mask=mask,
        user_ids=user_ids,
    )


class _LastLayerHead:
    """Bayesian linear regression (ridge / Normal-Inverse-Gamma) on the last hidden layer: one
    regression for all items (``per_item=False``), or one per item id, each with its own noise
    variance (``per_item=True``, Riquelme et al.'s per-arm posteriors)."""

    def __init__(self, lam: float, posterior: str, v: float, a0: float, b0: float, per_item: bool = False,
                 intercept: bool = True) -> None:
        self.per_item, self.intercept = per_item, intercept
        self.options = {
            "form": "disjoint" if per_item else "shared",
            "features": "item",
            "lam": lam,
            "intercept": intercept,
            "posterior": posterior,
            "v": v,
            "a0": a0,
            "b0": b0,
        }
        self.reset()

    def reset(self) -> None:
        self.ridge = RidgeRegression(**self.options)

    def _obs(self, embedding: np.ndarray, item_ids: np.ndarray) -> Observation:
        return _embedding_observation(embedding, item_ids if self.per_item else None)

    def add(self, embedding: np.ndarray, rewards: np.ndarray, item_ids: np.ndarray) -> None:
        """Condition on rows (n, h) of items ``item_ids`` (n,) with rewards (n,): the ridge's own
        incremental update."""
        self.ridge.update(
            self._obs(embedding[:, None, :], item_ids[:, None]), np.zeros(rewards.size, dtype=np.int64), rewards
        )

    def refit(self, gram: np.ndarray, xy: np.ndarray, yy: np.ndarray, counts: np.ndarray) -> None:
        """The posterior from sums over the rows of each parameter set s (one, or one per item
        id): ``gram[s]`` = XᵀX (d, d) and ``xy[s]`` = Xᵀy (d,) over X = [φ, 1] (φ without an
        intercept), ``yy[s]`` = yᵀy and
        ``counts[s]`` rows.

        Equivalent to ``reset()`` then ``add`` of the rows (a test holds the two together), but
        the caller forms the sums on the network's device in one pass: the ridge's own row-block
        update would cost O(n) small solves every time the network retrains.
        """
        self.reset()
        m, d = xy.shape
        if counts.sum() == 0:
            return
        # Let the ridge allocate statistics for this width and m parameter sets.
        self.ridge._prepare(_embedding_observation(np.zeros((1, 1, d - int(self.intercept))), np.array([[m - 1]])))
        r = self.ridge
        r.A_[:m] = r.lam * np.eye(d) + gram
        r.b_[:m] = xy
        r.yy_[:m] = yy
        r.count_[:m] = counts
        try:
            r.A_inv_[:m] = np.linalg.inv(r.A_[:m])
        except np.linalg.LinAlgError:  # λI + XᵀX singular in float64: φ enormous against lam
            check_quadratic_form(math.inf, r.lam)
        r.theta_[:m] = np.einsum("sij,sj->si", r.A_inv_[:m], r.b_[:m])

    def theta_rows(self, item_ids: np.ndarray) -> np.ndarray:
        """The posterior mean θ (n, d) of the parameter set of each of the items ``item_ids`` (n,)."""
        return self.ridge.theta_[item_ids if self.per_item else np.zeros_like(item_ids)]

    def mean(self, embedding: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        return self.ridge.mean(self._obs(embedding, item_ids))

    def mean_and_width(self, embedding: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.ridge.mean_and_width(self._obs(embedding, item_ids))

    def sample(self, embedding: np.ndarray, item_ids: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
        """Posterior draws (n, B, K): one parameter draw per item and user under ``per_item`` (the
        ridge's disjoint form), so an item listed twice in a row is scored from the same θ."""
        return self.ridge.sample(self._obs(embedding, item_ids), rng, n)

    def state_dict(self) -> dict[str, Any]:
        return {
            k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else copy.deepcopy(v)
            for k, v in vars(self.ridge).items()
            if k.endswith("_")
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        for k, v in state.items():
            setattr(self.ridge, k, v.numpy().copy() if isinstance(v, torch.Tensor) else copy.deepcopy(v))


def _round_seed(indices: np.ndarray, n_rounds: int) -> int:
    """A seed for torch's generator during one training round, from its minibatch rows."""
    return int(np.random.SeedSequence([n_rounds, *indices.ravel()[:8].tolist()]).generate_state(1, np.uint64)[0] >> 1)


class _GradientDiagHead:
    """Gradient features with a diagonal design matrix (NeuralUCB / NeuralTS, diagonal form)."""

    _CHUNK = 2048  # candidates per vmap call

    def __init__(self, lam: float, model: nn.Module, sigmoid: bool) -> None:
        embedded = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
        self.names = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in embedded]
        if not self.names:
            raise ValueError(
                f"uncertainty='gradient_diag' needs dense (non-embedding) parameters, and "
                f"{type(model).__name__} has none; use uncertainty='last_layer'"
            )
        self.model, self.sigmoid, self.lam = model, sigmoid, lam
        self.differentiable_ = False
        n_params = sum(p.numel() for n, p in model.named_parameters() if n in self.names)
        first = next(model.parameters())
        self.Z = torch.full((n_params,), float(lam), dtype=torch.float32, device=first.device)

    def _prediction(self, params, user, item, item_id, user_id) -> torch.Tensor:
        """The network's prediction for one (user, candidate) pair, as a function of ``params``."""
        args = (user[None], item[None, None], item_id[None, None], user_id[None])
        out = torch.func.functional_call(self.model, params, args)[0, 0]
        return torch.sigmoid(out) if self.sigmoid else out

    def gradients(self, user, items, item_ids, user_ids) -> torch.Tensor:
        """g for every candidate: inputs (B, d_u), (B, K, d_i), (B, K), (B,) → (B, K, p)."""
        B, K = item_ids.shape
        if not self.differentiable_:  # once: a forward under no_grad() gave g = 0, widths 0, a greedy policy
            with torch.enable_grad():
                probe = self.model(user[:1], items[:1, :1], item_ids[:1, :1], user_ids[:1])
            if not probe.requires_grad:
                raise ValueError(no_gradient_message(self.model))
            self.differentiable_ = True
        params = {n: p.detach() for n, p in self.model.named_parameters() if n in self.names}
        per_sample = torch.func.vmap(torch.func.grad(self._prediction), in_dims=(None, 0, 0, 0, 0))
        u = user[:, None, :].expand(-1, K, -1).reshape(B * K, -1)
        v, iid = items.reshape(B * K, -1), item_ids.reshape(B * K)
        uid = user_ids[:, None].expand(-1, K).reshape(B * K)
        out = []
        for s in range(0, B * K, self._CHUNK):
            chunk = slice(s, s + self._CHUNK)
            g = per_sample(params, u[chunk], v[chunk], iid[chunk], uid[chunk])
            out.append(torch.cat([g[n].reshape(g[n].shape[0], -1) for n in self.names], dim=1))
        return torch.cat(out).reshape(B, K, -1)

    def add(self, g: torch.Tensor) -> None:
        self.Z += (g * g).sum(dim=0)

    def width(self, g: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((g * g / self.Z).sum(dim=-1))

    def state_dict(self) -> dict[str, Any]:
        return {"Z": self.Z.detach().cpu().clone(), "names": list(self.names)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["names"]) != self.names or state["Z"].shape != self.Z.shape:
            raise ValueError("the saved gradient statistics belong to a network with different parameters")
        self.Z.copy_(state["Z"].to(self.Z.device))


# --------------------------------------------------------------------------- the estimator
class NeuralEstimator:
    """A neural reward model trained online, with optional uncertainty for UCB / Thompson sampling.

    Parameters
    ----------
    model : {"mlp", "two_tower", "mf", "multi_output"} or torch.nn.Module
        A built-in model (built at the first observation from its feature sizes, see
        :func:`banditrec.models.build_model`), or a module called as
        ``model(user (B, d_u), items (B, K, d_i), item_ids (B, K), user_ids (B,)) -> (B, K)``,
        which is trained in place (it must also have ``embed(...) -> (B, K, h)`` for
        ``uncertainty="last_layer"``). A pretrained module carries its features; a last-layer
        head still starts empty (posterior mean 0), so feed it the logs too
        (``policy.update(logs.observation(), logs.actions, logs.rewards)``). A module pretrained
        by :func:`banditrec.models.pretrain` records its loss, which ``loss`` must match.
    hidden : int or sequence of int
        Hidden layer sizes of a built-in model.
    model_options : dict or None
        Further arguments of the built-in model (e.g. ``{"cross": True}``, ``{"n_items": 1682}``).
    uncertainty : {"none", "last_layer", "gradient_diag"}
        See the module docstring.
    head : {"shared", "per_item"}
        For ``uncertainty="last_layer"``: one Bayesian linear regression on φ for all items, or
        one per item id, each with its own Inverse-Gamma noise variance (Riquelme et al.'s
        per-arm posteriors; suits a few arms, e.g. with ``model="multi_output"``). The per-item
        statistics take (n_items × (h+1)²) floats.
    loss : {"mse", "bce"}
        Squared error on the output, or binary cross-entropy with the output as a logit (then
        the network's mean is the sigmoid of the output; for clicks). With
        ``uncertainty="last_layer"`` the policy's mean is the head's linear regression of the
        rewards on φ whichever the loss (the loss shapes φ only).
    training : OnlineTraining or None
        The online training schedule (defaults of :class:`OnlineTraining` when None).
    lam : float
        Prior precision of the head (ridge penalty, or the initial diagonal of Z).
    posterior : {"nig", "gaussian"}
        Thompson draws of the last-layer head: Normal-Inverse-Gamma(a0, b0) or Gaussian with scale v.
    v : float
        Scale of the Gaussian draws (``posterior="gaussian"``, and ``gradient_diag``).
    a0, b0 : float
        Inverse-Gamma prior of the noise variance for ``posterior="nig"``.
    intercept : bool
        Whether the last-layer head regresses on [φ, 1] (True) or on φ alone (False, as Riquelme
        et al.'s code does).
    head_fit : {"refit", "xu"}
        How the last-layer head and the network learn together (``uncertainty="last_layer"``).
        ``"refit"`` (Riquelme et al. 2018): the network trains end to end with its own output
        layer, and the head's posterior is recomputed from the whole buffer, under the new φ,
        after every training round. ``"xu"`` (Xu et al. 2020's Neural-LinUCB, Algorithm 1): the
        head's statistics accumulate φ as it was when each decision was made and are never
        recomputed, and the network's own output layer is unused: its body trains on
        Σᵢ (θᵢᵀ[φ(xᵢ; w), 1] − rᵢ)² (φ alone without ``intercept``), θᵢ the head's mean right
        after row i was learned (stored with the row), so φ learns to serve the head. Needs
        ``loss="mse"`` and ``engine="torch"``; the training steps run eagerly (no CUDA graph).
        Each round continues from the current weights; ``OnlineTraining(restart=True)`` restarts
        gradient descent from the initial weights at every round, as the paper does.
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device
        Where the network, the buffer and the gradient statistics live.
    decide_on : {"auto", "host", "device"}
        Where the last-layer posterior, the Thompson / UCB / greedy scores, tie-breaking and
        Monte-Carlo propensities are computed. ``"device"``: in torch next to the network
        (:class:`banditrec.policies.device_head.DeviceLastLayerHead`, draws from a torch generator
        seeded from ``seed``); only actions and propensities reach the host. ``"host"``: in numpy
        (float64, numpy's random streams). ``"auto"``: device when the network is on an
        accelerator, host on the CPU (so CPU runs keep their numbers).
    num_threads : int or None
        Torch CPU threads used inside this estimator's calls (the global setting is restored
        after each call); None, or 0 (what a TOML config can write), leaves torch's setting. One
        suits the small default networks.
    seed : int, SeedSequence, Generator or None
        The network's initialisation and the minibatch draws.
    """

    def __init__(
        self,
        model: str | nn.Module = "mlp",
        hidden: Sequence[int] | int = (64,),
        model_options: dict[str, Any] | None = None,
        uncertainty: str = "last_layer",
        head: str = "shared",
        loss: str = "mse",
        training: OnlineTraining | None = None,
        lam: float = 1.0,
        posterior: str = "nig",
        v: float = 1.0,
        a0: float = 6.0,
        b0: float = 6.0,
        device: str | torch.device = "auto",
        num_threads: int | None = 1,
        seed=None,
        decide_on: str = "auto",
        intercept: bool = True,
        head_fit: str = "refit",
    ) -> None:
        if isinstance(model, str):
            if model not in MODEL_KINDS:
                raise ValueError(f"model must be one of {MODEL_KINDS} or a torch.nn.Module, got {model!r}")
        elif not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be one of {MODEL_KINDS} or a torch.nn.Module, got {type(model).__name__}"
            )
        hidden = check_hidden(hidden)
        if model_options is not None and not isinstance(model_options, dict):
            raise TypeError(f"model_options must be a dict or None, got {type(model_options).__name__}")
        if isinstance(model, str):  # a typo fails when the policy is made, not at its first batch
            check_model_options(model, model_options or {})
        pretrained_loss = getattr(model, "banditrec_loss", None)  # set by banditrec.models.pretrain
        if pretrained_loss is not None and pretrained_loss != loss:
            raise ValueError(
                f"the model was pretrained with loss={pretrained_loss!r} and this policy has loss={loss!r}: "
                + ("it would read the model's logits as rewards" if pretrained_loss == "bce" else
                   "it would pass the model's reward predictions through a sigmoid")
                + f"; pass loss={pretrained_loss!r} (or pretrain with loss={loss!r})"
            )
        if uncertainty not in UNCERTAINTIES:
            raise ValueError(f"uncertainty must be one of {UNCERTAINTIES}, got {uncertainty!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if head != "shared" and uncertainty != "last_layer":
            raise ValueError(f"head={head!r} applies to uncertainty='last_layer' only, got uncertainty={uncertainty!r}")
        if uncertainty == "last_layer" and head == "shared" and (
            model == "multi_output" or isinstance(model, MultiOutputMLP)
        ):
            # its embedding is φ(user), the same for every candidate: one shared regression on it
            # scores every candidate alike, and decisions are tie-breaking (Random's regret)
            raise ValueError(
                "model='multi_output' embeds the user only, so a shared last-layer head cannot tell the "
                "candidates apart; use head='per_item' (one regression per arm, Riquelme et al.'s NeuralLinear)"
            )
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        training = OnlineTraining() if training is None else training
        if not isinstance(training, OnlineTraining):
            raise TypeError(f"training must be an OnlineTraining or None, got {type(training).__name__}")
        if head_fit not in HEAD_FITS:
            raise ValueError(f"head_fit must be one of {HEAD_FITS}, got {head_fit!r}")
        if head_fit == "xu":
            # the body trains through the head's θ: it needs the head, a linear output to fit
            # rewards with, and autograd (the numpy/numba engines train the network's own output)
            wrong = [f"{name}={value!r}" for name, value, needed in (
                ("uncertainty", uncertainty, "last_layer"), ("loss", loss, "mse"), ("engine", training.engine, "torch"),
            ) if value != needed]
            if training.cuda_graph == "on":
                wrong.append("cuda_graph='on'")
            if wrong:
                raise ValueError(
                    "head_fit='xu' needs uncertainty='last_layer', loss='mse', engine='torch' and no "
                    f"cuda_graph='on', got {', '.join(wrong)}"
                )
        for name, value in (("lam", lam), ("v", v), ("a0", a0), ("b0", b0)):
            if not 0 < check_real(name, value) < float("inf"):
                raise ValueError(f"{name} must be > 0 and finite, got {value!r}")
        if posterior not in ("nig", "gaussian"):
            raise ValueError(f"posterior must be 'nig' or 'gaussian', got {posterior!r}")
        if training.engine != "torch" and isinstance(model, str) and model != "multi_output":
            raise ValueError(
                f"engine={training.engine!r} trains model='multi_output' only, got model={model!r}; "
                "use engine='torch' or model='multi_output'"
            )
        resolved = resolve_device(device)  # fail early on an unknown device
        if training.engine != "torch" and resolved.type != "cpu":
            raise ValueError(f"engine={training.engine!r} trains on the CPU; this estimator's device is {resolved}")
        if training.cuda_graph == "on" and resolved.type != "cuda":
            raise ValueError(f"cuda_graph='on' needs a CUDA device; this estimator's device is {resolved}")
        if not isinstance(intercept, (bool, np.bool_)):
            raise TypeError(f"intercept must be True or False, got {intercept!r}")
        if decide_on not in DECIDE_ON:
            raise ValueError(f"decide_on must be one of {DECIDE_ON}, got {decide_on!r}")
        if num_threads is not None and (
            not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 0
        ):
            raise ValueError(f"num_threads must be a positive int, or 0 or None to leave torch's setting, got {num_threads!r}")
        self.model, self.hidden, self.model_options = model, hidden, dict(model_options or {})
        self.uncertainty, self.head, self.loss, self.training = uncertainty, head, loss, training
        self.lam, self.posterior = float(lam), posterior
        self.v, self.a0, self.b0, self.intercept = float(v), float(a0), float(b0), bool(intercept)
        self.head_fit = head_fit
        self.device, self.num_threads, self.seed, self.decide_on = device, num_threads, seed, decide_on
        self.sizes_: tuple[int, int] | None = None

    def get_params(self) -> dict[str, Any]:
        params = {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}
        if isinstance(params["model"], nn.Module):
            # its class; hidden and model_options build a built-in model only, so a checkpoint is
            # not refused for them (two modules of one class with the same parameter shapes but
            # another forward pass cannot be told apart from a state)
            params["model"] = type(params["model"]).__name__
            del params["hidden"], params["model_options"]
        params["training"] = asdict(self.training)
        params["device"] = str(self.device)
        params.pop("seed")
        return params

    # ------------------------------------------------------------------ building
    def _build(self, user_dim: int, item_dim: int) -> None:
        self.device_ = resolve_device(self.device)
        self.rng_ = as_generator(self.seed)
        if isinstance(self.model, str):
            net = build_model(
                self.model, user_dim, item_dim, self.hidden, seed=self.rng_, **self.model_options
            ).float()  # float32 even under torch.set_default_dtype(torch.float64), as the inputs are
        else:
            net = self.model
            check_input_sizes(net, user_dim, item_dim, "the observation")
            if not any(p.requires_grad for p in net.parameters()):
                raise ValueError(
                    f"model {type(net).__name__} has no trainable parameters; the neural policies train their "
                    "model online (for a fixed scorer, wrap it in a module with at least one parameter to learn)"
                )
            wide = sorted({str(p.dtype) for p in net.parameters() if p.is_floating_point() and p.dtype != torch.float32})
            if wide:
                raise TypeError(
                    f"model {type(net).__name__} has {', '.join(wide)} parameters; the neural policies feed "
                    "and train it in float32: pass model.float()"
                )
        self.model_ = net.to(self.device_)
        self.model_.eval()
        # θ₀ for restart / anchor: the weights (and buffers) the network starts online learning with
        self.init_state_: dict[str, torch.Tensor] | None = None
        self.anchor_pairs_: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.training.anchored:
            self.init_state_ = {k: v.detach().clone() for k, v in self.model_.state_dict().items()}
            if self.training.anchor > 0:
                self.anchor_pairs_ = [(p, self.init_state_[name]) for name, p in self.model_.named_parameters()
                                      if p.requires_grad]
        graphed = self.training.graphed_on(self.device_) and self.head_fit != "xu"
        self.optimizer_ = self.training.make_optimizer(self.model_.parameters(), capturable=graphed)
        self.loss_fn_ = loss_function(self.loss)
        self.graph_rounds_: CapturedRounds | None = None
        if graphed:
            self.graph_rounds_ = CapturedRounds(
                self.optimizer_, self._train_step, self.training.train_steps, self.training.batch_size,
                self.device_, required=self.training.cuda_graph == "on",
            )
        self.buffer_ = _ReplayBuffer(self.training.buffer_size, user_dim, item_dim, self.device_)
        self.host_trainer_: NumpyMLPTrainer | None = None
        if self.training.engine != "torch":  # on the CPU: checked when the estimator was made
            trainer = CompiledMLPTrainer if self.training.engine == "numba" else NumpyMLPTrainer
            self.host_trainer_ = trainer(self.model_, self.loss, self.optimizer_, self.training.max_grad_norm)
        self.on_device_ = self.decide_on == "device" or (
            self.decide_on == "auto" and self.device_.type != "cpu"
        )
        self.generator_: torch.Generator | None = None
        # Whether a device decision met a model output that was NaN or inf on a valid candidate:
        # set on the device without a read, read once per training round (_check_device_outputs).
        self.nonfinite_ = torch.zeros((), dtype=torch.bool, device=self.device_) if self.on_device_ else None
        if self.on_device_:
            # Seeded from a copy of the estimator's stream, which it leaves untouched: the network
            # and its minibatches are the same whichever side decides.
            self.generator_ = torch.Generator(device=self.device_)
            self.generator_.manual_seed(int(copy.deepcopy(self.rng_).integers(0, 2**63 - 1)) ^ 0x5EED)
        self.head_: _LastLayerHead | DeviceLastLayerHead | _GradientDiagHead | None = None
        if self.uncertainty == "last_layer":
            if not callable(getattr(self.model_, "embed", None)):
                raise TypeError(
                    f"uncertainty='last_layer' needs model.embed(user, items, item_ids, user_ids) -> "
                    f"(B, K, h); {type(self.model_).__name__} has no embed method"
                )
            per_item = self.head == "per_item"
            if self.on_device_:
                self.head_ = DeviceLastLayerHead(self.lam, self.posterior, self.v, self.a0, self.b0,
                                                 per_item, self.device_, self.generator_, self.intercept)
            else:
                self.head_ = _LastLayerHead(self.lam, self.posterior, self.v, self.a0, self.b0, per_item,
                                            self.intercept)
        elif self.uncertainty == "gradient_diag":
            self.head_ = _GradientDiagHead(self.lam, self.model_, sigmoid=self.loss == "bce")
        self.n_seen_ = 0  # decisions learned from
        self.n_rounds_ = 0  # training rounds done
        self.version_ = 0  # bumped whenever the network's weights change
        self._cache: tuple[Observation, int, dict[str, torch.Tensor]] | None = None
        self.sizes_ = (user_dim, item_dim)

    def _prepare(self, obs: Observation) -> None:
        sizes = (obs.user_features.shape[1], obs.item_features.shape[2])
        if self.sizes_ is None:
            self._build(*sizes)
        elif sizes != self.sizes_:
            raise ValueError(
                f"observation feature sizes (user, item) = {sizes} differ from those this model "
                f"was built for, {self.sizes_}"
            )

    def _tensors(self, obs: Observation, mask: bool = False) -> tuple[torch.Tensor, ...]:
        """(user features, item features, item ids, user ids) on the device, and the mask last when
        ``mask``. A device world's batch is used as it is; a host batch bound for an accelerator
        travels as two copies (the float features, the integer ids and mask packed), since each
        copy from pageable host memory makes the host wait for the device."""
        if obs.on_device or not self._packs_transfers(obs):
            f32 = {"dtype": torch.float32, "device": self.device_}
            ids = torch.as_tensor if obs.on_device else torch.tensor  # numpy ids are copied: the caller may reuse them
            out = (
                torch.as_tensor(obs.user_features, **f32),
                torch.as_tensor(obs.item_features, **f32),
                ids(obs.item_ids, device=self.device_),
                ids(obs.user_ids, device=self.device_),
            )
            return out + (ids(obs.mask, device=self.device_),) if mask else out
        B, K = obs.item_ids.shape
        user, items = np.asarray(obs.user_features), np.asarray(obs.item_features)
        floats = np.empty(user.size + items.size, dtype=np.float32)  # filled in one pass each, cast included
        floats[: user.size], floats[user.size :] = user.ravel(), items.ravel()
        parts = [obs.item_ids, obs.user_ids] + ([obs.mask] if mask else [])
        ints = np.empty(sum(part.size for part in parts), dtype=np.int64)
        start = 0
        for part in parts:
            ints[start : start + part.size] = part.ravel()
            start += part.size
        floats, ints = torch.from_numpy(floats).to(self.device_), torch.from_numpy(ints).to(self.device_)
        out = (
            floats[: user.size].view(user.shape),
            floats[user.size :].view(items.shape),
            ints[: B * K].view(B, K),
            ints[B * K : B * K + B],
        )
        return out + (ints[B * K + B :].view(B, K).bool(),) if mask else out

    _PACK_ON_CPU = False  # tests set it to run the accelerator's transfer path on the CPU
    _PACK_LIMIT = 1 << 18  # float features per batch (1 MB) up to which packing pays

    def _packs_transfers(self, obs: Observation | None = None) -> bool:
        """Whether a host batch travels packed (:meth:`_tensors`): on an accelerator, where each copy
        costs a wait (on the CPU torch shares numpy's memory instead), and only for small batches,
        whose time goes in waits rather than bytes: for a large one, the host's extra pass over
        the arrays costs more than the waits it saves."""
        if self.device_.type == "cpu" and not self._PACK_ON_CPU:
            return False
        return obs is None or obs.user_features.size + obs.item_features.size <= self._PACK_LIMIT

    @property
    def reward_bounds(self) -> tuple[float, float, str] | None:
        """Binary cross-entropy reads the output as a click logit: it cannot learn a reward of 50
        (it would fit a click probability instead, silently)."""
        if self.loss == "bce":
            return 0.0, 1.0, 'loss="bce" (click rewards; use loss="mse" for real-valued rewards)'
        return None

    def _predict(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output) if self.loss == "bce" else output

    def _features(self, obs: Observation) -> dict[str, torch.Tensor]:
        """What the head needs for every candidate, computed once per (batch, network version)."""
        if self._cache is not None and self._cache[0] is obs and self._cache[1] == self.version_:
            return self._cache[2]
        B, K = obs.item_ids.shape
        who = type(self.model_).__name__
        out: dict[str, Any] = {}
        if self._compiled_embedding(obs):  # the numba engine's forward pass: no torch call
            self._check_output_ids(obs.item_ids)
            phi = self.host_trainer_.embed(obs.user_features)
            _check_finite_output(np.repeat(np.isfinite(phi).all(axis=1)[:, None], K, axis=1), obs.mask, f"{who}.embed")
            out["host_embedding"] = host = np.empty((B, K, phi.shape[1]))
            host[:] = phi[:, None, :]  # φ(u) is every candidate's, as model.embed expands it
            self._cache = (obs, self.version_, out)
            return out
        inputs = self._tensors(obs, mask=self.on_device_)
        if self.on_device_:
            out["mask"], inputs = inputs[4], inputs[:4]
        out["inputs"] = inputs
        if self.uncertainty == "last_layer":
            with torch.no_grad():
                out["embedding"] = check_embedding(self.model_.embed(*inputs), B, K, who)
            if not self.on_device_:  # the host head's float64 copy, made once per batch
                out["host_embedding"] = self._numpy(out["embedding"])
                _check_finite_output(np.isfinite(out["host_embedding"]).all(axis=2), obs.mask, f"{who}.embed")
            else:
                self._note_nonfinite(torch.isfinite(out["embedding"]).all(dim=2), out["mask"])
        else:
            with torch.no_grad():
                out["mean"] = self._predict(check_scores(self.model_(*inputs), B, K, who))
            if not self.on_device_:
                _check_finite_output(torch.isfinite(out["mean"]).cpu().numpy(), obs.mask, who)
            else:
                self._note_nonfinite(torch.isfinite(out["mean"]), out["mask"])
            if self.uncertainty == "gradient_diag":
                out["grad"] = self.head_.gradients(*inputs)
        self._cache = (obs, self.version_, out)
        return out

    def _check_output_ids(self, item_ids: np.ndarray) -> None:
        """The numpy and numba engines index the output layer's rows by item id without the
        model's own check (the numba engine would write outside its arrays): the model's error,
        before any id reaches them."""
        if self.host_trainer_ is not None and item_ids.shape[0]:
            MultiOutputMLP.check_item_ids(self.model_.config["n_items"], int(item_ids.min()), int(item_ids.max()))

    def _compiled_embedding(self, obs: Observation | None = None) -> bool:
        """Whether the last hidden layer comes from the numba engine's compiled forward pass (host
        decisions on host data), which the engine's training rounds share, rather than from
        ``model.embed``."""
        return (
            isinstance(self.host_trainer_, CompiledMLPTrainer)
            and self.uncertainty == "last_layer"
            and not self.on_device_
            and (obs is None or not obs.on_device)
        )

    def _note_nonfinite(self, finite: torch.Tensor, mask: torch.Tensor) -> None:
        """Record on the device whether ``finite`` (B, K) is False on a valid candidate: a device
        decision reads nothing back, so the check waits for :meth:`_check_device_outputs`."""
        self.nonfinite_ = self.nonfinite_ | (mask & ~finite).any()

    def _check_device_outputs(self, when: str | None = None) -> None:
        """One read per training round: the host path's error (:func:`_check_finite_output`) for
        the device decisions since the last round; ``when`` says where else it was noticed."""
        if self.nonfinite_ is not None and bool(self.nonfinite_):
            when = when or f"at training round {self.n_rounds_ + 1}"
            raise ValueError(
                f"{type(self.model_).__name__} returned NaN or inf for a valid candidate in a decision "
                f"made on the device (noticed {when}, after {self.n_seen_} decisions: device decisions "
                "are checked once per training round); check the model's forward pass and the scale of "
                "its inputs"
            )

    @staticmethod
    def _numpy(x: torch.Tensor) -> np.ndarray:
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
            return x.detach().numpy().astype(np.float64, copy=False)  # numpy's cast: a torch call fewer
        return x.detach().to("cpu", torch.float64).numpy()

    # ------------------------------------------------------------------ estimates
    # The numpy methods answer on the host for any ``decide_on``; the ``*_tensor`` ones return
    # tensors on the estimator's device (what the exploration strategies use when
    # ``device_decisions`` says so).
    def mean(self, obs: Observation) -> np.ndarray:
        """Estimated reward of every candidate, shape (B, K)."""
        with torch_threads(self.num_threads):
            self._prepare(obs)
            if self.on_device_:
                return self._numpy(self.mean_tensor(obs))
            f = self._features(obs)
            if self.uncertainty == "last_layer":
                return self.head_.mean(f["host_embedding"], obs.item_ids)
            return self._numpy(f["mean"])

    def mean_and_width(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """Mean and confidence width of every candidate, each shape (B, K)."""
        self._require_uncertainty("mean_and_width")
        with torch_threads(self.num_threads):
            self._prepare(obs)
            if self.on_device_:
                return tuple(self._numpy(x) for x in self.mean_and_width_tensor(obs))
            f = self._features(obs)
            if self.uncertainty == "last_layer":
                return self.head_.mean_and_width(f["host_embedding"], obs.item_ids)
            return self._numpy(f["mean"]), self._numpy(self.head_.width(f["grad"]))

    def sample(self, obs: Observation, rng: np.random.Generator, n_draws: int) -> np.ndarray:
        """Posterior draws of every candidate's reward, shape (n_draws, B, K). With decisions on
        the device the draws come from the estimator's torch generator, not ``rng``."""
        self._require_uncertainty("sample")
        with torch_threads(self.num_threads):
            self._prepare(obs)
            if self.on_device_:
                return self._numpy(self.sample_tensor(obs, n_draws))
            f = self._features(obs)
            if self.uncertainty == "last_layer":
                return self.head_.sample(f["host_embedding"], obs.item_ids, rng, n_draws)
            mean, width = self._numpy(f["mean"]), self._numpy(self.head_.width(f["grad"]))
        z = rng.standard_normal((n_draws,) + mean.shape)
        _share_repeated(z, repeated_slots(obs.item_ids))
        return mean + self.v * width * z

    def device_decisions(self, obs: Observation) -> bool:
        """Whether decisions for ``obs`` are made on the device (builds the network on first use)."""
        with torch_threads(self.num_threads):
            self._prepare(obs)
        return self.on_device_

    def mask_tensor(self, obs: Observation) -> torch.Tensor:
        """The candidates' validity mask (B, K) on the device."""
        return self._features(obs)["mask"]

    def mean_tensor(self, obs: Observation) -> torch.Tensor:
        """:meth:`mean` as a float64 tensor on the device."""
        with torch_threads(self.num_threads):
            f = self._device_features(obs)
            if self.uncertainty == "last_layer":
                return self.head_.mean(f["embedding"], f["inputs"][2], self._n_sets(obs))
            return f["mean"].double()

    def mean_and_width_tensor(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`mean_and_width` as float64 tensors on the device."""
        self._require_uncertainty("mean_and_width")
        with torch_threads(self.num_threads):
            f = self._device_features(obs)
            if self.uncertainty == "last_layer":
                return self.head_.mean_and_width(f["embedding"], f["inputs"][2], self._n_sets(obs))
            return f["mean"].double(), self.head_.width(f["grad"]).double()

    def sample_tensor(self, obs: Observation, n_draws: int) -> torch.Tensor:
        """:meth:`sample` as a float64 tensor (n_draws, B, K) on the device, drawn from the
        estimator's torch generator."""
        self._require_uncertainty("sample")
        with torch_threads(self.num_threads):
            f = self._device_features(obs)
            if self.uncertainty == "last_layer":
                n_sets, repeats = self._sample_layout(obs)
                return self.head_.sample(f["embedding"], f["inputs"][2], n_sets, n_draws, repeats)
            mean, width = f["mean"].double(), self.head_.width(f["grad"]).double()
            z = torch.randn((n_draws,) + tuple(mean.shape), generator=self.generator_, device=self.device_,
                            dtype=torch.float64)
            _share_repeated(z, self._repeated(obs))
            return mean + self.v * width * z

    def _device_features(self, obs: Observation) -> dict[str, Any]:
        self._prepare(obs)
        if not self.on_device_:
            raise RuntimeError("tensor estimates need decide_on='device' (or 'auto' on an accelerator)")
        return self._features(obs)

    def _n_sets(self, obs: Observation) -> int:
        """Parameter sets the head needs for ``obs``: from the host-side ids, no device read."""
        return int(obs.item_ids.max()) + 1 if self.head == "per_item" else 1

    def _sample_layout(
        self, obs: Observation
    ) -> tuple[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None]:
        """:meth:`_n_sets` and, for the per-item head, the candidates whose item is repeated in
        their row (:func:`repeated_slots`, as device tensors), which share one parameter draw."""
        if self.head != "per_item":
            return 1, None
        return self._repeated(obs, with_top=True)

    def _repeated(self, obs: Observation, with_top: bool = False):
        """:func:`repeated_slots` of ``obs``'s item ids as device tensors (None when no row repeats
        an item); with ``with_top``, (largest id + 1, that)."""
        ids = obs.item_ids
        if isinstance(ids, torch.Tensor):  # a device batch: its largest id and any repeat in one read
            ordered = torch.sort(ids, dim=1).values
            top, repeat = torch.stack([ids.max(), (ordered[:, 1:] == ordered[:, :-1]).any().long()]).tolist()
            found = repeated_slots(ids.cpu().numpy()) if repeat else None
        else:
            top, found = int(ids.max()), repeated_slots(ids)
        if found is not None:
            rows, slots, groups, n_groups = found
            found = (*(torch.as_tensor(a, device=self.device_) for a in (rows, slots, groups)), n_groups)
        return (top + 1, found) if with_top else found

    def _require_uncertainty(self, method: str) -> None:
        if self.uncertainty == "none":
            raise ValueError(
                f"NeuralEstimator.{method} needs an uncertainty head; this estimator was built with "
                "uncertainty='none' (use 'last_layer' or 'gradient_diag' for UCB or Thompson sampling)"
            )

    # ------------------------------------------------------------------ learning
    def update(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Store the feedback, update the head, and train the network when the schedule says so."""
        with torch_threads(self.num_threads):
            self._update(obs, actions, rewards)

    def _update(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        self._prepare(obs)
        B = actions.shape[0]
        if self.on_device_ or obs.on_device or self.buffer_.host is None:
            rows = torch.arange(B, device=self.device_)
            if isinstance(actions, np.ndarray) and self._packs_transfers():  # one copy for both
                both = torch.from_numpy(np.stack([actions, rewards]).astype(np.float64)).to(self.device_)
                chosen, r = both[0].long(), both[1].float()  # ids < 2**53 are exact in float64
            else:
                chosen = torch.as_tensor(actions, device=self.device_)
                r = torch.as_tensor(rewards, dtype=torch.float32, device=self.device_)
            cached = self._cache is not None and self._cache[0] is obs  # the tensors act() already made
            user, items, item_ids, user_ids = self._cache[2]["inputs"] if cached else self._tensors(obs)
            self._check_output_ids(item_ids[rows, chosen])
            self.buffer_.add(user, items[rows, chosen], item_ids[rows, chosen], user_ids, r)
        else:  # all on the CPU: the rows go into the buffer's numpy views (the same float32 values)
            picked = np.arange(B), actions
            rewards = np.asarray(rewards, dtype=np.float64)
            self._check_output_ids(obs.item_ids[picked])
            self.buffer_.add(obs.user_features, obs.item_features[picked], obs.item_ids[picked], obs.user_ids, rewards)
        every = self.training.train_every
        rounds = (self.n_seen_ + B) // every - self.n_seen_ // every
        # When this update retrains, the last-layer head is refitted from the whole buffer (these
        # rows included) right after, so adding them to it first would be work thrown away; under
        # head_fit="xu" the head keeps the decision-time φ instead, and each row's θ after it.
        xu = self.head_fit == "xu"
        if self.uncertainty == "last_layer" and (not rounds or xu):
            f = self._features(obs)
            if self.on_device_:  # the tensors of the first branch above
                chosen_ids = item_ids[rows, chosen]
                try:
                    self.head_.add(f["embedding"][rows, chosen], r, chosen_ids, self._n_sets(obs))
                except FloatingPointError:
                    # a NaN embedding is the model's error, not the penalty's
                    self._check_device_outputs("when the last-layer posterior failed")
                    raise
            else:  # host decisions: ``obs`` is numpy here (a device batch was copied by the policy)
                picked = np.arange(B), actions
                chosen_ids = obs.item_ids[picked]
                self.head_.add(f["host_embedding"][picked], np.asarray(rewards, dtype=np.float64), chosen_ids)
            if xu:
                theta = self.head_.theta_rows(chosen_ids)
                if isinstance(theta, np.ndarray) and self.buffer_.host is None:  # host head, device buffer
                    theta = torch.from_numpy(theta).to(self.device_)
                self.buffer_.set_theta(theta)
        elif self.uncertainty == "gradient_diag":
            picked = torch.arange(B, device=self.device_), torch.as_tensor(actions, device=self.device_)
            self.head_.add(self._features(obs)["grad"][picked])
        self.n_seen_ += B
        if rounds:
            self._train(rounds)

    def _train(self, rounds: int) -> None:
        self._check_device_outputs()
        cfg = self.training
        self.model_.train()
        try:
            for _ in range(rounds):
                if cfg.restart:  # gradient descent from θ₀, with a fresh optimizer
                    self.model_.load_state_dict(self.init_state_)
                    self.optimizer_ = cfg.make_optimizer(self.model_.parameters())
                lrs = cfg.round_lrs(self.n_rounds_)
                # The round's minibatch indices in one draw (the same numbers as one draw per step)
                # and one finiteness check per round: no host round trip inside the step loop.
                indices = self.rng_.integers(0, self.buffer_.size, (cfg.train_steps, cfg.batch_size))
                if self.host_trainer_ is not None:
                    losses = self._host_round(indices, lrs)
                elif self.graph_rounds_ is not None:
                    losses = self.graph_rounds_(indices, lrs)
                else:
                    # torch's global generator seeded from the round (a model's dropout draws from
                    # it) and restored after: the same seed trains the same, and the caller's
                    # stream is untouched. Derived from the round's minibatches, so the estimator's
                    # own stream gives no extra draw and every earlier number stays as it was.
                    with forked_torch_rng(self.device_, _round_seed(indices, self.n_rounds_)):
                        losses = eager_round(
                            self.optimizer_, self._train_step, torch.as_tensor(indices, device=self.device_), lrs
                        )
                self._check_losses(losses, lrs[0])
                self.n_rounds_ += 1
        finally:
            self.model_.eval()
            self.version_ += 1
        if self.uncertainty == "last_layer" and self.head_fit == "refit":
            self._refit_head()

    def _train_step(self, index: torch.Tensor) -> torch.Tensor:
        """One minibatch step on the buffer rows ``index`` at the optimizer's current learning rate
        (the body that eager rounds run and CUDA graphs capture); the detached loss."""
        net = self.model_
        user, items, item_ids, user_ids, target = self.buffer_.rows(index)
        if self.head_fit == "xu":  # the body through each row's θ: (θᵢᵀ[φ, 1] − rᵢ)²
            phi = check_embedding(net.embed(user, items, item_ids, user_ids), index.numel(), 1,
                                  f"{type(net).__name__}.embed")[:, 0, :]
            theta = self.buffer_.theta[index]
            out = (phi * theta[:, : phi.shape[1]]).sum(dim=1)
            if self.intercept:
                out = out + theta[:, phi.shape[1]]
            value = self.loss_fn_(out, target)
        else:
            out = check_scores(net(user, items, item_ids, user_ids), index.numel(), 1, type(net).__name__)
            value = self.loss_fn_(out[:, 0], target)
        if not out.requires_grad:  # metadata: no read; torch's "element 0 ... does not require grad" before
            raise ValueError(no_gradient_message(net))
        if self.anchor_pairs_:  # anchor / 2 · ‖θ − θ₀‖²
            value = value + 0.5 * self.training.anchor * sum(((p - p0) ** 2).sum() for p, p0 in self.anchor_pairs_)
        self.optimizer_.zero_grad()
        value.backward()
        if self.training.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(net.parameters(), self.training.max_grad_norm, foreach=True)
        self.optimizer_.step()
        return value.detach()

    def _host_round(self, indices: np.ndarray, lrs: list[float]) -> torch.Tensor:
        """One training round on the numpy or numba engine (same schedule as the torch loop); the
        losses."""
        host = self.buffer_.host
        return torch.from_numpy(self.host_trainer_.round(host["user"], host["item_id"], host["reward"], indices, lrs))

    def _check_losses(self, losses: torch.Tensor, lr: float) -> None:
        """One finiteness check per round, naming the first step whose loss was not finite."""
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            step = int(torch.nonzero(~finite)[0, 0])
            raise FloatingPointError(
                f"NeuralEstimator: the {self.loss} training loss became {float(losses[step])} "
                f"at training round {self.n_rounds_ + 1}, step {step + 1} of {self.training.train_steps} "
                f"(after {self.n_seen_} decisions, lr={lr:g}); lower lr or check the rewards and "
                "features"
            )

    def warm_up(self) -> None:
        """Load the compiled loops the last-layer head uses (:func:`ridge_kernels.warm_up`), and the
        numba engine's training loop when it trains with it, now."""
        ridge_kernels.warm_up()
        if self.training.engine == "numba":
            compiled_training.warm_up()

    def _refit_head(self) -> None:
        """Riquelme et al.: after the representation changes, recompute the posterior from the buffer
        (sums per parameter set: one, or one per item id for ``head="per_item"``)."""
        buf = self.buffer_
        if buf.size == 0:
            self.head_.reset()
            return
        per_item = self.head_.per_item
        m = int(buf.item_id[: buf.size].max()) + 1 if per_item else 1
        if self._compiled_embedding():
            self.head_.refit(*self._host_refit_sums(m))
            return
        sums = None
        with torch.no_grad():
            for start in range(0, buf.size, 8192):
                user, items, item_ids, user_ids, y = buf.rows(slice(start, min(start + 8192, buf.size)))
                phi = self.model_.embed(user, items, item_ids, user_ids)[:, 0, :].double()
                x = torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1) if self.intercept else phi
                y = y.double()
                if sums is None:
                    d = x.shape[1]
                    f64 = {"dtype": torch.float64, "device": x.device}
                    sums = (torch.zeros((m, d, d), **f64), torch.zeros((m, d), **f64),
                            torch.zeros(m, **f64), torch.zeros(m, **f64))
                gram, xy, yy, counts = sums
                if not per_item:
                    gram[0] += x.T @ x
                    xy[0] += x.T @ y
                    yy[0] += y @ y
                    counts[0] += y.shape[0]
                    continue
                ids = item_ids[:, 0]
                if self.on_device_:  # scatter-add the rows' outer products: no host read
                    gram.index_add_(0, ids, x[:, :, None] * x[:, None, :])
                    xy.index_add_(0, ids, x * y[:, None])
                    yy.index_add_(0, ids, y * y)
                    counts.index_add_(0, ids, torch.ones_like(y))
                    continue
                # Group the rows by item: one X_sᵀX_s product per item present in this chunk.
                order = torch.argsort(ids, stable=True)
                present, n_rows = torch.unique_consecutive(ids[order], return_counts=True)
                for item, xs, ys in zip(present.tolist(), x[order].split(n_rows.tolist()),
                                        y[order].split(n_rows.tolist())):
                    gram[item] += xs.T @ xs
                    xy[item] += xs.T @ ys
                    yy[item] += ys @ ys
                    counts[item] += ys.shape[0]
        if self.on_device_:
            self.head_.refit(*sums)
        else:
            self.head_.refit(*(self._numpy(s) for s in sums))

    def _host_refit_sums(self, m: int) -> tuple[np.ndarray, ...]:
        """:meth:`_refit_head`'s sums on the numba engine, in numpy: the buffer's rows sorted by
        item first (a cheap sort of ids and a gather of the small user rows), so that each item's
        rows are one contiguous block whose XᵀX is one BLAS product, with no gather of embeddings
        and no torch call; chunks of 8,192 rows bound the memory. The same sums to rounding."""
        buf, host = self.buffer_, self.buffer_.host
        n = buf.size
        ids = host["item_id"][:n]
        order = np.argsort(ids, kind="stable") if m > 1 else np.arange(n)
        sorted_ids = ids[order]
        h = int(self.host_trainer_.embed_dim)
        d = h + int(self.intercept)
        gram, xy, yy = np.zeros((m, d, d)), np.zeros((m, d)), np.zeros(m)
        X = np.empty((min(n, 8192), d))
        if self.intercept:
            X[:, h] = 1.0
        for start in range(0, n, 8192):
            rows = order[start : start + 8192]
            c = rows.size
            X[:c, :h] = self.host_trainer_.embed(host["user"][rows])
            y = host["reward"][rows].astype(np.float64)
            bounds = np.searchsorted(sorted_ids[start : start + c], np.arange(m + 1)) if m > 1 else np.array([0, c])
            for item in np.flatnonzero(np.diff(bounds)).tolist():
                lo, hi = bounds[item], bounds[item + 1]
                xs, ys = X[lo:hi], y[lo:hi]
                gram[item] += xs.T @ xs
                xy[item] += xs.T @ ys
                yy[item] += ys @ ys
        counts = np.bincount(ids, minlength=m).astype(np.float64) if m > 1 else np.array([float(n)])
        return gram, xy, yy, counts

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything learned (network, optimizer, buffer, head statistics, counters and the
        estimator's random state), as tensors and plain containers: ``torch.save`` it and read it
        back with ``torch.load(..., weights_only=True)``."""
        state: dict[str, Any] = {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "params": _plain(self.get_params()),
            "sizes": self.sizes_,
        }
        if self.sizes_ is None:
            return state
        state.update(
            model={k: v.detach().cpu().clone() for k, v in self.model_.state_dict().items()},
            optimizer=_to_cpu(copy.deepcopy(self.optimizer_.state_dict())),
            buffer=self.buffer_.state_dict(),
            head=self.head_.state_dict() if self.head_ is not None else None,
            counters={"n_seen": self.n_seen_, "n_rounds": self.n_rounds_, "version": self.version_},
            rng=copy.deepcopy(self.rng_.bit_generator.state),
        )
        if self.generator_ is not None:
            state["device_rng"] = self.generator_.get_state()
        if self.init_state_ is not None:
            state["init_model"] = {k: v.detach().cpu().clone() for k, v in self.init_state_.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into an estimator with the same hyperparameters."""
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError("not a NeuralEstimator state (from NeuralEstimator.state_dict())")
        if state.get("version", 0) > _STATE_VERSION:
            raise ValueError(
                f"state format version {state['version']} is newer than this banditrec reads "
                f"({_STATE_VERSION})"
            )
        own = _plain(self.get_params())
        state["params"].setdefault("head", "shared")  # states saved before per-item heads existed
        state["params"].setdefault("decide_on", "auto")  # ... or device-side decisions
        state["params"].setdefault("intercept", True)  # ... or heads without an intercept
        state["params"].setdefault("head_fit", "refit")  # ... or Xu et al.'s head fitting
        if isinstance(state["params"].get("training"), dict):  # ... or within-round decay
            state["params"]["training"].setdefault("step_decay", 0.0)
            state["params"]["training"].setdefault("max_grad_norm", None)  # ... or gradient clipping
            state["params"]["training"].setdefault("engine", "torch")  # ... or the numpy engine
            state["params"]["training"].setdefault("step_decay_reset", True)  # ... or run-long decay
            state["params"]["training"].setdefault("restart", False)  # ... or training from θ₀
            state["params"]["training"].setdefault("anchor", 0.0)
            state["params"]["training"].pop("cuda_graph", None)  # how steps run, not what they do
        if isinstance(own.get("training"), dict):
            own["training"].pop("cuda_graph", None)
        # Where and how fast it runs (device, decisions' side, CPU threads) is not what it learned.
        diff = {}
        for k in own:
            saved = state["params"].get(k)
            if k in ("device", "decide_on", "num_threads") or saved == own[k]:
                continue
            if isinstance(saved, dict) and isinstance(own[k], dict):  # name the fields that differ
                diff.update({f"{k}.{f}": (saved.get(f), own[k].get(f)) for f in {**saved, **own[k]}
                             if saved.get(f) != own[k].get(f)})
            else:
                diff[k] = (saved, own[k])
        if diff:
            raise ValueError(
                "the saved state has different hyperparameters (saved vs this estimator): "
                + ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())
            )
        if state["sizes"] is None:
            self.sizes_ = None
            return
        self._build(*state["sizes"])
        check_state_compatible(self.model_, state["model"], "saved network state")
        self.model_.load_state_dict(state["model"])
        # The saving estimator may have had CUDA graphs or not: load the state as this one's kind
        # (torch then puts a capturable optimizer's step counts on the parameters' device).
        graphed = self.graph_rounds_ is not None
        saved = state["optimizer"]
        saved = dict(saved, param_groups=[dict(g, capturable=graphed) if "capturable" in g else g
                                          for g in saved["param_groups"]])
        self.optimizer_.load_state_dict(saved)
        if self.init_state_ is not None:  # θ₀ of the run that saved, not this network's weights
            check_state_compatible(self.model_, state["init_model"], "saved initial network state")
            with torch.no_grad():
                for name, value in state["init_model"].items():
                    self.init_state_[name].copy_(value)
        self.buffer_.load_state_dict(state["buffer"])
        if self.head_ is not None:
            self.head_.load_state_dict(state["head"])
        c = state["counters"]
        self.n_seen_, self.n_rounds_, self.version_ = int(c["n_seen"]), int(c["n_rounds"]), int(c["version"])
        self.rng_.bit_generator.state = copy.deepcopy(state["rng"])
        if self.generator_ is not None and state.get("device_rng") is not None:
            self.generator_.set_state(state["device_rng"])


def _share_repeated(z, found) -> None:
    """Give every slot of an item repeated in its row the standard normal draws of that item's
    first slot, in place (z: (n, B, K), numpy or torch): the gradient-feature NeuralTS draws each
    item's reward once per user, as a per-item posterior draws its parameter once, so an item
    listed twice does not get two chances against its rivals."""
    if found is None:
        return
    rows, slots, groups, _ = found
    # a group's members are consecutive (repeated_slots lists them in sorted order): its first is
    # where the group number changes
    starts = groups[1:] != groups[:-1]
    if isinstance(starts, torch.Tensor):
        first = torch.nonzero(torch.cat([starts.new_ones(1), starts]))[:, 0]
    else:
        first = np.flatnonzero(np.concatenate([[True], starts]))
    pick = first[groups]
    z[:, rows, slots] = z[:, rows[pick], slots[pick]]


def _check_finite_output(finite: np.ndarray, mask: np.ndarray, who: str) -> None:
    """A model's NaN or inf on a valid candidate would become a NaN propensity or a silent
    argmax of slot 0: name it (on the host path, where the values are read anyway; masked slots,
    which may hold padding, do not count)."""
    bad = mask & ~finite
    if bad.any():
        b, k = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{who} returned NaN or inf for {int(bad.sum())} valid candidate(s), the first user {b}, candidate {k}: "
            "check the model's forward pass and the scale of its inputs"
        )


def _plain(value: Any) -> Any:
    """Hyperparameters as lists/dicts of plain values (comparable after a torch.save round trip)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


# --------------------------------------------------------------------------- factories
def _estimator_seed(seed) -> np.random.SeedSequence:
    """The estimator's stream: a fixed child of the policy's seed (the policy keeps ``seed`` itself),
    so the same seed always gives the same network. A Generator gives one draw."""
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(0, 2**63 - 1)))
    if isinstance(seed, np.random.SeedSequence):
        root = seed
    elif seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        root = np.random.SeedSequence(seed)
    else:
        raise ValueError(f"seed must be an int >= 0, a SeedSequence, a Generator or None, got {seed!r}")
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, _ESTIMATOR_STREAM))


_TRAINING = tuple(OnlineTraining.__dataclass_fields__)


def _neural_policy(exploration, name: str, options: dict[str, Any], drop: tuple[str, ...] = ()) -> Policy:
    """A BanditPolicy from a factory's arguments (its ``locals()``): the schedule's fields become an
    :class:`OnlineTraining`, the rest go to :class:`NeuralEstimator`; ``drop`` names the arguments
    the exploration strategy consumed."""
    options = {k: v for k, v in options.items() if k not in drop}
    seed, initial_pulls = options.pop("seed"), options.pop("initial_pulls")
    training = OnlineTraining(**{k: options.pop(k) for k in _TRAINING})
    estimator = NeuralEstimator(training=training, seed=_estimator_seed(seed), **options)
    return BanditPolicy(estimator, exploration, seed, name=name, initial_pulls=initial_pulls)


def _check_head(uncertainty: str, strategy: str) -> None:
    if uncertainty not in ("last_layer", "gradient_diag"):
        raise ValueError(
            f"uncertainty must be 'last_layer' or 'gradient_diag' for {strategy}, got {uncertainty!r}"
        )


# The factories spell out every hyperparameter (configs and ``policy_parameters`` read the
# signatures); the shared ones mean what they mean in NeuralEstimator and OnlineTraining, and
# ``initial_pulls`` what it means in BanditPolicy.


def NeuralEpsilonGreedy(
    epsilon: float = 0.1,
    decay: float = 0.0,
    model: str | nn.Module = "mlp",
    hidden: Sequence[int] = (64,),
    model_options: dict | None = None,
    loss: str = "mse",
    train_every: int = 32,
    train_steps: int = 32,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    buffer_size: int = 10_000,
    step_decay: float = 0.0,
    max_grad_norm: float | None = None,
    engine: str = "torch",
    cuda_graph: str = "auto",
    step_decay_reset: bool = True,
    restart: bool = False,
    anchor: float = 0.0,
    initial_pulls: int = 0,
    device: str = "auto",
    decide_on: str = "auto",
    num_threads: int | None = 1,
    seed=None,
) -> Policy:
    """Epsilon-greedy on a neural network's predicted rewards, trained online from a replay buffer."""
    return _neural_policy(
        EpsilonGreedy(epsilon, decay),
        "NeuralEpsilonGreedy",
        dict(locals(), uncertainty="none"),
        drop=("epsilon", "decay"),
    )


def NeuralUCB(
    alpha: float = 1.0,
    uncertainty: str = "last_layer",
    head: str = "shared",
    lam: float = 1.0,
    intercept: bool = True,
    head_fit: str = "refit",
    model: str | nn.Module = "mlp",
    hidden: Sequence[int] = (64,),
    model_options: dict | None = None,
    loss: str = "mse",
    train_every: int = 32,
    train_steps: int = 32,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    buffer_size: int = 10_000,
    step_decay: float = 0.0,
    max_grad_norm: float | None = None,
    engine: str = "torch",
    cuda_graph: str = "auto",
    step_decay_reset: bool = True,
    restart: bool = False,
    anchor: float = 0.0,
    initial_pulls: int = 0,
    device: str = "auto",
    decide_on: str = "auto",
    num_threads: int | None = 1,
    seed=None,
) -> Policy:
    """UCB on a neural network: choose the largest mean + alpha · width.

    ``uncertainty="last_layer"``: Neural-LinUCB (Xu et al. 2020), ridge regression on the last
    hidden layer, width √(φᵀA⁻¹φ); ``head_fit="xu"`` runs their algorithm as written (the head
    accumulates decision-time φ and the body trains through its θ), the default ``"refit"``
    recomputes the head from the buffer after each training round (see :class:`NeuralEstimator`).
    ``"gradient_diag"``: NeuralUCB (Zhou et al. 2020) with a
    diagonal design matrix, width √(Σ g²/Z); its widths are larger, alpha ≈ 0.3 suits it. (The
    paper's λ is ``lam`` / m here, m the network's width: see the module docstring.)
    """
    _check_head(uncertainty, "UCB")
    return _neural_policy(UCB(alpha), "NeuralUCB", locals(), drop=("alpha",))


def NeuralTS(
    v: float = 0.1,
    uncertainty: str = "last_layer",
    head: str = "shared",
    lam: float = 1.0,
    intercept: bool = True,
    head_fit: str = "refit",
    model: str | nn.Module = "mlp",
    hidden: Sequence[int] = (64,),
    model_options: dict | None = None,
    loss: str = "mse",
    train_every: int = 32,
    train_steps: int = 32,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    buffer_size: int = 10_000,
    step_decay: float = 0.0,
    max_grad_norm: float | None = None,
    engine: str = "torch",
    cuda_graph: str = "auto",
    step_decay_reset: bool = True,
    restart: bool = False,
    anchor: float = 0.0,
    initial_pulls: int = 0,
    n_mc: int = 100,
    device: str = "auto",
    decide_on: str = "auto",
    num_threads: int | None = 1,
    seed=None,
) -> Policy:
    """Thompson sampling on a neural network with a Gaussian posterior of scale ``v``.

    ``uncertainty="last_layer"``: θ ~ N(θ̂, v² A⁻¹) on the last hidden layer; ``"gradient_diag"``:
    NeuralTS (Zhang et al. 2021), f + v · √(Σ g²/Z) · z with a diagonal design matrix (the paper's
    λ is ``lam`` / m and its ν is ``v`` / √(lam / m), m the network's width: see the module
    docstring). ``n_mc`` further draws estimate each propensity.
    """
    _check_head(uncertainty, "Thompson sampling")
    return _neural_policy(Thompson(n_mc), "NeuralTS", dict(locals(), posterior="gaussian"), drop=("n_mc",))


def NeuralLinear(
    a0: float = 6.0,
    b0: float = 6.0,
    head: str = "shared",
    lam: float = 1.0,
    intercept: bool = True,
    head_fit: str = "refit",
    model: str | nn.Module = "mlp",
    hidden: Sequence[int] = (64,),
    model_options: dict | None = None,
    loss: str = "mse",
    train_every: int = 32,
    train_steps: int = 32,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    buffer_size: int = 10_000,
    step_decay: float = 0.0,
    max_grad_norm: float | None = None,
    engine: str = "torch",
    cuda_graph: str = "auto",
    step_decay_reset: bool = True,
    restart: bool = False,
    anchor: float = 0.0,
    initial_pulls: int = 0,
    n_mc: int = 100,
    device: str = "auto",
    decide_on: str = "auto",
    num_threads: int | None = 1,
    seed=None,
) -> Policy:
    """NeuralLinear (Riquelme et al. 2018): Thompson sampling from the Normal-Inverse-Gamma posterior
    of Bayesian linear regression on the last hidden layer, refitted whenever the network retrains.

    ``head="per_item"`` keeps one posterior (and one noise variance) per item id, as the paper's
    per-arm regressions; with ``model="multi_output"`` and ``model_options={"n_items": K}`` this
    is the paper's architecture exactly (one network over the context, one output per arm).
    ``head="shared"`` pools one posterior over φ(user, item), which generalises across a large
    catalogue."""
    return _neural_policy(
        Thompson(n_mc),
        "NeuralLinear",
        dict(locals(), uncertainty="last_layer", posterior="nig"),
        drop=("n_mc",),
    )
