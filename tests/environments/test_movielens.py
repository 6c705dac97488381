"""MovieLens100kWorld: the real data set once (fidelity), small local files for the options."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from banditrec.data import DataUnavailableError
from banditrec.environments.checks import check_expected_rewards, check_observation
from banditrec.environments.movielens import MovieLens100kWorld

GENRES = ["unknown", "Action", "Comedy", "Drama", "Sci-Fi"]


def write_small_recbole(
    folder: Path, seed: int = 0, n_users: int = 40, n_items: int = 30, shift: int = 0
) -> Path:
    """A small data set in RecBole's atomic-file format (what the recbole wheel ships).

    The knowledge graph gives each film its two genres; ``shift`` links item i to film i + shift,
    a graph about other items, like RecBole's ml-100k.link.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    taste = rng.standard_normal((n_users, 2)) @ rng.standard_normal((2, n_items))
    rows = [
        (
            u + 1,
            i + 1,
            int(np.clip(np.round(3 + 1.5 * taste[u, i]), 1, 5)),
            880_000_000 + 60 * (u * n_items + i),
        )
        for u in range(n_users)
        for i in rng.choice(n_items, 12, replace=False)
    ]
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + [
        "\t".join(map(str, r)) for r in rows
    ]
    (folder / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    lines = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"] + [
        f"{u + 1}\t{rng.integers(18, 70)}\t{rng.choice(['M', 'F'])}\t"
        f"{rng.choice(['writer', 'artist', 'none'])}\t0{u:04d}"
        for u in range(n_users)
    ]
    (folder / "ml-100k.user").write_text("\n".join(lines) + "\n")
    genres = [rng.choice(GENRES, 2, replace=False) for _ in range(n_items)]
    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"] + [
        f"{i + 1}\tFilm {i}\t{1950 + i}\t{' '.join(genres[i])}" for i in range(n_items)
    ]
    (folder / "ml-100k.item").write_text("\n".join(lines) + "\n")
    triples = [f"m.f{i}\tfilm.film.genre\tm.{g}" for i in range(n_items) for g in genres[i]]
    (folder / "ml-100k.kg").write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n" + "\n".join(triples) + "\n"
    )
    links = [f"{i + 1}\tm.f{(i + shift) % n_items}" for i in range(n_items)]
    (folder / "ml-100k.link").write_text("item_id:token\tentity_id:token\n" + "\n".join(links) + "\n")
    return folder


def small_world(tmp_path, shift: int = 0, **kwargs) -> MovieLens100kWorld:
    folder = write_small_recbole(tmp_path / "ml", shift=shift)
    options = {
        "path": str(folder),
        "cache_dir": str(tmp_path / "cache"),
        "n_candidates": 6,
        "embedding_dim": 3,
        "epochs": 60,
    }
    options.update(kwargs)
    return MovieLens100kWorld(**options)


def test_features_of_a_small_local_data_set(tmp_path):
    world = small_world(tmp_path)
    occupations = 3
    assert world.user_dim == 1 + 2 + occupations  # age, gender one-hot, occupation one-hot
    assert world.item_dim == 1 + 19 + 2  # year, the 19 GroupLens genres (multi-hot, kept 0/1), popularity
    assert world.item_feature_names[-2:] == ["log_ratings", "mean_rating"]
    assert world.user_feature_names[0] == "age" and world.item_feature_names[0] == "year"
    assert world.n_users == 40 and world.n_items == 30 and world.n_candidates == 6
    rng = np.random.default_rng(0)
    world.reset(rng)
    obs = check_observation(world, world.sample_users(16, rng), 16)
    check_expected_rewards(world, world.expected_rewards(obs), obs, binary=True)
    genres = obs.item_features[..., 1:20]
    assert set(np.unique(genres)) <= {0.0, 1.0} and np.all(genres.sum(-1) == 2)


def test_kg_features_append_embeddings_that_describe_the_items(tmp_path):
    with warnings.catch_warnings():
        # a well-linked graph raises no warning about the graph (this small catalogue's constant
        # genre columns do warn, rightly)
        warnings.filterwarnings("error", message=".*knowledge-graph")
        world = small_world(tmp_path, kg_features=True, kg_dim=4)
    assert world.item_dim == 1 + 19 + 2 + 4 and world.item_feature_names[-1] == "kg_3"
    assert world.kg_alignment_auc > 0.9


def test_kg_features_warn_when_the_graph_is_about_other_items(tmp_path):
    with pytest.warns(UserWarning, match="knowledge-graph embedding predicts the movies' genres with AUC"):
        world = small_world(tmp_path, shift=7, kg_features=True, kg_dim=4)
    assert world.kg_alignment_auc < 0.7


