"""Keep freed memory in the process for reuse instead of handing it back to the OS (glibc).

Why: a training step allocates and frees the same large activation and gradient buffers every
step (tens of MiB each at the N-Caltech101 preset). glibc's malloc serves such blocks with
``mmap`` and returns them with ``munmap`` on free, so every step pays a page fault and a
zeroing of every page again: a 1x1 conv writing a fresh ``[48, 128, 48, 48]`` output took
34 ms instead of 8 ms (1 thread, CPU time), and ``torch.zeros`` of the same size 25 ms instead
of 2.4 ms. With the thresholds below the blocks come from the heap and freed memory stays
there, so the next step reuses pages that are already mapped: the process's resident memory
stays at its high-water mark (what the peak step needed) instead of shrinking between steps.
Tensor contents, results and the peak memory that ``ttsnn bench`` reports (live tensors) are
unchanged. PyTorch's CPU performance guides recommend the same effect through jemalloc or
tcmalloc; this needs no extra library.

:func:`keep_freed_memory` is called by the commands that train (``train``, ``pipeline``,
``bench``); ``SW_MALLOC_TUNE=0`` in the environment turns it off (to measure the difference),
and it does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["keep_freed_memory"]

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_SETTINGS = ((_M_MMAP_THRESHOLD, 1 << 30),   # blocks below 1 GiB from the heap, not mmap
             (_M_TRIM_THRESHOLD, 1 << 34),   # never give the heap's free top back to the OS
             (_M_TOP_PAD, 1 << 30))          # grow the heap in large steps (address space only)
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("SW_MALLOC_TUNE", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    return _applied
