"""The local data cache: where it lives, checksums, atomic writes and fallbacks between sources.

Every loader in :mod:`banditrec.data` follows one pattern: try a list of sources in order (a path
the user gave, this cache, an installed package, a package registry, the publisher's URL), keep the
reason each one failed, and either return the first that works or raise one
:class:`DataUnavailableError` that lists them all. What a loader fetched from the network is written
to the cache as an *entry*: a folder of files plus a ``manifest.json`` that records each file's
sha256. An entry is built in a temporary folder beside its final place and renamed into place only
when complete, so an interrupted or failed build never leaves a half-written entry behind, and a
later load verifies every checksum before trusting the files.

Several processes may share one cache (parallel experiments, a sweep's workers). Replacing an
entry happens under :func:`entry_lock`, an advisory lock on the folder that holds the entry, and
:func:`open_entry` verifies under the same lock (shared), so it never finds an entry missing
halfway through its replacement; a loader that reads the files afterwards holds the shared lock
around both (the OBD loader does). A loader that adds files to an entry (the OBD sample collects
each log as it is loaded) reads and rewrites it in one exclusively locked step, so two loaders of
different logs do not drop each other's files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent writers of one entry may then drop
    fcntl = None  # each other's additions (the data read stays verified, only refetched)

__all__ = [
    "CacheEntry",
    "ChecksumError",
    "DataFormatError",
    "DataUnavailableError",
    "Source",
    "SourceSkipped",
    "atomic_write",
    "cache_root",
    "entry_lock",
    "open_entry",
    "sha256_bytes",
    "sha256_file",
    "try_sources",
    "write_entry",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


class DataUnavailableError(RuntimeError):
    """No source could provide a data set.

    Attributes
    ----------
    what : str
        The data set that was asked for.
    failures : list of (str, str)
        Each source tried, in order, and why it failed.
    """

    def __init__(self, what: str, failures: Sequence[tuple[str, str]]):
        self.what = what
        self.failures = list(failures)
        lines = [f"could not obtain {what}; tried {len(self.failures)} source(s):"]
        lines += [f"  {i}. {source}: {reason}" for i, (source, reason) in enumerate(self.failures, 1)]
        super().__init__("\n".join(lines))


class ChecksumError(RuntimeError):
    """A file's sha256 differs from the one recorded for it (a corrupted or tampered cache)."""


class DataFormatError(ValueError):
    """A data file was found but its content is malformed (names the file and the column).

    Loaders let this propagate instead of falling back to another source: silently replacing the
    user's own (broken) file with a downloaded copy would hide the problem.
    """


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The banditrec cache folder (not created).

    Parameters
    ----------
    cache_dir : path, optional
        Explicit folder; wins over everything else.

    Returns
    -------
    Path
        ``cache_dir`` if given, else ``$BANDITREC_CACHE``, else ``$XDG_CACHE_HOME/banditrec``,
        else ``~/.cache/banditrec``.
    """
    if cache_dir is not None:
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(
                f"cache_dir must be a path or None, got {type(cache_dir).__name__}: {cache_dir!r}"
            )
        return Path(cache_dir).expanduser()
    env = os.environ.get("BANDITREC_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "banditrec"
    return Path.home() / ".cache" / "banditrec"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file lives in the same folder, so ``os.replace`` is an atomic rename: readers
    see either the old file or the complete new one. If the body raises, the temporary file is
    removed and ``path`` is untouched.

    Examples
    --------
    >>> with atomic_write(target) as tmp:  # doctest: +SKIP
    ...     np.save(tmp, array)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class CacheEntry:
    """A verified cache entry: a folder of files whose checksums match its manifest.

    Attributes
    ----------
    path : Path
        The entry's folder.
    files : dict of str to str
        File name to sha256.
    meta : dict
        Free-form metadata stored with the entry (e.g. where the data came from).
    """

    path: Path
    files: Mapping[str, str]
    meta: Mapping[str, Any]

    def file(self, name: str) -> Path:
        """Path of one of the entry's files."""
        if name not in self.files:
            raise KeyError(f"cache entry {self.path} has no file {name!r}; it has {sorted(self.files)}")
        return self.path / name


#: How long a cache operation waits for another process's lock on the entry's folder before it
#: gives up with a TimeoutError (an OSError, which loaders report and go on from).
LOCK_TIMEOUT_S = 120.0

_held = threading.local()  # this thread's locks: {(st_dev, st_ino) of the folder: [fd, shared, depth]}


def _held_locks() -> dict[tuple[int, int], list[Any]]:
    if getattr(_held, "pid", None) != os.getpid():  # a forked child holds none of its parent's
        _held.pid, _held.locks = os.getpid(), {}
    return _held.locks


