"""Native memory handed back to the system while a long load runs (glibc only; elsewhere a no-op).

RocksDB and the bulk loader allocate and free large buffers on many threads. With glibc's
defaults, the freed memory mostly stays with the process: the threshold above which a buffer
gets its own mapping grows with every large buffer freed, so later ones come from the heaps,
where freed pages are not returned. On a 100k-response load the writer's resident memory kept
rising to about 500 MiB while less than half of it was in use.

:func:`tune` fixes the mapping threshold (large buffers are mapped and unmapped, never left in a
heap); :func:`give_back` returns the free pages of every heap, called after each bulk load.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Any

__all__ = ["give_back", "tune"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: buffers from this size on get their own mapping (glibc's starting value; fixed, it no longer grows)
MMAP_THRESHOLD = 256 * 1024
#: free memory at the top of a heap beyond this is returned at once
TRIM_THRESHOLD = 1024 * 1024

_libc: Any = None
_tuned = False


def _glibc() -> Any:
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if all(hasattr(libc, f) for f in ("malloc_trim", "mallopt", "gnu_get_libc_version")):  # glibc, not musl
                    _libc = libc
            except OSError:  # no C library to load: nothing to tune
                pass
    return _libc


def tune() -> bool:
    """Fix glibc's mapping and trim thresholds for this process (once). Whether it applied."""
    global _tuned
    libc = _glibc()
    if not libc:
        return False
    if not _tuned:
        _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        log.debug("glibc mapping threshold %d, trim threshold %d: %s", MMAP_THRESHOLD, TRIM_THRESHOLD, _tuned)
    return _tuned


def give_back() -> None:
    """Return the free pages of every heap to the system (a few milliseconds)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)
