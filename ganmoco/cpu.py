"""CPU runtime settings for inference.

glibc serves every allocation above its mmap threshold (at most 32 MB by default) with fresh pages from the
kernel and hands them back on free, so each large activation of a big image pays a page fault per 4 KiB page:
allocating and filling a 32-channel 512x512 float tensor took 14 ms this way and 2 ms from the heap, and the
generator at 1024x1024 is mostly such tensors. Raising the threshold (and the trim threshold, so freed memory
stays in the heap for the next image) is what jemalloc/tcmalloc preloading does for PyTorch CPU inference,
without a preload. Peak memory is unchanged; the process keeps its peak after a large image instead of
returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_tuned = False


def tune_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Keep allocations up to `threshold_bytes` in glibc's heap; True where it applied (Linux glibc only).

    Off with GANMOCO_DEFAULT_MALLOC=1."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("GANMOCO_DEFAULT_MALLOC") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold_bytes))
    return _tuned
