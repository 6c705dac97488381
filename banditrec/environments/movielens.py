"""The MovieLens-100k world: 943 users, 1,682 movies, a logistic-MF truth fitted on the ratings.

A thin composition over :class:`~banditrec.environments.logged.LoggedDataWorld`: it loads the data
(:func:`banditrec.data.load_movielens_100k`), calls a rating of 4 or more a like, and chooses the
observable features:

- users: age (standardised), gender and occupation (one-hot); 24 columns;
- items: the 19 genres (multi-hot), the release year and (by default) log number of ratings and mean rating (standardised);
- optionally (``text_features``) title embeddings from all-MiniLM-L6-v2, reduced to ``text_dim``
  principal components, and (``kg_features``) ``kg_dim`` spectral embeddings of the items in the
  knowledge graph (:func:`banditrec.data.kg.kg_item_embeddings`).

Every constructor argument is a plain int, float, str or bool so a TOML config can set it.

A caveat on the knowledge graph: RecBole's ``ml-100k.link`` appears to use MovieLens-1M/20M movie
ids rather than MovieLens-100k's (item 2 links to a fantasy film with a sequel, Jumanji, which
is id 2 in MovieLens-1M, not GoldenEye; item 10 to a British-American spy film, GoldenEye, which
is id 10 there). The world therefore measures how well the KG embedding predicts the items'
MovieLens genres (``kg_alignment_auc``, cross-validated; about 0.5 means the graph is not about
these items) and warns when it is near chance.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from banditrec.data.movielens import MovieLens100k, load_movielens_100k
from banditrec.environments.device_world import DeviceWorld
from banditrec.environments.logged import LoggedDataWorld, _auc
from banditrec.environments.simulator import Observation, UserSimulator

__all__ = ["MovieLens100kWorld"]


def _kg_alignment_auc(embedding: np.ndarray, genres: np.ndarray, folds: int = 5) -> float:
    """Mean over genres of the cross-validated AUC of a ridge fit predicting the genre from
    ``embedding`` (rows without an embedding left out). Near 0.5: the embedding says nothing."""
    rows = np.abs(embedding).sum(axis=1) > 0
    x, y = embedding[rows], genres[rows]
    if x.shape[0] < 4 * folds:
        return float("nan")
    x = np.column_stack([np.ones(len(x)), (x - x.mean(0)) / (x.std(0) + 1e-12)])
    fold = np.arange(len(x)) % folds
    scores = np.zeros_like(y, dtype=np.float64)
    for f in range(folds):
        train = fold != f
        beta = np.linalg.solve(x[train].T @ x[train] + np.eye(x.shape[1]), x[train].T @ y[train])
        scores[~train] = x[~train] @ beta
    aucs = [_auc(y[:, j], scores[:, j]) for j in range(y.shape[1]) if 10 <= y[:, j].sum() <= len(y) - 10]
    return float(np.mean(aucs)) if aucs else float("nan")


class MovieLens100kWorld(UserSimulator):
    """MovieLens-100k as a contextual-bandit world (see the module docstring).

    Parameters
    ----------
    n_candidates : int
        K, movies shown to each arriving user.
    embedding_dim : int
        Rank of the hidden logistic-MF truth.
    like_threshold : float
        A rating at or above it is a like.
    arrival : {"uniform", "activity"}
    candidates : {"uniform", "popularity"}
    target_click_rate : float
        Mean click probability of a random candidate; 0 or less keeps the raw fitted scale.
    temperature : float
    popularity_features : bool
        Append each movie's log number of ratings and mean rating in the logs (observable
        catalogue statistics; with cold start they reveal a new movie's future popularity).
    text_features : bool
        Append title embeddings (needs ``pip install 'banditrec[text]'`` and the model weights).
    text_dim : int
        Principal components of the 384-d title embeddings kept (0 keeps all).
    kg_features : bool
        Append knowledge-graph embeddings of the items.
    kg_dim : int
    initial_items, new_items_per_step : int
        Cold start: movies enter in order of their first rating; ``initial_items`` 0 means all
        (or half when ``new_items_per_step > 0``).
    drift : float
        Per-step drift of the user factors (see :class:`LoggedDataWorld`).
    reveal_truth : bool
        Append the hidden factors to the features (ablation).
    seed : int
        Seeds the fit and the world's own randomness.
    epochs, l2, implicit_negatives : int, float, float
        Fit parameters of the truth.
    path : str
        Local MovieLens data (zip or folder); empty for the default sources.
    cache_dir : str
        Cache folder; empty for the default.
    cache : bool
        Cache the fitted truth and the feature embeddings.
    device : str
        ``"numpy"`` (the default): numpy arrays on the host. A torch device (``"cuda"``, ``"auto"``,
        ``"cpu"``, ...): the world is simulated with tensors on it
        (:class:`~banditrec.environments.DeviceWorld`, same truth, its own random stream), for
        policies that run there.

    Attributes
    ----------
    world : LoggedDataWorld or DeviceWorld
        The simulator everything is delegated to.
    data : MovieLens100k
    fidelity : dict
        Held-out AUC / log-loss of the truth.
    kg_alignment_auc : float or None
        See the module docstring; None without ``kg_features``.
    """

    reward_type = "binary"

    def __init__(
        self,
        n_candidates: int = 20,
        embedding_dim: int = 16,
        like_threshold: float = 4.0,
        arrival: str = "uniform",
        candidates: str = "uniform",
        target_click_rate: float = 0.1,
        temperature: float = 1.0,
        popularity_features: bool = True,
        text_features: bool = False,
        text_dim: int = 32,
        kg_features: bool = False,
        kg_dim: int = 16,
        initial_items: int = 0,
        new_items_per_step: int = 0,
        drift: float = 0.0,
        reveal_truth: bool = False,
        seed: int = 0,
        epochs: int = 150,
        l2: float = 2e-2,
        implicit_negatives: float = 1.0,
        path: str = "",
        cache_dir: str = "",
        cache: bool = True,
        device: str = "numpy",
    ) -> None:
        for name, value in (
            ("popularity_features", popularity_features),
            ("text_features", text_features),
            ("kg_features", kg_features),
            ("reveal_truth", reveal_truth),
            ("cache", cache),
        ):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
        for name, value in (("text_dim", text_dim), ("kg_dim", kg_dim), ("initial_items", initial_items)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if kg_features and kg_dim < 1:
            raise ValueError(f"kg_dim must be positive when kg_features is set, got {kg_dim!r}")
        for name, value in (("path", path), ("cache_dir", cache_dir)):
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(
                    f"{name} must be a string path ('' for the default), got {type(value).__name__}"
                )
        cache_folder = cache_dir or None
        self.data: MovieLens100k = load_movielens_100k(path or None, cache_dir=cache_folder)
        data = self.data

        users = data.users[["age", "gender", "occupation"]]
        items = data.items[["year", *data.genre_columns]].copy()
        item_ids = items.index.to_numpy()
        if popularity_features:
            # What any production recommender knows about its catalogue from its own logs: how
            # often each movie was rated and how well. Standardised by the world like the rest.
            stats = data.ratings.groupby("item_id")["rating"].agg(["size", "mean"]).reindex(items.index)
            items["log_ratings"] = np.log1p(stats["size"].fillna(0.0).to_numpy())
            items["mean_rating"] = stats["mean"].fillna(data.ratings["rating"].mean()).to_numpy()
        if text_features:
            from banditrec.data.text import pca_reduce, text_embeddings

            text = text_embeddings(data.items["title"].tolist(), cache=cache, cache_dir=cache_folder)
            if text_dim:
                text = pca_reduce(text, int(text_dim))
            items = items.join(
                pd.DataFrame(text, index=items.index, columns=[f"text_{j}" for j in range(text.shape[1])])
            )
        self.kg_alignment_auc: float | None = None
        if kg_features:
            if not data.has_kg:
                raise ValueError(
                    f"kg_features needs the knowledge graph (RecBole's ml-100k.kg and .link), but the data "
                    f"from {data.source} has none"
                )
            from banditrec.data.kg import kg_item_embeddings

            try:
                kg = kg_item_embeddings(
                    data.kg, data.link, item_ids, dim=int(kg_dim), cache=cache, cache_dir=cache_folder
                )
            except ValueError as exc:
                raise ValueError(f"kg_features: the knowledge graph from {data.source}: {exc}") from exc
            self.kg_alignment_auc = _kg_alignment_auc(kg, data.items[data.genre_columns].to_numpy(np.float64))
            if np.isnan(self.kg_alignment_auc):
                n_embedded = int((np.abs(kg).sum(axis=1) > 0).sum())
                message = (
                    f"the knowledge graph from {data.source} gives an embedding to {n_embedded} of the "
                    f"{len(item_ids)} movies, too few (or too few per genre) to check that it describes "
                    f"them; the others' kg features are zeros"
                )
                warnings.warn(message, stacklevel=2)
            elif not self.kg_alignment_auc > 0.6:
                message = (
                    f"the knowledge-graph embedding predicts the movies' genres with AUC "
                    f"{self.kg_alignment_auc:.2f} (0.5 = chance): the graph's item links do not seem to "
                    f"describe these MovieLens-100k ids (see banditrec.environments.movielens)"
                )
                warnings.warn(message, stacklevel=2)
            items = items.join(
                pd.DataFrame(kg, index=items.index, columns=[f"kg_{j}" for j in range(kg.shape[1])])
            )

        self.world = LoggedDataWorld.from_interactions(
            data.ratings,
            user_col="user_id",
            item_col="item_id",
            reward_col="rating",
            timestamp_col="timestamp",
            user_features=users,
            item_features=items,
            like_threshold=like_threshold,
            n_candidates=n_candidates,
            embedding_dim=embedding_dim,
            arrival=arrival,
            candidates=candidates,
            seed=seed,
            l2=l2,
            epochs=epochs,
            implicit_negatives=implicit_negatives,
            temperature=temperature,
            # NaN is not "0 or less": it goes on to the world's own check, which names it.
            target_click_rate=None if isinstance(target_click_rate, (int, float)) and target_click_rate <= 0 else target_click_rate,
            initial_items=initial_items or None,
            new_items_per_step=new_items_per_step,
            drift=drift,
            reveal_truth=reveal_truth,
            cache=cache,
            cache_dir=cache_folder,
        )
        if not isinstance(device, str):
            raise TypeError(f"device must be 'numpy' or a torch device name, got {type(device).__name__}")
        if device != "numpy":
            self.world = DeviceWorld(self.world, device)
            self.device = self.world.device

    # -- sizes and state, from the wrapped world -------------------------------------------------
    @property
    def n_candidates(self) -> int:  # type: ignore[override]
        return self.world.n_candidates

    @property
    def user_dim(self) -> int:  # type: ignore[override]
        return self.world.user_dim

    @property
    def item_dim(self) -> int:  # type: ignore[override]
        return self.world.item_dim

    @property
    def n_items(self) -> int:  # type: ignore[override]
        return self.world.n_items

    @property
    def n_users(self) -> int:  # type: ignore[override]
        return self.world.n_users

    @property
    def fidelity(self) -> dict[str, float]:
        """Held-out fit quality of the hidden truth."""
        return self.world.fidelity

    @property
    def mean_click_rate(self) -> float:
        """Mean click probability of a random candidate from the whole catalogue."""
        return self.world.mean_click_rate

    @property
    def initial_click_rate(self) -> float:
        """The same over the movies available at the start (cold start: old, popular films first)."""
        return self.world.initial_click_rate

    @property
    def user_feature_names(self) -> list[str]:
        return self.world.user_feature_names

    @property
    def item_feature_names(self) -> list[str]:
        return self.world.item_feature_names

    # -- the simulator contract ---------------------------------------------------------------
    def sample_users(self, batch_size: int, rng: np.random.Generator) -> Observation:
        return self.world.sample_users(batch_size, rng)

    def expected_rewards(self, obs: Observation) -> np.ndarray:
        return self.world.expected_rewards(obs)

    def sample_rewards(
        self, obs: Observation, actions: np.ndarray, expected: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self.world.sample_rewards(obs, actions, expected, rng)

    def update(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.world.update(obs, actions, rewards)

    def reset(self, rng: np.random.Generator) -> None:
        self.world.reset(rng)
