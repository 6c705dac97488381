"""Data sets, the local cache and feature builders.

Loaders try their sources in order (a local path, the cache, an installed package, a PyPI wheel,
the publisher) and either return the data or raise one :class:`DataUnavailableError` listing every
source and why it failed.
"""

from banditrec.data.cache import (
    ChecksumError,
    DataFormatError,
    DataUnavailableError,
    cache_root,
)
from banditrec.data.kg import kg_item_embeddings
from banditrec.data.movielens import MovieLens100k, load_movielens_100k
from banditrec.data.obd import OBDFeatureEncoder, OpenBanditDataset, load_open_bandit_dataset
from banditrec.data.text import text_embeddings

__all__ = [
    "ChecksumError",
    "DataFormatError",
    "DataUnavailableError",
    "MovieLens100k",
    "OBDFeatureEncoder",
    "OpenBanditDataset",
    "cache_root",
    "kg_item_embeddings",
    "load_movielens_100k",
    "load_open_bandit_dataset",
    "text_embeddings",
]