def _acquire(folder: Path, shared: bool, timeout: float) -> int | None:
    """Open ``folder`` and flock it; the descriptor, or None where locking is not possible."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:  # a missing folder holds no entry to protect; an unreadable one, no lock
        logger.debug("cache folder %s not locked: %s", folder, exc)
        return None
    operation = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline, delay = time.monotonic() + timeout, 0.001
    while True:
        try:
            fcntl.flock(fd, operation)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise TimeoutError(
                    f"waited {timeout:g} s for the lock on the cache folder {folder} "
                    "(another process is writing an entry there)"
                ) from None
            time.sleep(delay)
            delay = min(2 * delay, 0.05)
        except OSError as exc:  # a file system without flock (some network mounts)
            os.close(fd)
            logger.debug("cache folder %s not locked: %s", folder, exc)
            return None


@contextmanager
def entry_lock(
    path: str | os.PathLike[str], shared: bool = False, timeout: float | None = None
) -> Iterator[None]:
    """Hold the inter-process lock that guards the cache entry ``path``.

    The lock is an advisory ``flock`` on the folder that holds the entry (so no lock file is left
    in the cache, and every entry of that folder shares it). Writers take it exclusively to read an
    entry and replace it as one step; readers take it shared, so an entry is never found missing
    halfway through its replacement. It is reentrant within a thread (a shared request while the
    exclusive lock is held is granted), and separate threads exclude each other as processes do.
    Where locking is impossible (no ``fcntl`` on Windows, a file system without ``flock``, a
    folder that does not exist yet for a reader) the body runs unlocked, as a lone process would.

    Parameters
    ----------
    path : path
        The entry's folder (need not exist).
    shared : bool
        Take the lock shared (readers) rather than exclusive (writers).
    timeout : float, optional
        Seconds to wait for another process's lock (default ``LOCK_TIMEOUT_S``).

    Raises
    ------
    TimeoutError
        The lock was not granted within ``timeout`` (an OSError).
    RuntimeError
        The thread holds the lock shared and asks for it exclusively (an upgrade could deadlock).
    """
    folder = Path(path).parent
    if fcntl is None:
        yield
        return
    if not shared:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        stat = folder.stat()
    except OSError:  # no folder yet: nothing in it to protect from a reader
        yield
        return
    key, held = (stat.st_dev, stat.st_ino), _held_locks()
    if key in held:
        if held[key][1] and not shared:
            raise RuntimeError(
                f"the shared lock on the cache folder {folder} cannot be upgraded to exclusive"
            )
        held[key][2] += 1
        try:
            yield
        finally:
            held[key][2] -= 1
        return
    fd = _acquire(folder, shared, LOCK_TIMEOUT_S if timeout is None else timeout)
    if fd is None:
        yield
        return
    held[key] = [fd, shared, 1]
    try:
        yield
    finally:
        del held[key]
        try:  # explicit unlock: a child forked meanwhile shares the descriptor and would keep it
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def open_entry(path: str | os.PathLike[str], only: Iterable[str] | None = None) -> CacheEntry:
    """Open a cache entry and verify its files against its manifest.

    ``only`` names the files to verify (all of them when None): an entry that collects many
    independent files (the OBD samples) stays usable for the files that are intact. The checks run
    under the entry's shared lock (:func:`entry_lock`); a caller that reads the files afterwards
    and must not see the entry replaced in between holds that lock around both.

    Raises
    ------
    FileNotFoundError
        If the entry or its manifest does not exist, or the manifest lacks a file ``only`` names.
    ChecksumError
        If a file is missing or its sha256 differs from the manifest's.
    TimeoutError
        If another process held the entry's lock for longer than ``LOCK_TIMEOUT_S``.
    """
    with entry_lock(path, shared=True):
        return _open_entry(Path(path), only)


def _open_entry(path: Path, only: Iterable[str] | None) -> CacheEntry:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no cache entry at {path}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
        version = manifest.get("version", _MANIFEST_VERSION)
    except (ValueError, KeyError, TypeError) as exc:
        raise ChecksumError(f"unreadable manifest {manifest_path}: {exc}") from exc
    if version != _MANIFEST_VERSION:  # another banditrec's layout: its checksums may not mean ours
        raise ChecksumError(
            f"the cache entry {path} has manifest format version {version!r}; this banditrec reads "
            f"version {_MANIFEST_VERSION} (the entry is rebuilt when its data is fetched again)"
        )
    if only is not None:
        only = list(only)
        absent = [name for name in only if name not in files]
        if absent:
            raise FileNotFoundError(f"the cache entry {path} does not hold {', '.join(absent)}")
    for name in files if only is None else only:
        expected = files[name]
        file_path = path / name
        if not file_path.is_file():
            raise ChecksumError(f"cache entry {path} lacks {name} listed in its manifest")
        actual = sha256_file(file_path)
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {file_path}: manifest says sha256 {expected[:12]}..., "
                f"file has {actual[:12]}..."
            )
    return CacheEntry(path=path, files=files, meta=dict(manifest.get("meta", {})))


#: Age after which a temporary folder beside an entry is taken as abandoned (a build killed
#: mid-write leaves one, which nothing else ever removes).
ABANDONED_AFTER_S = 24 * 3600


def _remove_abandoned(path: Path) -> None:
    """Delete the temporary folders of ``path``'s earlier builds that a killed process left, once
    they are a day old (a younger one may be another process's build in progress)."""
    now = time.time()
    for pattern in (f".{path.name}.*.tmp", f".{path.name}.*.old"):
        for stale in path.parent.glob(pattern):
            try:
                if now - stale.stat().st_mtime > ABANDONED_AFTER_S:
                    shutil.rmtree(stale, ignore_errors=True)
            except OSError:
                pass


def write_entry(
    path: str | os.PathLike[str],
    build: Callable[[Path], None],
    meta: Mapping[str, Any] | None = None,
) -> CacheEntry:
    """Build a cache entry atomically and return it verified.

    ``build(folder)`` writes the entry's files into a fresh temporary folder beside ``path``. Only
    if it returns normally are the checksums recorded and the folder renamed to ``path`` (an
    existing entry there is replaced, under :func:`entry_lock`). If it raises, the temporary folder
    is deleted and nothing appears at ``path``. Concurrent writers of one entry each publish a
    complete entry, the last one staying; a caller that merges new files into what the entry holds
    must hold ``entry_lock(path)`` around its read and this call, or another's files may be lost.

    Parameters
    ----------
    path : path
        Final folder of the entry.
    build : callable
        ``build(folder: Path) -> None``; writes plain files (subfolders allowed) into ``folder``.
    meta : mapping, optional
        JSON-serialisable metadata stored in the manifest.

    Returns
    -------
    CacheEntry
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    # mkdtemp makes the folder 0700, which a cache shared by several users could not read
    tmp.chmod(0o755)
    try:
        build(tmp)
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        manifest = {"version": _MANIFEST_VERSION, "files": files, "meta": dict(meta or {})}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        trash = None
        try:
            # Under the lock, so that no other writer renames its entry in between the two renames
            # below and no reader looks in between (it would find no entry).
            with entry_lock(path):
                if path.exists():
                    # A stale or corrupted entry: move it aside (rename is atomic), delete it after.
                    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                    try:
                        os.replace(path, trash / "entry")
                    except FileNotFoundError:
                        pass
                try:
                    os.replace(tmp, path)
                except OSError:
                    # Only without a lock (see entry_lock): another process renamed its entry in
                    # after ours was moved aside; keep theirs if it verifies.
                    shutil.rmtree(tmp, ignore_errors=True)
                    return open_entry(path)
        finally:
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CacheEntry(path=path, files=files, meta=manifest["meta"])


@dataclass(frozen=True)
class Source(Generic[T]):
    """One place a data set may come from.

    Attributes
    ----------
    name : str
        Human-readable description used in error messages (include the path or URL).
    load : callable
        ``load() -> T``; raises to signal that this source cannot provide the data.
    """

    name: str
    load: Callable[[], T]


def try_sources(
    what: str,
    sources: Sequence[Source[T]],
    propagate: tuple[type[BaseException], ...] = (DataFormatError,),
) -> tuple[T, str]:
    """Return the result of the first source that works, and that source's name.

    Parameters
    ----------
    what : str
        Name of the data set, for the error message.
    sources : sequence of Source
        Tried in order.
    propagate : tuple of exception types
        Raised immediately instead of being recorded (by default malformed files, which the user
        must fix rather than have silently replaced).

    Returns
    -------
    (result, source_name)

    Raises
    ------
    DataUnavailableError
        If every source failed; lists each source and the reason it failed.
    """
    failures: list[tuple[str, str]] = []
    last: BaseException | None = None
    for source in sources:
        try:
            return source.load(), source.name
        except propagate:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none is hidden
            reason = str(exc).strip() or type(exc).__name__
            if not isinstance(exc, (FileNotFoundError, ChecksumError, SourceSkipped)):
                reason = f"{type(exc).__name__}: {reason}"
            failures.append((source.name, reason))
            last = exc
    raise DataUnavailableError(what, failures) from last


class SourceSkipped(Exception):
    """Raised by a source that chose not to run (e.g. network sources when offline is requested)."""
