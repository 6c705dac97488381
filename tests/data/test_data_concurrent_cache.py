"""Several processes filling one cache at once: none loses another's files, none fails.

The processes are forked (they inherit this test's patched sources: a small OBD-shaped sample whose
sha256 stand in for the pinned ones, and no network) and meet at barriers placed where the race
lies, so the bad interleaving is forced rather than left to timing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from banditrec.data import DataUnavailableError, cache, load_open_bandit_dataset, obd
from banditrec.data.cache import open_entry, sha256_file

forked = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="the children inherit patched sources by fork"
)

#: How long the first process to reach a rendezvous inside the cache write waits for the others.
#: With the bug they all arrive within milliseconds; with the fix the others are held outside
#: (they wait for the entry's lock), so the first goes on alone after this.
GRACE_S = 0.5
#: Bound on a whole child (a hung child fails the test instead of hanging it).
CHILD_TIMEOUT_S = 60.0


def _write_sample(root: Path) -> dict[str, str]:
    """A small OBD-shaped sample of every behaviour policy and campaign, and its files' sha256."""
    rng = np.random.default_rng(0)
    pins = {}
    for policy in obd.POLICIES:
        for campaign in obd.CAMPAIGNS:
            log_rel, ctx_rel = obd._files(policy, campaign)
            (root / log_rel).parent.mkdir(parents=True, exist_ok=True)
            n = 20
            pd.DataFrame(
                {
                    "timestamp": pd.date_range("2019-11-24", periods=n, freq="s", tz="UTC").astype(str),
                    "item_id": rng.integers(0, 4, n),
                    "position": rng.integers(1, 4, n),
                    "click": rng.integers(0, 2, n),
                    "propensity_score": np.full(n, 0.25),
                    "user_feature_0": rng.choice([f"{policy}-{campaign}-a", "b"], n),
                }
            ).to_csv(root / log_rel)
            pd.DataFrame(
                {"item_id": np.arange(4), "item_feature_0": np.linspace(0, 1, 4), "item_feature_1": list("xyxz")}
            ).to_csv(root / ctx_rel)
            pins.update({rel: sha256_file(root / rel) for rel in (log_rel, ctx_rel)})
    return pins


@pytest.fixture
def sample_sources(tmp_path, monkeypatch):
    """The "installed obp" source reads the small sample; the wheel source is skipped (offline)."""
    root = tmp_path / "sample"
    monkeypatch.setattr(obd, "OBD_SAMPLE_SHA256", _write_sample(root))
    monkeypatch.setattr(
        obd._SampleFetcher,
        "installed",
        lambda self, p, c: obd._read_pair(lambda rel: (root / rel).read_bytes(), p, c, str(root), check=True),
    )
    monkeypatch.setenv("BANDITREC_OFFLINE", "1")
    return root


def _no_installed_obp(monkeypatch) -> None:
    def absent(self, policy, campaign):
        raise FileNotFoundError("obp is not installed")

    monkeypatch.setattr(obd._SampleFetcher, "installed", absent)


