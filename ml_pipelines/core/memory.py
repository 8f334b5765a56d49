"""Large frames reuse the memory a step frees instead of faulting in fresh pages.

glibc's malloc gives each block above its mmap threshold a mapping of its own and unmaps it
when the block is freed. The threshold adapts up to 32 MiB and no further, so a 1M-row column
(8 MB) is soon served from the heap and reused, but every 10M-row column (80 MB) is mapped
afresh each time one is made, and the kernel zeroes and faults it in page by page. On this
project's 10M-row benchmark (bench/scale.py) that was a third of the run (48 s of system CPU
in 140 s), and it made per-row costs grow with the size: the expectation-suite check faulted
60,000 times at 10M rows and under 100 times at 1M.

`reused_freed_memory()`, around a step (components.policies), tells malloc to serve every
block from its heap and to keep what is freed there for the next block (mallopt: M_MMAP_MAX
0, M_TRIM_THRESHOLD at its maximum). At the step's end it gives the free memory back to the
system (malloc_trim), so the process's resident memory between steps is what it was, and
puts back the settings glibc's adaptive threshold settles on (mmap above 32 MiB, trim above
64 MiB), so a step run without it (several share one process) behaves as it would have.

The price is memory held at a step's peak: freed blocks stay resident until reused, and a
freed block serves only blocks no larger than it. At 10M rows packaging peaked at 4.2 GB
against 3.6 GB; model fitting, which frees blocks of many sizes, at 0.85 GB more, which put
the run over its 6 GB target, so the training step runs without it
(components.assets.training).

`step_memory()` adds one more setting for every step, fitting included: numpy does not
advise the kernel to back its arrays of 4 MiB and more with huge pages (madvise
MADV_HUGEPAGE, numpy's default on Linux). With transparent huge pages on "madvise" and
direct compaction for advised memory (this machine's setting, and a common one), the first
touch of an advised page waits while the kernel assembles 2 MiB: the holdout predictions of a
10M-row evaluation, in a fresh process, took 3.1-3.9 s (2.1-2.6 s of it system CPU, 70,000
faults at about 35 us each) with the advice and 1.5-1.7 s (0.5 s system, 255,000 faults)
without, and the whole evaluation 10.5-13.1 s against 9.3-9.9 s. numpy reads NUMPY_MADVISE_HUGEPAGE
once, at import, which again is before a run worker's code runs; its run-time switch
(numpy._core.multiarray._set_madvise_hugepage) is used where it exists, and the previous
setting comes back at the step's end. The setting is process-wide: steps run concurrently in
threads of one process may leave it off, which changes speed, never results.

Why our own: no maintained Python package sets malloc's options at run time, and the other
routes (jemalloc or tcmalloc preloaded, MALLOC_* variables) must be in place before the
process starts, which a run worker launched by Dagster's run launcher does not control.
Where the C library is not glibc (macOS, musl), both calls do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # mallopt parameters, from glibc's <malloc.h>
KEEP_FREED_BYTES = 2**31 - 1  # the largest M_TRIM_THRESHOLD mallopt takes (an int)
# glibc's defaults once its adaptive thresholds have reached their ceiling (malloc.c:
# DEFAULT_MMAP_THRESHOLD_MAX, twice that for trimming; DEFAULT_MMAP_MAX)
SETTLED = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 * 1024 * 1024, M_TRIM_THRESHOLD: 64 * 1024 * 1024}
KEEPING = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: KEEP_FREED_BYTES}


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def _set(options: dict[int, int]) -> bool:
    libc = _glibc()
    return libc is not None and all(libc.mallopt(option, value) == 1 for option, value in options.items())


def keep_freed_memory() -> bool:
    """From now on, malloc serves every block from its heap and keeps freed memory for reuse.
    True where it took effect (glibc)."""
    return _set(KEEPING)


def release_freed_memory() -> bool:
    """Give the heap's free memory back to the system (whole free pages, anywhere in the heap)
    and put back glibc's settled defaults. True where it took effect (glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return _set(SETTLED)


def _numpy_hugepage_advice(enabled: bool) -> bool | None:
    """Turn numpy's huge-page advice for large arrays on or off; the previous setting, or None
    where this numpy has no run-time switch."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        return None
    return bool(_set_madvise_hugepage(enabled))


@contextlib.contextmanager
def small_pages_for_arrays() -> Iterator[None]:
    """Within: numpy's new arrays are not advised onto huge pages; after: as before."""
    previous = _numpy_hugepage_advice(False)
    try:
        yield
    finally:
        if previous is not None:
            _numpy_hugepage_advice(previous)


@contextlib.contextmanager
def step_memory(reuse_freed: bool = True) -> Iterator[None]:
    """Around a step's body: small pages for arrays, and with reuse_freed, reused_freed_memory."""
    with small_pages_for_arrays(), (reused_freed_memory() if reuse_freed else contextlib.nullcontext()):
        yield


@contextlib.contextmanager
def reused_freed_memory() -> Iterator[None]:
    """Within: freed memory is reused (keep_freed_memory); at the end: it is given back."""
    keep_freed_memory()
    try:
        yield
    finally:
        release_freed_memory()
