"""Keep freed memory in the process between analyses (glibc ``malloc`` settings).

An analysis allocates megabytes that outlive the forward pass (the attention records: 9 MB
of SimAM energy for the default model). With glibc's default, dynamic thresholds, memory
freed after one analysis goes back to the kernel and the next analysis faults it in again,
page by page: measured on the 2-core VM, 2,300-5,000 page faults per default-model
analysis, none in a typical analysis with these settings (an analysis that grows the heap to
a new high still faults that growth in); an analysis whose results are kept, as the app keeps
them, took 53 ms instead of 27 ms. PyTorch's CPU
performance guide recommends the same cure through jemalloc/tcmalloc; this needs no extra
library. The entry points (``app.py``, the CLI, the benchmarks) call it; importing attnviz
as a library changes nothing until the caller asks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

# mallopt(3) parameter numbers, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# Blocks under 32 MiB (glibc's maximum fixed threshold) come from the heap, not from a fresh
# mmap that is unmapped again on free; up to 64 MiB of freed heap top is kept for reuse.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20

_LOCK = threading.Lock()
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; True when they are in force.

    False where there is no glibc ``mallopt`` (macOS, Windows, musl returns failure), and then
    nothing changes: the settings are an optimisation, never a requirement.
    """
    global _applied
    with _LOCK:
        if _applied is None:
            _applied = _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _mallopt(
                M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        return _applied


def _mallopt(param: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1
    except (OSError, AttributeError):
        return False