def _run_children(targets, tmp_path: Path) -> None:
    """Run each ``target(i)`` in a forked process; fail with their tracebacks or warnings."""
    ctx = multiprocessing.get_context("fork")
    reports = tmp_path / "reports"
    reports.mkdir()

    def child(i, target):
        warned = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record: warned.append(record.getMessage())
        logging.getLogger("banditrec").addHandler(handler)
        try:
            target(i)
        except BaseException:
            (reports / f"{i}.txt").write_text(traceback.format_exc())
            raise
        if warned:
            (reports / f"{i}.txt").write_text("warnings: " + "; ".join(warned))

    processes = [ctx.Process(target=child, args=(i, t)) for i, t in enumerate(targets)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(CHILD_TIMEOUT_S)
    hung = [p for p in processes if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    problems = {p.name: p.read_text() for p in sorted(reports.iterdir())}
    assert not hung and not problems, (f"{len(hung)} child(ren) hung", problems)
    assert [p.exitcode for p in processes] == [0] * len(processes)


@forked
@pytest.mark.parametrize(
    "logs",
    [
        [("random", "all"), ("bts", "all")],  # two logs of one campaign, as two experiments load them
        [("random", "men"), ("random", "men"), ("bts", "all")],  # the same log twice, and another
    ],
)
def test_concurrent_loaders_of_different_logs_keep_every_log_in_the_cache(
    tmp_path, monkeypatch, sample_sources, logs
):
    # Each loader read the entry as it was, added its own log and renamed the rebuilt folder into
    # place, replacing whatever another loader had put there meanwhile: that log's files were lost
    # (fetched again next time). Here every loader has read the entry before any of them writes.
    cache_dir = tmp_path / "cache"
    load_open_bandit_dataset("women", ["bts"], cache_dir=cache_dir)  # an entry exists already
    ctx = multiprocessing.get_context("fork")
    have_data, in_build = ctx.Barrier(len(logs)), ctx.Barrier(len(logs))

    def load(i: int) -> None:
        real_write_cache, real_write_entry = obd._write_sample_cache, obd.write_entry

        def write_cache(entry, found):
            have_data.wait(CHILD_TIMEOUT_S)  # every loader has its log; none has touched the cache
            real_write_cache(entry, found)

        def write_entry(path, build, meta=None):
            def build_together(folder):
                try:
                    in_build.wait(GRACE_S)
                except threading.BrokenBarrierError:
                    pass
                build(folder)

            return real_write_entry(path, build_together, meta)

        obd._write_sample_cache, obd.write_entry = write_cache, write_entry
        policy, campaign = logs[i]
        data = load_open_bandit_dataset(campaign, [policy], cache_dir=cache_dir)
        assert len(data.logs[policy]) == 20

    _run_children([load] * len(logs), tmp_path)
    entry = open_entry(cache_dir / obd.CACHE_ENTRY)  # verifies every file's checksum
    expected = {rel for log in [*logs, ("bts", "women")] for rel in obd._files(*log)}
    assert set(entry.files) == expected
    assert sorted(p.name for p in cache_dir.iterdir() if not p.name.startswith(".")) == [obd.CACHE_ENTRY]
    assert not list(cache_dir.glob(f".{obd.CACHE_ENTRY}.*"))  # no temporary folder left behind
    _no_installed_obp(monkeypatch)
    for policy, campaign in {*logs, ("bts", "women")}:
        again = load_open_bandit_dataset(campaign, [policy], cache_dir=cache_dir)
        assert again.sources[policy].startswith("cache ")


@forked
def test_a_reader_does_not_miss_the_entry_while_another_process_replaces_it(
    tmp_path, monkeypatch, sample_sources
):
    # Replacing an entry moved the old folder aside, then renamed the new one in; a loader that
    # looked in between found no entry and, with no other source (offline, no obp), failed.
    cache_dir = tmp_path / "cache"
    load_open_bandit_dataset("all", cache_dir=cache_dir)
    entry_path = cache_dir / obd.CACHE_ENTRY
    damaged = entry_path / "random" / "all" / "all.csv"
    damaged.write_bytes(damaged.read_bytes() + b"\n")  # the random log is fetched and written again
    ctx = multiprocessing.get_context("fork")
    moved_aside, read = ctx.Event(), ctx.Event()

    def rewrite(i: int) -> None:
        real_replace = os.replace

        def replace(src, dst, **kwargs):
            real_replace(src, dst, **kwargs)
            if Path(src) == entry_path:  # the old entry is gone from its place: let the reader look
                moved_aside.set()
                read.wait(GRACE_S)

        cache.os.replace = replace
        assert load_open_bandit_dataset("all", ["random"], cache_dir=cache_dir).sources["random"] == (
            "installed obp package"
        )

    def reader(i: int) -> None:
        _no_installed_obp(monkeypatch)  # patches this child only
        assert moved_aside.wait(CHILD_TIMEOUT_S)
        try:
            data = load_open_bandit_dataset("all", ["bts"], cache_dir=cache_dir)
        finally:
            read.set()
        assert data.sources["bts"].startswith("cache ")

    _run_children([rewrite, reader], tmp_path)
    assert set(open_entry(entry_path).files) == {rel for p in obd.POLICIES for rel in obd._files(p, "all")}


def test_without_a_lock_a_loader_still_works(tmp_path, monkeypatch, sample_sources):
    # where fcntl is missing (Windows) the cache works as before, one process at a time
    monkeypatch.setattr(cache, "fcntl", None)
    cache_dir = tmp_path / "cache"
    load_open_bandit_dataset("all", cache_dir=cache_dir)
    _no_installed_obp(monkeypatch)
    again = load_open_bandit_dataset("all", cache_dir=cache_dir)
    assert all(source.startswith("cache ") for source in again.sources.values())
    with pytest.raises(DataUnavailableError):
        load_open_bandit_dataset("men", cache_dir=cache_dir)
