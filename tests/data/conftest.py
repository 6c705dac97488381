"""Every data test runs with its own empty cache and without the user's data-path variables."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_data_env(tmp_path, monkeypatch):
    """Point the cache at a fresh folder and clear the variables that add or skip sources."""
    monkeypatch.setenv("BANDITREC_CACHE", str(tmp_path / "cache"))
    for name in ("BANDITREC_MOVIELENS_PATH", "BANDITREC_OBD_PATH", "BANDITREC_OFFLINE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"
