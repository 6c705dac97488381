"""Process memory readings shared by the benchmark scripts, and running one measurement in a fresh
process so that its RSS high-water mark is its own (not part of the package)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from typing import Any

MB = 2**20


def _statm_rss() -> int | None:
    """Resident set size now from Linux /proc, in bytes; None where it is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def current_rss() -> int:
    """Resident set size now, in bytes (the high-water mark where /proc is missing)."""
    now = _statm_rss()
    return peak_rss() if now is None else now


def peak_rss() -> int:
    """RSS high-water mark of this process, in bytes (ru_maxrss is KiB on Linux, bytes on macOS).

    Linux updates ru_maxrss lazily, so right after RSS grows it can read a little below /proc's
    current RSS; a high-water mark is never below the current value, so take the larger."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak if sys.platform == "darwin" else peak * 1024
    return max(peak, _statm_rss() or 0)


def run_child(script: str, payload: dict[str, Any], what: str) -> dict[str, Any]:
    """Run ``script --child JSON(payload)`` in a fresh Python process and return the JSON object it
    prints last; ``what`` names the measurement in the error if the child fails."""
    proc = subprocess.run([sys.executable, script, "--child", json.dumps(payload)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
