"""Helpers shared by the backends: default parallelism and how to cut a range into pieces."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator

# Compiled kernels run a range in slices of at most this many elements, so that Python gets
# control back (and sees Ctrl-C) every ~0.1 s. `count` folds to `hi - lo`: one slice is enough.
_SLICE = {"count": 2**62, "primes": 2**22, "pi": 2**27}


def default_workers() -> int:
    """The number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def split_range(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """Cut [lo, hi) into at most ``parts`` contiguous, non-empty pieces of near-equal size."""
    size = hi - lo
    parts = max(1, min(parts, size))
    step, extra = divmod(size, parts)
    pieces = []
    start = lo
    for k in range(parts):
        end = start + step + (1 if k < extra else 0)
        pieces.append((start, end))
        start = end
    return [piece for piece in pieces if piece[0] < piece[1]]


def interruptible_slices(workload: str, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """Yield [lo, hi) in consecutive slices short enough to keep Ctrl-C prompt."""
    step = _SLICE[workload]
    for start in range(lo, hi, step):
        yield start, min(hi, start + step)


def cpu_device() -> str:
    """This machine's CPU in words, e.g. ``'CPU: AMD EPYC (2 cores)'``."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {model} ({default_workers()} cores)"
