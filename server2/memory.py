"""Giving the C allocator's free memory back to the system between jobs (README "Soak", bench.memory).

A job allocates far more than it keeps: the original decoded at full size, its masks scaled up to it,
clippings cut and encoded at full resolution, SAM's automatic masks. glibc keeps freed blocks in its arenas
for reuse instead of returning them, so a Server2 process's RSS rises to the most its heaviest job so far
needed and stays there: on the 2-core build machine from 0.96 GB with the models loaded to 1.95 GB once a
12 MP photo had gone through SAM, and a soak's process grew by up to 192 MB after its 10th job when its
heaviest photo came late. That is a high-water mark, not a leak (repeating the same jobs adds nothing), but
it is memory no job is using. malloc_trim(0) after each job hands those free pages back (about 450 MB on
that machine, in well under a second): between jobs RSS is what is in use.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim from the process's own C library; None where there is none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release() -> bool:
    """Return the free memory of every malloc arena to the system; False where the C library cannot."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
