"""CPU memory behaviour of the trainer's process: keep freed memory instead of returning it.

glibc serves every allocation above 32 MiB (its largest mmap threshold) with a fresh ``mmap``
and unmaps it on free, so each large activation of a training step (at 16k tokens and top-8, the
routed copies of the input are 256 MiB each) is page-faulted and zeroed by the kernel again on
every step. Measured on ``mixopt bench moe`` (2-core EPYC, 1 thread, E = 8, 16k tokens): the
fused MoE layer went from 0.67–0.71× to 0.80–0.88× of dense-GEMM throughput once large
allocations came from the heap and freed memory stayed there. :func:`keep_freed_memory` does
that for the current process (``mallopt``: no mmap for allocations, trim only above 1 GiB). It
is called by the ``train``, ``compare`` and ``bench moe`` commands, never at import; set
``MIXOPT_KEEP_FREED_MEMORY=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse; True if it took effect (Linux with glibc only)."""
    if os.environ.get("MIXOPT_KEEP_FREED_MEMORY", "1") in ("0", "false", "no") or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    log.debug("glibc mallopt: mmap off, trim threshold 1 GiB (%s)", "ok" if ok else "refused")
    return ok
