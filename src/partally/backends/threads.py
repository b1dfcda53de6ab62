"""``threads``: a thread pool over chunks of the pure-Python loop.

Serialised by the GIL on standard CPython (the guide's point); parallel on free-threaded builds.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from partally.backends._common import cpu_device, split_range
from partally.workloads import count_range

NAME = "threads"
PARALLEL = True
_CHUNK = 2**16  # elements per task: a cancelled run stops within one chunk's time

device = cpu_device


def unavailable() -> str | None:
    return None


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """The pool for this many workers, kept for later calls; a pool of another size is retired."""
    if workers not in _pools:
        for old in _pools.values():
            old.shutdown(wait=False, cancel_futures=True)
        _pools.clear()
        _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="partally")
    return _pools[workers]


def count(workload: str, lo: int, hi: int, *, workers: int, seed: int) -> int:
    if hi - lo <= _CHUNK or workers == 1:
        return count_range(workload, lo, hi, seed)
    pieces = split_range(lo, hi, max(workers, -(-(hi - lo) // _CHUNK)))
    futures = [_pool(workers).submit(count_range, workload, a, b, seed) for a, b in pieces]
    try:
        return sum(future.result() for future in futures)
    finally:
        for future in futures:
            future.cancel()
