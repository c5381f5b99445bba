"""How many CPUs this process may run on (its affinity where the platform has one, as on Linux;
else the machine's count, as on macOS, which has no ``sched_getaffinity``)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on, at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
