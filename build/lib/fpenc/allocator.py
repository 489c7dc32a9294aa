"""Keep glibc's allocator from handing large blocks back to the kernel after every step.

PyTorch on CPU allocates its activations with plain ``malloc``. glibc serves blocks above a
(dynamic) threshold with ``mmap`` and returns freed memory at the top of the heap to the kernel,
so a training loop whose batches are tens of MB maps, faults in and unmaps the same memory on
every step. On this project's 2-core machine that kernel work was 40 % of the CPU time of 64
subspace UAPs (17.2 s wall, 12.5 s system time; 10.6 s and 0.7 s with the thresholds below;
``benchmarks/allocator.py``). Raising both thresholds keeps the memory in the process for reuse;
its resident size stays at its peak.

Only glibc (Linux) has ``mallopt``; elsewhere this does nothing. ``FPENC_MALLOC_TUNING=0`` turns
it off (to compare, or where memory is tight).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, and are reused
TRIM_THRESHOLD = (1 << 31) - 1  # never give the top of the heap back (mallopt takes an int)


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if it took effect."""
    if os.environ.get("FPENC_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
