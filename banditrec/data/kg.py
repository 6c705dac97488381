"""Knowledge-graph item embeddings: a spectral (truncated-SVD) embedding of the item-entity graph.

Each item is linked to a Freebase entity (its film); the knowledge graph connects that entity to
actors, directors, writers, genres, languages, countries, awards, sequels... Two items are similar
when they share neighbours, and the more so the rarer the neighbour (sharing a director says more
than sharing the English language). So the embedding is built from the item x neighbour matrix
``A`` (1 where the item's entity and the neighbour are joined by a triple, in either direction),
columns weighted by inverse document frequency ``log(n / df)``, neighbours of a single item
dropped, rows normalised to unit length; the embedding is the top ``dim`` left singular vectors
of ``A`` scaled by their singular values (the best rank-``dim`` approximation of the items'
cosine similarities), computed by a randomised SVD whose test matrix has a fixed seed, each
component's sign fixed so that its largest entry is positive: deterministic. Items without a
link get a zero vector.

We chose this over TransE because it needs no training, no random initialisation and no
hyper-parameters beyond ``dim``, takes about a second, and encodes exactly what a recommender
can use from the graph: which items share which neighbours.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from banditrec.data.cache import ChecksumError, cache_root, open_entry, write_entry

__all__ = ["kg_item_embeddings"]

logger = logging.getLogger(__name__)

_VERSION = "kg-spectral-v2"  # v2: an entity linked to several items gives each its neighbours (v1 only the first)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _refuse_empty(embedding: np.ndarray, kg: pd.DataFrame, link: pd.DataFrame, item_ids: np.ndarray) -> None:
    """Every row a zero vector is features that say nothing, which used to be added without a word."""
    if embedding.size == 0 or np.any(embedding):
        return
    linked = link[link["item_id"].isin(item_ids)]
    in_graph = linked["entity"].isin(pd.concat([kg["head"], kg["tail"]], ignore_index=True))
    raise ValueError(
        f"no item has a knowledge-graph embedding: link names {len(linked)} of the {item_ids.size} "
        f"items (their ids look like {[_plain(i) for i in item_ids[:3]]}, link's like "
        f"{[_plain(i) for i in link['item_id'].to_numpy()[:3]]}), {int(in_graph.sum())} of their entities "
        f"occur in kg ({len(kg)} triples), and an embedding needs a neighbour shared by two items"
    )


def _incidence(kg: pd.DataFrame, link: pd.DataFrame, item_ids: np.ndarray) -> sp.csr_matrix:
    """Binary item x neighbour-entity matrix (rows in ``item_ids`` order)."""
    row_of_item = pd.Series(np.arange(item_ids.size), index=pd.Index(item_ids))
    link = link[link["item_id"].isin(row_of_item.index)]
    # An entity may stand for several items (one film under two ids): each gets its neighbours
    # (keeping only the first left the others with a zero vector).
    pairs = pd.DataFrame(
        {"entity": link["entity"].to_numpy(), "row": row_of_item.loc[link["item_id"]].to_numpy()}
    ).drop_duplicates()
    heads, tails = kg["head"].to_numpy(), kg["tail"].to_numpy()
    rows, cols = [], []
    for mine, other in ((heads, tails), (tails, heads)):
        hits = pd.DataFrame({"entity": mine, "pos": np.arange(mine.size)}).merge(pairs, on="entity")
        hits = hits.sort_values("pos", kind="stable")  # triple order, as the columns' codes follow it
        rows.append(hits["row"].to_numpy(np.int64))
        cols.append(other[hits["pos"].to_numpy()])
    rows_all = np.concatenate(rows)
    codes, uniques = pd.factorize(np.concatenate(cols))
    matrix = sp.csr_matrix(
        (np.ones(rows_all.size), (rows_all, codes)), shape=(item_ids.size, max(len(uniques), 1))
    )
    matrix.data[:] = 1.0  # duplicates (both directions of a relation) count once
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _top_singular_vectors(matrix: sp.csr_matrix, k: int, oversample: int = 10, power: int = 6):
    """Top-k left singular vectors and values by a randomised range finder with power iterations
    (Halko, Martinsson & Tropp 2011). Its test matrix comes from a fixed seed, so the result is
    reproducible, unlike ARPACK, which draws a fresh random restart vector from its own hidden
    state whenever a Krylov space is exhausted (small or low-rank graphs)."""
    n, m = matrix.shape
    width = min(k + oversample, n, m)
    omega = np.random.default_rng(0).standard_normal((m, width))
    basis, _ = np.linalg.qr(matrix @ omega)
    for _ in range(power):
        back, _ = np.linalg.qr(matrix.T @ basis)
        basis, _ = np.linalg.qr(matrix @ back)
    small = (matrix.T @ basis).T  # basis^T A, shape (width, m)
    u, s, _ = np.linalg.svd(small, full_matrices=False)
    return (basis @ u)[:, :k], s[:k]


def _spectral(matrix: sp.csr_matrix, dim: int) -> np.ndarray:
    n = matrix.shape[0]
    df = np.asarray((matrix > 0).sum(axis=0)).ravel()
    keep = df >= 2
    matrix = matrix[:, keep]
    if matrix.shape[1] == 0:
        return np.zeros((n, dim))
    n_linked = max(int((matrix.getnnz(axis=1) > 0).sum()), 2)
    matrix = matrix @ sp.diags(np.log(n_linked / df[keep]))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    matrix = sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-300), 0.0)) @ matrix
    vectors, singular = _top_singular_vectors(matrix, min(dim, min(matrix.shape)))
    values = singular**2
    embedding = vectors * np.sqrt(values)[None, :]
    signs = np.sign(embedding[np.argmax(np.abs(embedding), axis=0), np.arange(embedding.shape[1])])
    embedding = embedding * np.where(signs == 0, 1.0, signs)[None, :]
    if embedding.shape[1] < dim:
        embedding = np.pad(embedding, ((0, 0), (0, dim - embedding.shape[1])))
    return embedding


def kg_item_embeddings(
    kg: pd.DataFrame,
    link: pd.DataFrame,
    item_ids: np.ndarray,
    dim: int = 16,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Spectral embeddings of items from knowledge-graph triples (see the module docstring).

    Parameters
    ----------
    kg : DataFrame
        Triples with columns ``head``, ``relation``, ``tail``.
    link : DataFrame
        Columns ``item_id`` and ``entity``: the entity of each item in ``kg``.
    item_ids : ndarray, shape (n_items,)
        Items to embed, in the order of the output rows.
    dim : int
        Embedding dimension.
    cache : bool
        Reuse / store the result in the cache (key: hash of the inputs and ``dim``).
    cache_dir : path, optional

    Returns
    -------
    ndarray, shape (n_items, dim), float64
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    for name, table, columns in (
        ("kg", kg, ("head", "relation", "tail")),
        ("link", link, ("item_id", "entity")),
    ):
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"{name} must be a DataFrame, got {type(table).__name__}")
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}; has {list(table.columns)}")
    item_ids = np.asarray(item_ids)
    digest = hashlib.sha256(f"{_VERSION}|{dim}".encode())
    digest.update(
        pd.util.hash_pandas_object(kg[["head", "relation", "tail"]], index=False).to_numpy().tobytes()
    )
    digest.update(pd.util.hash_pandas_object(link[["item_id", "entity"]], index=False).to_numpy().tobytes())
    digest.update(pd.util.hash_array(item_ids).tobytes())
    entry_path = cache_root(cache_dir) / "features" / f"{_VERSION}-{digest.hexdigest()[:32]}"
    if cache:
        try:
            embedding = np.load(open_entry(entry_path).file("embedding.npy"))
            if embedding.shape == (item_ids.size, dim):
                _refuse_empty(embedding, kg, link, item_ids)  # an entry written before the check
                return embedding
        except FileNotFoundError:
            pass
        except (ChecksumError, OSError, ValueError) as exc:
            logger.warning("ignoring the unusable cached KG embedding at %s (%s)", entry_path, exc)
    embedding = _spectral(_incidence(kg, link, item_ids), int(dim))
    _refuse_empty(embedding, kg, link, item_ids)
    if cache:
        try:
            write_entry(
                entry_path,
                lambda folder: np.save(Path(folder) / "embedding.npy", embedding),
                meta={"kind": _VERSION, "dim": int(dim)},
            )
        except OSError as exc:
            logger.warning("could not cache the KG embedding at %s: %s", entry_path, exc)
    return embedding
