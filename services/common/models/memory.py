"""Handing freed memory back to the system.

glibc's malloc keeps pages it got for freed blocks (per-thread arenas, the top of the heap) in case
they are needed again; a service whose requests allocate buffers of ever-changing sizes (OCR: every
picture and text line has a shape of its own) then holds its peak, and more as fragments
accumulate. ``malloc_trim`` returns the free pages; it costs well under a millisecond here.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def trim_heap() -> None:
    """Return free heap pages to the system (a no-op where the C library is not glibc)."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


def release_freed_memory() -> None:
    """Collect garbage (a released model's cycles), then return the free pages."""
    gc.collect()
    trim_heap()
