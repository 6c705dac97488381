"""MovieLens-100k: ratings, user demographics, item genres and a Freebase knowledge graph.

:func:`load_movielens_100k` tries its sources in order and returns the first that works:

1. an explicit ``path`` or ``$BANDITREC_MOVIELENS_PATH`` (either is then the *only* source): the
   GroupLens ``ml-100k.zip``, its extracted folder (``u.data``, ``u.user``, ``u.item``), or a folder
   (or zip) of RecBole atomic files (``ml-100k.inter``/``.user``/``.item``/``.kg``/``.link``);
2. the banditrec cache (checksums verified);
3. an installed ``recbole`` package's ``dataset_example/ml-100k/`` (located, not imported);
4. the ``recbole==1.2.1`` wheel from PyPI (``pip download --no-deps``, files read from the zip);
5. the GroupLens download URL.

What sources 3-5 provide is written to the cache as normalised CSV tables with their sha256 in a
manifest. Local paths are read in place and not copied: the user's folder stays the source of
truth. The RecBole files carry the knowledge graph (``kg``: Freebase triples ``head, relation,
tail`` with both directions of each relation, e.g. ``film.film.actor`` and ``film.actor.film``;
``link``: item id to the film's Freebase entity); the GroupLens files do not, so ``kg`` and ``link``
are ``None`` for them.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from banditrec.data import _fetch
from banditrec.data.cache import (
    CacheEntry,
    ChecksumError,
    DataFormatError,
    Source,
    cache_root,
    open_entry,
    sha256_bytes,
    try_sources,
    write_entry,
)

__all__ = ["GENRES", "MovieLens100k", "load_movielens_100k"]

logger = logging.getLogger(__name__)

PATH_ENV = "BANDITREC_MOVIELENS_PATH"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_DIR = "dataset_example/ml-100k"
CACHE_ENTRY = "movielens-100k-v1"

#: The 19 genres of MovieLens-100k, in the GroupLens column order.
GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
GENRE_PREFIX = "genre_"

#: sha256 of the RecBole 1.2.1 atomic files (identical in the wheel and an installed package).
RECBOLE_SHA256: Mapping[str, str] = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
    "ml-100k.link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
}
_EXPECTED_SIZE = {"ratings": 100_000, "users": 943, "items": 1682}


@dataclass(frozen=True)
class MovieLens100k:
    """The MovieLens-100k tables, normalised whatever the source.

    Attributes
    ----------
    ratings : DataFrame, shape (n_ratings, 4)
        Columns ``user_id`` (int64), ``item_id`` (int64), ``rating`` (float64, 1-5),
        ``timestamp`` (int64, Unix seconds). Ids are the dataset's own (1-based).
    users : DataFrame, shape (n_users, 4)
        Indexed by ``user_id``; columns ``age`` (int64), ``gender`` ("M"/"F"), ``occupation``,
        ``zip`` (strings).
    items : DataFrame, shape (n_items, 2 + n_genres)
        Indexed by ``item_id``; ``title`` (without the trailing "(year)"), ``year`` (float64, NaN
        where unknown) and one 0/1 int column ``genre_<name>`` per genre (multi-hot).
    kg : DataFrame or None
        Knowledge-graph triples, columns ``head``, ``relation``, ``tail`` (Freebase ids and
        relation names as strings); None when the source has no graph (GroupLens files).
    link : DataFrame or None
        Columns ``item_id`` (int64) and ``entity`` (the item's Freebase id in ``kg``).
    source : str
        Where the data came from.
    """

    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    kg: pd.DataFrame | None
    link: pd.DataFrame | None
    source: str

    @property
    def genre_columns(self) -> list[str]:
        """Names of the multi-hot genre columns of ``items``."""
        return [c for c in self.items.columns if c.startswith(GENRE_PREFIX)]

    @property
    def has_kg(self) -> bool:
        """Whether the knowledge graph and its item links are available."""
        return self.kg is not None and self.link is not None


# --------------------------------------------------------------------------------------------
# Parsing


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # the GroupLens files are latin-1


_OTHER_SEPARATORS = ("\t", "|", ",", ";", " ")


def _check_fields(text: str, name: str, sep: str) -> None:
    """Every non-blank line has as many ``sep``-separated fields as the first one.

    pandas pads a row cut short with empty cells (the file is read as strings), so a truncated
    ``u.user`` or ``.kg`` row would load as a user without occupation or a triple without a tail.
    A file in another separator reads as one column; say so rather than list missing columns.
    """
    counts, numbers = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            counts.append(line.count(sep))
            numbers.append(number)
    if not counts:
        return
    counts_arr = np.asarray(counts)
    if counts_arr[0] == 0:
        first = text.splitlines()[numbers[0] - 1]
        other = next((s for s in _OTHER_SEPARATORS if s != sep and s in first.strip()), None)
        if other is not None:
            raise DataFormatError(
                f"{name}: expected {sep!r}-separated columns, but line {numbers[0]} holds no {sep!r} "
                f"and looks {other!r}-separated: {first[:80]!r}"
            )
    bad = np.flatnonzero(counts_arr != counts_arr[0])
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            f"{name}: line {numbers[i]} has {counts_arr[i] + 1} {sep!r}-separated fields, line "
            f"{numbers[0]} has {counts_arr[0] + 1} ({bad.size} such line(s); a row cut short or a "
            f"stray separator?)"
        )


def _read_table(data: bytes, name: str, sep: str, header: bool) -> pd.DataFrame:
    """All-string table; an empty cell stays an empty string (validated per column later)."""
    text = _decode(data)
    _check_fields(text, name, sep)
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            engine="python" if len(sep) > 1 else "c",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(f"{name}: cannot be parsed as a {sep!r}-separated table: {exc}") from exc


def _read_atomic(data: bytes, name: str) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated with a typed header such as ``user_id:token``."""
    df = _read_table(data, name, "\t", header=True)
    df.columns = [str(c).split(":", 1)[0].strip() for c in df.columns]
    return df


def _numeric(df: pd.DataFrame, column: str, name: str, dtype: str, first_line: int) -> pd.Series:
    """Column as numbers, or a DataFormatError naming the file, column, line and value."""
    raw = df[column]
    values = pd.to_numeric(raw.str.strip() if raw.dtype != np.float64 else raw, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{name}: column {column!r} must be numeric, but line {row + first_line} has "
            f"{raw.iloc[row]!r} ({int(bad.sum())} bad value(s) in total)"
        )
    if dtype == "int64":
        as_float = values.to_numpy(dtype=np.float64)
        if not np.all(np.mod(as_float, 1) == 0):
            raise DataFormatError(f"{name}: column {column!r} must hold integers")
        # beyond int64 the cast wraps (1e20 became -2**63) instead of failing
        huge = np.flatnonzero(np.abs(as_float) >= 2.0**63)
        if huge.size:
            row = int(huge[0])
            raise DataFormatError(
                f"{name}: column {column!r} holds {raw.iloc[row]!r} on line {row + first_line}, beyond "
                f"the 64-bit integer range ({huge.size} such value(s))"
            )
        return values.astype(np.int64)
    return values.astype(np.float64)


def _require(df: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFormatError(f"{name}: missing column(s) {missing}; found {list(map(str, df.columns))}")


def _ratings(df: pd.DataFrame, name: str, first_line: int) -> pd.DataFrame:
    _require(df, ["user_id", "item_id", "rating", "timestamp"], name)
    out = pd.DataFrame(
        {
            "user_id": _numeric(df, "user_id", name, "int64", first_line),
            "item_id": _numeric(df, "item_id", name, "int64", first_line),
            "rating": _numeric(df, "rating", name, "float64", first_line),
            "timestamp": _numeric(df, "timestamp", name, "int64", first_line),
        }
    )
    if len(out) == 0:
        raise DataFormatError(f"{name}: no ratings")
    return out.reset_index(drop=True)


def _users(df: pd.DataFrame, name: str, first_line: int) -> pd.DataFrame:
    if "zip_code" in df.columns and "zip" not in df.columns:
        df = df.rename(columns={"zip_code": "zip"})
    _require(df, ["user_id", "age", "gender", "occupation", "zip"], name)
    out = pd.DataFrame(
        {
            "age": _numeric(df, "age", name, "int64", first_line).to_numpy(),
            "gender": df["gender"].astype(str).to_numpy(),
            "occupation": df["occupation"].astype(str).to_numpy(),
            "zip": df["zip"].astype(str).to_numpy(),
        },
        index=pd.Index(_numeric(df, "user_id", name, "int64", first_line).to_numpy(), name="user_id"),
    )
    _unique_ids(out.index, name, "user", first_line)
    return out.sort_index()


def _unique_ids(ids: pd.Index, name: str, what: str, first_line: int) -> None:
    """One row per id: a repeated row surfaced much later as an unnamed 'several rows for id'."""
    if len(ids) == 0:
        raise DataFormatError(f"{name}: no {what}s (a header without rows?)")
    repeated = np.flatnonzero(ids.duplicated(keep=False))
    if repeated.size:
        first = ids[repeated[0]]
        lines = [int(j) + first_line for j in repeated if ids[j] == first]
        raise DataFormatError(
            f"{name}: {what} {first} has {len(lines)} rows (lines {', '.join(map(str, lines[:5]))}); "
            f"{ids[repeated].nunique()} {what} id(s) repeat; give one row per {what}"
        )


_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")


def _year(values: pd.Series) -> np.ndarray:
    """Four-digit year found in each string (e.g. "1995" or "01-Jan-1995"), NaN if none."""
    found = values.astype(str).str.extract(r"(\d{4})\s*$", expand=False)
    return pd.to_numeric(found, errors="coerce").to_numpy(dtype=np.float64)


def _items(
    item_ids: np.ndarray,
    titles: pd.Series,
    years: np.ndarray,
    genre_sets: list[set[str]],
    name: str,
    first_line: int,
) -> pd.DataFrame:
    _unique_ids(pd.Index(item_ids), name, "item", first_line)
    extra = sorted({g for s in genre_sets for g in s} - set(GENRES))
    genres = list(GENRES) + extra
    multi_hot = np.zeros((len(item_ids), len(genres)), dtype=np.int64)
    position = {g: j for j, g in enumerate(genres)}
    for i, s in enumerate(genre_sets):
        for g in s:
            multi_hot[i, position[g]] = 1
    out = pd.DataFrame(
        {
            "title": titles.astype(str).str.replace(_YEAR_SUFFIX, "", regex=True).str.strip().to_numpy(),
            "year": years,
        },
        index=pd.Index(item_ids, name="item_id"),
    )
    out = pd.concat(
        [out, pd.DataFrame(multi_hot, index=out.index, columns=[GENRE_PREFIX + g for g in genres])], axis=1
    )
    return out.sort_index()


def _parse_recbole(read: Callable[[str], bytes], where: str, prefix: str = "ml-100k") -> MovieLens100k:
    """RecBole atomic files ``<prefix>.inter/.user/.item`` and, when present, ``.kg/.link``."""

    def name(ext: str) -> str:
        return f"{where}/{prefix}.{ext}"

    ratings = _ratings(_read_atomic(read(f"{prefix}.inter"), name("inter")), name("inter"), 2)
    users = _users(_read_atomic(read(f"{prefix}.user"), name("user")), name("user"), 2)
    raw_items = _read_atomic(read(f"{prefix}.item"), name("item"))
    rename = {"movie_title": "title", "release_year": "year", "class": "genres"}
    raw_items = raw_items.rename(columns={k: v for k, v in rename.items() if k in raw_items.columns})
    _require(raw_items, ["item_id", "title", "year", "genres"], name("item"))
    items = _items(
        _numeric(raw_items, "item_id", name("item"), "int64", 2).to_numpy(),
        raw_items["title"],
        _year(raw_items["year"]),
        [set(g.split()) for g in raw_items["genres"].astype(str)],
        name("item"),
        2,
    )
    kg = link = None
    graph: dict[str, bytes] = {}
    for ext in ("kg", "link"):
        try:
            graph[ext] = read(f"{prefix}.{ext}")
        except FileNotFoundError:
            pass
    if len(graph) == 1:  # half a graph is no graph, but a missing file should not pass unnoticed
        (have,) = graph
        lacking = "link" if have == "kg" else "kg"
        logger.warning(
            "%s has %s but not %s: loaded without the knowledge graph (kg_features need both)",
            where, f"{prefix}.{have}", f"{prefix}.{lacking}",
        )
    if len(graph) == 2:
        kg_bytes, link_bytes = graph["kg"], graph["link"]
        kg = _read_atomic(kg_bytes, name("kg"))
        kg = kg.rename(columns={"head_id": "head", "relation_id": "relation", "tail_id": "tail"})
        _require(kg, ["head", "relation", "tail"], name("kg"))
        kg = kg[["head", "relation", "tail"]].astype(str).reset_index(drop=True)
        raw_link = _read_atomic(link_bytes, name("link")).rename(columns={"entity_id": "entity"})
        _require(raw_link, ["item_id", "entity"], name("link"))
        link = pd.DataFrame(
            {
                "item_id": _numeric(raw_link, "item_id", name("link"), "int64", 2).to_numpy(),
                "entity": raw_link["entity"].astype(str).to_numpy(),
            }
        )
    return MovieLens100k(ratings, users, items, kg, link, source=where)


def _parse_grouplens(read: Callable[[str], bytes], where: str) -> MovieLens100k:
    """The GroupLens files: ``u.data`` (tab), ``u.user`` and ``u.item`` (pipe, latin-1)."""
    data_name, user_name, item_name = f"{where}/u.data", f"{where}/u.user", f"{where}/u.item"
    raw = _read_table(read("u.data"), data_name, "\t", header=False)
    raw.columns = ["user_id", "item_id", "rating", "timestamp"][: raw.shape[1]] + [
        f"extra_{j}" for j in range(max(0, raw.shape[1] - 4))
    ]
    ratings = _ratings(raw, data_name, 1)
    raw_users = _read_table(read("u.user"), user_name, "|", header=False)
    raw_users.columns = ["user_id", "age", "gender", "occupation", "zip"][: raw_users.shape[1]] + [
        f"extra_{j}" for j in range(max(0, raw_users.shape[1] - 5))
    ]
    users = _users(raw_users, user_name, 1)
    try:
        genre_table = _read_table(read("u.genre"), f"{where}/u.genre", "|", header=False)
        genres = [g for g in genre_table.iloc[:, 0].astype(str) if g]
    except FileNotFoundError:
        genres = list(GENRES)
    raw_items = _read_table(read("u.item"), item_name, "|", header=False)
    if raw_items.shape[1] != 5 + len(genres):
        raise DataFormatError(
            f"{item_name}: expected {5 + len(genres)} '|'-separated columns (id, title, release date, "
            f"video release date, IMDb URL and {len(genres)} genre flags), found {raw_items.shape[1]}"
        )
    raw_items.columns = ["item_id", "title", "release", "video_release", "url"] + genres
    flags = np.stack([_numeric(raw_items, g, item_name, "int64", 1).to_numpy() for g in genres], axis=1)
    items = _items(
        _numeric(raw_items, "item_id", item_name, "int64", 1).to_numpy(),
        raw_items["title"],
        _year(raw_items["release"]),
        [{g for g, f in zip(genres, row) if f} for row in flags],
        item_name,
        1,
    )
    return MovieLens100k(ratings, users, items, None, None, source=where)


def _folder_reader(folder: Path) -> Callable[[str], bytes]:
    def read(name: str) -> bytes:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return path.read_bytes()

    return read


def _zip_reader(archive: zipfile.ZipFile, prefix: str) -> Callable[[str], bytes]:
    names = set(archive.namelist())

    def read(name: str) -> bytes:
        member = prefix + name
        if member not in names:
            raise FileNotFoundError(f"{archive.filename} has no member {member}")
        return archive.read(member)

    return read


def _checked(read: Callable[[str], bytes], where: str) -> Callable[[str], bytes]:
    """Reader that verifies each RecBole file against its pinned sha256."""

    def checked(name: str) -> bytes:
        data = read(name)
        expected = RECBOLE_SHA256.get(name)
        if expected is not None and sha256_bytes(data) != expected:
            raise ChecksumError(f"{where}/{name} does not match the sha256 of RecBole 1.2.1's copy")
        return data

    return checked


def _sanity_check(data: MovieLens100k) -> MovieLens100k:
    """A downloaded copy must be the full data set (guards against truncated or wrong files)."""
    sizes = {"ratings": len(data.ratings), "users": len(data.users), "items": len(data.items)}
    if sizes != _EXPECTED_SIZE:
        raise ChecksumError(f"{data.source}: expected sizes {_EXPECTED_SIZE}, found {sizes}")
    return data


def _load_local(path: Path) -> MovieLens100k:
    """A zip or folder in GroupLens or RecBole layout, its ratings checked to lie in 1-5 stars and
    to name each (user, movie) once, and its sizes compared with the real data set's (a warning:
    a deliberate subset is allowed). A downloaded copy's checksums vouch for it; a local one has
    only these checks."""
    data = _parse_local(path)
    sizes = {"ratings": len(data.ratings), "users": len(data.users), "items": len(data.items)}
    if sizes != _EXPECTED_SIZE:  # a cut file can still parse (its last row's timestamp cut short)
        logger.warning(
            "%s is not the full MovieLens-100k (expected %s, found %s): a truncated or edited copy? "
            "It is used as it is", path, _EXPECTED_SIZE, sizes,
        )
    ratings = data.ratings
    bad = np.flatnonzero(~ratings["rating"].between(1, 5).to_numpy())
    if bad.size:
        i = bad[0]
        raise DataFormatError(
            f"{path}: ratings must lie in 1-5 stars; {bad.size} do not, e.g. user {ratings['user_id'].iloc[i]}, "
            f"item {ratings['item_id'].iloc[i]}: {ratings['rating'].iloc[i]}"
        )
    # MovieLens holds one rating per (user, movie); a repeated pair (a file concatenated twice, a
    # merge gone wrong) would be fitted as two observations without a word
    repeated = ratings.duplicated(["user_id", "item_id"], keep="first").to_numpy()
    if repeated.any():
        i = np.flatnonzero(repeated)[0]
        raise DataFormatError(
            f"{path}: MovieLens holds one rating per (user, movie); {int(repeated.sum())} pairs repeat, e.g. "
            f"user {ratings['user_id'].iloc[i]}, item {ratings['item_id'].iloc[i]}"
        )
    return data


def _parse_local(path: Path) -> MovieLens100k:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise DataFormatError(f"{path}: not a zip archive nor a folder")
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for member in names:
                if member.endswith("u.data"):
                    return _parse_grouplens(_zip_reader(archive, member[: -len("u.data")]), str(path))
            for member in names:
                if member.endswith(".inter"):
                    folder, _, file = member.rpartition("/")
                    prefix = folder + "/" if folder else ""
                    return _parse_recbole(_zip_reader(archive, prefix), str(path), file[: -len(".inter")])
        raise DataFormatError(f"{path}: the archive holds neither u.data (GroupLens) nor *.inter (RecBole)")
    for folder in (path, path / "ml-100k"):
        if (folder / "u.data").is_file():
            return _parse_grouplens(_folder_reader(folder), str(folder))
        inter = sorted(folder.glob("*.inter"))
        if inter:
            return _parse_recbole(_folder_reader(folder), str(folder), inter[0].stem)
    raise DataFormatError(f"{path}: holds neither u.data (GroupLens) nor *.inter (RecBole atomic files)")


# --------------------------------------------------------------------------------------------
# The cache: normalised tables as CSV, verified against the manifest's checksums.

_TABLES = ("ratings", "users", "items", "kg", "link")


def _write_cache(data: MovieLens100k, entry: Path) -> None:
    def build(folder: Path) -> None:
        data.ratings.to_csv(folder / "ratings.csv", index=False)
        data.users.to_csv(folder / "users.csv")
        data.items.to_csv(folder / "items.csv")
        if data.has_kg:
            data.kg.to_csv(folder / "kg.csv", index=False)
            data.link.to_csv(folder / "link.csv", index=False)

    write_entry(entry, build, meta={"dataset": "movielens-100k", "source": data.source})


def _read_cache(entry_path: Path) -> MovieLens100k:
    entry = open_entry(entry_path)
    try:
        return _cache_tables(entry, entry_path)
    except (KeyError, ValueError, TypeError) as exc:
        # checksums match but the tables are not this version's (another layout, a hand edit):
        # a plain ValueError, so the next source is tried and the entry rewritten
        message = " ".join(str(exc).split())
        raise ValueError(
            f"the cache entry {entry_path} is not in the layout this banditrec writes "
            f"({type(exc).__name__}: {message})"
        ) from exc


def _cache_tables(entry: CacheEntry, entry_path: Path) -> MovieLens100k:
    def table(name: str, **kwargs) -> pd.DataFrame:
        return pd.read_csv(entry.file(f"{name}.csv"), keep_default_na=False, **kwargs)

    ratings = table("ratings").astype(
        {"user_id": np.int64, "item_id": np.int64, "rating": np.float64, "timestamp": np.int64}
    )
    users = table("users", index_col="user_id", dtype={"gender": str, "occupation": str, "zip": str})
    users["age"] = users["age"].astype(np.int64)
    items = table("items", index_col="item_id", dtype={"title": str})
    items["year"] = pd.to_numeric(items["year"], errors="coerce").astype(np.float64)
    kg = link = None
    if "kg.csv" in entry.files:
        kg = table("kg", dtype=str)
        link = table("link", dtype={"entity": str})
        link["item_id"] = link["item_id"].astype(np.int64)
    source = f"cache {entry_path} (from {entry.meta.get('source', 'unknown')})"
    return MovieLens100k(ratings, users, items, kg, link, source=source)


# --------------------------------------------------------------------------------------------
# Remote-ish sources


def _from_installed_recbole() -> MovieLens100k:
    folder = _fetch.installed_package_dir("recbole") / RECBOLE_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"the installed recbole has no {folder}")
    return _sanity_check(_parse_recbole(_checked(_folder_reader(folder), str(folder)), str(folder)))


def _from_recbole_wheel() -> MovieLens100k:
    with tempfile.TemporaryDirectory(prefix="banditrec-pip-") as tmp:
        wheel = _fetch.pip_download_wheel(RECBOLE_REQUIREMENT, Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            where = f"{wheel.name}!recbole/{RECBOLE_DIR}"
            read = _checked(_zip_reader(archive, f"recbole/{RECBOLE_DIR}/"), where)
            data = _parse_recbole(read, f"PyPI wheel {RECBOLE_REQUIREMENT} ({where})")
    return _sanity_check(data)


def _from_grouplens_url() -> MovieLens100k:
    with tempfile.TemporaryDirectory(prefix="banditrec-url-") as tmp:
        archive = _fetch.download_url(GROUPLENS_URL, Path(tmp) / "ml-100k.zip")
        data = _load_local(archive)
    return _sanity_check(
        MovieLens100k(data.ratings, data.users, data.items, None, None, source=GROUPLENS_URL)
    )


def load_movielens_100k(
    path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MovieLens100k:
    """Load MovieLens-100k from the first source that works (see the module docstring).

    Parameters
    ----------
    path : path, optional
        A GroupLens ``ml-100k.zip``, its extracted folder, or a folder/zip of RecBole atomic
        files. When given, it is the only source tried; so is ``$BANDITREC_MOVIELENS_PATH`` when set.
        Otherwise the cache, an installed recbole, the recbole wheel and GroupLens are tried.
    cache_dir : path, optional
        Cache folder (default: see :func:`banditrec.data.cache.cache_root`).

    Returns
    -------
    MovieLens100k

    Raises
    ------
    DataUnavailableError
        No source worked; the message lists every source tried and why it failed.
    DataFormatError
        (a ValueError) A file was found but is malformed: names the file and the column.
    """
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}: {path!r}")
        data, _ = try_sources("MovieLens-100k", [Source(f"path {path}", lambda: _load_local(Path(path)))])
        return data

    entry = cache_root(cache_dir) / CACHE_ENTRY
    sources: list[Source[MovieLens100k]] = []
    env_path = os.environ.get(PATH_ENV)
    if env_path:  # an explicit choice, as ``path`` is: the only source, never silently another copy
        data, _ = try_sources("MovieLens-100k", [Source(f"${PATH_ENV}={env_path}", lambda: _load_local(Path(env_path)))])
        return data
    sources.append(Source(f"${PATH_ENV}", _raise(FileNotFoundError(f"${PATH_ENV} is not set"))))
    sources += [
        Source(f"cache {entry}", lambda: _read_cache(entry)),
        Source("installed recbole package", _from_installed_recbole),
        Source(f"PyPI wheel {RECBOLE_REQUIREMENT} (pip download)", _from_recbole_wheel),
        Source(f"GroupLens {GROUPLENS_URL}", _from_grouplens_url),
    ]
    data, used = try_sources("MovieLens-100k", sources)
    if used not in (sources[0].name, sources[1].name):
        try:
            _write_cache(data, entry)
            logger.info("cached MovieLens-100k from %s at %s", used, entry)
        except OSError as exc:  # a read-only cache must not stop the user
            logger.warning("could not write the MovieLens-100k cache at %s: %s", entry, exc)
    return data


def _raise(exc: Exception) -> Callable[[], MovieLens100k]:
    def fail() -> MovieLens100k:
        raise exc

    return fail
