"""The cache: where it lives, atomic writes, verified entries, and the source fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from banditrec.data.cache import (
    ChecksumError,
    DataFormatError,
    DataUnavailableError,
    Source,
    atomic_write,
    cache_root,
    entry_lock,
    open_entry,
    sha256_bytes,
    sha256_file,
    try_sources,
    write_entry,
)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BANDITREC_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("BANDITREC_CACHE")
    assert cache_root() == tmp_path / "xdg" / "banditrec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "banditrec"
    with pytest.raises(TypeError, match="cache_dir"):
        cache_root(3)


def test_sha256_of_file_and_bytes_agree(tmp_path):
    (tmp_path / "f").write_bytes(b"banditrec" * 1000)
    assert sha256_file(tmp_path / "f", chunk_size=7) == sha256_bytes(b"banditrec" * 1000)


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "value.txt"
    with atomic_write(target) as tmp:
        tmp.write_text("one")
        assert not target.exists()  # invisible until complete
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "one"
    assert sorted(p.name for p in target.parent.iterdir()) == ["value.txt"]


def _build_two_files(folder: Path) -> None:
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "nested").mkdir()
    (folder / "nested" / "b.bin").write_bytes(b"\x00\x01")


def test_entry_round_trip_records_checksums(tmp_path):
    entry = write_entry(tmp_path / "entry", _build_two_files, meta={"source": "unit test"})
    assert set(entry.files) == {"a.csv", "nested/b.bin"}
    assert entry.files["a.csv"] == sha256_bytes(b"x\n1\n")
    opened = open_entry(tmp_path / "entry")
    assert opened.files == entry.files and opened.meta == {"source": "unit test"}
    assert opened.file("a.csv").read_text() == "x\n1\n"


def test_corrupted_entry_is_detected(tmp_path):
    write_entry(tmp_path / "entry", _build_two_files)
    (tmp_path / "entry" / "a.csv").write_text("x\n2\n")
    with pytest.raises(ChecksumError, match="checksum mismatch for .*a.csv"):
        open_entry(tmp_path / "entry")
    (tmp_path / "entry" / "a.csv").unlink()
    with pytest.raises(ChecksumError, match="lacks a.csv"):
        open_entry(tmp_path / "entry")
    (tmp_path / "entry" / "manifest.json").write_text("{not json")
    with pytest.raises(ChecksumError, match="unreadable manifest"):
        open_entry(tmp_path / "entry")
    with pytest.raises(FileNotFoundError):
        open_entry(tmp_path / "nothing-here")


def test_failed_build_leaves_no_entry_and_no_temporary_files(tmp_path):
    def half_then_fail(folder: Path) -> None:
        (folder / "a.csv").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_entry(tmp_path / "entry", half_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_failed_rebuild_keeps_the_previous_entry(tmp_path):
    write_entry(tmp_path / "entry", _build_two_files)
    with pytest.raises(ValueError):
        write_entry(tmp_path / "entry", lambda folder: (_ for _ in ()).throw(ValueError("bad")))
    assert open_entry(tmp_path / "entry").file("a.csv").read_text() == "x\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_rewriting_an_entry_replaces_it(tmp_path):
    write_entry(tmp_path / "entry", _build_two_files)
    write_entry(tmp_path / "entry", lambda folder: (folder / "c.txt").write_text("new"))
    assert set(open_entry(tmp_path / "entry").files) == {"c.txt"}
    manifest = json.loads((tmp_path / "entry" / "manifest.json").read_text())
    assert manifest["files"] == {"c.txt": sha256_bytes(b"new")}


def test_try_sources_returns_first_success_and_its_name():
    calls = []

    def fail():
        calls.append("fail")
        raise FileNotFoundError("not there")

    def ok():
        calls.append("ok")
        return 42

    def never():
        calls.append("never")
        return 0

    assert try_sources("thing", [Source("a", fail), Source("b", ok), Source("c", never)]) == (42, "b")
    assert calls == ["fail", "ok"]


def test_try_sources_lists_every_failure():
    def raiser(exc):
        def load():
            raise exc

        return load

    sources = [
        Source("local path /x", raiser(FileNotFoundError("/x does not exist"))),
        Source("cache /c", raiser(ChecksumError("checksum mismatch for /c/a.csv"))),
        Source("registry", raiser(OSError("pip download failed: no network"))),
    ]
    with pytest.raises(DataUnavailableError) as info:
        try_sources("Some data", sources)
    error = info.value
    assert isinstance(error, RuntimeError)
    assert [name for name, _ in error.failures] == ["local path /x", "cache /c", "registry"]
    message = str(error)
    assert "could not obtain Some data; tried 3 source(s)" in message
    for text in (
        "1. local path /x: /x does not exist",
        "2. cache /c: checksum mismatch",
        "3. registry: OSError: pip download failed",
    ):
        assert text in message


def test_try_sources_propagates_malformed_data_at_once():
    tried = []

    def malformed():
        raise DataFormatError("ratings.csv: column 'rating' must be numeric")

    def fallback():
        tried.append(True)
        return 1

    with pytest.raises(ValueError, match="column 'rating'"):
        try_sources("x", [Source("user file", malformed), Source("download", fallback)])
    assert tried == []


def test_an_entry_of_another_manifest_version_is_refused(tmp_path):
    # its files verified, and were read as this version's layout
    entry = write_entry(tmp_path / "e", lambda f: (f / "a.txt").write_text("hello"))
    manifest = json.loads((entry.path / "manifest.json").read_text())
    manifest["version"] = 2
    (entry.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ChecksumError, match="manifest format version 2; this banditrec reads version 1"):
        open_entry(entry.path)


def test_an_entry_is_readable_by_others_and_abandoned_builds_are_removed(tmp_path):
    # mkdtemp made every entry 0700 (a cache shared by several users could not be read), and a
    # build killed mid-write left its temporary folder forever
    import os
    import stat
    import time

    entry = tmp_path / "entry"
    old = tmp_path / ".entry.abc123.tmp"
    young = tmp_path / ".entry.def456.tmp"  # maybe another process's build in progress
    for folder in (old, young):
        folder.mkdir()
        (folder / "half.bin").write_bytes(b"x")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    write_entry(entry, lambda folder: (folder / "a.txt").write_text("hello"))
    assert stat.S_IMODE(entry.stat().st_mode) & 0o055 == 0o055
    assert not old.exists() and young.exists()
    assert open_entry(entry).file("a.txt").read_text() == "hello"


def _in_thread(function):
    """Run ``function()`` in another thread (which opens its own lock, as another process would)
    and return what it returned or raised."""
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _try_lock(path, shared, timeout=0.05):
    def attempt():
        with entry_lock(path, shared=shared, timeout=timeout):
            return "granted"

    return attempt


def test_entry_lock_excludes_writers_and_lets_readers_share(tmp_path):
    pytest.importorskip("fcntl")
    entry = tmp_path / "entry"
    with entry_lock(entry):
        with pytest.raises(TimeoutError, match=r"waited 0.05 s for the lock on the cache folder"):
            _in_thread(_try_lock(entry, shared=False))
        with pytest.raises(TimeoutError):
            _in_thread(_try_lock(entry, shared=True))
        with pytest.raises(TimeoutError):  # every entry of the folder shares the lock
            _in_thread(_try_lock(tmp_path / "another-entry", shared=True))
        assert _in_thread(_try_lock(tmp_path / "sub" / "entry", shared=True)) == "granted"
    with entry_lock(entry, shared=True):
        assert _in_thread(_try_lock(entry, shared=True)) == "granted"
        with pytest.raises(TimeoutError):
            _in_thread(_try_lock(entry, shared=False))
    assert _in_thread(_try_lock(entry, shared=False)) == "granted"  # released on exit


def test_entry_lock_is_reentrant_in_one_thread(tmp_path):
    pytest.importorskip("fcntl")
    entry = tmp_path / "entry"
    with entry_lock(entry), entry_lock(entry), entry_lock(entry, shared=True):
        # what a merging writer does: read the entry, rebuild it, all under one lock
        write_entry(entry, _build_two_files)
        assert set(open_entry(entry).files) == {"a.csv", "nested/b.bin"}
    with (
        entry_lock(entry, shared=True),
        pytest.raises(RuntimeError, match="cannot be upgraded"),
        entry_lock(entry),
    ):
        pass
    assert _in_thread(_try_lock(entry, shared=False)) == "granted"


def test_a_reader_waits_for_a_writer_and_gives_up_with_an_os_error(tmp_path, monkeypatch):
    pytest.importorskip("fcntl")
    from banditrec.data import cache

    write_entry(tmp_path / "entry", _build_two_files)
    monkeypatch.setattr(cache, "LOCK_TIMEOUT_S", 0.05)
    with entry_lock(tmp_path / "entry"):
        with pytest.raises(OSError, match="waited 0.05 s"):
            _in_thread(lambda: open_entry(tmp_path / "entry"))
        with pytest.raises(OSError, match="waited 0.05 s"):
            _in_thread(lambda: write_entry(tmp_path / "entry", _build_two_files))
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # the refused writer left nothing


def test_entry_lock_without_fcntl_runs_unlocked(tmp_path, monkeypatch):
    from banditrec.data import cache

    monkeypatch.setattr(cache, "fcntl", None)
    with entry_lock(tmp_path / "entry"):
        assert _in_thread(_try_lock(tmp_path / "entry", shared=False)) == "granted"
        write_entry(tmp_path / "entry", _build_two_files)
    assert set(open_entry(tmp_path / "entry").files) == {"a.csv", "nested/b.bin"}