def test_kg_features_refuse_a_graph_that_describes_no_movie(tmp_path):
    # 16 all-zero columns were added, with a warning about "AUC nan"
    folder = write_small_recbole(tmp_path / "ml")
    (folder / "ml-100k.link").write_text(
        "item_id:token\tentity_id:token\n" + "".join(f"{i + 1001}\tm.f{i}\n" for i in range(30))
    )
    with pytest.raises(ValueError, match=rf"kg_features: the knowledge graph from {folder}: no item has a knowledge-graph embedding: link names 0 of the 30 items"):
        MovieLens100kWorld(path=str(folder), cache_dir=str(tmp_path / "cache"), kg_features=True, epochs=5)


def test_kg_features_say_how_many_movies_a_sparse_graph_covers(tmp_path):
    folder = write_small_recbole(tmp_path / "ml")
    (folder / "ml-100k.link").write_text(
        "item_id:token\tentity_id:token\n" + "".join(f"{i + 1}\tm.f{i}\n" for i in range(5))
    )
    with pytest.warns(UserWarning, match=r"gives an embedding to 5 of the 30 movies, too few"):
        MovieLens100kWorld(
            path=str(folder), cache_dir=str(tmp_path / "cache"), kg_features=True, kg_dim=4, epochs=5
        )


def test_text_features_need_the_text_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"banditrec\[text\]"):
        small_world(tmp_path, text_features=True)


def test_constructor_takes_plain_values_and_checks_them(tmp_path):
    with pytest.raises(TypeError, match="text_features must be a bool"):
        MovieLens100kWorld(text_features="yes", path=str(tmp_path))
    with pytest.raises(ValueError, match="text_dim must be a non-negative int"):
        MovieLens100kWorld(text_dim=-1, path=str(tmp_path))
    with pytest.raises(TypeError, match="path must be a string"):
        MovieLens100kWorld(path=None)
    with pytest.raises(DataUnavailableError, match="does not exist"):
        MovieLens100kWorld(path=str(tmp_path / "missing"))


def test_ratings_that_can_never_be_a_like_or_a_nan_click_rate_are_refused(tmp_path):
    # Both used to build a world silently: flat (every reward 0.1, regret 0) or uncalibrated.
    with pytest.raises(ValueError, match=r"holds no like: no 'rating' value reaches like_threshold=10 \(they lie in \[1, 5\]\)"):
        small_world(tmp_path, like_threshold=10.0)
    with pytest.raises(ValueError, match="target_click_rate must lie in"):
        small_world(tmp_path, target_click_rate=float("nan"))


def test_real_movielens_world_fidelity_and_cache(tmp_path_factory, data_unavailable):
    """The real data: the fitted truth must rank held-out likes far above chance.

    Measured here: held-out AUC 0.875 (rated pairs only: 0.78), log-loss 0.40.
    """
    cache = tmp_path_factory.mktemp("movielens-cache")
    try:
        world = MovieLens100kWorld(cache_dir=str(cache), seed=0)
    except DataUnavailableError as exc:
        data_unavailable("MovieLens-100k", exc)
    f = world.fidelity
    assert f["auc"] > 0.85 and f["auc_rated"] > 0.74 and f["log_loss"] < 0.45
    assert world.n_users == 943 and world.n_items == 1682
    assert world.user_dim == 1 + 2 + 21 and world.item_dim == 1 + 19 + 2
    assert abs(world.mean_click_rate - 0.1) < 1e-6
    rng = np.random.default_rng(0)
    world.reset(rng)
    obs = world.sample_users(500, rng)
    expected = world.expected_rewards(obs)
    assert abs(expected.mean() - 0.1) < 0.02
    assert np.median(expected.max(axis=1)) > 0.25  # the best of 20 is worth finding
    again = MovieLens100kWorld(cache_dir=str(cache), seed=0)  # truth and data from the cache
    assert again.data.source.startswith("cache ")
    np.testing.assert_array_equal(again.world.truth.item_factors, world.world.truth.item_factors)
    obs_again = again.sample_users(500, np.random.default_rng(123))
    obs_first = world.sample_users(500, np.random.default_rng(123))
    np.testing.assert_array_equal(obs_again.item_ids, obs_first.item_ids)
    np.testing.assert_array_equal(again.expected_rewards(obs_again), world.expected_rewards(obs_first))
    pd.testing.assert_frame_equal(again.data.ratings, world.data.ratings)
