"""Process memory readings shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import os
import resource
import sys

MB = 2**20


def current_rss() -> int:
    """Resident set size now, in bytes (Linux /proc; the high-water mark where it is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    """RSS high-water mark of this process, in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
