"""Letting a Ray worker reuse the heap its last chunk freed, instead of faulting it in again.

A chunk cut at ``chunk_bytes`` (32 MiB) of large outputs (four 8 MB arrays, say) is made
in the worker, stored in Ray's object store, then freed at once. glibc's malloc hands
memory at the top of the heap back to the kernel when more than its *trim threshold* is
free (dynamically twice its *mmap threshold*: 16 MiB once 8 MB blocks have been freed), so
every chunk's 32 MiB went back, and the next chunk faulted it in again, page by page. A
page fault is expensive (on the 2-vCPU VM 4 arrays of 8 MB took 7.0 ms an array to make with
the faults, 1.6 ms without; benchmarks/large_elements.py W6 out-heavy moved 1,456-1,550 MB/s
against 1,625-1,654 with the thresholds below, 3 interleaved runs), while a task per array
(raw Ray) frees 8 MB at a time, under the threshold, and never paid it.

So each worker process, before its first chunk, sets glibc's thresholds to the state its
own dynamic scheme reaches at most on 64-bit Linux: blocks up to 32 MiB from the heap
(``M_MMAP_THRESHOLD``) and up to 64 MiB of freed heap kept (``M_TRIM_THRESHOLD``), i.e. one
default chunk's outputs kept for the next. Elsewhere (another C library, another allocator
preloaded, another system) this does nothing. The driver, the user's own process, is left
alone.
"""
from __future__ import annotations

import ctypes
import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)

# glibc's mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX), which is
# also the default chunk_bytes: a default chunk's blocks all come from the heap ...
MMAP_THRESHOLD_BYTES = 32 << 20
# ... and the trim threshold its dynamic scheme pairs with it (twice as much).
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES

_taken: Optional[bool] = None   # whether this process's thresholds are set; None: not tried


def keep_freed_heap() -> bool:
    """Set this process's malloc thresholds (tried once per process); whether glibc took
    them (``False`` without glibc)."""
    global _taken
    if _taken is None:
        _taken = _set_thresholds()
    return _taken


def _set_thresholds() -> bool:
    try:
        if not os.confstr('CS_GNU_LIBC_VERSION'):
            return False
        mallopt = ctypes.CDLL(None).mallopt   # the C library this process already uses
    except (ValueError, OSError, AttributeError):   # no such confstr name here, no mallopt
        return False
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES):
        return True
    logger.debug('mallopt refused the heap thresholds; chunks of large outputs may page-fault')
    return False
